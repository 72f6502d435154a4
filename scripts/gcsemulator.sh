#!/usr/bin/env bash
# The local Cloud Storage emulator the BigQuery tests stage load files in: PyPI
# `gcp-storage-emulator` on PORT (default 9023) with the bucket `bizon-test`. Its objects live
# under $DATA/.cloudstorage/BUCKET/NAME, which is where scripts/bqemulator.sh points the BigQuery
# emulator's gs:// URIs (BQEMU_GCS_LOCAL_ROOT): a file uploaded here is loadable there.
# Idempotent: installs into a cached virtualenv only when missing, starts only when nothing answers.
#
# Usage: scripts/gcsemulator.sh [start] [PORT]   start (default) and print the URL
#        scripts/gcsemulator.sh stop [PORT]      stop the one this script started
set -euo pipefail
CMD=${1:-start}
PORT=${2:-9023}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bizon-rs
VENV=$CACHE/gcsemulator-venv
DATA=$CACHE/gcs-data
PIDFILE=$CACHE/gcsemulator-$PORT.pid
LOG=$CACHE/gcsemulator-$PORT.log
URL=http://127.0.0.1:$PORT

answers() { curl -sf -o /dev/null -m 2 "$URL/storage/v1/b"; }

case "$CMD" in
  stop)
    if [ -f "$PIDFILE" ]; then
      kill -- "-$(cat "$PIDFILE")" 2>/dev/null || kill "$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE"
    fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop] [PORT]" >&2; exit 2 ;;
esac

if answers; then echo "$URL"; exit 0; fi

mkdir -p "$CACHE" "$DATA"
if ! "$VENV/bin/python" -c 'import gcp_storage_emulator' >/dev/null 2>&1; then
  echo "gcsemulator: installing gcp-storage-emulator into $VENV" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gcp-storage-emulator==2026.7.19 >&2
fi
cd "$CACHE"
nohup setsid "$VENV/bin/gcp-storage-emulator" -d "$DATA" start --host 127.0.0.1 --port "$PORT" \
  --default-bucket bizon-test >"$LOG" 2>&1 </dev/null &
echo $! > "$PIDFILE"
for _ in $(seq 60); do
  if answers; then echo "$URL"; exit 0; fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 0.5
done
echo "gcp-storage-emulator did not answer on $URL within 30 s; log $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
