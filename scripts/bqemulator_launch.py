"""Start bqemulator 1.4.0 (its CLI's arguments follow) with the fixes the tests need.

Run by scripts/bqemulator.sh with the emulator's virtualenv; each patch says what it fixes.
"""

import concurrent.futures
import functools
import pathlib
import sys
import threading

import bqemulator.storage.engine as engine
import bqemulator.versioning.snapshots as snapshots
import grpc.aio

# Offline, every `INSTALL spatial` (start-up, the WKT conversions) fails downloading DuckDB's
# extension for GEOGRAPHY: install the copy PyPI's `duckdb-extension-spatial` ships for this DuckDB
# version (scripts/bqemulator.sh installs it) into DuckDB's extension directory, where INSTALL finds it.
def _install_spatial():
    import duckdb
    import duckdb_extension_spatial

    root = pathlib.Path(duckdb_extension_spatial.__file__).parent
    duckdb.connect().execute(f"INSTALL '{next(root.glob('extensions/*/spatial.duckdb_extension'))}'")


_install_spatial()

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

# Storage Write builds a table's Arrow schema from its columns' names, types and modes only, so a
# RECORD column became a STRUCT with no fields and every append to it failed ("Attempted to
# convert a STRUCT with no fields"): build it with the nested fields, as the REST path does.
from bqemulator.api.routes import tabledata  # noqa: E402


def _table_arrow_schema(table_meta):
    fields = tabledata._fields_raw_from_schema(table_meta.schema_.fields)
    return tabledata._build_arrow_schema(fields)


write_servicer._table_arrow_schema = _table_arrow_schema

# DuckDB has no decimal wider than 38 digits, so creating a table with a BIGNUMERIC column failed
# (DECIMAL(76, 38)): keep BIGNUMERIC as DECIMAL(38, 18) here (20 integer and 18 fraction digits;
# real BigQuery holds 38 and 38).
import bqemulator.storage.type_map as type_map  # noqa: E402
import pyarrow  # noqa: E402

type_map._BQ_TO_DUCKDB["BIGNUMERIC"] = "DECIMAL(38, 18)"
_scalar_arrow = tabledata._bq_type_to_arrow
tabledata._bq_type_to_arrow = lambda t: (
    pyarrow.decimal128(38, 18) if t.upper() == "BIGNUMERIC" else _scalar_arrow(t)
)

from bqemulator.cli import main  # noqa: E402

sys.argv[0] = "bqemulator"
sys.exit(main())
