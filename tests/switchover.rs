//! Moving the primary role on real servers: three SSH hosts of one
//! machine, PostgreSQL 15, PgBouncer. A switchover under pgbench load
//! through the primary's pooler loses nothing and comes back; a failover
//! fences, refuses what it must, and rejoins the old primary; a switchover
//! killed half-way is finished by the next run.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::fleet::{Fleet, text};

/// The fleet with its declared primary named `main`, built and converged.
fn fleet() -> Fleet {
    let fleet = Fleet::ssh();
    write_named_config(&fleet);
    fleet.apply();
    fleet
}

fn write_named_config(fleet: &Fleet) {
    let yaml = fleet.config(&["r1", "r2"]).replace("primary: { host:", "primary: { name: main, host:");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), yaml).unwrap();
}

fn member_index(name: &str) -> usize {
    match name {
        "main" => 0,
        "r1" => 1,
        _ => 2,
    }
}

/// SQL as the superuser on a member, directly.
fn sql(fleet: &Fleet, member: &str, query: &str) -> Result<String, String> {
    let index = member_index(member);
    let password = fleet.secret("superuser.password");
    fleet.psql(fleet.addresses[index], fleet.ports[index], "postgres", &password, "shop", query)
}

/// SQL as the application's owner through the primary's pooler.
fn through_pooler(fleet: &Fleet, query: &str) -> Result<String, String> {
    let password = fleet.secret("role-odoo.password");
    fleet.psql(fleet.addresses[0], fleet.pooler_port, "odoo", &password, "shop", query)
}

fn ok(output: &Output, what: &str) {
    assert_eq!(output.status.code(), Some(0), "{what} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
}

/// Which members accept writes now.
fn writable(fleet: &Fleet) -> Vec<&'static str> {
    ["main", "r1", "r2"]
        .into_iter()
        .filter(|member| sql(fleet, member, "SELECT pg_is_in_recovery()").ok().as_deref() == Some("f"))
        .collect()
}

/// `application_name=state` of the standbys streaming from `member`.
fn streaming_from(fleet: &Fleet, member: &str) -> String {
    sql(
        fleet,
        member,
        "SELECT string_agg(application_name || '=' || state, ',' ORDER BY application_name) FROM pg_stat_replication",
    )
    .unwrap()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_converged(fleet: &Fleet) {
    let plan = fleet.pgfleet(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "plan is not empty:\n{}\n{}", text(&plan.stdout), text(&plan.stderr));
    let drift = fleet.pgfleet(&["drift"]);
    assert_eq!(drift.status.code(), Some(0), "drift:\n{}\n{}", text(&drift.stdout), text(&drift.stderr));
}

/// pgbench through the primary's pooler, one connection per transaction
/// (the pool is session-mode), each client numbering its own inserts.
fn pgbench(fleet: &Fleet, seconds: u32) -> std::process::Child {
    let script = fleet.dir().join("ledger.sql");
    std::fs::write(&script, "\\set n :n + 1\nINSERT INTO ledger VALUES (:client_id, :n);\n").unwrap();
    Command::new("/usr/lib/postgresql/15/bin/pgbench")
        .args(["-n", "-C", "-c", "4", "-j", "2", "-T", &seconds.to_string(), "-D", "n=0", "-f"])
        .arg(&script)
        .args(["-h", &fleet.addresses[0].to_string(), "-p", &fleet.pooler_port.to_string(), "-U", "odoo", "shop"])
        .env("PGPASSWORD", fleet.secret("role-odoo.password"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn processed(report: &str) -> u64 {
    report
        .lines()
        .find_map(|line| line.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in pgbench's report:\n{report}"))
}

#[test]
fn a_switchover_under_load_loses_no_commit_and_the_role_comes_back() {
    let fleet = fleet();
    through_pooler(&fleet, "CREATE TABLE ledger (client int, n bigint, PRIMARY KEY (client, n))").unwrap();

    // Refused with the reason and the numbers: the primary's default name.
    let unnamed = Fleet::ssh();
    unnamed.write_config(&["r1"]);
    unnamed.apply();
    let refused = unnamed.pgfleet(&["switchover", "--env", "shop", "--to", "r1", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("has no `name:`"), "{}", text(&refused.stderr));
    drop(unnamed);

    // A monitor watches across the switchover.
    let listen = support::free_loopback_address();
    let listen = format!("{listen}:{}", support::free_port(listen));
    let monitor = fleet
        .command(&["monitor", "--listen", &listen, "--interval", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let load = pgbench(&fleet, 12);
    std::thread::sleep(Duration::from_secs(3));
    let switched = fleet.pgfleet(&["switchover", "--env", "shop", "--to", "r1", "--auto-approve"]);
    ok(&switched, "switchover");
    let report = text(&switched.stdout);
    assert!(report.contains("`r1` is the primary of shop (was `main`)"), "{report}");
    // No secret in what it printed or recorded.
    let everything = format!("{report}{}{}", text(&switched.stderr), fleet.state());
    for secret in [
        support::fleet::REPLICATION_PASSWORD.to_owned(),
        fleet.secret("superuser.password"),
        fleet.secret("role-odoo.password"),
    ] {
        assert!(!everything.contains(&secret), "a secret was printed or recorded");
    }
    assert!(report.contains("data loss: none"), "{report}");
    let bench = load.wait_with_output().unwrap();
    let bench_report = format!("{}{}", text(&bench.stdout), text(&bench.stderr));
    assert!(bench.status.success(), "pgbench failed across the switchover:\n{bench_report}");
    assert!(!bench_report.contains("aborted"), "{bench_report}");
    let committed = processed(&bench_report);
    assert!(committed > 0, "{bench_report}");

    // Every transaction pgbench saw committed is on the new primary.
    assert_eq!(writable(&fleet), ["r1"]);
    let rows: u64 = sql(&fleet, "r1", "SELECT count(*) FROM ledger").unwrap().parse().unwrap();
    assert_eq!(rows, committed, "pgbench committed {committed}, the new primary holds {rows}");
    // The old primary and the sibling stream from the new one.
    wait_for("main and r2 to stream from r1", || streaming_from(&fleet, "r1") == "main=streaming,r2=streaming");
    assert_converged(&fleet);
    let status = fleet.pgfleet(&["status"]);
    let shown = text(&status.stdout);
    assert!(shown.contains("primary: r1") && shown.contains("switchover from main to r1"), "{shown}");
    let state = fleet.state();
    assert_eq!(state["roles"]["shop"]["primary"], "r1", "{state}");
    // The monitor saw the role move: an event, and the metric.
    let metric = r#"pgfleet_primary{environment="shop",member="r1"} 1"#;
    wait_for("the monitor's metric of the new primary", || {
        ureq::get(&format!("http://{listen}/metrics"))
            .call()
            .ok()
            .and_then(|response| response.into_string().ok())
            .is_some_and(|metrics| metrics.contains(metric))
    });
    let _ = Command::new("kill").args(["-TERM", &monitor.id().to_string()]).status();
    let watched = monitor.wait_with_output().unwrap();
    let events = text(&watched.stdout);
    let changed = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "primary.changed")
        .unwrap_or_else(|| panic!("no primary.changed event: {events}"));
    assert_eq!(changed["data"]["from"], "main");
    assert_eq!(changed["data"]["to"], "r1");

    // And back: the member declared under `primary:` takes the role again.
    let back = fleet.pgfleet(&["switchover", "--env", "shop", "--to", "main", "--auto-approve"]);
    ok(&back, "switchover back");
    assert_eq!(writable(&fleet), ["main"]);
    wait_for("r1 and r2 to stream from main", || streaming_from(&fleet, "main") == "r1=streaming,r2=streaming");
    let rows: u64 = sql(&fleet, "main", "SELECT count(*) FROM ledger").unwrap().parse().unwrap();
    assert_eq!(rows, committed);
    through_pooler(&fleet, "INSERT INTO ledger VALUES (-1, 1)").unwrap();
    assert_converged(&fleet);
}

#[test]
fn a_failover_fences_refuses_what_it_must_and_rejoins_the_old_primary() {
    let mut fleet = fleet();
    through_pooler(&fleet, "CREATE TABLE kept (id int); INSERT INTO kept SELECT generate_series(1, 100)").unwrap();
    wait_for("r1 to replay", || sql(&fleet, "r1", "SELECT count(*) FROM kept").ok().as_deref() == Some("100"));

    // A working primary: refused, pointing to switchover; nothing changes.
    let refused = fleet.pgfleet(&["failover", "--env", "shop", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(said.contains("is running and accepts writes") && said.contains("pgfleet switchover"), "{said}");
    assert_eq!(writable(&fleet), ["main"]);
    assert!(fleet.state().get("roles").is_none());

    // The primary's PostgreSQL dies; its host's sshd is up.
    let data_dir = fleet.data_dir("primary");
    let killed = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
        .arg(&data_dir)
        .args(["stop", "-m", "immediate"])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{}", text(&killed.stderr));
    let failed_over = fleet.pgfleet(&["failover", "--env", "shop", "--auto-approve"]);
    ok(&failed_over, "failover");
    let report = text(&failed_over.stdout);
    assert!(report.contains("Candidates (freshest first)"), "{report}");
    assert!(report.contains("fence the old primary"), "{report}");
    assert!(report.contains("since the last replayed transaction"), "{report}");
    let first_write: f64 = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("first write through the pooler "))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no first write measured: {report}"));
    assert!(first_write < 5.0, "the first write came {first_write} s after the promotion");
    let primary = fleet.state()["roles"]["shop"]["primary"].as_str().unwrap().to_owned();
    assert!(primary == "r1" || primary == "r2", "{primary}");
    assert_eq!(writable(&fleet), [primary.as_str()]);
    assert_eq!(sql(&fleet, &primary, "SELECT count(*) FROM kept").unwrap(), "100");
    // The old primary came back as a standby (rewound), not as a primary.
    assert_eq!(sql(&fleet, "main", "SELECT pg_is_in_recovery()").unwrap(), "t");
    wait_for("main to stream from the new primary", || streaming_from(&fleet, &primary).contains("main=streaming"));
    through_pooler(&fleet, "INSERT INTO kept VALUES (101)").unwrap();
    assert_converged(&fleet);

    // The new primary's host goes dark: refused without the operator's
    // statement, done with it (and the statement recorded).
    let index = member_index(&primary);
    let stopped = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
        .arg(fleet.data_dir(&primary))
        .args(["stop", "-m", "immediate"])
        .output()
        .unwrap();
    assert!(stopped.status.success());
    fleet.ssh[index].stop();
    let refused = fleet.pgfleet(&["failover", "--env", "shop", "--to", "main", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("pass --old-primary-is"), "{}", text(&refused.stderr));
    assert_eq!(sql(&fleet, "main", "SELECT pg_is_in_recovery()").unwrap(), "t", "nothing changed");
    let stated =
        fleet.pgfleet(&["failover", "--env", "shop", "--to", "main", "--old-primary-is-down", "--auto-approve"]);
    // The plan for the new roles cannot reach the dark host: the role moved,
    // the rest waits for it.
    assert_eq!(writable(&fleet), ["main"], "{}\n{}", text(&stated.stdout), text(&stated.stderr));
    let state = fleet.state();
    let last = state["roles"]["shop"]["changes"].as_array().unwrap().last().unwrap().clone();
    assert!(last["statement"].as_str().unwrap().contains("--old-primary-is-down"), "{last}");
    assert_eq!(sql(&fleet, "main", "SELECT count(*) FROM kept").unwrap(), "101");

    // The host comes back: its stale primary is rebuilt as a standby, and
    // everything converges.
    fleet.ssh[index].restart();
    fleet.apply();
    assert_eq!(writable(&fleet), ["main"]);
    assert_converged(&fleet);
}

#[test]
fn a_switchover_killed_half_way_is_finished_by_the_next_run() {
    let fleet = fleet();
    through_pooler(&fleet, "CREATE TABLE marks (id int); INSERT INTO marks VALUES (1)").unwrap();

    // Killed right after PAUSE: the pooler holds the application's clients.
    let killed = fleet
        .command(&["switchover", "--env", "shop", "--to", "r1", "--auto-approve"])
        .env("PGFLEET_TEST_KILL_AFTER_STEP", "pause_pooler")
        .output()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9), "{}", text(&killed.stderr));
    assert!(fleet.state()["pending"]["shop"].is_object());
    let plan = fleet.pgfleet(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    assert!(text(&plan.stderr).contains("stopped part-way"), "{}", text(&plan.stderr));
    let finished = fleet.pgfleet(&["apply", "--auto-approve"]);
    ok(&finished, "apply finishing the switchover");
    assert_eq!(writable(&fleet), ["r1"]);
    through_pooler(&fleet, "INSERT INTO marks VALUES (2)").unwrap();
    assert!(fleet.state().get("pending").is_none());
    assert_converged(&fleet);

    // Killed right after the old primary's shutdown: no writable primary
    // at all until the rerun, which finishes it.
    let killed = fleet
        .command(&["switchover", "--env", "shop", "--to", "main", "--auto-approve"])
        .env("PGFLEET_TEST_KILL_AFTER_STEP", "stop")
        .output()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9));
    assert!(writable(&fleet).is_empty());
    let again = fleet.pgfleet(&["switchover", "--env", "shop", "--to", "main", "--auto-approve"]);
    ok(&again, "the rerun");
    assert_eq!(writable(&fleet), ["main"]);
    through_pooler(&fleet, "INSERT INTO marks VALUES (3)").unwrap();
    assert_eq!(sql(&fleet, "main", "SELECT string_agg(id::text, ',' ORDER BY id) FROM marks").unwrap(), "1,2,3");
    assert_converged(&fleet);
}

/// A replica promoted by hand: plan refuses, naming the command that
/// records it; recording is refused while both accept writes; once the
/// old primary is stopped, `failover --record-only` records the role,
/// rewinds the old primary in as a standby, and the plan is empty.
#[test]
fn a_promotion_by_hand_is_refused_until_recorded() {
    let fleet = fleet();
    sql(&fleet, "r1", "SELECT pg_promote(wait => true)").unwrap();
    sql(&fleet, "r1", "CREATE TABLE written_on_r1 (id int); INSERT INTO written_on_r1 VALUES (1)").unwrap();
    let plan = fleet.pgfleet(&["plan"]);
    assert_eq!(plan.status.code(), Some(1));
    let said = text(&plan.stderr);
    assert!(said.contains("shop.replica.r1") && said.contains("two writable primaries"), "{said}");
    assert!(said.contains("--record-only"), "names the command that records it: {said}");

    let refused = fleet.pgfleet(&["failover", "--env", "shop", "--to", "r1", "--record-only", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("both accept writes"), "{}", text(&refused.stderr));
    assert_eq!(writable(&fleet), ["main", "r1"], "nothing changed");

    let stopped = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
        .arg(fleet.data_dir("primary"))
        .args(["stop", "-m", "fast"])
        .output()
        .unwrap();
    assert!(stopped.status.success());
    let recorded = fleet.pgfleet(&["failover", "--env", "shop", "--to", "r1", "--record-only", "--auto-approve"]);
    ok(&recorded, "failover --record-only");
    assert_eq!(writable(&fleet), ["r1"]);
    wait_for("main and r2 to stream from r1", || streaming_from(&fleet, "r1") == "main=streaming,r2=streaming");
    assert_eq!(sql(&fleet, "main", "SELECT count(*) FROM written_on_r1").unwrap(), "1");
    assert_eq!(fleet.state()["roles"]["shop"]["changes"][0]["why"], "recorded");
    assert_converged(&fleet);
}
