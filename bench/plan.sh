#!/usr/bin/env bash
# Measures `pgfleet plan` against N environments (a running primary and a
# running streaming replica each, every cluster on its own loopback host
# with a private sshd) and, in the same run, the raw round trips it stands
# for: `ssh host true` to every host plus one `psql -c` of the cluster probe
# per cluster, all in parallel. Reports medians and ratios.
#
#   bench/plan.sh            # N = 1 5 20
#   bench/plan.sh 1 5        # other sizes
#   RUNS=9 bench/plan.sh     # more repetitions (default 5)
#
# Run as root on a machine with PostgreSQL 15, sshd and the OpenSSH client
# (scripts/install-deps.sh). Touches nothing outside its temporary directory
# and the loopback addresses 127.77.0.0/16.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(1 5 20)
runs=${RUNS:-5}
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done

bin=/usr/lib/postgresql/15/bin
cargo build --release --quiet
pgfleet=$PWD/target/release/pgfleet

work=$(mktemp -d /tmp/pgfleet-bench-plan.XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
pids=()
datadirs=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for dir in "${datadirs[@]}"; do runuser -u postgres -- "$bin/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

as_pg() { runuser -u postgres -- "$@"; }

ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"; chmod 644 "$work/authorized_keys"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
mkdir -p /run/sshd
: > "$work/known_hosts"

start_host() { # address
  local address=$1
  cat > "$work/sshd-$address.conf" <<CONF
ListenAddress $address:2222
HostKey $work/host_key
PidFile $work/sshd-$address.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM yes
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers postgres
MaxStartups 200
LogLevel ERROR
CONF
  /usr/sbin/sshd -D -f "$work/sshd-$address.conf" & pids+=($!)
  echo "[$address]:2222 $(cat "$work/host_key.pub")" >> "$work/known_hosts"
}

echo "setting up $max environment(s): $((2 * max)) hosts, $((2 * max)) clusters ..." >&2
as_pg "$bin/initdb" -A trust -U postgres -D "$work/template" >/dev/null
for i in $(seq 1 "$max"); do
  primary=127.77.$i.1 replica=127.77.$i.2
  start_host "$primary"; start_host "$replica"
  p=$work/e$i-primary r=$work/e$i-replica
  as_pg cp -a "$work/template" "$p"
  as_pg mkdir -p "$p.pgfleet" "$r.pgfleet"
  as_pg sh -c "cat >> '$p/postgresql.conf'" <<CONF
listen_addresses = '$primary'
port = 5432
unix_socket_directories = '$p.pgfleet'
shared_buffers = 16MB
CONF
  as_pg "$bin/pg_ctl" -D "$p" -l "$p.log" -w start >/dev/null; datadirs+=("$p")
  as_pg "$bin/pg_basebackup" -h "$primary" -p 5432 -U postgres -D "$r" -X stream -R >/dev/null
  as_pg sh -c "cat >> '$r/postgresql.conf'" <<CONF
listen_addresses = '$replica'
unix_socket_directories = '$r.pgfleet'
CONF
  as_pg "$bin/pg_ctl" -D "$r" -l "$r.log" -w start >/dev/null; datadirs+=("$r")
done

config() { # N
  local n=$1
  echo "version: 1"
  echo "hosts:"
  for i in $(seq 1 "$n"); do
    for role in primary replica; do
      local octet=1; [ $role = replica ] && octet=2
      echo "  e$i-$role: { address: 127.77.$i.$octet, ssh: { user: postgres, port: 2222, identity_file: $work/client_key, known_hosts: $work/known_hosts } }"
    done
  done
  echo "environments:"
  for i in $(seq 1 "$n"); do
    echo "  - id: e$i"
    echo "    primary: { host: e$i-primary, address: 127.77.$i.1, data_dir: $work/e$i-primary, tuning: none }"
    echo "    replicas:"
    echo "      - { name: r1, host: e$i-replica, address: 127.77.$i.2, data_dir: $work/e$i-replica, connect: ssh_tunnel }"
  done
}

# The probe as pgfleet sends it, with its parameter inlined for psql.
probe=$(sed -n '/^pub const CLUSTER_PROBE: &str = r#"/,/^"#;/p' src/observe/cluster.rs | sed '1d;$d' \
  | sed "s/\$1::text\[\]/array['port','listen_addresses','wal_level','max_wal_senders','max_replication_slots','max_slot_wal_keep_size','hot_standby','hot_standby_feedback','primary_conninfo','primary_slot_name','password_encryption','lc_collate','unix_socket_directories','max_connections']/")

raw() { # N
  local n=$1
  for i in $(seq 1 "$n"); do
    for octet in 1 2; do
      ssh -q -i "$work/client_key" -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes -p 2222 postgres@127.77.$i.$octet true &
      as_pg "$bin/psql" -X -q -At -h 127.77.$i.$octet -p 5432 -U postgres -d postgres -c "$probe" >/dev/null &
    done
  done
  wait
}

milliseconds() { date +%s%N | cut -c1-13; }

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

time_runs() { # command...
  for _ in $(seq 1 "$runs"); do
    local start; start=$(milliseconds)
    "$@" >/dev/null 2>&1 || true
    echo $(( $(milliseconds) - start ))
  done | median
}

printf '%-6s %12s %12s %8s %16s\n' envs "plan (ms)" "raw (ms)" ratio "pgfleet CPU (ms)"
declare -A plan_ms
for n in "${sizes[@]}"; do
  config "$n" > "$work/bench-$n.yaml"
  "$pgfleet" plan -f "$work/bench-$n.yaml" >/dev/null 2>&1 || {
    "$pgfleet" plan -f "$work/bench-$n.yaml" >&2 || true; echo "plan failed for $n environments" >&2; exit 1; }
  p=$(time_runs "$pgfleet" plan -f "$work/bench-$n.yaml")
  r=$(time_runs raw "$n")
  plan_ms[$n]=$p
  # pgfleet's own CPU time: the rest of the wall time is the hosts' (sshd,
  # shells, PostgreSQL backends) and the network.
  /usr/bin/time -o "$work/cpu" -f '%U %S' "$pgfleet" plan -f "$work/bench-$n.yaml" >/dev/null 2>&1 || true
  cpu=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$work/cpu")
  printf '%-6s %12s %12s %8s %16s\n' "$n" "$p" "$r" "$(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.2fx", a / b }')" "$cpu"
done
if [ -n "${plan_ms[1]:-}" ] && [ -n "${plan_ms[20]:-}" ]; then
  echo "20 environments / 1 environment: $(awk -v a="${plan_ms[20]}" -v b="${plan_ms[1]}" 'BEGIN { printf "%.2fx", a / b }')"
fi
