#!/usr/bin/env bash
# The whole test suite on a fresh machine: lint, then every test with the real servers running
# (scripts/with-servers.sh installs and starts them, and stops them afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== rust-version (covers every locked dependency; the code's std use is clippy's incompatible_msrv)"
scripts/check-rust-version.sh
echo "== cargo doc (intra-doc links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== cargo machete (no unused dependencies)"
machete=$(scripts/cargo-tool.sh cargo-machete 0.9.2)
"$machete"
echo "== cargo deny (licenses, bans, sources; advisories are not gated: see deny.toml)"
deny=$(scripts/cargo-tool.sh cargo-deny 0.20.2)
"$deny" --locked check licenses bans sources
echo "== cargo bench --no-run (benchmarks must build; their figures are not gated)"
cargo bench --workspace --locked --no-run --profile dev
echo "== cargo test"
exec scripts/with-servers.sh cargo test --workspace --locked --no-fail-fast "$@"
