//! The documents and the code stay in step: the README's configuration table and the
//! configuration structs, and the dependency direction and the workspace (`architecture`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

#[path = "architecture/mod.rs"]
mod architecture;

use std::collections::BTreeSet;

#[test]
fn readme_table_lists_exactly_the_variables_the_config_reads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    let read: BTreeSet<String> = intake_core::config::documented_variables()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "variables read but not in the README table: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "README rows no configuration reads: {extra:?}"
    );
}
