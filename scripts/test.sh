#!/usr/bin/env bash
# The whole test suite: unit tests, connector conformance suites and end-to-end tests that run
# the real `bizon` binary (kill -9 included). Idempotent; needs nothing beyond the Rust toolchain
# for now (SQLite is bundled). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# End-to-end tests spawn the binary and kill it: keep their parallelism at the core count.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(nproc)}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one `test result:` per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
