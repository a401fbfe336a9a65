//! The download-URL key kept in the data directory when `STORAGE_URL_SIGNING_KEY` is unset
//! (storage.md, "Download URLs"): generated once, written with mode 0600, reused at every start so
//! that links issued before a restart still verify after it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StorageError;

/// A key read from (or just written to) its file.
#[derive(Clone)]
pub struct KeptKey {
    /// The file's text without surrounding whitespace: the same bytes `STORAGE_URL_SIGNING_KEY`
    /// would hold if the operator copied the file's content into it.
    pub key: String,
    pub path: PathBuf,
    /// Whether this start generated it.
    pub created: bool,
}

impl std::fmt::Debug for KeptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptKey")
            .field("path", &self.path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Reads the key at `path`, or generates it there (32 random bytes as 64 hex characters, mode
/// 0600) when the file does not exist. Two processes starting together agree on one key: the file
/// is written aside, synced, and linked into place, which fails for the second one, which then reads
/// the first one's key.
pub fn load_or_create(path: &Path) -> Result<KeptKey, StorageError> {
    // Two rounds: the second reads the key another process linked in between.
    for _ in 0..2 {
        match std::fs::read_to_string(path) {
            Ok(text) => return read(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(describe(path), e)),
        }
        if let Some(key) = create(path)? {
            return Ok(KeptKey {
                key,
                path: path.to_owned(),
                created: true,
            });
        }
    }
    Err(StorageError::Config(format!(
        "{} appeared and vanished while it was being created; start again",
        path.display()
    )))
}

fn describe(path: &Path) -> String {
    format!("the signing key file {}", path.display())
}

fn read(path: &Path, text: &str) -> Result<KeptKey, StorageError> {
    let key = text.trim();
    if key.is_empty() {
        return Err(StorageError::Config(format!(
            "{} is empty: delete it to generate a new key, or set STORAGE_URL_SIGNING_KEY",
            path.display()
        )));
    }
    warn_if_readable_by_others(path);
    Ok(KeptKey {
        key: key.to_owned(),
        path: path.to_owned(),
        created: false,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the signing key file can be read by others than its owner; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes a new key beside `path` and links it into place. `None` when another process won.
fn create(path: &Path) -> Result<Option<String>, StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(describe(dir), e))?;
    let bytes: [u8; 32] = rand::random();
    let key = hex::encode(bytes);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "signing.key".to_owned());
    let aside = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    let written = write_private(&aside, &key);
    let linked = written.and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => {
            sync_dir(dir);
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(StorageError::io(describe(path), e)),
    }
}

fn write_private(path: &Path, key: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{key}\n").as_bytes())?;
    file.sync_all()
}

/// Makes the new name durable; a failure only risks a second key after a power loss.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("signing.key");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        assert_eq!(first.key.len(), 64);
        assert!(first.key.bytes().all(|b| b.is_ascii_hexdigit()));
        let second = load_or_create(&path).unwrap();
        assert!(!second.created);
        assert_eq!(first.key, second.key);
        // Nothing is left aside.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("signing.key")]);
    }

    #[cfg(unix)]
    #[test]
    fn written_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_operator_written_key_is_used_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "  my-shared-key\n").unwrap();
        let kept = load_or_create(&path).unwrap();
        assert_eq!(kept.key, "my-shared-key");
        assert!(!kept.created);
    }

    #[test]
    fn an_empty_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "\n").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("signing.key"), "{err}");
    }

    #[test]
    fn concurrent_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).unwrap().key))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]));
    }
}
