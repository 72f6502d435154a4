"""A Singer target in plain Python: appends every RECORD line to a JSON-lines file.

Run by examples/generator_to_command.yml (`destination: name: command`):
    python3 examples/command/target.py OUT.jsonl

bizon writes Singer messages on stdin: a SCHEMA line, RECORD lines
({"type":"RECORD","stream","record","record_id","time_extracted"}) and, at each commit, a
STATE line. The target keeps the records since the last STATE in memory; at a STATE it appends
them to the file in one write, fsyncs, and prints the STATE back: bizon commits only then. At
the end of input (EOF: the job is done, or bizon was stopped or killed) it writes what it holds
and exits. Records bizon sent after the last acknowledged STATE are sent again on resume, so
the file may hold a record twice (at-least-once): dedup by record_id.
"""

import json
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "output.jsonl"
if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
pending = []


def write_pending():
    if pending:
        os.write(fd, b"".join(pending))  # one append: never a partial line between two writers
        pending.clear()
    os.fsync(fd)


for raw in sys.stdin.buffer:
    message = json.loads(raw)
    kind = message.get("type")
    if kind == "RECORD":
        pending.append(raw if raw.endswith(b"\n") else raw + b"\n")
    elif kind == "STATE":
        write_pending()
        sys.stdout.write(json.dumps({"type": "STATE", "value": message["value"]}) + "\n")
        sys.stdout.flush()
write_pending()
os.close(fd)
