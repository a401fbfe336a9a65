# Sourced by scripts/test.sh (under set -euo pipefail): starts PostgreSQL (Debian's packages) in a
# throwaway data directory on a free loopback port and exports a URL tests may create databases at:
#   INTAKE_TEST_POSTGRES_URL  postgres://postgres@127.0.0.1:PORT/postgres   (trust auth, loopback only)
# fsync is off: the data is thrown away. Uses helpers from test.sh: free_port, wait_port,
# HARNESS_PIDS, INTAKE_TEST_RUN_DIR.

pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

PG_BIN=$(pg_bin_dir)
if [ -z "$PG_BIN" ]; then
  echo "harness: installing PostgreSQL (apt-get install postgresql)" >&2
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } \
      >"$INTAKE_TEST_RUN_DIR/postgres-install.log" 2>&1; then
    echo "harness: could not install PostgreSQL; the end of the install log follows" >&2
    tail -n 40 "$INTAKE_TEST_RUN_DIR/postgres-install.log" >&2 || true
    exit 1
  fi
  PG_BIN=$(pg_bin_dir)
  if [ -z "$PG_BIN" ]; then
    echo "harness: PostgreSQL was installed but no /usr/lib/postgresql/*/bin exists" >&2
    exit 1
  fi
fi

PG_DIR="$INTAKE_TEST_RUN_DIR/pg"
PG_LOG="$INTAKE_TEST_RUN_DIR/postgres.log"
mkdir -p "$PG_DIR/data" "$PG_DIR/socket"
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user.
if [ "$(id -u)" -eq 0 ]; then
  chmod o+x "$INTAKE_TEST_RUN_DIR"
  chown -R postgres:postgres "$PG_DIR"
  : >"$PG_LOG"
  chown postgres:postgres "$PG_LOG"
  pg_as_owner() { runuser -u postgres -- "$@"; }
else
  pg_as_owner() { "$@"; }
fi

if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$INTAKE_TEST_RUN_DIR/initdb.log" 2>&1; then
  echo "harness: initdb failed; its log follows" >&2
  cat "$INTAKE_TEST_RUN_DIR/initdb.log" >&2 || true
  exit 1
fi

PG_PORT=$(free_port)
pg_as_owner "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PG_DIR/socket" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
  >>"$PG_LOG" 2>&1 &
HARNESS_PIDS+=("$!")
wait_port "$PG_PORT" "PostgreSQL" "$PG_LOG"
# The server itself (the pid above may be runuser's), so it is stopped even if runuser is gone.
if [ -r "$PG_DIR/data/postmaster.pid" ]; then
  HARNESS_PIDS+=("$(head -n 1 "$PG_DIR/data/postmaster.pid")")
fi

pg_ready=
for _ in $(seq 1 100); do
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; then
    pg_ready=yes
    break
  fi
  sleep 0.1
done
if [ -z "$pg_ready" ]; then
  echo "harness: PostgreSQL listens on port $PG_PORT but does not accept connections; its log follows" >&2
  cat "$PG_LOG" >&2 || true
  exit 1
fi

export INTAKE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
echo "harness: PostgreSQL listening at $INTAKE_TEST_POSTGRES_URL (data in $PG_DIR/data)" >&2
