//! `bigquery_streaming_v2`: rows sent with BigQuery's Storage Write API (gRPC `AppendRows`),
//! encoded as protobuf from the table's columns ([`crate::google::proto_rows`]), in bizon's
//! layout (or the `record_schemas` columns with `unnest`).
//!
//! Full refresh and incremental runs write into a staging table and publish exactly once
//! ([`crate::google::staging`]). Each batch goes to up to `max_concurrent_threads` PENDING
//! streams at once, each append carrying its offset (a re-sent request is refused as
//! `ALREADY_EXISTS`, never written twice); the streams are finalized and committed together
//! (`BatchCommitWriteStreams`), so a batch lands in the staging table whole or not at all. Stream
//! mode (no end, no finalize) appends to COMMITTED streams of the table itself, with offsets:
//! a retried request lands once (bizon's `_default` stream can write it twice), but rows a crash
//! left unacknowledged are sent again by the resumed run (at-least-once across crashes).
//!
//! Values a typed column cannot hold are refused before anything is sent and go to `on_error`
//! naming the record and the column; rows BigQuery refuses (`row_errors`) likewise.

pub mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use prost::bytes::Bytes;
use tracing::{debug, info, warn};

pub use config::{StreamingV2Config, StreamingV2Spec, DESCRIPTOR};

use super::push_hex;
use crate::google::proto_rows::RowEncoder;
use crate::google::staging::{Staged, TableSpec, ATTEMPT, ITERATION};
use crate::google::storage_write::{pb, Appended, Chunk, StorageWrite};
use crate::google::table::{bizon_columns, typed_value, Column};

/// An `AppendRows` request's size limit: BigQuery takes 10 MB; the rest is headroom.
pub const MAX_REQUEST_BYTES: usize = 9 << 20;
/// Times appends interrupted for a transient reason are tried again within one write.
const RETRIES: u32 = 5;

/// Where a written column's value comes from.
#[derive(Debug, Clone)]
enum Cell {
    RecordId,
    SourceTimestamp,
    SourceData,
    ExtractedAt,
    LoadedAt,
    BizonId,
    Attempt,
    Iteration,
    /// The record's field of this column (`unnest`).
    Field(Column),
}

pub struct BigQueryStreamingV2 {
    spec: Arc<StreamingV2Spec>,
    destination_id: String,
    target: Option<Staged>,
    writer: Option<StorageWrite>,
    encoder: Option<RowEncoder>,
    sources: Vec<Cell>,
    rejected: Option<Vec<Rejected>>,
    /// Stream mode: the COMMITTED streams of the table and their next offsets.
    committed: Vec<(String, i64)>,
    /// Request limits (tests lower them).
    pub max_request_bytes: usize,
    pub max_rows: usize,
    threads: usize,
    /// Appends BigQuery refused as written already (a re-sent request), since open.
    pub duplicates_refused: u64,
}

/// A row and the index of its record in the batch.
struct Row {
    bytes: Bytes,
    index: usize,
}

/// One stream's share of a batch: its name, its rows, the offset of the first.
struct Part {
    stream: String,
    rows: Vec<Row>,
    offset: i64,
}

impl BigQueryStreamingV2 {
    pub fn new(spec: Arc<StreamingV2Spec>, destination_id: &str) -> Self {
        BigQueryStreamingV2 {
            rejected: (spec.config.on_error == bizon_core::config::OnError::DeadLetter).then(Vec::new),
            max_rows: spec.config.bq_max_rows_per_request as usize,
            threads: spec.keys.threads as usize,
            spec,
            destination_id: destination_id.to_owned(),
            target: None,
            writer: None,
            encoder: None,
            sources: Vec::new(),
            committed: Vec::new(),
            max_request_bytes: MAX_REQUEST_BYTES,
            duplicates_refused: 0,
        }
    }

    fn parts(&self) -> Result<(&Staged, &StorageWrite, &RowEncoder)> {
        match (&self.target, &self.writer, &self.encoder) {
            (Some(t), Some(w), Some(e)) => Ok((t, w, e)),
            _ => Err(Error::internal("bigquery_streaming_v2: write before open")),
        }
    }

    /// A record the destination refuses: to the dead letters, or the run fails naming it.
    fn refuse(&mut self, batch: &RecordBatch, index: usize, why: String) -> Result<()> {
        let r = batch.get(index);
        let table = self.target.as_ref().map(|t| t.target().to_string()).unwrap_or_default();
        match self.rejected.as_mut() {
            Some(dead) => {
                dead.push(Rejected { id: r.id.to_owned(), timestamp: r.timestamp, data: r.data.to_vec(), error: why });
                Ok(())
            }
            None => Err(Error::permanent(format!(
                "bigquery_streaming_v2: record `{}` into {table}: {why} (on_error: dead_letter diverts such records \
                 and loads the rest)",
                r.id
            ))),
        }
    }

    /// Encode the batch's rows; records a column cannot hold go to `on_error`.
    fn encode(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<Vec<Row>> {
        let (t, _, enc) = self.parts()?;
        let mut id_head = Vec::with_capacity(24);
        push_hex(&mut id_head, meta.job_hash, 16);
        push_hex(&mut id_head, meta.iteration as u64, 8);
        let attempt = t.attempt.clone();
        let typed = self.sources.iter().any(|s| matches!(s, Cell::Field(_)));
        let mut rows = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        let mut out = Vec::new();
        let mut id = Vec::with_capacity(32);
        for i in 0..batch.len() {
            let r = batch.get(i);
            let record = match typed {
                false => None,
                true => match serde_json::from_slice::<Json>(r.data) {
                    Ok(Json::Object(o)) => Some(o),
                    _ => {
                        refused.push((
                            i,
                            "the record is not a JSON object: `unnest` maps an object's fields to columns".into(),
                        ));
                        continue;
                    }
                },
            };
            out.clear();
            let mut bad = None;
            for (f, source) in self.sources.iter().enumerate() {
                match source {
                    Cell::RecordId => enc.put_text(&mut out, f, r.id.as_bytes()),
                    Cell::SourceTimestamp => enc.put_int(&mut out, f, r.timestamp),
                    Cell::SourceData => enc.put_text(&mut out, f, r.data),
                    Cell::ExtractedAt => enc.put_int(&mut out, f, meta.extracted_at),
                    Cell::LoadedAt => enc.put_int(&mut out, f, meta.loaded_at),
                    Cell::BizonId => {
                        id.clear();
                        id.extend_from_slice(&id_head);
                        push_hex(&mut id, i as u64, 8);
                        enc.put_text(&mut out, f, &id);
                    }
                    Cell::Attempt => enc.put_text(&mut out, f, attempt.as_bytes()),
                    Cell::Iteration => enc.put_int(&mut out, f, meta.iteration),
                    Cell::Field(c) => {
                        let value = record.as_ref().and_then(|o| o.get(&c.name)).map(|v| typed_value(v, c));
                        if let Err(why) = enc.put_json(&mut out, f, value.as_ref()) {
                            bad = Some(format!("column `{}` ({} {}): {why}", c.name, c.kind, c.mode));
                            break;
                        }
                    }
                }
            }
            match bad {
                Some(why) => refused.push((i, why)),
                None => rows.push(Row { bytes: Bytes::copy_from_slice(&out), index: i }),
            }
        }
        for (i, why) in refused {
            self.refuse(batch, i, why)?;
        }
        Ok(rows)
    }

    /// Cut `rows` into requests within the limits, from `offset`.
    fn chunks(&self, rows: &[Row], mut offset: i64) -> Vec<(Chunk, Vec<usize>)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut size = 256;
            while end < rows.len() && end - start < self.max_rows {
                let n = rows[end].bytes.len() + 4;
                if end > start && size + n > self.max_request_bytes {
                    break;
                }
                size += n;
                end += 1;
            }
            let slice = &rows[start..end];
            out.push((
                Chunk { offset, rows: slice.iter().map(|r| r.bytes.clone()).collect() },
                slice.iter().map(|r| r.index).collect(),
            ));
            offset += (end - start) as i64;
            start = end;
        }
        out
    }

    /// Append every part's rows to its stream; rows BigQuery refuses go to `on_error` and the
    /// rest are sent again at the same offsets. Returns each part's next offset.
    fn append(&mut self, mut parts: Vec<Part>, batch: &RecordBatch) -> Result<Vec<i64>> {
        let descriptor = self.parts()?.2.descriptor();
        let mut next: Vec<i64> = parts.iter().map(|p| p.offset).collect();
        let mut tries = 0;
        loop {
            let open: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].rows.is_empty()).collect();
            if open.is_empty() {
                return Ok(next);
            }
            let mut planned = Vec::with_capacity(open.len());
            let mut jobs = Vec::with_capacity(open.len());
            for &i in &open {
                let chunks = self.chunks(&parts[i].rows, parts[i].offset);
                jobs.push((parts[i].stream.clone(), descriptor.clone(), chunks.iter().map(|c| c.0.clone()).collect()));
                planned.push(chunks);
            }
            let outcomes = self.parts()?.1.append(jobs)?;
            let mut interrupted = None;
            for ((&i, chunks), outcome) in open.iter().zip(planned).zip(outcomes) {
                let landed = |done: usize| chunks[..done].iter().map(|c| c.0.rows.len()).sum::<usize>();
                match outcome {
                    Appended::All { duplicates } => {
                        self.duplicates_refused += duplicates as u64;
                        next[i] = parts[i].offset + landed(chunks.len()) as i64;
                        parts[i].rows.clear();
                    }
                    Appended::Interrupted { done, why } => {
                        let n = landed(done);
                        parts[i].rows.drain(..n);
                        parts[i].offset += n as i64;
                        next[i] = parts[i].offset;
                        interrupted = Some(why);
                    }
                    Appended::RowErrors { done, rows } => {
                        let n = landed(done);
                        parts[i].rows.drain(..n);
                        parts[i].offset += n as i64;
                        next[i] = parts[i].offset;
                        // The refused chunk's rows, by index within it; the others go again.
                        let chunk_len = chunks[done].0.rows.len();
                        let mut bad: Vec<(usize, String)> = rows.into_iter().filter(|(k, _)| *k < chunk_len).collect();
                        if bad.is_empty() {
                            return Err(Error::permanent(format!(
                                "bigquery_streaming_v2: BigQuery refused an append to {} with row errors naming no \
                                 row of it",
                                parts[i].stream
                            )));
                        }
                        bad.sort_by_key(|b| std::cmp::Reverse(b.0));
                        bad.dedup_by_key(|b| b.0);
                        for (k, why) in bad {
                            let row = parts[i].rows.remove(k);
                            self.refuse(batch, row.index, format!("BigQuery refused the row: {why}"))?;
                        }
                    }
                    Appended::Failed { done, why } => {
                        return Err(Error::permanent(format!(
                            "bigquery_streaming_v2: BigQuery refused an append to {} (after {} rows of it landed): \
                             {why}",
                            parts[i].stream,
                            landed(done)
                        )))
                    }
                }
            }
            if let Some(why) = interrupted {
                tries += 1;
                if tries > RETRIES {
                    return Err(Error::transient(format!(
                        "bigquery_streaming_v2: appends to {} were interrupted {RETRIES} times in a row: {why}",
                        self.parts()?.0.target()
                    )));
                }
                warn!(attempt = tries, %why, "appends interrupted: sending the rest again at the same offsets");
                std::thread::sleep(Duration::from_millis(250 << tries.min(6)));
            }
        }
    }

    /// Split `rows` into `n` runs of about equal length (in order).
    fn split(rows: Vec<Row>, n: usize) -> Vec<Vec<Row>> {
        let per = rows.len().div_ceil(n.max(1)).max(1);
        let mut out = Vec::with_capacity(n);
        let mut it = rows.into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(per).collect());
        }
        out
    }
}

impl Destination for BigQueryStreamingV2 {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        let c = &self.spec.config;
        let spec = TableSpec {
            what: "bigquery_streaming_v2",
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
        let writer = StorageWrite::connect(c.storage_write_url.as_deref(), staged.bq.shared_http())?;
        let unnest = self.spec.keys.unnest;
        self.sources = staged
            .written
            .iter()
            .map(|col| match col.name.as_str() {
                "_bizon_id" => Cell::BizonId,
                n if n == ATTEMPT => Cell::Attempt,
                n if n == ITERATION => Cell::Iteration,
                _ if unnest => Cell::Field(col.clone()),
                "_source_record_id" => Cell::RecordId,
                "_source_timestamp" => Cell::SourceTimestamp,
                "_source_data" => Cell::SourceData,
                "_bizon_extracted_at" => Cell::ExtractedAt,
                _ => Cell::LoadedAt,
            })
            .collect();
        self.encoder = Some(RowEncoder::new(&staged.written));
        info!(table = %staged.target(), endpoint = writer.endpoint(), "bigquery_streaming_v2 writes through the Storage Write API");
        self.writer = Some(writer);
        self.committed.clear();
        self.target = Some(staged);
        Ok(token)
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (t, _, _) = self.parts()?;
        if t.published {
            return Err(Error::internal(format!("bigquery_streaming_v2: a write after {} was published", t.main)));
        }
        let staged = t.staging.is_some();
        let table = t.target().clone();
        let rows = self.encode(batch, meta)?;
        if rows.is_empty() {
            return Ok(());
        }
        let n = self.threads.min(rows.len().div_ceil(self.max_rows)).max(1);
        let runs = Self::split(rows, n);
        if staged {
            // PENDING streams: nothing is visible until they are committed together.
            let writer = self.parts()?.1;
            let mut parts = Vec::with_capacity(runs.len());
            for rows in runs {
                parts.push(Part { stream: writer.create_stream(&table, pb::PENDING)?, rows, offset: 0 });
            }
            let streams: Vec<String> = parts.iter().map(|p| p.stream.clone()).collect();
            self.append(parts, batch)?;
            let writer = self.parts()?.1;
            for s in &streams {
                writer.finalize(s)?;
            }
            writer.batch_commit(&table, streams)?;
            debug!(rows = batch.len(), iteration = meta.iteration, "batch committed to the staging table");
            return Ok(());
        }
        // Stream mode: COMMITTED streams kept across writes, offsets continuing.
        while self.committed.len() < runs.len() {
            let s = self.parts()?.1.create_stream(&table, pb::COMMITTED)?;
            self.committed.push((s, 0));
        }
        let parts: Vec<Part> = runs
            .into_iter()
            .zip(&self.committed)
            .map(|(rows, (stream, offset))| Part { stream: stream.clone(), rows, offset: *offset })
            .collect();
        match self.append(parts, batch) {
            Ok(next) => {
                for (c, o) in self.committed.iter_mut().zip(next) {
                    c.1 = o;
                }
                Ok(())
            }
            Err(e) => {
                // Where each stream ends is unknown now: the next write opens new ones.
                self.committed.clear();
                Err(e)
            }
        }
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming_v2: flush before open"))?;
        Ok(t.flush(next))
    }

    fn finalize(&mut self) -> Result<()> {
        if let (Some(w), Some(t)) = (&self.writer, &self.target) {
            for (s, _) in std::mem::take(&mut self.committed) {
                if let Err(e) = w.finalize(&s) {
                    warn!(stream = %s, table = %t.main, "finalizing a committed stream: {e}");
                }
            }
        }
        self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming_v2: finalize before open"))?.finalize()
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
