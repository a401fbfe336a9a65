//! Upload slots over real sockets: a connection holds a slot only once its body makes progress,
//! and one client address holds at most `INGRESS_MAX_UPLOADS_PER_CLIENT` of them.

use crate::harness;

use std::net::IpAddr;
use std::time::Duration;

use harness::raw_http::{head, read_response};
use harness::{identity, multipart, part_head, BOUNDARY, TGZ};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn upload_head(len: usize) -> Vec<u8> {
    head(
        "POST",
        "/api/ingress/v1/upload",
        &[
            ("x-rh-identity", &identity()),
            (
                "content-type",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
            ),
            ("content-length", &len.to_string()),
        ],
    )
}

#[tokio::test]
async fn slots_are_taken_by_progress_and_bounded_per_client() {
    let h = harness::start(&[
        ("INGRESS_MAX_CONCURRENT_UPLOADS", "3"),
        ("INGRESS_MAX_UPLOADS_PER_CLIENT", "2"),
        ("INGRESS_BODY_IDLE_TIMEOUT", "20s"),
    ])
    .await;
    let addr = h.serve().await;
    let me: IpAddr = "127.0.0.1".parse().unwrap();

    // Five connections send their heads and then nothing: no slot is taken.
    let mut silent = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&upload_head(1000)).await.unwrap();
        silent.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.state.clients.held_by(me), 0);

    // So a whole upload still gets through.
    let body = multipart(&[("file", Some(TGZ), b"payload")]);
    let mut whole = TcpStream::connect(&addr).await.unwrap();
    whole.write_all(&upload_head(body.len())).await.unwrap();
    whole.write_all(&body).await.unwrap();
    let answer = read_response(&mut whole).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());

    // Two silent ones make progress: they hold this client's two slots.
    let first_part = part_head("file", Some(TGZ));
    for s in &mut silent[..2] {
        s.write_all(&first_part).await.unwrap();
    }
    intake_testkit::poll::until_true(Duration::from_secs(10), "two slots held", || async {
        h.state.clients.held_by(me) == 2
    })
    .await;

    // A third one from the same address is refused with 503, Retry-After and the error body.
    silent[2].write_all(&first_part).await.unwrap();
    let answer = read_response(&mut silent[2]).await;
    assert_eq!(answer.status, 503);
    assert!(answer.header("retry-after").is_some());
    let body = answer.json();
    assert_eq!(body["status"], 503);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("this client"),
        "{body}"
    );

    // A slot comes back when its upload ends.
    drop(silent.remove(0));
    intake_testkit::poll::until_true(Duration::from_secs(10), "a slot given back", || async {
        h.state.clients.held_by(me) == 1
    })
    .await;
}
