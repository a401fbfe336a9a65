//! What `intake --version` says: the package version, the commit and the build date, baked in at
//! build time from `GIT_COMMIT` and `BUILD_DATE` (deploy/Dockerfile passes them as build arguments).

use std::sync::OnceLock;

/// `0.3.1 (commit 1a2b3c4d5e6f, built 2026-12-02T14:00:00Z)`; a value not given reads `unknown`.
pub fn line(package: &str, commit: Option<&str>, built: Option<&str>) -> String {
    let shown = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("unknown")
            .to_owned()
    };
    format!(
        "{package} (commit {}, built {})",
        shown(commit),
        shown(built)
    )
}

/// This binary's [`line()`].
pub fn current() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        line(
            env!("CARGO_PKG_VERSION"),
            option_env!("GIT_COMMIT"),
            option_env!("BUILD_DATE"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn shows_the_baked_values_or_unknown() {
        assert_eq!(
            line("1.2.3", Some("abc123"), Some("2026-12-02")),
            "1.2.3 (commit abc123, built 2026-12-02)"
        );
        assert_eq!(
            line("1.2.3", None, Some(" ")),
            "1.2.3 (commit unknown, built unknown)"
        );
    }
}
