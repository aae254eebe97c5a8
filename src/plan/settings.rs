//! Comparing a desired postgresql.conf value with what `pg_settings`
//! reports: `16MB` against `2048` in units of `8kB`, `on` against `on`,
//! `5min` against `300` `s`. Pure.

use crate::observe::cluster::Setting;

/// Memory units in bytes and time units in milliseconds, as PostgreSQL
/// names them in values and in `pg_settings.unit`.
fn unit_scale(unit: &str) -> Option<(Quantity, f64)> {
    let (number, name) = match unit.find(|c: char| !c.is_ascii_digit()) {
        Some(0) | None => (1.0, unit),
        Some(at) => (unit[..at].parse().ok()?, &unit[at..]),
    };
    let (quantity, scale) = match name {
        "B" => (Quantity::Bytes, 1.0),
        "kB" => (Quantity::Bytes, 1024.0),
        "MB" => (Quantity::Bytes, 1024.0 * 1024.0),
        "GB" => (Quantity::Bytes, 1024.0 * 1024.0 * 1024.0),
        "TB" => (Quantity::Bytes, 1024.0 * 1024.0 * 1024.0 * 1024.0),
        "us" => (Quantity::Milliseconds, 0.001),
        "ms" => (Quantity::Milliseconds, 1.0),
        "s" => (Quantity::Milliseconds, 1000.0),
        "min" => (Quantity::Milliseconds, 60_000.0),
        "h" => (Quantity::Milliseconds, 3_600_000.0),
        "d" => (Quantity::Milliseconds, 86_400_000.0),
        _ => return None,
    };
    Some((quantity, number * scale))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Bytes,
    Milliseconds,
}

/// A value in the setting's base quantity, when it has a unit.
fn in_base(value: &str, default_unit: Option<&str>) -> Option<(Quantity, f64)> {
    let value = value.trim().trim_matches('\'');
    let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(value.len());
    let number: f64 = value[..split].parse().ok()?;
    let unit = value[split..].trim();
    let (quantity, scale) = if unit.is_empty() { unit_scale(default_unit?)? } else { unit_scale(unit)? };
    Some((quantity, number * scale))
}

fn as_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Whether `desired` (as written in the configuration) is the value the
/// server reports.
pub fn same_value(desired: &str, observed: &Setting) -> bool {
    let desired = desired.trim().trim_matches('\'');
    if desired == observed.value {
        return true;
    }
    if let Some(unit) = observed.unit.as_deref()
        && let (Some(wanted), Some(actual)) = (in_base(desired, Some(unit)), in_base(&observed.value, Some(unit)))
    {
        return wanted.0 == actual.0 && (wanted.1 - actual.1).abs() < 0.5;
    }
    if let (Some(wanted), Some(actual)) = (as_bool(desired), as_bool(&observed.value)) {
        return wanted == actual;
    }
    if let (Ok(wanted), Ok(actual)) = (desired.parse::<f64>(), observed.value.parse::<f64>()) {
        return (wanted - actual).abs() < 1e-9;
    }
    // Lists and enum names: PostgreSQL is case-insensitive about enums, and
    // reports list elements that need it double-quoted (a path with
    // capitals: "/tmp/aBc"), with its own spacing. A quoted element
    // compares exactly, a bare one without regard to case.
    let elements = |text: &str| -> Vec<(String, bool)> {
        text.split(',')
            .map(|part| {
                let part = part.trim();
                match part.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')) {
                    Some(quoted) => (quoted.replace("\"\"", "\""), true),
                    None => (part.to_owned(), false),
                }
            })
            .collect()
    };
    let (wanted, actual) = (elements(desired), elements(&observed.value));
    wanted.len() == actual.len()
        && wanted.iter().zip(&actual).all(
            |((a, a_quoted), (b, b_quoted))| {
                if *a_quoted || *b_quoted { a == b } else { a.eq_ignore_ascii_case(b) }
            },
        )
}

/// The value as the server reports it, with its unit, for diffs.
pub fn shown(observed: &Setting) -> String {
    match observed.unit.as_deref() {
        Some(unit) => match in_base(&observed.value, Some(unit)) {
            Some((Quantity::Bytes, bytes)) if bytes >= 0.0 => crate::spec::Size::from_bytes(bytes as u64).to_string(),
            Some((Quantity::Milliseconds, ms)) if ms >= 0.0 && (ms / 1000.0).fract() == 0.0 => {
                crate::spec::Duration::from_seconds((ms / 1000.0) as u64).to_string()
            }
            _ => format!("{}{unit}", observed.value),
        },
        None => observed.value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(value: &str, unit: Option<&str>) -> Setting {
        Setting {
            value: value.into(),
            unit: unit.map(Into::into),
            context: "user".into(),
            source: "default".into(),
            pending_restart: false,
        }
    }

    #[test]
    fn memory_and_time_compare_across_units() {
        assert!(same_value("16MB", &setting("16384", Some("kB"))));
        assert!(same_value("128MB", &setting("16384", Some("8kB"))));
        assert!(!same_value("64MB", &setting("16384", Some("8kB"))));
        assert!(same_value("10GB", &setting("10240", Some("MB"))));
        assert!(same_value("5min", &setting("300", Some("s"))));
        assert!(same_value("500ms", &setting("500", Some("ms"))));
        assert!(same_value("4096", &setting("4096", Some("kB"))));
        assert!(same_value("-1", &setting("-1", Some("MB"))));
    }

    #[test]
    fn booleans_numbers_and_words() {
        assert!(same_value("on", &setting("on", None)));
        assert!(same_value("true", &setting("on", None)));
        assert!(!same_value("off", &setting("on", None)));
        assert!(same_value("1.1", &setting("1.1", None)));
        assert!(same_value("100", &setting("100", None)));
        assert!(same_value("replica", &setting("replica", None)));
        assert!(same_value("SCRAM-SHA-256", &setting("scram-sha-256", None)));
        assert!(same_value("127.0.0.1", &setting("127.0.0.1", None)));
        assert!(!same_value("127.0.0.2", &setting("127.0.0.1", None)));
        assert!(same_value("/tmp/pg-aBc.home", &setting("\"/tmp/pg-aBc.home\"", None)));
        assert!(same_value("/a, /b", &setting("/a,/b", None)));
    }

    #[test]
    fn shown_values_use_units() {
        assert_eq!(shown(&setting("16384", Some("8kB"))), "128MB");
        assert_eq!(shown(&setting("4096", Some("kB"))), "4MB");
        assert_eq!(shown(&setting("300", Some("s"))), "5m");
        assert_eq!(shown(&setting("on", None)), "on");
    }
}
