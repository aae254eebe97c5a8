#!/usr/bin/env bash
# The local sandbox (examples/local.yaml): installs what is missing, builds
# pgfleet, and runs it on the sandbox. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release --quiet
pgfleet=target/release/pgfleet
"$pgfleet" validate -f examples/local.yaml
"$pgfleet" graph -f examples/local.yaml
