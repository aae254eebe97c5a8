//! The settings pgfleet manages on each cluster member, as
//! postgresql.conf text: the tuning tier and the user's settings, plus what
//! replication needs, and a standby's connection string. Pure.

use std::collections::BTreeMap;
use std::path::Path;

use crate::placement;
use crate::spec::{Connect, Purpose};
use crate::topology::{Environment, Replica};

/// Settings pgfleet manages on the primary, as postgresql.conf text: the
/// tuning tier and the user's settings, plus what replication and
/// co-located clusters need.
pub fn primary_settings(environment: &Environment) -> BTreeMap<String, String> {
    let primary = &environment.primary;
    let mut settings = primary.settings.clone();
    let senders = (environment.replicas.len() + 4).max(10);
    settings.insert("listen_addresses".into(), primary.address.clone());
    settings.insert("port".into(), primary.port.to_string());
    settings.insert("wal_level".into(), "replica".into());
    settings.insert("max_wal_senders".into(), senders.to_string());
    settings.insert("max_replication_slots".into(), senders.to_string());
    settings.insert("max_slot_wal_keep_size".into(), environment.replication.max_slot_wal_keep_size.to_string());
    settings.insert("hot_standby".into(), "on".into());
    settings.insert("password_encryption".into(), "scram-sha-256".into());
    // Clusters sharing a port on one machine (on different addresses)
    // would otherwise fight over /var/run/postgresql/.s.PGSQL.<port>.
    if let Some(socket_dir) = placement::primary(environment).layout.socket_dir {
        settings.insert("unix_socket_directories".into(), socket_directory(&socket_dir));
    }
    settings
}

/// Settings of a replica: the primary's (so every setting that must be ≥
/// the primary's is), its own address, and the standby settings.
pub fn replica_settings(environment: &Environment, replica: &Replica) -> BTreeMap<String, String> {
    let mut settings = primary_settings(environment);
    settings.insert("listen_addresses".into(), replica.address.clone());
    settings.insert("port".into(), replica.port.to_string());
    if let Some(socket_dir) = placement::replica(environment, replica).layout.socket_dir {
        settings.insert("unix_socket_directories".into(), socket_directory(&socket_dir));
    }
    settings.insert(
        "hot_standby_feedback".into(),
        match replica.purpose {
            Purpose::Reporting => "on",
            Purpose::Dr => "off",
        }
        .into(),
    );
    settings.insert("primary_slot_name".into(), replica.slot.clone());
    settings.insert("primary_conninfo".into(), primary_conninfo(environment, replica));
    settings
}

/// Where a replica connects to reach its primary: the primary's address,
/// or with `connect: ssh_tunnel` the tunnel's local end on its own host.
pub fn upstream(environment: &Environment, replica: &Replica) -> (String, u16) {
    match replica.connect {
        Connect::Direct => (environment.primary.address.clone(), environment.primary.port),
        Connect::SshTunnel => super::tunnel::local_end(replica),
    }
}

/// libpq connection string of a standby: a passfile, never a password.
pub fn primary_conninfo(environment: &Environment, replica: &Replica) -> String {
    let (host, port) = upstream(environment, replica);
    format!(
        "host={} port={} user={} passfile={} application_name={} sslmode=prefer",
        conninfo_value(&host),
        port,
        conninfo_value(&environment.replication.user),
        conninfo_value(&placement::replica(environment, replica).layout.passfile().display().to_string()),
        conninfo_value(&replica.name)
    )
}

/// unix_socket_directories is a comma-separated list with surrounding
/// blanks trimmed: a directory holding a comma, a double quote or such
/// blanks is double-quoted (`"` doubled), as PostgreSQL's list parser
/// reads it; any other is written as it is, so existing values do not
/// change.
fn socket_directory(dir: &Path) -> String {
    let dir = dir.display().to_string();
    if dir.contains([',', '"']) || dir.trim() != dir { format!("\"{}\"", dir.replace('"', "\"\"")) } else { dir }
}

/// A libpq connection-string value: single-quoted, with `\` and `'`
/// escaped, when it is empty or holds a blank, a quote or a backslash;
/// otherwise as it is, so existing values do not change.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_conninfo_and_socket_lists_only_when_they_need_it() {
        assert_eq!(conninfo_value("/srv/pg/r1.pgfleet/passfile"), "/srv/pg/r1.pgfleet/passfile");
        assert_eq!(conninfo_value("/srv/my pg/it's"), r"'/srv/my pg/it\'s'");
        assert_eq!(conninfo_value(r"C:\x"), r"'C:\\x'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(socket_directory(Path::new("/srv/pg/r1.pgfleet")), "/srv/pg/r1.pgfleet");
        assert_eq!(socket_directory(Path::new("/srv/a,b \"c\"")), r#""/srv/a,b ""c""""#);
    }
}
