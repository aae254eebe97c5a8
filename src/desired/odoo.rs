//! What Odoo's configuration file should say about the database: where the
//! primary's pooler is (`db_host`, `db_port`) and, on Odoo 18/19 with
//! replicas, where a replica's pooler is for read-only queries
//! (`db_replica_host`, `db_replica_port`); and merging those keys into the
//! file's `[options]` section, every other line kept. Pure.

use std::collections::BTreeMap;

use crate::placement::{self, PRIMARY};
use crate::topology::Environment;

/// Odoo versions with `db_replica_host`.
const REPLICA_AWARE: [&str; 2] = ["18.0", "19.0"];

/// The keys pgfleet keeps in `[options]`, with their values.
pub fn settings(environment: &Environment) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    let endpoint = |member: &str| -> Option<(String, u16)> {
        match placement::pooler(environment, member) {
            Some(pooler) => Some((pooler.address, pooler.port)),
            None => placement::member(environment, member).map(|cluster| (cluster.address, cluster.port)),
        }
    };
    if let Some((host, port)) = endpoint(PRIMARY) {
        settings.insert("db_host".to_owned(), host);
        settings.insert("db_port".to_owned(), port.to_string());
    }
    let replica_aware = environment.odoo_version.as_deref().is_some_and(|version| REPLICA_AWARE.contains(&version));
    if replica_aware
        && let Some((host, port)) = environment.replicas.first().and_then(|replica| endpoint(&replica.name))
    {
        settings.insert("db_replica_host".to_owned(), host);
        settings.insert("db_replica_port".to_owned(), port.to_string());
    }
    settings
}

/// The `[options]` values of an Odoo configuration file, by key.
pub fn options(text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut in_options = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_options = trimmed == "[options]";
        } else if in_options
            && !trimmed.starts_with(['#', ';'])
            && let Some((key, value)) = trimmed.split_once('=')
        {
            found.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    found
}

/// `text` with `settings` set in `[options]`: a line that sets one of them
/// is rewritten in place, the missing ones are added at the end of the
/// section (which is created when there is none); nothing else changes.
pub fn merge(text: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    let mut in_options = false;
    let mut seen_options = false;
    let missing = |written: &[&str]| -> Vec<String> {
        settings.iter().filter(|(key, _)| !written.contains(&key.as_str())).map(|(k, v)| format!("{k} = {v}")).collect()
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_options {
                // Before the next section, after the last non-empty line.
                let at = out.iter().rposition(|line| !line.trim().is_empty()).map_or(out.len(), |at| at + 1);
                let added = missing(&written);
                written.extend(settings.keys().map(String::as_str));
                out.splice(at..at, added);
            }
            in_options = trimmed == "[options]";
            seen_options |= in_options;
            out.push(line.to_owned());
            continue;
        }
        if in_options
            && !trimmed.starts_with(['#', ';'])
            && let Some((key, _)) = trimmed.split_once('=')
            && let Some((name, value)) = settings.get_key_value(key.trim())
        {
            if !written.contains(&name.as_str()) {
                out.push(format!("{name} = {value}"));
                written.push(name);
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if in_options {
        out.extend(missing(&written));
    } else if !seen_options {
        out.push("[options]".to_owned());
        out.extend(missing(&written));
    }
    let mut merged = out.join("\n");
    merged.push('\n');
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_managed_keys_of_options_change() {
        let settings =
            BTreeMap::from([("db_host".to_owned(), "10.0.0.5".to_owned()), ("db_port".to_owned(), "6432".to_owned())]);
        let text =
            "; Odoo\n[options]\nadmin_passwd = keep\ndb_host = old\n# db_port = 1\n\n[other]\ndb_host = theirs\n";
        let merged = merge(text, &settings);
        assert_eq!(
            merged,
            "; Odoo\n[options]\nadmin_passwd = keep\ndb_host = 10.0.0.5\n# db_port = 1\ndb_port = 6432\n\n[other]\ndb_host = theirs\n"
        );
        assert_eq!(options(&merged).get("db_port").map(String::as_str), Some("6432"));
        assert_eq!(merge(&merged, &settings), merged, "idempotent");
        assert_eq!(merge("", &settings), "[options]\ndb_host = 10.0.0.5\ndb_port = 6432\n");
    }
}
