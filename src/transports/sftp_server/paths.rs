//! Where a client path points inside an account's root. Paths are resolved component by component (never by a
//! string-prefix check): `.` stays, `..` goes up and may never leave the root, and only `/`, the two folders and
//! plain names inside them exist. No symlink is ever followed, because no symlink can be reached or created.

use std::fmt;

/// The longest file name accepted, in bytes (as most file systems).
pub const MAX_NAME: usize = 255;
/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 1024;

/// One of the two folders an account sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Folder {
    /// `GDPR_Submit`: upload and rename only.
    Submit,
    /// `GDPR_Result`: download and remove only.
    Result,
}

impl Folder {
    /// The folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Folder::Submit => "GDPR_Submit",
            Folder::Result => "GDPR_Result",
        }
    }
}

/// A place in the account's view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// `/`, the account root.
    Root,
    /// One of the two folders.
    Folder(Folder),
    /// A plain file name inside a folder.
    File(Folder, String),
}

impl Place {
    /// The path the client sees (`/`, `/GDPR_Submit`, `/GDPR_Result/x.json`).
    pub fn display_path(&self) -> String {
        match self {
            Place::Root => "/".into(),
            Place::Folder(f) => format!("/{}", f.name()),
            Place::File(f, n) => format!("/{}/{n}", f.name()),
        }
    }
}

/// Why a path cannot be used; each maps to an SFTP status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// `..` above the root, a NUL byte, an over-long name or path: refused.
    Refused(&'static str),
    /// Nothing is there (any other name, or deeper than a folder's files).
    NotFound,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Refused(why) => f.write_str(why),
            PathError::NotFound => f.write_str("no such file"),
        }
    }
}

/// Resolves `path` (absolute, or relative to the root, which is every session's working folder).
///
/// # Errors
/// [`PathError`] saying why the path does not name a place in the account's view.
pub fn resolve(path: &str) -> Result<Place, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::Refused("path too long"));
    }
    if path.contains('\0') {
        return Err(PathError::Refused("NUL byte in path"));
    }
    let mut stack: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::Refused("path leads outside the account root"));
                }
            }
            name => {
                if name.len() > MAX_NAME {
                    return Err(PathError::Refused("file name too long"));
                }
                stack.push(name);
            }
        }
    }
    let folder = |name: &str| match name {
        "GDPR_Submit" => Some(Folder::Submit),
        "GDPR_Result" => Some(Folder::Result),
        _ => None,
    };
    match stack.as_slice() {
        [] => Ok(Place::Root),
        [f] => folder(f).map(Place::Folder).ok_or(PathError::NotFound),
        [f, name] => folder(f)
            .map(|f| Place::File(f, (*name).to_owned()))
            .ok_or(PathError::NotFound),
        _ => Err(PathError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(f: Folder, n: &str) -> Result<Place, PathError> {
        Ok(Place::File(f, n.into()))
    }

    #[test]
    fn the_view_is_the_root_two_folders_and_their_files() {
        assert_eq!(resolve(""), Ok(Place::Root));
        assert_eq!(resolve("/"), Ok(Place::Root));
        assert_eq!(resolve("."), Ok(Place::Root));
        assert_eq!(resolve("GDPR_Submit"), Ok(Place::Folder(Folder::Submit)));
        assert_eq!(resolve("/GDPR_Result/"), Ok(Place::Folder(Folder::Result)));
        assert_eq!(
            resolve("GDPR_Submit/forget-x.json"),
            file(Folder::Submit, "forget-x.json")
        );
        assert_eq!(
            resolve("/GDPR_Result/./a.zip"),
            file(Folder::Result, "a.zip")
        );
        assert_eq!(
            resolve("GDPR_Result/../GDPR_Submit/x"),
            file(Folder::Submit, "x")
        );
        assert_eq!(resolve("//GDPR_Submit//x"), file(Folder::Submit, "x"));
    }

    #[test]
    fn escapes_and_strange_paths_are_refused() {
        for p in [
            "..",
            "/..",
            "../../etc/passwd",
            "GDPR_Submit/../../x",
            "/GDPR_Submit/../../../etc",
        ] {
            assert!(matches!(resolve(p), Err(PathError::Refused(_))), "{p}");
        }
        assert!(matches!(
            resolve("GDPR_Submit/a\0b"),
            Err(PathError::Refused(_))
        ));
        assert!(matches!(
            resolve(&format!("GDPR_Submit/{}", "x".repeat(256))),
            Err(PathError::Refused(_))
        ));
        assert!(matches!(
            resolve(&"a/".repeat(600)),
            Err(PathError::Refused(_))
        ));
        for p in [
            "/etc/passwd",
            "etc",
            "GDPR_Submit/sub/x",
            "gdpr_submit",
            "GDPR_Submit/x/..",
            "/home",
        ] {
            let r = resolve(p);
            assert!(
                r == Err(PathError::NotFound) || p.ends_with(".."),
                "{p}: {r:?}"
            );
        }
        assert_eq!(
            resolve("GDPR_Submit/x/.."),
            Ok(Place::Folder(Folder::Submit))
        );
    }

    proptest! {
        #[test]
        fn resolution_never_escapes(parts in proptest::collection::vec(prop_oneof![
            Just("..".to_owned()), Just(".".to_owned()), Just("GDPR_Submit".to_owned()),
            Just("GDPR_Result".to_owned()), "[a-z.]{1,6}"], 0..8), absolute in any::<bool>()) {
            let path = format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"));
            if let Ok(place) = resolve(&path) {
                // Whatever resolves is the root, a folder, or a plain name in a folder: never "..", never deeper.
                if let Place::File(_, name) = &place {
                    prop_assert!(name != ".." && name != "." && !name.contains('/'));
                }
                prop_assert_eq!(resolve(&place.display_path()), Ok(place));
            }
        }
    }
}
