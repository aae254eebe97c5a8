//! Host facts, gathered with one command per host: PostgreSQL binaries and
//! major version, locales, free disk, pgbouncer and rsync, and for each data
//! directory pgfleet cares about on that host: present, initialised
//! (`pg_controldata`), running (as its runtime tells). The runtime supplies
//! the fragments that depend on how PostgreSQL runs; this module parses
//! what they print.
//!
//! Read-only: the script only reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::Runtime;
use crate::secrets::Secret;
use crate::transport::{COMMAND_TIMEOUT, Remote, TransportError, shell_quote};

/// A cluster member whose data directory pgfleet looks at.
pub type DataDirProbe = crate::placement::ClusterPlacement;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Directory of the PostgreSQL binaries of the wanted major, if present.
    pub pg_bin_dir: Option<PathBuf>,
    /// Major version those binaries report.
    pub pg_major: Option<u32>,
    pub locales: Vec<String>,
    /// `/etc/machine-id` (or the boot id): two hosts with the same one are
    /// one machine, whatever their addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub pgbouncer: Option<PathBuf>,
    pub rsync: Option<PathBuf>,
    pub data_dirs: BTreeMap<PathBuf, DataDirFacts>,
    /// By ini path.
    pub poolers: BTreeMap<PathBuf, PoolerFacts>,
}

/// A pooler whose files pgfleet looks at.
pub type PoolerProbe = crate::placement::PoolerPlacement;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerFacts {
    /// The ini file's text (it holds no secret: the userlist does).
    pub ini: Option<String>,
    /// The pid file names a live process.
    pub running: bool,
    /// The address its connections to the cluster it fronts leave from, as
    /// the host routes them (`ip route get`): where the cluster's hba must
    /// admit it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirFacts {
    pub exists: bool,
    /// Exists and holds nothing (initdb and pg_basebackup need that).
    pub empty: bool,
    /// Major version in PG_VERSION, when initialised.
    pub initialised_major: Option<u32>,
    pub system_identifier: Option<String>,
    pub timeline: Option<u32>,
    /// `pg_controldata`'s "Database cluster state" (e.g. `in production`,
    /// `in archive recovery`, `shut down`).
    pub cluster_state: Option<String>,
    /// standby.signal present: the cluster starts as a standby.
    pub standby_signal: bool,
    /// The lines of pgfleet's block in pg_hba.conf, markers excluded; `None`
    /// when there is no block.
    pub hba_block: Option<Vec<String>>,
    /// Its runtime reports the postmaster live and ready (read from files:
    /// no connection, no backend forked).
    pub running: bool,
    /// Free bytes on the file system holding the directory (or its nearest
    /// existing parent).
    pub free_bytes: Option<u64>,
}

/// The secrets pgfleet keeps on a host, read with the facts: superuser and
/// generated role passwords beside each data directory, and each pooler's
/// userlist. Held in memory while observing, to log in and to tell whether
/// passwords are current; never part of the observations, never
/// serialised, never printed.
#[derive(Default)]
pub struct HostSecrets {
    superuser: BTreeMap<PathBuf, Secret>,
    roles: BTreeMap<(PathBuf, String), Secret>,
    userlists: BTreeMap<PathBuf, String>,
    passfiles: BTreeMap<PathBuf, String>,
}

impl HostSecrets {
    /// The superuser password kept beside `data_dir`.
    pub fn superuser(&self, data_dir: &Path) -> Option<&str> {
        self.superuser.get(data_dir).map(Secret::expose)
    }

    /// A generated role password kept beside `data_dir`.
    pub fn role(&self, data_dir: &Path, role: &str) -> Option<&Secret> {
        self.roles.get(&(data_dir.to_owned(), role.to_owned()))
    }

    /// The passfile kept beside a replica's `data_dir`.
    pub fn passfile(&self, data_dir: &Path) -> Option<&str> {
        self.passfiles.get(data_dir).map(String::as_str)
    }

    /// The userlist of the pooler whose ini is `ini`.
    pub fn userlist(&self, ini: &Path) -> Option<&str> {
        self.userlists.get(ini).map(String::as_str)
    }
}

impl std::fmt::Debug for HostSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostSecrets(redacted)")
    }
}

/// A fragment printing `KEY=SRC`, the source address the host's kernel
/// picks for a connection to `destination` (a route lookup: nothing is
/// sent). Prints nothing when there is no destination or no `ip`.
pub fn route_source(key: &str, destination: &str) -> String {
    if destination.is_empty() {
        return String::new();
    }
    format!(
        "s=$(ip -o route get {} 2>/dev/null | sed -n 's/.* src \\([^ ]*\\).*/\\1/p'); [ -n \"$s\" ] && echo \"{key}=$s\"\n",
        shell_quote(destination)
    )
}

/// Everything one command on the host reports.
pub async fn gather(
    remote: &dyn Remote,
    binaries: (&dyn Runtime, u32),
    data_dirs: &[DataDirProbe],
    poolers: &[PoolerProbe],
) -> Result<(HostFacts, HostSecrets), TransportError> {
    // The script goes on stdin, not the command line: a host shared by
    // many environments makes it longer than one argument may be
    // (MAX_ARG_STRLEN, 128 kB: `Argument list too long`).
    let script = facts_script(binaries, data_dirs, poolers);
    let output = remote.exec("sh -s", script.as_bytes(), COMMAND_TIMEOUT).await?;
    if !output.success() {
        return Err(TransportError::command(remote.host(), "gather host facts", &output));
    }
    Ok(parse_facts(&output.stdout_text()))
}

fn facts_script((runtime, major): (&dyn Runtime, u32), data_dirs: &[DataDirProbe], poolers: &[PoolerProbe]) -> String {
    let mut script = runtime.binaries_facts(major);
    script.push_str(
        r#"p=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null); [ -n "$p" ] && echo "pgbouncer=$p"
r=$(command -v rsync); [ -n "$r" ] && echo "rsync=$r"
locale -a 2>/dev/null | sed 's/^/locale=/'
m=$(cat /etc/machine-id 2>/dev/null || cat /proc/sys/kernel/random/boot_id 2>/dev/null); [ -n "$m" ] && echo "machine_id=$m"
"#,
    );
    for (index, probe) in data_dirs.iter().enumerate() {
        let layout = &probe.layout;
        let quoted = |path: &Path| shell_quote(&path.to_string_lossy());
        let key = format!("dir{index}");
        script.push_str(&format!(
            r#"d={dir}; k={key}
echo "$k.path=$d"
if [ -d "$d" ]; then echo "$k.exists=1"; [ -z "$(ls -A "$d" 2>/dev/null)" ] && echo "$k.empty=1"; fi
if [ -f "$d/PG_VERSION" ]; then
  echo "$k.major=$(cat "$d/PG_VERSION")"
  LC_ALL=C {controldata} "$d" 2>/dev/null | sed -n -e 's/^Database system identifier: *\(.*\)/'$k'.sysid=\1/p' -e 's/^Latest checkpoint.s TimeLineID: *\(.*\)/'$k'.timeline=\1/p' -e 's/^Database cluster state: *\(.*\)/'$k'.state=\1/p'
fi
[ -f "$d/standby.signal" ] && echo "$k.standby=1"
h={hba}
if [ -f "$h" ] && grep -qxF {begin} "$h"; then
  echo "$k.hba=$(sed -n '/^# BEGIN pgfleet/,/^# END pgfleet/p' "$h" | base64 -w0)"
fi
{running}s={secret}; [ -f "$s" ] && echo "$k.superuser=$(base64 -w0 "$s")"
[ -f {passfile} ] && echo "$k.passfile=$(base64 -w0 {passfile})"
for f in {home}/role-*.password; do
  [ -f "$f" ] || continue; r=${{f##*/role-}}; echo "$k.rolepw.${{r%.password}}=$(base64 -w0 "$f")"
done
e="$d"; while [ ! -e "$e" ]; do e=$(dirname "$e"); done
echo "$k.free=$(df -Pk "$e" | awk 'NR==2 {{printf "%.0f", $4 * 1024}}')"
"#,
            dir = quoted(&layout.data_dir),
            controldata = quoted(&probe.runtime().controldata(probe.version)),
            hba = quoted(&layout.hba_file),
            begin = shell_quote(crate::desired::HBA_BEGIN),
            running = probe.runtime().running_facts(&key, layout),
            secret = quoted(&layout.superuser_password_file()),
            passfile = quoted(&layout.passfile()),
            home = quoted(&layout.home),
        ));
    }
    for (index, probe) in poolers.iter().enumerate() {
        script.push_str(&format!(
            r#"k=pooler{index}; i={ini}
echo "$k.path=$i"
[ -f "$i" ] && echo "$k.ini=$(base64 -w0 "$i")"
if {running}; then echo "$k.running=1"; fi
[ -f {userlist} ] && echo "$k.userlist=$(base64 -w0 {userlist})"
{route}"#,
            route = route_source("$k.source", &probe.cluster_address),
            ini = shell_quote(&probe.layout.ini.to_string_lossy()),
            userlist = shell_quote(&probe.layout.userlist.to_string_lossy()),
            running = probe.runtime().pooler_is_running(&probe.layout),
        ));
    }
    // The script's status is that of its last command; success is the
    // output, not the status.
    script.push_str("exit 0\n");
    script
}

fn parse_facts(text: &str) -> (HostFacts, HostSecrets) {
    let mut facts = HostFacts::default();
    let mut passwords: BTreeMap<String, String> = BTreeMap::new();
    let mut role_passwords: Vec<(String, String, String)> = Vec::new();
    let mut userlists: BTreeMap<String, String> = BTreeMap::new();
    let mut passfiles: BTreeMap<String, String> = BTreeMap::new();
    let mut dirs: BTreeMap<String, (Option<PathBuf>, DataDirFacts)> = BTreeMap::new();
    let mut poolers: BTreeMap<String, (Option<PathBuf>, PoolerFacts)> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "pg_bin" => facts.pg_bin_dir = Some(PathBuf::from(value)),
            // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
            "pg_version" => {
                facts.pg_major = value
                    .split_whitespace()
                    .nth(2)
                    .and_then(|version| version.split('.').next())
                    .and_then(|major| major.parse().ok());
            }
            "pgbouncer" => facts.pgbouncer = Some(PathBuf::from(value)),
            "rsync" => facts.rsync = Some(PathBuf::from(value)),
            "locale" => facts.locales.push(value.to_owned()),
            "machine_id" => facts.machine_id = Some(value.trim().to_owned()),
            _ if key.starts_with("pooler") => {
                let Some((pooler, field)) = key.split_once('.') else { continue };
                let (path, entry) = poolers.entry(pooler.to_owned()).or_default();
                match field {
                    "path" => *path = Some(PathBuf::from(value)),
                    "ini" => entry.ini = decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()),
                    "running" => entry.running = true,
                    "source" => entry.source = Some(value.trim().to_owned()),
                    "userlist" => {
                        if let Some(text) = decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()) {
                            userlists.insert(pooler.to_owned(), text);
                        }
                    }
                    _ => {}
                }
            }
            _ => {
                let Some((dir, field)) = key.split_once('.') else { continue };
                let (path, entry) = dirs.entry(dir.to_owned()).or_default();
                match field {
                    "path" => *path = Some(PathBuf::from(value)),
                    "exists" => entry.exists = true,
                    "empty" => entry.empty = true,
                    "major" => entry.initialised_major = value.trim().parse().ok(),
                    "sysid" => entry.system_identifier = Some(value.trim().to_owned()),
                    "timeline" => entry.timeline = value.trim().parse().ok(),
                    "state" => entry.cluster_state = Some(value.trim().to_owned()),
                    "standby" => entry.standby_signal = true,
                    "hba" => {
                        let block =
                            decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()).unwrap_or_default();
                        entry.hba_block = Some(
                            block
                                .lines()
                                .filter(|line| {
                                    !line.starts_with("# BEGIN pgfleet") && !line.starts_with("# END pgfleet")
                                })
                                .map(|line| line.trim_end().to_owned())
                                .filter(|line| !line.is_empty())
                                .collect(),
                        );
                    }
                    "running" => entry.running = true,
                    "superuser" => {
                        if let Some(password) = decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()) {
                            passwords.insert(dir.to_owned(), password.trim_end_matches(['\n', '\r']).to_owned());
                        }
                    }
                    "free" => entry.free_bytes = value.trim().parse().ok(),
                    "passfile" => {
                        if let Some(text) = decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()) {
                            passfiles.insert(dir.to_owned(), text);
                        }
                    }
                    field if field.starts_with("rolepw.") => {
                        if let Some(password) = decode_base64(value).and_then(|bytes| String::from_utf8(bytes).ok()) {
                            let role = field.trim_start_matches("rolepw.").to_owned();
                            let password = password.trim_end_matches(['\n', '\r']).to_owned();
                            role_passwords.push((dir.to_owned(), role, password));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let path_of = |key: &str| dirs.get(key).and_then(|(path, _)| path.clone());
    let secrets = HostSecrets {
        superuser: passwords
            .into_iter()
            .filter_map(|(key, password)| Some((path_of(&key)?, Secret::new(password))))
            .collect(),
        roles: role_passwords
            .into_iter()
            .filter_map(|(key, role, password)| Some(((path_of(&key)?, role), Secret::new(password))))
            .collect(),
        userlists: userlists
            .into_iter()
            .filter_map(|(key, text)| Some((poolers.get(&key)?.0.clone()?, text)))
            .collect(),
        passfiles: passfiles.into_iter().filter_map(|(key, text)| Some((path_of(&key)?, text))).collect(),
    };
    facts.data_dirs = dirs.into_values().filter_map(|(path, entry)| Some((path?, entry))).collect();
    facts.poolers = poolers.into_values().filter_map(|(path, entry)| Some((path?, entry))).collect();
    (facts, secrets)
}

/// Standard base64, as coreutils' `base64` writes it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

impl HostFacts {
    pub fn data_dir(&self, path: &Path) -> Option<&DataDirFacts> {
        self.data_dirs.get(path)
    }

    pub fn pooler(&self, ini: &Path) -> Option<&PoolerFacts> {
        self.poolers.get(ini)
    }

    /// Whether the host has the locale, compared the way glibc names them
    /// (`en_US.UTF-8` and `en_US.utf8` are the same locale).
    pub fn has_locale(&self, locale: &str) -> bool {
        let normal = |name: &str| name.to_ascii_lowercase().replace("utf-8", "utf8");
        let wanted = normal(locale);
        self.locales.iter().any(|candidate| normal(candidate) == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_facts_script_output() {
        let text = "pg_bin=/opt/pg/15/bin\npg_version=postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n\
                    pgbouncer=/usr/sbin/pgbouncer\nlocale=C\nlocale=C.utf8\nlocale=en_US.utf8\n\
                    dir0.path=/srv/pg/main\ndir0.exists=1\ndir0.major=15\ndir0.sysid=7300000000000000001\n\
                    dir0.timeline=2\ndir0.state=in production\ndir0.running=1\ndir0.free=1048576\n\
                    dir1.path=/srv/pg/r1\ndir1.free=2048\n";
        let (facts, _) = parse_facts(&format!("{text}machine_id=0123abcd\n"));
        assert_eq!(facts.pg_major, Some(15));
        assert_eq!(facts.machine_id.as_deref(), Some("0123abcd"));
        assert_eq!(facts.rsync, None);
        assert!(facts.has_locale("en_US.UTF-8"));
        assert!(!facts.has_locale("fr_FR.UTF-8"));
        let main = facts.data_dir(Path::new("/srv/pg/main")).unwrap();
        assert_eq!(main.system_identifier.as_deref(), Some("7300000000000000001"));
        assert_eq!(main.timeline, Some(2));
        assert!(main.running && main.exists);
        let replica = facts.data_dir(Path::new("/srv/pg/r1")).unwrap();
        assert!(!replica.exists && replica.initialised_major.is_none());
        assert_eq!(replica.free_bytes, Some(2048));
    }

    #[test]
    fn decodes_base64_like_coreutils() {
        assert_eq!(decode_base64("aGVsbG8K").unwrap(), b"hello\n");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("!!").is_none());
    }
}
