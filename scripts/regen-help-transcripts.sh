#!/usr/bin/env bash
# Rewrites tests/cmd/help.trycmd from the current binary's --help output
# (built into $CARGO_TARGET_DIR when that is set).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
{
  echo 'Every command says what it does and its exit codes.'
  echo
  for args in "--help" "validate --help" "schema --help" "graph --help" "plan --help" "apply --help" "status --help" "drift --help" "monitor --help" "state --help" "switchover --help" "failover --help" "backup --help" "backup create --help" "backup list --help" "backup verify --help" "backup restore --help" "completions --help" "man --help"; do
    echo '```console'
    echo "\$ pgfleet $args"
    # shellcheck disable=SC2086
    "${CARGO_TARGET_DIR:-target}/debug/pgfleet" $args
    echo
    echo '```'
    echo
  done
} > tests/cmd/help.trycmd
