//! The `docker` runtime: each member and each pooler in its own container,
//! named by convention — `postgres-primary-ENV`, `postgres-replica-ENV-NAME`,
//! `pgbouncer-ENV`, `pgbouncer-replica-ENV-NAME` — on the host's network
//! (`--network host`), so each server listens on its own address of the
//! host (the host's loopback for a primary reachable only over SSH).
//!
//! The data directory and pgfleet's home beside it are bind mounts at the
//! same path inside the container, so the host facts (PG_VERSION,
//! postmaster.pid, pg_hba.conf) read the same files on the host. Containers
//! run as the host's service user (`--user UID:GID`, which the image's
//! /etc/passwd must know), restart with the Docker daemon (`--restart
//! unless-stopped`), and stop with SIGINT (PostgreSQL's fast shutdown).
//! Initialising and base backups run in one-shot containers of the same
//! image. The service user must be allowed to use Docker (group `docker`).

use std::path::{Path, PathBuf};

use super::{BackupSource, Capabilities, ClusterLayout, Member, PgCtl, PoolerLayout, Runtime, socket_in, with_suffix};
use crate::transport::shell_quote;

pub struct Docker;

fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

fn program(layout: &ClusterLayout, name: &str) -> String {
    quoted(&layout.program(name))
}

/// The directory holding `path` (the data directory's parent, where a
/// one-shot container builds beside it).
fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"))
}

/// `docker run` options every container of a cluster shares: the host's
/// network, the service user, and the bind mounts.
fn run_options(mounts: &[&Path]) -> String {
    let mut options = String::from("--network host --user \"$(id -u):$(id -g)\"");
    for mount in mounts {
        options.push_str(&format!(" -v {0}:{0}", quoted(mount)));
    }
    options
}

/// Exits 0 when the container runs.
fn container_runs(name: &str) -> String {
    format!("[ \"$(docker inspect -f '{{{{.State.Running}}}}' {} 2>/dev/null)\" = true ]", shell_quote(name))
}

/// Waits until the postmaster in the container says `ready` (or the
/// container ends, showing its log's end).
fn wait_ready(layout: &ClusterLayout) -> String {
    let pid = quoted(&layout.data_dir.join("postmaster.pid"));
    format!(
        "i=0; while :; do\n\
         s=$(sed -n 8p {pid} 2>/dev/null || true); [ \"${{s%% *}}\" = ready ] && break\n\
         if ! {runs}; then tail -n 20 {log} >&2 2>/dev/null; exit 1; fi\n\
         i=$((i+1)); [ $i -gt 6000 ] && exit 1; sleep 0.1\n\
         done\n",
        runs = container_runs(&layout.service),
        log = quoted(&layout.log_file),
    )
}

impl Runtime for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            observe: true,
            initialise: true,
            manage_process: true,
            replicas: true,
            poolers: true,
            edit_hba: true,
        }
    }

    fn cluster_layout(&self, member: Member<'_>, data_dir: &Path, version: u32) -> ClusterLayout {
        let service = if member.is_primary() {
            format!("postgres-primary-{}", member.environment)
        } else {
            format!("postgres-replica-{}-{}", member.environment, member.name)
        };
        // The socket directory is the container's own (its
        // /var/run/postgresql): no two servers share it.
        ClusterLayout {
            service,
            image: member.image.to_owned(),
            socket_dir: None,
            ..PgCtl.cluster_layout(member, data_dir, version)
        }
    }

    fn pooler_layout(&self, member: Member<'_>, home: &Path, port: u16) -> PoolerLayout {
        let service = if member.is_primary() {
            format!("pgbouncer-{}", member.environment)
        } else {
            format!("pgbouncer-replica-{}-{}", member.environment, member.name)
        };
        PoolerLayout { service, image: member.image.to_owned(), ..PgCtl.pooler_layout(member, home, port) }
    }

    /// The programs are the image's: the host needs a Docker it may use.
    fn binaries_facts(&self, version: u32) -> String {
        format!(
            "if docker version >/dev/null 2>&1; then echo \"pg_bin=/usr/lib/postgresql/{version}/bin\"; \
             echo \"pg_version=postgres (PostgreSQL) {version} (in containers)\"; fi\n"
        )
    }

    fn running_facts(&self, key: &str, layout: &ClusterLayout) -> String {
        format!(
            "if {runs} && [ -f \"$d/postmaster.pid\" ]; then\n  status=$(sed -n 8p \"$d/postmaster.pid\")\n  \
             [ \"${{status%% *}}\" = ready ] && echo \"{key}.running=1\"\nfi\n",
            runs = container_runs(&layout.service),
        )
    }

    fn controldata(&self, version: u32) -> PathBuf {
        PgCtl.controldata(version)
    }

    fn initialise(&self, layout: &ClusterLayout, _port: u16, password_file: &Path) -> String {
        let data = quoted(&layout.data_dir);
        let building = with_suffix(&layout.data_dir, ".pgfleet-init");
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
             rm -rf {building}\n\
             docker run --rm {options} {image} {initdb} -D {building} --data-checksums --encoding=UTF8 \
             --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 -U postgres --pwfile={password_file} >/dev/null\n\
             if [ -d {data} ]; then rmdir {data}; fi\n\
             mv {building} {data}\n",
            building = quoted(&building),
            options = run_options(&[&parent(&layout.data_dir), &layout.home]),
            image = shell_quote(&layout.image),
            initdb = program(layout, "initdb"),
            password_file = quoted(password_file),
        )
    }

    fn base_backup(&self, layout: &ClusterLayout, _port: u16, source: BackupSource<'_>) -> String {
        let data = quoted(&layout.data_dir);
        let building = with_suffix(&layout.data_dir, ".pgfleet-basebackup");
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
             rm -rf {building}\n\
             docker run --rm {options} -e PGPASSFILE={passfile} {image} {pg_basebackup} -h {host} -p {port} -U {user} \
             -D {building} -X stream -S {slot} --checkpoint=fast --no-password\n\
             if [ -d {data} ]; then rmdir {data}; fi\n\
             mv {building} {data}\n",
            building = quoted(&building),
            options = run_options(&[&parent(&layout.data_dir), &layout.home]),
            passfile = quoted(&layout.passfile()),
            image = shell_quote(&layout.image),
            pg_basebackup = program(layout, "pg_basebackup"),
            host = shell_quote(source.address),
            port = source.port,
            user = shell_quote(source.user),
            slot = shell_quote(source.slot),
        )
    }

    fn remove(&self, layout: &ClusterLayout) -> String {
        format!(
            "docker rm -f {} >/dev/null 2>&1 || true; rm -rf -- {}",
            shell_quote(&layout.service),
            quoted(&layout.data_dir)
        )
    }

    /// Inside the container, as its `postgres`, on the image's socket
    /// directory.
    fn admin_bridge(&self, layout: &ClusterLayout, port: u16) -> Option<String> {
        Some(format!(
            "exec docker exec -i -u postgres {container} perl -e {bridge} {socket}",
            socket = quoted(&socket_in(Path::new(super::DEFAULT_SOCKET_DIR), port)),
            container = shell_quote(&layout.service),
            bridge = shell_quote(super::BRIDGE),
        ))
    }

    fn client(&self, layout: &ClusterLayout, port: u16, program: &str) -> String {
        format!(
            "docker exec -i -u postgres -e PGHOST={socket} -e PGPORT={port} -e PGUSER=postgres {container} {program}",
            container = shell_quote(&layout.service),
            program = self::program(layout, program),
            socket = quoted(Path::new(super::DEFAULT_SOCKET_DIR)),
        )
    }

    fn is_running(&self, layout: &ClusterLayout) -> String {
        container_runs(&layout.service)
    }

    fn start(&self, layout: &ClusterLayout) -> String {
        let container = shell_quote(&layout.service);
        format!(
            "set -e\n\
             if docker inspect {container} >/dev/null 2>&1; then docker start {container} >/dev/null; else\n\
             docker run -d --name {container} --restart unless-stopped --stop-signal SIGINT --stop-timeout 600 \
             {options} {image} sh -c 'exec \"$0\" -D \"$1\" >>\"$2\" 2>&1' {postgres} {data} {log} >/dev/null\n\
             fi\n{wait}",
            options = run_options(&[&layout.data_dir, &layout.home]),
            image = shell_quote(&layout.image),
            postgres = program(layout, "postgres"),
            data = quoted(&layout.data_dir),
            log = quoted(&layout.log_file),
            wait = wait_ready(layout),
        )
    }

    fn stop(&self, layout: &ClusterLayout) -> String {
        format!("docker stop {} >/dev/null", shell_quote(&layout.service))
    }

    fn restart(&self, layout: &ClusterLayout) -> String {
        format!("{} && {{\n{}}}", self.stop(layout), self.start(layout))
    }

    fn reload(&self, layout: &ClusterLayout) -> String {
        format!("docker kill -s HUP {} >/dev/null", shell_quote(&layout.service))
    }

    /// pg_rewind would run in a one-shot container of the image; not built
    /// yet: the old primary is rebuilt instead.
    fn rewind(&self, _layout: &ClusterLayout, _source: &str) -> Option<String> {
        None
    }

    fn promote(&self, layout: &ClusterLayout) -> String {
        format!(
            "docker exec {} {} promote -w -D {} >/dev/null",
            shell_quote(&layout.service),
            program(layout, "pg_ctl"),
            quoted(&layout.data_dir)
        )
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String {
        container_runs(&layout.service)
    }

    fn pooler_start(&self, layout: &PoolerLayout) -> String {
        let container = shell_quote(&layout.service);
        format!(
            "docker rm -f {container} >/dev/null 2>&1 || true; \
             docker run -d --name {container} --restart unless-stopped --stop-signal SIGINT {options} {image} \
             /usr/sbin/pgbouncer {ini} >/dev/null",
            options = run_options(&[&layout.home]),
            image = shell_quote(&layout.image),
            ini = quoted(&layout.ini),
        )
    }

    fn pooler_reload(&self, layout: &PoolerLayout) -> String {
        format!("docker kill -s HUP {} >/dev/null", shell_quote(&layout.service))
    }

    /// Stops and removes the container: the next start runs a new one.
    fn pooler_stop(&self, layout: &PoolerLayout) -> String {
        format!("docker rm -f {} >/dev/null", shell_quote(&layout.service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::home_beside;

    #[test]
    fn containers_are_named_by_the_convention() {
        let member = |name| Member { environment: "prod", name, image: "postgres:15" };
        let data = Path::new("/srv/pg/prod");
        assert_eq!(Docker.cluster_layout(member("primary"), data, 15).service, "postgres-primary-prod");
        assert_eq!(Docker.cluster_layout(member("r1"), data, 15).service, "postgres-replica-prod-r1");
        let home = home_beside(data);
        assert_eq!(Docker.pooler_layout(member("primary"), &home, 6432).service, "pgbouncer-prod");
        assert_eq!(Docker.pooler_layout(member("r1"), &home, 6433).service, "pgbouncer-replica-prod-r1");
        let start = Docker.start(&Docker.cluster_layout(member("primary"), data, 15));
        assert!(start.contains("--restart unless-stopped") && start.contains("--network host"), "{start}");
        assert!(start.contains("-v /srv/pg/prod:/srv/pg/prod"), "{start}");
    }
}
