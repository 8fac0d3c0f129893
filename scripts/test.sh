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
command -v curl >/dev/null 2>&1 || need_packages+=(curl)  # tests/gateway.rs drives the JSON gateway with curl
command -v ip >/dev/null 2>&1 || need_packages+=(iproute2)  # tests/multihost.rs: hosts as network namespaces
command -v kubectl >/dev/null 2>&1 || need_packages+=(kubernetes-client)  # tests/deploy.rs reads deploy/kubernetes/
command -v podman >/dev/null 2>&1 || need_packages+=(podman)  # tests/deploy.rs builds deploy/Containerfile
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    # The etcd-server package would start a system etcd on :2379. Tests pick their own
    # ports and never need it: while installing, a policy-rc.d (unless one exists) tells
    # the package scripts not to start services; running services are left alone.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=yes
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
    if [ -n "$created_policy" ]; then rm -f "$policy"; trap - EXIT; fi
  else
    echo "test.sh: please install: ${need_packages[*]} (apt-get install ${need_packages[*]})" >&2
    exit 1
  fi
fi
# Nothing here stops or kills what it did not start: a system etcd on :2379 may keep
# running (tests pick their own ports; `raftkv up` falls back to other ports).

# Process-level tests start the real binary: build it first so no test waits on cargo's lock.
cargo build --release --bin raftkv
cargo test --workspace --release "$@"
