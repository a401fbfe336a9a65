# Sourced by scripts/test.sh: headless Chromium (Debian's package) and the Playwright driver that the
# tracker's browser test (crates/intake-tracker/tests/browser.rs) uses. Exports INTAKE_TEST_CHROMIUM.
# Starts no server, so it adds nothing to HARNESS_PIDS.

if [ ! -x /usr/bin/chromium ]; then
  echo "harness: installing chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

tracker_e2e="$ROOT/crates/intake-tracker/e2e"
if [ ! -d "$tracker_e2e/node_modules/playwright-core" ]; then
  echo "harness: installing the tracker's e2e dependencies (playwright-core)" >&2
  (cd "$tracker_e2e" && { npm ci --no-audit --no-fund || npm install --no-audit --no-fund; })
fi

export INTAKE_TEST_CHROMIUM=/usr/bin/chromium
export INTAKE_TEST_ARTIFACTS="${INTAKE_TEST_ARTIFACTS:-$ROOT/target/test-artifacts}"
mkdir -p "$INTAKE_TEST_ARTIFACTS"
