//! Hostile archives through the engine's extraction (spec pipeline.md §6): each ends in its typed
//! extract error, nothing is written outside the work directory, memory and time stay bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use intake_core::config::EnvMap;
use intake_pipeline::engine::Engine;
use intake_testkit::archives::{bzip2, gzip, write, xz, zip_bomb, TarBuilder, ZipBuilder};

fn engine(dir: &Path) -> Engine {
    let yaml = "service:\n  engine:\n    extract: {max_unpacked_size: 4MiB, max_files: 100, max_file_size: 1MiB, max_depth: 8, timeout: 10s}\n";
    Engine::build(&intake_pipeline::load_config_str(yaml, dir, &EnvMap::new()).unwrap()).unwrap()
}

fn reason(engine: &Engine, dir: &Path, name: &str, bytes: &[u8]) -> &'static str {
    let archive = write(dir, name, bytes);
    let out = dir.join(format!("{name}.d"));
    match engine.extract(&archive, &out, Instant::now() + Duration::from_secs(10)) {
        Ok(_) => "ok",
        Err(e) => {
            assert_eq!(e.stage.as_str(), "extract");
            e.reason
        }
    }
}

#[test]
fn each_hostile_archive_has_its_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let big = vec![0u8; 3 << 19];
    let mut many = TarBuilder::new();
    for i in 0..150 {
        many = many.file(&format!("f{i}"), b"x");
    }
    let mut tar_bomb = TarBuilder::new();
    for i in 0..5 {
        tar_bomb = tar_bomb.file(&format!("z{i}"), &vec![0u8; 1 << 20]);
    }
    let deep = format!("{}file", "d/".repeat(20));
    let ok = TarBuilder::new()
        .file("config/id", b"c25da893-5ba1-4229-9432-c8ec9334c4a0")
        .finish();
    let mut truncated = gzip(&ok);
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("ok.tar.gz", gzip(&ok), "ok"),
        ("ok.tar.xz", xz(&ok), "ok"),
        ("ok.tar.bz2", bzip2(&ok), "ok"),
        (
            "ok.zip",
            ZipBuilder::new().file("config/id", b"x").finish(),
            "ok",
        ),
        ("zipbomb.zip", zip_bomb(64 << 20), "file_too_large"),
        (
            "tarbomb.tar.gz",
            gzip(&tar_bomb.finish()),
            "unpacked_too_large",
        ),
        (
            "big.tar",
            TarBuilder::new().file("big", &big).finish(),
            "file_too_large",
        ),
        ("many.tar", many.finish(), "too_many_files"),
        (
            "dotdot.tar",
            TarBuilder::new().file("a/../../evil", b"x").finish(),
            "unsafe_path",
        ),
        (
            "absolute.tar",
            TarBuilder::new().file("/tmp/evil", b"x").finish(),
            "unsafe_path",
        ),
        (
            "escape.tar",
            TarBuilder::new()
                .symlink("link", "/etc")
                .file("link/passwd", b"x")
                .finish(),
            "unsafe_path",
        ),
        (
            "deep.tar",
            TarBuilder::new().file(&deep, b"x").finish(),
            "path_too_deep",
        ),
        ("truncated.tar.gz", truncated, "corrupt_archive"),
        (
            "text.txt",
            b"hello, not an archive".to_vec(),
            "unsupported_format",
        ),
        (
            "zstd.bin",
            vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0],
            "unsupported_format",
        ),
        (
            "empty.tar",
            TarBuilder::new().dir("only-a-dir").finish(),
            "empty_archive",
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(reason(&e, dir.path(), name, &bytes), expected, "{name}");
    }
    assert!(!Path::new("/tmp/evil").exists());
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn a_single_top_directory_becomes_the_root_and_the_kind_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let wrapped = TarBuilder::new()
        .file(
            "insights-abc/config/id",
            b"C25DA893-5BA1-4229-9432-C8EC9334C4A0\n",
        )
        .file(
            "insights-abc/config/infrastructure.json",
            br#"{"status": {"controlPlaneTopology": "External"}}"#,
        )
        .finish();
    let archive = write(dir.path(), "w.tar", &wrapped);
    let tree = e
        .extract(
            &archive,
            &dir.path().join("w"),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(tree.root, dir.path().join("w/insights-abc"));
    assert_eq!(tree.kind, "hypershift");
    // Selective extraction: what no spec or watcher reads is never written.
    assert!(!tree.root.join("data/unread.txt").exists());
    assert!(tree.root.join("config/id").is_file());
    assert_eq!(
        tree.cluster_id.as_deref(),
        Some("c25da893-5ba1-4229-9432-c8ec9334c4a0")
    );
    let host = write(
        dir.path(),
        "h.tar",
        &TarBuilder::new().file("etc/hostname", b"x").finish(),
    );
    let tree = e
        .extract(
            &host,
            &dir.path().join("h"),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!((tree.kind, tree.cluster_id.as_deref()), ("other", None));
}
