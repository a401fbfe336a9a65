# Sourced by scripts/with-servers.sh (under set -euo pipefail): promtool (Debian's `prometheus`
# package) for the test that checks and unit-tests deploy/prometheus/alerts.yaml. Installed once
# (apt keeps it); the package's server is never started here. Starts nothing, so it adds nothing
# to HARNESS_PIDS. Exports:
#   INTAKE_TEST_PROMTOOL  the promtool binary

if ! command -v promtool >/dev/null 2>&1; then
  echo "harness: installing promtool (apt-get install prometheus)" >&2
  if ! { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
      >"$INTAKE_TEST_RUN_DIR/promtool-install.log" 2>&1; then
    echo "harness: could not install promtool; the end of the install log follows" >&2
    tail -n 40 "$INTAKE_TEST_RUN_DIR/promtool-install.log" >&2 || true
    exit 1
  fi
fi
INTAKE_TEST_PROMTOOL=$(command -v promtool)
export INTAKE_TEST_PROMTOOL
