# Sourced by scripts/test.sh (under set -euo pipefail): starts an S3-compatible server (s3s-fs, a
# small S3 implementation over a local folder) on a free loopback port and exports its address and
# credentials for the s3 driver's tests:
#   INTAKE_TEST_S3_ENDPOINT    http://127.0.0.1:PORT
#   INTAKE_TEST_S3_ACCESS_KEY  access key id
#   INTAKE_TEST_S3_SECRET_KEY  secret
# Uses helpers from test.sh: free_port, wait_port, HARNESS_PIDS, INTAKE_TEST_RUN_DIR.

S3S_FS_VERSION=0.14.1

s3_server_binary() {
  if command -v s3s-fs >/dev/null 2>&1; then
    command -v s3s-fs
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
  fi
}

S3S_FS_BIN=$(s3_server_binary)
if [ -z "$S3S_FS_BIN" ]; then
  echo "harness: installing s3s-fs $S3S_FS_VERSION (the S3 server the s3 driver's tests use)" >&2
  if ! cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary >"$INTAKE_TEST_RUN_DIR/s3s-install.log" 2>&1; then
    echo "harness: could not install s3s-fs $S3S_FS_VERSION; the install log follows" >&2
    cat "$INTAKE_TEST_RUN_DIR/s3s-install.log" >&2 || true
    exit 1
  fi
  S3S_FS_BIN=$(s3_server_binary)
  if [ -z "$S3S_FS_BIN" ]; then
    echo "harness: s3s-fs was installed but is not on PATH or in ${CARGO_HOME:-$HOME/.cargo}/bin" >&2
    exit 1
  fi
fi

S3_PORT=$(free_port)
S3_DATA_DIR="$INTAKE_TEST_RUN_DIR/s3"
S3_LOG="$INTAKE_TEST_RUN_DIR/s3.log"
mkdir -p "$S3_DATA_DIR"
export INTAKE_TEST_S3_ACCESS_KEY="intake-test"
export INTAKE_TEST_S3_SECRET_KEY="intake-test-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

"$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" \
  --access-key "$INTAKE_TEST_S3_ACCESS_KEY" --secret-key "$INTAKE_TEST_S3_SECRET_KEY" \
  "$S3_DATA_DIR" >"$S3_LOG" 2>&1 &
HARNESS_PIDS+=("$!")
wait_port "$S3_PORT" "s3s-fs (S3 server)" "$S3_LOG"

export INTAKE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
echo "harness: s3s-fs listening at $INTAKE_TEST_S3_ENDPOINT (data in $S3_DATA_DIR)" >&2
