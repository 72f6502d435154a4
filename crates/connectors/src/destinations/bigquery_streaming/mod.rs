//! `bigquery_streaming`: rows sent with BigQuery's `tabledata.insertAll`, in bizon's layout (or
//! the `record_schemas` columns with `unnest`).
//!
//! Stronger than bizon's: full refresh and incremental runs stream into a staging table
//! (`<table>_temp` / `<table>_incremental`, bizon's names) whose rows also carry the attempt that
//! wrote them and their iteration. Each flush's commit token lists, per attempt, the iterations
//! the engine committed; `finalize` publishes only those rows, one per `bizon_id` (an HTTP retry
//! that reached BigQuery twice counts once): full refresh replaces the table in one statement
//! (`CREATE OR REPLACE TABLE … AS SELECT`, readers see the old table or the new one), incremental
//! appends them in a transaction that also records the job in the dataset's `_bizon_published`
//! table, so a resumed run whose staging table survived a crash appends nothing twice (typed
//! `unnest` tables included, which have no `_bizon_id`). Rows of an attempt that crashed before its commit are never published,
//! so the published table holds every record exactly once. Stream mode (no end, no finalize)
//! inserts into the table itself: at-least-once, with `insertId = bizon_id` for BigQuery's
//! best-effort de-duplication.
//!
//! Requests hold at most `bq_max_rows_per_request` rows and 9 MB (BigQuery's limit is 10 MB); a
//! row too large for a request goes through a load job. Per-row errors are read: a value its
//! column refuses goes to `on_error` (fail naming the record and the column, or the dead-letter
//! file); rows BigQuery failed for its own reasons are sent again.

pub mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bizon_core::config::SyncMode;
use bizon_core::record::json_escape_into;
use bizon_core::time::{now_micros, Rfc3339Writer};
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use serde_json::json;
use tracing::{info, warn};

pub use config::{StreamingConfig, StreamingSpec, DESCRIPTOR};

use crate::google::auth::Credentials;
use crate::google::bigquery::{message_of, sql_string, BigQuery, TableRef};
use crate::google::table::{
    bizon_columns, default_table, effective_partitioning, ensure_table, schema_resource, Column, TimePartitioning,
};

/// A request's size limit: BigQuery takes 10 MB; the rest is headroom for the envelope.
pub const MAX_REQUEST_BYTES: usize = 9 << 20;
/// Times rows BigQuery failed for its own reasons (`backendError`, …) are sent again.
const ROW_RETRIES: u32 = 5;

/// The dataset's table of incremental publications in progress (table, job).
const PUBLISHED: &str = "_bizon_published";

/// Staging-only columns: which attempt wrote a row, and its iteration.
const ATTEMPT: &str = "_bizon_attempt";
const ITERATION: &str = "_bizon_iteration";

/// Where an open destination writes.
struct Target {
    bq: BigQuery,
    main: TableRef,
    /// The staging table rows go to (`None`: stream mode writes `main`).
    staging: Option<TableRef>,
    /// Full refresh (replace the table) rather than incremental (append).
    full_refresh: bool,
    /// Published already (the staging table was gone when a resumed job opened).
    published: bool,
    /// Columns of the published table.
    columns: Vec<Column>,
    clustering: Option<Vec<String>>,
    /// Partitioning of the published table when it is created.
    partitioning: Option<TimePartitioning>,
    /// Schema of the table rows are sent to (load jobs of large rows need it).
    schema: Json,
}

pub struct BigQueryStreaming {
    spec: Arc<StreamingSpec>,
    destination_id: String,
    target: Option<Target>,
    /// This process's attempt (rows it stages carry it).
    attempt: String,
    /// Committed (attempt, after iteration, up to iteration) ranges, oldest first.
    ranges: Vec<(String, i64, i64)>,
    /// The last iteration committed before this attempt.
    base: i64,
    /// The engine's job id (the publication marker of an incremental job).
    job_id: String,
    rejected: Option<Vec<Rejected>>,
    /// Request limits (tests lower them).
    pub max_request_bytes: usize,
    max_rows: usize,
}

impl BigQueryStreaming {
    pub fn new(spec: Arc<StreamingSpec>, destination_id: &str) -> Self {
        let max_rows = spec.config.bq_max_rows_per_request as usize;
        BigQueryStreaming {
            rejected: (spec.config.on_error == bizon_core::config::OnError::DeadLetter).then(Vec::new),
            spec,
            destination_id: destination_id.to_owned(),
            target: None,
            attempt: format!("{:x}-{:x}", now_micros(), std::process::id()),
            ranges: Vec::new(),
            base: -1,
            job_id: String::new(),
            max_request_bytes: MAX_REQUEST_BYTES,
            max_rows,
        }
    }

    fn target(&self) -> Result<&Target> {
        self.target.as_ref().ok_or_else(|| Error::internal("bigquery_streaming: write before open"))
    }

    fn token(&self) -> Json {
        json!({
            "ranges": self.ranges.iter().map(|(a, f, t)| json!([a, f, t])).collect::<Vec<_>>(),
        })
    }

    /// Send rows (each `{"insertId":…,"json":{…}}`) in requests within the limits; rows
    /// BigQuery refuses go to `on_error`.
    fn send(&mut self, rows: Vec<Row>, batch: &RecordBatch) -> Result<()> {
        let mut pending = rows;
        let mut attempt = 0;
        loop {
            let mut retry = Vec::new();
            let mut start = 0;
            while start < pending.len() {
                let mut end = start;
                let mut size = 64;
                while end < pending.len() && end - start < self.max_rows {
                    let n = pending[end].bytes.len() + 1;
                    if end > start && size + n > self.max_request_bytes {
                        break;
                    }
                    size += n;
                    end += 1;
                }
                // `insert` answers indexes into the chunk: make them indexes into `pending`.
                retry.extend(self.insert(&pending[start..end], batch)?.into_iter().map(|i| start + i));
                start = end;
            }
            if retry.is_empty() {
                return Ok(());
            }
            attempt += 1;
            if attempt > ROW_RETRIES {
                return Err(Error::transient(format!(
                    "bigquery_streaming: BigQuery failed {} rows of {} {ROW_RETRIES} times",
                    retry.len(),
                    self.target()?.staging.as_ref().unwrap_or(&self.target()?.main)
                )));
            }
            warn!(rows = retry.len(), attempt, "BigQuery failed rows for its own reasons: sending them again");
            std::thread::sleep(Duration::from_millis(500 << attempt.min(6)));
            // BigQuery does not promise its errors in index order.
            retry.sort_unstable();
            retry.dedup();
            pending = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| retry.binary_search(i).is_ok())
                .map(|(_, r)| r)
                .collect();
        }
    }

    /// One `insertAll` request; returns the indexes (into `rows`) to send again.
    fn insert(&mut self, rows: &[Row], batch: &RecordBatch) -> Result<Vec<usize>> {
        let t = self.target()?;
        let table = t.staging.clone().unwrap_or_else(|| t.main.clone());
        if rows.len() == 1 && rows[0].bytes.len() + 64 > self.max_request_bytes {
            // Too large for insertAll: a load job (NDJSON of the row's values).
            let line = serde_json::from_slice::<Json>(&rows[0].bytes)
                .ok()
                .and_then(|r| r.get("json").map(Json::to_string))
                .unwrap_or_default();
            info!(table = %table, bytes = line.len(), "a row too large for insertAll goes through a load job");
            t.bq.load_ndjson(&table, &t.schema, format!("{line}\n").as_bytes())?;
            return Ok(Vec::new());
        }
        let mut body = Vec::with_capacity(rows.iter().map(|r| r.bytes.len() + 1).sum::<usize>() + 64);
        body.extend_from_slice(br#"{"skipInvalidRows":true,"ignoreUnknownValues":false,"rows":["#);
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&r.bytes);
        }
        body.extend_from_slice(b"]}");
        let answer = t.bq.insert_all(&table, body)?;
        let mut retry = Vec::new();
        for e in answer.get("insertErrors").and_then(Json::as_array).into_iter().flatten() {
            let Some(i) = e.get("index").and_then(Json::as_u64).map(|i| i as usize).filter(|i| *i < rows.len()) else {
                continue;
            };
            let errors = e.get("errors").cloned().unwrap_or(Json::Null);
            let reasons: Vec<&str> =
                errors.as_array().into_iter().flatten().filter_map(|x| x.get("reason")?.as_str()).collect();
            // `stopped`: a good row refused because another was bad (skipInvalidRows off).
            if reasons.iter().all(|r| matches!(*r, "backendError" | "internalError" | "timeout" | "stopped")) {
                retry.push(i);
                continue;
            }
            let record = batch.get(rows[i].index);
            let column = errors
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|x| x.get("location")?.as_str().filter(|l| !l.is_empty()))
                .unwrap_or("?");
            let why = format!("BigQuery refused the row (column `{column}`): {}", message_of(&errors));
            match self.rejected.as_mut() {
                Some(dead) => dead.push(Rejected {
                    id: record.id.to_owned(),
                    timestamp: record.timestamp,
                    data: record.data.to_vec(),
                    error: why,
                }),
                None => {
                    return Err(Error::permanent(format!(
                        "bigquery_streaming: record `{}` into {table}: {why} (on_error: dead_letter diverts such \
                         records and loads the rest)",
                        record.id
                    )))
                }
            }
        }
        Ok(retry)
    }

    /// Publish the committed staged rows, once: full refresh replaces the table in one
    /// statement (doing it again gives the same table); incremental appends them in a transaction
    /// that also records the job in the dataset's `_bizon_published` marker, so a run resumed
    /// after a crash between this and the staging table's drop appends nothing twice.
    fn publish(&self) -> Result<()> {
        let t = self.target()?;
        let Some(staging) = &t.staging else { return Ok(()) };
        let cols = t.columns.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ");
        let partitioning = t.partitioning.as_ref();
        let clustering = t.clustering.as_deref().filter(|c| !c.is_empty());
        let one_per_id = format!("QUALIFY ROW_NUMBER() OVER (PARTITION BY _bizon_id ORDER BY {ITERATION}) = 1");
        if t.full_refresh {
            let mut sql = format!("CREATE OR REPLACE TABLE {}", t.main.sql());
            if let Some(p) = partitioning {
                sql.push(' ');
                sql.push_str(&p.sql(&t.columns));
            }
            if let Some(c) = clustering {
                sql.push_str(&format!(
                    " CLUSTER BY {}",
                    c.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            sql.push_str(&format!(" AS SELECT {cols} FROM {} WHERE {} {one_per_id}", staging.sql(), self.committed()));
            t.bq.query(&sql)?;
            return Ok(());
        }
        ensure_table(&t.bq, &t.main, &t.columns, partitioning, clustering)?;
        let marker = t.main.sibling(PUBLISHED);
        t.bq.query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name STRING NOT NULL, job_id STRING NOT NULL, published_at TIMESTAMP)",
            marker.sql()
        ))?;
        let not_yet = format!(
            "NOT EXISTS (SELECT 1 FROM {} WHERE table_name = {} AND job_id = {})",
            marker.sql(),
            sql_string(&t.main.table),
            sql_string(&self.job_id)
        );
        t.bq.query(&format!(
            "BEGIN TRANSACTION; \
             INSERT INTO {main} ({cols}) SELECT {cols} FROM {staging} WHERE ({committed}) AND {not_yet} {one_per_id}; \
             INSERT INTO {marker} (table_name, job_id, published_at) SELECT {table}, {job}, CURRENT_TIMESTAMP() \
               FROM UNNEST([1]) WHERE {not_yet}; \
             COMMIT TRANSACTION;",
            main = t.main.sql(),
            staging = staging.sql(),
            committed = self.committed(),
            marker = marker.sql(),
            table = sql_string(&t.main.table),
            job = sql_string(&self.job_id),
        ))?;
        info!(table = %t.main, "incremental rows published");
        Ok(())
    }

    /// The `WHERE` condition selecting the committed rows of the staging table.
    fn committed(&self) -> String {
        if self.ranges.is_empty() {
            return "FALSE".into();
        }
        self.ranges
            .iter()
            .map(|(a, from, to)| {
                format!("({ATTEMPT} = {} AND {ITERATION} > {from} AND {ITERATION} <= {to})", sql_string(a))
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

/// A serialized row and the index of its record in the batch.
struct Row {
    bytes: Vec<u8>,
    index: usize,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (k * 4)) & 15) as usize]);
    }
}

/// A value for a typed column: JSON columns take the JSON text, the rest the value as is.
fn typed_value(value: &Json, column: &Column) -> Json {
    match (column.kind.as_str(), value) {
        ("JSON", Json::String(_)) | (_, Json::Null) => value.clone(),
        ("JSON", v) => Json::String(v.to_string()),
        _ => value.clone(),
    }
}

impl Destination for BigQueryStreaming {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.job_id = ctx.job_id.clone();
        let c = &self.spec.config;
        let credentials = Credentials::from_config(Some(&self.spec.key.0))?;
        let mut bq = BigQuery::new(credentials, c.api_url.as_deref(), &c.project_id);
        bq.location = c.dataset_location.clone();
        let main = match &self.spec.destination_id {
            Some(id) => TableRef::parse(id, &c.project_id, &c.dataset_id)?,
            None => {
                // A missing dataset holds no legacy table either: it is created below.
                let base = format!("{}_{}", ctx.source, ctx.stream);
                default_table(&bq, &c.project_id, &c.dataset_id, &c.table_prefix, &base)?
            }
        };
        if !bq.dataset_exists(&main.project, &main.dataset)? {
            info!(dataset = %format!("{}.{}", main.project, main.dataset), "creating the dataset");
            bq.create_dataset(&main.project, &main.dataset, c.dataset_location.as_deref())?;
        }
        let (columns, clustering) = match self.spec.typed(&self.destination_id) {
            Some((cols, clustering)) => (cols, clustering),
            None if self.spec.unnest => {
                return Err(Error::config(format!(
                    "bigquery_streaming: `unnest: true` but no record_schemas entry has destination_id `{}`",
                    self.destination_id
                )))
            }
            None => (bizon_columns(), None),
        };
        let partitioning = effective_partitioning(
            c.time_partitioning.as_ref(),
            self.spec.partition_field_written,
            &columns,
            bq.get_table(&main)?.is_some(),
            &main,
        )?;
        let staging = match ctx.sync_mode {
            SyncMode::Stream => None,
            SyncMode::FullRefresh => Some(main.sibling(&format!("{}_temp", main.table))),
            SyncMode::Incremental => Some(main.sibling(&format!("{}_incremental", main.table))),
        };
        let mut published = false;
        let schema = match &staging {
            None => {
                ensure_table(&bq, &main, &columns, partitioning.as_ref(), clustering.as_deref())?;
                schema_resource(&columns)
            }
            Some(s) => {
                let mut staged = columns.clone();
                if self.spec.unnest {
                    staged.push(Column::new("_bizon_id", "STRING", "NULLABLE"));
                }
                staged.push(Column::new(ATTEMPT, "STRING", "NULLABLE"));
                staged.push(Column::new(ITERATION, "INT64", "NULLABLE"));
                match resume {
                    None => {
                        // A new job: whatever an abandoned job left there is not ours.
                        if bq.delete_table(s)? {
                            info!(table = %s, "dropped a staging table left by an earlier job");
                        }
                        ensure_table(&bq, s, &staged, None, None)?;
                    }
                    Some(token) => {
                        for r in token.get("ranges").and_then(Json::as_array).into_iter().flatten() {
                            if let (Some(a), Some(f), Some(t)) = (r[0].as_str(), r[1].as_i64(), r[2].as_i64()) {
                                self.ranges.push((a.to_owned(), f, t));
                            }
                        }
                        self.base = self.ranges.iter().map(|r| r.2).max().unwrap_or(-1);
                        // Finalize drops the staging table: gone means published.
                        published = bq.get_table(s)?.is_none();
                        if !published {
                            ensure_table(&bq, s, &staged, None, None)?;
                        }
                    }
                }
                schema_resource(&staged)
            }
        };
        info!(table = %main, staging = ?staging.as_ref().map(ToString::to_string), published, "bigquery_streaming opened");
        let full_refresh = ctx.sync_mode == SyncMode::FullRefresh;
        self.target =
            Some(Target { bq, main, staging, full_refresh, published, columns, clustering, partitioning, schema });
        Ok(if self.target()?.staging.is_some() { self.token() } else { json!({}) })
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let t = self.target()?;
        if t.published {
            return Err(Error::internal(format!("bigquery_streaming: a write after {} was published", t.main)));
        }
        let staged = t.staging.is_some();
        let typed = self.spec.unnest.then(|| t.columns.clone());
        let mut id_head = Vec::with_capacity(24);
        push_hex(&mut id_head, meta.job_hash, 16);
        push_hex(&mut id_head, meta.iteration as u64, 8);
        let mut times = Vec::with_capacity(96);
        times.extend_from_slice(b"\"_bizon_extracted_at\":\"");
        bizon_core::time::write_rfc3339(&mut times, meta.extracted_at);
        times.extend_from_slice(b"\",\"_bizon_loaded_at\":\"");
        bizon_core::time::write_rfc3339(&mut times, meta.loaded_at);
        times.push(b'"');
        let staging_tail = format!(",\"{ATTEMPT}\":\"{}\",\"{ITERATION}\":{}", self.attempt, meta.iteration);
        let mut ts = Rfc3339Writer::default();
        let mut rows = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let r = batch.get(i);
            let mut out = Vec::with_capacity(r.data.len() + 300);
            out.extend_from_slice(b"{\"insertId\":\"");
            out.extend_from_slice(&id_head);
            push_hex(&mut out, i as u64, 8);
            out.extend_from_slice(b"\",\"json\":{");
            match &typed {
                None => {
                    out.extend_from_slice(b"\"_source_record_id\":\"");
                    json_escape_into(&mut out, r.id.as_bytes());
                    out.extend_from_slice(b"\",\"_source_timestamp\":\"");
                    ts.write(&mut out, r.timestamp);
                    out.extend_from_slice(b"\",\"_source_data\":\"");
                    json_escape_into(&mut out, r.data);
                    out.extend_from_slice(b"\",");
                    out.extend_from_slice(&times);
                    out.extend_from_slice(b",\"_bizon_id\":\"");
                    out.extend_from_slice(&id_head);
                    push_hex(&mut out, i as u64, 8);
                    out.push(b'"');
                }
                Some(columns) => {
                    let values = match serde_json::from_slice(r.data) {
                        Ok(Json::Object(record)) => columns
                            .iter()
                            .filter_map(|c| record.get(&c.name).map(|v| (c.name.clone(), typed_value(v, c))))
                            .collect::<serde_json::Map<String, Json>>(),
                        _ => {
                            let why = "the record is not a JSON object: `unnest` maps an object's fields to columns";
                            let Some(dead) = self.rejected.as_mut() else {
                                return Err(Error::permanent(format!("bigquery_streaming: record `{}`: {why}", r.id)));
                            };
                            dead.push(Rejected {
                                id: r.id.to_owned(),
                                timestamp: r.timestamp,
                                data: r.data.to_vec(),
                                error: why.into(),
                            });
                            continue;
                        }
                    };
                    let text = Json::Object(values).to_string();
                    // The members without the braces; staged rows add the id column.
                    out.extend_from_slice(&text.as_bytes()[1..text.len() - 1]);
                    if staged {
                        if text.len() > 2 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"\"_bizon_id\":\"");
                        out.extend_from_slice(&id_head);
                        push_hex(&mut out, i as u64, 8);
                        out.push(b'"');
                    }
                }
            }
            if staged {
                out.extend_from_slice(staging_tail.as_bytes());
            }
            out.extend_from_slice(b"}}");
            rows.push(Row { bytes: out, index: i });
        }
        self.send(rows, batch)
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        if self.target()?.staging.is_none() {
            return Ok(json!({}));
        }
        self.ranges.retain(|(a, _, _)| *a != self.attempt);
        if next.iteration > self.base {
            self.ranges.push((self.attempt.clone(), self.base, next.iteration));
        }
        Ok(self.token())
    }

    fn finalize(&mut self) -> Result<()> {
        let t = self.target()?;
        let Some(staging) = t.staging.clone() else { return Ok(()) };
        if t.published {
            return Ok(());
        }
        self.publish()?;
        let t = self.target()?;
        t.bq.delete_table(&staging)?;
        if !t.full_refresh {
            // The marker only guarded a publication whose staging table might survive a crash.
            let marker = t.main.sibling(PUBLISHED);
            t.bq.query(&format!(
                "DELETE FROM {} WHERE table_name = {} AND job_id = {}",
                marker.sql(),
                sql_string(&t.main.table),
                sql_string(&self.job_id)
            ))?;
        }
        info!(table = %t.main, "published");
        if let Some(t) = self.target.as_mut() {
            t.published = true;
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
