//! The sqlite backend's tables: the migrations that create them, and opening a database (WAL
//! pragmas, the schema version check, migrating an older database).

use bizon_core::{Error, Result};

use super::{db_err, SqliteBackend};

pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const MIGRATION_1: &str = "
CREATE TABLE IF NOT EXISTS bizon_jobs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    sync_mode TEXT NOT NULL,
    reset INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    since TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    total_records INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS bizon_jobs_by_stream ON bizon_jobs (pipeline, source, stream, status);
CREATE TABLE IF NOT EXISTS bizon_destination_cursors (
    job_id TEXT PRIMARY KEY REFERENCES bizon_jobs (id),
    iteration INTEGER NOT NULL,
    pagination TEXT NOT NULL,
    token TEXT NOT NULL,
    records_written INTEGER NOT NULL,
    bytes_written INTEGER NOT NULL,
    watermark TEXT,
    done INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bizon_source_cursors (
    job_id TEXT PRIMARY KEY REFERENCES bizon_jobs (id),
    iteration INTEGER NOT NULL,
    pagination TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bizon_streams (
    pipeline TEXT NOT NULL,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    watermark TEXT,
    last_job_id TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (pipeline, source, stream)
);
";

/// Version 2: a fencing epoch per lock name (a pipeline, or `<pipeline>#<role>`).
const MIGRATION_2: &str = "
CREATE TABLE IF NOT EXISTS bizon_fences (
    pipeline TEXT PRIMARY KEY,
    fence INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

impl SqliteBackend {
    pub(super) fn init(&mut self) -> Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err("busy timeout"))?;
        if self.path.is_some() {
            // WAL keeps readers (`bizon job list`) off the writer's back; NORMAL is durable
            // against a killed process, and a cursor lost to a power cut only rolls back to an
            // earlier commit, which the destinations' truncate-on-resume makes harmless.
            // switching to WAL takes an exclusive lock without waiting on the busy handler: two
            // processes opening a new database together (producer and consumers) retry briefly
            let mut tries = 0;
            loop {
                match self.conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") {
                    Err(e) if tries < 100 && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    r => break r.map_err(db_err("setting pragmas"))?,
                }
            }
        }
        let version: i64 =
            self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err("reading schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(Error::config(format!(
                "sqlite backend: database schema version {version} is newer than this bizon ({SCHEMA_VERSION}); upgrade bizon"
            )));
        }
        if version < SCHEMA_VERSION {
            // IMMEDIATE: concurrent openers queue on the write lock instead of failing busy; the
            // version is read again inside, since another opener may have migrated meanwhile
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err("migrating"))?;
            let version: i64 =
                tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err("reading schema version"))?;
            for (to, sql) in [(1, MIGRATION_1), (2, MIGRATION_2)] {
                if version < to {
                    tx.execute_batch(sql).map_err(db_err(&format!("migrating to version {to}")))?;
                }
            }
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).map_err(db_err("migrating"))?;
            tx.commit().map_err(db_err("migrating"))?;
        }
        Ok(())
    }
}
