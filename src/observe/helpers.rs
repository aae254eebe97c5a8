//! Observing the helpers pgfleet keeps on hosts: each replica's SSH tunnel
//! (its program, key, supervisor, whether its local end answers) and each
//! filestore mirror (its job, schedule, last run, files behind by an rsync
//! dry run), plus their keys' authorizations on the primary's host and the
//! filestore source's owner. Read-only: one more command on the session of
//! each host that has any, and one dry run per mirror.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Kind};
use crate::desired::{filestore, tunnel};
use crate::inventory::{Inventory, Item};
use crate::supervise::{Helper, Recurring};
use crate::topology::{Environment, Replica, Topology};
use crate::transport::{COMMAND_TIMEOUT, Remote, shell_quote};

/// How long the dry run of one mirror may take.
pub const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelObservation {
    /// The program the supervisor runs (no secret in it).
    pub program: Option<String>,
    /// The tunnel key's public half.
    pub public_key: Option<String>,
    /// The pinned known_hosts on the replica's host.
    pub known_hosts: Option<String>,
    /// What pgfleet's own known_hosts records for the primary's host now
    /// (read on this machine when observing): what should be pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_known_hosts: Option<String>,
    /// Its supervisor runs.
    pub running: bool,
    /// Its local end accepts a TCP connection.
    pub answering: bool,
    /// The line in its block of the primary host's authorized_keys.
    pub authorized: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilestoreObservation {
    pub job: Option<String>,
    pub public_key: Option<String>,
    pub known_hosts: Option<String>,
    /// As for a tunnel: what pgfleet's own known_hosts records now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_known_hosts: Option<String>,
    /// The recurring job is installed.
    pub scheduled: bool,
    pub authorized: Option<String>,
    /// Owner of the filestore directory on the primary's host.
    pub source_owner: Option<String>,
    /// The last run: when (Unix seconds) and its exit status.
    pub last_run: Option<(u64, i32)>,
    pub last_success: Option<u64>,
    /// The replica host's clock when observed (Unix seconds).
    pub now: Option<u64>,
    /// Files that differ (rsync dry run), when it could run.
    pub behind: Option<u64>,
}

impl FilestoreObservation {
    /// Seconds since the last successful sync.
    pub fn age_seconds(&self) -> Option<u64> {
        Some(self.now?.saturating_sub(self.last_success?))
    }
}

/// What the helpers' observation adds, by address.
#[derive(Debug, Default)]
pub struct Helpers {
    pub tunnels: BTreeMap<String, TunnelObservation>,
    pub filestores: BTreeMap<String, FilestoreObservation>,
}

/// One helper to look at, on the replica's host, with its authorization
/// on the primary's host.
#[derive(Debug, Clone)]
struct Probe {
    address: Address,
    replica_host: String,
    primary_host: String,
    dir: std::path::PathBuf,
    /// The filestore's source directory, for a mirror.
    source: Option<std::path::PathBuf>,
    every_seconds: u64,
}

fn probes(topology: &Topology) -> Vec<Probe> {
    let mut found = Vec::new();
    for resource in Inventory::of(topology).resources {
        let environment: &Environment = resource.environment;
        let find = |name: &str| environment.replicas.iter().find(|replica| replica.name == name);
        let (replica, source, every_seconds, dir): (&Replica, _, _, _) = match resource.item {
            Item::Tunnel { replica } => (replica, None, 0, tunnel::helper_dir(environment, replica, "tunnel")),
            Item::Filestore { replica } => {
                let (Some(replica), Some(mirror)) = (find(replica), environment.filestore.as_ref()) else { continue };
                (replica, Some(mirror.path.clone()), mirror.every.seconds(), filestore::dir(environment, replica))
            }
            Item::Member { .. }
            | Item::Role { .. }
            | Item::Hba
            | Item::Database { .. }
            | Item::Slot { .. }
            | Item::Pooler(_)
            | Item::Odoo(_)
            | Item::Backup => continue,
        };
        found.push(Probe {
            address: resource.address,
            replica_host: replica.host.clone(),
            primary_host: environment.primary.host.clone(),
            dir,
            source,
            every_seconds,
        });
    }
    found
}

/// The command run on the replica's host for one helper.
fn replica_side(probe: &Probe, index: usize) -> String {
    let quoted = |path: &std::path::Path| shell_quote(&path.to_string_lossy());
    let name = tunnel::unit_name(probe.address.kind.as_str(), &probe.address.environment, &probe.address.name);
    let (program, running) = if probe.address.kind == Kind::Tunnel {
        let program = probe.dir.join("tunnel.sh");
        let running = Helper { name: &name, dir: &probe.dir, program: &program }.is_running();
        (program, running)
    } else {
        let program = filestore::job_file(&probe.dir);
        let every = Recurring { name: &name, dir: &probe.dir, program: &program, every_seconds: probe.every_seconds };
        (program.clone(), every.is_installed())
    };
    format!(
        r#"k=h{index}; d={dir}
[ -f {program} ] && echo "$k.program=$(base64 -w0 {program})"
[ -f "$d/id_ed25519.pub" ] && echo "$k.public_key=$(base64 -w0 "$d/id_ed25519.pub")"
[ -f "$d/known_hosts" ] && echo "$k.known_hosts=$(base64 -w0 "$d/known_hosts")"
if {running}; then echo "$k.running=1"; fi
[ -f "$d/last-run" ] && echo "$k.last_run=$(cat "$d/last-run")"
[ -f "$d/last-success" ] && echo "$k.last_success=$(cat "$d/last-success")"
echo "$k.now=$(date +%s)"
"#,
        dir = quoted(&probe.dir),
        program = quoted(&program),
    )
}

/// What to look at for the topology's tunnels and mirrors: the probes, and
/// the command each host runs for them (on the same session as its facts).
#[derive(Debug, Clone, Default)]
pub struct Work {
    probes: Vec<Probe>,
    scripts: BTreeMap<String, String>,
    /// Primary host → the known_hosts text pgfleet trusts for it.
    trusted: BTreeMap<String, String>,
}

impl Work {
    pub fn of(topology: &Topology) -> Self {
        let probes = probes(topology);
        let mut scripts: BTreeMap<String, String> = BTreeMap::new();
        let mut authorizations: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (index, probe) in probes.iter().enumerate() {
            scripts.entry(probe.replica_host.clone()).or_default().push_str(&replica_side(probe, index));
            authorizations.entry(&probe.primary_host).or_default().push(probe.address.to_string());
            if let Some(source) = &probe.source {
                scripts.entry(probe.primary_host.clone()).or_default().push_str(&format!(
                    "echo \"h{index}.owner=$(stat -c %U {} 2>/dev/null)\"\n",
                    shell_quote(&source.to_string_lossy())
                ));
            }
        }
        for (host, addresses) in &authorizations {
            if let Some(found) = topology.hosts.get(*host) {
                scripts.entry((*host).to_owned()).or_default().push_str(&tunnel::read_authorizations(found, addresses));
            }
        }
        let trusted = authorizations
            .keys()
            .filter_map(|host| {
                let (target, _) = tunnel::ssh_login(topology.hosts.get(*host)?)?;
                let keys = crate::transport::ssh::pinned_host_keys(host, target).ok()?;
                Some(((*host).to_owned(), tunnel::known_hosts(target, &keys)))
            })
            .collect();
        Work { probes, scripts, trusted }
    }

    /// Runs this host's part on its session: the command, then for its
    /// tunnels whether their local ends answer and for its mirrors the dry
    /// run. `None` when the host has nothing to look at or the command fails.
    pub async fn observe_host(&self, topology: &Topology, host: &str, remote: &dyn Remote) -> Option<HostPart> {
        let script = self.scripts.get(host)?;
        // On stdin, like the facts script: it grows with the helpers a host holds.
        let output = remote.exec("sh -s", format!("{script}exit 0\n").as_bytes(), COMMAND_TIMEOUT).await.ok()?;
        if !output.success() {
            return None;
        }
        let mut part = HostPart { text: output.stdout_text(), ..HostPart::default() };
        for (index, probe) in self.probes.iter().enumerate().filter(|(_, probe)| probe.replica_host == host) {
            let here = fields(&part.text, &format!("h{index}"));
            if probe.address.kind == Kind::Tunnel {
                let replica = topology.environment(&probe.address.environment).and_then(|environment| {
                    environment.replicas.iter().find(|replica| replica.name == probe.address.name)
                });
                let Some(replica) = replica.filter(|_| here.contains_key("running")) else { continue };
                let (address, port) = tunnel::local_end(replica);
                let answering = tokio::time::timeout(Duration::from_secs(5), remote.connect_tcp(&address, port))
                    .await
                    .is_ok_and(|connected| connected.is_ok());
                part.answering.insert(probe.address.to_string(), answering);
            } else if here.contains_key("program") {
                let command =
                    format!("/bin/sh {} --dry-run", shell_quote(&filestore::job_file(&probe.dir).to_string_lossy()));
                if let Ok(output) = remote.exec(&command, b"", DRY_RUN_TIMEOUT).await
                    && let Some(behind) = output
                        .stdout_text()
                        .lines()
                        .find_map(|line| line.strip_prefix("behind="))
                        .and_then(|count| count.trim().parse().ok())
                {
                    part.behind.insert(probe.address.to_string(), behind);
                }
            }
        }
        Some(part)
    }

    /// The observations, from every host's part (by host name).
    pub fn combine(&self, parts: &BTreeMap<String, HostPart>) -> Helpers {
        let mut helpers = Helpers::default();
        let mut authorized_at: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, probe) in self.probes.iter().enumerate() {
            // The n-th authorization read on the primary's host is this
            // probe's when it is the n-th probe with that primary host.
            let position = authorized_at.entry(&probe.primary_host).or_insert(0);
            let at = *position;
            *position += 1;
            let Some(part) = parts.get(&probe.replica_host) else { continue };
            let address = probe.address.to_string();
            let here = fields(&part.text, &format!("h{index}"));
            let decoded = |name: &str| here.get(name).and_then(|value| decode(value));
            let primary = parts.get(&probe.primary_host);
            let primary_fields = primary.map(|part| fields(&part.text, &format!("h{index}"))).unwrap_or_default();
            let authorized = primary
                .and_then(|part| fields(&part.text, "auth").get(&at.to_string()).cloned())
                .and_then(|value| decode(&value))
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty());
            let running = here.contains_key("running");
            let public_key = decoded("public_key").map(|key| key.trim().to_owned());
            if probe.address.kind == Kind::Tunnel {
                helpers.tunnels.insert(
                    address.clone(),
                    TunnelObservation {
                        program: decoded("program"),
                        public_key,
                        known_hosts: decoded("known_hosts"),
                        trusted_known_hosts: self.trusted.get(&probe.primary_host).cloned(),
                        running,
                        answering: part.answering.get(&address).copied().unwrap_or(false),
                        authorized,
                    },
                );
            } else {
                helpers.filestores.insert(
                    address.clone(),
                    FilestoreObservation {
                        job: decoded("program"),
                        public_key,
                        known_hosts: decoded("known_hosts"),
                        trusted_known_hosts: self.trusted.get(&probe.primary_host).cloned(),
                        scheduled: running,
                        authorized,
                        source_owner: primary_fields.get("owner").filter(|owner| !owner.is_empty()).cloned(),
                        last_run: here.get("last_run").and_then(|value| {
                            let (at, rc) = value.split_once(' ')?;
                            Some((at.trim().parse().ok()?, rc.trim().parse().ok()?))
                        }),
                        last_success: here.get("last_success").and_then(|value| value.trim().parse().ok()),
                        now: here.get("now").and_then(|value| value.trim().parse().ok()),
                        behind: part.behind.get(&address).copied(),
                    },
                );
            }
        }
        helpers
    }
}

/// What one host's part of the helpers' observation printed and found.
#[derive(Debug, Clone, Default)]
pub struct HostPart {
    text: String,
    /// Tunnel address → its local end answers.
    answering: BTreeMap<String, bool>,
    /// Mirror address → files behind.
    behind: BTreeMap<String, u64>,
}

/// The `KEY.FIELD=VALUE` lines of `key`, as FIELD → VALUE.
fn fields(text: &str, key: &str) -> BTreeMap<String, String> {
    let prefix = format!("{key}.");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(name, value)| Some((name.strip_prefix(&prefix)?.to_owned(), value.to_owned())))
        .collect()
}

fn decode(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}
