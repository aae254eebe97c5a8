#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs unit, snapshot,
# CLI and real-server tests (PostgreSQL, PgBouncer and sshd on loopback),
# after checking formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# One-shot builds: incremental state costs a first build seconds and pays
# only in an edit loop. The same as scripts/sandbox.sh, so neither
# recompiles what the other built.
export CARGO_INCREMENTAL=0
# What every commit must pass, checked here too so CI holds the line.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$component" >/dev/null
  fi
done
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The `docker` runtime's tests need a daemon. Without systemd, start one
# (host networking only: no bridge, no iptables) and stop it, by pid, after.
dockerd_pid=/run/pgfleet-test-dockerd.pid
if ! docker info >/dev/null 2>&1; then
  dockerd --bridge=none --iptables=false --ip6tables=false --pidfile "$dockerd_pid" \
    </dev/null >/tmp/pgfleet-test-dockerd.log 2>&1 &
  trap 'kill "$(cat "$dockerd_pid" 2>/dev/null)" 2>/dev/null || true' EXIT
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
bash scripts/docker-image.sh pgfleet-local/postgres:15 15
cargo test --locked --all-targets
