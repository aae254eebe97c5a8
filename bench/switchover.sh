#!/usr/bin/env bash
# The write window of a switchover under load: pgbench (4 clients, each
# numbering its inserts) runs through the primary's PgBouncer across
# `pgfleet switchover`, and across the minimal hand-scripted sequence run
# by this script on a second, identical environment in the same run
# (CHECKPOINT, PAUSE, fast stop, wait for the candidate's catch-up,
# pg_promote, repoint [databases], RELOAD, RESUME). The window is the
# longest gap between two commits the clients saw; every round also counts
# failed transactions and lost commits (rows the clients saw committed and
# the new primary lacks). Then a failover of each kind: pgfleet failover
# after `pg_ctl stop -m immediate`, against the crude way (immediate stop,
# promote, repoint), timed from the stop to the first write through the
# pooler.
#
#   bench/switchover.sh             # 5 rounds each way
#   ROUNDS=7 bench/switchover.sh
#
# Run as root with PostgreSQL 15 and PgBouncer installed
# (scripts/install-deps.sh). Uses a temporary directory and the loopback
# addresses 127.79.0.1-4 only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
bin=/usr/lib/postgresql/15/bin
cargo build --release --quiet
pgfleet=$PWD/target/release/pgfleet
export PGFLEET_REPLICATION_PASSWORD=bench-replication-Hx7q
work=$(mktemp -d /tmp/pgfleet-bench-switchover.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
cleanup() {
  for dir in "$work"/*/; do
    [ -f "$dir/PG_VERSION" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true
  done
  for pid in "$work"/*.pgfleet/pgbouncer-*.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

config() { # env a0 a1 pooler_port
  cat <<YAML
version: 1
state: { path: $work/$1.state.json }
hosts:
  here: { transport: local }
environments:
  - id: $1
    primary: { name: main, host: here, address: $2, port: 5432, data_dir: $work/$1-main, tuning: none }
    database: { name: app, owner: app, password: { generate: true } }
    replication: { user: replicator, password: { env: PGFLEET_REPLICATION_PASSWORD } }
    pgbouncer: { pool_size: 8, pool_mode: transaction, port: $4, replica_port: 6433 }
    replicas:
      - { name: r1, host: here, address: $3, port: 5432, data_dir: $work/$1-r1 }
YAML
}
config pgfleet 127.79.0.1 127.79.0.2 6432 > "$work/pgfleet.yaml"
config raw 127.79.0.3 127.79.0.4 6434 > "$work/raw.yaml"
echo "building both environments ..." >&2
"$pgfleet" apply -f "$work/pgfleet.yaml" --auto-approve >/dev/null
"$pgfleet" apply -f "$work/raw.yaml" --auto-approve >/dev/null

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now_ms() { date +%s%N | cut -c1-13; }
superuser() { cat "$work/$1-main.pgfleet/superuser.password"; }
sql() { # env address sql
  PGPASSWORD=$(superuser "$1") command psql -X -q -At -h "$2" -p 5432 -U postgres -d app -c "$3"
}
console() { # env pooler_address pooler_port sql
  PGPASSWORD=$(superuser "$1") command psql -X -q -At -h "$2" -p "$3" -U postgres -d pgbouncer -c "$4"
}
app_password() { cat "$work/$1-main.pgfleet/role-app.password"; }
for env in pgfleet raw; do
  address=127.79.0.1; [ $env = raw ] && address=127.79.0.3
  sql $env $address "CREATE TABLE IF NOT EXISTS ledger (client int, n bigint, round int, PRIMARY KEY (round, client, n)); ALTER TABLE ledger OWNER TO app"
done
script=$work/ledger.sql
printf '\\set n :n + 1\nINSERT INTO ledger VALUES (:client_id, :n, :round);\n' > "$script"

# Runs pgbench for $2 s through pooler $1 (address:port) with per-
# transaction logs in $work/log.*; prints "processed aborted".
load() { # env pooler seconds
  rm -f "$work"/log.*
  local host=${2%:*} port=${2#*:} out
  local run_id; run_id=$(date +%s%N | cut -c10-18)   # unique per run: the inserts' keys
  out=$(cd "$work" && PGPASSWORD=$(app_password "$1") "$bin/pgbench" -n -c 4 -j 2 -T "$3" -D n=0 -D round="$run_id" -f "$script" \
    -l --log-prefix="$work/log" -h "$host" -p "$port" -U app app 2>&1 || true)
  local processed aborted
  processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  aborted=$(grep -c 'client [0-9]* .*aborted' <<<"$out" || true)
  [ "${processed:-0}" -gt 0 ] || echo "pgbench: $out" >&2
  echo "${processed:-0} ${aborted:-0}"
}
# The longest gap between two successive commits across all clients, ms.
window() { cat "$work"/log.* | awk '{ printf "%.0f\n", $5 * 1000000 + $6 }' | sort -n |
  awk 'NR > 1 && $1 - prev > max { max = $1 - prev } { prev = $1 } END { printf "%d\n", max / 1000 }'; }

# One switchover under load: prints "window_ms failed lost".
measure() { # env pooler primary_address switch_command...
  local env=$1 pooler=$2 before; shift 2
  before=$(sql "$env" "$1" "SELECT count(*) FROM ledger"); shift
  load "$env" "$pooler" 8 > "$work/load.out" &
  local loader=$!
  sleep 2.5
  "$@" >/dev/null 2>"$work/switch.err" || { cat "$work/switch.err" >&2; exit 1; }
  wait "$loader"
  read -r processed aborted < "$work/load.out"
  echo "$(window) $aborted $processed $before"
}

# The hand-scripted sequence: from $from to $to (addresses) on env raw.
hand_switchover() { # from to
  local from=$1 to=$2 ini checkpoint
  local data_from data_to
  data_from=$work/raw-main; data_to=$work/raw-r1
  if [ "$from" = 127.79.0.4 ]; then data_from=$work/raw-r1; data_to=$work/raw-main; fi
  ini=$(ls "$work"/raw-main.pgfleet/pgbouncer-6434.ini)
  sql raw "$from" "CHECKPOINT" >/dev/null
  console raw 127.79.0.3 6434 "PAUSE app" >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$data_from" stop -m fast -w >/dev/null
  checkpoint=$(LC_ALL=C "$bin/pg_controldata" -D "$data_from" | sed -n 's/^Latest checkpoint location: *//p')
  until [ "$(sql raw "$to" "SELECT pg_last_wal_replay_lsn() > '$checkpoint'::pg_lsn")" = t ]; do sleep 0.01; done
  sql raw "$to" "SELECT pg_promote(true, 60)" >/dev/null
  sed -i "s/host=$from /host=$to /g" "$ini"
  console raw 127.79.0.3 6434 "RELOAD" >/dev/null
  console raw 127.79.0.3 6434 "RESUME app" >/dev/null
  # Not timed: the old primary rejoins as a standby of the new one.
  runuser -u postgres -- sh -c "touch '$data_from/standby.signal'; \
    echo \"primary_conninfo = 'host=$to port=5432 user=replicator password=$PGFLEET_REPLICATION_PASSWORD application_name=old'\" >> '$data_from/postgresql.auto.conf'; \
    echo \"primary_slot_name = ''\" >> '$data_from/postgresql.auto.conf'"
  runuser -u postgres -- "$bin/pg_ctl" -D "$data_from" -l "$data_from.log" -w start >/dev/null
}

printf 'round  pgfleet_window_ms  hand_window_ms  pgfleet_failed  hand_failed  pgfleet_lost  hand_lost\n' >&2
: > "$work/results"
members=(main r1); addresses_pgfleet=(127.79.0.1 127.79.0.2); addresses_raw=(127.79.0.3 127.79.0.4)
for round in $(seq 1 "$rounds"); do
  from=$(( (round + 1) % 2 )); to=$(( round % 2 ))
  read -r pw pf pp pb < <(measure pgfleet 127.79.0.1:6432 "${addresses_pgfleet[$from]}" \
    "$pgfleet" switchover -f "$work/pgfleet.yaml" --env pgfleet --to "${members[$to]}" --auto-approve)
  prows=$(sql pgfleet "${addresses_pgfleet[$to]}" "SELECT count(*) FROM ledger")
  plost=$(( pb + pp - prows ))
  read -r hw hf hp hb < <(measure raw 127.79.0.3:6434 "${addresses_raw[$from]}" \
    hand_switchover "${addresses_raw[$from]}" "${addresses_raw[$to]}")
  hrows=$(sql raw "${addresses_raw[$to]}" "SELECT count(*) FROM ledger")
  hlost=$(( hb + hp - hrows ))
  printf '%5d  %17d  %14d  %14d  %11d  %12d  %9d\n' "$round" "$pw" "$hw" "$pf" "$hf" "$plost" "$hlost" >&2
  echo "$pw $hw $pf $hf $plost $hlost" >> "$work/results"
done
pgfleet_median=$(awk '{ print $1 }' "$work/results" | median)
hand_median=$(awk '{ print $2 }' "$work/results" | median)
failed=$(awk '{ s += $3 } END { print s }' "$work/results")
lost=$(awk '{ s += $5 } END { print s }' "$work/results")
echo
echo "| switchover write window (median of $rounds) | pgfleet | hand-scripted | ratio |"
echo "|---|---|---|---|"
awk -v p="$pgfleet_median" -v h="$hand_median" 'BEGIN { printf "| longest gap between commits | %d ms | %d ms | %.2f |\n", p, h, (h > 0 ? p / h : 0) }'
echo "| failed transactions (all rounds) | $failed | $(awk '{ s += $4 } END { print s }' "$work/results") | |"
echo "| lost commits (all rounds) | $lost | $(awk '{ s += $6 } END { print s }' "$work/results") | |"

# Failover: from an immediate stop of the primary to the first write that
# succeeds through the pooler, with pgbench's clients running.
first_write() { # env pooler_address pooler_port since_ms
  local n=0
  until PGPASSWORD=$(app_password "$1") command psql -X -q -At -h "$2" -p "$3" -U app -d app \
      -c "INSERT INTO ledger VALUES (-1, $((n += 1)), 0)" >/dev/null 2>&1; do
    sleep 0.01
  done
  echo $(( $(now_ms) - $4 ))
}
crude_failover() { # from to data_from
  sql raw "$2" "SELECT pg_promote(true, 60)" >/dev/null
  local ini; ini=$(ls "$work"/raw-main.pgfleet/pgbouncer-6434.ini)
  sed -i "s/host=$1 /host=$2 /g" "$ini"
  console raw 127.79.0.3 6434 "RELOAD" >/dev/null
}
crude_rebuild() { # data_from to
  # Where it listens is its own, not the new primary's the copy brings.
  grep -E "^(listen_addresses|unix_socket_directories)" "$1/postgresql.auto.conf" > "$work/own.conf"
  rm -rf "$1"
  runuser -u postgres -- env PGPASSWORD="$PGFLEET_REPLICATION_PASSWORD" "$bin/pg_basebackup" -h "$2" -p 5432 \
    -U replicator -D "$1" -X stream -R --checkpoint=fast >/dev/null
  cat "$work/own.conf" >> "$1/postgresql.auto.conf"
  runuser -u postgres -- "$bin/pg_ctl" -D "$1" -l "$1.log" -w start >/dev/null
}
failover_rounds=${FAILOVER_ROUNDS:-3}
printf '\nround  pgfleet_first_write_ms  crude_first_write_ms  pgfleet_failed  crude_failed\n' >&2
: > "$work/failovers"
data_pgfleet=("$work/pgfleet-main" "$work/pgfleet-r1"); data_raw=("$work/raw-main" "$work/raw-r1")
# The switchover rounds left the role on member $last.
last=$(( rounds % 2 ))
for round in $(seq 1 "$failover_rounds"); do
  from=$last; to=$(( (last + 1) % 2 ))
  load pgfleet 127.79.0.1:6432 8 > "$work/load.out" &
  loader=$!
  sleep 2.5
  start=$(now_ms)
  runuser -u postgres -- "$bin/pg_ctl" -D "${data_pgfleet[$from]}" stop -m immediate >/dev/null
  "$pgfleet" failover -f "$work/pgfleet.yaml" --env pgfleet --auto-approve >/dev/null 2>"$work/failover.err" &
  failing=$!
  pfirst=$(first_write pgfleet 127.79.0.1 6432 "$start")
  wait "$failing" || { cat "$work/failover.err" >&2; exit 1; }
  wait "$loader"; read -r _ pfailed < "$work/load.out"

  load raw 127.79.0.3:6434 8 > "$work/load.out" &
  loader=$!
  sleep 2.5
  start=$(now_ms)
  runuser -u postgres -- "$bin/pg_ctl" -D "${data_raw[$from]}" stop -m immediate >/dev/null
  crude_failover "${addresses_raw[$from]}" "${addresses_raw[$to]}" &
  crude=$!
  cfirst=$(first_write raw 127.79.0.3 6434 "$start")
  wait "$crude"; wait "$loader"; read -r _ cfailed < "$work/load.out"
  crude_rebuild "${data_raw[$from]}" "${addresses_raw[$to]}"
  printf '%5d  %22d  %20d  %14d  %12d\n' "$round" "$pfirst" "$cfirst" "$pfailed" "$cfailed" >&2
  echo "$pfirst $cfirst $pfailed $cfailed" >> "$work/failovers"
  last=$to
done
echo
echo "| failover (median of $failover_rounds) | pgfleet failover | crude (stop, promote, repoint) |"
echo "|---|---|---|"
echo "| immediate stop to first write through the pooler | $(awk '{ print $1 }' "$work/failovers" | median) ms | $(awk '{ print $2 }' "$work/failovers" | median) ms |"
echo "| failed client transactions (all rounds) | $(awk '{ s += $3 } END { print s }' "$work/failovers") | $(awk '{ s += $4 } END { print s }' "$work/failovers") |"
