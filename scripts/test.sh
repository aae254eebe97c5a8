#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs unit, snapshot,
# CLI and real-server tests (PostgreSQL, PgBouncer and sshd on loopback),
# after checking formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# What every commit must pass, checked here too so CI holds the line.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$component" >/dev/null
  fi
done
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
