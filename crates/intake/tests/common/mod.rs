//! Shared by the black-box tests that run the intake binary: `intake serve` on the embedded default;
//! on Kafka and S3, the binary as a child process, the engines' settings for one test, and Kafka and S3 clients of the tests' own (rdkafka
//! and aws-sdk-s3 used directly, never intake's drivers, so the tests check what is on the wire).

// Each test crate that includes this module uses only part of it.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

pub mod broker;
pub mod engines;
pub mod kafka;
pub mod process;
pub mod s3;
pub mod serve;
pub mod upload;
