//! The filestore mirror of a replica's host: the job script pgfleet writes
//! there (rsync over SSH from the primary's host, under `flock -n`, at low
//! CPU and I/O priority), and its key's authorization on the primary's
//! host. Pure.

use std::path::{Path, PathBuf};

use super::tunnel::{helper_dir, ssh_login, ssh_options};
use crate::topology::{Environment, Filestore, Host, Replica};
use crate::transport::shell_quote;

/// Exit status of a run that found another holding the lock.
pub const LOCKED: i32 = 75;

/// The mirror's directory on the replica's host.
pub fn dir(environment: &Environment, replica: &Replica) -> PathBuf {
    helper_dir(environment, replica, "filestore")
}

pub fn job_file(dir: &Path) -> PathBuf {
    dir.join("mirror.sh")
}

/// The job: one rsync run, or with `--dry-run` the count of files that
/// differ (printed as `behind=N`, no lock, nothing written). A real run
/// records `EPOCH RC` in `last-run`, and `EPOCH` in `last-success` when it
/// succeeded.
pub fn job(
    address: &str,
    environment: &Environment,
    filestore: &Filestore,
    replica: &Replica,
    primary: &Host,
    sudo_rsync: bool,
) -> Option<String> {
    let (target, user) = ssh_login(primary)?;
    let dir = dir(environment, replica);
    let quoted = |path: &Path| shell_quote(&path.to_string_lossy());
    let source = format!("{user}@{}:{}/", target.address, filestore.path.display());
    let mirror = format!("{}/", filestore.mirror_path.display());
    let mut rsync = String::from("rsync -a --numeric-ids --partial");
    if filestore.delete {
        rsync.push_str(" --delete");
    }
    if sudo_rsync {
        rsync.push_str(" --rsync-path='sudo -n rsync'");
    }
    Some(format!(
        r#"#!/bin/sh
# pgfleet {address}: {source} -> {mirror} on this host, every {every}
dir={dir}
ssh_command={ssh}
if [ "$1" = --dry-run ]; then
  out=$({rsync} --dry-run --out-format='%i' -e "$ssh_command" {source_quoted} {mirror_quoted}) || {{ echo "behind_error=$?"; exit 0; }}
  echo "behind=$(printf '%s\n' "$out" | grep -c '^>f')"
  exit 0
fi
exec 9>"$dir/lock"
if ! flock -n 9; then
  echo "pgfleet {address}: another run holds $dir/lock" >&2
  exit {LOCKED}
fi
mkdir -p {mirror_quoted}
priority="nice -n 19"
command -v ionice >/dev/null 2>&1 && priority="$priority ionice -c 3"
$priority {rsync} -e "$ssh_command" {source_quoted} {mirror_quoted}
rc=$?
now=$(date +%s)
echo "$now $rc" > "$dir/last-run.new" && mv "$dir/last-run.new" "$dir/last-run"
[ $rc -eq 0 ] && echo "$now" > "$dir/last-success.new" && mv "$dir/last-success.new" "$dir/last-success"
exit $rc
"#,
        every = filestore.every,
        dir = quoted(&dir),
        ssh = shell_quote(&format!("ssh {}", ssh_options(&dir, target.port))),
        source_quoted = shell_quote(&source),
        mirror_quoted = shell_quote(&mirror),
    ))
}

/// The authorized_keys line of the mirror's key on the primary's host:
/// commands (rsync's server side) but no forwarding, no pty, no agent.
pub fn authorization(public_key: &str) -> String {
    format!("restrict {}", public_key.trim())
}
