#!/usr/bin/env bash
# The workspace's rust-version is true: every member inherits it, and it is no lower than the
# rust-version of any dependency Cargo.lock pins (a toolchain older than that cannot build intake
# with --locked). That the code itself uses no newer std API is clippy's incompatible_msrv lint,
# which reads the same rust-version (scripts/test.sh runs clippy with -D warnings).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys

def version(text):
    return tuple(int(part) for part in text.split("."))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
packages = [p for p in meta["packages"] if p["id"] in resolved]
declared = {p["name"]: p.get("rust_version") for p in packages if p["id"] in members}
ours = set(declared.values())
if len(ours) != 1 or None in ours:
    sys.exit(f"members disagree on rust-version (each should say rust-version.workspace = true): {declared}")
ours = ours.pop()
needed = max(
    ((version(p["rust_version"]), p["name"], p["version"], p["rust_version"])
     for p in packages if p["id"] not in members and p.get("rust_version")),
    default=None,
)
if needed and needed[0] > version(ours):
    sys.exit(f"rust-version {ours} is lower than {needed[1]} {needed[2]} needs ({needed[3]}): raise it in Cargo.toml")
if needed:
    print(f"rust-version {ours}; the highest a locked dependency needs: {needed[3]} ({needed[1]} {needed[2]})")
'
