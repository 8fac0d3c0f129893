#!/usr/bin/env bash
# Compares two raftkv builds with `raftkv bench` in interleaved rounds on the same machine:
# put and linearizable range with 64 clients over 8 connections, each on a fresh 3-member
# cluster on loopback. Prints one line per round and workload (the bench's JSON summary).
#
#   scripts/before-after.sh OLD_BINARY NEW_BINARY [ROUNDS] [TOTAL]
#
# Only the processes this script starts are stopped (by pid); ports are picked at random
# from a high range; data lives in a temporary directory removed at the end.
set -euo pipefail
old_binary=${1:?usage: before-after.sh OLD_BINARY NEW_BINARY [ROUNDS] [TOTAL]}
new_binary=${2:?usage: before-after.sh OLD_BINARY NEW_BINARY [ROUNDS] [TOTAL]}
rounds=${3:-2}
total=${4:-20000}
work=$(mktemp -d)
pids=()
stop_cluster() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_cluster; rm -rf "$work"' EXIT

# start_cluster BINARY DIRECTORY BASE_PORT: three members on BASE_PORT..BASE_PORT+5.
start_cluster() {
  local binary=$1 directory=$2 base=$3 cluster="" member
  for member in 0 1 2; do
    cluster+="${cluster:+,}m$member=http://127.0.0.1:$((base + 2 * member + 1))"
  done
  for member in 0 1 2; do
    "$binary" serve --name "m$member" --data-dir "$directory/m$member" \
      --listen-client-urls "http://127.0.0.1:$((base + 2 * member))" \
      --advertise-client-urls "http://127.0.0.1:$((base + 2 * member))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 2 * member + 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((base + 2 * member + 1))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      >"$directory/m$member.log" 2>&1 &
    pids+=($!)
  done
  endpoints="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
  for _ in $(seq 100); do
    if ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=2s put ready yes >/dev/null 2>&1; then return; fi
    sleep 0.2
  done
  echo "before-after.sh: the cluster of $binary did not start; logs in $directory" >&2
  exit 1
}

for round in $(seq "$rounds"); do
  for build in old new; do
    binary=$old_binary
    [ "$build" = new ] && binary=$new_binary
    for workload in put range; do
      base=$((20000 + RANDOM % 30000))
      directory="$work/$build-$round-$workload"
      mkdir -p "$directory"
      start_cluster "$binary" "$directory" "$base"
      summary=$("$new_binary" bench --endpoints "$endpoints" --clients 64 --conns 8 --total "$total" \
        --workload "$workload" --warmup-seconds 1 --json)
      echo "round $round $build $workload $summary"
      stop_cluster
    done
  done
done
