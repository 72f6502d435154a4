# bizon-rs's Python worker: runs bizon's inline `transforms:` on whole pages of records.
#
# Started once per consumer (`python3 -c <this file>`), it lives as long as the run. Protocol on
# the pipes it inherits (every line ends with "\n"):
#   stdin, first line:   {"transforms": [{"label": ..., "python": ...}, ...]}
#   stdout, reply:       "ok" | "!" + json.dumps(["compile", index, "SyntaxError: ... (line N)"])
#   stdin, each page:    "<byte count>" then that many bytes: a JSON array of the page's records
#   stdout, each page:   "<line count> <byte count>" then that many bytes: one line per record,
#                        the transformed record as bizon writes it (json.dumps(data)), or
#                        "!" + json.dumps([index of the failing transform, or -1 for json.dumps,
#                        "ValueError: ..."])
# A closed stdin ends the worker. What the transforms print goes to stderr (the run's log), so
# it cannot corrupt the replies.
#
# Each transform behaves as in bizon 0.6.4 (bizon/transform/transform.py): its code, dedented,
# runs with `exec(code, {}, {"data": record})` (fresh globals and locals per record), and the
# record becomes `locals["data"]` afterwards, so mutating `data` and re-assigning it both work.
# The code is compiled once instead of once per record: the same code object, the same result.
import json
import os
import signal
import sys
import textwrap
import traceback

# The run handles Ctrl-C and SIGTERM, then closes stdin: the worker must not die first.
signal.signal(signal.SIGINT, signal.SIG_IGN)

proto_in = sys.stdin.buffer
proto_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr


def last_line(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    text = "".join(lines).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def reply(head, body=b""):
    proto_out.write(head + b"\n" + body)
    proto_out.flush()


def main():
    setup = json.loads(proto_in.readline())
    codes = []
    for i, t in enumerate(setup["transforms"]):
        try:
            codes.append(compile(textwrap.dedent(t["python"]), "<transform " + t["label"] + ">", "exec"))
        except SyntaxError as e:
            where = " (line %s of its code)" % e.lineno if e.lineno else ""
            reply(b"!" + json.dumps(["compile", i, "SyntaxError: %s%s" % (e.msg, where)]).encode())
            return
    reply(b"ok")
    dumps = json.dumps
    while True:
        head = proto_in.readline()
        if not head:
            return
        records = json.loads(proto_in.read(int(head)))
        out = []
        for data in records:
            index = 0
            try:
                for index, code in enumerate(codes):
                    local_vars = {"data": data}
                    exec(code, {}, local_vars)
                    data = local_vars["data"]
            except Exception as e:
                out.append("!" + dumps([index, last_line(e)]))
                continue
            try:
                # bizon's json.dumps(data), refusing NaN / Infinity (not JSON: no destination reads them)
                out.append(dumps(data, allow_nan=False))
            except Exception as e:
                out.append("!" + dumps([-1, last_line(e)]))
        body = ("\n".join(out) + "\n").encode() if out else b""
        reply(b"%d %d" % (len(out), len(body)), body)


main()
