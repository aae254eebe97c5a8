//! Committed artifacts stay true: the JSON Schema matches `pgfleet schema`,
//! every example starts with the schema line and validates, and the resource
//! graph of each is in dependency order.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;

use pgfleet::address::Kind;
use pgfleet::config::load;
use pgfleet::graph::ResourceGraph;
use pgfleet::ops::schema::schema_json;

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("examples")
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "examples/ lost its files: {files:?}");
    files
}

#[test]
fn committed_schema_matches_pgfleet_schema() {
    let committed = std::fs::read_to_string("schemas/pgfleet.schema.json").unwrap();
    assert!(
        committed == schema_json().unwrap(),
        "schemas/pgfleet.schema.json is stale: run `cargo run -- schema > schemas/pgfleet.schema.json`"
    );
}

#[test]
fn every_example_declares_the_schema_and_validates() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/pgfleet.schema.json\n"),
            "{} must start with the schema line",
            file.display()
        );
        let document = load::load(&file).unwrap_or_else(|error| panic!("{}: {error:?}", file.display()));
        document.resolve().unwrap_or_else(|error| panic!("{}: {error:?}", file.display()));
    }
}

#[test]
fn example_graphs_are_in_dependency_order() {
    for file in examples() {
        let topology = load::load(&file).unwrap().resolve().unwrap();
        let graph = ResourceGraph::build(&topology);
        let order = graph.order();
        assert_eq!(order.len(), graph.len(), "{}: every resource is ordered", file.display());
        let position = |address| order.iter().position(|candidate| *candidate == address).unwrap();
        for (before, after) in graph.edges() {
            assert!(position(before) < position(after), "{}: {before} must come before {after}", file.display());
        }
        // The primary always comes first and each replica after its slot.
        assert_eq!(order[0].kind, Kind::Cluster);
        for environment in &topology.environments {
            for replica in &environment.replicas {
                let slot = order.iter().position(|a| a.kind == Kind::Slot && a.name == replica.name).unwrap();
                let standby = order.iter().position(|a| a.kind == Kind::Replica && a.name == replica.name).unwrap();
                assert!(slot < standby);
            }
        }
    }
}

#[test]
fn local_sandbox_graph_is_stable_dot() {
    let topology = load::load(std::path::Path::new("examples/local.yaml")).unwrap().resolve().unwrap();
    insta::assert_snapshot!(ResourceGraph::build(&topology).to_dot());
}
