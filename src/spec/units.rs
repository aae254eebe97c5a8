//! Sizes and durations written the way PostgreSQL writes them (`50MB`, `5m`).
//!
//! Owns parsing and canonical display of those two value types; it knows
//! nothing about where they are used.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A number of bytes, written with PostgreSQL's memory units (`kB`, `MB`,
/// `GB`, `TB`, each 1024 times the previous one) or as a plain number of
/// bytes. Units are case-sensitive, as in `postgresql.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

const SIZE_UNITS: [(&str, u64); 5] = [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10), ("B", 1)];

impl Size {
    pub const fn from_bytes(bytes: u64) -> Self {
        Size(bytes)
    }

    pub const fn mebibytes(megabytes: u64) -> Self {
        Size(megabytes << 20)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a size or duration did not parse; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "`{text}` is not a size: write a whole number followed by kB, MB, GB or TB (case-sensitive, as in postgresql.conf)"
    )]
    Size { text: String },
    #[error("`{text}` is not a duration: write a whole number followed by s, m (or min), h or d")]
    Duration { text: String },
    #[error("`{text}` is too large")]
    Overflow { text: String },
}

fn split_number(text: &str) -> Option<(u64, &str)> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    if digits_end == 0 {
        return None;
    }
    let number = trimmed[..digits_end].parse().ok()?;
    Some((number, trimmed[digits_end..].trim_start()))
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || UnitError::Size { text: text.to_owned() };
        let (number, unit) = split_number(text).ok_or_else(invalid)?;
        let multiplier = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS.iter().find(|(name, _)| *name == unit).map(|(_, multiplier)| *multiplier).ok_or_else(invalid)?
        };
        number.checked_mul(multiplier).map(Size).ok_or_else(|| UnitError::Overflow { text: text.to_owned() })
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the value exactly, so `10GB` stays `10GB`
    /// and PostgreSQL reads back what it was given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        for (name, multiplier) in SIZE_UNITS {
            if self.0.is_multiple_of(multiplier) {
                return write!(f, "{}{name}", self.0 / multiplier);
            }
        }
        unreachable!("every size is a multiple of one byte")
    }
}

/// A span of time in whole seconds: `30s`, `5m` (or `5min`), `2h`, `1d`, or a
/// plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

const DURATION_UNITS: [(&str, u64); 6] = [("d", 86_400), ("h", 3_600), ("min", 60), ("m", 60), ("s", 1), ("", 1)];

impl Duration {
    pub const fn from_seconds(seconds: u64) -> Self {
        Duration(seconds)
    }

    pub const fn seconds(self) -> u64 {
        self.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || UnitError::Duration { text: text.to_owned() };
        let (number, unit) = split_number(text).ok_or_else(invalid)?;
        let multiplier = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, multiplier)| *multiplier)
            .ok_or_else(invalid)?;
        number.checked_mul(multiplier).map(Duration).ok_or_else(|| UnitError::Overflow { text: text.to_owned() })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, multiplier) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if self.0 != 0 && self.0.is_multiple_of(multiplier) {
                return write!(f, "{}{name}", self.0 / multiplier);
            }
        }
        write!(f, "{}s", self.0)
    }
}

/// Both types are written as strings or plain numbers in YAML and as their
/// canonical text everywhere else.
macro_rules! text_serde {
    ($type:ty, $new:path, $expecting:literal, $pattern:literal, $description:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_u64<E: de::Error>(self, value: u64) -> Result<$type, E> {
                        Ok($new(value))
                    }
                    fn visit_i64<E: de::Error>(self, value: i64) -> Result<$type, E> {
                        u64::try_from(value)
                            .map($new)
                            .map_err(|_| E::custom(concat!($expecting, ", not a negative number")))
                    }
                    fn visit_str<E: de::Error>(self, value: &str) -> Result<$type, E> {
                        value.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($type).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $description,
                    "anyOf": [
                        { "type": "string", "pattern": $pattern },
                        { "type": "integer", "minimum": 0 }
                    ]
                })
            }
        }
    };
}

text_serde!(
    Size,
    Size::from_bytes,
    "a size such as 512MB or 10GB",
    "^\\s*[0-9]+\\s*(B|kB|MB|GB|TB)?\\s*$",
    "A size in bytes, with PostgreSQL's units kB, MB, GB, TB (case-sensitive)."
);
text_serde!(
    Duration,
    Duration::from_seconds,
    "a duration such as 30s, 5m or 2h",
    "^\\s*[0-9]+\\s*(s|m|min|h|d)?\\s*$",
    "A duration: a whole number with s, m (or min), h or d; plain numbers are seconds."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_postgres_units() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("8kB", 8 << 10),
            ("50MB", 50 << 20),
            ("10GB", 10 << 30),
            ("10 GB", 10 << 30),
            ("1TB", 1 << 40),
        ] {
            assert_eq!(text.parse::<Size>(), Ok(Size(bytes)), "{text}");
        }
    }

    #[test]
    fn sizes_reject_what_postgres_rejects() {
        for text in ["", "MB", "10mb", "10 G", "1.5GB", "-1MB", "10KB"] {
            assert!(text.parse::<Size>().is_err(), "{text} should not parse");
        }
        assert!(matches!("99999999999TB".parse::<Size>(), Err(UnitError::Overflow { .. })));
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(Size(10 << 30).to_string(), "10GB");
        assert_eq!(Size(1536 << 20).to_string(), "1536MB");
        assert_eq!(Size(1000).to_string(), "1000B");
        assert_eq!(Size(0).to_string(), "0");
    }

    #[test]
    fn durations_parse_and_display() {
        for (text, seconds, shown) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("5min", 300, "5m"),
            ("2h", 7200, "2h"),
            ("1d", 86_400, "1d"),
            ("90", 90, "90s"),
            ("0", 0, "0s"),
        ] {
            let parsed: Duration = text.parse().unwrap();
            assert_eq!(parsed.seconds(), seconds, "{text}");
            assert_eq!(parsed.to_string(), shown, "{text}");
        }
        for text in ["", "m", "5 weeks", "1.5h"] {
            assert!(text.parse::<Duration>().is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn yaml_accepts_numbers_and_strings() {
        let size: Size = serde_yaml::from_str("10GB").unwrap();
        assert_eq!(size, Size(10 << 30));
        let size: Size = serde_yaml::from_str("4096").unwrap();
        assert_eq!(size, Size(4096));
        let error = serde_yaml::from_str::<Size>("ten").unwrap_err().to_string();
        assert!(error.contains("is not a size"), "{error}");
    }
}
