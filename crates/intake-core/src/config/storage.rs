//! Storage settings (spec/README.md, "Storage").

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &[
    "STORAGE_DRIVER",
    "STORAGE_DIR",
    "STORAGE_CREATE_BUCKETS",
    "STORAGE_URL_EXPIRY",
    "STORAGE_URL_SIGNING_KEY",
    "S3_QUARANTINE",
    "S3_PERM",
    "S3_REJECT",
    "S3_QUARANTINE_RETAIN",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "S3_FORCE_PATH_STYLE",
];

/// Longest URL lifetime S3 presigning allows.
pub const MAX_S3_URL_EXPIRY: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDriver {
    LocalDisk,
    S3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketNames {
    pub quarantine: String,
    pub perm: String,
    pub reject: String,
}

impl Default for BucketNames {
    fn default() -> Self {
        Self {
            quarantine: "insights-upload-quarantine".into(),
            perm: "insights-upload-perm-test".into(),
            reject: "insights-upload-rejected".into(),
        }
    }
}

#[derive(Clone)]
pub struct S3Config {
    /// `S3_ENDPOINT_URL` with a scheme; `None` means AWS itself.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    /// Never logged: the Debug impl hides it.
    pub secret_access_key: Option<String>,
    pub region: String,
    pub force_path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct StorageConfig {
    pub driver: StorageDriver,
    pub dir: PathBuf,
    pub create_buckets: bool,
    pub url_expiry: Duration,
    /// `S3_QUARANTINE_RETAIN` (default: `url_expiry`): how long the s3 driver keeps a validated
    /// payload's quarantine copy, hidden, so that links already handed out for it keep serving
    /// (storage.md, "a link follows its payload"). Zero deletes it at the verdict.
    pub quarantine_retain: Duration,
    /// `STORAGE_URL_SIGNING_KEY`; `None` → the key kept in [`Self::signing_key_file`]. Never logged.
    pub signing_key: Option<String>,
    /// `$INTAKE_DATA_DIR/signing.key`: where the key is generated once and kept when
    /// `STORAGE_URL_SIGNING_KEY` is unset (storage.md, "Download URLs").
    pub signing_key_file: PathBuf,
    pub buckets: BucketNames,
    pub s3: S3Config,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("driver", &self.driver)
            .field("dir", &self.dir)
            .field("create_buckets", &self.create_buckets)
            .field("url_expiry", &self.url_expiry)
            .field("quarantine_retain", &self.quarantine_retain)
            .field("signing_key_file", &self.signing_key_file)
            .field("buckets", &self.buckets)
            .field("s3", &self.s3)
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// `data_dir` is `INTAKE_DATA_DIR` (from [`super::GeneralConfig`]).
    pub fn from_env(env: &EnvMap, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let endpoint = r.raw("S3_ENDPOINT_URL").map(|e| {
            if e.contains("://") {
                e.trim_end_matches('/').to_owned()
            } else {
                format!("http://{}", e.trim_end_matches('/'))
            }
        });
        let default_driver = if endpoint.is_some() {
            StorageDriver::S3
        } else {
            StorageDriver::LocalDisk
        };
        let driver = r.parsed("STORAGE_DRIVER", default_driver, |t| {
            match t.to_ascii_lowercase().as_str() {
                "s3" => Ok(StorageDriver::S3),
                "localdisk" => Ok(StorageDriver::LocalDisk),
                _ => Err("expected s3 or localdisk".into()),
            }
        });
        let dir = r
            .raw("STORAGE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("storage"));
        let create_buckets = r.bool("STORAGE_CREATE_BUCKETS", driver == StorageDriver::LocalDisk);
        let url_expiry = r.duration("STORAGE_URL_EXPIRY", Duration::from_secs(86_400));
        if url_expiry.is_zero() {
            r.fail("STORAGE_URL_EXPIRY", "must be longer than zero");
        }
        if driver == StorageDriver::S3 && url_expiry > MAX_S3_URL_EXPIRY {
            r.fail("STORAGE_URL_EXPIRY", "S3 presigned URLs last at most 7d");
        }
        let quarantine_retain = r.duration("S3_QUARANTINE_RETAIN", url_expiry);
        let signing_key = r.raw("STORAGE_URL_SIGNING_KEY").map(str::to_owned);
        let defaults = BucketNames::default();
        let buckets = BucketNames {
            quarantine: r.string("S3_QUARANTINE", &defaults.quarantine),
            perm: r.string("S3_PERM", &defaults.perm),
            reject: r.string("S3_REJECT", &defaults.reject),
        };
        for (var, name) in [
            ("S3_QUARANTINE", &buckets.quarantine),
            ("S3_PERM", &buckets.perm),
            ("S3_REJECT", &buckets.reject),
        ] {
            if !valid_bucket_name(name) {
                r.fail(var, "not a valid bucket name (3-63 of a-z, 0-9, '.', '-')");
            }
        }
        if buckets.quarantine == buckets.perm
            || buckets.perm == buckets.reject
            || buckets.quarantine == buckets.reject
        {
            r.fail(
                "S3_QUARANTINE",
                "the three buckets must have different names",
            );
        }
        let region = r
            .raw("AWS_REGION")
            .or_else(|| r.raw("AWS_DEFAULT_REGION"))
            .unwrap_or("us-east-1")
            .to_owned();
        let force_path_style = r.bool("S3_FORCE_PATH_STYLE", endpoint.is_some());
        let s3 = S3Config {
            endpoint,
            access_key_id: r.raw("AWS_ACCESS_KEY_ID").map(str::to_owned),
            secret_access_key: r.raw("AWS_SECRET_ACCESS_KEY").map(str::to_owned),
            region,
            force_path_style,
        };
        r.finish(Self {
            driver,
            dir,
            create_buckets,
            url_expiry,
            quarantine_retain,
            signing_key,
            signing_key_file: data_dir.join("signing.key"),
            buckets,
            s3,
        })
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_picks_s3_and_path_style() {
        let env: EnvMap = [("S3_ENDPOINT_URL".to_string(), "minio:9000".to_string())].into();
        let c = StorageConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        assert_eq!(c.driver, StorageDriver::S3);
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://minio:9000"));
        assert!(c.s3.force_path_style);
        assert!(!c.create_buckets);
        let c = StorageConfig::from_env(&EnvMap::new(), std::path::Path::new("/d")).unwrap();
        assert_eq!(c.driver, StorageDriver::LocalDisk);
        assert_eq!(c.dir, PathBuf::from("/d/storage"));
        assert!(c.create_buckets);
    }

    #[test]
    fn signing_key_is_kept_in_the_data_dir_even_with_another_storage_dir() {
        let env: EnvMap = [("STORAGE_DIR".to_string(), "/elsewhere".to_string())].into();
        let c = StorageConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        assert_eq!(c.signing_key_file, PathBuf::from("/d/signing.key"));
        assert_eq!(c.signing_key, None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let env: EnvMap = [
            ("AWS_SECRET_ACCESS_KEY".to_string(), "s3cr3t".to_string()),
            ("STORAGE_URL_SIGNING_KEY".to_string(), "k3y".to_string()),
        ]
        .into();
        let c = StorageConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("k3y"));
    }
}
