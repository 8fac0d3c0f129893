#!/usr/bin/env bash
# Issue 18's memory case, for a 3-node etcd and a 3-node raftkv on loopback, rounds interleaved
# (etcd, raftkv, etcd, raftkv, ...), each on a fresh cluster with data on disk:
#   1. load KEYS keys of VALUE_BYTES each (raftkv bench's preload: txns of 64 puts, 16 in flight);
#   2. peak RSS per node (VmHWM from /proc/<pid>/status) relative to the data size
#      (KEYS x (8-byte key + value));
#   3. stop every node (SIGTERM, wait), start all three again on the same data, and time from
#      the start to the first successful linearizable read (etcdctl get --consistency=l) at any node.
# Usage: scripts/memory-restart.sh [ROUNDS]      (default 2)
# Environment: KEYS (400000), VALUE_BYTES (1024), RAFTKV (target/release/raftkv), ETCD (/usr/bin/etcd),
#   ETCDCTL (/usr/bin/etcdctl), BASE_PORT (27170; etcd uses +0..+2 and +10..+12, raftkv +100..),
#   WORK (a new directory under ${CARGO_TARGET_DIR:-target}; must be on disk), SYSTEMS ("etcd raftkv").
# Prints one `memory-restart:` line per system per round. Asserts no time.
set -euo pipefail
rounds=${1:-2}
keys=${KEYS:-400000}
value_bytes=${VALUE_BYTES:-1024}
raftkv=${RAFTKV:-target/release/raftkv}
etcd=${ETCD:-/usr/bin/etcd}
etcdctl=${ETCDCTL:-/usr/bin/etcdctl}
base_port=${BASE_PORT:-27170}
work=${WORK:-$(mktemp -d "${CARGO_TARGET_DIR:-target}/memory-restart-XXXXXX")}
pids=()

stop_nodes() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_nodes EXIT

# start_nodes SYSTEM DIRECTORY CLIENT_PORT PEER_PORT: three nodes with etcd's flags.
start_nodes() {
  local system=$1 directory=$2 client_port=$3 peer_port=$4 cluster="" index
  for index in 0 1 2; do cluster+="n$((index + 1))=http://127.0.0.1:$((peer_port + index)),"; done
  for index in 0 1 2; do
    local program=("$etcd")
    [ "$system" = raftkv ] && program=("$raftkv" serve)
    "${program[@]}" --name "n$((index + 1))" --data-dir "$directory/n$((index + 1)).data" \
      --listen-client-urls "http://127.0.0.1:$((client_port + index))" \
      --advertise-client-urls "http://127.0.0.1:$((client_port + index))" \
      --listen-peer-urls "http://127.0.0.1:$((peer_port + index))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((peer_port + index))" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new \
      >>"$directory/n$((index + 1)).log" 2>&1 &
    pids+=("$!")
  done
}

# wait_linearizable CLIENT_PORT: returns once a linearizable get succeeds at one of the nodes.
wait_linearizable() {
  local client_port=$1 index
  while true; do
    for index in 0 1 2; do
      if "$etcdctl" --endpoints="127.0.0.1:$((client_port + index))" --dial-timeout=1s --command-timeout=1s \
        get memory-restart-probe --consistency=l >/dev/null 2>&1; then
        return 0
      fi
    done
    sleep 0.02
  done
}

peak_rss_mib() {
  local pid out=""
  for pid in "${pids[@]}"; do
    out+="$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")/"
  done
  echo "${out%/}"
}

measure() {
  local system=$1 round=$2 client_port=$3 peer_port=$4
  local directory="$work/round-$round-$system" endpoints
  mkdir -p "$directory"
  endpoints="127.0.0.1:$client_port,127.0.0.1:$((client_port + 1)),127.0.0.1:$((client_port + 2))"
  start_nodes "$system" "$directory" "$client_port" "$peer_port"
  wait_linearizable "$client_port"
  local load_start load_end
  load_start=$(date +%s.%N)
  "$raftkv" bench --endpoints "$endpoints" --clients 1 --conns 1 --workload range --preload "$keys" \
    --key-space "$keys" --value-size "$value_bytes" --total 1 >/dev/null
  load_end=$(date +%s.%N)
  sleep 2
  local rss
  rss=$(peak_rss_mib)
  stop_nodes
  local restart_start restart_end
  restart_start=$(date +%s.%N)
  start_nodes "$system" "$directory" "$client_port" "$peer_port"
  wait_linearizable "$client_port"
  restart_end=$(date +%s.%N)
  stop_nodes
  local data_mib
  data_mib=$(awk -v k="$keys" -v v="$value_bytes" 'BEGIN {printf "%.1f", k * (8 + v) / 1048576}')
  echo "memory-restart: system=$system round=$round keys=$keys value_bytes=$value_bytes data_mib=$data_mib" \
    "load_seconds=$(awk -v a="$load_start" -v b="$load_end" 'BEGIN {printf "%.1f", b - a}')" \
    "peak_rss_mib_per_node=$rss" \
    "peak_rss_to_data=$(echo "$rss" | awk -F/ -v d="$data_mib" '{printf "%.2f/%.2f/%.2f", $1 / d, $2 / d, $3 / d}')" \
    "restart_to_first_linearizable_read_seconds=$(awk -v a="$restart_start" -v b="$restart_end" 'BEGIN {printf "%.2f", b - a}')"
  [ -n "${KEEP:-}" ] || rm -rf "$directory"
}

echo "memory-restart: data under $work" >&2
for round in $(seq 1 "$rounds"); do
  for system in ${SYSTEMS:-etcd raftkv}; do
    case $system in
      etcd) measure etcd "$round" "$base_port" "$((base_port + 10))" ;;
      raftkv) measure raftkv "$round" "$((base_port + 100))" "$((base_port + 110))" ;;
      *) echo "unknown system $system" >&2; exit 2 ;;
    esac
  done
done
