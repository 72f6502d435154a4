//! `sqlite` backend (a local file, the default) and `sqlite_in_memory` (tests).
//!
//! One row per job, one destination cursor per job (replaced at each commit after checking it
//! chains onto the stored one), one watermark per stream. A per-pipeline lock file next to the
//! database, held with an OS file lock, keeps one run per pipeline; the OS drops the lock when
//! the process dies, so a run killed with -9 is taken over by the next one.
//!
//! Fencing, as on PostgreSQL: taking the lock bumps the pipeline's epoch in `bizon_fences`, and
//! every cursor commit and job update checks it in its (IMMEDIATE, so serialized) transaction.
//! The OS lock already keeps a live holder exclusive; the epoch refuses a writer that lost its
//! lock anyway (a lock file removed by hand, a database shared over a network file system, a
//! handle kept after its lock guard was dropped).

mod config;
mod schema;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use bizon_core::config::SyncMode;
use bizon_core::time::now_micros;
use bizon_core::{
    check_chain, fenced_error, Backend, DestinationCursor, Error, Job, JobStatus, Json, Link, Result, StreamKey,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub use config::{SqliteSpec, DEFAULT_DATABASE, DESCRIPTOR, IN_MEMORY};

pub struct SqliteBackend {
    conn: Connection,
    /// Directory-qualified database path; `None` in memory (no cross-process lock then).
    path: Option<PathBuf>,
    /// (lock name, fencing epoch) while this handle holds a pipeline lock.
    fence: Option<(String, i64)>,
}

fn db_err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            Error::transient(format!("sqlite backend: {what}: database is busy"))
        }
        e => Error::permanent(format!("sqlite backend: {what}: {e}")),
    }
}

fn to_json(s: Option<String>) -> Option<Json> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl SqliteBackend {
    /// Open (creating and migrating) the database file at `path`.
    pub fn open(path: PathBuf) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let conn = Connection::open(&path).map_err(db_err("opening the database"))?;
        let mut b = SqliteBackend { conn, path: Some(path), fence: None };
        b.init()?;
        Ok(b)
    }

    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db_err("opening the database"))?;
        let mut b = SqliteBackend { conn, path: None, fence: None };
        b.init()?;
        Ok(b)
    }

    /// Run `f` in an IMMEDIATE transaction that first checks this handle's fencing epoch (when
    /// it holds a lock), and commit it: a stale writer changes nothing.
    fn fenced_tx<T>(&mut self, what: &str, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err(what))?;
        if let Some((lock, ours)) = &self.fence {
            let current = read_fence(&tx, lock)?;
            if current != Some(*ours) {
                return Err(fenced_error(lock, *ours, current));
            }
        }
        let out = f(&tx)?;
        tx.commit().map_err(db_err(what))?;
        Ok(out)
    }

    /// Store `cursor` if it chains onto the stored one as `link` says ([`check_chain`]).
    fn store_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        self.fenced_tx("committing a cursor", |tx| {
            let stored: Option<(i64, bool)> = tx
                .query_row(
                    "SELECT iteration, done FROM bizon_destination_cursors WHERE job_id = ?1",
                    params![job_id],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
                )
                .optional()
                .map_err(db_err("reading the destination cursor"))?;
            check_chain(job_id, link, stored, cursor)?;
            tx.execute(
                "INSERT INTO bizon_destination_cursors (job_id, iteration, pagination, token, records_written, bytes_written, watermark, done, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (job_id) DO UPDATE SET iteration = ?2, pagination = ?3, token = ?4, records_written = ?5, \
                 bytes_written = ?6, watermark = ?7, done = ?8, updated_at = ?9",
                params![
                    job_id,
                    cursor.iteration,
                    cursor.pagination.to_string(),
                    cursor.token.to_string(),
                    cursor.records_written as i64,
                    cursor.bytes_written as i64,
                    cursor.watermark.as_ref().map(Json::to_string),
                    cursor.done as i64,
                    now_micros(),
                ],
            )
            .map_err(db_err("committing a cursor"))?;
            tx.execute("UPDATE bizon_jobs SET updated_at = ?2 WHERE id = ?1", params![job_id, now_micros()])
                .map_err(db_err("committing a cursor"))?;
            Ok(())
        })
    }

    fn lock_path(&self, pipeline: &str) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        let slug: String =
            pipeline.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(48).collect();
        let digest =
            pipeline.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut name = path.file_name()?.to_os_string();
        name.push(format!(".{slug}-{:08x}.lock", digest as u32));
        Some(path.with_file_name(name))
    }

    /// Take the pipeline's OS file lock (nothing in memory: a single handle), naming the holder
    /// when it is taken.
    fn lock_file(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        let Some(path) = self.lock_path(&key.pipeline) else { return Ok(Box::new(())) };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid: Option<u32> = holder.trim().parse().ok();
                let job: Option<String> = self
                    .conn
                    .query_row(
                        "SELECT id FROM bizon_jobs WHERE pipeline = ?1 AND status = 'running' ORDER BY created_at DESC LIMIT 1",
                        params![super::lock_subject(&key.pipeline).0],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err("reading the running job"))?;
                return Err(Error::config(format!(
                    "{} is already running: job {} (pid {}); wait for it to finish or stop it first",
                    super::lock_subject(&key.pipeline).1,
                    job.as_deref().unwrap_or("unknown"),
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into())
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{pid}"))
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(Box::new(PipelineLock(file)))
    }

    fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
        Ok(Job {
            id: r.get(0)?,
            key: StreamKey { pipeline: r.get(1)?, source: r.get(2)?, stream: r.get(3)? },
            sync_mode: SyncMode::parse(&r.get::<_, String>(4)?).unwrap_or_default(),
            reset: r.get::<_, i64>(5)? != 0,
            status: JobStatus::parse(&r.get::<_, String>(6)?).unwrap_or(JobStatus::Failed),
            since: to_json(r.get(7)?),
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
            pid: r.get::<_, i64>(10)? as u32,
            total_records: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
            error: r.get(12)?,
        })
    }

    fn cursor_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<DestinationCursor>> {
        let Some(iteration) = r.get::<_, Option<i64>>(at)? else { return Ok(None) };
        Ok(Some(DestinationCursor {
            iteration,
            pagination: to_json(r.get(at + 1)?).unwrap_or(Json::Null),
            token: to_json(r.get(at + 2)?).unwrap_or(Json::Null),
            records_written: r.get::<_, i64>(at + 3)? as u64,
            bytes_written: r.get::<_, i64>(at + 4)? as u64,
            watermark: to_json(r.get(at + 5)?),
            done: r.get::<_, i64>(at + 6)? != 0,
        }))
    }
}

const JOB_COLS: &str =
    "j.id, j.pipeline, j.source, j.stream, j.sync_mode, j.reset, j.status, j.since, j.created_at, j.updated_at, j.pid, j.total_records, j.error";
const CURSOR_COLS: &str = "c.iteration, c.pagination, c.token, c.records_written, c.bytes_written, c.watermark, c.done";

/// Holds the pipeline's lock file open (and locked) for the run.
struct PipelineLock(#[allow(dead_code)] File);

fn read_fence(conn: &Connection, lock: &str) -> Result<Option<i64>> {
    conn.query_row("SELECT fence FROM bizon_fences WHERE pipeline = ?1", params![lock], |r| r.get(0))
        .optional()
        .map_err(db_err("reading the fencing token"))
}

impl Backend for SqliteBackend {
    /// Held when another open file description holds the lock file's lock (a probe that takes
    /// and drops it otherwise).
    fn lock_held(&mut self, key: &StreamKey) -> Result<Option<bool>> {
        let Some(path) = self.lock_path(&key.pipeline) else { return Ok(None) };
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(false)),
            Err(e) => return Err(Error::io(format!("opening lock file {}", path.display()), e)),
        };
        Ok(Some(matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))))
    }

    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        let guard = self.lock_file(key)?;
        // the new holder's epoch: every earlier holder's fenced writes are refused from now on
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err("taking the fencing token"))?;
        let fence: i64 = tx
            .query_row(
                "INSERT INTO bizon_fences (pipeline, fence, pid, updated_at) VALUES (?1, 1, ?2, ?3) \
                 ON CONFLICT (pipeline) DO UPDATE SET fence = fence + 1, pid = ?2, updated_at = ?3 RETURNING fence",
                params![key.pipeline, std::process::id() as i64, now_micros()],
                |r| r.get(0),
            )
            .map_err(db_err("taking the fencing token"))?;
        tx.commit().map_err(db_err("taking the fencing token"))?;
        self.fence = Some((key.pipeline.clone(), fence));
        Ok(guard)
    }

    fn check_fence(&mut self) -> Result<()> {
        let Some((lock, ours)) = self.fence.clone() else { return Ok(()) };
        let current = read_fence(&self.conn, &lock)?;
        if current == Some(ours) {
            Ok(())
        } else {
            Err(fenced_error(&lock, ours, current))
        }
    }

    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {JOB_COLS} FROM bizon_jobs j WHERE j.pipeline = ?1 AND j.source = ?2 AND j.stream = ?3 \
                     AND j.status IN ('running', 'stopped', 'failed') ORDER BY j.created_at DESC LIMIT 1"
                ),
                params![key.pipeline, key.source, key.stream],
                Self::job_from_row,
            )
            .optional()
            .map_err(db_err("finding a resumable job"))
    }

    fn create_job(&mut self, job: &Job) -> Result<()> {
        self.fenced_tx("creating a job", |tx| {
            tx.execute(
                "INSERT INTO bizon_jobs (id, pipeline, source, stream, sync_mode, reset, status, since, created_at, updated_at, pid, total_records) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
                params![
                    job.id,
                    job.key.pipeline,
                    job.key.source,
                    job.key.stream,
                    job.sync_mode.as_str(),
                    job.reset as i64,
                    job.status.as_str(),
                    job.since.as_ref().map(Json::to_string),
                    job.created_at,
                    job.pid as i64,
                    job.total_records.map(|v| v as i64),
                ],
            )
            .map_err(db_err("creating a job"))?;
            Ok(())
        })
    }

    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()> {
        self.fenced_tx("updating a job", |tx| {
            tx.execute(
                "UPDATE bizon_jobs SET status = ?2, error = ?3, updated_at = ?4, pid = ?5 WHERE id = ?1",
                params![job_id, status.as_str(), error, now_micros(), std::process::id() as i64],
            )
            .map_err(db_err("updating a job"))?;
            Ok(())
        })
    }

    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()> {
        self.fenced_tx("updating a job", |tx| {
            tx.execute(
                "UPDATE bizon_jobs SET total_records = ?2, pid = ?3, updated_at = ?4 WHERE id = ?1",
                params![job_id, total.map(|v| v as i64), std::process::id() as i64, now_micros()],
            )
            .map_err(db_err("updating a job"))?;
            Ok(())
        })
    }

    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>> {
        let sql = format!("SELECT {CURSOR_COLS} FROM bizon_destination_cursors c WHERE c.job_id = ?1");
        Ok(self
            .conn
            .query_row(&sql, params![job_id], |r| Self::cursor_from_row(r, 0))
            .optional()
            .map_err(db_err("reading the destination cursor"))?
            .flatten())
    }

    fn swap_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        self.store_cursor(job_id, link, cursor)
    }

    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO bizon_source_cursors (job_id, iteration, pagination, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (job_id) DO UPDATE SET iteration = ?2, pagination = ?3, updated_at = ?4",
                params![job_id, iteration, pagination.to_string(), now_micros()],
            )
            .map_err(db_err("saving the source cursor"))?;
        Ok(())
    }

    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()> {
        self.fenced_tx("completing a job", |tx| {
        let (pipeline, source, stream): (String, String, String) = tx
            .query_row("SELECT pipeline, source, stream FROM bizon_jobs WHERE id = ?1", params![job_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err("completing a job"))?;
        tx.execute(
            "UPDATE bizon_jobs SET status = 'succeeded', error = NULL, updated_at = ?2 WHERE id = ?1",
            params![job_id, now_micros()],
        )
        .map_err(db_err("completing a job"))?;
        if let Some(w) = watermark {
            tx.execute(
                "INSERT INTO bizon_streams (pipeline, source, stream, watermark, last_job_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (pipeline, source, stream) DO UPDATE SET watermark = ?4, last_job_id = ?5, updated_at = ?6",
                params![pipeline, source, stream, w.to_string(), job_id, now_micros()],
            )
            .map_err(db_err("storing the watermark"))?;
        }
        Ok(())
        })
    }

    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>> {
        let w: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT watermark FROM bizon_streams WHERE pipeline = ?1 AND source = ?2 AND stream = ?3",
                params![key.pipeline, key.source, key.stream],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("reading the watermark"))?;
        Ok(to_json(w.flatten()))
    }

    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64> {
        self.fenced_tx("resetting a stream", |tx| {
            tx.execute(
                "DELETE FROM bizon_streams WHERE pipeline = ?1 AND source = ?2 AND stream = ?3",
                params![key.pipeline, key.source, key.stream],
            )
            .map_err(db_err("resetting a stream"))?;
            let n = tx
                .execute(
                    "UPDATE bizon_jobs SET status = 'canceled', error = 'stream reset', updated_at = ?4 \
                 WHERE pipeline = ?1 AND source = ?2 AND stream = ?3 AND status IN ('running', 'stopped', 'failed')",
                    params![key.pipeline, key.source, key.stream, now_micros()],
                )
                .map_err(db_err("resetting a stream"))?;
            Ok(n as u64)
        })
    }

    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>> {
        let sql = format!(
            "SELECT {JOB_COLS}, {CURSOR_COLS} FROM bizon_jobs j LEFT JOIN bizon_destination_cursors c ON c.job_id = j.id \
             WHERE j.pipeline = ?1 ORDER BY j.created_at DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(db_err("listing jobs"))?;
        let rows = stmt
            .query_map(params![pipeline, limit as i64], |r| Ok((Self::job_from_row(r)?, Self::cursor_from_row(r, 13)?)))
            .map_err(db_err("listing jobs"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing jobs"))
    }
}

#[cfg(test)]
mod tests;
