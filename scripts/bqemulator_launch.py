"""Start bqemulator 1.4.0 (its CLI's arguments follow) with the fixes the tests need.

Run by scripts/bqemulator.sh with the emulator's virtualenv; each patch says what it fixes.
"""

import concurrent.futures
import functools
import sys
import threading

import bqemulator.storage.engine as engine
import bqemulator.versioning.snapshots as snapshots
import grpc.aio

# Offline, start-up fails downloading DuckDB's `spatial` extension: skip it (GEOGRAPHY is then
# unavailable).
engine.DuckDBEngine._load_spatial = lambda self: None

# Every write copies the whole table into a time-travel snapshot (quadratic: a 1M-row insertAll
# run filled 68 GB of DuckDB temp files): no snapshots (no FOR SYSTEM_TIME AS OF).
snapshots.SnapshotManager.capture = lambda self, *a, **k: None

# The gRPC server runs the (synchronous) Storage Write handlers on asyncio's default executor:
# min(32, cores + 4) threads, 6 here. The handler of an AppendRows call whose writer was killed
# mid-send holds its thread until the call's deadline, so a few killed writers left every later
# AppendRows call unanswered: a pool of 512 threads (idle ones cost nothing).
grpc.aio.server = functools.partial(
    grpc.aio.server, migration_thread_pool=concurrent.futures.ThreadPoolExecutor(512)
)

# REST handlers use the one DuckDB connection on the event-loop thread while Storage Write handlers
# use it on theirs; a DuckDB connection is not safe across threads, and a query on one thread
# beside an append's table registration on another deadlocked the emulator for good. Every use of
# the connection holds one lock (a statement and the fetch of its result through the same proxy).
_LOCK = threading.RLock()


class _LockedConnection:
    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def locked(*args, **kwargs):
            with _LOCK:
                out = attr(*args, **kwargs)
            return self if out is self._conn else out

        return locked


def _connection(self):
    if self._connection is None:
        raise engine.InternalError("DuckDBEngine not started")
    return _LockedConnection(self._connection)


engine.DuckDBEngine.connection = property(_connection)


def _whole(method):
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return locked


# A query and the fetch of its result stay together; an append's register/INSERT/unregister too.
engine.DuckDBEngine.fetch_arrow = _whole(engine.DuckDBEngine.fetch_arrow)

from bqemulator.grpc_api import write_servicer  # noqa: E402

write_servicer.BigQueryWriteHandler._flush_to_target = _whole(
    write_servicer.BigQueryWriteHandler._flush_to_target
)

from bqemulator.cli import main  # noqa: E402

sys.argv[0] = "bqemulator"
sys.exit(main())
