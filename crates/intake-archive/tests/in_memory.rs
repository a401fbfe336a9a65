//! `extract_bytes_matching` keeps what `extract_matching` writes, and refuses what it refuses
//! with the same reason code: one archive, both ways, compared.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use intake_archive::{
    extract_bytes_matching, extract_matching, ArchiveError, Limits, SpecialFiles,
};
use intake_testkit::archives::{gzip, sample_tar, zip_bomb, TarBuilder, ZipBuilder};

fn limits() -> Limits {
    Limits {
        max_unpacked_size: 4 << 20,
        max_files: 100,
        max_file_size: 2 << 20,
        max_depth: 16,
        timeout: Duration::from_secs(30),
        special_files: SpecialFiles::Skip,
    }
}

/// Every regular file below `dir`, by `/`-separated relative path, with its content.
fn files_on_disk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        assert!(!meta.file_type().is_symlink());
        if meta.is_dir() {
            files_on_disk(&entry.path(), &rel, out);
        } else {
            out.insert(rel, std::fs::read(entry.path()).unwrap());
        }
    }
}

type Outcome = Result<(BTreeMap<String, Vec<u8>>, intake_archive::Summary), String>;

/// Extracts `bytes` on disk and in memory with the same predicate; returns both outcomes (files
/// and summary, or the error's code).
fn both(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> (Outcome, Outcome) {
    let root = tempfile::tempdir().unwrap();
    let archive = intake_testkit::archives::write(root.path(), "archive", bytes);
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let disk = extract_matching(&archive, &dest, &limits(), keep)
        .map(|x| {
            let mut files = BTreeMap::new();
            files_on_disk(&dest, "", &mut files);
            assert_eq!(x.files, files.keys().cloned().collect::<Vec<_>>());
            (files, x.summary)
        })
        .map_err(|e| e.code().to_owned());
    let memory = extract_bytes_matching(bytes.to_vec(), &limits(), keep)
        .map(|x| (x.files, x.summary))
        .map_err(|e| e.code().to_owned());
    (disk, memory)
}

fn same(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> Outcome {
    let (disk, memory) = both(bytes, keep);
    assert_eq!(disk, memory);
    disk
}

#[test]
fn good_archives_keep_the_same_files() {
    let zip = ZipBuilder::new()
        .dir("w/")
        .file("w/data/hostname", b"web01\n")
        .stored("w/uname", b"Linux\n")
        .finish();
    for bytes in [sample_tar(), gzip(&sample_tar()), zip] {
        let all = same(&bytes, &|_| true).unwrap();
        assert!(!all.0.is_empty());
        let some = same(&bytes, &|p| p.ends_with("hostname")).unwrap();
        assert_eq!(some.0.len(), 1);
        assert_eq!(some.1, all.1, "the summary counts every entry either way");
    }
}

#[test]
fn duplicates_links_and_conflicts_end_the_same() {
    let cases = [
        TarBuilder::new()
            .file("./a.txt", b"first")
            .file("a.txt", b"second")
            .file_bytes(b"bad\xffname", b"skipped")
            .finish(),
        TarBuilder::new()
            .file("a.txt", b"content")
            .hardlink("b.txt", "a.txt")
            .hardlink("a.txt", "a.txt")
            .finish(),
        TarBuilder::new()
            .file("root/data/hostname", b"web01\n")
            .symlink("root/hostname", "data/hostname")
            .file("root/x", b"x")
            .symlink("root/x", "data/hostname")
            .finish(),
        // A file where a directory goes, and a directory where a file goes.
        TarBuilder::new().file("a", b"a").dir("a").finish(),
        TarBuilder::new()
            .file("a", b"a")
            .dir("a")
            .file("a/b", b"b")
            .finish(),
        TarBuilder::new().dir("a").file("a", b"a").finish(),
        TarBuilder::new().file("a/b", b"b").file("a", b"a").finish(),
    ];
    for tar in cases {
        same(&tar, &|_| true).ok();
        same(&tar, &|p| p != "a").ok();
    }
}

#[test]
fn refused_archives_are_refused_with_the_same_code() {
    let mut many = TarBuilder::new();
    for i in 0..150 {
        many = many.file(&format!("f{i}"), b"x");
    }
    let big: Vec<u8> = (0..700_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unsafe_path",
            gzip(
                &TarBuilder::new()
                    .file("fine.txt", b"fine")
                    .file("../escaped.txt", b"x")
                    .finish(),
            ),
        ),
        (
            "unsafe_path",
            TarBuilder::new().file("/etc/x", b"x").finish(),
        ),
        (
            "unsafe_path",
            TarBuilder::new()
                .symlink("evil", "/etc")
                .file("evil/pwned", b"x")
                .finish(),
        ),
        (
            "unsafe_path",
            TarBuilder::new()
                .file("a.txt", b"a")
                .hardlink("h", "/etc/passwd")
                .finish(),
        ),
        ("too_many_files", many.finish()),
        (
            "path_too_deep",
            TarBuilder::new()
                .file(&(vec!["d"; 40].join("/") + "/f"), b"x")
                .finish(),
        ),
        ("file_too_large", zip_bomb(8 << 20)),
        ("unpacked_too_large", gzip(&three_big_files())),
        (
            "file_too_large",
            gzip(&TarBuilder::new().file("big.bin", &big).finish()),
        ),
        ("corrupt_archive", {
            let g = gzip(&sample_tar());
            g[..g.len() / 2].to_vec()
        }),
        (
            "unsupported_format",
            b"just some text, not an archive".to_vec(),
        ),
        ("empty_archive", TarBuilder::new().dir("only").finish()),
    ];
    for (code, bytes) in cases {
        for keep in [&(|_: &str| true) as &dyn Fn(&str) -> bool, &|_| false] {
            let (disk, memory) = both(&bytes, keep);
            assert_eq!(disk.as_ref().map(|_| ()), Err(&code.to_owned()), "{code}");
            assert_eq!(memory.map(|_| ()), Err(code.to_owned()), "{code}");
        }
    }
}

/// 4.5 MiB in three files: over the 4 MiB unpacked limit, each under the 2 MiB file limit.
fn three_big_files() -> Vec<u8> {
    let data = vec![7u8; (1 << 20) + (1 << 19)];
    TarBuilder::new()
        .file("a.bin", &data)
        .file("b.bin", &data)
        .file("c.bin", &data)
        .finish()
}

#[test]
fn kept_content_counts_against_the_unpacked_limit() {
    let e = extract_bytes_matching(three_big_files(), &limits(), &|_| true).unwrap_err();
    assert!(matches!(e, ArchiveError::TooLarge { .. }), "{e:?}");
}
