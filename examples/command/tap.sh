#!/bin/sh
# A source in shell: Airbyte-shaped RECORD lines, a STATE every 100, a LOG line. On resume the
# last committed STATE is in $BIZON_STATE (and the file $BIZON_STATE_FILE).
set -eu
start=0
if [ -n "${BIZON_STATE:-}" ]; then
  start=$(printf '%s' "$BIZON_STATE" | sed -n 's/.*"offset": *\([0-9]*\).*/\1/p')
fi
echo '{"type":"LOG","log":{"level":"INFO","message":"tap.sh starting"}}'
i=$start
while [ "$i" -lt 1000 ]; do
  echo "{\"type\":\"RECORD\",\"record\":{\"stream\":\"numbers\",\"data\":{\"n\":$i,\"square\":$((i * i))},\"emitted_at\":1700000000000}}"
  i=$((i + 1))
  if [ $((i % 100)) -eq 0 ]; then
    echo "{\"type\":\"STATE\",\"state\":{\"offset\":$i}}"
  fi
done
