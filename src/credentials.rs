//! Secrets the config names but does not hold: a password or token read from a file (`password_file`,
//! `token_file`) or an environment variable (`password_env`, `token_env`). The database stores, the callback
//! service and the remote SFTP transport all read theirs here. A secret is never logged; the errors name the
//! file or the variable, never what it holds.

use std::path::{Path, PathBuf};

/// Why a configured secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file a `*_file` setting names could not be read.
    #[error("cannot read {setting} {}: {source}", path.display())]
    File {
        /// The setting that names the file (`password_file`, `token_file`).
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The variable a `*_env` setting names is not set (or does not hold Unicode).
    #[error("environment variable {var} is not set")]
    Env {
        /// The variable's name.
        var: String,
        /// What the environment answered.
        source: std::env::VarError,
    },
}

/// A password from `file` (its first line, as it was written) or else from the variable `env`; `None` when
/// neither is configured.
///
/// # Errors
/// [`CredentialError`] when the file cannot be read or the variable is not set.
pub fn password(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, CredentialError> {
    if let Some(path) = file {
        let text = read("password_file", path)?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    env.map(variable).transpose()
}

/// A bearer token from `file` (its text without surrounding white space) or else from the variable `env`;
/// `None` when neither is configured.
///
/// # Errors
/// [`CredentialError`] when the file cannot be read or the variable is not set.
pub fn token(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, CredentialError> {
    if let Some(path) = file {
        return Ok(Some(read("token_file", path)?.trim().to_owned()));
    }
    env.map(variable).transpose()
}

fn read(setting: &'static str, path: &Path) -> Result<String, CredentialError> {
    std::fs::read_to_string(path).map_err(|source| CredentialError::File {
        setting,
        path: path.to_owned(),
        source,
    })
}

fn variable(var: &str) -> Result<String, CredentialError> {
    std::env::var(var).map_err(|source| CredentialError::Env {
        var: var.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_the_first_line_and_a_token_the_trimmed_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, " s3cret \nsecond line\n").expect("write");
        let password = password(Some(&file), Some("UNUSED")).expect("password");
        assert_eq!(password.as_deref(), Some(" s3cret "));
        let token = token(Some(&file), None).expect("token");
        assert_eq!(token.as_deref(), Some("s3cret \nsecond line"));
        assert!(matches!(super::token(None, None), Ok(None)));
    }

    #[test]
    fn a_missing_file_or_variable_is_named_but_not_its_content() {
        let err = password(Some(Path::new("/nonexistent/pw")), None).expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("cannot read password_file /nonexistent/pw: "),
            "{err}"
        );
        let err = token(None, Some("GDPRD_TEST_SURELY_UNSET_VARIABLE")).expect_err("unset");
        assert_eq!(
            err.to_string(),
            "environment variable GDPRD_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
