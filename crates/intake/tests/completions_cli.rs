//! Black-box: `intake completions <shell>` prints a completion script naming intake's subcommands,
//! whatever the environment holds.

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
