//! `bigquery` backend: jobs, cursors and watermarks in a BigQuery dataset (bizon's `database` =
//! project, `schema` = dataset), shared by processes on several hosts.
//!
//! BigQuery has no row locks and (over REST, statement by statement) no transactions, so every
//! state change is one conditional DML statement whose affected-row count says whether it took:
//! a cursor commit is a compare-and-swap (`UPDATE … WHERE iteration = <the one it follows>`, or
//! an `INSERT … WHERE NOT EXISTS` for the first link) that also requires this run's fencing token
//! to be the pipeline's current one. The pipeline lock is a lease row (`bizon_locks`): taking it
//! bumps the token; a heartbeat keeps it; a holder is taken over when it released the lock, when
//! its heartbeat is older than `lease_seconds`, or at once when it was a process of this host
//! that no longer exists (a kill -9 does not block the next run for the lease).
//!
//! Tables are bizon-rs's own (`bizon_jobs`, `bizon_destination_cursors`, `bizon_source_cursors`,
//! `bizon_streams`, `bizon_locks`, as in the postgres backend), not bizon's.

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bizon_core::config::SyncMode;
use bizon_core::time::now_micros;
use bizon_core::{
    check_chain, fenced_error, Backend, DestinationCursor, Error, Job, JobStatus, Json, Link, Result, StreamKey,
};

pub use config::{BigQueryBackendSpec, DESCRIPTOR};

use super::{hostname, LockGuard};
use crate::google::bigquery::{sql_string, BigQuery, QueryResult};

const TABLES: [(&str, &str); 5] = [
    (
        "bizon_jobs",
        "id STRING NOT NULL, pipeline STRING NOT NULL, source STRING NOT NULL, stream STRING NOT NULL, \
         sync_mode STRING NOT NULL, reset BOOL NOT NULL, status STRING NOT NULL, since STRING, \
         created_at INT64 NOT NULL, updated_at INT64 NOT NULL, pid INT64 NOT NULL, total_records INT64, error STRING",
    ),
    (
        "bizon_destination_cursors",
        "job_id STRING NOT NULL, iteration INT64 NOT NULL, pagination STRING NOT NULL, token STRING NOT NULL, \
         records_written INT64 NOT NULL, bytes_written INT64 NOT NULL, watermark STRING, done BOOL NOT NULL, \
         updated_at INT64 NOT NULL",
    ),
    (
        "bizon_source_cursors",
        "job_id STRING NOT NULL, iteration INT64 NOT NULL, pagination STRING NOT NULL, updated_at INT64 NOT NULL",
    ),
    (
        "bizon_streams",
        "pipeline STRING NOT NULL, source STRING NOT NULL, stream STRING NOT NULL, watermark STRING, \
         last_job_id STRING, updated_at INT64 NOT NULL",
    ),
    (
        "bizon_locks",
        "pipeline STRING NOT NULL, fence INT64 NOT NULL, holder STRING NOT NULL, pid INT64 NOT NULL, \
         host STRING NOT NULL, heartbeat_at TIMESTAMP NOT NULL, released BOOL NOT NULL",
    ),
];

pub struct BigQueryBackend {
    bq: Arc<BigQuery>,
    /// `project.dataset`, for messages.
    place: String,
    dataset: String,
    lease: Duration,
    /// (lock name, fencing token) while this handle holds a pipeline.
    fence: Option<(String, i64)>,
}

/// Whether a process of this host is gone (Linux: no `/proc/<pid>`); elsewhere never assumed.
fn process_gone(pid: i64) -> bool {
    cfg!(target_os = "linux") && pid > 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A cell as text / number / flag (the REST API gives every cell as a string or null).
fn text(c: &Json) -> Option<String> {
    c.as_str().map(str::to_owned)
}
fn int(c: &Json) -> Option<i64> {
    c.as_str().and_then(|s| s.parse().ok()).or_else(|| c.as_i64())
}
fn flag(c: &Json) -> bool {
    c.as_str() == Some("true") || c.as_bool() == Some(true)
}
fn json_cell(c: &Json) -> Option<Json> {
    c.as_str().and_then(|s| serde_json::from_str(s).ok())
}
fn opt_string(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_owned(), sql_string)
}
fn opt_int(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".to_owned(), |v| v.to_string())
}

const JOB_COLS: &str = "j.id, j.pipeline, j.source, j.stream, j.sync_mode, j.reset, j.status, j.since, j.created_at, \
                        j.updated_at, j.pid, j.total_records, j.error";
const CURSOR_COLS: &str = "c.iteration, c.pagination, c.token, c.records_written, c.bytes_written, c.watermark, c.done";

fn job_from_row(r: &[Json]) -> Job {
    Job {
        id: text(&r[0]).unwrap_or_default(),
        key: StreamKey {
            pipeline: text(&r[1]).unwrap_or_default(),
            source: text(&r[2]).unwrap_or_default(),
            stream: text(&r[3]).unwrap_or_default(),
        },
        sync_mode: text(&r[4]).and_then(|s| SyncMode::parse(&s)).unwrap_or_default(),
        reset: flag(&r[5]),
        status: text(&r[6]).and_then(|s| JobStatus::parse(&s)).unwrap_or(JobStatus::Failed),
        since: json_cell(&r[7]),
        created_at: int(&r[8]).unwrap_or_default(),
        updated_at: int(&r[9]).unwrap_or_default(),
        pid: int(&r[10]).unwrap_or_default() as u32,
        total_records: int(&r[11]).map(|v| v as u64),
        error: text(&r[12]),
    }
}

fn cursor_from_row(r: &[Json], at: usize) -> Option<DestinationCursor> {
    Some(DestinationCursor {
        iteration: int(&r[at])?,
        pagination: json_cell(&r[at + 1]).unwrap_or(Json::Null),
        token: json_cell(&r[at + 2]).unwrap_or(Json::Null),
        records_written: int(&r[at + 3]).unwrap_or_default() as u64,
        bytes_written: int(&r[at + 4]).unwrap_or_default() as u64,
        watermark: json_cell(&r[at + 5]),
        done: flag(&r[at + 6]),
    })
}

impl BigQueryBackend {
    /// Open the dataset (created when missing if `create` says so) and its tables.
    pub fn open(bq: BigQuery, dataset: &str, create: bool, location: Option<&str>, lease: Duration) -> Result<Self> {
        let place = format!("{}.{dataset}", bq.project);
        let b = BigQueryBackend { bq: Arc::new(bq), place, dataset: dataset.to_owned(), lease, fence: None };
        b.migrate(create, location)?;
        Ok(b)
    }

    fn migrate(&self, create: bool, location: Option<&str>) -> Result<()> {
        let project = self.bq.project.clone();
        if !self.bq.dataset_exists(&project, &self.dataset)? {
            if !create {
                return Err(Error::config(format!(
                    "bigquery backend: the dataset {} does not exist (create it, or set `create_schema: true` under \
                     engine.backend.config)",
                    self.place
                )));
            }
            tracing::info!(dataset = %self.place, "bigquery backend: creating the dataset");
            self.bq.create_dataset(&project, &self.dataset, location)?;
        }
        let have = self.query(
            &format!("SELECT table_name FROM `{}`.INFORMATION_SCHEMA.TABLES", self.place),
            "listing the state tables",
        )?;
        let have: Vec<String> = have.rows.iter().filter_map(|r| text(r.first()?)).collect();
        for (table, columns) in TABLES {
            if !have.iter().any(|t| t == table) {
                self.query(
                    &format!("CREATE TABLE IF NOT EXISTS {} ({columns})", self.t(table)),
                    &format!("creating {table}"),
                )?;
            }
        }
        Ok(())
    }

    fn t(&self, table: &str) -> String {
        format!("`{}.{table}`", self.place)
    }

    fn query(&self, sql: &str, what: &str) -> Result<QueryResult> {
        self.bq.query(sql).map_err(|e| e.context(format!("bigquery backend ({}): {what}", self.place)))
    }

    /// Rows a DML statement changed.
    fn dml(&self, sql: &str, what: &str) -> Result<u64> {
        Ok(self.query(sql, what)?.affected.unwrap_or(0))
    }

    /// The condition "this handle still holds its pipeline" (always true without a lock).
    fn fence_cond(&self) -> String {
        match &self.fence {
            Some((lock, ours)) => format!(
                "(SELECT MAX(fence) FROM {} WHERE pipeline = {}) = {ours}",
                self.t("bizon_locks"),
                sql_string(lock)
            ),
            None => "TRUE".into(),
        }
    }

    /// After a fenced statement changed nothing: the fencing error if the token moved on.
    fn fenced_now(&self) -> Result<()> {
        let Some((lock, ours)) = self.fence.clone() else { return Ok(()) };
        let current = self.current_fence(&lock)?;
        if current == Some(ours) {
            Ok(())
        } else {
            Err(fenced_error(&lock, ours, current))
        }
    }

    fn current_fence(&self, lock: &str) -> Result<Option<i64>> {
        let r = self.query(
            &format!("SELECT fence FROM {} WHERE pipeline = {}", self.t("bizon_locks"), sql_string(lock)),
            "reading the fencing token",
        )?;
        Ok(r.rows.first().and_then(|r| int(&r[0])))
    }

    /// A fenced UPDATE / INSERT: when it changed nothing, the fencing error if the token moved.
    fn fenced_dml(&self, sql: &str, what: &str) -> Result<u64> {
        let n = self.dml(sql, what)?;
        if n == 0 {
            self.fenced_now()?;
        }
        Ok(n)
    }

    fn stored(&self, job_id: &str) -> Result<Option<(i64, bool)>> {
        let r = self.query(
            &format!(
                "SELECT iteration, done FROM {} WHERE job_id = {}",
                self.t("bizon_destination_cursors"),
                sql_string(job_id)
            ),
            "reading the destination cursor",
        )?;
        Ok(r.rows.first().and_then(|r| Some((int(&r[0])?, flag(&r[1])))))
    }

    /// The pipeline's lock row.
    fn lock_row(&self, lock: &str) -> Result<Option<Holder>> {
        let r = self.query(
            &format!(
                "SELECT fence, holder, pid, host, TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), heartbeat_at, MILLISECOND) \
                 FROM {} WHERE pipeline = {}",
                self.t("bizon_locks"),
                sql_string(lock)
            ),
            "reading the pipeline lock",
        )?;
        Ok(r.rows.first().map(|r| Holder {
            fence: int(&r[0]).unwrap_or_default(),
            tag: text(&r[1]).unwrap_or_default(),
            pid: int(&r[2]).unwrap_or_default(),
            host: text(&r[3]).unwrap_or_default(),
            age_ms: int(&r[4]).unwrap_or_default(),
        }))
    }
}

/// A pipeline's lock row.
struct Holder {
    fence: i64,
    /// The holding handle's tag (host, pid, time).
    tag: String,
    pid: i64,
    host: String,
    /// Milliseconds since its last heartbeat.
    age_ms: i64,
}

impl Backend for BigQueryBackend {
    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        let lock = key.pipeline.clone();
        let locks = self.t("bizon_locks");
        let (host, pid) = (hostname(), std::process::id() as i64);
        let tag = format!("{}:{pid}:{:x}", host, now_micros());
        let lease_ms = self.lease.as_millis() as i64;
        for _ in 0..10 {
            // Take the row when it is free: missing, released, or its lease ran out.
            let take = format!(
                "MERGE {locks} l USING (SELECT {p} AS pipeline) s ON l.pipeline = s.pipeline \
                 WHEN NOT MATCHED THEN INSERT (pipeline, fence, holder, pid, host, heartbeat_at, released) \
                   VALUES ({p}, 1, {tag}, {pid}, {host}, CURRENT_TIMESTAMP(), FALSE) \
                 WHEN MATCHED AND (l.released OR l.heartbeat_at < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {lease_ms} MILLISECOND)) \
                   THEN UPDATE SET fence = l.fence + 1, holder = {tag}, pid = {pid}, host = {host}, \
                   heartbeat_at = CURRENT_TIMESTAMP(), released = FALSE",
                p = sql_string(&lock),
                tag = sql_string(&tag),
                host = sql_string(&host),
            );
            self.dml(&take, "taking the pipeline lock")?;
            let Some(Holder { fence, tag: holder, pid: hpid, host: hhost, age_ms: age }) = self.lock_row(&lock)? else {
                continue;
            };
            if holder == tag {
                self.fence = Some((lock.clone(), fence));
                let bq = self.bq.clone();
                let beat = format!(
                    "UPDATE {locks} SET heartbeat_at = CURRENT_TIMESTAMP() WHERE pipeline = {p} AND fence = {fence}",
                    p = sql_string(&lock)
                );
                let release = format!(
                    "UPDATE {locks} SET released = TRUE WHERE pipeline = {p} AND fence = {fence}",
                    p = sql_string(&lock)
                );
                let guard = LockGuard::spawn(self.lease / 3, move |last| {
                    if last {
                        if let Err(e) = bq.query(&release) {
                            tracing::warn!(error = %e, "releasing the pipeline lock failed (it expires with its lease)");
                        }
                    } else if let Err(e) = bq.query(&beat) {
                        tracing::warn!(error = %e, "pipeline lock heartbeat failed");
                    }
                })?;
                return Ok(Box::new(guard));
            }
            if hhost == host && hpid != pid && process_gone(hpid) {
                tracing::warn!(pid = hpid, "the pipeline's holder (a process of this host) is gone: taking over");
                self.dml(
                    &format!(
                        "UPDATE {locks} SET released = TRUE WHERE pipeline = {} AND fence = {fence}",
                        sql_string(&lock)
                    ),
                    "taking over the pipeline lock",
                )?;
                continue;
            }
            let (pipeline, subject) = super::lock_subject(&lock);
            let job = self.query(
                &format!(
                    "SELECT id FROM {} WHERE pipeline = {} AND status = 'running' ORDER BY created_at DESC LIMIT 1",
                    self.t("bizon_jobs"),
                    sql_string(pipeline)
                ),
                "finding the running job",
            )?;
            let job = job.rows.first().and_then(|r| text(&r[0]));
            return Err(Error::config(format!(
                "{subject} is already running: job {} (pid {hpid} on {hhost}, heartbeat {:.1} s ago, lease {} s); \
                 wait for it to finish or stop it first",
                job.as_deref().unwrap_or("unknown"),
                age as f64 / 1000.0,
                self.lease.as_secs()
            )));
        }
        Err(Error::transient(format!("pipeline `{lock}`: could not take the lock in {}", self.place)))
    }

    fn check_fence(&mut self) -> Result<()> {
        self.fenced_now()
    }

    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>> {
        let r = self.query(
            &format!(
                "SELECT {JOB_COLS} FROM {} j WHERE j.pipeline = {} AND j.source = {} AND j.stream = {} \
                 AND j.status IN ('running', 'stopped', 'failed') ORDER BY j.created_at DESC LIMIT 1",
                self.t("bizon_jobs"),
                sql_string(&key.pipeline),
                sql_string(&key.source),
                sql_string(&key.stream)
            ),
            "finding a resumable job",
        )?;
        Ok(r.rows.first().map(|r| job_from_row(r)))
    }

    fn create_job(&mut self, job: &Job) -> Result<()> {
        let jobs = self.t("bizon_jobs");
        let sql = format!(
            "INSERT INTO {jobs} (id, pipeline, source, stream, sync_mode, reset, status, since, created_at, updated_at, pid, total_records) \
             SELECT {id}, {p}, {s}, {st}, {m}, {reset}, {status}, {since}, {c}, {c}, {pid}, {total} FROM UNNEST([1]) \
             WHERE NOT EXISTS (SELECT 1 FROM {jobs} WHERE id = {id}) AND {fence}",
            id = sql_string(&job.id),
            p = sql_string(&job.key.pipeline),
            s = sql_string(&job.key.source),
            st = sql_string(&job.key.stream),
            m = sql_string(job.sync_mode.as_str()),
            reset = job.reset,
            status = sql_string(job.status.as_str()),
            since = opt_string(job.since.as_ref().map(Json::to_string).as_deref()),
            c = job.created_at,
            pid = job.pid,
            total = opt_int(job.total_records.map(|v| v as i64)),
            fence = self.fence_cond(),
        );
        self.fenced_dml(&sql, "recording a job")?;
        Ok(())
    }

    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = {}, error = {}, updated_at = {}, pid = {} WHERE id = {} AND {}",
            self.t("bizon_jobs"),
            sql_string(status.as_str()),
            opt_string(error),
            now_micros(),
            std::process::id(),
            sql_string(job_id),
            self.fence_cond()
        );
        self.fenced_dml(&sql, "updating a job's status")?;
        Ok(())
    }

    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET total_records = {}, pid = {}, updated_at = {} WHERE id = {} AND {}",
            self.t("bizon_jobs"),
            opt_int(total.map(|v| v as i64)),
            std::process::id(),
            now_micros(),
            sql_string(job_id),
            self.fence_cond()
        );
        self.fenced_dml(&sql, "updating a job's total")?;
        Ok(())
    }

    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>> {
        let r = self.query(
            &format!(
                "SELECT {CURSOR_COLS} FROM {} c WHERE c.job_id = {}",
                self.t("bizon_destination_cursors"),
                sql_string(job_id)
            ),
            "reading the destination cursor",
        )?;
        Ok(r.rows.first().and_then(|r| cursor_from_row(r, 0)))
    }

    fn destination_cursors(&mut self, job_ids: &[String]) -> Result<Vec<Option<DestinationCursor>>> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = job_ids.iter().map(|id| sql_string(id)).collect();
        let r = self.query(
            &format!(
                "SELECT c.job_id, {CURSOR_COLS} FROM {} c WHERE c.job_id IN ({})",
                self.t("bizon_destination_cursors"),
                ids.join(", ")
            ),
            "reading the destination cursors",
        )?;
        let mut found: std::collections::HashMap<&str, DestinationCursor> = std::collections::HashMap::new();
        for row in &r.rows {
            if let (Some(id), Some(c)) = (row[0].as_str(), cursor_from_row(row, 1)) {
                found.insert(id, c);
            }
        }
        Ok(job_ids.iter().map(|id| found.remove(id.as_str())).collect())
    }

    fn swap_cursor(&mut self, job_id: &str, link: Link, c: &DestinationCursor) -> Result<()> {
        let stored = self.stored(job_id)?;
        check_chain(job_id, link, stored, c)?;
        let dc = self.t("bizon_destination_cursors");
        let values = [
            c.iteration.to_string(),
            sql_string(&c.pagination.to_string()),
            sql_string(&c.token.to_string()),
            (c.records_written as i64).to_string(),
            (c.bytes_written as i64).to_string(),
            opt_string(c.watermark.as_ref().map(Json::to_string).as_deref()),
            c.done.to_string(),
            now_micros().to_string(),
        ];
        let id = sql_string(job_id);
        let sql = match stored {
            None => format!(
                "INSERT INTO {dc} (job_id, iteration, pagination, token, records_written, bytes_written, watermark, done, updated_at) \
                 SELECT {id}, {} FROM UNNEST([1]) WHERE NOT EXISTS (SELECT 1 FROM {dc} WHERE job_id = {id}) AND {}",
                values.join(", "),
                self.fence_cond()
            ),
            Some((iteration, done)) => format!(
                "UPDATE {dc} SET iteration = {}, pagination = {}, token = {}, records_written = {}, bytes_written = {}, \
                 watermark = {}, done = {}, updated_at = {} WHERE job_id = {id} AND iteration = {iteration} AND done = {done} AND {}",
                values[0],
                values[1],
                values[2],
                values[3],
                values[4],
                values[5],
                values[6],
                values[7],
                self.fence_cond()
            ),
        };
        if self.fenced_dml(&sql, "committing the destination cursor")? == 1 {
            return Ok(());
        }
        // Another writer moved the chain between the read and the swap.
        let now = self.stored(job_id)?;
        Err(check_chain(job_id, link, now, c).err().unwrap_or_else(|| {
            Error::permanent(format!("destination cursor for job {job_id}: another writer committed meanwhile"))
        }))
    }

    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()> {
        let sql = format!(
            "MERGE {} s USING (SELECT {id} AS job_id) n ON s.job_id = n.job_id \
             WHEN MATCHED THEN UPDATE SET iteration = {iteration}, pagination = {p}, updated_at = {now} \
             WHEN NOT MATCHED THEN INSERT (job_id, iteration, pagination, updated_at) VALUES ({id}, {iteration}, {p}, {now})",
            self.t("bizon_source_cursors"),
            id = sql_string(job_id),
            p = sql_string(&pagination.to_string()),
            now = now_micros(),
        );
        self.dml(&sql, "saving the source cursor")?;
        Ok(())
    }

    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()> {
        let jobs = self.t("bizon_jobs");
        let id = sql_string(job_id);
        // The watermark first, then the status: a crash between the two leaves the job to
        // resume and complete again, which writes the same watermark.
        if let Some(w) = watermark {
            let sql = format!(
                "MERGE {streams} s USING (SELECT pipeline, source, stream FROM {jobs} WHERE id = {id} AND {fence}) j \
                 ON s.pipeline = j.pipeline AND s.source = j.source AND s.stream = j.stream \
                 WHEN MATCHED THEN UPDATE SET watermark = {w}, last_job_id = {id}, updated_at = {now} \
                 WHEN NOT MATCHED THEN INSERT (pipeline, source, stream, watermark, last_job_id, updated_at) \
                   VALUES (j.pipeline, j.source, j.stream, {w}, {id}, {now})",
                streams = self.t("bizon_streams"),
                fence = self.fence_cond(),
                w = sql_string(&w.to_string()),
                now = now_micros(),
            );
            self.fenced_dml(&sql, "storing the watermark")?;
        }
        let sql = format!(
            "UPDATE {jobs} SET status = 'succeeded', error = NULL, updated_at = {} WHERE id = {id} AND {}",
            now_micros(),
            self.fence_cond()
        );
        if self.fenced_dml(&sql, "completing the job")? == 0 {
            return Err(Error::internal(format!("bigquery backend: job {job_id} is not recorded in {}", self.place)));
        }
        Ok(())
    }

    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>> {
        let r = self.query(
            &format!(
                "SELECT watermark FROM {} WHERE pipeline = {} AND source = {} AND stream = {}",
                self.t("bizon_streams"),
                sql_string(&key.pipeline),
                sql_string(&key.source),
                sql_string(&key.stream)
            ),
            "reading the watermark",
        )?;
        Ok(r.rows.first().and_then(|r| json_cell(&r[0])))
    }

    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64> {
        let which = format!(
            "pipeline = {} AND source = {} AND stream = {}",
            sql_string(&key.pipeline),
            sql_string(&key.source),
            sql_string(&key.stream)
        );
        self.fenced_now()?;
        self.dml(
            &format!("DELETE FROM {} WHERE {which} AND {}", self.t("bizon_streams"), self.fence_cond()),
            "forgetting the watermark",
        )?;
        self.fenced_dml(
            &format!(
                "UPDATE {} SET status = 'canceled', error = 'stream reset', updated_at = {} \
                 WHERE {which} AND status IN ('running', 'stopped', 'failed') AND {}",
                self.t("bizon_jobs"),
                now_micros(),
                self.fence_cond()
            ),
            "canceling the stream's jobs",
        )
    }

    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>> {
        let r = self.query(
            &format!(
                "SELECT {JOB_COLS}, {CURSOR_COLS} FROM {} j LEFT JOIN {} c ON c.job_id = j.id \
                 WHERE j.pipeline = {} ORDER BY j.created_at DESC LIMIT {}",
                self.t("bizon_jobs"),
                self.t("bizon_destination_cursors"),
                sql_string(pipeline),
                limit.min(i64::MAX as usize)
            ),
            "listing jobs",
        )?;
        Ok(r.rows.iter().map(|r| (job_from_row(r), cursor_from_row(r, 13))).collect())
    }
}
