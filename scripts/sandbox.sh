#!/usr/bin/env bash
# The local sandbox (examples/local.yaml): installs what is missing, builds
# pgfleet, applies the sandbox on this machine (a primary, two streaming
# replicas and their PgBouncer poolers on 127.0.10.1-3), and shows that the
# next plan is empty. Safe to run again: a converged sandbox is left as is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The same build as the test suite's (the dev profile, dependencies
# unoptimised but for the arithmetic kernels: Cargo.toml; not incremental,
# as in scripts/test.sh), so whichever of the README's two commands runs
# second compiles only pgfleet's own test targets. `cargo install --path .`
# makes a release build to install.
export CARGO_INCREMENTAL=0
if [ ! -x target/debug/pgfleet ]; then
  echo "sandbox: the first run compiles pgfleet and its dependencies (about 3 minutes on 2 cores)" >&2
fi
if [ -t 2 ]; then cargo build --locked; else cargo build --locked --quiet; fi
pgfleet=target/debug/pgfleet

# PostgreSQL and PgBouncer run as postgres; their data lives under
# state/sandbox/, which postgres must be able to reach.
mkdir -p state/sandbox
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: state/sandbox
  dir=$PWD
  while [ "$dir" != / ]; do
    if ! runuser -u postgres -- test -x "$dir"; then
      echo "sandbox: postgres cannot enter $dir; move the checkout (e.g. to /opt) or chmod o+x $dir" >&2
      exit 1
    fi
    dir=$(dirname "$dir")
  done
fi

"$pgfleet" apply -f examples/local.yaml --auto-approve
"$pgfleet" plan -f examples/local.yaml --detailed-exitcode
