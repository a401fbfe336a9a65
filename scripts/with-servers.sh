#!/usr/bin/env bash
# Runs a command with the real servers the integration tests talk to: installs what is missing,
# starts each server of scripts/servers/ (each exports its address as INTAKE_TEST_*), runs the
# command, and stops everything it started, by process id, on exit or failure.
#   scripts/with-servers.sh cargo test -p intake --test blackbox -- serve::
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The servers' data lives in a run directory; one made here is removed at exit.
OWN_RUN_DIR=""
if [ -z "${INTAKE_TEST_RUN_DIR:-}" ]; then
  INTAKE_TEST_RUN_DIR=$(mktemp -d /tmp/intake-test.XXXXXX)
  OWN_RUN_DIR=$INTAKE_TEST_RUN_DIR
fi
export INTAKE_TEST_RUN_DIR
HARNESS_PIDS=()

stop_servers() {
  local pid
  for pid in "${HARNESS_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${HARNESS_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ -n "$OWN_RUN_DIR" ]; then rm -rf "$OWN_RUN_DIR" || true; fi
}
trap stop_servers EXIT INT TERM

# Picks a free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until a TCP port accepts connections, or fails naming the server.
wait_port() {
  local port=$1 name=$2 log=$3 i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "harness: $name did not start on port $port; its log follows" >&2
  cat "$log" >&2 || true
  exit 1
}

for server in scripts/servers/*.sh; do
  [ -e "$server" ] || continue
  # shellcheck source=/dev/null
  source "$server"
done

"$@"
