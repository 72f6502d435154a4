//! `bigquery_streaming_v2`: rows sent with BigQuery's Storage Write API (gRPC `AppendRows`),
//! encoded as protobuf from the table's columns ([`crate::google::proto_rows`]), in bizon's
//! layout (or the `record_schemas` columns with `unnest`).
//!
//! Full refresh and incremental runs write into a staging table and publish exactly once
//! ([`crate::google::staging`]). Each batch goes to up to `max_concurrent_threads` PENDING
//! streams at once, each append carrying its offset (a re-sent request is refused as
//! `ALREADY_EXISTS`, never written twice). The streams stay open across the batches of one flush
//! and are finalized and committed together at the flush (`BatchCommitWriteStreams`), before its
//! commit token is returned: the flush's rows land in the staging table whole or not at all, and
//! a flush of many pages pays one stream set and one commit, not one per page. Stream
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

pub use config::{RowFormat, StreamingV2Config, StreamingV2Spec, DESCRIPTOR};

use super::{bizon_id_head, push_hex};
use crate::google::arrow_rows;
use crate::google::proto_rows::RowEncoder;
use crate::google::staging::{Staged, TableSpec, ATTEMPT, ITERATION};
use crate::google::storage_write::{pb, Appended, Chunk, Rows, Schema, StorageWrite};
use crate::google::table::{bizon_columns, refuse_record, typed_value, Column};

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
    /// `row_format: arrow`: the rows' Arrow schema and its IPC message.
    arrow: Option<(Arc<arrow_schema::Schema>, Bytes)>,
    rejected: Option<Vec<Rejected>>,
    /// The open streams and their next offsets: stream mode's COMMITTED streams of the table,
    /// or the staging table's PENDING streams written since the last flush.
    streams: Vec<(String, i64)>,
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
            arrow: None,
            streams: Vec::new(),
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
        let table = self.parts()?.0.target().clone();
        refuse_record(self.rejected.as_mut(), "bigquery_streaming_v2", &table, &batch.get(index), why)
    }

    /// Encode the batch's rows; records a column cannot hold go to `on_error`.
    fn encode(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<Vec<Row>> {
        if self.arrow.is_some() {
            // bizon's layout holds any record: the requests' record batches are built from these.
            return Ok((0..batch.len()).map(|index| Row { bytes: Bytes::new(), index }).collect());
        }
        let (t, _, enc) = self.parts()?;
        let id_head = bizon_id_head(meta);
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
    fn chunks(
        &self,
        rows: &[Row],
        mut offset: i64,
        batch: &RecordBatch,
        meta: &BatchMeta,
    ) -> Result<Vec<(Chunk, Vec<usize>)>> {
        let size = |r: &Row| match self.arrow {
            Some(_) => {
                let rec = batch.get(r.index);
                rec.id.len() + rec.data.len() + 96
            }
            None => r.bytes.len() + 4,
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 256;
            while end < rows.len() && end - start < self.max_rows {
                let n = size(&rows[end]);
                if end > start && bytes + n > self.max_request_bytes {
                    break;
                }
                bytes += n;
                end += 1;
            }
            let slice = &rows[start..end];
            let indexes: Vec<usize> = slice.iter().map(|r| r.index).collect();
            let chunk_rows = match &self.arrow {
                Some((schema, _)) => Rows::Arrow {
                    batch: arrow_rows::batch_message(&self.arrow_batch(schema, batch, meta, &indexes)?)?,
                    count: indexes.len(),
                },
                None => Rows::Proto(slice.iter().map(|r| r.bytes.clone()).collect()),
            };
            out.push((Chunk { offset, rows: chunk_rows }, indexes));
            offset += (end - start) as i64;
            start = end;
        }
        Ok(out)
    }

    /// The records at `indexes` in bizon's layout as an Arrow record batch.
    fn arrow_batch(
        &self,
        schema: &Arc<arrow_schema::Schema>,
        batch: &RecordBatch,
        meta: &BatchMeta,
        indexes: &[usize],
    ) -> Result<arrow_array::RecordBatch> {
        use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
        use arrow_array::ArrayRef;
        let attempt = &self.parts()?.0.attempt;
        let id_head = bizon_id_head(meta);
        let mut id = Vec::with_capacity(32);
        let n = indexes.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for cell in &self.sources {
            let column: ArrayRef = match cell {
                Cell::SourceTimestamp | Cell::ExtractedAt | Cell::LoadedAt => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
                    for &i in indexes {
                        b.append_value(match cell {
                            Cell::SourceTimestamp => batch.get(i).timestamp,
                            Cell::ExtractedAt => meta.extracted_at,
                            _ => meta.loaded_at,
                        });
                    }
                    Arc::new(b.finish())
                }
                Cell::Iteration => Arc::new(arrow_array::Int64Array::from(vec![meta.iteration; n])),
                _ => {
                    let mut b = StringBuilder::with_capacity(n, n * 64);
                    for &i in indexes {
                        let r = batch.get(i);
                        match cell {
                            Cell::RecordId => b.append_value(r.id),
                            Cell::SourceData => b.append_value(String::from_utf8_lossy(r.data)),
                            Cell::Attempt => b.append_value(attempt),
                            _ => {
                                id.clear();
                                id.extend_from_slice(&id_head);
                                push_hex(&mut id, i as u64, 8);
                                b.append_value(std::str::from_utf8(&id).unwrap_or_default());
                            }
                        }
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push(column);
        }
        arrow_array::RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::internal(format!("bigquery_streaming_v2: building an Arrow batch: {e}")))
    }

    /// Append every part's rows to its stream; rows BigQuery refuses go to `on_error` and the
    /// rest are sent again at the same offsets. Returns each part's next offset.
    fn append(&mut self, mut parts: Vec<Part>, batch: &RecordBatch, meta: &BatchMeta) -> Result<Vec<i64>> {
        let schema = match &self.arrow {
            Some((_, message)) => Schema::Arrow(message.clone()),
            None => Schema::Proto(Box::new(self.parts()?.2.descriptor())),
        };
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
                let chunks = self.chunks(&parts[i].rows, parts[i].offset, batch, meta)?;
                jobs.push((parts[i].stream.clone(), schema.clone(), chunks.iter().map(|c| c.0.clone()).collect()));
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
        self.arrow = match c.row_format {
            RowFormat::Protobuf => None,
            RowFormat::Arrow => {
                use arrow_schema::{DataType, Field, TimeUnit};
                let fields: Vec<Field> = staged
                    .written
                    .iter()
                    .map(|col| {
                        let kind = match col.kind.as_str() {
                            "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                            "INT64" => DataType::Int64,
                            _ => DataType::Utf8,
                        };
                        Field::new(&col.name, kind, col.mode != "REQUIRED")
                    })
                    .collect();
                let schema = Arc::new(arrow_schema::Schema::new(fields));
                let message = arrow_rows::schema_message(&schema)?;
                Some((schema, message))
            }
        };
        info!(table = %staged.target(), endpoint = writer.endpoint(), "bigquery_streaming_v2 writes through the Storage Write API");
        self.writer = Some(writer);
        self.streams.clear();
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
        // Stream mode: COMMITTED streams kept across writes, offsets continuing. Staged: PENDING
        // streams, nothing visible until the flush commits them together.
        let kind = if staged { pb::PENDING } else { pb::COMMITTED };
        while self.streams.len() < runs.len() {
            let s = self.parts()?.1.create_stream(&table, kind)?;
            self.streams.push((s, 0));
        }
        let parts: Vec<Part> = runs
            .into_iter()
            .zip(&self.streams)
            .map(|(rows, (stream, offset))| Part { stream: stream.clone(), rows, offset: *offset })
            .collect();
        match self.append(parts, batch, meta) {
            Ok(next) => {
                for (c, o) in self.streams.iter_mut().zip(next) {
                    c.1 = o;
                }
                Ok(())
            }
            Err(e) => {
                // Where each stream ends is unknown now: the next write opens new ones (the engine
                // resumes from its last commit: uncommitted PENDING streams are simply dropped).
                self.streams.clear();
                Err(e)
            }
        }
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        let (t, writer, _) = self.parts()?;
        if t.staging.is_some() && !self.streams.is_empty() {
            // The flush's PENDING streams: finalized, then committed together, before the token
            // that covers their rows exists.
            let table = t.target().clone();
            let streams: Vec<String> = self.streams.iter().map(|s| s.0.clone()).collect();
            for s in &streams {
                writer.finalize(s)?;
            }
            writer.batch_commit(&table, streams)?;
            debug!(iteration = next.iteration, streams = self.streams.len(), "flush committed to the staging table");
            self.streams.clear();
        }
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming_v2: flush before open"))?;
        Ok(t.flush(next))
    }

    fn finalize(&mut self) -> Result<()> {
        if let (Some(w), Some(t)) = (&self.writer, &self.target) {
            // Stream mode's COMMITTED streams (staged runs flushed theirs before finalize).
            for (s, _) in std::mem::take(&mut self.streams) {
                if let Err(e) = w.finalize(&s) {
                    warn!(stream = %s, table = %t.main, "finalizing a stream: {e}");
                }
            }
        }
        self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming_v2: finalize before open"))?.finalize()
    }

    fn finalize_lanes(&mut self, tokens: &[Json]) -> Result<()> {
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery_streaming_v2: finalize before open"))?;
        t.finalize_lanes(tokens)
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
