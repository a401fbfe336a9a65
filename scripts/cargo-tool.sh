#!/usr/bin/env bash
# Prints the path of a cargo-installed tool the checks use, installing the pinned version into
# ${CARGO_HOME:-~/.cargo}/bin first if it is missing or another version (CI keeps that folder, so
# the install happens once, like tansu's and s3s-fs's in scripts/servers/).
#   scripts/cargo-tool.sh cargo-machete 0.9.2   (a few minutes to build, once)
#   scripts/cargo-tool.sh cargo-deny 0.20.2     (a few minutes to build, once)
set -euo pipefail
name=$1 version=$2
bin="${CARGO_HOME:-$HOME/.cargo}/bin/$name"
if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -qF "$version"; then
  echo "tools: installing $name $version" >&2
  log=$(mktemp)
  if ! cargo install "$name@$version" --locked >"$log" 2>&1; then
    echo "tools: could not install $name $version; the install log follows" >&2
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
fi
echo "$bin"
