//! Secret values: reading `{env}` and `{file}` references, generating new
//! ones, and keeping them out of every output. A `Secret` cannot be
//! printed, serialised or compared by accident: its Debug and Display say
//! "redacted", and the only way to the text is `expose()`.

use std::fmt;
use std::path::PathBuf;

use crate::spec::SecretRef;

/// Length of a generated secret: 32 characters from 62, about 190 bits.
pub const GENERATED_LENGTH: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from a trusted place (a 0600 file pgfleet wrote).
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretError {
    #[error("{what}: environment variable {name} is not set")]
    #[diagnostic(code(pgfleet::secret::env), help("export {name} in the environment that runs pgfleet"))]
    EnvMissing { what: String, name: String },
    #[error("{what}: cannot read {}", path.display())]
    #[diagnostic(
        code(pgfleet::secret::file),
        help("check the path and that the file is readable by the user running pgfleet")
    )]
    FileUnreadable {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the secret from {source_name} is empty")]
    #[diagnostic(code(pgfleet::secret::empty))]
    Empty { what: String, source_name: String },
    #[error("the operating system's random generator failed")]
    #[diagnostic(code(pgfleet::secret::random))]
    Random,
}

/// Reads an `{env}` or `{file}` secret; `None` for `{generate: true}`,
/// whose value lives on the hosts. `what` names the secret in errors (e.g.
/// `prod.role.odoo password`), never its value.
pub fn read(reference: &SecretRef, what: &str) -> Result<Option<Secret>, SecretError> {
    let value = match reference {
        SecretRef::Generate(_) => return Ok(None),
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| SecretError::EnvMissing { what: what.to_owned(), name: name.clone() })?
        }
        SecretRef::File(path) => {
            let path = crate::transport::expand_home(path);
            let text = std::fs::read_to_string(&path).map_err(|source| SecretError::FileUnreadable {
                what: what.to_owned(),
                path: path.clone(),
                source,
            })?;
            text.lines().next().unwrap_or_default().to_owned()
        }
    };
    if value.is_empty() {
        return Err(SecretError::Empty { what: what.to_owned(), source_name: reference.to_string() });
    }
    Ok(Some(Secret(value)))
}

/// A new secret from the OS CSPRNG: `GENERATED_LENGTH` letters and digits
/// (no character that needs quoting in a passfile, a userlist or SQL).
pub fn generate() -> Result<Secret, SecretError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut secret = String::with_capacity(GENERATED_LENGTH);
    let mut buffer = [0u8; 64];
    while secret.len() < GENERATED_LENGTH {
        getrandom::fill(&mut buffer).map_err(|_| SecretError::Random)?;
        // Rejection sampling keeps every character equally likely.
        for byte in buffer {
            if byte < 248 && secret.len() < GENERATED_LENGTH {
                secret.push(ALPHABET[(byte % 62) as usize] as char);
            }
        }
    }
    Ok(Secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_alphanumeric_and_distinct() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert_eq!(first.expose().len(), GENERATED_LENGTH);
        assert!(first.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, second);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "Secret(redacted) (redacted)");
    }

    #[test]
    fn env_and_file_references_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-file\nsecond line ignored\n").unwrap();
        let secret = read(&SecretRef::File(path), "test").unwrap().unwrap();
        assert_eq!(secret.expose(), "from-file");
        assert!(read(&SecretRef::Generate(true), "test").unwrap().is_none());
        let missing = read(&SecretRef::Env("PGFLEET_SURELY_UNSET_VARIABLE".into()), "prod.role.odoo password");
        let message = missing.unwrap_err().to_string();
        assert!(message.contains("prod.role.odoo password") && message.contains("PGFLEET_SURELY_UNSET_VARIABLE"));
    }
}
