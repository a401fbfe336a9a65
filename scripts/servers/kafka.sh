# Sourced by scripts/test.sh (under set -euo pipefail): starts two Kafka-protocol brokers (tansu) on
# free loopback ports and exports what the kafka driver's tests need:
#   INTAKE_TEST_KAFKA_BROKERS        127.0.0.1:PORT, in memory, no authentication
#   INTAKE_TEST_KAFKA_SASL_BROKERS   127.0.0.1:PORT, requires SASL/SCRAM (SQLite storage in the run dir)
#   INTAKE_TEST_KAFKA_SASL_PASSWORD  password of its users intake-scram-512 (SCRAM-SHA-512) and
#                                    intake-scram-256 (SCRAM-SHA-256)
#   INTAKE_TEST_KAFKA_TLS_BROKERS    127.0.0.1:PORT, TLS without SASL, client certificate required
#                                    (socat terminates TLS in front of a third, in-memory tansu)
#   INTAKE_TEST_KAFKA_TLS_CA, _CERT, _KEY   the CA (PEM) and a client certificate and key it signed
#   INTAKE_TEST_TANSU_BIN            the tansu binary, for tests that run (and stop) a broker of their own
# Topics are never auto-created: tests create theirs. Uses helpers from test.sh: free_port,
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
export INTAKE_TEST_TANSU_BIN="$TANSU_BIN"
echo "harness: tansu (Kafka protocol) listening at $INTAKE_TEST_KAFKA_BROKERS" >&2

# The SASL broker. tansu cannot add the first user to a broker that already requires
# authentication, so the users are stored by a first run without it, on the same SQLite file, and
# the broker is then restarted requiring it.
KAFKA_SASL_DIR="$INTAKE_TEST_RUN_DIR/kafka-sasl"
KAFKA_SASL_LOG="$INTAKE_TEST_RUN_DIR/tansu-sasl.log"
KAFKA_SASL_PORT=$(free_port)
mkdir -p "$KAFKA_SASL_DIR/db"
export INTAKE_TEST_KAFKA_SASL_PASSWORD="intake-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# Starts the SASL broker in the background (extra flags in "$@"); its pid is in $!. The storage
# URL is relative to the working directory, hence the cd; exec keeps $! the broker's own pid.
kafka_sasl_broker() {
  (cd "$KAFKA_SASL_DIR" && exec "$TANSU_BIN" broker \
    --cluster-id intake-test-sasl \
    --listener-url "tcp://127.0.0.1:$KAFKA_SASL_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_SASL_PORT" \
    --storage-engine "sqlite://db/tansu.db" \
    "$@") >>"$KAFKA_SASL_LOG" 2>&1 &
}

kafka_sasl_broker
kafka_setup_pid=$!
HARNESS_PIDS+=("$kafka_setup_pid")
wait_port "$KAFKA_SASL_PORT" "tansu (SASL broker, set-up run)" "$KAFKA_SASL_LOG"
for kafka_user in intake-scram-512:scram512 intake-scram-256:scram256; do
  kafka_user_ok=
  for _ in $(seq 1 50); do
    if "$TANSU_BIN" user create --broker "tcp://127.0.0.1:$KAFKA_SASL_PORT" --mechanism "${kafka_user#*:}" \
        "${kafka_user%%:*}" "$INTAKE_TEST_KAFKA_SASL_PASSWORD" >>"$KAFKA_SASL_LOG" 2>&1; then
      kafka_user_ok=yes
      break
    fi
    sleep 0.2
  done
  if [ -z "$kafka_user_ok" ]; then
    echo "harness: could not create the SASL user ${kafka_user%%:*} on tansu; its log follows" >&2
    cat "$KAFKA_SASL_LOG" >&2 || true
    exit 1
  fi
done
kill "$kafka_setup_pid"
wait "$kafka_setup_pid" 2>/dev/null || true
kafka_remaining=()
for kafka_pid in "${HARNESS_PIDS[@]}"; do
  [ "$kafka_pid" = "$kafka_setup_pid" ] || kafka_remaining+=("$kafka_pid")
done
HARNESS_PIDS=("${kafka_remaining[@]}")

kafka_sasl_broker --authentication
HARNESS_PIDS+=("$!")
wait_port "$KAFKA_SASL_PORT" "tansu (SASL broker)" "$KAFKA_SASL_LOG"
export INTAKE_TEST_KAFKA_SASL_BROKERS="127.0.0.1:$KAFKA_SASL_PORT"
echo "harness: tansu requiring SASL/SCRAM listening at $INTAKE_TEST_KAFKA_SASL_BROKERS" >&2

# The TLS endpoint. This tansu version cannot start a TLS listener itself, so socat terminates TLS
# (requiring a client certificate) and forwards to a broker that advertises socat's port, so every
# connection a client makes after bootstrap goes through TLS too. Certificates are made here.
for kafka_tool in socat openssl; do
  if ! command -v "$kafka_tool" >/dev/null 2>&1; then
    echo "harness: installing $kafka_tool (the kafka driver's TLS tests need it)" >&2
    if ! { apt-get install -y "$kafka_tool" || { apt-get update && apt-get install -y "$kafka_tool"; }; } \
        >"$INTAKE_TEST_RUN_DIR/$kafka_tool-install.log" 2>&1; then
      echo "harness: could not install $kafka_tool; the end of the install log follows" >&2
      tail -n 40 "$INTAKE_TEST_RUN_DIR/$kafka_tool-install.log" >&2 || true
      exit 1
    fi
  fi
done
KAFKA_TLS_DIR="$INTAKE_TEST_RUN_DIR/kafka-tls"
KAFKA_TLS_LOG="$INTAKE_TEST_RUN_DIR/kafka-tls.log"
mkdir -p "$KAFKA_TLS_DIR"
if ! {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=intake-test-ca" \
    -keyout "$KAFKA_TLS_DIR/ca.key" -out "$KAFKA_TLS_DIR/ca.pem" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$KAFKA_TLS_DIR/server.key" -out "$KAFKA_TLS_DIR/server.csr" &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$KAFKA_TLS_DIR/server.ext" &&
  openssl x509 -req -days 2 -in "$KAFKA_TLS_DIR/server.csr" -extfile "$KAFKA_TLS_DIR/server.ext" \
    -CA "$KAFKA_TLS_DIR/ca.pem" -CAkey "$KAFKA_TLS_DIR/ca.key" -CAcreateserial -out "$KAFKA_TLS_DIR/server.pem" &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=intake-test-client" \
    -keyout "$KAFKA_TLS_DIR/client.key" -out "$KAFKA_TLS_DIR/client.csr" &&
  openssl x509 -req -days 2 -in "$KAFKA_TLS_DIR/client.csr" \
    -CA "$KAFKA_TLS_DIR/ca.pem" -CAkey "$KAFKA_TLS_DIR/ca.key" -CAcreateserial -out "$KAFKA_TLS_DIR/client.pem"
} >"$KAFKA_TLS_LOG" 2>&1; then
  echo "harness: could not make the TLS test certificates; the openssl log follows" >&2
  cat "$KAFKA_TLS_LOG" >&2 || true
  exit 1
fi

KAFKA_TLS_INNER_PORT=$(free_port)
KAFKA_TLS_PORT=$(free_port)
"$TANSU_BIN" broker \
  --cluster-id intake-test-tls \
  --listener-url "tcp://127.0.0.1:$KAFKA_TLS_INNER_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_TLS_PORT" \
  --storage-engine "memory://tansu/" \
  >>"$KAFKA_TLS_LOG" 2>&1 &
HARNESS_PIDS+=("$!")
wait_port "$KAFKA_TLS_INNER_PORT" "tansu (behind the TLS endpoint)" "$KAFKA_TLS_LOG"
socat "OPENSSL-LISTEN:$KAFKA_TLS_PORT,bind=127.0.0.1,reuseaddr,fork,verify=1,cafile=$KAFKA_TLS_DIR/ca.pem,cert=$KAFKA_TLS_DIR/server.pem,key=$KAFKA_TLS_DIR/server.key" \
  "TCP:127.0.0.1:$KAFKA_TLS_INNER_PORT" >>"$KAFKA_TLS_LOG" 2>&1 &
HARNESS_PIDS+=("$!")
wait_port "$KAFKA_TLS_PORT" "socat (TLS endpoint for tansu)" "$KAFKA_TLS_LOG"
export INTAKE_TEST_KAFKA_TLS_BROKERS="127.0.0.1:$KAFKA_TLS_PORT"
export INTAKE_TEST_KAFKA_TLS_CA="$KAFKA_TLS_DIR/ca.pem"
export INTAKE_TEST_KAFKA_TLS_CERT="$KAFKA_TLS_DIR/client.pem"
export INTAKE_TEST_KAFKA_TLS_KEY="$KAFKA_TLS_DIR/client.key"
echo "harness: TLS endpoint (client certificate required) for tansu at $INTAKE_TEST_KAFKA_TLS_BROKERS" >&2
