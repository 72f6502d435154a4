#!/usr/bin/env bash
# The local BigQuery emulator the BigQuery tests run against: PyPI `bqemulator` 1.4.0, REST on
# REST_PORT (default 9050) and Storage Write gRPC on GRPC_PORT (default 9060), project `p`
# (BQEMU_PROJECT). What it supports: docs/specs/bqemulator.md. Idempotent: installs into a cached
# virtualenv only when missing, starts only when nothing answers on the REST port.
#
# Usage: scripts/bqemulator.sh [start] [REST_PORT] [GRPC_PORT]   start (default) and print the URL
#        scripts/bqemulator.sh stop [REST_PORT]                  stop the one this script started
#        scripts/bqemulator.sh url [REST_PORT]                   print the URL only
set -euo pipefail
CMD=${1:-start}
REST_PORT=${2:-9050}
GRPC_PORT=${3:-9060}
PROJECT=${BQEMU_PROJECT:-p}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs
VENV=$CACHE/bqemulator-venv
PIDFILE=$CACHE/bqemulator-$REST_PORT.pid
LOG=$CACHE/bqemulator-$REST_PORT.log
# Load jobs resolve gs://BUCKET/PATH to $BQEMU_GCS_LOCAL_ROOT/BUCKET/PATH: the objects of the
# local Cloud Storage emulator (scripts/gcsemulator.sh keeps them there).
export BQEMU_GCS_LOCAL_ROOT=${BQEMU_GCS_LOCAL_ROOT:-$CACHE/gcs-data/.cloudstorage}
URL=http://127.0.0.1:$REST_PORT
HERE=$(cd "$(dirname "$0")" && pwd)

# /healthz answers 200 once REST is serving (gRPC listens just before it).
answers() { curl -sf -o /dev/null -m 2 "$URL/healthz"; }

case "$CMD" in
  url) echo "$URL"; exit 0 ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      # its own process group (setsid below): the server and anything it spawned go together
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 -- "-$pid" 2>/dev/null || true  # still up after 10 s
      rm -f "$PIDFILE"
    fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|url] [REST_PORT] [GRPC_PORT]" >&2; exit 2 ;;
esac

if answers; then echo "$URL"; exit 0; fi

# Installed once into a cached virtualenv. numpy: a run-time import bqemulator does not declare.
# duckdb pinned to 1.5.5: with duckdb 2.0 a tabledata.list leaves a result open on the shared
# connection and every later insertAll fails (500, "connection has an unfinished result"); and
# 1.5.5 is the newest DuckDB PyPI's `duckdb-extension-spatial` (GEOGRAPHY, offline) is built for.
mkdir -p "$CACHE" "$BQEMU_GCS_LOCAL_ROOT"
if ! "$VENV/bin/python" -c 'import bqemulator, numpy, duckdb, duckdb_extension_spatial
assert duckdb.__version__ == "1.5.5"' >/dev/null 2>&1; then
  echo "bqemulator: installing bqemulator 1.4.0 into $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q bqemulator==1.4.0 numpy duckdb==1.5.5 duckdb-extension-spatial==1.5.5 >&2
fi

# Started through scripts/bqemulator_launch.py: the emulator with the fixes the tests need (the
# spatial extension from PyPI, no per-write snapshots, a large Storage Write handler pool,
# one lock over its DuckDB connection). Run from the cache directory: DuckDB spills to ./.tmp.
# setsid: a process group `stop` can end whole.
cd "$CACHE"
nohup setsid "$VENV/bin/python" "$HERE/bqemulator_launch.py" \
  start --rest-port "$REST_PORT" --grpc-port "$GRPC_PORT" --project "$PROJECT" \
  >"$LOG" 2>&1 </dev/null &
echo $! > "$PIDFILE"

for _ in $(seq 120); do
  if answers; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 0.5
done
echo "bqemulator did not answer on $URL within 60 s; log $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
