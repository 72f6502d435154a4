#!/usr/bin/env bash
# Fuzz the config loader, the .env and RFC 3339 parsers and the record decoders (cargo-fuzz,
# libFuzzer) for SECONDS each (default 20). Works on the stable toolchain: no sanitizer
# (`-s none`), optimized build.
# Installs cargo-fuzz when missing. Crashes land in fuzz/artifacts/<target>/ and fail the script.
# fuzz/seeds/<target>/ (committed: hostile inputs such as alias bombs) seed the run beside the
# local, untracked fuzz/corpus/<target>/ where new inputs are kept.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   (targets: config_loader dotenv rfc3339 queue_message kafka_value pg_fields)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
SECONDS_EACH=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config_loader dotenv rfc3339 queue_message kafka_value pg_fields)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# fuzz builds use their own flags: keep them apart from the main build cache
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs/fuzz-target}"
cd fuzz
cargo fuzz build -s none -O
for t in "${TARGETS[@]}"; do
  echo "== fuzz $t (${SECONDS_EACH}s)"
  mkdir -p "corpus/$t"
  SEEDS=()
  [ -d "seeds/$t" ] && SEEDS=("seeds/$t")
  cargo fuzz run "$t" -s none -O "corpus/$t" "${SEEDS[@]}" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 \
    | grep -E "^Done|stat::number_of_executed_units|ERROR|panicked|deadly signal|SUMMARY" || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz: $t found a failing input: $(ls "artifacts/$t")"
    exit 1
  fi
done
echo "fuzz: ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a failure"
