//! The `debian` runtime: clusters of Debian's `postgresql-common`, made by
//! `pg_createcluster` and driven by `pg_ctlcluster`, their configuration in
//! `/etc/postgresql/VERSION/NAME` (pgfleet's hba block goes into that
//! `pg_hba.conf`; settings go through `ALTER SYSTEM`, into the data
//! directory's `postgresql.auto.conf`, as on any cluster). Clusters are
//! created with `start.conf` set to `auto`, so where systemd runs,
//! `postgresql@VERSION-NAME` starts them at boot; pgfleet starts and stops
//! them through systemctl when the service user may (passwordless sudo),
//! else with `pg_ctlcluster` directly.
//!
//! A cluster is named by its data directory: `/var/lib/postgresql/15/main`
//! is `15/main`, as Debian names it; any other directory is named by its
//! path (`/srv/pg/prod` → `srv-pg-prod`), so two data directories never
//! share a name.
//!
//! PgBouncer runs from its own ini beside the cluster: where systemd runs
//! and the service user may ask it, as a unit pgfleet writes
//! (`pgfleet-pgbouncer-VERSION-NAME-PORT.service`, enabled, so it starts at
//! boot); elsewhere as a daemon with its pid file, as the `pg_ctl` runtime
//! runs it.

use std::path::{Path, PathBuf};

use super::{
    BackupSource, Capabilities, ClusterLayout, Member, PgCtl, PoolerLayout, Runtime, socket_in, unix_socket_bridge,
};
use crate::transport::shell_quote;

pub struct Debian;

/// The rules `pg_createcluster` needs in a data directory it integrates
/// (`pg_basebackup` from a Debian primary copies none): Debian's defaults.
const DEFAULT_HBA: &str = "local all postgres peer\nlocal all all peer\n\
                           host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n";

fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

/// The characters a cluster or unit name may hold.
fn name_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

/// A name made of an absolute path: its components joined by `-`, any
/// other character `_` (`/srv/pg/prod db` → `srv-pg-prod_db`).
fn path_name(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|component| match component {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("-").chars().map(|c| if name_character(c) { c } else { '_' }).collect()
}

/// The cluster name Debian's tools know a data directory by.
fn cluster_name(data_dir: &Path, version: u32) -> String {
    let standard = Path::new("/var/lib/postgresql").join(version.to_string());
    if data_dir.parent() == Some(standard.as_path())
        && let Some(name) = data_dir
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty() && name.chars().all(name_character))
    {
        return name.to_owned();
    }
    path_name(data_dir)
}

/// `VERSION NAME` of the layout's cluster, quoted for the shell.
fn cluster(layout: &ClusterLayout) -> String {
    let name = layout.conf_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{} {}", layout.version, shell_quote(&name))
}

/// The systemd unit of the layout's cluster.
fn unit(layout: &ClusterLayout) -> String {
    let name = layout.conf_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    shell_quote(&format!("postgresql@{}-{name}", layout.version))
}

/// True where systemd runs and the service user may ask it.
const SYSTEMD: &str = "[ -d /run/systemd/system ] && sudo -n -l systemctl >/dev/null 2>&1";

/// The unit of the pooler whose files are in `layout`, named by its ini's
/// path (which names the cluster's home and the port), so no two share one.
fn pooler_unit(layout: &PoolerLayout) -> String {
    format!("pgfleet-{}.service", path_name(&layout.ini.with_extension("")))
}

fn pooler_unit_text(layout: &PoolerLayout) -> String {
    format!(
        "[Unit]\nDescription=PgBouncer (pgfleet) {ini}\nAfter=network.target postgresql.service\n\n\
         [Service]\nType=simple\nUser=postgres\nExecStart=/usr/sbin/pgbouncer {ini}\n\
         ExecReload=/bin/kill -HUP $MAINPID\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
        ini = layout.ini.display(),
    )
}

/// Runs `action` through systemd where it runs and the service user may
/// ask it, else through `pg_ctlcluster` (which waits for the server).
fn control(layout: &ClusterLayout, action: &str, mode: &str) -> String {
    format!(
        "if {SYSTEMD}; then \
         sudo -n systemctl {action} {unit}; else pg_ctlcluster {mode}{cluster} {action}; fi",
        unit = unit(layout),
        cluster = cluster(layout),
    )
}

impl Runtime for Debian {
    fn name(&self) -> &'static str {
        "debian"
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
        let name = cluster_name(data_dir, version);
        let conf_dir = PathBuf::from(format!("/etc/postgresql/{version}/{name}"));
        ClusterLayout {
            hba_file: conf_dir.join("pg_hba.conf"),
            log_file: PathBuf::from(format!("/var/log/postgresql/postgresql-{version}-{name}.log")),
            socket_dir: None,
            service: format!("{version}/{name}"),
            conf_dir,
            ..PgCtl.cluster_layout(member, data_dir, version)
        }
    }

    fn pooler_layout(&self, member: Member<'_>, home: &Path, port: u16) -> PoolerLayout {
        PgCtl.pooler_layout(member, home, port)
    }

    fn binaries_facts(&self, version: u32) -> String {
        PgCtl.binaries_facts(version)
    }

    fn running_facts(&self, key: &str, layout: &ClusterLayout) -> String {
        PgCtl.running_facts(key, layout)
    }

    fn controldata(&self, version: u32) -> PathBuf {
        PgCtl.controldata(version)
    }

    fn initialise(&self, layout: &ClusterLayout, port: u16, password_file: &Path) -> String {
        let (data, conf) = (quoted(&layout.data_dir), quoted(&layout.conf_dir.join("postgresql.conf")));
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ] && [ -f {conf} ]; then exit 0; fi\n\
             if [ -f {data}/PG_VERSION ]; then echo {foreign} >&2; exit 1; fi\n\
             # A configuration without data is a run killed half-way: start over.\n\
             if [ -f {conf} ]; then pg_dropcluster {cluster}; fi\n\
             pg_createcluster {cluster} -d {data} -p {port} --start-conf=auto -- --data-checksums --encoding=UTF8 \
             --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 --pwfile={password_file} >/dev/null\n",
            cluster = cluster(layout),
            foreign = shell_quote(&format!(
                "{} holds a cluster that pg_createcluster did not register; pgfleet leaves it alone",
                layout.data_dir.display()
            )),
            password_file = quoted(password_file),
        )
    }

    fn base_backup(&self, layout: &ClusterLayout, port: u16, source: BackupSource<'_>) -> String {
        let data = quoted(&layout.data_dir);
        let building = quoted(&super::with_suffix(&layout.data_dir, ".pgfleet-basebackup"));
        let conf = quoted(&layout.conf_dir.join("postgresql.conf"));
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ] && [ -f {conf} ]; then exit 0; fi\n\
             if [ ! -f {data}/PG_VERSION ]; then\n\
             rm -rf {building}\n\
             PGPASSFILE={passfile} {pg_basebackup} -h {host} -p {source_port} -U {user} -D {building} \
             -X stream -S {slot} --checkpoint=fast --no-password\n\
             # pg_createcluster takes the configuration files from the data\n\
             # directory it integrates; a Debian primary's copy has none.\n\
             [ -f {building}/postgresql.conf ] || cp {sample} {building}/postgresql.conf\n\
             [ -f {building}/pg_hba.conf ] || printf %s {hba} > {building}/pg_hba.conf\n\
             [ -f {building}/pg_ident.conf ] || : > {building}/pg_ident.conf\n\
             if [ -d {data} ]; then rmdir {data}; fi\n\
             mv {building} {data}\n\
             fi\n\
             pg_createcluster {cluster} -d {data} -p {port} --start-conf=auto >/dev/null\n",
            passfile = quoted(&layout.passfile()),
            pg_basebackup = quoted(&layout.program("pg_basebackup")),
            host = shell_quote(source.address),
            source_port = source.port,
            user = shell_quote(source.user),
            slot = shell_quote(source.slot),
            sample = quoted(&PathBuf::from(format!("/usr/share/postgresql/{}/postgresql.conf.sample", layout.version))),
            hba = shell_quote(DEFAULT_HBA),
            cluster = cluster(layout),
        )
    }

    fn remove(&self, layout: &ClusterLayout) -> String {
        format!(
            "if [ -d {conf} ]; then pg_dropcluster {cluster}; fi; rm -rf -- {data}",
            conf = quoted(&layout.conf_dir),
            cluster = cluster(layout),
            data = quoted(&layout.data_dir),
        )
    }

    fn admin_bridge(&self, _layout: &ClusterLayout, port: u16) -> Option<String> {
        Some(unix_socket_bridge(&socket_in(Path::new(super::DEFAULT_SOCKET_DIR), port)))
    }

    fn is_running(&self, layout: &ClusterLayout) -> String {
        PgCtl.is_running(layout)
    }

    fn start(&self, layout: &ClusterLayout) -> String {
        control(layout, "start", "")
    }

    fn stop(&self, layout: &ClusterLayout) -> String {
        control(layout, "stop", "-m fast ")
    }

    fn restart(&self, layout: &ClusterLayout) -> String {
        control(layout, "restart", "-m fast ")
    }

    fn reload(&self, layout: &ClusterLayout) -> String {
        control(layout, "reload", "")
    }

    fn promote(&self, layout: &ClusterLayout) -> String {
        // systemd has no verb for it: pg_ctlcluster signals the postmaster.
        format!("pg_ctlcluster {} promote", cluster(layout))
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String {
        PgCtl.pooler_is_running(layout)
    }

    fn pooler_start(&self, layout: &PoolerLayout) -> String {
        let unit = pooler_unit(layout);
        format!(
            "if {systemd}; then\n\
             printf %s {text} | sudo -n tee /etc/systemd/system/{unit} >/dev/null\n\
             sudo -n systemctl daemon-reload && sudo -n systemctl enable --now {unit}\n\
             else {daemon}; fi",
            systemd = SYSTEMD,
            text = shell_quote(&pooler_unit_text(layout)),
            unit = shell_quote(&unit),
            daemon = PgCtl.pooler_start(layout),
        )
    }

    fn pooler_reload(&self, layout: &PoolerLayout) -> String {
        PgCtl.pooler_reload(layout)
    }

    fn pooler_stop(&self, layout: &PoolerLayout) -> String {
        let unit = shell_quote(&pooler_unit(layout));
        format!(
            "if [ -f /etc/systemd/system/{unit} ] && {systemd}; then sudo -n systemctl disable --now {unit}; \
             else {daemon}; fi",
            systemd = SYSTEMD,
            daemon = PgCtl.pooler_stop(layout),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_named_as_debian_names_them_or_by_their_path() {
        assert_eq!(cluster_name(Path::new("/var/lib/postgresql/15/main"), 15), "main");
        assert_eq!(cluster_name(Path::new("/var/lib/postgresql/15/main"), 16), "var-lib-postgresql-15-main");
        assert_eq!(cluster_name(Path::new("/srv/pg/prod db"), 15), "srv-pg-prod_db");
        let member = Member { environment: "prod", name: "primary", image: "" };
        let layout = Debian.cluster_layout(member, Path::new("/var/lib/postgresql/15/main"), 15);
        assert_eq!(layout.hba_file, Path::new("/etc/postgresql/15/main/pg_hba.conf"));
        assert_eq!(layout.auto_conf, Path::new("/var/lib/postgresql/15/main/postgresql.auto.conf"));
        assert_eq!(layout.log_file, Path::new("/var/log/postgresql/postgresql-15-main.log"));
        assert!(Debian.start(&layout).contains("pg_ctlcluster 15 main start"));
        assert!(Debian.start(&layout).contains("systemctl start postgresql@15-main"));
        let pooler = Debian.pooler_layout(member, &layout.home, 6432);
        assert_eq!(pooler_unit(&pooler), "pgfleet-var-lib-postgresql-15-main.pgfleet-pgbouncer-6432.service");
        assert!(
            pooler_unit_text(&pooler)
                .contains("ExecStart=/usr/sbin/pgbouncer /var/lib/postgresql/15/main.pgfleet/pgbouncer-6432.ini")
        );
        let start = Debian.pooler_start(&pooler);
        assert!(start.contains("systemctl daemon-reload") && start.contains("pgbouncer -q -d"), "{start}");
    }
}
