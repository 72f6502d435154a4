#!/usr/bin/env bash
# The whole test suite: unit tests, connector conformance suites and end-to-end tests that run
# the real `bizon` binary (kill -9 included), the local PostgreSQL and RabbitMQ servers and a
# Kafka-protocol mock broker (a workspace binary), then the Kafka suites again against Tansu (a real
# Kafka-protocol broker, scripts/tansu.sh). Idempotent: installs the build's Debian packages
# and starts PostgreSQL / RabbitMQ when missing (scripts/deps.sh). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --services
# A password-authenticated role for the credential tests (the rest of the server trusts local
# connections): one pg_hba line for that role only, and the role itself. Both idempotent.
hba=$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | head -n 1 || true)
if [ -n "$hba" ] && ! grep -q bizon_pw_test "$hba"; then
  sed -i '1i host all bizon_pw_test 127.0.0.1/32 scram-sha-256' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main reload
fi
psql -q -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$ BEGIN
  CREATE ROLE bizon_pw_test LOGIN PASSWORD 'p@ss:w/rd with spaces';
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
GRANT CREATE ON DATABASE test TO bizon_pw_test;
SQL
# Custom Python sources run bizon's API on pydantic v2 and requests (what bizon itself needs);
# the transform and custom-source tests use the `python3` on PATH.
python3 -c 'import pydantic, requests; assert pydantic.VERSION >= "2"' 2>/dev/null \
  || python3 -m pip install -q 'pydantic>=2,<3' requests
# End-to-end tests spawn the binary and kill it: keep their parallelism at the core count.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(nproc)}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The build without the connector features (no cmake, librdkafka, lapin, tokio-postgres): its
# connector and CLI tests (core and the engine have no features: the run above covers them) and
# the shipped binary's dummy / generator → file / logger / null runs. The end-to-end package is
# left out: it turns every feature on.
cargo test -p bizon -p bizon-connectors --no-default-features --all-targets "$@" 2>&1 \
  | tee -a "$log" || status=$?
# The Kafka queue and Kafka source suites again, against a real Kafka-protocol broker: Tansu in
# memory (scripts/tansu.sh installs and starts it). The run above used librdkafka's mock cluster;
# BIZON_TEST_KAFKA_FLAVOUR tells the tests where Tansu differs (README, "what differs"). The broker
# is stopped afterwards: it keeps every message in memory, and the next run starts a fresh one.
# The end-to-end tests spawn target/debug/bizon, which the run above just rebuilt without the
# connector features: build it again with the default features first (cached: a relink).
cargo build -p bizon 2>&1 | tee -a "$log" || status=$?
tansu=$(./scripts/tansu.sh) || { status=1; tansu=; }
[ -z "$tansu" ] || BIZON_TEST_KAFKA=$tansu BIZON_TEST_KAFKA_FLAVOUR=tansu \
  cargo test -p bizon-e2e --test kafka --test kafka_source "$@" 2>&1 | tee -a "$log" || status=$?
./scripts/tansu.sh stop
# One closing line over every test binary (cargo prints one `test result:` per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
