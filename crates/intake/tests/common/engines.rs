//! One test's view of the real engines: a topic prefix, consumer groups and buckets of its own on
//! the harness's Kafka broker and S3 server, and the environment that points intake at them.

use super::s3::S3;

/// Kafka + S3 settings unique to one test, so tests share the harness servers in parallel.
#[derive(Debug, Clone)]
pub struct Engines {
    pub brokers: String,
    /// `KAFKA_TOPIC_PREFIX`: every topic of this test starts with it.
    pub prefix: String,
    pub ingress_group: String,
    pub quarantine: String,
    pub perm: String,
    pub reject: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

/// A short id unique to this process and call, for names of topics, groups and buckets.
pub fn unique(label: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{label}-{}", &id[..12])
}

impl Engines {
    /// The harness's Kafka broker (`INTAKE_TEST_KAFKA_BROKERS`) and S3 server.
    pub fn harness(label: &str) -> Self {
        Self::on_brokers(label, intake_testkit::servers::kafka_brokers())
    }

    /// `brokers` for Kafka, the harness's S3 server for storage.
    pub fn on_brokers(label: &str, brokers: String) -> Self {
        let id = unique(label);
        Self {
            brokers,
            prefix: format!("{id}."),
            ingress_group: format!("{id}-upload"),
            quarantine: format!("{id}-quarantine"),
            perm: format!("{id}-perm"),
            reject: format!("{id}-reject"),
            s3_endpoint: intake_testkit::servers::s3_endpoint(),
            s3_access_key: intake_testkit::servers::s3_access_key(),
            s3_secret_key: intake_testkit::servers::s3_secret_key(),
        }
    }

    /// A topic's wire name (`platform.upload.testareno` → `<prefix>platform.upload.testareno`).
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The variables that put intake on this Kafka and this S3 (spec README.md, "Storage", "Bus").
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("BUS_DRIVER", "kafka"),
            ("KAFKA_BROKERS", self.brokers.as_str()),
            ("KAFKA_TOPIC_PREFIX", self.prefix.as_str()),
            ("INGRESS_CONSUMER_GROUP", self.ingress_group.as_str()),
            ("STORAGE_DRIVER", "s3"),
            ("S3_ENDPOINT_URL", self.s3_endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", self.s3_access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.s3_secret_key.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("S3_QUARANTINE", self.quarantine.as_str()),
            ("S3_PERM", self.perm.as_str()),
            ("S3_REJECT", self.reject.as_str()),
            ("STORAGE_CREATE_BUCKETS", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// An S3 client of the test's own on the same server.
    pub fn s3(&self) -> S3 {
        S3::new(&self.s3_endpoint, &self.s3_access_key, &self.s3_secret_key)
    }
}
