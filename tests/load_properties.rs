//! Bad input breaks nothing: mutated copies of the repository's own
//! configurations (examples, the invalid corpus, the plan fixtures) and
//! generated ones go through `load::parse` and `resolve_in`. Whatever comes
//! in, nothing panics, each case finishes within a bound, and a rejection
//! renders as short diagnostics that name the line and column they concern.
//!
//! Seeded, so a run is repeatable; the case counts keep it to seconds in a
//! debug build.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgfleet::config::load;
use pgfleet::printer::render;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

/// One case may take this long, parse to rendered diagnostics. Rejecting a
/// 200 kB line takes well under a second; this leaves room for a busy
/// machine, not for the minutes it once took.
const CASE_TIME: Duration = Duration::from_secs(5);
/// No diagnostic may print more than this, whatever the input.
const MAX_RENDERED: usize = 16_000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(13),
        // Nothing is written into the work tree; a failure prints its input.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = ["examples", "tests/invalid", "tests/fixtures/plan"]
        .iter()
        .flat_map(|directory| std::fs::read_dir(directory).unwrap().map(|entry| entry.unwrap().path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus lost its files: {files:?}");
    files.into_iter().map(|path| (path.display().to_string(), std::fs::read(&path).unwrap())).collect()
}

/// What a mutation does to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    SetByte(Index, u8),
    Insert(Index, String),
    Delete(Index, usize),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// The value of a `key: value` line replaced.
    ReplaceValue(Index, String),
}

/// Text that YAML, serde or the resolver treat specially.
fn snippet() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "\n", "\r\n", "\r", "\0", "\u{1}", "\t", "\u{7f}", "\u{85}", "\u{2028}", ": ", "- ", "{", "}", "[", "]",
            "\"", "'", "#", "&a ", "*a", "!!str ", "!!binary ", "? ", "---\n", "...\n", "<<: *a\n", "|\n", ">-\n",
            "port: 0\n", "é", "\u{feff}",
        ])
        .prop_map(str::to_owned),
        2 => "[a-z_]{1,12}: [a-z0-9.]{0,8}\n",
        1 => (1_000usize..200_000).prop_map(|length| "x".repeat(length)),
        1 => (1usize..2_000).prop_map(|count| "k: 1, ".repeat(count)),
    ]
}

/// Values that are out of range, of the wrong type, or hold what a
/// configuration file cannot carry.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "0", "1", "-1", "65535", "65536", "4294967296", "99999999999999999999999999", "1e400", "-0.0", ".nan",
            ".inf", "0x10", "~", "", "[]", "{}", "\"\"", "yes", "\"4MB\\nfsync = off\"", "\"a\\u0000b\"",
            "\"a\\rb\"", "'it''s'", "\"C:\\\\x\"", "\"/srv/my pg/x\"", "\"db 1\"", "-oProxyCommand=x", "postgres",
            "pg_x", "\"../../x\"", "auto", "10GB", "10XB", "5m", "tuning", "18.0", "17.0",
        ])
        .prop_map(str::to_owned),
        1 => (1_000usize..200_000).prop_map(|length| "v".repeat(length)),
        1 => "[ -~]{0,40}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), prop::sample::select(b"\n\r\0\x01\t:{}[]\"'-#&*!|> ,".to_vec()))
            .prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        3 => (any::<Index>(), snippet()).prop_map(|(at, text)| Mutation::Insert(at, text)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(at, length)| Mutation::Delete(at, length)),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(first, second)| Mutation::SwapLines(first, second)),
        4 => (any::<Index>(), value()).prop_map(|(at, text)| Mutation::ReplaceValue(at, text)),
    ]
}

fn line_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'\n' {
            ranges.push((start, at + 1));
            start = at + 1;
        }
    }
    if start < bytes.len() {
        ranges.push((start, bytes.len()));
    }
    ranges
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let position = |at: &Index, bytes: &[u8]| at.index(bytes.len() + 1);
    match mutation {
        Mutation::SetByte(at, byte) if !bytes.is_empty() => {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        Mutation::Insert(at, text) => {
            let at = position(at, bytes);
            bytes.splice(at..at, text.bytes());
        }
        Mutation::Delete(at, length) => {
            let at = position(at, bytes);
            let end = (at + length).min(bytes.len());
            bytes.drain(at..end);
        }
        Mutation::DuplicateLine(at) => {
            let lines = line_ranges(bytes);
            if !lines.is_empty() {
                let (start, end) = lines[at.index(lines.len())];
                let line = bytes[start..end].to_vec();
                bytes.splice(start..start, line);
            }
        }
        Mutation::SwapLines(first, second) => {
            let lines = line_ranges(bytes);
            if lines.len() >= 2 {
                let mut order: Vec<(usize, usize)> = lines.clone();
                order.swap(first.index(lines.len()), second.index(lines.len()));
                *bytes = order.iter().flat_map(|(start, end)| bytes[*start..*end].to_vec()).collect();
            }
        }
        Mutation::ReplaceValue(at, text) => {
            let lines: Vec<(usize, usize)> = line_ranges(bytes)
                .into_iter()
                .filter(|(start, end)| bytes[*start..*end].windows(2).any(|pair| pair == b": "))
                .collect();
            if !lines.is_empty() {
                let (start, end) = lines[at.index(lines.len())];
                let line = &bytes[start..end];
                let value_at = start + line.windows(2).position(|pair| pair == b": ").unwrap_or(0) + 2;
                let value_end = if bytes[end - 1] == b'\n' { end - 1 } else { end };
                bytes.splice(value_at..value_end, text.bytes());
            }
        }
        Mutation::SetByte(..) => {}
    }
}

/// A configuration assembled from parts, each of them sometimes wrong.
fn generated() -> impl Strategy<Value = String> {
    let name = prop_oneof![4 => "[a-z][a-z0-9_-]{0,8}", 1 => "[ -~]{0,12}", 1 => Just("a\nb".to_owned())];
    let address = prop_oneof![
        prop::sample::select(vec!["127.0.0.1", "192.0.2.1", "::1", "localhost", "db1.example.net", "*", "0.0.0.0"])
            .prop_map(str::to_owned),
        "[ -~]{0,16}",
    ];
    let port = prop_oneof![4 => 1u32..65536, 1 => Just(0u32), 1 => 65536u32..100_000];
    let setting = (
        prop_oneof![3 => "[a-z_]{1,16}", 1 => "[ -~]{1,16}", 1 => Just("port".to_owned())],
        prop_oneof![3 => "[ -~]{0,16}", 1 => "[\\x00-\\x1f]{1,3}", 1 => Just("4MB\nfsync = off".to_owned())],
    );
    let replica = (name.clone(), name.clone(), address.clone(), port.clone(), "[ -~/]{0,20}");
    let environment = (
        name.clone(),
        prop::option::of(prop::sample::select(vec!["16.0", "17.0", "18.0", "19.0"])),
        name.clone(),
        address.clone(),
        port.clone(),
        prop::collection::vec(setting, 0..4),
        prop::collection::vec(replica, 0..3),
        prop::option::of((0u32..200, port.clone(), port.clone())),
        prop::option::of((0.0f64..100.0, -1.0f64..100_000.0, 0.0f64..1_000.0)),
    );
    let host = (name.clone(), prop::option::of(address), prop::option::of(port), any::<bool>());
    (
        prop_oneof![4 => Just(1u32), 1 => 0u32..5],
        prop::collection::vec(host, 0..4),
        prop::collection::vec(environment, 0..3),
        prop::option::of((name, 0.0f64..50.0, 0.0f64..100_000.0, 0.0f64..1_000.0)),
    )
        .prop_map(|(version, hosts, environments, organization)| {
            // JSON strings are YAML double-quoted scalars: any text fits.
            let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
            let mut yaml = format!("version: {version}\n");
            if let Some((name, cpu, ram, disk)) = organization {
                yaml.push_str(&format!(
                    "organization: {{ name: {}, quota: {{ cpu: {cpu}, ram_mb: {ram}, disk_gb: {disk} }} }}\n",
                    quote(&name)
                ));
            }
            yaml.push_str("hosts:\n");
            for (name, address, port, local) in &hosts {
                let mut entry = Vec::new();
                if *local {
                    entry.push("transport: local".to_owned());
                }
                if let Some(address) = address {
                    entry.push(format!("address: {}", quote(address)));
                }
                if let Some(port) = port {
                    entry.push(format!("ssh: {{ port: {port} }}"));
                }
                yaml.push_str(&format!("  {}: {{ {} }}\n", quote(name), entry.join(", ")));
            }
            if hosts.is_empty() {
                yaml.push_str("  {}\n");
            }
            yaml.push_str("environments:\n");
            for (id, odoo, host, address, port, settings, replicas, pooler, resources) in &environments {
                yaml.push_str(&format!("  - id: {}\n", quote(id)));
                if let Some(odoo) = odoo {
                    yaml.push_str(&format!("    odoo_version: \"{odoo}\"\n"));
                }
                if let Some((cpu, ram, disk)) = resources {
                    yaml.push_str(&format!("    resources: {{ cpu: {cpu}, ram_mb: {ram}, disk_gb: {disk} }}\n"));
                }
                let settings: Vec<String> =
                    settings.iter().map(|(name, value)| format!("{}: {}", quote(name), quote(value))).collect();
                yaml.push_str(&format!(
                    "    primary: {{ host: {}, address: {}, port: {port}, settings: {{ {} }} }}\n",
                    quote(host),
                    quote(address),
                    settings.join(", ")
                ));
                if let Some((pool_size, port, replica_port)) = pooler {
                    yaml.push_str(&format!(
                        "    pgbouncer: {{ pool_size: {pool_size}, port: {port}, replica_port: {replica_port} }}\n"
                    ));
                }
                if !replicas.is_empty() {
                    yaml.push_str("    replicas:\n");
                }
                for (name, host, address, port, data_dir) in replicas {
                    yaml.push_str(&format!(
                        "      - {{ name: {}, host: {}, address: {}, port: {port}, data_dir: {} }}\n",
                        quote(name),
                        quote(host),
                        quote(address),
                        quote(data_dir)
                    ));
                }
            }
            if environments.is_empty() {
                yaml.push_str("  []\n");
            }
            yaml
        })
}

/// The properties every input must have; a failure quotes the input (its
/// start, when it is long).
fn check(name: &str, text: String) -> Result<(), TestCaseError> {
    let shown: String = text.chars().take(1_500).collect();
    checked(name, text).map_err(|failure| TestCaseError::fail(format!("{failure}\ninput ({name}):\n{shown:?}")))
}

fn checked(name: &str, text: String) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let outcome = load::parse(name, text).and_then(|document| document.resolve_in(Path::new("/work/fleet")).map(drop));
    if let Err(errors) = outcome {
        prop_assert!(errors.total() >= 1 && !errors.diagnostics().is_empty(), "rejected without a problem");
        let summary = render(&errors, false, 100);
        prop_assert!(summary.len() < 2 * MAX_RENDERED * errors.diagnostics().len(), "{} bytes", summary.len());
        for diagnostic in errors.diagnostics() {
            let rendered = render(diagnostic, false, 100);
            prop_assert!(rendered.len() < MAX_RENDERED, "{} bytes:\n{}", rendered.len(), &rendered[..2_000]);
            let location = diagnostic.location();
            prop_assert!(location.is_some(), "no location:\n{rendered}");
            if let Some((line, column)) = location {
                let place = format!("{name}:{line}:{column}");
                prop_assert!(rendered.contains(&place), "expected {place} in\n{rendered}");
            }
        }
    }
    let elapsed = started.elapsed();
    prop_assert!(elapsed < CASE_TIME, "took {elapsed:?}");
    Ok(())
}

#[test]
fn mutated_configurations_are_accepted_or_rejected_with_located_diagnostics() {
    let corpus = corpus();
    let strategy = (any::<Index>(), prop::collection::vec(mutation(), 1..5));
    let mut runner = proptest::test_runner::TestRunner::new(config(1024));
    let result = runner.run(&strategy, |(file, mutations)| {
        let (name, original) = &corpus[file.index(corpus.len())];
        let mut bytes = original.clone();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        // What `load` would see: it reads files as UTF-8.
        check(name, String::from_utf8_lossy(&bytes).into_owned())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn generated_configurations_are_accepted_or_rejected_with_located_diagnostics() {
    let mut runner = proptest::test_runner::TestRunner::new(config(1024));
    let result = runner.run(&generated(), |yaml| check("generated.yaml", yaml));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
