//! What the hosts should hold, rendered from the topology: each cluster's
//! managed settings, the replication hba rules, PgBouncer's ini, and where
//! pgfleet keeps a cluster's files. Plan compares these with observations;
//! apply writes them. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::spec::{Connect, Purpose, Runtime};
use crate::topology::{Environment, Host, Pooler, Replica};

/// Where pgfleet keeps a cluster's own files, beside its data directory
/// (never inside, so a base backup does not copy them): secrets (0600),
/// PgBouncer's ini and userlist, sockets, pid and log files.
pub fn home(data_dir: &Path) -> PathBuf {
    let mut home = data_dir.as_os_str().to_owned();
    home.push(".pgfleet");
    PathBuf::from(home)
}

/// The superuser password pgfleet generated for a cluster it created.
pub const SUPERUSER_PASSWORD_FILE: &str = "superuser.password";
/// A replica's libpq passfile (`primary_conninfo` points at it).
pub const PASSFILE: &str = "passfile";

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
    if primary.runtime == Runtime::PgCtl {
        // Clusters sharing a port on one machine (on different addresses)
        // would otherwise fight over /var/run/postgresql/.s.PGSQL.<port>.
        settings.insert("unix_socket_directories".into(), socket_directory(&home(&primary.data_dir)));
    }
    settings
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

/// A libpq passfile field: `\` and `:` escaped.
fn passfile_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// A replica's passfile: the replication password for the primary, and
/// nothing else.
pub fn passfile(environment: &Environment, password: &crate::secrets::Secret) -> String {
    format!(
        "{}:{}:*:{}:{}\n",
        passfile_field(&environment.primary.address),
        environment.primary.port,
        passfile_field(&environment.replication.user),
        passfile_field(password.expose())
    )
}

/// Settings of a replica: the primary's (so every setting that must be ≥
/// the primary's is), its own address, and the standby settings.
pub fn replica_settings(environment: &Environment, replica: &Replica) -> BTreeMap<String, String> {
    let primary = &environment.primary;
    let mut settings = primary_settings(environment);
    settings.insert("listen_addresses".into(), replica.address.clone());
    settings.insert("port".into(), replica.port.to_string());
    if primary.runtime == Runtime::PgCtl {
        settings.insert("unix_socket_directories".into(), socket_directory(&home(&replica.data_dir)));
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

/// libpq connection string of a standby: a passfile, never a password.
pub fn primary_conninfo(environment: &Environment, replica: &Replica) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={} sslmode=prefer",
        conninfo_value(&environment.primary.address),
        environment.primary.port,
        conninfo_value(&environment.replication.user),
        conninfo_value(&home(&replica.data_dir).join(PASSFILE).display().to_string()),
        conninfo_value(&replica.name)
    )
}

fn is_loopback(address: &str) -> bool {
    address == "localhost" || address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The address a replica's connection arrives from, as the primary sees it.
/// On one machine, or through a tunnel that ends on the primary's host, the
/// kernel picks the source: 127.0.0.1 for a loopback primary, else the
/// primary's own address. Across machines it is the replica's address.
pub fn replication_source(environment: &Environment, replica: &Replica, hosts: &BTreeMap<String, Host>) -> String {
    let primary = &environment.primary;
    let machine = |name: &str| hosts.get(name).map(Host::machine);
    let same_machine = machine(&primary.host) == machine(&replica.host);
    if same_machine || replica.connect == Connect::SshTunnel {
        local_source(&primary.address)
    } else {
        replica.address.clone()
    }
}

/// One `pg_hba.conf` line pgfleet manages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct HbaLine {
    pub kind: String,
    pub database: String,
    pub user: String,
    /// CIDR, e.g. `10.0.0.12/32`.
    pub address: String,
    pub method: String,
}

impl std::fmt::Display for HbaLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<7} {:<12} {:<12} {:<18} {}", self.kind, self.database, self.user, self.address, self.method)
    }
}

fn host_cidr(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("{address}/128"),
        _ => format!("{address}/32"),
    }
}

/// Where a connection to `address` made on the same machine comes from:
/// 127.0.0.1 for any loopback address, else the address itself.
fn local_source(address: &str) -> String {
    if is_loopback(address) { "127.0.0.1".to_owned() } else { address.to_owned() }
}

/// The managed hba rules (the block is the same on the primary and, being
/// copied by the base backup, on every replica): SCRAM logins from where
/// each cluster's own host connects to it (pgfleet, the poolers), and
/// replication from each replica's source address only.
pub fn hba_lines(environment: &Environment, hosts: &BTreeMap<String, Host>) -> Vec<HbaLine> {
    let line = |database: &str, user: &str, source: &str| HbaLine {
        kind: "host".into(),
        database: database.into(),
        user: user.into(),
        address: host_cidr(source),
        method: "scram-sha-256".into(),
    };
    let mut local: Vec<String> = std::iter::once(&environment.primary.address)
        .chain(environment.replicas.iter().map(|replica| &replica.address))
        .map(|address| local_source(address))
        .collect();
    local.sort();
    local.dedup();
    let mut replication: Vec<String> =
        environment.replicas.iter().map(|replica| replication_source(environment, replica, hosts)).collect();
    replication.sort();
    replication.dedup();
    local
        .iter()
        .map(|source| line("all", "all", source))
        .chain(replication.iter().map(|source| line("replication", &environment.replication.user, source)))
        .collect()
}

pub const HBA_BEGIN: &str = "# BEGIN pgfleet managed block: changes here are overwritten";
pub const HBA_END: &str = "# END pgfleet managed block";

/// The managed block as it is written at the top of pg_hba.conf.
pub fn hba_block(lines: &[HbaLine]) -> String {
    let mut block = format!("{HBA_BEGIN}\n");
    for line in lines {
        let _ = writeln!(block, "{line}");
    }
    block.push_str(HBA_END);
    block.push('\n');
    block
}

/// Which pooler: the primary's, or the one in front of a replica.
#[derive(Debug, Clone, Copy)]
pub enum PoolerSite<'a> {
    Primary,
    Replica(&'a Replica),
}

/// Where a pooler listens, and the cluster it fronts.
pub struct PoolerPlace {
    pub host: String,
    pub address: String,
    pub port: u16,
    pub cluster_port: u16,
    pub home: PathBuf,
}

pub fn pooler_place(environment: &Environment, pooler: &Pooler, site: PoolerSite<'_>) -> PoolerPlace {
    let primary = &environment.primary;
    match site {
        PoolerSite::Primary => PoolerPlace {
            host: primary.host.clone(),
            address: primary.address.clone(),
            port: pooler.port,
            cluster_port: primary.port,
            home: home(&primary.data_dir),
        },
        PoolerSite::Replica(replica) => PoolerPlace {
            host: replica.host.clone(),
            address: replica.address.clone(),
            port: pooler.replica_port,
            cluster_port: replica.port,
            home: home(&replica.data_dir),
        },
    }
}

/// Size of the session-mode pool for the `postgres` database (Odoo's bus
/// holds one LISTEN connection per worker).
pub const SESSION_POOL_SIZE: u32 = 5;

/// PgBouncer's ini for one pooler. Deterministic, so a diff shows only what
/// changed.
pub fn pgbouncer_ini(environment: &Environment, pooler: &Pooler, site: PoolerSite<'_>) -> String {
    let place = pooler_place(environment, pooler, site);
    let home = place.home.display();
    let database = &environment.database.name;
    format!(
        ";; Managed by pgfleet for {environment}: changes here are overwritten.\n\
         [databases]\n\
         {database} = host={address} port={cluster_port} dbname={database}\n\
         postgres = host={address} port={cluster_port} dbname=postgres pool_mode=session pool_size={session}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = {address}\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {home}/userlist.txt\n\
         admin_users = postgres\n\
         stats_users = postgres\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         reserve_pool_size = {reserve_pool_size}\n\
         reserve_pool_timeout = {reserve_pool_timeout}\n\
         ignore_startup_parameters = extra_float_digits\n\
         pidfile = {pidfile}\n\
         logfile = {home}/pgbouncer-{port}.log\n",
        environment = environment.id,
        address = place.address,
        cluster_port = place.cluster_port,
        session = SESSION_POOL_SIZE,
        port = place.port,
        pool_mode = pooler.pool_mode,
        pool_size = pooler.pool_size,
        max_client_conn = pooler.max_client_conn,
        reserve_pool_size = pooler.reserve_pool_size,
        reserve_pool_timeout = pooler.reserve_pool_timeout,
        pidfile = pgbouncer_pid_path(&place).display(),
    )
}

/// Path of a pooler's ini file.
pub fn pgbouncer_ini_path(place: &PoolerPlace) -> PathBuf {
    place.home.join(format!("pgbouncer-{}.ini", place.port))
}

/// The roles in a pooler's userlist: the application owner, and `postgres`
/// for the admin console.
pub fn userlist_roles(environment: &Environment) -> [String; 2] {
    [environment.database.owner.clone(), "postgres".to_owned()]
}

/// PgBouncer's userlist: each role's SCRAM verifier exactly as
/// `pg_authid.rolpassword` holds it, so PgBouncer can authenticate clients
/// and pass their SCRAM keys through to the server.
pub fn userlist(verifiers: &BTreeMap<String, String>) -> String {
    verifiers.iter().map(|(name, verifier)| format!("\"{}\" \"{}\"\n", name.replace('"', "\"\""), verifier)).collect()
}

/// Path of a pooler's pid file (named in its ini).
pub fn pgbouncer_pid_path(place: &PoolerPlace) -> PathBuf {
    place.home.join(format!("pgbouncer-{}.pid", place.port))
}

/// The ini keys whose change PgBouncer cannot take with RELOAD.
pub const POOLER_RESTART_KEYS: [&str; 5] =
    ["listen_addr", "listen_port", "unix_socket_dir", "pidfile", "max_client_conn"];

/// `postgresql.auto.conf` with `settings` set (added or replaced), every
/// other line kept: what `ALTER SYSTEM` would write, for a stopped cluster.
pub fn merge_auto_conf(existing: &str, settings: &BTreeMap<String, String>) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in existing.lines() {
        let name = line.split_once('=').map(|(name, _)| name.trim()).filter(|name| !name.starts_with('#'));
        match name.and_then(|name| settings.get_key_value(name)) {
            Some((name, value)) => {
                if seen.insert(name.clone()) {
                    lines.push(auto_conf_line(name, value));
                }
            }
            None => lines.push(line.to_owned()),
        }
    }
    if lines.is_empty() {
        lines.push("# Do not edit this file manually!".into());
        lines.push("# It will be overwritten by the ALTER SYSTEM command.".into());
    }
    for (name, value) in settings {
        if !seen.contains(name) {
            lines.push(auto_conf_line(name, value));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// One `name = 'value'` line, quoted as ALTER SYSTEM quotes it
/// (escape_single_quotes_ascii): PostgreSQL's config scanner reads
/// backslash escapes inside quoted values, so `\` is doubled as well as `'`.
/// Values never hold a line break: `resolve` refuses them, because no
/// quoting carries one through the scanner.
fn auto_conf_line(name: &str, value: &str) -> String {
    format!("{name} = '{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

/// pg_hba.conf with pgfleet's block replaced (or put first when absent);
/// every line outside the block is kept as it was.
pub fn replace_hba_block(existing: &str, block: &str) -> String {
    let mut outside = String::new();
    let mut inside = false;
    for line in existing.lines() {
        if line.trim() == HBA_BEGIN {
            inside = true;
        } else if inside && line.trim() == HBA_END {
            inside = false;
        } else if !inside {
            outside.push_str(line);
            outside.push('\n');
        }
    }
    format!("{block}{outside}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_conf_keeps_other_lines_and_replaces_ours() {
        let existing = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '4MB'\nlog_statement = 'ddl'\n";
        let settings =
            BTreeMap::from([("work_mem".to_owned(), "64MB".to_owned()), ("port".to_owned(), "5433".to_owned())]);
        let merged = merge_auto_conf(existing, &settings);
        assert_eq!(
            merged,
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '64MB'\nlog_statement = 'ddl'\nport = '5433'\n"
        );
        assert_eq!(merge_auto_conf(&merged, &settings), merged, "idempotent");
    }

    #[test]
    fn auto_conf_values_are_quoted_as_alter_system_quotes_them() {
        // What PostgreSQL's ALTER SYSTEM writes for the same values.
        assert_eq!(auto_conf_line("a", "it's"), "a = 'it''s'");
        assert_eq!(auto_conf_line("a", r"C:\x"), r"a = 'C:\\x'");
        assert_eq!(auto_conf_line("a", r"\'"), r"a = '\\'''");
        let merged = merge_auto_conf("", &BTreeMap::from([("a".to_owned(), r"C:\x".to_owned())]));
        assert!(merged.ends_with("a = 'C:\\\\x'\n"), "{merged}");
    }

    #[test]
    fn paths_are_quoted_for_conninfo_and_socket_lists_only_when_they_need_it() {
        assert_eq!(conninfo_value("/srv/pg/r1.pgfleet/passfile"), "/srv/pg/r1.pgfleet/passfile");
        assert_eq!(conninfo_value("/srv/my pg/it's"), r"'/srv/my pg/it\'s'");
        assert_eq!(conninfo_value(r"C:\x"), r"'C:\\x'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(socket_directory(Path::new("/srv/pg/r1.pgfleet")), "/srv/pg/r1.pgfleet");
        assert_eq!(socket_directory(Path::new("/srv/a,b \"c\"")), r#""/srv/a,b ""c""""#);
    }

    #[test]
    fn passfile_fields_escape_colons_and_backslashes() {
        assert_eq!(passfile_field(r"a:b\c"), r"a\:b\\c");
    }

    #[test]
    fn hba_block_is_replaced_in_place_of_the_old_one() {
        let block = format!("{HBA_BEGIN}\nhost all all 127.0.0.1/32 scram-sha-256\n{HBA_END}\n");
        let original = "local all all peer\nhost all all ::1/128 scram-sha-256\n";
        let first = replace_hba_block(original, &block);
        assert_eq!(first, format!("{block}{original}"));
        let newer = format!("{HBA_BEGIN}\nhost replication replicator 10.0.0.2/32 scram-sha-256\n{HBA_END}\n");
        assert_eq!(replace_hba_block(&first, &newer), format!("{newer}{original}"));
    }
}
