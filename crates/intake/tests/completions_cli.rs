//! Black-box: `intake completions <shell>` prints a completion script naming intake's subcommands,
//! whatever the environment holds; `intake man` prints the manual page of the whole command line;
//! each service's `--help` lists the variables it reads; `--version` says the commit and build date.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::process::Command;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["completions", shell])
        // A bad configuration must not stop it: completions read none.
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_for_each_shell() {
    let bash = completions("bash");
    assert!(bash.contains("_intake()"), "{bash}");
    assert!(bash.contains("complete -F _intake"), "{bash}");
    for sub in ["serve", "topics", "--until-end", "completions"] {
        assert!(bash.contains(sub), "bash script lacks {sub}");
    }
    assert!(completions("zsh").starts_with("#compdef intake"));
    assert!(completions("fish").contains("complete -c intake"));
    let bad = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

fn intake(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_manual_page_covers_every_subcommand_and_renders() {
    let page = intake(&["man"]);
    assert!(page.starts_with(".TH INTAKE 1"), "{page}");
    for sub in [
        "serve",
        "ingress",
        "validator",
        "tracker",
        "tracker mock",
        "pipeline",
        "pipeline replay",
        "topics",
        "topics tail",
        "upload",
        "load",
        "config",
        "man",
        "completions",
    ] {
        assert!(
            page.contains(&format!(".SS \"intake {sub}\"")),
            "no section for intake {sub}"
        );
    }
    assert!(page.contains("\\-\\-until\\-end"), "flags are listed");
    assert!(
        page.contains("TRACKER_DATABASE_URL"),
        "variables are listed"
    );
    // Rendered by man(1) where it is installed: no roff warnings, every section there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("intake.1");
    std::fs::write(&file, &page).unwrap();
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "100")
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains("intake tracker mock"), "{text}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{out:?}"
        );
    }
}

#[test]
fn each_service_help_lists_the_variables_it_reads() {
    let tracker = intake(&["tracker", "--help"]);
    for name in [
        "TRACKER_DATABASE_URL",
        "TRACKER_LISTEN",
        "KAFKA_BROKERS",
        "LOG_LEVEL",
    ] {
        assert!(
            tracker.contains(name),
            "tracker --help lacks {name}:\n{tracker}"
        );
    }
    assert!(
        !tracker.contains("INGRESS_MAX_SIZE"),
        "only the tracker's own"
    );
    let ingress = intake(&["ingress", "--help"]);
    assert!(ingress.contains("INGRESS_MAX_SIZE") && ingress.contains("S3_ENDPOINT_URL"));
    assert!(!ingress.contains("TRACKER_DATABASE_URL"));
    let serve = intake(&["serve", "--help"]);
    for name in [
        "INGRESS_LISTEN",
        "TRACKER_DATABASE_URL",
        "VALIDATOR_SERVICES",
        "PIPELINE_LISTEN",
    ] {
        assert!(serve.contains(name), "serve --help lacks {name}");
    }
    for service in ["validator", "pipeline"] {
        assert!(intake(&[service, "--help"]).contains("Environment variables read"));
    }
}

#[test]
fn version_names_the_commit_and_build_date() {
    let version = intake(&["--version"]);
    assert!(
        version.starts_with(&format!("intake {} (commit ", env!("CARGO_PKG_VERSION")))
            && version.contains(", built "),
        "{version}"
    );
}
