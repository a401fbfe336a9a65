#!/usr/bin/env bash
# Whole-system benchmarks of `intake serve` on the embedded default (local disk + embedded bus +
# SQLite), driven by `intake load` and curl over loopback. Prints a markdown report and writes it to
# target/bench/system.md; BENCHMARKS.md quotes it.
#
#   scripts/bench.sh                  # every case
#   scripts/bench.sh small large      # some of: small large roundtrip steady connections
#                                     #   ingress_connections parts
#
# Knobs: BENCH_SMALL_DURATION (30s), BENCH_SMALL_CONCURRENCY (50), BENCH_LARGE_SIZE (1GiB as bytes,
# 1073741824), BENCH_ROUNDTRIP_COUNT (2000), BENCH_STEADY_SECONDS (60), BENCH_STEADY_CONCURRENCY
# (50), BENCH_PARTS_COUNT (10000). BENCH_BIN: an `intake` binary to measure instead of building this checkout's (to compare two
# versions on the same host state). SERVE_ENV: variables for the server alone, e.g.
# SERVE_ENV="TOKIO_WORKER_THREADS=1" (the load client keeps its own).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(small large roundtrip steady connections ingress_connections parts)

SMALL_DURATION=${BENCH_SMALL_DURATION:-30s}
SMALL_CONCURRENCY=${BENCH_SMALL_CONCURRENCY:-50}
LARGE_SIZE=${BENCH_LARGE_SIZE:-1073741824}
ROUNDTRIP_COUNT=${BENCH_ROUNDTRIP_COUNT:-2000}
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-60}
STEADY_CONCURRENCY=${BENCH_STEADY_CONCURRENCY:-50}
PARTS_COUNT=${BENCH_PARTS_COUNT:-10000}
IDENTITY=$(printf '{"identity":{"account_number":"12345","org_id":"54321","internal":{"org_id":"54321"},"type":"User"}}' | base64 -w0)

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  echo "bench: building the release binary" >&2
  cargo build --release --locked -p intake >&2
  BIN=$ROOT/target/release/intake
fi

# Work files live on the same disk as the repository (the disk under test), the large payload's
# source in memory so that reading it costs no disk time.
WORK=$(mktemp -d "$ROOT/target/bench-run.XXXXXX")
SOURCE=/dev/shm/intake-bench-$$.bin
SERVE_PID=""
cleanup() {
  stop_serve
  rm -rf "$WORK" "$SOURCE" "$SOURCE.small"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a fresh `intake serve` in its own data directory; sets PORT and SERVE_PID.
start_serve() {
  local name=$1
  shift
  local dir=$WORK/$name
  mkdir -p "$dir"
  PORT=$(free_port)
  env INTAKE_DATA_DIR="$dir/data" INGRESS_LISTEN="127.0.0.1:$PORT" \
    INGRESS_PUBLIC_URL="http://127.0.0.1:$PORT" TRACKER_LISTEN="127.0.0.1:$(free_port)" \
    STORAGE_URL_SIGNING_KEY=bench LOG_LEVEL=warn ${SERVE_ENV:-} "$@" \
    "$BIN" "${SERVE_COMMAND:-serve}" >"$dir/serve.log" 2>&1 &
  SERVE_PID=$!
  local i
  for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: intake serve did not become ready; its log follows" >&2
  cat "$dir/serve.log" >&2
  exit 1
}

stop_serve() {
  if [ -n "$SERVE_PID" ]; then
    kill "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=""
  fi
}

# Peak resident set of the running server, in MiB.
peak_rss_mib() {
  awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$SERVE_PID/status"
}

REPORT=$WORK/report.md
{
  echo "Machine: $(nproc) vCPU ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(df -h "$ROOT" | awk 'NR==2 {print $1}') disk; $(uname -sr)."
  echo "Date: $(date -u +%Y-%m-%dT%H:%MZ). Command: \`scripts/bench.sh ${CASES[*]}\`."
  echo
} >"$REPORT"

# Milliseconds per synchronous 4 KiB write on the disk under test right now (200 writes).
sync_write_ms() {
  local out secs
  out=$(LC_ALL=C dd if=/dev/zero of="$WORK/probe.bin" bs=4k count=200 oflag=dsync 2>&1)
  rm -f "$WORK/probe.bin"
  secs=$(echo "$out" | sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p')
  python3 -c "print(round($secs / 200 * 1000, 2))"
}

small() {
  {
    echo "### Small uploads: 10 KiB, $SMALL_CONCURRENCY concurrent clients, $SMALL_DURATION each, fresh server each"
    echo
    echo "The whole of \`intake serve\` runs meanwhile on the same two cores as the client: the validator"
    echo "downloads and checks each payload, ingress moves it, the tracker stores every status and the"
    echo "pipeline takes each available payload. An archive is accepted (perm, available, pipeline);"
    echo "random bytes are rejected by the validator (reject bucket, no pipeline)."
    echo
    echo "The disk of this virtual machine varies from minute to minute; each row names the latency of"
    echo "a synchronous 4 KiB write (\`dd oflag=dsync\`, 200 writes) measured just before it."
    echo
    echo "| payload | accepted | accepted/s | MB/s | p50 | p95 | p99 | max | answers | server peak RSS | disk sync write |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
  } >>"$REPORT"
  local kind
  for kind in archive random; do
    local probe
    probe=$(sync_write_ms)
    start_serve "small-$kind"
    "$BIN" load --url "http://127.0.0.1:$PORT" --concurrency "$SMALL_CONCURRENCY" --size 10KiB \
      --payload "$kind" --duration "$SMALL_DURATION" --json >"$WORK/small-$kind.json"
    local rss
    rss=$(peak_rss_mib)
    stop_serve
    jq -r --arg kind "$kind" --arg rss "$rss" --arg probe "$probe" '
      "| \($kind) | \(.accepted) | **\(.accepted_per_second | floor)** | \(.megabytes_per_second * 10 | round / 10) | \(.latency_ms.p50) ms | \(.latency_ms.p95) ms | \(.latency_ms.p99) ms | \(.latency_ms.max) ms | \(.by_status | to_entries | map("\(.key)×\(.value)") | join(", ")) | \($rss) MiB | \($probe) ms |"' \
      "$WORK/small-$kind.json" >>"$REPORT"
  done
  echo >>"$REPORT"
}

# One dd of the large payload to the disk under test, made durable like an upload (one fsync at the
# end); prints its seconds.
dd_once() {
  local out
  settle
  out=$(LC_ALL=C dd if="$SOURCE" of="$WORK/dd.bin" bs=1M conv=fsync 2>&1)
  rm -f "$WORK/dd.bin"
  echo "$out" | sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p'
}

# One upload of $1 bytes from file $2 to a fresh server; prints "seconds idle_rss peak_rss".
upload_once() {
  local size=$1 file=$2 name=large-$1-$RANDOM
  start_serve "$name" INGRESS_MAX_SIZE=$((LARGE_SIZE * 2)) VALIDATOR_MAX_DOWNLOAD_SIZE=$((LARGE_SIZE * 2))
  local idle_rss out code
  idle_rss=$(peak_rss_mib)
  settle
  out=$(curl -sS -o "$WORK/large.json" -w '%{http_code} %{time_total}' \
    -H "x-rh-identity: $IDENTITY" \
    -F "file=@$file;filename=large.tar.gz;type=application/vnd.redhat.testareno.large+tgz" \
    "http://127.0.0.1:$PORT/api/ingress/v1/upload")
  code=${out%% *}
  if [ "$code" != 202 ]; then
    echo "bench: the large upload got $code: $(cat "$WORK/large.json")" >&2
    exit 1
  fi
  echo "${out#* } $idle_rss $(peak_rss_mib)"
  stop_serve
  rm -rf "${WORK:?}/$name"
}

# Lets the disk finish writing back what earlier steps left (deleted files, other runs).
settle() {
  sync
  sleep 3
}

median() {
  python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}

large() {
  echo "bench: writing a $LARGE_SIZE-byte payload to $SOURCE" >&2
  head -c "$LARGE_SIZE" /dev/urandom >"$SOURCE"
  head -c 67108864 "$SOURCE" >"$SOURCE.small"
  # dd and the upload take turns, three times, so that both see the disk in the same states; the
  # medians are compared.
  local dds=() ups=() smalls=() peak=0 idle="" i r
  for i in 1 2 3; do
    dds+=("$(dd_once)")
    read -r -a r <<<"$(upload_once "$LARGE_SIZE" "$SOURCE")"
    ups+=("${r[0]}")
    idle=${r[1]}
    peak=$(python3 -c "print(max($peak, ${r[2]}))")
  done
  read -r -a r <<<"$(upload_once 67108864 "$SOURCE.small")"
  local small_secs=${r[0]} small_idle=${r[1]} small_peak=${r[2]}
  local dd_secs up_secs
  dd_secs=$(median "${dds[@]}")
  up_secs=$(median "${ups[@]}")
  {
    echo "### Large upload: one payload of $LARGE_SIZE bytes"
    echo
    echo "dd and the upload (a fresh server each time) take turns three times; medians are compared."
    echo
    echo "| case | runs (s) | median s | MB/s | ratio to dd | server peak RSS |"
    echo "|---|---|---|---|---|---|"
    echo "| \`dd bs=1M conv=fsync\`, same bytes, same disk | ${dds[*]} | $dd_secs | $(python3 -c "print(round($LARGE_SIZE/$dd_secs/1e6))") | 1 | |"
    echo "| upload of 67108864 bytes (idle server: $small_idle MiB) | $small_secs | $small_secs | $(python3 -c "print(round(67108864/$small_secs/1e6))") | $(python3 -c "print(round($dd_secs/$small_secs*67108864/$LARGE_SIZE, 2))") | $small_peak MiB |"
    echo "| upload of $LARGE_SIZE bytes (idle server: $idle MiB) | ${ups[*]} | $up_secs | $(python3 -c "print(round($LARGE_SIZE/$up_secs/1e6))") | **$(python3 -c "print(round($dd_secs/$up_secs, 2))")** | **$peak MiB** |"
    echo
  } >>"$REPORT"
}

roundtrip() {
  start_serve roundtrip
  local started ended
  started=$(date +%s.%N)
  "$BIN" load --url "http://127.0.0.1:$PORT" --concurrency "$SMALL_CONCURRENCY" --size 10KiB \
    --count "$ROUNDTRIP_COUNT" --json >"$WORK/roundtrip.json"
  # Every payload announced on available (the validator downloaded and checked each one).
  INTAKE_DATA_DIR="$WORK/roundtrip/data" LOG_LEVEL=warn timeout 600 "$BIN" topics tail \
    platform.upload.available --from-beginning --count "$ROUNDTRIP_COUNT" >"$WORK/available.jsonl"
  ended=$(date +%s.%N)
  stop_serve
  local secs
  secs=$(python3 -c "print(round($ended - $started, 2))")
  {
    echo "### Validation round-trip: $ROUNDTRIP_COUNT payloads of 10 KiB, upload to available"
    echo
    echo "| payloads | seconds | payloads/s |"
    echo "|---|---|---|"
    echo "| $(wc -l <"$WORK/available.jsonl") | $secs | **$(python3 -c "print(round($ROUNDTRIP_COUNT / $secs))")** |"
    echo
  } >>"$REPORT"
}

# Server CPU seconds so far (user + system).
cpu_seconds() {
  awk -v tick="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / tick}' "/proc/$SERVE_PID/stat"
}

# One metric's value (the sum over its label sets matching $2) from ingress's /metrics.
metric() {
  curl -fsS "http://127.0.0.1:$PORT/metrics" |
    awk -v name="$1" -v labels="${2:-}" '{split($1, a, "{")} a[1] == name && (labels == "" || index($1, labels)) {sum += $2} END {printf "%d", sum}'
}

# Verdicts applied so far (validated or rejected, moved, announced, status sent).
finished() {
  local ok bad
  ok=$(metric ingress_validation_messages_total 'result="success"')
  bad=$(metric ingress_validation_messages_total 'result="failure"')
  echo $((ok + bad))
}

steady() {
  start_serve steady
  local cpu0 started
  cpu0=$(cpu_seconds)
  started=$(date +%s.%N)
  "$BIN" load --url "http://127.0.0.1:$PORT" --concurrency "$STEADY_CONCURRENCY" --size 10KiB \
    --duration "${STEADY_SECONDS}s" --json >"$WORK/steady.json" &
  local load=$! peak=0 b
  while kill -0 "$load" 2>/dev/null; do
    b=$(metric ingress_backlog_payloads)
    [ "$b" -gt "$peak" ] && peak=$b
    sleep 1
  done
  wait "$load"
  local load_end done_at_end accepted
  load_end=$(date +%s.%N)
  done_at_end=$(finished)
  accepted=$(jq .accepted "$WORK/steady.json")
  # The drain: until every accepted payload has its verdict applied (at most 10 minutes).
  local i
  for i in $(seq 1 6000); do
    [ "$(finished)" -ge "$accepted" ] && break
    sleep 0.1
  done
  local drained cpu1 rss
  drained=$(date +%s.%N)
  cpu1=$(cpu_seconds)
  rss=$(peak_rss_mib)
  local final
  final=$(finished)
  stop_serve
  python3 - "$WORK/steady.json" "$started" "$load_end" "$drained" "$done_at_end" "$final" "$cpu0" "$cpu1" "$peak" "$rss" >>"$REPORT" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
started, load_end, drained = map(float, sys.argv[2:5])
done_at_end, final = int(sys.argv[5]), int(sys.argv[6])
cpu = float(sys.argv[8]) - float(sys.argv[7])
peak, rss = sys.argv[9], sys.argv[10]
accepted = report["accepted"]
load_secs, drain_secs = load_end - started, drained - load_end
statuses = ", ".join(f"{k}×{v}" for k, v in sorted(report["by_status"].items()))
print(f"### Steady state: {report['concurrency']} clients offering 10 KiB archives for {round(load_secs)} s, then the drain")
print()
print("Finished means the verdict applied: validated, moved to perm, announced on available, status sent.")
print()
print("| accepted | accepted/s | p50 | p99 | answers | finished during the load | finished/s during the load | drain after the load | finished/s over the run | backlog peak | server CPU per finished payload | server peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {accepted} | {accepted / load_secs:.0f} | {report['latency_ms']['p50']} ms | {report['latency_ms']['p99']} ms | {statuses} "
      f"| {done_at_end} ({100 * done_at_end / max(accepted, 1):.0f} %) | **{done_at_end / load_secs:.0f}** | {drain_secs:.1f} s "
      f"| **{final / (load_secs + drain_secs):.0f}** | {peak} | {1000 * cpu / max(final, 1):.2f} ms | {rss} MiB |")
print()
PY
}

# Few clients, each sending one 10 KiB upload after the other: what one answer costs when nothing
# else waits in line (a fresh server for each count, 15 s each).
connections() {
  {
    echo "### Few connections: 10 KiB uploads, one after the other on each connection, 15 s each${1:+ ($1)}"
    echo
    echo "| connections | accepted/s | mean | p50 | p99 | answers |"
    echo "|---|---|---|---|---|---|"
  } >>"$REPORT"
  local c
  for c in 1 2 4; do
    start_serve "connections-$c"
    "$BIN" load --url "http://127.0.0.1:$PORT" --concurrency "$c" --size 10KiB --duration 15s \
      --json >"$WORK/connections-$c.json"
    stop_serve
    jq -r '"| \(.concurrency) | **\(.accepted_per_second | floor)** | \(.latency_ms.mean * 100 | round / 100) ms | \(.latency_ms.p50) ms | \(.latency_ms.p99) ms | \(.by_status | to_entries | map("\(.key)×\(.value)") | join(", ")) |"' \
      "$WORK/connections-$c.json" >>"$REPORT"
  done
  echo >>"$REPORT"
}

# The same with `intake ingress` alone (the embedded bus, nothing consuming): the upload service by
# itself, as the Python upload service was measured.
ingress_connections() {
  SERVE_COMMAND=ingress connections "\`intake ingress\` alone"
}

# Ingress, validator and tracker as three processes on one data directory (the embedded bus
# shared between them): CPU per payload of each part, for a fixed count of 10 KiB uploads taken to
# their verdicts. `serve` runs the same parts (and the rules pipeline) in one process.
parts() {
  local dir=$WORK/parts port tracker_port pids=() names=(ingress validator tracker)
  mkdir -p "$dir"
  port=$(free_port)
  tracker_port=$(free_port)
  export INTAKE_DATA_DIR=$dir/data STORAGE_URL_SIGNING_KEY=bench LOG_LEVEL=warn
  INGRESS_LISTEN="127.0.0.1:$port" INGRESS_PUBLIC_URL="http://127.0.0.1:$port" \
    "$BIN" ingress >"$dir/ingress.log" 2>&1 &
  pids+=($!)
  "$BIN" validator >"$dir/validator.log" 2>&1 &
  pids+=($!)
  TRACKER_LISTEN="127.0.0.1:$tracker_port" "$BIN" tracker >"$dir/tracker.log" 2>&1 &
  pids+=($!)
  unset INTAKE_DATA_DIR STORAGE_URL_SIGNING_KEY LOG_LEVEL
  PORT=$port
  local i
  for i in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
  done
  local before=() after=() pid started ended
  for pid in "${pids[@]}"; do before+=("$(SERVE_PID=$pid cpu_seconds)"); done
  started=$(date +%s.%N)
  "$BIN" load --url "http://127.0.0.1:$port" --concurrency "$STEADY_CONCURRENCY" --size 10KiB \
    --count "$PARTS_COUNT" --json >"$dir/load.json"
  for i in $(seq 1 6000); do
    [ "$(finished)" -ge "$PARTS_COUNT" ] && break
    sleep 0.1
  done
  ended=$(date +%s.%N)
  # The tracker's last statuses.
  sleep 2
  for pid in "${pids[@]}"; do after+=("$(SERVE_PID=$pid cpu_seconds)"); done
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  {
    echo "### Parts as processes: $PARTS_COUNT uploads of 10 KiB, $STEADY_CONCURRENCY clients, to their verdicts"
    echo
    echo "Accepted $(jq .accepted "$dir/load.json") at $(jq '.accepted_per_second | floor' "$dir/load.json")/s; all finished at $(python3 -c "print(round($PARTS_COUNT / ($ended - $started)))")/s."
    echo
    echo "| part | CPU per payload |"
    echo "|---|---|"
    local total=0 ms
    for i in 0 1 2; do
      ms=$(python3 -c "print(round((${after[$i]} - ${before[$i]}) * 1000 / $PARTS_COUNT, 2))")
      total=$(python3 -c "print(round($total + $ms, 2))")
      echo "| ${names[$i]} | $ms ms |"
    done
    echo "| all three | **$total ms** |"
    echo
  } >>"$REPORT"
}

for case in "${CASES[@]}"; do
  echo "bench: $case" >&2
  "$case"
done

mkdir -p "$ROOT/target/bench"
cp "$REPORT" "$ROOT/target/bench/system.md"
cat "$REPORT"
