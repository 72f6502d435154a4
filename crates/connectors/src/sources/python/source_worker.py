# bizon-rs's worker for custom Python sources (`--custom-source FILE.py`, `source_file_path`):
# loads the file's AbstractSource subclass for the stream, as bizon does, and answers the run's
# requests for pages. Started once per run (`python3 -c <this file>`). Protocol on its pipes:
#   stdin, first line:  {"shim": DIR, "file": PATH, "stream": NAME, "config": {the source: mapping}}
#   stdout, reply:      {"class": NAME} | "!" + json error
#   stdin, a request:   {"op": "total"} | {"op": "get", "pagination": {...} | null, "state": {...} | null}
#   stdout, "total":    {"total": N | null}
#   stdout, "get":      {"next": {...}, "n": N, "bytes": B} then B bytes, one line per record:
#                       json.dumps(id) TAB microseconds since the epoch TAB the record as JSON
#   an error:           "!" + json.dumps({"stage", "error", "where", "transient"})
# A closed stdin ends the worker. What the source prints goes to stderr (the run's log).
#
# `bizon` resolves to the stand-in package bizon-rs ships (DIR), whether or not bizon is installed.
import datetime
import decimal
import importlib.util
import inspect
import json
import os
import signal
import sys
import traceback

signal.signal(signal.SIGINT, signal.SIG_IGN)

proto_in = sys.stdin.buffer
proto_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
TRANSIENT = {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError", "ProtocolError"}
source_file = ""


def reply(head, body=b""):
    proto_out.write(head + b"\n" + body)
    proto_out.flush()


def last_line(exc):
    errors = getattr(exc, "errors", None)
    if callable(errors) and hasattr(exc, "title"):  # pydantic's ValidationError: one line per field
        try:
            fields = ["%s: %s" % (".".join(str(p) for p in e["loc"]), e["msg"]) for e in errors()]
            return "invalid %s: %s" % (exc.title, "; ".join(fields))
        except Exception:
            pass
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def user_frame(exc):
    """file:line in function, of the deepest frame in the custom source's file."""
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == source_file:
            where = "%s:%s in %s()" % (os.path.basename(frame.filename), frame.lineno, frame.name)
    return where


def transient(exc):
    if any(cls.__name__ in TRANSIENT for cls in type(exc).__mro__):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def fail(stage, exc):
    error = {"stage": stage, "error": last_line(exc), "where": user_frame(exc), "transient": transient(exc)}
    reply(b"!" + json.dumps(error).encode())


def default(value):
    # what bizon's orjson writes natively, or through its `default`
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    raise TypeError("Type is not JSON serializable: %s" % type(value).__name__)


def micros(ts):
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    return (ts - EPOCH) // datetime.timedelta(microseconds=1)


def load(setup):
    global source_file
    sys.path.insert(0, setup["shim"])
    from bizon.source.source import AbstractSource

    source_file = os.path.abspath(setup["file"])
    name = "bizon_custom_source_" + os.path.splitext(os.path.basename(source_file))[0]
    spec = importlib.util.spec_from_file_location(name, source_file)
    if spec is None:
        raise ImportError("cannot import %s: not a Python file" % setup["file"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    stream, streams = setup["stream"], []
    for obj in list(vars(module).values()):
        if (
            inspect.isclass(obj)
            and issubclass(obj, AbstractSource)
            and obj is not AbstractSource
            and obj.__module__ == name
            and not inspect.isabstract(obj)
        ):
            if stream in obj.streams():
                config = obj.get_config_class().model_validate(setup["config"])
                return obj(config)
            streams.extend(obj.streams())
    if not streams:
        raise ValueError("no AbstractSource subclass in %s" % setup["file"])
    raise ValueError("stream %r not found. Available streams are %s" % (stream, streams))


def main():
    setup = json.loads(proto_in.readline())
    try:
        source = load(setup)
    except Exception as e:
        fail("load", e)
        return
    reply(json.dumps({"class": type(source).__name__}).encode())
    from bizon.source.models import SourceIncrementalState

    while True:
        line = proto_in.readline()
        if not line:
            return
        req = json.loads(line)
        if req["op"] == "total":
            try:
                reply(json.dumps({"total": source.get_total_records_count()}).encode())
            except Exception as e:
                fail("get_total_records_count", e)
            continue
        stage = "get"
        try:
            pagination = req.get("pagination") or None
            if req.get("state") is not None:
                stage = "get_records_after"
                page = source.get_records_after(SourceIncrementalState(**req["state"]), pagination)
                if page is None:
                    raise NotImplementedError("the source does not implement get_records_after (incremental)")
            else:
                page = source.get(pagination)
            stage = "serializing a record"
            lines = []
            for r in page.records:
                data = json.dumps(r.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)
                lines.append("%s\t%d\t%s" % (json.dumps(r.id), micros(r.timestamp), data))
            body = ("\n".join(lines) + "\n").encode() if lines else b""
            head = {"next": page.next_pagination or {}, "n": len(lines), "bytes": len(body)}
            reply(json.dumps(head, default=default).encode(), body)
        except Exception as e:
            fail(stage, e)


main()
