//! `intake man`: the manual page (roff, `man -l -` renders it), written from the same clap
//! definition as `--help`, so every subcommand, flag and listed variable is in it.

use std::fmt::Write as _;

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    text.lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn arguments(out: &mut String, command: &clap::Command) {
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let mut names = Vec::new();
        if let Some(short) = arg.get_short() {
            names.push(format!("\\-{short}"));
        }
        if let Some(long) = arg.get_long() {
            names.push(format!("\\-\\-{}", escape(long)));
        }
        if names.is_empty() {
            names.push(escape(&arg.get_id().to_string().to_uppercase()));
        }
        let _ = writeln!(out, ".TP\n\\fB{}\\fR", names.join(", "));
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            let _ = writeln!(out, "{}", escape(&help.to_string()));
        }
    }
}

fn subcommands(out: &mut String, command: &clap::Command, path: &str) {
    let mut subs: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    subs.sort_by_key(|s| s.get_display_order());
    for sub in subs {
        let name = format!("{path} {}", sub.get_name());
        let _ = writeln!(out, ".SS \"{}\"", escape(&name));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}", escape(&about.to_string()));
        }
        arguments(out, sub);
        if let Some(after) = sub.get_after_long_help().or(sub.get_after_help()) {
            let _ = writeln!(out, ".PP\n.nf\n{}\n.fi", escape(&after.to_string()));
        }
        subcommands(out, sub, &name);
    }
}

/// The manual page of `command` (the whole CLI).
pub fn render(command: &clap::Command) -> String {
    // Built, so that the generated --help and --version are there too.
    let mut command = command.clone();
    command.build();
    let command = &command;
    let name = command.get_name();
    let mut out = String::new();
    let version = command.get_version().unwrap_or_default();
    let _ = writeln!(
        out,
        ".TH {} 1 \"\" \"{} {}\" \"User Commands\"",
        name.to_uppercase(),
        name,
        escape(version)
    );
    let _ = writeln!(
        out,
        ".SH NAME\n{} \\- {}",
        name,
        escape(
            &command
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    );
    let _ = writeln!(
        out,
        ".SH SYNOPSIS\n\\fB{name}\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]"
    );
    let _ = writeln!(
        out,
        ".SH DESCRIPTION\nConfiguration comes from environment variables; each service's section lists those it reads. A bad value stops start\\-up with exit code 2, naming the variable."
    );
    let _ = writeln!(out, ".SH OPTIONS");
    arguments(&mut out, command);
    let _ = writeln!(out, ".SH COMMANDS");
    subcommands(&mut out, command, name);
    out
}
