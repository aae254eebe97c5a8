//! The hba rules pgfleet manages: SCRAM logins from where each member's
//! own host connects, replication from each replica's source address, and
//! the block they are written as. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::spec::Connect;
use crate::topology::{Environment, Host, Replica};

/// Whether `address` is a loopback address (or `localhost`).
pub fn is_loopback(address: &str) -> bool {
    address == "localhost" || address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The address a replica's connection arrives from, as the primary sees it.
/// Through a tunnel, the primary host's sshd makes the connection: it
/// arrives from where pgfleet's own session through that sshd was observed
/// to arrive (`tunnel_source`, from `inet_client_addr()`), and before
/// anything could be observed from where the kernel picks for a connection
/// made on that host. On one machine the kernel picks the source: 127.0.0.1
/// for a loopback primary, else the primary's own address. Across machines
/// it is the replica's address. A primary on loopback is reached directly
/// only from its own machine (plan refuses anything else), whatever the
/// hosts' addresses say.
pub fn replication_source(
    environment: &Environment,
    replica: &Replica,
    hosts: &BTreeMap<String, Host>,
    tunnel_source: Option<&str>,
) -> String {
    let primary = &environment.primary;
    let machine = |name: &str| hosts.get(name).map(Host::machine);
    let same_machine = machine(&primary.host) == machine(&replica.host);
    match tunnel_source {
        Some(source) if replica.connect == Connect::SshTunnel => source.to_owned(),
        _ if same_machine || replica.connect == Connect::SshTunnel || is_loopback(&primary.address) => {
            local_source(&primary.address)
        }
        _ => replica.address.clone(),
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
pub fn hba_lines(
    environment: &Environment,
    hosts: &BTreeMap<String, Host>,
    tunnel_source: Option<&str>,
    pooler_source: Option<&str>,
) -> Vec<HbaLine> {
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
    // The primary's pooler on a host of its own connects from where that
    // host routes its connections to the primary (observed:
    // `pooler_source`); before it could be observed, from where pgfleet
    // reaches that host when that is an IP address, else from the address
    // the pooler listens on.
    if let Some(pooler) = environment.pooler.as_ref().filter(|pooler| pooler.host != environment.primary.host) {
        let reached = || hosts.get(&pooler.host).map(Host::machine).filter(|a| a.parse::<IpAddr>().is_ok());
        let source = match pooler_source {
            Some(source) => source.to_owned(),
            None => reached().map_or_else(|| pooler.address.clone(), str::to_owned),
        };
        local.push(source);
    }
    local.sort();
    local.dedup();
    let mut replication: Vec<String> = environment
        .replicas
        .iter()
        .map(|replica| replication_source(environment, replica, hosts, tunnel_source))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The primary's pooler on the application's host is admitted from
    /// where that host routes to the primary, once observed; before, from
    /// the address pgfleet reaches that host by.
    #[test]
    fn a_pooler_on_another_host_is_admitted_from_its_route_to_the_primary() {
        let yaml = "version: 1\nhosts:\n  db: { address: 192.0.2.10 }\n  app: { address: 192.0.2.20 }\nenvironments:\n  - id: e\n    primary: { host: db, address: 10.0.0.11, data_dir: /p, tuning: none }\n    pgbouncer: { pool_size: 5, host: app }\n";
        let topology =
            crate::config::load::parse("t.yaml", yaml.into()).unwrap().resolve_in(std::path::Path::new("/")).unwrap();
        let environment = &topology.environments[0];
        let sources = |observed| -> Vec<String> {
            hba_lines(environment, &topology.hosts, None, observed).into_iter().map(|line| line.address).collect()
        };
        assert_eq!(sources(Some("10.0.0.20")), ["10.0.0.11/32", "10.0.0.20/32"]);
        assert_eq!(sources(None), ["10.0.0.11/32", "192.0.2.20/32"]);
    }
}
