//! The per-upload and per-message functions on the hot path, measured with criterion:
//! `cargo bench -p intake-core --bench hot`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark: a failed step ends it, and its figures are its output"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use intake_core::messages::validation::ValidationResponse;
use intake_core::messages::Announce;
use intake_core::{content_type, Identity, RequestId};

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";

fn announce() -> Announce {
    Announce {
        account: "12345".into(),
        rh_account: "12345".into(),
        principal: "54321".into(),
        org_id: "54321".into(),
        request_id: "0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
        payload_id: "0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
        hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        size: 10_240,
        service: "advisor".into(),
        category: "collection".into(),
        content_type: "application/vnd.redhat.advisor.collection+tgz".into(),
        b64_identity: Some(IDENTITY.into()),
        metadata: None,
        url: "http://localhost:8080/api/ingress/v1/download/quarantine/0a1b2c3d4e5f60718293a4b5c6d7e8f9?expires=1790000000&signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        timestamp: "2026-11-23T12:00:00.000000Z".into(),
    }
}

fn upload_checks(c: &mut Criterion) {
    let allowed: Vec<String> = content_type::DEFAULT_VALID_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    c.bench_function("identity decode (base64 + JSON)", |b| {
        b.iter(|| Identity::decode(black_box(IDENTITY)).unwrap())
    });
    c.bench_function("request id parse", |b| {
        b.iter(|| RequestId::parse(black_box("0a1b2c3d4e5f60718293a4b5c6d7e8f9")).unwrap())
    });
    c.bench_function("request id generate", |b| b.iter(RequestId::generate));
    c.bench_function("content type resolve (27 services)", |b| {
        b.iter(|| {
            content_type::resolve(
                black_box("application/vnd.redhat.advisor.collection+tgz"),
                &allowed,
            )
            .unwrap()
        })
    });
}

fn messages(c: &mut Criterion) {
    let announce = announce();
    c.bench_function("announce encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&announce)).unwrap())
    });
    let response = serde_json::to_vec(&serde_json::json!({
        "request_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "service": "advisor",
        "validation": "success",
        "account": "12345",
        "org_id": "54321",
        "b64_identity": IDENTITY,
    }))
    .unwrap();
    c.bench_function("validation response parse", |b| {
        b.iter(|| ValidationResponse::parse(black_box(&response)).unwrap())
    });
}

criterion_group!(benches, upload_checks, messages);
criterion_main!(benches);
