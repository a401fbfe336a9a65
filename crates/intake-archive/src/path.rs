//! Entry names made safe: normalised into relative components, or the reason they cannot be.

use crate::ArchiveError;

/// Longest entry name accepted, in bytes (spec pipeline.md §6.2).
pub const MAX_NAME_LEN: usize = 4096;

/// What an entry name turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryName {
    /// A relative path as `/`-separated components, none empty, `.` or `..`.
    Path(Vec<String>),
    /// Names the archive root itself (`./`, `.`); nothing to create.
    Root,
    /// Not UTF-8, or holds NUL: skipped and counted.
    Unreadable,
}

/// Normalises a raw entry name: `\` is a separator; empty and `.` segments drop. An absolute
/// path, a drive letter, a `..` segment or a name over [`MAX_NAME_LEN`] bytes is an error that
/// refuses the whole archive.
pub(crate) fn normalize(raw: &[u8]) -> Result<EntryName, ArchiveError> {
    if raw.len() > MAX_NAME_LEN {
        return Err(ArchiveError::NameTooLong(raw.len()));
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Ok(EntryName::Unreadable);
    };
    if text.contains('\0') {
        return Ok(EntryName::Unreadable);
    }
    if text.starts_with('/') || text.starts_with('\\') || has_drive_letter(text) {
        return Err(ArchiveError::AbsolutePath(text.to_owned()));
    }
    let mut parts = Vec::new();
    for segment in text.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => return Err(ArchiveError::ParentTraversal(text.to_owned())),
            s => parts.push(s.to_owned()),
        }
    }
    if parts.is_empty() {
        Ok(EntryName::Root)
    } else {
        Ok(EntryName::Path(parts))
    }
}

fn has_drive_letter(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Joins components back into the `/`-separated form used in summaries and errors.
pub(crate) fn join(parts: &[String]) -> String {
    parts.join("/")
}

/// Resolves a symbolic link's target lexically against the directory holding the link. `None`
/// when the target is absolute or climbs above the archive root.
pub(crate) fn resolve_link_target(link: &[String], target: &str) -> Option<Vec<String>> {
    if target.starts_with('/') || target.starts_with('\\') || has_drive_letter(target) {
        return None;
    }
    let mut parts: Vec<String> = link[..link.len().saturating_sub(1)].to_vec();
    for segment in target.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s.to_owned()),
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Vec<String> {
        match normalize(raw.as_bytes()).unwrap() {
            EntryName::Path(p) => p,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn separators_and_dots_normalise() {
        assert_eq!(path("./a/b.txt"), ["a", "b.txt"]);
        assert_eq!(path("a\\b//./c/"), ["a", "b", "c"]);
        assert_eq!(normalize(b"./").unwrap(), EntryName::Root);
    }

    #[test]
    fn unsafe_names_refuse() {
        assert!(matches!(
            normalize(b"/etc/passwd"),
            Err(ArchiveError::AbsolutePath(_))
        ));
        assert!(matches!(
            normalize(b"C:\\x"),
            Err(ArchiveError::AbsolutePath(_))
        ));
        assert!(matches!(
            normalize(b"a/../../x"),
            Err(ArchiveError::ParentTraversal(_))
        ));
        assert!(matches!(
            normalize(&[b'a'; 4097]),
            Err(ArchiveError::NameTooLong(4097))
        ));
    }

    #[test]
    fn unreadable_names_are_flagged() {
        assert_eq!(normalize(b"a\xffb").unwrap(), EntryName::Unreadable);
        assert_eq!(normalize(b"a\0b").unwrap(), EntryName::Unreadable);
    }

    #[test]
    fn link_targets_resolve_lexically() {
        let link = vec!["d".to_owned(), "l".to_owned()];
        assert_eq!(
            resolve_link_target(&link, "../f"),
            Some(vec!["f".to_owned()])
        );
        assert_eq!(resolve_link_target(&link, "../../f"), None);
        assert_eq!(resolve_link_target(&link, "/etc"), None);
    }
}
