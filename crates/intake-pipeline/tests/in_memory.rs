//! Small archives judged in memory (`max_in_memory`) end exactly as they do through a work
//! directory: the same report, the same dead-letter stage and reason; a body over the bound is
//! never held in memory.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{start_server, Reply};
use intake_bus::{Bus, OutgoingMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap};
use intake_pipeline::download::{Body, Downloader, Fetch};
use intake_testkit::archives::{gzip, TarBuilder};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn downloader(tmp: &Path) -> Downloader {
    let yaml = format!(
        "service:\n  downloader:\n    tmp_dir: {}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z0-9-]+']\n    max_archive_size: 64KiB\n  publisher: {{format: insights}}\n",
        tmp.display()
    );
    let config =
        intake_pipeline::load_config_str(&yaml, Path::new("."), &Default::default()).unwrap();
    Downloader::new(&config.downloader, None).unwrap()
}

fn work_dirs(tmp: &Path) -> usize {
    std::fs::read_dir(tmp).unwrap().count()
}

#[tokio::test]
async fn only_a_body_of_known_size_within_the_bound_stays_in_memory() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path());
    let small = common::cluster_archive(0);
    let large = common::cluster_archive(20_000);
    server.route("small", Reply::Bytes(small.clone()));
    server.route("large", Reply::Bytes(large.clone()));
    server.route("chunked", Reply::Chunked(small.clone()));
    server.route("huge", Reply::Bytes(vec![1; 100 << 10]));
    let url = |name: &str| format!("http://{addr}/archives/{name}");
    let get = |name: &'static str, bound: u64| {
        let (d, url) = (&d, url(name));
        async move {
            let fetch = Fetch {
                url: &url,
                request_id: None,
                declared_size: None,
            };
            d.fetch_body(&fetch, bound).await
        }
    };
    let bound = 16 << 10;
    assert!(small.len() < bound as usize && large.len() > bound as usize);

    let got = get("small", bound).await.unwrap();
    assert_eq!(got.bytes, small.len() as u64);
    assert!(matches!(&got.body, Body::Memory(b) if *b == small));
    assert_eq!(
        work_dirs(tmp.path()),
        0,
        "no work directory for a small body"
    );

    for (name, body, bound) in [
        ("large", &large, bound),
        ("chunked", &small, bound),
        ("small", &small, 0),
    ] {
        let got = get(name, bound).await.unwrap();
        let Body::File(work) = &got.body else {
            panic!("{name} (bound {bound}) was kept in memory");
        };
        assert_eq!(std::fs::read(work.archive()).unwrap(), *body, "{name}");
        assert_eq!(work_dirs(tmp.path()), 1);
        drop(got);
        assert_eq!(
            work_dirs(tmp.path()),
            0,
            "the work directory goes with the body"
        );
    }

    for bound in [0, bound, 1 << 20] {
        let e = get("huge", bound).await.unwrap_err();
        assert_eq!((e.stage.as_str(), e.reason), ("download", "too_large"));
    }
    assert_eq!(work_dirs(tmp.path()), 0);
}

/// How one message ended: the report (times aside), or the dead letter's stage and reason.
type Endings = BTreeMap<String, Value>;

/// Runs `archives` through a pipeline with `max_in_memory` and returns how each ended.
async fn run(archives: &[(&str, Vec<u8>)], max_in_memory: &str) -> Endings {
    let (server, addr) = start_server().await;
    for (name, bytes) in archives {
        server.route(name, Reply::Bytes(bytes.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
    let bus: Arc<dyn Bus> = intake_bus::open(&bus_config).await.unwrap();
    let yaml = format!(
        "plugins:\n  packages: [intake_ocp, {site}]\nservice:\n  consumer:\n    max_record_age: 0\n  downloader:\n    tmp_dir: {tmp}\n    max_archive_size: 256KiB\n    max_in_memory: {max_in_memory}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z0-9-]+']\n  engine:\n    extract: {{max_unpacked_size: 1MiB}}\n  watchers:\n    - {{kind: cluster_id, on_missing: dead_letter}}\n",
        site = common::SITE_OCP,
        tmp = dir.path().join("tmp").display(),
    );
    let config = intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).unwrap();
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), bus.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });
    for (name, _) in archives {
        let value = json!({"request_id": name, "org_id": "54321", "account": "12345",
            "service": "openshift", "size": 1000, "url": format!("http://{addr}/archives/{name}"),
            "timestamp": "2024-05-02T09:30:12.123456Z"});
        let msg = OutgoingMessage::new(
            bus_config.topic("platform.upload.available"),
            value.to_string().into_bytes(),
        )
        .key(name.as_bytes().to_vec())
        .header("service", b"openshift".to_vec())
        .header("request_id", name.as_bytes().to_vec());
        bus.publish(msg).await.unwrap();
    }
    let mut consumer = bus
        .subscribe(Subscription {
            group: "reader".into(),
            topics: vec![
                bus_config.topic("ccx.ocp.results"),
                bus_config.topic("intake.pipeline.dlq"),
            ],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let mut endings = Endings::new();
    while endings.len() < archives.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("an ending within 30 s")
            .unwrap();
        let (key, ending) = match m.header_str("intake-error-reason") {
            Some(reason) => (
                m.key_str().unwrap().to_owned(),
                json!([m.header_str("intake-error-stage"), reason]),
            ),
            None => {
                let mut v: Value = serde_json::from_slice(&m.value).unwrap();
                let meta = v["Report"]["analysis_metadata"].as_object_mut().unwrap();
                meta.insert("start".into(), json!("T"));
                meta.insert("finish".into(), json!("T"));
                (v["RequestId"].as_str().unwrap().to_owned(), v)
            }
        };
        endings.insert(key, ending);
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
    endings
}

#[tokio::test]
async fn archives_judged_in_memory_end_as_they_do_on_disk() {
    let good = common::cluster_archive(0);
    let nested = gzip(
        &TarBuilder::new()
            .file(
                "insights-abc/config/id",
                format!("{}\n", common::CLUSTER).as_bytes(),
            )
            .file("insights-abc/config/version.json", b"{}")
            .finish(),
    );
    let noid = gzip(&TarBuilder::new().file("etc/hostname", b"web01").finish());
    let traversal = gzip(
        &TarBuilder::new()
            .file("config/id", common::CLUSTER.as_bytes())
            .file("../evil", b"x")
            .finish(),
    );
    let bomb = gzip(
        &TarBuilder::new()
            .file("config/id", common::CLUSTER.as_bytes())
            .file("config/zeros", &vec![0; 2 << 20])
            .finish(),
    );
    let corrupt = good[..good.len() / 2].to_vec();
    let archives = [
        ("good", good),
        ("nested", nested),
        ("noid", noid),
        ("traversal", traversal),
        ("unpackedtoolarge", bomb),
        ("toolarge", common::cluster_archive(300_000)),
        ("corrupt", corrupt),
    ];
    let in_memory = run(&archives, "8MiB").await;
    let on_disk = run(&archives, "0").await;
    assert_eq!(in_memory, on_disk);
    let reason = |name: &str| in_memory[name].clone();
    assert_eq!(reason("noid"), json!(["extract", "missing_cluster_id"]));
    assert_eq!(reason("traversal"), json!(["extract", "unsafe_path"]));
    assert_eq!(
        reason("unpackedtoolarge"),
        json!(["extract", "unpacked_too_large"])
    );
    assert_eq!(reason("toolarge"), json!(["download", "too_large"]));
    assert_eq!(reason("corrupt"), json!(["extract", "corrupt_archive"]));
    assert_eq!(
        in_memory["good"]["Report"]["reports"][0]["key"],
        "CLUSTER_UPDATE_FAILING"
    );
    assert_eq!(
        in_memory["nested"]["ClusterName"],
        "c25da893-5ba1-4229-9432-c8ec9334c4a0"
    );
}

#[test]
fn max_in_memory_defaults_to_8_mib_and_parses_sizes() {
    let load = |yaml: &str| {
        intake_pipeline::load_config_str(yaml, Path::new("."), &EnvMap::new())
            .unwrap()
            .downloader
            .max_in_memory
    };
    assert_eq!(load("service:\n  publisher: {format: ccx}\n"), 8 << 20);
    assert_eq!(
        load("service:\n  downloader: {max_in_memory: 512KiB}\n  publisher: {format: ccx}\n"),
        512 << 10
    );
    assert_eq!(
        load("service:\n  downloader: {max_in_memory: 0}\n  publisher: {format: ccx}\n"),
        0
    );
}
