#!/usr/bin/env bash
# `pgfleet plan` at fleet scale: 10, 100 and 1 000 environments in one file
# (each a primary, two replicas and poolers), 20 environments per host as
# hosters share machines, every host a real private sshd on loopback. The
# hosts hold nothing yet, so the plan creates everything: observation is one
# facts command per host over SSH, and what grows with the fleet is
# pgfleet's own work (resolve, inventory, graph, planning, rendering).
# Reports per size, medians of RUNS rounds: wall time, pgfleet's CPU time,
# peak RSS, the most SSH sessions open at once (sampled), plan JSON size,
# and the growth factor from 100 to 1 000 environments.
#
#   bench/plan-scale.sh            # 10 100 1000, 3 rounds
#   RUNS=5 bench/plan-scale.sh 10 100
#
# Run as root with sshd and the OpenSSH client (scripts/install-deps.sh).
# Uses a temporary directory and loopback addresses in 127.76-82.0.0/16.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(10 100 1000)
runs=${RUNS:-3}
per_host=20
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
cargo build --locked --quiet
pgfleet=$PWD/target/debug/pgfleet
[ -n "${RELEASE:-}" ] && { cargo build --locked --release --quiet; pgfleet=$PWD/target/release/pgfleet; }

work=$(mktemp -d /tmp/pgfleet-bench-scale.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"; chmod 644 "$work/authorized_keys"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
mkdir -p /run/sshd
: > "$work/known_hosts"
host_address() { echo "127.76.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }
hosts=$(( (max + per_host - 1) / per_host ))
echo "starting $hosts sshd host(s) ..." >&2
for h in $(seq 0 $((hosts - 1))); do
  address=$(host_address "$h")
  cat > "$work/sshd-$h.conf" <<CONF
ListenAddress $address:2222
HostKey $work/host_key
PidFile $work/sshd-$h.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM yes
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers postgres
MaxStartups 500
LogLevel ERROR
CONF
  /usr/sbin/sshd -D -f "$work/sshd-$h.conf" & pids+=($!)
  echo "[$address]:2222 $(cat "$work/host_key.pub")" >> "$work/known_hosts"
done
sleep 1

config() { # N
  local n=$1 used=$(( (n + per_host - 1) / per_host ))
  echo "version: 1"
  echo "organization: { name: hoster, quota: { cpu: 100000, ram_mb: 100000000, disk_gb: 10000000 } }"
  echo "state: { path: $work/state-$n.json }"
  echo "hosts:"
  for h in $(seq 0 $((used - 1))); do
    echo "  h$h: { address: $(host_address "$h"), ssh: { user: postgres, port: 2222, identity_file: $work/client_key, known_hosts: $work/known_hosts } }"
  done
  echo "environments:"
  for i in $(seq 0 $((n - 1))); do
    local h=$(( i / per_host ))
    # Each member listens on a loopback address of its own on its host.
    local a0="127.80.$(( i / 250 )).$(( i % 250 + 1 ))" a1="127.81.$(( i / 250 )).$(( i % 250 + 1 ))" a2="127.82.$(( i / 250 )).$(( i % 250 + 1 ))"
    cat <<ENV
  - id: c$i
    resources: { cpu: 1, ram_mb: 1024, disk_gb: 5 }
    primary: { host: h$h, address: $a0, data_dir: $work/c$i/primary, tuning: none }
    replication: { password: { generate: true } }
    pgbouncer: { pool_mode: transaction }
    replicas:
      - { name: r1, host: h$h, address: $a1, data_dir: $work/c$i/r1 }
      - { name: r2, host: h$h, address: $a2, data_dir: $work/c$i/r2, purpose: dr }
ENV
  done
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
sessions() { pgrep -c -f 'sshd: postgres@' 2>/dev/null || true; }

printf '%-6s %6s %10s %10s %10s %10s %12s\n' envs hosts "wall (ms)" "CPU (ms)" "RSS (MB)" "sessions" "plan JSON" >&2
declare -A cpu_of rss_of
for n in "${sizes[@]}"; do
  config "$n" > "$work/scale-$n.yaml"
  : > "$work/rounds-$n"
  for _ in $(seq 1 "$runs"); do
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$pgfleet" plan -f "$work/scale-$n.yaml" --format json \
      --parallelism "${PARALLELISM:-32}" \
      > "$work/plan-$n.json" 2>"$work/plan.err" &
    planner=$!
    peak=0
    while kill -0 "$planner" 2>/dev/null; do
      now=$(sessions); [ "$now" -gt "$peak" ] && peak=$now
      sleep 0.02
    done
    wait "$planner" || { cat "$work/plan.err" >&2; echo "plan failed for $n environments" >&2; exit 1; }
    read -r wall user system rss < "$work/time"
    echo "$(awk -v w="$wall" 'BEGIN { printf "%d", w * 1000 }') $(awk -v u="$user" -v s="$system" 'BEGIN { printf "%d", (u + s) * 1000 }') $((rss / 1024)) $peak" >> "$work/rounds-$n"
  done
  wall=$(awk '{ print $1 }' "$work/rounds-$n" | median)
  cpu=$(awk '{ print $2 }' "$work/rounds-$n" | median)
  rss=$(awk '{ print $3 }' "$work/rounds-$n" | median)
  peak=$(awk '{ print $4 }' "$work/rounds-$n" | sort -n | tail -1)
  size=$(stat -c %s "$work/plan-$n.json")
  cpu_of[$n]=$cpu; rss_of[$n]=$rss
  printf '%-6s %6s %10s %10s %10s %10s %12s\n' "$n" $(( (n + per_host - 1) / per_host )) "$wall" "$cpu" "$rss" "$peak" "$size" >&2
  echo "| $n | $(( (n + per_host - 1) / per_host )) | $wall ms | $cpu ms | $rss MB | $peak | $size B |" >> "$work/table"
done
echo
echo "| environments | hosts | wall | pgfleet CPU | peak RSS | SSH sessions at once | plan JSON |"
echo "|---|---|---|---|---|---|---|"
cat "$work/table"
if [ -n "${cpu_of[100]:-}" ] && [ -n "${cpu_of[1000]:-}" ]; then
  awk -v a="${cpu_of[1000]}" -v b="${cpu_of[100]}" -v c="${rss_of[1000]}" -v d="${rss_of[100]}" \
    'BEGIN { printf "\n100 -> 1000 environments: CPU x%.1f, peak RSS x%.1f\n", a / b, c / d }'
fi
