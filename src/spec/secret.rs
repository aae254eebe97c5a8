//! References to secrets. The YAML never holds a password: it says where one
//! comes from. This module owns the shape of that reference and refuses a
//! plain string without ever repeating it.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

/// Where a secret comes from: `{env: NAME}`, `{file: PATH}` or
/// `{generate: true}`. A plain string is refused so that no password is ever
/// committed with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// Read from this environment variable of the process running pgfleet.
    Env(String),
    /// Read from this file (its first line, without the line break).
    File(PathBuf),
    /// 32 random characters, created once and stored only on the hosts that
    /// need them. Must be `true`.
    Generate(bool),
}

impl Default for SecretRef {
    fn default() -> Self {
        SecretRef::Generate(true)
    }
}

impl fmt::Display for SecretRef {
    /// Says where the secret comes from, never what it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Generate(_) => f.write_str("generated secret"),
        }
    }
}

const EXPECTING: &str = "a secret reference: {env: NAME}, {file: PATH} or {generate: true}";
const PLAINTEXT: &str = "a password must not be written in the configuration file; \
     reference it instead with {env: NAME}, {file: PATH} or {generate: true}";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = SecretRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTING)
            }

            // Every scalar is refused with the same message, and the value
            // itself is never echoed: it may well be the password.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(PLAINTEXT))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(PLAINTEXT))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(PLAINTEXT))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(PLAINTEXT))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(PLAINTEXT))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let key: String =
                    map.next_key()?.ok_or_else(|| de::Error::custom(format!("empty mapping: expected {EXPECTING}")))?;
                let secret = match key.as_str() {
                    "env" => {
                        let name: String = map.next_value()?;
                        if name.is_empty() {
                            return Err(de::Error::custom("`env` needs the name of an environment variable"));
                        }
                        SecretRef::Env(name)
                    }
                    "file" => SecretRef::File(map.next_value()?),
                    "generate" => {
                        if !map.next_value::<bool>()? {
                            return Err(de::Error::custom(
                                "`generate: false` does not say where the secret comes from; use {env: NAME} or {file: PATH}",
                            ));
                        }
                        SecretRef::Generate(true)
                    }
                    other => {
                        return Err(de::Error::unknown_field(other, &["env", "file", "generate"]));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a secret reference has exactly one key, found `{key}` and `{extra}`"
                    )));
                }
                Ok(secret)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let parse = |text: &str| serde_yaml::from_str::<SecretRef>(text);
        assert_eq!(parse("{env: PGPASS}").unwrap(), SecretRef::Env("PGPASS".into()));
        assert_eq!(parse("{file: /etc/pgfleet/pw}").unwrap(), SecretRef::File("/etc/pgfleet/pw".into()));
        assert_eq!(parse("{generate: true}").unwrap(), SecretRef::Generate(true));
    }

    #[test]
    fn plaintext_is_refused_without_being_repeated() {
        for text in ["hunter2-very-secret", "123456789", "{generate: false}", "{env: A, file: B}"] {
            let error = serde_yaml::from_str::<SecretRef>(text).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!error.contains("123456789"), "{error}");
        }
        let error = serde_yaml::from_str::<SecretRef>("hunter2").unwrap_err().to_string();
        assert!(error.contains("must not be written"), "{error}");
    }
}
