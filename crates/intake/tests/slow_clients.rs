//! Black-box: slow, idle and oversized clients against `intake serve`, spoken over raw TCP sockets,
//! with short connection bounds set through the environment. Every connection is closed or
//! answered (with the JSON error body) within its bound, and the server's resident memory stays
//! under 128 MiB throughout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serve::{ready, start_with, Serve};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";
const BOUNDARY: &str = "XyZboundary";
/// Longest a bounded connection may stay open in these tests (bounds are 1–2 s).
const CLOSED_WITHIN: Duration = Duration::from_secs(6);
const RSS_CEILING_KIB: u64 = 128 * 1024;

fn limits() -> Vec<(&'static str, &'static str)> {
    vec![
        ("INGRESS_HEADER_TIMEOUT", "1s"),
        ("INGRESS_IDLE_TIMEOUT", "2s"),
        ("INGRESS_BODY_IDLE_TIMEOUT", "1s"),
    ]
}

fn addr(serve: &Serve) -> String {
    serve.ingress.trim_start_matches("http://").to_owned()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the server's RSS every 50 ms until dropped; remembers the peak.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { peak, stop }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads until the server closes (EOF or reset); returns what came and how long it took.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(30), read).await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for 30 s"
    );
    (out, started.elapsed())
}

/// The status and JSON body of the first response in `raw`.
fn answer(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

fn assert_error(raw: &[u8], status: u16, words: &str) {
    let (code, body) = answer(raw);
    assert_eq!(code, status, "{}", String::from_utf8_lossy(raw));
    assert_eq!(body["status"], status, "{}", String::from_utf8_lossy(raw));
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains(words),
        "message {message:?} should mention {words:?}"
    );
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    assert!(text.contains("content-type: application/json"), "{text}");
}

async fn connect(serve: &Serve) -> TcpStream {
    TcpStream::connect(addr(serve)).await.unwrap()
}

fn upload_head(extra: &str) -> String {
    format!(
        "POST /api/ingress/v1/upload HTTP/1.1\r\nHost: ingress.test\r\nx-rh-identity: {IDENTITY}\r\n\
         content-type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n"
    )
}

/// Writes `data` in the background, ignoring errors (the server may close before reading it all).
fn write_in_background(mut writer: tokio::net::tcp::OwnedWriteHalf, data: Vec<u8>) {
    tokio::spawn(async move {
        for piece in data.chunks(64 * 1024) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_oversized_clients_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start_with(dir.path(), &limits());
    ready(&reqwest::Client::new(), &serve).await;
    let rss = RssWatch::start(serve.pid());

    // A connection that never sends a byte is closed (nothing to answer).
    let mut idle = connect(&serve).await;
    // An h2c preface and then silence.
    let mut h2c = connect(&serve).await;
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // Half a request head: 408 with the error body.
    let mut half = connect(&serve).await;
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A keep-alive connection after one answered request.
    let mut kept = connect(&serve).await;
    kept.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let (out, took) = until_closed(&mut idle).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(took < CLOSED_WITHIN, "idle connection open for {took:?}");
    let (_, took) = until_closed(&mut h2c).await;
    assert!(
        took < CLOSED_WITHIN,
        "silent h2c connection open for {took:?}"
    );
    let (out, took) = until_closed(&mut half).await;
    assert!(took < CLOSED_WITHIN, "half a head kept open for {took:?}");
    assert_error(&out, 408, "headers");
    let (out, took) = until_closed(&mut kept).await;
    assert!(took < CLOSED_WITHIN, "idle keep-alive open for {took:?}");
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // A test-connection body trickled one byte every 600 ms (under the 1 s idle bound per byte):
    // the small body gets the bound in all, then 408.
    let mut trickle = connect(&serve).await;
    let head = format!(
        "POST /api/ingress/v1/upload HTTP/1.1\r\nHost: x\r\nx-rh-identity: {IDENTITY}\r\n\
         content-type: application/json\r\ncontent-length: 15\r\n\r\n"
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        for b in br#"{"test":"test"}"# {
            tokio::time::sleep(Duration::from_millis(600)).await;
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut out)).await;
    assert!(started.elapsed() < CLOSED_WITHIN);
    assert_error(&out, 408, "body");
    trickler.abort();

    // Request headers over 64 KiB: 431.
    let mut big = connect(&serve).await;
    let head = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let (mut reader, writer) = big.into_split();
    write_in_background(writer, head.into_bytes());
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut out)).await;
    assert_error(&out, 431, "headers");
    big = connect(&serve).await;
    drop(big);

    // A 300 KiB part header, then a 300 MiB one chunked (no declared length): 400, quickly, and the
    // server does not hold it.
    for (name, pad, chunked) in [
        ("300 KiB", 300 * 1024, false),
        ("300 MiB", 300 * 1024 * 1024, true),
    ] {
        let stream = connect(&serve).await;
        let (mut reader, mut writer) = stream.into_split();
        let started = Instant::now();
        let writing = tokio::spawn(async move {
            let framing = if chunked {
                "transfer-encoding: chunked\r\n".to_owned()
            } else {
                format!("content-length: {}\r\n", pad + 200)
            };
            writer
                .write_all(upload_head(&framing).as_bytes())
                .await
                .ok()?;
            let mut first = format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nX-Pad: "
            )
            .into_bytes();
            let piece = vec![b'a'; 64 * 1024];
            let mut sent = 0;
            while sent < pad {
                let mut data = std::mem::take(&mut first);
                data.extend_from_slice(&piece);
                sent += piece.len();
                let wire = if chunked {
                    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                    c.extend_from_slice(&data);
                    c.extend_from_slice(b"\r\n");
                    c
                } else {
                    data
                };
                writer.write_all(&wire).await.ok()?;
            }
            Some(())
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut out)).await;
        assert!(
            started.elapsed() < CLOSED_WITHIN,
            "{name} part header took {:?}",
            started.elapsed()
        );
        assert_error(&out, 400, "part headers");
        writing.abort();
    }

    // A 64 MiB preamble before the first boundary: 400.
    let stream = connect(&serve).await;
    let (mut reader, writer) = stream.into_split();
    let pad = 64 * 1024 * 1024;
    let mut body = upload_head(&format!("content-length: {}\r\n", pad + 100)).into_bytes();
    body.extend(std::iter::repeat_n(b'p', pad));
    write_in_background(writer, body);
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut out)).await;
    assert_error(&out, 400, "preamble");

    // A request line that is not HTTP: hyper's own 400, with the JSON body.
    let mut junk = connect(&serve).await;
    junk.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = until_closed(&mut junk).await;
    assert_error(&out, 400, "HTTP");

    // Nothing refused above left an object behind.
    let quarantine = dir.path().join("data/storage/insights-upload-quarantine");
    let kept: Vec<_> = std::fs::read_dir(&quarantine)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(kept.is_empty(), "left in quarantine: {kept:?}");

    let peak = rss.peak_kib();
    println!("peak RSS of intake serve: {} KiB", peak);
    assert!(peak > 0, "RSS was never read");
    assert!(
        peak < RSS_CEILING_KIB,
        "RSS reached {peak} KiB (ceiling {RSS_CEILING_KIB} KiB)"
    );
}
