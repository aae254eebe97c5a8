//! Every file in tests/invalid/ is rejected with exit 1 and a diagnostic
//! that points at the right line and column; the rendered diagnostics are
//! snapshots.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use pgfleet::config::load;
use pgfleet::printer::render;

/// (file, the `file:line:column` of its first diagnostic, a phrase it must say)
const CORPUS: &[(&str, &str, &str)] = &[
    ("unknown-key.yaml", "9:7", "did you mean `tuning`?"),
    ("wrong-type.yaml", "8:13", "expected a port number"),
    ("yaml-syntax.yaml", "4:13", "invalid YAML"),
    ("odoo17-replica.yaml", "7:19", "Your project is using Odoo 17.0."),
    ("quota-cpu.yaml", "16:15", "organization CPU quota exceeded (3.2 > 2.5 cores)"),
    ("quota-ram.yaml", "18:15", "organization RAM quota exceeded (6553.6 > 6000 MB)"),
    ("quota-disk.yaml", "18:15", "organization disk quota exceeded (60 > 50 GB)"),
    ("duplicate-names.yaml", "9:17", "replica name `r1` is used twice"),
    ("port-collision.yaml", "7:39", "already used by prod.cluster.primary"),
    ("undefined-host.yaml", "10:15", "host `db3` is not defined"),
    ("plaintext-password.yaml", "9:17", "must not be written in the configuration file"),
    ("several-problems.yaml", "10:15", "5 problems"),
    ("state-postgres.yaml", "5:3", "`path` belongs to the local state backend"),
    ("state-url-generated.yaml", "4:3", "state.url must say where"),
    ("setting-newline.yaml", "10:19", "the value of setting `work_mem` contains a line break"),
    ("port-zero.yaml", "6:18", "`port: 0` is not a port"),
];

fn rendered(file: &str) -> String {
    let path = Path::new("tests/invalid").join(file);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let errors = match load::parse(&path.display().to_string(), text) {
        Ok(document) => match document.resolve() {
            Ok(_) => panic!("{file} was accepted"),
            Err(errors) => errors,
        },
        Err(errors) => errors,
    };
    errors.diagnostics().iter().map(|diagnostic| render(diagnostic, false, 100)).collect::<Vec<_>>().join("\n")
}

#[test]
fn invalid_files_render_located_diagnostics() {
    for (file, _, _) in CORPUS {
        insta::assert_snapshot!(file.trim_end_matches(".yaml"), rendered(file));
    }
}

#[test]
fn every_corpus_file_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir("tests/invalid")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(file, _, _)| (*file).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn validate_exits_1_naming_file_line_and_column() {
    for (file, location, phrase) in CORPUS {
        let path = format!("tests/invalid/{file}");
        let output = Command::new(env!("CARGO_BIN_EXE_pgfleet")).args(["validate", "-f", &path]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(output.stdout.is_empty(), "{file}: nothing on stdout when invalid");
        assert!(stderr.contains(&format!("{path}:{location}")), "{file}: expected {path}:{location} in\n{stderr}");
        // Long messages wrap; compare with the wrapping undone.
        let flat = stderr.replace("\n  │ ", " ").split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(phrase), "{file}: expected {phrase:?} in\n{stderr}");
    }
}

#[test]
fn a_plaintext_password_is_never_repeated() {
    let output = Command::new(env!("CARGO_BIN_EXE_pgfleet"))
        .args(["validate", "-f", "tests/invalid/plaintext-password.yaml"])
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // The snippet of the file is shown, the message is not; the secret may
    // appear only inside the quoted source line itself.
    let mentions = all.matches("correct-horse-battery-staple").count();
    assert_eq!(mentions, 1, "the password appears outside the source snippet:\n{all}");
    assert!(all.contains("password: \"correct-horse-battery-staple\""));
}

/// A 200 kB line (a long value, a syntax error far along it, one line of
/// thousands of unknown keys): exit 1 quickly, with a short message that
/// still names the line and column. One line of 25 000 unknown keys took
/// over four minutes and then panicked inside miette.
#[test]
fn a_200_kb_line_is_rejected_quickly_with_a_short_located_message() {
    let long = "x".repeat(200_000);
    let keys: String = (0..25_000).map(|index| format!("k{index}: 1, ")).collect();
    let cases = [
        ("long-value", format!("version: {long}\nhosts: {{}}\nenvironments: []\n"), "1:10".to_owned()),
        ("long-key", format!("version: 1\nhosts: {{}}\nenvironments: []\n{long}: 1\n"), "4:200001".to_owned()),
        ("unknown-keys", format!("version: 1\nhosts: {{}}\nenvironments: []\nstate: {{ {keys}}}\n"), "4:10".to_owned()),
    ];
    let directory = tempfile::tempdir().unwrap();
    for (name, text, location) in cases {
        let path = directory.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let started = std::time::Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_pgfleet"))
            .args(["validate", "-f", &path.display().to_string()])
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.yaml:{location}")), "{name}: expected :{location} in\n{stderr}");
        assert!(stderr.len() < 20_000, "{name}: {} bytes of diagnostics", stderr.len());
        // Well under a second here; the bound leaves room for a loaded CI
        // machine, not for the minutes this used to take.
        assert!(elapsed < std::time::Duration::from_secs(10), "{name}: took {elapsed:?}");
    }
}

/// Validation runs before anything is observed, locked or written: `plan`
/// and `apply --auto-approve` on the newline setting stop with the same
/// located error and leave no state file, no data directory, no process.
#[test]
fn plan_and_apply_refuse_a_newline_setting_before_touching_anything() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("primary");
    let file = directory.path().join("bad.yaml");
    let text = std::fs::read_to_string("tests/invalid/setting-newline.yaml").unwrap();
    std::fs::write(&file, text.replace("/srv/pg/prod", &data_dir.display().to_string())).unwrap();
    let file = file.display().to_string();
    for args in [vec!["plan", "-f", &file], vec!["apply", "-f", &file, "--auto-approve"]] {
        let output =
            Command::new(env!("CARGO_BIN_EXE_pgfleet")).args(&args).current_dir(directory.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{file}:10:19")), "{args:?}: {stderr}");
        assert!(stderr.contains("the value of setting `work_mem` contains a line break"), "{args:?}: {stderr}");
        let left: Vec<_> =
            std::fs::read_dir(directory.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(left, ["bad.yaml"], "{args:?} wrote something");
    }
}
