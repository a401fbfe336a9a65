//! Addresses of the real servers the harness (`scripts/test.sh`) started. A test that needs one and
//! does not find it fails, naming the variable, so a missing engine never passes silently.

/// Reads a harness variable or panics with how to get it.
pub fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs a real server started by the harness; run scripts/test.sh \
             (or start the server and export {var})"
        ),
    }
}

/// The S3-compatible endpoint (`http://127.0.0.1:PORT`), from `INTAKE_TEST_S3_ENDPOINT`.
pub fn s3_endpoint() -> String {
    required("INTAKE_TEST_S3_ENDPOINT")
}

/// S3 access key id for the test server, from `INTAKE_TEST_S3_ACCESS_KEY`.
pub fn s3_access_key() -> String {
    required("INTAKE_TEST_S3_ACCESS_KEY")
}

/// S3 secret for the test server, from `INTAKE_TEST_S3_SECRET_KEY`.
pub fn s3_secret_key() -> String {
    required("INTAKE_TEST_S3_SECRET_KEY")
}

/// The Kafka-protocol bootstrap address, from `INTAKE_TEST_KAFKA_BROKERS`.
pub fn kafka_brokers() -> String {
    required("INTAKE_TEST_KAFKA_BROKERS")
}

/// A PostgreSQL URL of a database tests may create databases in, from `INTAKE_TEST_POSTGRES_URL`.
pub fn postgres_url() -> String {
    required("INTAKE_TEST_POSTGRES_URL")
}
