//! `pgfleet apply` on real servers, over SSH and locally: it builds a primary,
//! two streaming replicas and their poolers from empty hosts, serves rows
//! written on the primary from the replicas, converges (the next plan is
//! empty), survives being killed, locks its state, refuses stale plans, and
//! never leaks a secret.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fleet::{Fleet, REPLICATION_PASSWORD, text};

fn logins(fleet: &Fleet) -> Vec<usize> {
    fleet.ssh.iter().map(|server| server.log().matches("Accepted publickey").count()).collect()
}

fn converge_from_empty_hosts(fleet: &Fleet) {
    fleet.write_config(&["r1", "r2"]);
    let before = logins(fleet);
    let first = fleet.apply();
    // One SSH session per host for the whole apply: observation, actions
    // and the final observation share it.
    let after = logins(fleet);
    assert!(before.iter().zip(&after).all(|(before, after)| after - before == 1), "{before:?} -> {after:?}");
    assert!(text(&first.stdout).contains("Apply complete"), "{}", text(&first.stdout));
    assert_eq!(fleet.streaming(), "r1=streaming,r2=streaming");
    fleet.check_data(&["r1", "r2"], 1001);
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty");

    // A second apply has nothing to do and journals nothing.
    let journal_before = fleet.state()["journal"].as_array().unwrap().len();
    let second = fleet.apply();
    assert!(text(&second.stdout).contains("No changes"), "{}", text(&second.stdout));
    assert_eq!(fleet.state()["journal"].as_array().unwrap().len(), journal_before);

    // Secrets: files 0600 owned by postgres, and never in any output, the
    // state (journal included) or the standby's configuration.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let postgres_uid: u32 = support::as_postgres("id -u").trim().parse().unwrap();
    for file in [
        fleet.home("primary").join("superuser.password"),
        fleet.home("primary").join("role-odoo.password"),
        fleet.home("primary").join("userlist.txt"),
        fleet.home("r1").join("passfile"),
        fleet.home("r1").join("userlist.txt"),
        fleet.home("r2").join("passfile"),
    ] {
        let metadata = std::fs::metadata(&file).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{}", file.display());
        assert_eq!(metadata.uid(), postgres_uid, "{}", file.display());
    }
    let conninfo = std::fs::read_to_string(fleet.data_dir("r1").join("postgresql.auto.conf")).unwrap();
    assert!(conninfo.contains("passfile="), "{conninfo}");
    let mut seen =
        format!("{}{}{}{}", text(&first.stdout), text(&first.stderr), text(&second.stdout), text(&second.stderr));
    seen.push_str(&std::fs::read_to_string(fleet.dir().join("state.json")).unwrap());
    seen.push_str(&conninfo);
    seen.push_str(&text(&fleet.pgfleet(&["plan", "--format", "json"]).stdout));
    for secret in
        [fleet.secret("superuser.password"), fleet.secret("role-odoo.password"), REPLICATION_PASSWORD.to_owned()]
    {
        assert!(!secret.is_empty());
        assert!(!seen.contains(&secret), "a secret leaked");
    }
}

#[test]
fn apply_over_ssh_streams_serves_through_poolers_and_replans_empty() {
    converge_from_empty_hosts(&Fleet::ssh());
}

#[test]
fn apply_locally_streams_serves_through_poolers_and_replans_empty() {
    converge_from_empty_hosts(&Fleet::local());
}

#[test]
fn removing_a_replica_stops_it_removes_its_data_and_drops_its_slot() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1", "r2"]);
    fleet.apply();
    fleet.write_config(&["r1"]);
    let plan = fleet.plan_json();
    let deletions: Vec<&str> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] == "delete")
        .map(|change| change["address"].as_str().unwrap())
        .collect();
    assert_eq!(deletions, ["shop.pooler.r2", "shop.replica.r2", "shop.slot.r2"]);
    fleet.apply();
    assert!(!fleet.data_dir("r2").exists(), "r2's data directory is gone");
    assert!(!fleet.home("r2").exists(), "and pgfleet's files beside it");
    assert_eq!(fleet.superuser_sql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots"), "r1");
    assert_eq!(fleet.streaming(), "r1=streaming");
    assert!(
        fleet
            .psql(
                fleet.addresses[2],
                fleet.replica_pooler_port,
                "odoo",
                &fleet.secret("role-odoo.password"),
                "shop",
                "SELECT 1"
            )
            .is_err()
    );
    assert_eq!(fleet.plan_exit_code(), 0);
    let owned = fleet.state()["owned"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(!owned.iter().any(|address| address.ends_with(".r2")), "{owned:?}");
    fleet.check_data(&["r1"], 2002);
}

/// The primary's pooler on a host of its own (where the application runs):
/// it listens there and fronts the primary across hosts, so a primary that
/// moves only repoints it.
#[test]
fn the_primary_pooler_runs_on_the_host_the_application_connects_to() {
    let fleet = Fleet::ssh();
    let app_address = support::free_loopback_address();
    let yaml = fleet.config(&["r1"]).replace(
        &format!("port: {}, replica_port", fleet.pooler_port),
        &format!("host: db3, address: {app_address}, port: {}, replica_port", fleet.pooler_port),
    );
    assert!(yaml.contains("host: db3"), "{yaml}");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), &yaml).unwrap();
    fleet.apply();
    let password = fleet.secret("role-odoo.password");
    let through = |sql: &str| fleet.psql(app_address, fleet.pooler_port, "odoo", &password, "shop", sql);
    through("CREATE TABLE orders (id bigint); INSERT INTO orders VALUES (42)").unwrap();
    assert_eq!(through("SELECT count(*) FROM orders WHERE id = 42").unwrap(), "1");
    assert!(
        fleet.psql(fleet.addresses[0], fleet.pooler_port, "odoo", &password, "shop", "SELECT 1").is_err(),
        "nothing listens for the pooler on the primary's address"
    );
    let ini =
        std::fs::read_to_string(fleet.home("primary").join(format!("pgbouncer-{}.ini", fleet.pooler_port))).unwrap();
    assert!(ini.contains(&format!("listen_addr = {app_address}")), "{ini}");
    assert!(ini.contains(&format!("host={} port={}", fleet.addresses[0], fleet.ports[0])), "{ini}");
    assert_eq!(fleet.state()["owned"]["shop.pooler.primary"]["host"], "db3");
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty");
}

/// Odoo's configuration on its own host is kept pointed at the primary's
/// pooler and, on Odoo 18, a replica's pooler for read-only queries; every
/// other line, its owner and mode are kept, and Odoo is restarted with the
/// operator's command only when something changed.
#[test]
fn odoo_is_pointed_at_the_poolers_and_restarted_only_when_they_change() {
    use std::os::unix::fs::MetadataExt;
    let fleet = Fleet::ssh();
    let config = fleet.dir().join("odoo.conf");
    let restarted = fleet.dir().join("odoo-restarted");
    let original = "[options]\nadmin_passwd = keep-this-Zq81\ndb_host = old-db.example\ndb_user = odoo\n\n[queue_job]\ndb_host = not-ours\n";
    support::as_postgres(&format!("printf '%s' '{original}' > {0} && chmod 0640 {0}", config.display()));
    let yaml = format!(
        "{}    odoo: {{ host: db3, config: {}, restart: \"touch {}\" }}\n",
        fleet.config(&["r1"]),
        config.display(),
        restarted.display()
    );
    std::fs::write(fleet.dir().join("pgfleet.yaml"), &yaml).unwrap();
    let before = std::fs::metadata(&config).unwrap();
    fleet.apply();
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        format!(
            "[options]\nadmin_passwd = keep-this-Zq81\ndb_host = {}\ndb_user = odoo\ndb_port = {}\ndb_replica_host = {}\ndb_replica_port = {}\n\n[queue_job]\ndb_host = not-ours\n",
            fleet.addresses[0], fleet.pooler_port, fleet.addresses[1], fleet.replica_pooler_port
        )
    );
    let after = std::fs::metadata(&config).unwrap();
    assert_eq!((after.mode() & 0o777, after.uid(), after.ino()), (0o640, before.uid(), before.ino()));
    assert!(restarted.exists(), "Odoo was restarted after its configuration changed");
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty");
    // Nothing changed: no restart.
    std::fs::remove_file(&restarted).unwrap();
    fleet.apply();
    assert!(!restarted.exists(), "Odoo restarted for nothing");
    // Odoo's own password never reaches pgfleet's output or state.
    let plan = text_of(&fleet.pgfleet(&["plan", "--format", "json"]));
    let state = std::fs::read_to_string(fleet.dir().join("state.json")).unwrap();
    assert!(!plan.contains("keep-this-Zq81") && !state.contains("keep-this-Zq81"));
}

fn text_of(output: &std::process::Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// A replica promoted by hand may hold writes its primary lacks: plan
/// refuses, naming both writable servers, and apply changes nothing
/// (rebuilding it would throw those writes away).
#[test]
fn a_replica_promoted_outside_pgfleet_stops_plan_and_apply_and_is_left_alone() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    let password = fleet.secret("superuser.password");
    let on_r1 = |sql: &str| fleet.psql(fleet.addresses[1], fleet.ports[1], "postgres", &password, "postgres", sql);
    on_r1("SELECT pg_promote(wait => true)").unwrap();
    on_r1("CREATE TABLE written_on_r1 (id int); INSERT INTO written_on_r1 VALUES (1)").unwrap();
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let output = fleet.pgfleet(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("shop.replica.r1"), "{stderr}");
        assert!(stderr.contains("two writable primaries"), "{stderr}");
        assert!(stderr.contains("--replace"), "says what resolves it: {stderr}");
    }
    assert_eq!(on_r1("SELECT count(*) FROM written_on_r1").unwrap(), "1", "r1 and its writes are untouched");
    assert_eq!(on_r1("SELECT pg_is_in_recovery()").unwrap(), "f");
}

/// Removing replica r2 and its host from the YAML in one edit: pgfleet
/// reaches the host through what state recorded, stops and removes r2,
/// drops its slot and converges. A resource on a host state cannot reach
/// is refused up front, naming `pgfleet state forget`, which clears it.
#[test]
fn a_replica_and_its_host_leave_the_configuration_in_one_edit() {
    let fleet = Fleet::ssh();
    fleet.write_config(&["r1", "r2"]);
    fleet.apply();
    let without_host: String = fleet
        .config(&["r1"])
        .lines()
        .filter(|line| !line.trim_start().starts_with("db3:"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!without_host.contains("db3"), "{without_host}");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), &without_host).unwrap();
    let output = fleet.apply();
    assert!(text(&output.stdout).contains("shop.replica.r2"), "{}", text(&output.stdout));
    assert!(!fleet.data_dir("r2").exists(), "r2's data directory is gone");
    assert!(!fleet.home("r2").exists(), "and pgfleet's files beside it");
    assert_eq!(fleet.superuser_sql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots"), "r1");
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty");
    let owned = fleet.state()["owned"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(!owned.iter().any(|address| address.ends_with(".r2")), "{owned:?}");
    fleet.check_data(&["r1"], 3003);

    // A record of a host pgfleet never learned how to reach (state from
    // before it recorded that): refused up front; forgetting it clears it.
    let state_path = fleet.dir().join("state.json");
    let mut state = fleet.state();
    state["owned"]["shop.replica.r9"] = serde_json::json!({ "host": "gone", "path": "/srv/gone/r9" });
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let refused = fleet.pgfleet(&["plan"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("pgfleet state forget"), "{}", text(&refused.stderr));
    let forgot = fleet.pgfleet(&["state", "forget", "shop.replica.r9"]);
    assert_eq!(forgot.status.code(), Some(0), "{}", text(&forgot.stderr));
    assert_eq!(fleet.plan_exit_code(), 0, "nothing left to remove");
    let unknown = fleet.pgfleet(&["state", "forget", "shop.replica.r9"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
}

/// Starts apply in the background and kills it (SIGKILL) as soon as the
/// journal shows `action` started.
fn kill_apply_during(fleet: &Fleet, action: &str) {
    let mut child =
        fleet.command(&["apply", "--auto-approve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = std::fs::read_to_string(fleet.dir().join("state.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|state| {
                state["journal"].as_array().is_some_and(|journal| {
                    journal.iter().any(|entry| entry["action"] == action && entry["event"] == "started")
                })
            });
        if started {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("apply ended ({status}) before {action} started");
        }
        assert!(Instant::now() < deadline, "{action} never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn apply_killed_during_base_backup_or_pooler_step_converges_on_rerun() {
    let fleet = Fleet::local();
    // A primary with some data, so the base backup takes a moment.
    fleet.primary_with_ballast();

    fleet.write_config(&["r1", "r2"]);
    kill_apply_during(&fleet, "base_backup");
    // The state lock died with the process: the rerun is not blocked.
    fleet.apply();
    assert_eq!(fleet.streaming(), "r1=streaming,r2=streaming");
    assert_eq!(fleet.plan_exit_code(), 0);

    // Again, killed while writing a pooler's files.
    std::fs::remove_file(desired_ini(&fleet, "r2")).unwrap();
    kill_apply_during(&fleet, "write_pooler_config");
    fleet.apply();
    assert_eq!(fleet.plan_exit_code(), 0);

    // No duplicate or orphaned slot, role or pooler.
    assert_eq!(
        fleet.superuser_sql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots"),
        "r1,r2"
    );
    assert_eq!(fleet.superuser_sql("SELECT count(*) FROM pg_roles WHERE rolname IN ('odoo', 'replicator')"), "2");
    let poolers = Command::new("pgrep").args(["-f", &fleet.dir().display().to_string()]).output().unwrap();
    let pgbouncers = text(&poolers.stdout)
        .lines()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "pgbouncer"))
        .count();
    assert_eq!(pgbouncers, 3, "one PgBouncer per pooler");
    fleet.check_data(&["r1", "r2"], 3003);
}

fn desired_ini(fleet: &Fleet, replica: &str) -> PathBuf {
    fleet.home(replica).join(format!("pgbouncer-{}.ini", fleet.replica_pooler_port))
}

#[test]
fn a_second_apply_on_the_same_state_fails_naming_the_holder() {
    let fleet = Fleet::local();
    fleet.primary_with_ballast();
    fleet.write_config(&["r1", "r2"]);
    let mut first =
        fleet.command(&["apply", "--auto-approve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until the first holds the lock and is working.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(fleet.dir().join("state.json")).is_ok_and(|state| state.contains("base_backup")) {
        assert!(Instant::now() < deadline, "the first apply never started its base backup");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = fleet.pgfleet(&["apply", "--auto-approve"]);
    let stderr = text(&second.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is locked by") && stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    let listed = text(&fleet.pgfleet(&["state", "list"]).stdout);
    assert!(listed.contains("locked by") && listed.contains(&format!("pid {}", first.id())), "{listed}");
    let unlock = fleet.pgfleet(&["state", "unlock", "--force"]);
    assert_eq!(unlock.status.code(), Some(1), "a held lock is never broken");
    assert!(text(&unlock.stderr).contains(&format!("pid {}", first.id())));
    assert!(first.wait().unwrap().success());
    assert_eq!(fleet.plan_exit_code(), 0);
}

#[test]
fn a_saved_plan_runs_but_is_refused_once_the_hosts_changed() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    let saved = fleet.pgfleet(&["plan", "--out", "first.plan"]);
    assert_eq!(saved.status.code(), Some(0), "{}", text(&saved.stderr));
    let applied = fleet.pgfleet(&["apply", "first.plan"]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stderr));
    assert_eq!(fleet.plan_exit_code(), 0);

    fleet.write_config(&["r1", "r2"]);
    assert_eq!(fleet.pgfleet(&["plan", "--out", "second.plan"]).status.code(), Some(0));
    // Someone drops a slot by hand after the plan was made.
    let r1_stopped = support::as_postgres(&format!(
        "/usr/lib/postgresql/15/bin/pg_ctl -D {} stop -m fast >/dev/null && echo stopped",
        fleet.data_dir("r1").display()
    ));
    assert_eq!(r1_stopped.trim(), "stopped");
    fleet.superuser_sql("SELECT pg_drop_replication_slot('r1')");
    let stale = fleet.pgfleet(&["apply", "second.plan"]);
    let stderr = text(&stale.stderr);
    assert_eq!(stale.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(!fleet.data_dir("r2").exists(), "a stale plan changes nothing");
    // A fresh apply repairs it all.
    fleet.apply();
    assert_eq!(fleet.plan_exit_code(), 0);
    fleet.check_data(&["r1", "r2"], 4004);
}

#[test]
fn the_callers_libpq_environment_does_not_leak_into_commands() {
    // With PGPASSWORD set to something else, pg_basebackup would use it
    // instead of the replica's passfile and fail.
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    let output = fleet
        .command(&["apply", "--auto-approve"])
        .env("PGPASSWORD", "not-the-replication-password")
        .env("PGUSER", "nobody")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(fleet.streaming(), "r1=streaming");
}

#[test]
fn rotating_passwords_rekeys_roles_passfiles_and_pooler_userlists() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    let old_owner_password = fleet.secret("role-odoo.password");

    // The replication password comes from the environment: rotate it. The
    // owner's is generated and kept on the primary's host: replace it there.
    let rotated = "env-replication-rotated-8Hq3Zx";
    support::as_postgres(&format!(
        "echo new-owner-password-Vb6Nd2 > {}",
        fleet.home("primary").join("role-odoo.password").display()
    ));
    let with_new_env =
        |args: &[&str]| fleet.command(args).env("PGFLEET_TEST_REPLICATION_PASSWORD", rotated).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&with_new_env(&["plan", "--format", "json"]).stdout).unwrap();
    let updates: Vec<&str> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] == "update")
        .map(|change| change["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        updates,
        ["shop.role.odoo", "shop.role.replicator", "shop.replica.r1", "shop.pooler.primary", "shop.pooler.r1"]
    );

    let applied = with_new_env(&["apply", "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(with_new_env(&["plan", "--detailed-exitcode"]).status.code(), Some(0));
    // The poolers accept the new owner password (they were restarted with the
    // new verifier) and no longer the old one.
    fleet.check_data(&["r1"], 5005);
    let old = fleet.psql(fleet.addresses[0], fleet.pooler_port, "odoo", &old_owner_password, "shop", "SELECT 1");
    assert!(old.is_err(), "the old password still works");
    // The replica reconnects with the new passfile.
    support::as_postgres(&format!(
        "/usr/lib/postgresql/15/bin/pg_ctl -D {} restart -m fast -w >/dev/null",
        fleet.data_dir("r1").display()
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.streaming() != "r1=streaming" {
        assert!(Instant::now() < deadline, "r1 does not stream with the rotated password");
        std::thread::sleep(Duration::from_millis(100));
    }
    let passfile = std::fs::read_to_string(fleet.home("r1").join("passfile")).unwrap();
    assert!(passfile.ends_with(&format!(":{rotated}\n")));
}

#[test]
fn a_passfile_left_stale_is_noticed_and_rewritten() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    // As if an earlier apply died between re-keying the role and writing
    // the passfile.
    let passfile = fleet.home("r1").join("passfile");
    support::as_postgres(&format!("echo '*:*:*:replicator:an-old-password' > {}", passfile.display()));
    let plan = fleet.plan_json();
    let replica = support::change_of(&plan, "shop.replica.r1");
    assert_eq!(replica["action"], "update", "{replica:#}");
    assert_eq!(replica["reason"], "the passfile does not hold the configured replication password");
    fleet.apply();
    assert!(std::fs::read_to_string(&passfile).unwrap().ends_with(&format!(":{REPLICATION_PASSWORD}\n")));
    assert_eq!(fleet.plan_exit_code(), 0);
}

#[test]
fn replace_skips_a_healthy_replica_unless_forced() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    // A file only this copy of the data directory has.
    let marker = fleet.data_dir("r1").join("pgfleet-test-marker");
    support::as_postgres(&format!("touch {}", marker.display()));

    let skipped = fleet.pgfleet(&["apply", "--auto-approve", "--replace", "shop.replica.r1"]);
    assert_eq!(skipped.status.code(), Some(0), "{}", text(&skipped.stderr));
    assert!(text(&skipped.stderr).contains("not rebuilt (use --force)"), "{}", text(&skipped.stderr));
    assert!(marker.exists(), "a healthy replica is not rebuilt");

    let forced = fleet.pgfleet(&["apply", "--auto-approve", "--replace", "shop.replica.r1", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}{}", text(&forced.stdout), text(&forced.stderr));
    assert!(text(&forced.stdout).contains("-/+ shop.replica.r1"), "{}", text(&forced.stdout));
    assert!(!marker.exists(), "the replica was rebuilt from a new base backup");
    assert_eq!(fleet.streaming(), "r1=streaming");
    assert_eq!(fleet.plan_exit_code(), 0);
    fleet.check_data(&["r1"], 6006);

    let unknown = fleet.pgfleet(&["apply", "--auto-approve", "--replace", "shop.replica.nope"]);
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn a_failed_change_skips_its_dependents_while_the_rest_completes_and_a_rerun_converges() {
    let fleet = Fleet::local();
    // A second environment whose primary's directory postgres may not enter.
    let locked = fleet.dir().join("locked");
    std::fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let other = support::free_loopback_address();
    let other_port = support::free_port(other);
    let config = format!(
        "{}  - id: broken\n    primary: {{ host: here, address: {other}, port: {other_port}, data_dir: {}, tuning: none }}\n",
        fleet.config(&["r1"]),
        locked.join("primary").display()
    );
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config).unwrap();

    let partial = fleet.pgfleet(&["apply", "--auto-approve"]);
    let stdout = text(&partial.stdout);
    assert_eq!(partial.status.code(), Some(3), "{stdout}{}", text(&partial.stderr));
    assert!(stdout.contains("Apply stopped part-way"), "{stdout}");
    assert!(stdout.contains("failed:  broken.cluster.primary"), "{stdout}");
    assert!(stdout.contains("skipped: broken.database.broken"), "{stdout}");
    // The failure reaches stderr as a diagnostic, with its cause and what to do.
    let stderr = text(&partial.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(stderr.contains("pgfleet::apply::action"), "{stderr}");
    assert!(stderr.contains("broken.cluster.primary failed at step:"), "{stderr}");
    assert!(stderr.contains("run `pgfleet apply` again"), "{stderr}");
    // The healthy environment was built all the same.
    assert_eq!(fleet.streaming(), "r1=streaming");
    fleet.check_data(&["r1"], 7007);

    std::process::Command::new("chown").arg("postgres").arg(&locked).status().unwrap();
    fleet.apply();
    assert_eq!(fleet.plan_exit_code(), 0);
    let drop_other = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
        .arg(locked.join("primary"))
        .args(["stop", "-m", "immediate"])
        .output()
        .unwrap();
    assert!(drop_other.status.success());
}

#[test]
fn apply_asks_and_anything_but_yes_changes_nothing() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    let mut child =
        fleet.command(&["apply"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"no\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("Only 'yes' will be accepted"), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("Apply cancelled"), "{}", text(&output.stderr));
    assert!(!fleet.data_dir("primary").exists(), "nothing was created");
    assert_eq!(fleet.plan_exit_code(), 2, "everything is still to do");
}

#[test]
fn a_primary_that_will_not_start_reports_its_log_and_a_corrected_yaml_converges() {
    let fleet = Fleet::local();
    // Valid YAML, a value PostgreSQL itself refuses at start.
    let config = fleet.config(&[]).replace("shared_buffers: 32MB", "shared_buffers: lots");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config).unwrap();

    let failed = fleet.pgfleet(&["apply", "--auto-approve"]);
    let stdout = text(&failed.stdout);
    assert_eq!(failed.status.code(), Some(3), "{stdout}{}", text(&failed.stderr));
    assert!(stdout.contains("failed:  shop.cluster.primary failed at step: start PostgreSQL"), "{stdout}");
    // The failure's diagnostic, with its causes and help, is on stderr.
    let stderr = text(&failed.stderr).replace('│', " ");
    let log = fleet.home("primary").join("postgresql.log");
    assert!(stderr.contains(&format!("the last lines of {}:", log.display())), "{stderr}");
    assert!(stderr.contains(r#"invalid value for parameter "shared_buffers": "lots""#), "{stderr}");
    assert!(stderr.contains("the log says why PostgreSQL did not start"), "{stderr}");

    fleet.write_config(&[]);
    fleet.apply();
    assert_eq!(fleet.plan_exit_code(), 0);
}
