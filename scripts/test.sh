#!/usr/bin/env bash
# Runs raftkv's whole test suite on a fresh machine: installs the third-party tools the
# tests drive (Debian's etcdctl and etcd), then runs every workspace test in release mode
# (assertions stay on in release; the simulator runs faster).
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v etcdctl >/dev/null 2>&1 || need_packages+=(etcd-client)
[ -x /usr/bin/etcd ] || need_packages+=(etcd-server)
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
[ -x /usr/bin/chromedriver ] || need_packages+=(chromium-driver)
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
  else
    echo "test.sh: please install: ${need_packages[*]} (apt-get install ${need_packages[*]})" >&2
    exit 1
  fi
fi
# The etcd-server package starts a system etcd on :2379; tests use their own ports, but stop it anyway.
if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd >/dev/null 2>&1 || true; fi
pkill -x etcd >/dev/null 2>&1 || true

# Process-level tests start the real binary: build it first so no test waits on cargo's lock.
cargo build --release --bin raftkv
cargo test --workspace --release "$@"
