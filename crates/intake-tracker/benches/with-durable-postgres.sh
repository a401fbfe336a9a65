#!/usr/bin/env bash
# Runs a command with a PostgreSQL server of production durability (fsync, synchronous_commit and
# full_page_writes on: PostgreSQL's defaults) on a free loopback port, its data in a throwaway
# directory on the same disk as the harness's, and INTAKE_TEST_POSTGRES_URL pointing at it. The
# harness's own server (scripts/servers/postgres.sh) runs with fsync off, set on its command line,
# which no ALTER SYSTEM can override; the tracker benches print the settings they ran with.
#   crates/intake-tracker/benches/with-durable-postgres.sh cargo bench -p intake-tracker --bench store
set -euo pipefail
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || { echo "no PostgreSQL under /usr/lib/postgresql (scripts/with-servers.sh installs it)" >&2; exit 1; }
RUN_DIR=$(mktemp -d /tmp/intake-durable-pg.XXXXXX)
PG_PID=""
stop() {
  if [ -n "$PG_PID" ]; then kill "$PG_PID" 2>/dev/null || true; wait "$PG_PID" 2>/dev/null || true; fi
  rm -rf "$RUN_DIR"
}
trap stop EXIT INT TERM
mkdir -p "$RUN_DIR/data" "$RUN_DIR/socket"
if [ "$(id -u)" -eq 0 ]; then
  chmod o+x "$RUN_DIR"
  chown -R postgres:postgres "$RUN_DIR"
  as_owner() { runuser -u postgres -- "$@"; }
else
  as_owner() { "$@"; }
fi
as_owner "$PG_BIN/initdb" -D "$RUN_DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$RUN_DIR/initdb.log" 2>&1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_owner "$PG_BIN/postgres" -D "$RUN_DIR/data" -p "$PORT" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$RUN_DIR/socket" -c max_connections=200 >"$RUN_DIR/postgres.log" 2>&1 &
PG_PID=$!
for _ in $(seq 1 100); do
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres && break
  sleep 0.1
done
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres || { cat "$RUN_DIR/postgres.log" >&2; exit 1; }
export INTAKE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
echo "durable PostgreSQL at $INTAKE_TEST_POSTGRES_URL (data in $RUN_DIR/data)" >&2
"$@"
