//! The hostile-archive corpus: every archive is built here, refused with its exact error by both
//! `inspect` and `extract`, and `extract` never writes outside its destination.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intake_archive::{extract, inspect, inspect_bytes, ArchiveError, Format, Limits, SpecialFiles};
use intake_testkit::archives::{bzip2, gzip, sample_tar, xz, zip_bomb, TarBuilder, ZipBuilder};

fn limits() -> Limits {
    Limits {
        max_unpacked_size: 4 << 20,
        max_files: 100,
        max_file_size: 2 << 20,
        max_depth: 16,
        timeout: Duration::from_secs(30),
        special_files: SpecialFiles::Refuse,
    }
}

/// A scratch area: `root/archive`, `root/work/dest` (the extraction target) and
/// `root/work/outside` (what hostile entries aim at).
struct Scratch {
    _root: tempfile::TempDir,
    archive: PathBuf,
    work: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

impl Scratch {
    fn new(bytes: &[u8]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let archive = intake_testkit::archives::write(root.path(), "archive", bytes);
        let work = root.path().join("work");
        let dest = work.join("dest");
        let outside = work.join("outside");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep.txt"), b"untouched").unwrap();
        Self {
            _root: root,
            archive,
            work,
            dest,
            outside,
        }
    }

    /// Every path below `work` except inside `dest`, with its size.
    fn outside_dest(&self) -> BTreeMap<PathBuf, u64> {
        let mut seen = BTreeMap::new();
        walk(&self.work, &self.dest, &mut seen);
        seen
    }
}

fn walk(dir: &Path, skip: &Path, seen: &mut BTreeMap<PathBuf, u64>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        seen.insert(path.clone(), meta.len());
        if meta.is_dir() {
            walk(&path, skip, seen);
        }
    }
}

/// Inspects and extracts `bytes` under `limits`; both must fail the same way, and nothing
/// outside the destination may change.
fn refused_with(bytes: &[u8], limits: &Limits) -> (ArchiveError, ArchiveError) {
    let scratch = Scratch::new(bytes);
    let before = scratch.outside_dest();
    let inspected = inspect(&scratch.archive, limits).expect_err("inspect must refuse");
    let in_memory = inspect_bytes(bytes.to_vec(), limits).expect_err("inspect_bytes must refuse");
    assert_eq!(
        inspected.code(),
        in_memory.code(),
        "inspect {inspected:?} vs inspect_bytes {in_memory:?}"
    );
    let extracted =
        extract(&scratch.archive, &scratch.dest, limits).expect_err("extract must refuse");
    assert_eq!(
        inspected.code(),
        extracted.code(),
        "inspect {inspected:?} vs extract {extracted:?}"
    );
    assert_eq!(
        scratch.outside_dest(),
        before,
        "extract wrote outside its destination"
    );
    assert_eq!(
        std::fs::read(scratch.outside.join("keep.txt")).unwrap(),
        b"untouched"
    );
    assert_no_links(&scratch.dest);
    (inspected, extracted)
}

fn assert_no_links(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            !meta.file_type().is_symlink(),
            "{} is a link",
            path.display()
        );
        if meta.is_dir() {
            assert_no_links(&path);
        }
    }
}

#[test]
fn zip_bomb_is_bounded_by_the_unpacked_limit() {
    let bomb = zip_bomb(64 << 20);
    assert!(
        bomb.len() < 512 << 10,
        "the bomb should be small: {} bytes",
        bomb.len()
    );
    let limits = Limits {
        max_file_size: 1 << 30,
        ..limits()
    };
    let (a, b) = refused_with(&bomb, &limits);
    for e in [a, b] {
        assert!(
            matches!(e, ArchiveError::TooLarge { limit } if limit == 4 << 20),
            "{e:?}"
        );
        assert_eq!(e.code(), "unpacked_too_large");
    }
}

#[test]
fn zip_bomb_hits_the_file_limit_first_when_it_is_lower() {
    let (e, _) = refused_with(
        &zip_bomb(8 << 20),
        &Limits {
            max_unpacked_size: 1 << 30,
            ..limits()
        },
    );
    assert!(
        matches!(e, ArchiveError::FileTooLarge { ref path, limit } if path == "zeros.bin" && limit == 2 << 20)
    );
    assert_eq!(e.code(), "file_too_large");
}

#[test]
fn zip_whose_headers_understate_its_size_is_counted_by_real_bytes() {
    let mut bomb = zip_bomb(8 << 20);
    lie_about_zip_sizes(&mut bomb, 1024);
    let (e, _) = refused_with(
        &bomb,
        &Limits {
            max_file_size: 1 << 30,
            ..limits()
        },
    );
    assert!(matches!(e, ArchiveError::TooLarge { .. }), "{e:?}");
}

/// Rewrites the uncompressed size in every local and central zip header (no zip64 here).
fn lie_about_zip_sizes(bytes: &mut [u8], size: u32) {
    let mut i = 0;
    while i + 4 <= bytes.len() {
        match &bytes[i..i + 4] {
            b"PK\x03\x04" => bytes[i + 22..i + 26].copy_from_slice(&size.to_le_bytes()),
            b"PK\x01\x02" => bytes[i + 24..i + 28].copy_from_slice(&size.to_le_bytes()),
            _ => {}
        }
        i += 1;
    }
}

#[test]
fn tar_bomb_is_bounded_by_the_entry_limit() {
    let mut tar = TarBuilder::new();
    for i in 0..150 {
        tar = tar.file(&format!("f{i:04}"), b"x");
    }
    let tar = tar.finish();
    for bytes in [tar.clone(), gzip(&tar)] {
        let (e, _) = refused_with(&bytes, &limits());
        assert!(
            matches!(e, ArchiveError::TooManyFiles { limit: 100 }),
            "{e:?}"
        );
        assert_eq!(e.code(), "too_many_files");
    }
}

#[test]
fn parent_segments_refuse_the_whole_archive() {
    for name in ["../escaped.txt", "ok/../../escaped.txt", "..\\escaped.txt"] {
        let tar = TarBuilder::new()
            .file("fine.txt", b"fine")
            .file(name, b"pwned")
            .finish();
        let (e, _) = refused_with(&gzip(&tar), &limits());
        assert!(
            matches!(e, ArchiveError::ParentTraversal(ref n) if n == name),
            "{name}: {e:?}"
        );
        assert_eq!(e.code(), "unsafe_path");
    }
    let zip = ZipBuilder::new()
        .file("../zip-escaped.txt", b"pwned")
        .finish();
    let (e, _) = refused_with(&zip, &limits());
    assert!(matches!(e, ArchiveError::ParentTraversal(_)), "{e:?}");
}

#[test]
fn absolute_names_refuse_the_whole_archive() {
    let scratch_target = std::env::temp_dir().join("intake-archive-absolute-test.txt");
    let name = scratch_target.to_str().unwrap().to_owned();
    for name in [name.as_str(), "/etc/intake-archive-test", "C:\\windows\\x"] {
        let tar = TarBuilder::new().file(name, b"pwned").finish();
        let (e, _) = refused_with(&tar, &limits());
        assert!(
            matches!(e, ArchiveError::AbsolutePath(ref n) if n == name),
            "{name}: {e:?}"
        );
        assert_eq!(e.code(), "unsafe_path");
    }
    assert!(!scratch_target.exists());
}

#[test]
fn a_file_through_a_symlink_escapes() {
    let probe = Scratch::new(b"");
    let outside = probe.outside.to_str().unwrap().to_owned();
    for target in [outside.as_str(), "/etc", "../outside"] {
        let tar = TarBuilder::new()
            .symlink("evil", target)
            .file("evil/intake-archive-pwned", b"pwned")
            .finish();
        let (e, _) = refused_with(&gzip(&tar), &limits());
        assert!(
            matches!(e, ArchiveError::LinkEscape { ref path, .. } if path == "evil/intake-archive-pwned"),
            "{target}: {e:?}"
        );
        assert_eq!(e.code(), "unsafe_path");
    }
    assert!(!Path::new("/etc/intake-archive-pwned").exists());
    assert!(!probe.outside.join("intake-archive-pwned").exists());
}

#[test]
fn hardlinks_only_to_earlier_files_inside() {
    for target in ["/etc/passwd", "../outside/keep.txt", "later.txt", "dir"] {
        let tar = TarBuilder::new()
            .dir("dir")
            .file("a.txt", b"a")
            .hardlink("h", target)
            .file("later.txt", b"later")
            .finish();
        let (e, _) = refused_with(&tar, &limits());
        assert!(
            matches!(e, ArchiveError::LinkEscape { ref path, .. } if path == "h"),
            "{target}: {e:?}"
        );
    }
}

#[test]
fn a_hardlink_to_an_earlier_file_is_extracted_as_a_copy() {
    let tar = TarBuilder::new()
        .file("a.txt", b"content")
        .hardlink("b.txt", "a.txt")
        .finish();
    let scratch = Scratch::new(&tar);
    let out = extract(&scratch.archive, &scratch.dest, &limits()).unwrap();
    assert_eq!(out.files, ["a.txt", "b.txt"]);
    assert_eq!(out.summary.unpacked_bytes, 14);
    assert_eq!(
        std::fs::read(scratch.dest.join("b.txt")).unwrap(),
        b"content"
    );
    assert_no_links(&scratch.dest);
}

#[test]
fn deep_nesting_is_refused() {
    let deep = vec!["d"; 40].join("/") + "/f.txt";
    let (e, _) = refused_with(&TarBuilder::new().file(&deep, b"deep").finish(), &limits());
    assert!(
        matches!(e, ArchiveError::TooDeep { limit: 16, .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), "path_too_deep");
}

#[test]
fn names_over_4096_bytes_are_refused() {
    let long = "n".repeat(5000);
    let (e, _) = refused_with(&TarBuilder::new().file(&long, b"x").finish(), &limits());
    assert!(
        matches!(e, ArchiveError::NameTooLong(n) if n > 4096),
        "{e:?}"
    );
    assert_eq!(e.code(), "unsafe_path");
}

fn big_tar() -> Vec<u8> {
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    TarBuilder::new()
        .file("a.txt", b"a")
        .file("big.bin", &data)
        .finish()
}

#[test]
fn truncated_gzip_is_corrupt() {
    let gz = gzip(&big_tar());
    let (e, _) = refused_with(&gz[..gz.len() / 2], &limits());
    assert!(matches!(e, ArchiveError::Truncated(_)), "{e:?}");
    assert_eq!(e.code(), "corrupt_archive");
}

#[test]
fn truncated_tar_is_corrupt() {
    let tar = big_tar();
    let (e, _) = refused_with(&tar[..tar.len() / 2], &limits());
    assert!(matches!(e, ArchiveError::Truncated(_)), "{e:?}");
    assert_eq!(e.code(), "corrupt_archive");
}

#[test]
fn damaged_compressed_data_is_corrupt() {
    let mut gz = gzip(&big_tar());
    let middle = gz.len() / 2;
    for b in &mut gz[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let (e, _) = refused_with(&gz, &limits());
    assert_eq!(e.code(), "corrupt_archive", "{e:?}");
}

#[test]
fn device_files_and_fifos_are_refused() {
    let tar = TarBuilder::new()
        .file("ok.txt", b"ok")
        .char_device("dev/null2")
        .finish();
    let (e, _) = refused_with(&tar, &limits());
    assert!(
        matches!(e, ArchiveError::SpecialFile { ref path, kind: "character device" } if path == "dev/null2")
    );
    assert_eq!(e.code(), "special_file");
    let tar = TarBuilder::new()
        .file("ok.txt", b"ok")
        .fifo("pipe")
        .finish();
    let (e, _) = refused_with(&tar, &limits());
    assert!(
        matches!(e, ArchiveError::SpecialFile { kind: "FIFO", .. }),
        "{e:?}"
    );
}

#[test]
fn special_files_can_be_skipped_instead() {
    let tar = TarBuilder::new()
        .file("ok.txt", b"ok")
        .char_device("dev/null2")
        .fifo("pipe")
        .finish();
    let scratch = Scratch::new(&tar);
    let limits = Limits {
        special_files: SpecialFiles::Skip,
        ..limits()
    };
    let out = extract(&scratch.archive, &scratch.dest, &limits).unwrap();
    assert_eq!((out.summary.files, out.summary.skipped), (1, 2));
    assert_eq!(out.files, ["ok.txt"]);
    assert!(!scratch.dest.join("pipe").exists());
}

#[test]
fn not_an_archive() {
    for bytes in [
        b"just some text, not an archive".to_vec(),
        Vec::new(),
        gzip(b"plain text in gzip"),
    ] {
        let (e, _) = refused_with(&bytes, &limits());
        assert!(matches!(e, ArchiveError::NotAnArchive(_)), "{e:?}");
        assert_eq!(e.code(), "unsupported_format");
    }
}

#[test]
fn nested_compression_is_unsupported() {
    let (e, _) = refused_with(&gzip(&gzip(&sample_tar())), &limits());
    assert!(matches!(e, ArchiveError::Unsupported(_)), "{e:?}");
    assert_eq!(e.code(), "unsupported_format");
}

#[test]
fn an_archive_without_regular_files_is_empty() {
    let (e, _) = refused_with(&TarBuilder::new().dir("only-a-dir").finish(), &limits());
    assert!(matches!(e, ArchiveError::Empty), "{e:?}");
    assert_eq!(e.code(), "empty_archive");
}

#[test]
fn a_file_over_the_single_file_limit() {
    let tar = TarBuilder::new()
        .file("big.bin", &vec![7u8; 3 << 20])
        .finish();
    let (e, _) = refused_with(
        &xz(&tar),
        &Limits {
            max_unpacked_size: 1 << 30,
            ..limits()
        },
    );
    assert!(
        matches!(e, ArchiveError::FileTooLarge { ref path, limit } if path == "big.bin" && limit == 2 << 20)
    );
}

#[test]
fn the_deadline_is_enforced() {
    let (e, _) = refused_with(
        &gzip(&sample_tar()),
        &Limits {
            timeout: Duration::ZERO,
            ..limits()
        },
    );
    assert!(matches!(e, ArchiveError::Deadline(_)), "{e:?}");
    assert_eq!(e.code(), "deadline_exceeded");
}

fn sample_zip() -> Vec<u8> {
    ZipBuilder::new()
        .dir("insights-web01/")
        .dir("insights-web01/data/")
        .file("insights-web01/data/hostname", b"web01\n")
        .stored("insights-web01/data/uname", b"Linux web01 6.1.0 x86_64\n")
        .file(
            "insights-web01/branch_info",
            b"{\"remote_branch\": -1, \"remote_leaf\": -1}\n",
        )
        .finish()
}

#[test]
fn good_archives_in_every_format() {
    let tar = sample_tar();
    let cases = [
        (Format::TarGz, gzip(&tar)),
        (Format::TarXz, xz(&tar)),
        (Format::TarBz2, bzip2(&tar)),
        (Format::Tar, tar.clone()),
        (Format::Zip, sample_zip()),
    ];
    for (format, bytes) in cases {
        let scratch = Scratch::new(&bytes);
        let before = scratch.outside_dest();
        let summary = inspect(&scratch.archive, &limits()).unwrap();
        assert_eq!(
            inspect_bytes(bytes.clone(), &limits()).unwrap(),
            summary,
            "{format} in memory"
        );
        assert_eq!(summary.format, format);
        assert_eq!(
            (summary.files, summary.dirs, summary.entries),
            (3, 2, 5),
            "{format}"
        );
        assert_eq!(summary.unpacked_bytes, 6 + 25 + 41, "{format}");
        assert_eq!(summary.top_level, ["insights-web01"]);
        let out = extract(&scratch.archive, &scratch.dest, &limits()).unwrap();
        assert_eq!(out.summary, summary);
        assert_eq!(
            out.files,
            [
                "insights-web01/branch_info",
                "insights-web01/data/hostname",
                "insights-web01/data/uname"
            ]
        );
        let hostname = scratch.dest.join("insights-web01/data/hostname");
        assert_eq!(std::fs::read(&hostname).unwrap(), b"web01\n");
        assert_eq!(scratch.outside_dest(), before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&hostname), 0o600, "{format}");
            assert_eq!(
                mode(&scratch.dest.join("insights-web01/data")),
                0o700,
                "{format}"
            );
        }
    }
}

#[test]
fn symlinks_are_recorded_never_created() {
    let tar = TarBuilder::new()
        .file("root/data/hostname", b"web01\n")
        .symlink("root/hostname", "data/hostname")
        .symlink("root/localtime", "/usr/share/zoneinfo/UTC")
        .finish();
    let scratch = Scratch::new(&gzip(&tar));
    let out = extract(&scratch.archive, &scratch.dest, &limits()).unwrap();
    assert_eq!((out.summary.symlinks, out.summary.escaping_links), (2, 1));
    assert_eq!(out.links[0].resolved.as_deref(), Some("root/data/hostname"));
    assert_eq!(out.links[1].target, "/usr/share/zoneinfo/UTC");
    assert_eq!(out.links[1].resolved, None);
    assert!(std::fs::symlink_metadata(scratch.dest.join("root/hostname")).is_err());
    assert_no_links(&scratch.dest);
}

#[test]
fn later_duplicates_win_and_odd_names_are_skipped() {
    let tar = TarBuilder::new()
        .file("./a.txt", b"first")
        .file("a.txt", b"second")
        .file_bytes(b"bad\xffname", b"skipped")
        .finish();
    let scratch = Scratch::new(&tar);
    let out = extract(&scratch.archive, &scratch.dest, &limits()).unwrap();
    assert_eq!(out.files, ["a.txt"]);
    assert_eq!(out.summary.skipped, 1);
    assert_eq!(
        std::fs::read(scratch.dest.join("a.txt")).unwrap(),
        b"second"
    );
}

#[test]
fn zip_entry_counts_are_checked_before_the_central_directory_is_read() {
    let mut zip = ZipBuilder::new();
    for i in 0..150 {
        zip = zip.stored(&format!("f{i:04}"), b"x");
    }
    let (e, _) = refused_with(&zip.finish(), &limits());
    assert!(
        matches!(e, ArchiveError::TooManyFiles { limit: 100 }),
        "{e:?}"
    );

    // A forged end record claiming 60000 entries is refused on its word, before any parsing.
    let mut forged = ZipBuilder::new().stored("a.txt", b"a").finish();
    let at = forged.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    forged[at + 8..at + 12].copy_from_slice(&[0x60, 0xea, 0x60, 0xea]);
    let (e, _) = refused_with(&forged, &limits());
    assert!(
        matches!(e, ArchiveError::TooManyFiles { limit: 100 }),
        "{e:?}"
    );
}

#[test]
fn extract_matching_writes_only_what_is_kept_but_checks_everything() {
    let tar = TarBuilder::new()
        .file("root/config/id", b"cluster")
        .file("root/other.txt", b"other")
        .hardlink("root/config/id2", "root/config/id")
        .hardlink("root/other2.txt", "root/other.txt")
        .finish();
    let scratch = Scratch::new(&gzip(&tar));
    let keep = |p: &str| p.starts_with("root/config");
    let out = intake_archive::extract_matching(&scratch.archive, &scratch.dest, &limits(), &keep)
        .unwrap();
    assert_eq!(out.files, ["root/config/id", "root/config/id2"]);
    assert_eq!(out.summary.files, 4);
    assert!(!scratch.dest.join("root/other.txt").exists());

    let hostile = TarBuilder::new()
        .file("skip/me", b"x")
        .file("../x", b"x")
        .finish();
    let scratch = Scratch::new(&hostile);
    let e =
        intake_archive::extract_matching(&scratch.archive, &scratch.dest, &limits(), &|_| false)
            .unwrap_err();
    assert!(matches!(e, ArchiveError::ParentTraversal(_)), "{e:?}");
}

/// The gzip of `tar` with its 8-byte trailer (CRC-32, then ISIZE, little-endian) changed by `damage`.
fn gzip_with_trailer(tar: &[u8], damage: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut gz = gzip(tar);
    let len = gz.len();
    damage(&mut gz[len - 8..]);
    gz
}

#[test]
fn gzip_with_a_wrong_crc_is_corrupt() {
    let gz = gzip_with_trailer(&sample_tar(), |t| t[0] ^= 0xff);
    let (e, _) = refused_with(&gz, &limits());
    assert!(matches!(e, ArchiveError::Corrupt(_)), "{e:?}");
    assert_eq!(e.code(), "corrupt_archive");
}

#[test]
fn gzip_with_a_wrong_isize_is_corrupt() {
    let gz = gzip_with_trailer(&sample_tar(), |t| t[4] = t[4].wrapping_add(1));
    let (e, _) = refused_with(&gz, &limits());
    assert!(matches!(e, ArchiveError::Corrupt(_)), "{e:?}");
    assert_eq!(e.code(), "corrupt_archive");
}

#[test]
fn gzip_without_its_trailer_is_refused() {
    let gz = gzip(&sample_tar());
    let (e, _) = refused_with(&gz[..gz.len() - 8], &limits());
    assert_eq!(e.code(), "corrupt_archive", "{e:?}");
}

#[test]
fn a_corrupt_second_gzip_member_is_refused() {
    // The tar ends inside the first member; a damaged member after it must still be noticed.
    let mut gz = gzip(&sample_tar());
    let mut second = gzip(&big_tar());
    let middle = second.len() / 2;
    for b in &mut second[middle..middle + 32] {
        *b ^= 0xa5;
    }
    gz.extend_from_slice(&second);
    let (e, _) = refused_with(&gz, &limits());
    assert_eq!(e.code(), "corrupt_archive", "{e:?}");
}

#[test]
fn a_sound_gzip_still_passes() {
    let summary = inspect_bytes(gzip(&sample_tar()), &limits()).unwrap();
    assert!(summary.files > 0, "{summary:?}");
}
