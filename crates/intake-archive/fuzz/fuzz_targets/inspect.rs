//! Feeds arbitrary bytes to `intake_archive::inspect` through a temporary file: any input must
//! end in a summary or a typed error, never a panic, a hang or unbounded memory.

#![no_main]

use std::io::Write;
use std::time::Duration;

use intake_archive::{inspect, Limits, SpecialFiles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let limits = Limits {
        max_unpacked_size: 64 << 20,
        max_files: 1000,
        max_file_size: 16 << 20,
        max_depth: 32,
        timeout: Duration::from_secs(5),
        special_files: SpecialFiles::Skip,
    };
    let _ = inspect(file.path(), &limits);
});
