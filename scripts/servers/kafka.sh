# Sourced by scripts/test.sh (under set -euo pipefail): starts a Kafka-protocol broker (tansu, in
# memory) on a free loopback port and exports its bootstrap address for the kafka driver's tests:
#   INTAKE_TEST_KAFKA_BROKERS  127.0.0.1:PORT
# Topics are never auto-created on it: tests create theirs. Uses helpers from test.sh: free_port,
# wait_port, HARNESS_PIDS, INTAKE_TEST_RUN_DIR.

TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql

tansu_binary() {
  if command -v tansu >/dev/null 2>&1; then
    command -v tansu
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  fi
}

TANSU_BIN=$(tansu_binary)
if [ -z "$TANSU_BIN" ] && pgrep -f "cargo install tansu" >/dev/null 2>&1; then
  # An install of tansu is already building (it takes many minutes): wait for it instead of
  # building a second copy next to it.
  echo "harness: waiting for the tansu install already in progress" >&2
  for _ in $(seq 1 360); do
    pgrep -f "cargo install tansu" >/dev/null 2>&1 || break
    sleep 10
  done
  TANSU_BIN=$(tansu_binary)
fi
if [ -z "$TANSU_BIN" ]; then
  echo "harness: installing tansu $TANSU_VERSION (the Kafka-protocol broker the kafka driver's tests use; ~15 min)" >&2
  if ! cargo install "tansu@$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
      >"$INTAKE_TEST_RUN_DIR/tansu-install.log" 2>&1; then
    echo "harness: could not install tansu $TANSU_VERSION; the end of the install log follows" >&2
    tail -n 60 "$INTAKE_TEST_RUN_DIR/tansu-install.log" >&2 || true
    exit 1
  fi
  TANSU_BIN=$(tansu_binary)
  if [ -z "$TANSU_BIN" ]; then
    echo "harness: tansu was installed but is not on PATH or in ${CARGO_HOME:-$HOME/.cargo}/bin" >&2
    exit 1
  fi
fi

KAFKA_PORT=$(free_port)
KAFKA_LOG="$INTAKE_TEST_RUN_DIR/tansu.log"
"$TANSU_BIN" broker \
  --cluster-id intake-test \
  --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine "memory://tansu/" \
  >"$KAFKA_LOG" 2>&1 &
HARNESS_PIDS+=("$!")
wait_port "$KAFKA_PORT" "tansu (Kafka broker)" "$KAFKA_LOG"

# An open port is not yet a working broker: wait until it answers a metadata request.
kafka_ready=
for _ in $(seq 1 100); do
  if "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1; then
    kafka_ready=yes
    break
  fi
  sleep 0.2
done
if [ -z "$kafka_ready" ]; then
  echo "harness: tansu listens on port $KAFKA_PORT but does not answer metadata requests; its log follows" >&2
  cat "$KAFKA_LOG" >&2 || true
  exit 1
fi

export INTAKE_TEST_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
echo "harness: tansu (Kafka protocol) listening at $INTAKE_TEST_KAFKA_BROKERS" >&2
