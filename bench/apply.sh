#!/usr/bin/env bash
# Measures how long `pgfleet apply` takes to bring a new replica of a ~1 GB
# primary (pgbench scale 70) to `streaming`, against the raw path on the
# same data in the same run: pg_basebackup -X stream -R -S SLOT, pg_ctl
# start, and waiting for pg_stat_replication to say streaming.
#
#   bench/apply.sh              # scale 70, 3 rounds
#   SCALE=10 ROUNDS=5 bench/apply.sh
#
# Run as root with PostgreSQL 15 installed (scripts/install-deps.sh). Uses a
# temporary directory and the loopback addresses 127.78.0.1-3 only.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-70}
rounds=${ROUNDS:-3}
bin=/usr/lib/postgresql/15/bin
cargo build --release --quiet
pgfleet=$PWD/target/release/pgfleet

work=$(mktemp -d /tmp/pgfleet-bench-apply.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
cleanup() {
  for dir in "$work"/primary "$work"/r1 "$work"/raw; do
    [ -f "$dir/PG_VERSION" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

config() { # with_replica
  cat <<YAML
version: 1
state: { path: $work/state.json }
hosts:
  here: { transport: local }
environments:
  - id: bench
    primary: { host: here, address: 127.78.0.1, port: 5432, data_dir: $work/primary, tuning: none, settings: { shared_buffers: 128MB, max_wal_size: 4GB } }
YAML
  if [ "$1" = yes ]; then
    echo "    replicas:"
    echo "      - { name: r1, host: here, address: 127.78.0.2, port: 5432, data_dir: $work/r1 }"
  fi
}

milliseconds() { date +%s%N | cut -c1-13; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

config no > "$work/pgfleet.yaml"
"$pgfleet" apply -f "$work/pgfleet.yaml" --auto-approve >/dev/null
export PGPASSWORD; PGPASSWORD=$(cat "$work/primary.pgfleet/superuser.password")
psql() { command psql -X -q -At -h 127.78.0.1 -p 5432 -U postgres "$@"; }
echo "loading pgbench scale $scale ..." >&2
"$bin/pgbench" -q -i -s "$scale" -h 127.78.0.1 -p 5432 -U postgres postgres >/dev/null 2>&1
echo "primary: $(psql -c "select pg_size_pretty(pg_database_size('postgres'))")" >&2
psql -c checkpoint

pgfleet_round() {
  config yes > "$work/pgfleet.yaml"
  local start; start=$(milliseconds)
  "$pgfleet" apply -f "$work/pgfleet.yaml" --auto-approve >/dev/null
  echo $(( $(milliseconds) - start ))
  config no > "$work/pgfleet.yaml"
  "$pgfleet" apply -f "$work/pgfleet.yaml" --auto-approve >/dev/null   # removes r1 and its slot
}

raw_round() {
  psql -c "select pg_create_physical_replication_slot('raw', true)" >/dev/null
  local start; start=$(milliseconds)
  runuser -u postgres -- env PGPASSWORD="$PGPASSWORD" "$bin/pg_basebackup" -h 127.78.0.1 -p 5432 -U postgres \
    -D "$work/raw" -X stream -R -S raw --checkpoint=fast
  runuser -u postgres -- sh -c "echo \"listen_addresses = '127.78.0.3'\" >> '$work/raw/postgresql.auto.conf'; \
    echo \"unix_socket_directories = '$work'\" >> '$work/raw/postgresql.auto.conf'; \
    echo \"primary_conninfo = 'host=127.78.0.1 port=5432 user=postgres password=$PGPASSWORD application_name=raw'\" >> '$work/raw/postgresql.auto.conf'"
  runuser -u postgres -- "$bin/pg_ctl" -D "$work/raw" -l "$work/raw.log" -w start >/dev/null
  until [ "$(psql -c "select count(*) from pg_stat_replication where application_name = 'raw' and state = 'streaming'")" = 1 ]; do
    sleep 0.05
  done
  echo $(( $(milliseconds) - start ))
  runuser -u postgres -- "$bin/pg_ctl" -D "$work/raw" stop -m immediate >/dev/null
  rm -rf "$work/raw"
  psql -c "select pg_drop_replication_slot('raw')" >/dev/null
}

: > "$work/pgfleet.ms"; : > "$work/raw.ms"
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds ..." >&2
  raw_round >> "$work/raw.ms"
  pgfleet_round >> "$work/pgfleet.ms"
done
p=$(median < "$work/pgfleet.ms"); r=$(median < "$work/raw.ms")
printf 'replica of a scale-%s primary to streaming (median of %s):\n' "$scale" "$rounds"
printf '  pgfleet apply: %6s ms   (%s)\n' "$p" "$(tr '\n' ' ' < "$work/pgfleet.ms")"
printf '  raw path:      %6s ms   (%s)\n' "$r" "$(tr '\n' ' ' < "$work/raw.ms")"
printf '  ratio:         %s\n' "$(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.2fx", a / b }')"
