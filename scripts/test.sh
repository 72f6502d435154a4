#!/usr/bin/env bash
# The whole test suite: unit tests, connector conformance suites and end-to-end tests that run
# the real `bizon` binary (kill -9 included). Idempotent; needs nothing beyond the Rust toolchain
# for now (SQLite is bundled). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# End-to-end tests spawn the binary and kill it: keep their parallelism at the core count.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(nproc)}"
cargo test --workspace --all-targets "$@"
