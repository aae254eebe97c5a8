#!/usr/bin/env bash
# Installs what pgfleet's build, tests and sandbox need, when missing:
# PostgreSQL 15, PgBouncer, OpenSSH server, rsync, Docker, vsftpd, Chromium
# with its WebDriver and man from the distribution, a Rust toolchain, and
# s3s-fs (the S3 test server) from crates.io. Safe to run again; does
# nothing when all is present.
set -euo pipefail

packages=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || packages+=(postgresql-15)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || packages+=(pgbouncer)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || packages+=(openssh-client)
command -v rsync >/dev/null 2>&1 || packages+=(rsync)
command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
command -v runuser >/dev/null 2>&1 || packages+=(util-linux)
command -v sudo >/dev/null 2>&1 || packages+=(sudo)            # `become:` tests
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)     # `runtime: docker`
command -v chromium >/dev/null 2>&1 || packages+=(chromium)      # the monitor's page, rendered
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
command -v man >/dev/null 2>&1 || packages+=(man-db)            # `pgfleet man | man -l -`
[ -x /usr/sbin/vsftpd ] || packages+=(vsftpd)                     # `kind: ftp` backups' tests
command -v openssl >/dev/null 2>&1 || packages+=(openssl)       # their test CA

if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "pgfleet: missing ${packages[*]}; run this as root (or install them)" >&2
    exit 1
  fi
  echo "pgfleet: installing ${packages[*]}" >&2
  # The packages' own services (a PostgreSQL on 5432, PgBouncer on 6432,
  # sshd on 22, vsftpd on 21) are not wanted: pgfleet's tests start their own. policy-rc.d keeps
  # them from starting during installation.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "pgfleet: installing Rust with rustup" >&2
  command -v curl >/dev/null 2>&1 || apt-get install -y -qq curl ca-certificates >/dev/null
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
fi

# The S3 API server the storage tests run (over a temporary directory, with
# signatures checked). Pinned: later releases need a newer rustc. Built
# once, then kept in ~/.cargo/bin.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  echo "pgfleet: installing s3s-fs (the S3 test server)" >&2
  cargo install --locked --quiet s3s-fs@0.14.1 --features binary
fi
