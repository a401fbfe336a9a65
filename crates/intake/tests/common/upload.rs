//! The seed's upload (README "Try it"): a tar.gz as the `file` part, typed
//! `application/vnd.redhat.testareno.something+tgz`, with the local identity and a request id.

use sha2::{Digest, Sha256};

/// `{"identity": {"account_number": "12345", "internal": {"org_id": "54321"}}}`
pub const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";
pub const CONTENT_TYPE: &str = "application/vnd.redhat.testareno.something+tgz";

/// A well-formed archive whose bytes differ per `seed`, so every payload has its own sha256.
pub fn archive(seed: &str) -> Vec<u8> {
    let tar = intake_testkit::archives::TarBuilder::new()
        .dir("insights-web01")
        .file("insights-web01/data/hostname", b"web01\n")
        .file("insights-web01/data/seed", seed.as_bytes())
        .finish();
    intake_testkit::archives::gzip(&tar)
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// POSTs `archive` as the seed's curl example does; bounded by a timeout.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    request_id: &str,
    archive: Vec<u8>,
) -> Result<reqwest::Response, reqwest::Error> {
    let part = reqwest::multipart::Part::bytes(archive)
        .file_name("archive.tar.gz")
        .mime_str(CONTENT_TYPE)
        .unwrap();
    client
        .post(format!("{base}/api/ingress/v1/upload"))
        .header("x-rh-identity", IDENTITY)
        .header("x-rh-insights-request-id", request_id)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
}
