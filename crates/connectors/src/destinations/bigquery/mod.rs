//! `bigquery`: rows loaded with BigQuery load jobs, in bizon's batch layout (`_source_data` a
//! STRING) as Parquet, or the `record_schemas` columns with `unnest` as newline-delimited JSON
//! (BigQuery parses every typed value from its JSON text, as bizon leaves dates and timestamps to
//! BigQuery's parsing).
//!
//! Each flush is one load file and one load job. The file is written as rows arrive and streamed
//! to BigQuery's upload endpoint in 4 MiB chunks of a resumable upload (memory holds one chunk and
//! one Parquet row group, whatever `buffer_size` is); the flush sends the last chunk, which starts
//! the load job, and waits for it before the cursor commits. The job id is derived from the job,
//! the attempt and the flush's first iteration, so a request retried after its answer was lost is
//! recognised as the job that already ran instead of loading twice.
//!
//! Full refresh and incremental runs load into a staging table and publish exactly once
//! ([`crate::google::staging`]): rows of a crashed attempt's uncommitted loads are never
//! published. Stream mode loads into the table itself (at-least-once: a crash between a load and
//! its commit loads those rows again).

pub mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use serde_json::json;
use tracing::info;

pub use config::{BatchConfig, BatchSpec, DESCRIPTOR};

use crate::google::proto_rows::RowEncoder;
use crate::google::staging::{Staged, TableSpec, ATTEMPT, ITERATION};
use crate::google::storage::Storage;
use crate::google::table::{batch_columns, refuse_record};
use crate::google::upload::{ResumableUpload, UPLOAD_UNIT};
use crate::parquet::{ExtraKind, ExtraValue, LayoutParquet, Naming};

/// Bytes of load file sent per upload request (a multiple of 256 KiB; bounds the memory of the
/// file not yet sent).
const CHUNK: usize = 16 * UPLOAD_UNIT;

/// The load file of the flush in progress.
enum LoadFile {
    /// bizon's layout (staging: plus the attempt and iteration columns).
    Parquet(Box<LayoutParquet>),
    /// Typed columns: one JSON object per line.
    Ndjson(Vec<u8>),
}

impl LoadFile {
    /// Encoded bytes ready to send, whole multiples of `chunk`.
    fn take(&mut self, chunk: usize) -> Vec<u8> {
        match self {
            LoadFile::Parquet(p) => p.take(chunk),
            LoadFile::Ndjson(buf) => crate::parquet::take_whole_units(buf, chunk),
        }
    }

    fn finish(self) -> Result<Vec<u8>> {
        match self {
            LoadFile::Parquet(p) => p.finish(),
            LoadFile::Ndjson(buf) => Ok(buf),
        }
    }
}

/// Where a load file goes.
enum Via {
    /// BigQuery's upload host: the upload's last chunk starts the load job.
    UploadHost,
    /// `gs://bucket/object` (`gcs_buffer_bucket`), then a load job of that URI.
    Gcs { bucket: String, object: String },
}

/// A load in progress: its upload and the file being written.
struct Load {
    job_id: String,
    /// The job's `configuration.load`.
    config: Json,
    via: Via,
    upload: ResumableUpload,
    file: LoadFile,
    rows: u64,
}

pub struct BigQueryBatch {
    spec: Arc<BatchSpec>,
    destination_id: String,
    target: Option<Staged>,
    /// Cloud Storage, with `gcs_buffer_bucket`.
    storage: Option<Storage>,
    /// `<source>/<stream>`: where this job's files go in the bucket (bizon's layout).
    object_prefix: String,
    load: Option<Load>,
    /// Load jobs run by this attempt and upload requests that carried their data (logs).
    loads: u64,
    chunks: u64,
    /// Files loaded through the bucket.
    staged_files: u64,
    /// Bytes of load file per upload request and rows per Parquet row group (tests lower them).
    chunk: usize,
    row_group_rows: usize,
    /// With `unnest`: checks each value against its column before it is written (the encoder of
    /// `bigquery_streaming_v2`, its output thrown away), so a load job never fails on one record.
    checker: Option<RowEncoder>,
    rejected: Option<Vec<Rejected>>,
}

impl BigQueryBatch {
    pub fn new(spec: Arc<BatchSpec>, destination_id: &str) -> Self {
        BigQueryBatch {
            spec: spec.clone(),
            destination_id: destination_id.to_owned(),
            target: None,
            storage: None,
            object_prefix: String::new(),
            load: None,
            loads: 0,
            chunks: 0,
            staged_files: 0,
            chunk: CHUNK,
            row_group_rows: crate::parquet::ROW_GROUP_ROWS,
            checker: None,
            rejected: (spec.config.on_error == bizon_core::config::OnError::DeadLetter).then(Vec::new),
        }
    }

    fn target(&self) -> Result<&Staged> {
        self.target.as_ref().ok_or_else(|| Error::internal("bigquery: write before open"))
    }

    /// Open the upload of a new load file, its job id derived from the job, this attempt and
    /// the first iteration it holds.
    fn start(&self, meta: &BatchMeta) -> Result<Load> {
        let t = self.target()?;
        let table = t.target();
        let staged = t.staging.is_some();
        let typed = self.spec.keys.unnest;
        let job_id = format!("bizon_{:016x}_{}_{}", meta.job_hash, t.attempt, meta.iteration);
        let load = json!({
            "destinationTable": {"projectId": table.project, "datasetId": table.dataset, "tableId": table.table},
            "sourceFormat": if typed { "NEWLINE_DELIMITED_JSON" } else { "PARQUET" },
            "schema": t.written_schema(),
            "writeDisposition": "WRITE_APPEND",
            "createDisposition": "CREATE_NEVER",
        });
        let what = format!("the load job into {table}");
        let (upload, via) = match (&self.storage, &self.spec.config.gcs_buffer_bucket) {
            (Some(gcs), Some(bucket)) => {
                let object = format!("{}/{job_id}.{}", self.object_prefix, if typed { "json" } else { "parquet" });
                (gcs.start_upload(bucket, &object)?, Via::Gcs { bucket: bucket.clone(), object })
            }
            _ => (t.bq.start_load(load.clone(), &job_id, &what)?, Via::UploadHost),
        };
        let file = if typed {
            LoadFile::Ndjson(Vec::with_capacity(CHUNK + (CHUNK >> 2)))
        } else if staged {
            LoadFile::Parquet(Box::new(LayoutParquet::with_options(
                Naming::BigQuery,
                &[(ATTEMPT, ExtraKind::String), (ITERATION, ExtraKind::Int64)],
                self.row_group_rows,
            )?))
        } else {
            LoadFile::Parquet(Box::new(LayoutParquet::with_options(Naming::BigQuery, &[], self.row_group_rows)?))
        };
        Ok(Load { job_id, config: load, via, upload, file, rows: 0 })
    }

    /// Append a batch's rows to the load file; returns how many (typed records a column cannot
    /// hold go to `on_error` instead).
    fn append(&mut self, file: &mut LoadFile, batch: &RecordBatch, meta: &BatchMeta) -> Result<u64> {
        let t = self.target.as_ref().ok_or_else(|| Error::internal("bigquery: write before open"))?;
        let staged = t.staging.is_some();
        match file {
            LoadFile::Parquet(p) => {
                let extra = if staged {
                    vec![ExtraValue::String(t.attempt.clone()), ExtraValue::Int64(meta.iteration)]
                } else {
                    Vec::new()
                };
                p.write(batch, meta, &extra)?;
                Ok(batch.len() as u64)
            }
            LoadFile::Ndjson(out) => {
                let head = format!("{:016x}{:08x}", meta.job_hash, meta.iteration as u64 & 0xffff_ffff);
                let mut refused = Vec::new();
                let mut scratch = Vec::new();
                for i in 0..batch.len() {
                    let r = batch.get(i);
                    let Ok(Json::Object(record)) = serde_json::from_slice::<Json>(r.data) else {
                        refused.push((
                            i,
                            "the record is not a JSON object: `unnest` maps an object's fields to columns".to_owned(),
                        ));
                        continue;
                    };
                    if let Some(checker) = &self.checker {
                        let bad = t.columns.iter().enumerate().find_map(|(k, c)| {
                            scratch.clear();
                            let why = checker.put_json(&mut scratch, k, record.get(&c.name)).err()?;
                            Some(format!("column `{}` ({} {}): {why}", c.name, c.kind, c.mode))
                        });
                        if let Some(why) = bad {
                            refused.push((i, why));
                            continue;
                        }
                    }
                    // Values as they are: a load job parses each from its JSON (a JSON column takes
                    // an object as the object).
                    let mut row: serde_json::Map<String, Json> = t
                        .columns
                        .iter()
                        .filter_map(|c| record.get(&c.name).map(|v| (c.name.clone(), v.clone())))
                        .collect();
                    if staged {
                        row.insert("_bizon_id".into(), json!(format!("{head}{:08x}", i as u32)));
                        row.insert(ATTEMPT.into(), json!(t.attempt));
                        row.insert(ITERATION.into(), json!(meta.iteration));
                    }
                    serde_json::to_writer(&mut *out, &Json::Object(row))
                        .map_err(|e| Error::internal(format!("serializing a row: {e}")))?;
                    out.push(b'\n');
                }
                let table = t.target().clone();
                let written = (batch.len() - refused.len()) as u64;
                for (i, why) in refused {
                    refuse_record(self.rejected.as_mut(), "bigquery", &table, &batch.get(i), why)?;
                }
                Ok(written)
            }
        }
    }
}

impl Destination for BigQueryBatch {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.load = None;
        let c = &self.spec.config;
        let spec = TableSpec {
            what: "bigquery",
            key: &self.spec.keys.key.0,
            api_url: c.api_url.as_deref(),
            project_id: &c.project_id,
            dataset_id: &c.dataset_id,
            dataset_location: c.dataset_location.as_deref(),
            create_dataset: c.create_dataset,
            table_prefix: &c.table_prefix,
            destination_id: self.spec.keys.destination_id.as_deref(),
            time_partitioning: c.time_partitioning.as_ref(),
            partition_field_written: self.spec.keys.partition_field_written,
            typed: self.spec.keys.typed(&self.destination_id),
            unnest: self.spec.keys.unnest,
            layout: batch_columns(),
        };
        let (staged, token) = Staged::open(&spec, ctx, resume)?;
        if c.gcs_buffer_bucket.is_some() {
            self.storage = Some(Storage::new(staged.bq.shared_http(), c.gcs_url.as_deref()));
            self.object_prefix = format!("{}/{}", ctx.source, ctx.stream);
        }
        self.checker = self.spec.keys.unnest.then(|| RowEncoder::new(&staged.columns));
        self.target = Some(staged);
        Ok(token)
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let t = self.target()?;
        if t.published {
            return Err(Error::internal(format!("bigquery: a write after {} was published", t.main)));
        }
        let mut load = match self.load.take() {
            Some(l) => l,
            None => self.start(meta)?,
        };
        load.rows += self.append(&mut load.file, batch, meta)?;
        let ready = load.file.take(self.chunk);
        load.upload.send(ready, false, &[])?;
        self.load = Some(load);
        Ok(())
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        if let Some(mut load) = self.load.take() {
            self.loads += 1;
            let t = self.target()?;
            let rest = load.file.finish()?;
            let job = match &load.via {
                Via::UploadHost => t.bq.finish_load(&mut load.upload, &load.job_id, rest)?,
                Via::Gcs { bucket, object } => {
                    let gcs = self.storage.as_ref().ok_or_else(|| Error::internal("bigquery: no storage client"))?;
                    load.upload.send(rest, true, &[])?.ok_or_else(|| load.upload.incomplete())?;
                    let mut config = load.config.clone();
                    config["sourceUris"] = json!([format!("gs://{bucket}/{object}")]);
                    let job = t.bq.load_uris(config, &load.job_id, load.upload.what())?;
                    // Loaded: the file has served (bizon removes its buffer files too).
                    gcs.delete(bucket, object)?;
                    job
                }
            };
            info!(
                table = %t.target(),
                rows = load.rows,
                bytes = load.upload.sent(),
                requests = load.upload.chunks(),
                job = job.pointer("/jobReference/jobId").and_then(Json::as_str).unwrap_or("?"),
                loads = self.loads,
                "load job done"
            );
            self.chunks += u64::from(load.upload.chunks());
            self.staged_files += u64::from(matches!(load.via, Via::Gcs { .. }));
        }
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery: flush before open"))?;
        Ok(t.flush(next))
    }

    fn finalize(&mut self) -> Result<()> {
        if self.load.as_ref().is_some_and(|l| l.rows > 0) {
            return Err(Error::internal("bigquery: finalize with rows written but not flushed"));
        }
        self.target.as_mut().ok_or_else(|| Error::internal("bigquery: finalize before open"))?.finalize()
    }

    fn finalize_lanes(&mut self, tokens: &[Json]) -> Result<()> {
        let t = self.target.as_mut().ok_or_else(|| Error::internal("bigquery: finalize before open"))?;
        t.finalize_lanes(tokens)
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }
}
