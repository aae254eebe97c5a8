//! `state.backend: postgres` against a real PostgreSQL 15: one advisory lock
//! per environment held by a session for the whole apply, per-environment
//! parts each with its own serial, holders named, locks freed with their
//! holder's death, `state migrate` from a local file, and the url's password
//! nowhere but in the url.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgfleet::address::Address;
use pgfleet::state::{
    JournalEvent, LocalStore, LockScope, Owned, PostgresStore, Serials, State, StateError, StateStore, Writer,
    advisory_keys,
};
use support::PgServer;
use support::fleet::{Fleet, text};

const STATE_USER: &str = "pgfleet_state";
const STATE_PASSWORD: &str = "st4te-Pw-Zq8LmX2r";
const STATE_DATABASE: &str = "fleet_state";

/// A PostgreSQL 15 holding the state, in a database of its own, whose user
/// must give its password (scram-sha-256).
struct StateDb {
    server: PgServer,
}

impl StateDb {
    fn start() -> Self {
        let server = PgServer::start(support::free_loopback_address(), "");
        server.psql(&format!("CREATE ROLE {STATE_USER} LOGIN PASSWORD '{STATE_PASSWORD}'"));
        server.psql(&format!("CREATE DATABASE {STATE_DATABASE} OWNER {STATE_USER}"));
        // First match wins: the state user over TCP needs its password.
        let hba = server.data_dir.join("pg_hba.conf");
        support::as_postgres(&format!("sed -i '1i host all {STATE_USER} 0.0.0.0/0 scram-sha-256' {}", hba.display()));
        server.psql("SELECT pg_reload_conf()");
        StateDb { server }
    }

    fn url(&self) -> String {
        self.url_with(STATE_PASSWORD)
    }

    fn url_with(&self, password: &str) -> String {
        format!("postgres://{STATE_USER}:{password}@{}:{}/{STATE_DATABASE}", self.server.address, self.server.port)
    }

    fn store(&self, name: &str) -> PostgresStore {
        PostgresStore::new(name, &self.url(), "the test").unwrap()
    }

    /// SQL on the state database as the superuser.
    fn sql(&self, sql: &str) -> String {
        support::as_postgres(&format!(
            "{}/psql -X -A -t -h {} -p {} -U postgres -d {STATE_DATABASE} -c {}",
            support::PG_BIN,
            self.server.address,
            self.server.port,
            support::shell_quote(sql)
        ))
        .trim()
        .to_owned()
    }

    /// Every row of every pgfleet table, as text.
    fn dump(&self) -> String {
        ["schema_version", "states", "environments", "locks"]
            .iter()
            .map(|table| self.sql(&format!("SELECT coalesce(json_agg(t)::text, '') FROM pgfleet_state.{table} t")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether some session holds `environment`'s advisory lock.
    fn held(&self, name: &str, environment: &str) -> bool {
        let (key1, key2) = advisory_keys(name, environment);
        let oid = |key: i32| u32::from_be_bytes(key.to_be_bytes());
        self.sql(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
             AND classid = {} AND objid = {}",
            oid(key1),
            oid(key2)
        )) == "1"
    }
}

fn flat(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn address(text: &str) -> Address {
    text.parse().unwrap()
}

/// A state with records in `environments`.
fn state_with(environments: &[&str]) -> State {
    let mut state = State::default();
    for environment in environments {
        let primary = address(&format!("{environment}.cluster.primary"));
        state.owned.insert(primary.clone(), Owned::at("db1", format!("/srv/pg/{environment}").into()));
        state.journal(&primary, "init_db", JournalEvent::Started);
        state.journal(&primary, "init_db", JournalEvent::Finished);
    }
    state
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

const NO_WAIT: Duration = Duration::ZERO;
/// Long enough for PostgreSQL to end a session whose client dropped it.
const FREEING: Duration = Duration::from_secs(5);

#[test]
fn writers_of_two_environments_hold_their_locks_together_and_keep_each_others_records() {
    let db = StateDb::start();
    let runtime = runtime();
    runtime.block_on(async {
        // Two stores, two sessions: as two pipelines on two machines.
        let (first, second) = (db.store("acme"), db.store("acme"));
        let (mut prod_writer, mut prod) =
            Writer::lock(&first, &["prod".into()], "pgfleet apply -f prod.yaml", NO_WAIT).await.unwrap();
        let (mut staging_writer, mut staging) =
            Writer::lock(&second, &["staging".into()], "pgfleet apply -f staging.yaml", NO_WAIT).await.unwrap();
        assert_eq!(prod_writer.held().scope(), &LockScope::Environments(vec!["prod".into()]));
        assert!(!prod_writer.held().covers("staging"));
        assert_eq!(prod.lineage, staging.lineage, "both read the one state's lineage");
        assert_eq!(prod.lineage.len(), 32);

        // Interleaved saves, each from a state that never saw the other's.
        for round in 0..3 {
            let primary = address("prod.cluster.primary");
            prod.owned.insert(primary.clone(), Owned::at("db1", "/srv/pg/prod".into()));
            prod.journal(&primary, &format!("step{round}"), JournalEvent::Finished);
            prod_writer.save(&mut prod).await.unwrap();
            let replica = address("staging.replica.r1");
            staging.owned.insert(replica.clone(), Owned::at("db2", "/srv/pg/r1".into()));
            staging.journal(&replica, &format!("step{round}"), JournalEvent::Finished);
            staging_writer.save(&mut staging).await.unwrap();
        }
        assert_eq!(prod.environment_serials["prod"], 3);
        assert_eq!(staging.environment_serials["staging"], 3);

        // A third writer of prod is refused while prod is held, naming the
        // holder, after waiting; staging's holder does not matter to it.
        let started = Instant::now();
        let error = first.lock(&["prod".into()], "pgfleet apply", Duration::from_millis(700)).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(700), "it waited");
        let message = error.to_string();
        assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
        assert!(
            message.contains("environment prod")
                && message.contains(&format!("pid {}", std::process::id()))
                && message.contains("`pgfleet apply -f prod.yaml`"),
            "{message}"
        );
        let mut holders = second.holders().await.unwrap();
        holders.sort_by_key(|held| format!("{:?}", held.scope));
        let described: Vec<(String, String)> = holders
            .iter()
            .map(|held| (held.scope.to_string(), held.holder.as_ref().unwrap().command.clone()))
            .collect();
        assert_eq!(
            described,
            [
                ("environment(s) prod".to_owned(), "pgfleet apply -f prod.yaml".to_owned()),
                ("environment(s) staging".to_owned(), "pgfleet apply -f staging.yaml".to_owned()),
            ]
        );
        let error = first.force_unlock(&LockScope::Whole).await.unwrap_err();
        assert!(matches!(error, StateError::Locked { .. }), "a held lock is never broken: {error:?}");

        // The whole state has both environments' records.
        let whole = first.load().await.unwrap();
        let owned: Vec<String> = whole.owned.keys().map(ToString::to_string).collect();
        assert_eq!(owned, ["prod.cluster.primary", "staging.replica.r1"]);
        assert_eq!(whole.journal.len(), 6);
        assert_eq!(whole.environment_serials, [("prod".into(), 3), ("staging".into(), 3)].into());
        assert_eq!(whole.serial, 6, "the state's serial counts every write");

        drop(prod_writer);
        drop(staging_writer);
        // Freed with their sessions; the records left are cleared on request.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !first.holders().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the locks outlived their sessions");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(matches!(
            first.force_unlock(&LockScope::Whole).await.unwrap(),
            pgfleet::state::Unlocked::Cleared { .. }
        ));
        assert_eq!(first.force_unlock(&LockScope::Whole).await.unwrap(), pgfleet::state::Unlocked::Nothing);
    });
    assert!(!db.dump().contains(STATE_PASSWORD));
}

#[test]
fn a_write_from_a_stale_serial_is_refused_and_nothing_is_merged() {
    let db = StateDb::start();
    let runtime = runtime();
    runtime.block_on(async {
        let store = db.store("acme");
        let lock = store.lock(&["prod".into()], "first", NO_WAIT).await.unwrap();
        let mut stale = store.load().await.unwrap();
        stale.owned.insert(address("prod.cluster.primary"), Owned::at("db1", "/srv/pg/prod".into()));
        let empty = Serials::of(&stale);
        store.save(&mut stale, &empty, &*lock).await.unwrap();
        let read_at = Serials::of(&stale);
        assert_eq!(read_at.environment("prod"), 1);
        drop(lock);

        // Someone else writes prod since.
        let other = db.store("acme");
        // Waits while the dropped session's lock is being freed.
        let (mut writer, mut fresh) = Writer::lock(&other, &["prod".into()], "second", FREEING).await.unwrap();
        fresh.owned.insert(address("prod.replica.r1"), Owned::at("db2", "/srv/pg/r1".into()));
        writer.save(&mut fresh).await.unwrap();
        drop(writer);
        let stored = store.load().await.unwrap();

        // The first writer comes back with what it read before.
        let lock = store.lock(&["prod".into()], "first again", FREEING).await.unwrap();
        stale.owned.remove(&address("prod.cluster.primary"));
        let before = stale.clone();
        let error = store.save(&mut stale, &read_at, &*lock).await.unwrap_err();
        assert!(matches!(error, StateError::StaleSerial { expected: 1, stored: 2, .. }), "{error:?}");
        assert!(error.to_string().contains("environment prod"), "{error}");
        assert_eq!(stale, before, "the refused writer's state is unchanged");
        assert_eq!(store.load().await.unwrap(), stored, "nothing was written or merged");

        // Another lineage is refused as well.
        let mut foreign = State { lineage: "0123456789abcdef0123456789abcdef".into(), ..stored.clone() };
        let error = store.save(&mut foreign, &Serials::of(&stored), &*lock).await.unwrap_err();
        assert!(matches!(error, StateError::Lineage { .. }), "{error:?}");
        assert_eq!(store.load().await.unwrap(), stored);
    });
}

#[test]
fn a_writer_whose_session_was_lost_writes_nothing_and_the_lock_is_free() {
    let db = StateDb::start();
    let runtime = runtime();
    runtime.block_on(async {
        let store = db.store("acme");
        let (mut writer, mut state) = Writer::lock(&store, &["prod".into()], "pgfleet apply", NO_WAIT).await.unwrap();
        writer.save(&mut state).await.unwrap();
        let stored = store.load().await.unwrap();
        // The lock's session ends under it (an administrator, a restart, a
        // network cut noticed by keepalives).
        let terminated = db.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{STATE_USER}' AND pid <> pg_backend_pid()"
        ));
        assert_ne!(terminated, "0");
        assert!(!db.held("acme", "prod"), "its lock went with it");
        let other = db.store("acme");
        let (mut second, mut theirs) = Writer::lock(&other, &["prod".into()], "another", NO_WAIT).await.unwrap();
        theirs.owned.insert(address("prod.cluster.primary"), Owned::at("db1", "/srv/pg/prod".into()));
        second.save(&mut theirs).await.unwrap();

        state.owned.insert(address("prod.replica.r9"), Owned::at("db9", "/srv/pg/r9".into()));
        let error = writer.save(&mut state).await.unwrap_err();
        assert!(matches!(error, StateError::LockLost { .. }), "{error:?}");
        let now = store.load().await.unwrap();
        assert!(!now.owns(&address("prod.replica.r9")), "nothing was written");
        assert!(now.owns(&address("prod.cluster.primary")));
        assert_eq!(now.environment_serials["prod"], stored.environment_serials["prod"] + 1);
    });
}

#[test]
fn a_url_with_a_wrong_password_fails_without_showing_it() {
    let db = StateDb::start();
    let wrong = "wr0ng-Pw-Kd93hs";
    let store = PostgresStore::new("acme", &db.url_with(wrong), "environment variable PGFLEET_STATE_URL").unwrap();
    let error = runtime().block_on(store.load()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(message.contains(&format!("postgres://{STATE_USER}@{}:{}", db.server.address, db.server.port)));
    let report = format!("{:?}", miette::Report::new(error));
    assert!(!report.contains(wrong) && !message.contains(wrong), "{report}");
}

/// The work directory of a fleet of primaries, one configuration file per
/// environment, all sharing one postgres state.
struct Environments {
    fleet: Fleet,
    db: StateDb,
}

impl Environments {
    fn new() -> Self {
        Environments { fleet: Fleet::local(), db: StateDb::start() }
    }

    /// `ENV.yaml`: environment `id` alone, a primary on its own loopback
    /// address.
    fn write(&self, id: &str) -> String {
        let address = support::free_loopback_address();
        let port = support::free_port(address);
        let file = format!("{id}.yaml");
        std::fs::write(
            self.fleet.dir().join(&file),
            format!(
                "version: 1\norganization: {{ name: acme }}\nstate: {{ backend: postgres, url: {{ env: PGFLEET_STATE_URL }} }}\nhosts:\n  here: {{ transport: local }}\nenvironments:\n  - id: {id}\n    primary: {{ host: here, address: {address}, port: {port}, data_dir: {}, tuning: none, settings: {{ shared_buffers: 32MB }} }}\n",
                self.fleet.data_dir(id).display()
            ),
        )
        .unwrap();
        file
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.fleet.command(args);
        command.env("PGFLEET_STATE_URL", self.db.url());
        command
    }

    fn pgfleet(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `apply -f FILE` without --auto-approve, stopped at its question: it
    /// holds its lock until answered.
    fn apply_waiting(&self, file: &str) -> Waiting {
        let mut child = self
            .command(&["apply", "-f", file])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, received) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.contains("Only 'yes' will be accepted") {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => seen.push_str(&format!("{line}\n")),
                Err(_) => panic!("apply -f {file} never asked: {seen}"),
            }
        }
        Waiting { child: Some(child), stderr: received }
    }

    fn state(&self, file: &str) -> State {
        let output = self.pgfleet(&["state", "show", "-f", file]);
        assert_eq!(output.status.code(), Some(0), "{}", flat(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// An apply waiting for its answer; killed if the test ends first.
struct Waiting {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

impl Waiting {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn answer_yes(mut self) -> (Output, String) {
        let mut child = self.child.take().unwrap();
        child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (output, stderr.join("\n"))
    }

    fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn two_applies_on_two_environments_of_one_postgres_state_both_succeed_and_the_same_one_is_refused() {
    let environments = Environments::new();
    let alpha = environments.write("alpha");
    let beta = environments.write("beta");
    let mut seen = String::new();

    // alpha's apply holds alpha's lock while it waits for its answer.
    let waiting = environments.apply_waiting(&alpha);
    assert!(environments.db.held("acme", "alpha"));
    let listed = environments.pgfleet(&["state", "list", "-f", &beta]);
    let listed_text = flat(&listed);
    assert!(
        listed_text.contains("environment(s) alpha locked by")
            && listed_text.contains(&format!("pid {}", waiting.pid()))
            && listed_text.contains(&format!("`{} apply -f {alpha}`", env!("CARGO_BIN_EXE_pgfleet"))),
        "{listed_text}"
    );
    seen.push_str(&listed_text);

    // beta's apply runs from start to end meanwhile.
    let beta_applied = environments.pgfleet(&["apply", "-f", &beta, "--auto-approve"]);
    assert_eq!(beta_applied.status.code(), Some(0), "{}", flat(&beta_applied));
    assert!(text(&beta_applied.stdout).contains("Apply complete"), "{}", flat(&beta_applied));
    assert!(environments.db.held("acme", "alpha"), "alpha's apply still holds its lock");
    seen.push_str(&flat(&beta_applied));

    // A second apply of alpha is refused at once, naming the holder...
    let refused = environments.pgfleet(&["apply", "-f", &alpha, "--auto-approve"]);
    let refused_text = flat(&refused);
    assert_eq!(refused.status.code(), Some(1), "{refused_text}");
    assert!(
        refused_text.contains("environment alpha")
            && refused_text.contains("is locked by")
            && refused_text.contains(&format!("pid {}", waiting.pid())),
        "{refused_text}"
    );
    seen.push_str(&refused_text);
    // ...and with --lock-timeout, after waiting for it.
    let started = Instant::now();
    let waited = environments.pgfleet(&["apply", "-f", &alpha, "--auto-approve", "--lock-timeout", "2s"]);
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited {:?}", started.elapsed());
    assert_eq!(waited.status.code(), Some(1), "{}", flat(&waited));
    assert!(flat(&waited).contains(&format!("pid {}", waiting.pid())), "{}", flat(&waited));
    let unlock = environments.pgfleet(&["state", "unlock", "--force", "-f", &beta]);
    assert_eq!(unlock.status.code(), Some(1), "a held lock is never broken: {}", flat(&unlock));
    assert!(flat(&unlock).contains(&format!("pid {}", waiting.pid())), "{}", flat(&unlock));

    // alpha's apply goes on over a state beta has written since it read it.
    let (alpha_applied, alpha_stderr) = waiting.answer_yes();
    assert_eq!(alpha_applied.status.code(), Some(0), "{}{alpha_stderr}", text(&alpha_applied.stdout));
    assert!(text(&alpha_applied.stdout).contains("Apply complete"), "{}", text(&alpha_applied.stdout));
    seen.push_str(&flat(&alpha_applied));
    seen.push_str(&alpha_stderr);

    // Neither lost the other's records.
    let state = environments.state(&alpha);
    for environment in ["alpha", "beta"] {
        assert!(state.owns(&address(&format!("{environment}.cluster.primary"))), "{environment}: {state:?}");
        let finished = state
            .journal
            .iter()
            .filter(|entry| entry.address.environment == environment && entry.event == JournalEvent::Finished)
            .count();
        assert!(finished > 0, "{environment}'s journal is kept");
        assert!(state.environment_serials[environment] > 1, "{state:?}");
    }
    for file in [&alpha, &beta] {
        let plan = environments.pgfleet(&["plan", "-f", file, "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{file}: {}", flat(&plan));
    }
    let listed = environments.pgfleet(&["state", "list", "-f", &alpha]);
    assert!(flat(&listed).contains("not locked"), "{}", flat(&listed));
    seen.push_str(&flat(&listed));
    seen.push_str(&text(&environments.pgfleet(&["state", "show", "-f", &alpha]).stdout));

    // The url's password is in no output and nowhere in the tables.
    let dump = environments.db.dump();
    assert!(dump.contains("alpha.cluster.primary") && dump.contains("beta.cluster.primary"), "{dump}");
    assert!(!dump.contains(STATE_PASSWORD), "the password reached the table");
    assert!(!seen.contains(STATE_PASSWORD), "the password reached an output");
    assert!(!seen.contains(&environments.db.url()));
}

#[test]
fn killing_the_holder_frees_its_environment_at_once() {
    let environments = Environments::new();
    let alpha = environments.write("alpha");
    let waiting = environments.apply_waiting(&alpha);
    let pid = waiting.pid();
    let refused = environments.pgfleet(&["apply", "-f", &alpha, "--auto-approve"]);
    assert!(flat(&refused).contains(&format!("pid {pid}")), "{}", flat(&refused));

    waiting.kill();
    // The kernel closes the dead process's socket; its session ends and
    // PostgreSQL frees the lock with it.
    let killed = Instant::now();
    while environments.db.held("acme", "alpha") {
        assert!(killed.elapsed() < Duration::from_secs(2), "the lock outlived its holder");
        std::thread::sleep(Duration::from_millis(10));
    }
    let applied = environments.pgfleet(&["apply", "-f", &alpha, "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}", flat(&applied));
    let state = environments.state(&alpha);
    assert!(state.owns(&address("alpha.cluster.primary")));
    // The dead holder's record was replaced by the live one's, then left.
    let listed = flat(&environments.pgfleet(&["state", "list", "-f", &alpha]));
    assert!(listed.contains("not locked") && !listed.contains(&format!("pid {pid}")), "{listed}");
}

fn local_state(path: &Path, environments: &[&str]) -> State {
    runtime().block_on(async {
        let store = LocalStore::new(path.to_path_buf());
        let (mut writer, _) = Writer::lock(&store, &[], "test", NO_WAIT).await.unwrap();
        let mut state = state_with(environments);
        state.last_applied_spec = Some("5f2b".into());
        writer.save(&mut state).await.unwrap();
        writer.save(&mut state).await.unwrap();
        state
    })
}

#[test]
fn state_migrate_moves_a_local_state_into_postgres_without_loss() {
    let environments = Environments::new();
    let config = environments.write("alpha");
    let local: PathBuf = environments.fleet.dir().join("state").join("acme.json");
    let moved = local_state(&local, &["alpha", "beta"]);

    let migrate = environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &config]);
    let output = flat(&migrate);
    assert_eq!(migrate.status.code(), Some(0), "{output}");
    assert!(output.contains(&format!("Moved state of lineage {} (serial 2)", moved.lineage)), "{output}");
    assert!(output.contains("alpha: 1 owned resource(s), 2 journal entries"), "{output}");
    assert!(output.contains("beta: 1 owned resource(s), 2 journal entries"), "{output}");

    // The same records, the same lineage, served by the postgres backend.
    let served = environments.state(&config);
    assert!(served.same_records(&moved), "{served:#?}\n{moved:#?}");
    assert_eq!(served.serial, moved.serial);
    assert_eq!(std::fs::read_to_string(&local).map(|text| text.contains(&moved.lineage)).ok(), Some(true));
    // An apply continues that lineage.
    let applied = environments.pgfleet(&["apply", "-f", &config, "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}", flat(&applied));
    assert_eq!(environments.state(&config).lineage, moved.lineage);

    // Again: this lineage is there, with more records now: refused.
    let again = environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &config]);
    assert_eq!(again.status.code(), Some(1), "{}", flat(&again));
    assert!(flat(&again).contains("already holds"), "{}", flat(&again));

    // A state of another lineage is refused, and nothing is written.
    let other = environments.fleet.dir().join("other.json");
    local_state(&other, &["gamma"]);
    let before = environments.db.dump();
    let refused = environments.pgfleet(&[
        "state",
        "migrate",
        "--to",
        "postgres",
        "-f",
        &config,
        "--from",
        &other.display().to_string(),
    ]);
    let refused_text = flat(&refused);
    assert_eq!(refused.status.code(), Some(1), "{refused_text}");
    assert!(refused_text.contains("already holds a state of lineage"), "{refused_text}");
    assert!(refused_text.contains("nothing was written"), "{refused_text}");
    let after = environments.db.dump();
    assert_eq!(
        before.lines().filter(|line| !line.contains("backend_pid")).collect::<Vec<_>>(),
        after.lines().filter(|line| !line.contains("backend_pid")).collect::<Vec<_>>()
    );
    assert!(!after.contains("gamma.cluster.primary"));
    for output in [&migrate, &again, &refused] {
        assert!(!flat(output).contains(STATE_PASSWORD));
    }
    assert!(!after.contains(STATE_PASSWORD));
}

#[test]
fn state_migrate_into_an_empty_database_is_idempotent_and_needs_a_postgres_configuration() {
    let environments = Environments::new();
    let config = environments.write("alpha");
    let local = environments.fleet.dir().join("state").join("acme.json");
    let moved = local_state(&local, &["alpha"]);
    let first = environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &config]);
    assert_eq!(first.status.code(), Some(0), "{}", flat(&first));
    let second = environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &config]);
    assert_eq!(second.status.code(), Some(0), "{}", flat(&second));
    assert!(flat(&second).contains("already holds this state"), "{}", flat(&second));
    assert!(environments.state(&config).same_records(&moved));

    // A configuration still on the local backend has nowhere to move to.
    let local_config = environments.fleet.dir().join("local.yaml");
    let yaml = std::fs::read_to_string(environments.fleet.dir().join(&config)).unwrap();
    let kept = yaml.lines().filter(|line| !line.starts_with("state:")).collect::<Vec<_>>().join("\n");
    std::fs::write(&local_config, kept).unwrap();
    let refused =
        environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &local_config.display().to_string()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(flat(&refused).contains("backend: local"), "{}", flat(&refused));

    // A wrong password: said, and not shown.
    let wrong = "wr0ng-Pw-Qe71bn";
    let listed = environments
        .command(&["state", "list", "-f", &config])
        .env("PGFLEET_STATE_URL", environments.db.url_with(wrong))
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(1));
    assert!(flat(&listed).contains("password authentication failed"), "{}", flat(&listed));
    assert!(!flat(&listed).contains(wrong) && !text(&listed.stderr).contains(wrong), "{}", flat(&listed));

    // Nothing to move.
    let empty =
        environments.pgfleet(&["state", "migrate", "--to", "postgres", "-f", &config, "--from", "no-such-state.json"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(flat(&empty).contains("never written"), "{}", flat(&empty));
}
