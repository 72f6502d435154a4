//! `postgres` backend: jobs, cursors and watermarks in PostgreSQL, shared by producers and
//! consumers on several hosts.
//!
//! One run per pipeline: a session-level advisory lock held by a dedicated connection, plus a
//! row in `bizon_locks` with a **fencing token** bumped by every new holder and a heartbeat. A
//! run that finds the lock held by a holder whose heartbeat is older than the lease (paused,
//! partitioned) terminates that holder's sessions (found by their `application_name`), takes the
//! lock and bumps the token; every cursor commit checks the token in its transaction, so the
//! stale run can never commit again.

mod config;
mod schema;

use std::time::Duration;

use bizon_core::config::SyncMode;
use bizon_core::time::now_micros;
use bizon_core::{
    check_chain, fenced_error, Backend, DestinationCursor, Error, Job, JobStatus, Json, Link, Result, StreamKey,
};
use postgres::{Client, Row, Statement};

use super::{hostname, LockGuard};
use crate::pg::{pg_error, run_tag, PgConnection, Prepared};

pub use config::{PostgresBackendSpec, DEFAULT_LEASE_SECONDS, DESCRIPTOR};

pub struct PostgresBackend {
    conn: PgConnection,
    client: Option<Client>,
    /// Statements prepared on `client`. The hot ones (a cursor commit per page, the looks of
    /// consumers waiting for a lane) then skip a round trip and the server's parse and plan.
    prepared: Prepared,
    lease: Duration,
    /// (pipeline, fencing token) while this run holds the pipeline.
    fence: Option<(String, i64)>,
}

fn to_json(s: Option<String>) -> Option<Json> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl PostgresBackend {
    pub fn open(conn: PgConnection, lease: Duration) -> Result<Self> {
        let mut b = PostgresBackend { conn, client: None, prepared: Prepared::default(), lease, fence: None };
        b.migrate()?;
        Ok(b)
    }

    fn t(&self, table: &str) -> String {
        crate::pg::qualified(&self.conn.schema, table)
    }

    fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.prepared.clear();
            self.client = Some(self.conn.connect()?);
        }
        self.client.as_mut().ok_or_else(|| Error::internal("postgres backend: no connection"))
    }

    /// `sql` prepared on the connection (once per connection).
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        self.client()?;
        let Some(client) = self.client.as_mut() else { return Err(Error::internal("postgres backend: no connection")) };
        let r = self.prepared.get(client, sql);
        r.map_err(|e| self.err("preparing a statement", &e))
    }

    fn err(&mut self, what: &str, e: &postgres::Error) -> Error {
        if e.is_closed() || e.code().is_none() {
            self.client = None;
        }
        self.prepared.clear();
        pg_error(&format!("postgres backend ({}): {what}", self.conn.describe()), e)
    }

    /// Inside a transaction: fail unless this run still holds the pipeline's fencing token.
    fn fenced_tx(
        &mut self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> std::result::Result<(), postgres::Error>,
    ) -> Result<()> {
        let fence = self.fence.clone();
        let check = match &fence {
            Some(_) => Some(
                self.statement(&format!("SELECT fence FROM {} WHERE pipeline = $1 FOR SHARE", self.t("bizon_locks")))?,
            ),
            None => None,
        };
        let result = (|| -> std::result::Result<std::result::Result<(), Error>, postgres::Error> {
            let Some(client) = self.client.as_mut() else {
                return Ok(Err(Error::internal("postgres backend: no connection")));
            };
            let mut tx = client.transaction()?;
            if let (Some((pipeline, ours)), Some(check)) = (&fence, &check) {
                let current: Option<i64> = tx.query_opt(check, &[pipeline])?.map(|r| r.get(0));
                if current != Some(*ours) {
                    return Ok(Err(fenced_error(pipeline, *ours, current)));
                }
            }
            f(&mut tx)?;
            tx.commit()?;
            Ok(Ok(()))
        })();
        match result {
            Ok(r) => r,
            Err(e) => Err(self.err("writing state", &e)),
        }
    }

    /// Store `cursor` if it chains onto the stored one as `link` says ([`check_chain`]), in the
    /// fenced transaction: the stored row is locked while it is compared and replaced.
    fn store_cursor(&mut self, job_id: &str, link: Link, c: &DestinationCursor) -> Result<()> {
        let dc = self.t("bizon_destination_cursors");
        let jobs = self.t("bizon_jobs");
        let read_sql = format!("SELECT iteration, done FROM {dc} WHERE job_id = $1");
        let read = self.statement(&read_sql)?;
        let read_locked = self.statement(&format!("{read_sql} FOR UPDATE"))?;
        let insert = |on_conflict: &str| {
            format!(
                "INSERT INTO {dc} (job_id, iteration, pagination, token, records_written, bytes_written, watermark, done, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (job_id) {on_conflict}"
            )
        };
        // no row to lock yet: of two first commits racing, the second inserts nothing
        let insert_first = self.statement(&insert("DO NOTHING"))?;
        let replace = self.statement(&insert(
            "DO UPDATE SET iteration = $2, pagination = $3, token = $4, records_written = $5, \
             bytes_written = $6, watermark = $7, done = $8, updated_at = $9",
        ))?;
        let touch_job = self.statement(&format!("UPDATE {jobs} SET updated_at = $2 WHERE id = $1"))?;
        let mut refused = None;
        let slot = &mut refused;
        self.fenced_tx(|tx| {
            let stored: Option<(i64, bool)> = tx.query_opt(&read_locked, &[&job_id])?.map(|r| (r.get(0), r.get(1)));
            if let Err(e) = check_chain(job_id, link, stored, c) {
                *slot = Some(e);
                return Ok(());
            }
            let stored_rows = tx.execute(
                if stored.is_none() { &insert_first } else { &replace },
                &[
                    &job_id,
                    &c.iteration,
                    &c.pagination.to_string(),
                    &c.token.to_string(),
                    &(c.records_written as i64),
                    &(c.bytes_written as i64),
                    &c.watermark.as_ref().map(Json::to_string),
                    &c.done,
                    &now_micros(),
                ],
            )?;
            if stored_rows == 0 {
                let now: Option<(i64, bool)> = tx.query_opt(&read, &[&job_id])?.map(|r| (r.get(0), r.get(1)));
                *slot = Some(check_chain(job_id, link, now, c).err().unwrap_or_else(|| {
                    Error::permanent(format!("destination cursor for job {job_id}: another writer committed meanwhile"))
                }));
                return Ok(());
            }
            tx.execute(&touch_job, &[&job_id, &now_micros()])?;
            Ok(())
        })?;
        refused.map_or(Ok(()), Err)
    }

    fn job_from_row(r: &Row) -> Job {
        Job {
            id: r.get(0),
            key: StreamKey { pipeline: r.get(1), source: r.get(2), stream: r.get(3) },
            sync_mode: SyncMode::parse(r.get(4)).unwrap_or_default(),
            reset: r.get(5),
            status: JobStatus::parse(r.get(6)).unwrap_or(JobStatus::Failed),
            since: to_json(r.get(7)),
            created_at: r.get(8),
            updated_at: r.get(9),
            pid: r.get::<_, i32>(10) as u32,
            total_records: r.get::<_, Option<i64>>(11).map(|v| v as u64),
            error: r.get(12),
        }
    }

    fn cursor_from_row(r: &Row, at: usize) -> Option<DestinationCursor> {
        let iteration: Option<i64> = r.get(at);
        Some(DestinationCursor {
            iteration: iteration?,
            pagination: to_json(r.get(at + 1)).unwrap_or(Json::Null),
            token: to_json(r.get(at + 2)).unwrap_or(Json::Null),
            records_written: r.get::<_, i64>(at + 3) as u64,
            bytes_written: r.get::<_, i64>(at + 4) as u64,
            watermark: to_json(r.get(at + 5)),
            done: r.get(at + 6),
        })
    }
}

/// The error of a lock held by a live holder (`pid` on `host`), naming its running job.
fn running_error(client: &mut Client, jobs: &str, key: &StreamKey, pid: i32, host: &str) -> Result<Error> {
    let job: Option<String> = client
        .query_opt(
            &format!(
                "SELECT id FROM {jobs} WHERE pipeline = $1 AND status = 'running' ORDER BY created_at DESC LIMIT 1"
            ),
            &[&super::lock_subject(&key.pipeline).0],
        )
        .map_err(|e| pg_error("postgres backend: pipeline lock", &e))?
        .map(|r| r.get(0));
    Ok(Error::config(format!(
        "{} is already running: job {} (pid {pid} on {host}); wait for it to finish or stop it first",
        super::lock_subject(&key.pipeline).1,
        job.as_deref().unwrap_or("unknown")
    )))
}

const JOB_COLS: &str = "j.id, j.pipeline, j.source, j.stream, j.sync_mode, j.reset, j.status, j.since, j.created_at, \
                        j.updated_at, j.pid, j.total_records, j.error";
const CURSOR_COLS: &str = "c.iteration, c.pagination, c.token, c.records_written, c.bytes_written, c.watermark, c.done";

impl Backend for PostgresBackend {
    /// The lock is a session advisory lock on `hashtextextended(lock key)`: held when pg_locks
    /// shows it granted to some session of this database (a bigint key is split into classid and
    /// objid, objsubid 1).
    fn lock_held(&mut self, key: &StreamKey) -> Result<Option<bool>> {
        let lock_key = format!("bizon:{}:{}", self.conn.schema, key.pipeline);
        let sql =
            "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid \
                   AND l.objid = (hashtextextended($1, 0) & 4294967295)::oid)";
        let held = self.statement(sql)?;
        let r = self.client()?.query_one(&held, &[&lock_key]);
        Ok(Some(r.map_err(|e| self.err("reading the lock table", &e))?.get(0)))
    }

    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        let (locks, jobs) = (self.t("bizon_locks"), self.t("bizon_jobs"));
        let map = |e: postgres::Error| pg_error("postgres backend: pipeline lock", &e);
        let lease = self.lease.as_secs_f64();
        // the holder of the lock: pid, host, run tag, seconds since its last heartbeat
        let holder_sql = format!(
            "SELECT pid, host, run_tag, extract(epoch FROM now() - heartbeat_at)::float8 FROM {locks} WHERE pipeline = $1"
        );
        let holder = |r: Row| (r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, f64>(3));
        // A lock whose holder is alive (held, its heartbeat within the lease) is refused without
        // opening a session for it: consumers waiting for a lane ask often.
        if self.lock_held(key)? == Some(true) {
            let of_holder = self.statement(&holder_sql)?;
            let client = self.client()?;
            if let Some((pid, host, _, age)) = client.query_opt(&of_holder, &[&key.pipeline]).map_err(map)?.map(holder)
            {
                if age <= lease {
                    return Err(running_error(client, &jobs, key, pid, &host)?);
                }
            }
        }
        let mut lock_client = self.conn.connect()?;
        let lock_key = format!("bizon:{}:{}", self.conn.schema, key.pipeline);
        for _ in 0..20 {
            let got: bool = lock_client
                .query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&lock_key])
                .map_err(map)?
                .get(0);
            if got {
                let fence: i64 = lock_client
                    .query_one(
                        &format!(
                            "INSERT INTO {locks} (pipeline, fence, pid, host, run_tag, heartbeat_at) VALUES ($1, 1, $2, $3, $4, now()) \
                             ON CONFLICT (pipeline) DO UPDATE SET fence = {locks}.fence + 1, pid = $2, host = $3, run_tag = $4, \
                             heartbeat_at = now() RETURNING fence"
                        ),
                        &[&key.pipeline, &(std::process::id() as i32), &hostname(), &run_tag()],
                    )
                    .map_err(map)?
                    .get(0);
                self.fence = Some((key.pipeline.clone(), fence));
                // The advisory lock lives on `lock_client`'s session: the heartbeat thread keeps it.
                let pipeline = key.pipeline.clone();
                let beat = format!("UPDATE {locks} SET heartbeat_at = now() WHERE pipeline = $1 AND fence = $2");
                let guard = LockGuard::spawn(self.lease / 3, move |release| {
                    if release {
                        let _ = lock_client.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", &[&lock_key]);
                    } else if let Err(e) = lock_client.execute(&beat, &[&pipeline, &fence]) {
                        tracing::warn!(error = %e, "pipeline lock heartbeat failed");
                    }
                })?;
                return Ok(Box::new(guard));
            }
            let Some((pid, host, tag, age)) =
                lock_client.query_opt(&holder_sql, &[&key.pipeline]).map_err(map)?.map(holder)
            else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if age > lease {
                tracing::warn!(pid, host = %host, heartbeat_age_s = age, "the pipeline's holder stopped heart-beating: taking over");
                lock_client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&tag],
                    )
                    .map_err(map)?;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            return Err(running_error(&mut lock_client, &jobs, key, pid, &host)?);
        }
        Err(Error::transient(format!("pipeline `{}`: could not take the lock", key.pipeline)))
    }

    fn check_fence(&mut self) -> Result<()> {
        let Some((pipeline, ours)) = self.fence.clone() else { return Ok(()) };
        let fence = self.statement(&format!("SELECT fence FROM {} WHERE pipeline = $1", self.t("bizon_locks")))?;
        let r = self.client()?.query_opt(&fence, &[&pipeline]);
        let current: Option<i64> = r.map_err(|e| self.err("checking the fencing token", &e))?.map(|r| r.get(0));
        if current == Some(ours) {
            Ok(())
        } else {
            Err(fenced_error(&pipeline, ours, current))
        }
    }

    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM {} j WHERE j.pipeline = $1 AND j.source = $2 AND j.stream = $3 \
             AND j.status IN ('running', 'stopped', 'failed') ORDER BY j.created_at DESC LIMIT 1",
            self.t("bizon_jobs")
        );
        let resumable = self.statement(&sql)?;
        let r = self.client()?.query_opt(&resumable, &[&key.pipeline, &key.source, &key.stream]);
        Ok(r.map_err(|e| self.err("finding a resumable job", &e))?.map(|r| Self::job_from_row(&r)))
    }

    fn create_job(&mut self, job: &Job) -> Result<()> {
        let jobs = self.t("bizon_jobs");
        let job = job.clone();
        self.fenced_tx(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO {jobs} (id, pipeline, source, stream, sync_mode, reset, status, since, created_at, updated_at, pid, total_records) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &job.id,
                    &job.key.pipeline,
                    &job.key.source,
                    &job.key.stream,
                    &job.sync_mode.as_str(),
                    &job.reset,
                    &job.status.as_str(),
                    &job.since.as_ref().map(Json::to_string),
                    &job.created_at,
                    &(job.pid as i32),
                    &job.total_records.map(|v| v as i64),
                ],
            )?;
            Ok(())
        })
    }

    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = $2, error = $3, updated_at = $4, pid = $5 WHERE id = $1",
            self.t("bizon_jobs")
        );
        let (job_id, error) = (job_id.to_owned(), error.map(str::to_owned));
        self.fenced_tx(move |tx| {
            tx.execute(&sql, &[&job_id, &status.as_str(), &error, &now_micros(), &(std::process::id() as i32)])?;
            Ok(())
        })
    }

    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()> {
        let sql =
            format!("UPDATE {} SET total_records = $2, pid = $3, updated_at = $4 WHERE id = $1", self.t("bizon_jobs"));
        let job_id = job_id.to_owned();
        self.fenced_tx(move |tx| {
            tx.execute(&sql, &[&job_id, &total.map(|v| v as i64), &(std::process::id() as i32), &now_micros()])?;
            Ok(())
        })
    }

    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>> {
        let sql = format!("SELECT {CURSOR_COLS} FROM {} c WHERE c.job_id = $1", self.t("bizon_destination_cursors"));
        let read = self.statement(&sql)?;
        let r = self.client()?.query_opt(&read, &[&job_id]);
        Ok(r.map_err(|e| self.err("reading the destination cursor", &e))?.and_then(|r| Self::cursor_from_row(&r, 0)))
    }

    fn destination_cursors(&mut self, job_ids: &[String]) -> Result<Vec<Option<DestinationCursor>>> {
        let sql = format!(
            "SELECT c.job_id, {CURSOR_COLS} FROM {} c WHERE c.job_id = ANY($1)",
            self.t("bizon_destination_cursors")
        );
        let read = self.statement(&sql)?;
        let rows = self.client()?.query(&read, &[&job_ids]);
        let mut found: std::collections::HashMap<String, DestinationCursor> = std::collections::HashMap::new();
        for r in rows.map_err(|e| self.err("reading the destination cursors", &e))? {
            if let Some(c) = Self::cursor_from_row(&r, 1) {
                found.insert(r.get(0), c);
            }
        }
        Ok(job_ids.iter().map(|id| found.remove(id)).collect())
    }

    fn swap_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        self.store_cursor(job_id, link, cursor)
    }

    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (job_id, iteration, pagination, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id) DO UPDATE SET iteration = $2, pagination = $3, updated_at = $4",
            self.t("bizon_source_cursors")
        );
        let save = self.statement(&sql)?;
        let r = self.client()?.execute(&save, &[&job_id, &iteration, &pagination.to_string(), &now_micros()]);
        r.map_err(|e| self.err("saving the source cursor", &e))?;
        Ok(())
    }

    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()> {
        let jobs = self.t("bizon_jobs");
        let streams = self.t("bizon_streams");
        let (job_id, watermark) = (job_id.to_owned(), watermark.map(Json::to_string));
        self.fenced_tx(move |tx| {
            let row = tx.query_one(
                &format!("UPDATE {jobs} SET status = 'succeeded', error = NULL, updated_at = $2 WHERE id = $1 RETURNING pipeline, source, stream"),
                &[&job_id, &now_micros()],
            )?;
            let (p, s, st): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if let Some(w) = watermark {
                tx.execute(
                    &format!(
                        "INSERT INTO {streams} (pipeline, source, stream, watermark, last_job_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (pipeline, source, stream) DO UPDATE SET watermark = $4, last_job_id = $5, updated_at = $6"
                    ),
                    &[&p, &s, &st, &w, &job_id, &now_micros()],
                )?;
            }
            Ok(())
        })
    }

    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>> {
        let sql = format!(
            "SELECT watermark FROM {} WHERE pipeline = $1 AND source = $2 AND stream = $3",
            self.t("bizon_streams")
        );
        let r = self.client()?.query_opt(&sql, &[&key.pipeline, &key.source, &key.stream]);
        Ok(r.map_err(|e| self.err("reading the watermark", &e))?.and_then(|r| to_json(r.get(0))))
    }

    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64> {
        let (streams, jobs) = (self.t("bizon_streams"), self.t("bizon_jobs"));
        let key = key.clone();
        let mut n = 0u64;
        let count = &mut n;
        self.fenced_tx(|tx| {
            tx.execute(
                &format!("DELETE FROM {streams} WHERE pipeline = $1 AND source = $2 AND stream = $3"),
                &[&key.pipeline, &key.source, &key.stream],
            )?;
            *count = tx.execute(
                &format!(
                    "UPDATE {jobs} SET status = 'canceled', error = 'stream reset', updated_at = $4 \
                     WHERE pipeline = $1 AND source = $2 AND stream = $3 AND status IN ('running', 'stopped', 'failed')"
                ),
                &[&key.pipeline, &key.source, &key.stream, &now_micros()],
            )?;
            Ok(())
        })?;
        Ok(n)
    }

    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>> {
        let sql = format!(
            "SELECT {JOB_COLS}, {CURSOR_COLS} FROM {} j LEFT JOIN {} c ON c.job_id = j.id \
             WHERE j.pipeline = $1 ORDER BY j.created_at DESC LIMIT $2",
            self.t("bizon_jobs"),
            self.t("bizon_destination_cursors")
        );
        let r = self.client()?.query(&sql, &[&pipeline, &(limit.min(i64::MAX as usize) as i64)]);
        let rows = r.map_err(|e| self.err("listing jobs", &e))?;
        Ok(rows.iter().map(|r| (Self::job_from_row(r), Self::cursor_from_row(r, 13))).collect())
    }
}

#[cfg(test)]
mod tests;
