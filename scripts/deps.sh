#!/usr/bin/env bash
# What building and testing bizon-rs needs beyond the Rust toolchain, installed or started only
# when missing (idempotent; safe to run before every build):
#   - Debian packages: cmake and libcurl4-openssl-dev (librdkafka is built from source by the
#     `rdkafka` crate), libssl-dev and zlib1g-dev (its TLS and compression), time and bc (the
#     benchmark harness);
#   - with --services: the local PostgreSQL and RabbitMQ servers the tests use, when down, and
#     the BigQuery and Cloud Storage emulators (scripts/bqemulator.sh, scripts/gcsemulator.sh:
#     installed once into cached virtualenvs).
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
for pkg in libcurl4-openssl-dev libssl-dev zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ -x /usr/bin/time ] || missing+=(time)
command -v bc >/dev/null || missing+=(bc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = --services ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmq-server -detached
    for _ in $(seq 60); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
  elif ! rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then
    rabbitmqctl -q start_app >/dev/null 2>&1 || true  # an app left stopped (e.g. by an interrupted test)
  fi
  "$(dirname "$0")/bqemulator.sh" start >/dev/null
  "$(dirname "$0")/gcsemulator.sh" start >/dev/null
fi
