//! `bigquery_streaming`: rows sent with BigQuery's `tabledata.insertAll`, in bizon's layout (or
//! the `record_schemas` columns with `unnest`).
//!
//! Full refresh and incremental runs stream into a staging table and publish exactly once
//! ([`crate::google::staging`]). Stream mode (no end, no finalize) inserts into the table itself:
//! at-least-once, with `insertId = bizon_id` for BigQuery's best-effort de-duplication.
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

use bizon_core::record::json_escape_into;
use bizon_core::time::Rfc3339Writer;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use tracing::{info, warn};

pub use config::{StreamingConfig, StreamingSpec, DESCRIPTOR};

use super::{bizon_id_head, push_hex};
use crate::google::bigquery::message_of;
use crate::google::staging::{Staged, TableSpec, ATTEMPT, ITERATION};
use crate::google::table::{bizon_columns, refuse_record, typed_value};

/// A request's size limit: BigQuery takes 10 MB; the rest is headroom for the envelope.
pub const MAX_REQUEST_BYTES: usize = 9 << 20;
/// Times rows BigQuery failed for its own reasons (`backendError`, …) are sent again.
const ROW_RETRIES: u32 = 5;

pub struct BigQueryStreaming {
    spec: Arc<StreamingSpec>,
    destination_id: String,
    target: Option<Staged>,
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
            max_request_bytes: MAX_REQUEST_BYTES,
            max_rows,
        }
    }

    fn target(&self) -> Result<&Staged> {
        self.target.as_ref().ok_or_else(|| Error::internal("bigquery_streaming: write before open"))
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
                    self.target()?.target()
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
        let table = t.target().clone();
        if rows.len() == 1 && rows[0].bytes.len() + 64 > self.max_request_bytes {
            // Too large for insertAll: a load job (NDJSON of the row's values).
            let line = serde_json::from_slice::<Json>(&rows[0].bytes)
                .ok()
                .and_then(|r| r.get("json").map(Json::to_string))
                .unwrap_or_default();
            info!(table = %table, bytes = line.len(), "a row too large for insertAll goes through a load job");
            t.bq.load_ndjson(&table, &t.written_schema(), format!("{line}\n").as_bytes())?;
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
            refuse_record(self.rejected.as_mut(), "bigquery_streaming", &table, &record, why)?;
        }
        Ok(retry)
    }
}

/// A serialized row and the index of its record in the batch.
struct Row {
    bytes: Vec<u8>,
    index: usize,
}

impl Destination for BigQueryStreaming {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        let c = &self.spec.config;
        let spec = TableSpec {
            what: "bigquery_streaming",
            key: &self.spec.keys.key.0,
            api_url: c.api_url.as_deref(),
            project_id: &c.project_id,
            dataset_id: &c.dataset_id,
            dataset_location: c.dataset_location.as_deref(),
            create_dataset: true,
            table_prefix: &c.table_prefix,
            destination_id: self.spec.keys.destination_id.as_deref(),
            time_partitioning: c.time_partitioning.as_ref(),
            partition_field_written: self.spec.keys.partition_field_written,
            typed: self.spec.keys.typed(&self.destination_id),
            unnest: self.spec.keys.unnest,
            layout: bizon_columns(),
        };
        let (staged, token) = Staged::open(&spec, ctx, resume)?;
        self.target = Some(staged);
        Ok(token)
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
        let typed = self.spec.keys.unnest.then(|| t.columns.clone());
        let id_head = bizon_id_head(meta);
        let mut times = Vec::with_capacity(96);
        times.extend_from_slice(b"\"_bizon_extracted_at\":\"");
        bizon_core::time::write_rfc3339(&mut times, meta.extracted_at);
        times.extend_from_slice(b"\",\"_bizon_loaded_at\":\"");
        bizon_core::time::write_rfc3339(&mut times, meta.loaded_at);
        times.push(b'"');
        let staging_tail = format!(",\"{ATTEMPT}\":\"{}\",\"{ITERATION}\":{}", t.attempt, meta.iteration);
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
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming: flush before open"))?;
        Ok(t.flush(next))
    }

    fn finalize(&mut self) -> Result<()> {
        self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming: finalize before open"))?.finalize()
    }

    fn finalize_lanes(&mut self, tokens: &[Json]) -> Result<()> {
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming: finalize before open"))?;
        t.finalize_lanes(tokens)
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
