#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs unit, snapshot,
# CLI and real-server tests (PostgreSQL, PgBouncer and sshd on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --locked --all-targets
