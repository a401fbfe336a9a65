# Sourced by scripts/with-servers.sh (under set -euo pipefail): the upstream Python clients the
# compatibility tests run unmodified against intake (insights-core's insights-client upload code,
# ccx-messaging and insights-core-messaging) and kubernetes-validate (the Kubernetes JSON schemas the
# deploy test checks deploy/kubernetes/ against), pinned in python-requirements.txt with every
# dependency, in a virtualenv cached under ~/.cache/intake-venv/<hash of the requirements>, so only
# the first run (or a change of pins) installs. Exports:
#   INTAKE_TEST_PYTHON  the virtualenv's python
# Uses INTAKE_TEST_RUN_DIR from with-servers.sh.

PY_REQUIREMENTS="$ROOT/scripts/servers/python-requirements.txt"
PY_HASH=$(sha256sum "$PY_REQUIREMENTS" | cut -c1-16)
PY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/intake-venv/$PY_HASH"

if [ ! -x "$PY_VENV/bin/python" ] || [ ! -e "$PY_VENV/.complete" ]; then
  echo "harness: installing the upstream Python clients into $PY_VENV (once per change of python-requirements.txt)" >&2
  rm -rf "$PY_VENV"
  mkdir -p "$(dirname "$PY_VENV")"
  if ! { python3 -m venv "$PY_VENV" \
      && "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$PY_REQUIREMENTS"; } \
      >"$INTAKE_TEST_RUN_DIR/python-install.log" 2>&1; then
    echo "harness: could not install the upstream Python clients; the end of the install log follows" >&2
    tail -n 40 "$INTAKE_TEST_RUN_DIR/python-install.log" >&2 || true
    rm -rf "$PY_VENV"
    exit 1
  fi
  touch "$PY_VENV/.complete"
fi
export INTAKE_TEST_PYTHON="$PY_VENV/bin/python"
