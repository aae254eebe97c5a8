#!/usr/bin/env bash
# Backup and restore against the raw tools, in the same run:
#
#   create:  pgfleet backup create  vs  pg_dump | tee dump.sql | sha256sum,
#            zip -r (dump.sql + filestore/), then one upload of the zip
#   restore: pgfleet backup restore vs  createdb + psql -v ON_ERROR_STOP=1
#            < dump.sql + cp -a of the filestore
#
# on a pgbench database of SCALE (default 70: about 1.05 GB) with a
# filestore of FILES files (default 3000, 32 kB each, incompressible),
# ROUNDS rounds each (default 3), medians compared; then pgfleet's peak
# memory (max RSS) for a backup at SCALE and at SCALE/5: flat means
# streaming. The restore's downtime (PAUSE to RESUME) is reported as
# pgfleet prints it.
#
#   bench/backup.sh                       # to an S3-compatible server (s3s-fs)
#   STORAGE=local bench/backup.sh         # to a local directory
#   SCALE=20 FILES=500 ROUNDS=3 bench/backup.sh
#
# Run as root with PostgreSQL 15, PgBouncer, zip and curl installed
# (scripts/install-deps.sh; s3s-fs for STORAGE=s3). Uses a temporary
# directory and the loopback addresses 127.79.1.1-2 only.
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
scale=${SCALE:-70}
files=${FILES:-3000}
storage=${STORAGE:-s3}
bin=/usr/lib/postgresql/15/bin
if [ -z "${PGFLEET:-}" ]; then cargo build --release --quiet; fi
pgfleet=${PGFLEET:-$PWD/target/release/pgfleet}
export PGFLEET_REPLICATION_PASSWORD=bench-replication-Hx7q
export BENCH_S3_ACCESS=bench-access-key BENCH_S3_SECRET=bench-secret-key-Qx81
work=$(mktemp -d /tmp/pgfleet-bench-backup.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
s3_pid=
cleanup() {
  for dir in "$work"/*/; do
    [ -f "$dir/PG_VERSION" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true
  done
  for pid in "$work"/*.pgfleet/pgbouncer-*.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  [ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

address=127.79.1.1
s3=127.79.1.2:9300
case "$storage" in
  s3)
    mkdir -p "$work/s3/backups"
    s3s-fs --host 127.79.1.2 --port 9300 --access-key "$BENCH_S3_ACCESS" --secret-key "$BENCH_S3_SECRET" "$work/s3" \
      >"$work/s3.log" 2>&1 &
    s3_pid=$!
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://$s3/" && break; sleep 0.1; done
    storage_yaml="{ kind: s3, bucket: backups, endpoint: \"http://$s3\", region: us-east-1, access_key: { env: BENCH_S3_ACCESS }, secret_key: { env: BENCH_S3_SECRET } }"
    upload() { curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "$BENCH_S3_ACCESS:$BENCH_S3_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$1" "http://$s3/backups/raw/$(basename "$1")" >/dev/null; }
    ;;
  local)
    mkdir -p "$work/store"; chown postgres: "$work/store"
    storage_yaml="{ kind: local, path: $work/store }"
    upload() { cp "$1" "$work/store/raw-$(basename "$1")"; }
    ;;
esac

cat > "$work/pgfleet.yaml" <<YAML
version: 1
state: { path: $work/state.json }
hosts:
  here: { transport: local }
environments:
  - id: app
    primary: { host: here, address: $address, port: 5432, data_dir: $work/primary, tuning: none, settings: { shared_buffers: 256MB, maintenance_work_mem: 256MB, max_wal_size: 4GB } }
    database: { name: app, owner: app, password: { generate: true } }
    replication: { user: replicator, password: { env: PGFLEET_REPLICATION_PASSWORD } }
    pgbouncer: { pool_size: 8, pool_mode: transaction, port: 6440, replica_port: 6441 }
    filestore: { path: $work/filestore }
    backups:
      storage: $storage_yaml
      retention: { daily: 100, weekly: 0, monthly: 0 }
YAML
echo "building the environment, pgbench scale $scale, $files filestore files ..." >&2
mkdir -p "$work/filestore"
"$pgfleet" apply -f "$work/pgfleet.yaml" --auto-approve >/dev/null
superuser() { PGPASSWORD=$(cat "$work/primary.pgfleet/superuser.password") "$@" -h $address -p 5432 -U postgres; }
superuser "$bin/pgbench" -i -q -s "$scale" app >/dev/null 2>&1
superuser psql -X -q -d app -c "ALTER TABLE pgbench_accounts OWNER TO app; ALTER TABLE pgbench_branches OWNER TO app; ALTER TABLE pgbench_tellers OWNER TO app; ALTER TABLE pgbench_history OWNER TO app"
python3 - "$work/filestore" "$files" <<'PY'
import hashlib, os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    data = os.urandom(32 * 1024)
    sha = hashlib.sha1(data).hexdigest()
    os.makedirs(os.path.join(root, sha[:2]), exist_ok=True)
    open(os.path.join(root, sha[:2], sha), "wb").write(data)
PY
chown -R postgres: "$work/filestore"
echo "database: $(superuser psql -X -At -d app -c "SELECT pg_size_pretty(pg_database_size('app'))"), filestore: $(du -sh "$work/filestore" | cut -f1)" >&2

seconds() { local start end; start=$(date +%s.%N); "$@"; end=$(date +%s.%N); echo "$end - $start" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

raw_create() {
  rm -rf "$work/raw" && mkdir -p "$work/raw" && cd "$work/raw"
  superuser "$bin/pg_dump" -Fp --no-owner -d app | tee dump.sql | sha256sum >/dev/null
  ln -s "$work/filestore" filestore
  zip -q -r archive.zip dump.sql filestore/
  upload archive.zip
  cd - >/dev/null
}
pgfleet_create() { "$pgfleet" backup create -f "$work/pgfleet.yaml" --env app >"$work/create.out" 2>&1; }
raw_restore() {
  superuser psql -X -q -d postgres -c "DROP DATABASE IF EXISTS raw_restore" -c "CREATE DATABASE raw_restore OWNER app"
  superuser psql -X -q -v ON_ERROR_STOP=1 -d raw_restore < "$work/raw/dump.sql" >/dev/null
  rm -rf "$work/raw-filestore" && cp -a "$work/filestore" "$work/raw-filestore"
}
pgfleet_restore() {
  "$pgfleet" backup restore -f "$work/pgfleet.yaml" --env app "$1" --auto-approve >"$work/restore.out" 2>&1
}
drop_previous() { # so that each round restores beside one database
  grep -o 'Downtime (pooler paused): [0-9]* ms' "$work/restore.out" | grep -o '[0-9]*' >> "$work/downtime"
  for db in $(superuser psql -X -At -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'app_pre_%'"); do
    superuser psql -X -q -d postgres -c "DROP DATABASE \"$db\""
  done
  rm -rf "$work"/filestore_pre_*
}

: > "$work/create.raw"; : > "$work/create.pgfleet"; : > "$work/restore.raw"; : > "$work/restore.pgfleet"; : > "$work/downtime"
for round in $(seq 1 "$rounds"); do
  echo "create round $round/$rounds ..." >&2
  seconds raw_create >> "$work/create.raw"
  seconds pgfleet_create >> "$work/create.pgfleet"
done
id=$("$pgfleet" backup list -f "$work/pgfleet.yaml" --env app --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
archive_bytes=$("$pgfleet" backup list -f "$work/pgfleet.yaml" --env app --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["archive_bytes"])')
for round in $(seq 1 "$rounds"); do
  echo "restore round $round/$rounds ..." >&2
  seconds raw_restore >> "$work/restore.raw"
  seconds pgfleet_restore "$id" >> "$work/restore.pgfleet"
  drop_previous
done

# Peak memory: a backup at this size, then at a fifth of it.
rss() { /usr/bin/time -f %M "$pgfleet" backup create -f "$work/pgfleet.yaml" --env app 2>&1 >/dev/null | tail -n 1; }
rss_large=$(rss)
size_large=$(superuser psql -X -At -d app -c "SELECT pg_size_pretty(pg_database_size('app'))")
small=$((scale / 5)); [ "$small" -ge 1 ] || small=1
superuser "$bin/pgbench" -i -q -s "$small" app >/dev/null 2>&1
rss_small=$(rss)
size_small=$(superuser psql -X -At -d app -c "SELECT pg_size_pretty(pg_database_size('app'))")

cr=$(median < "$work/create.raw"); cp_=$(median < "$work/create.pgfleet")
rr=$(median < "$work/restore.raw"); rp=$(median < "$work/restore.pgfleet")
dt=$(median < "$work/downtime")
echo
echo "storage: $storage; pgbench scale $scale; $files filestore files; archive $((archive_bytes / 1000000)) MB; $rounds rounds, medians"
echo
printf '| %-8s | %-12s | %-12s | %-6s |\n' "step" "raw (s)" "pgfleet (s)" "ratio"
printf '|----------|--------------|--------------|--------|\n'
printf '| %-8s | %12.1f | %12.1f | %6.2f |\n' create "$cr" "$cp_" "$(echo "$cp_ / $cr" | bc -l)"
printf '| %-8s | %12.1f | %12.1f | %6.2f |\n' restore "$rr" "$rp" "$(echo "$rp / $rr" | bc -l)"
echo
echo "restore downtime (PAUSE to RESUME), median: $dt ms"
echo "pgfleet peak RSS during backup create: $((rss_large / 1024)) MB at $size_large, $((rss_small / 1024)) MB at $size_small"
