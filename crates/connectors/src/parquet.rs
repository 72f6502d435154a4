//! bizon's row layout as a Parquet file (arrow + parquet, Snappy), written incrementally: the
//! encoded bytes can be taken out as they are produced (an upload in chunks), so memory holds
//! one row group in progress, not the file.
//!
//! Columns, in BigQuery's order for bizon's batch destination: `_source_record_id` (string),
//! `_source_timestamp` (timestamp µs UTC), `_source_data` (string: the record's JSON),
//! `_bizon_extracted_at`, `_bizon_loaded_at` (timestamps), `_bizon_id` (string), then any
//! constant-per-batch extra columns (string or int64) the caller declares.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch as ArrowBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bizon_core::{BatchMeta, Error, RecordBatch, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// A row group is written once this many rows are buffered (BigQuery reads row groups in
/// parallel; smaller groups also bound the memory of the one in progress).
pub const ROW_GROUP_ROWS: usize = 16_384;
/// …or once the row group in progress holds this many bytes.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// The type of an extra column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    String,
    Int64,
}

/// The value of an extra column for every row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraValue {
    String(String),
    Int64(i64),
}

/// How bizon's six columns are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `_source_record_id`, …: bizon's BigQuery columns.
    BigQuery,
    /// `source_record_id`, …: the names of bizon's file rows.
    File,
}

/// bizon's six columns and their Arrow types.
pub fn layout_fields(naming: Naming) -> Vec<Field> {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let names =
        ["source_record_id", "source_timestamp", "source_data", "bizon_extracted_at", "bizon_loaded_at", "bizon_id"];
    let name = |i: usize| match naming {
        Naming::BigQuery => format!("_{}", names[i]),
        Naming::File => names[i].to_owned(),
    };
    vec![
        Field::new(name(0), DataType::Utf8, true),
        Field::new(name(1), ts(), true),
        Field::new(name(2), DataType::Utf8, true),
        Field::new(name(3), ts(), true),
        Field::new(name(4), ts(), true),
        Field::new(name(5), DataType::Utf8, true),
    ]
}

/// A Parquet file of bizon rows being written.
pub struct LayoutParquet {
    writer: ArrowWriter<Vec<u8>>,
    schema: SchemaRef,
    extra: Vec<ExtraKind>,
    rows: u64,
}

impl LayoutParquet {
    /// A new file with bizon's columns (BigQuery's names) and `extra` columns after them.
    pub fn new(extra: &[(&str, ExtraKind)]) -> Result<Self> {
        Self::with_options(Naming::BigQuery, extra, ROW_GROUP_ROWS)
    }

    /// A new file whose row groups hold at most `rows` rows (and 24 MB).
    pub fn with_options(naming: Naming, extra: &[(&str, ExtraKind)], rows: usize) -> Result<Self> {
        let mut fields = layout_fields(naming);
        for (name, kind) in extra {
            let t = match kind {
                ExtraKind::String => DataType::Utf8,
                ExtraKind::Int64 => DataType::Int64,
            };
            fields.push(Field::new(*name, t, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(rows.max(1)))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
            .map_err(|e| Error::internal(format!("starting a Parquet file: {e}")))?;
        Ok(LayoutParquet { writer, schema, extra: extra.iter().map(|(_, k)| *k).collect(), rows: 0 })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Append a batch's records in bizon's layout (`bizon_id` from the job, iteration and index,
    /// as every destination writes it), with `extra` values for every row.
    pub fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta, extra: &[ExtraValue]) -> Result<()> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        let mut ids = StringBuilder::with_capacity(n, n * 16);
        let mut times = TimestampMicrosecondBuilder::with_capacity(n);
        let mut data = StringBuilder::with_capacity(n, batch.byte_len());
        let mut bizon_ids = StringBuilder::with_capacity(n, n * 32);
        let mut id = String::with_capacity(32);
        let head = format!("{:016x}{:08x}", meta.job_hash, meta.iteration as u64 & 0xffff_ffff);
        for i in 0..n {
            let r = batch.get(i);
            ids.append_value(r.id);
            times.append_value(r.timestamp);
            match std::str::from_utf8(r.data) {
                Ok(text) => data.append_value(text),
                Err(_) => data.append_value(String::from_utf8_lossy(r.data)),
            }
            id.clear();
            id.push_str(&head);
            use std::fmt::Write;
            let _ = write!(id, "{:08x}", i as u32);
            bizon_ids.append_value(&id);
        }
        let constant = |v: i64| -> ArrayRef {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n);
            b.append_value_n(v, n);
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(times.finish().with_timezone("UTC")),
            Arc::new(data.finish()),
            constant(meta.extracted_at),
            constant(meta.loaded_at),
            Arc::new(bizon_ids.finish()),
        ];
        if extra.len() != self.extra.len() {
            return Err(Error::internal("Parquet file: extra values do not match the extra columns"));
        }
        for (kind, value) in self.extra.iter().zip(extra) {
            columns.push(match (kind, value) {
                (ExtraKind::String, ExtraValue::String(s)) => {
                    let mut b = StringBuilder::with_capacity(n, n * s.len());
                    for _ in 0..n {
                        b.append_value(s);
                    }
                    Arc::new(b.finish())
                }
                (ExtraKind::Int64, ExtraValue::Int64(v)) => {
                    let mut b = Int64Builder::with_capacity(n);
                    b.append_value_n(*v, n);
                    Arc::new(b.finish())
                }
                _ => return Err(Error::internal("Parquet file: an extra value of the wrong type")),
            });
        }
        let arrow = ArrowBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::internal(format!("building a Parquet row batch: {e}")))?;
        self.writer.write(&arrow).map_err(|e| Error::permanent(format!("writing Parquet rows: {e}")))?;
        self.rows += n as u64;
        Ok(())
    }

    /// Encoded bytes not yet taken, whole multiples of `unit` (the rest stays for later). The
    /// writer's buffer keeps its capacity: no growing and freeing of large buffers per chunk.
    pub fn take(&mut self, unit: usize) -> Vec<u8> {
        take_whole_units(self.writer.inner_mut(), unit)
    }

    /// Close the file: the bytes not yet taken, footer included.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.writer.finish().map_err(|e| Error::permanent(format!("closing a Parquet file: {e}")))?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

/// The bytes of `buf` that fill whole multiples of `unit`, taken from its front; the rest stays.
/// `buf` keeps its capacity, so a buffer filled and drained over and over is not reallocated.
pub fn take_whole_units(buf: &mut Vec<u8>, unit: usize) -> Vec<u8> {
    let n = buf.len() - buf.len() % unit.max(1);
    if n == 0 {
        return Vec::new();
    }
    buf.drain(..n).collect()
}

/// The text values of string column `column` in a Parquet file, or in every `*.parquet` file of a
/// directory in name order (a directory of parts): for tests and checks of written files.
pub fn read_strings(path: &std::path::Path, column: &str) -> Result<Vec<String>> {
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let io = |e: std::io::Error| Error::io(format!("reading {}", path.display()), e);
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut out = Vec::new();
    for f in files {
        let bad = |e: &dyn std::fmt::Display| Error::permanent(format!("reading {}: {e}", f.display()));
        let file = std::fs::File::open(&f).map_err(io)?;
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            let index = batch.schema().index_of(column).map_err(|e| bad(&e))?;
            let values = batch.column(index).clone();
            let values = values.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad(&"not a string column"))?;
            out.extend((0..values.len()).map(|i| values.value(i).to_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch(n: usize, from: usize) -> RecordBatch {
        let mut b = RecordBatch::with_capacity(n, n * 32);
        for i in from..from + n {
            b.push(&i.to_string(), 1_700_000_000_000_000 + i as i64, format!(r#"{{"id":{i},"s":"é"}}"#).as_bytes());
        }
        b
    }

    fn meta(iteration: i64) -> BatchMeta {
        BatchMeta { iteration, extracted_at: 1_000_000, loaded_at: 2_000_000, job_hash: 0xabc }
    }

    #[test]
    fn rows_taken_in_chunks_read_back_as_written() {
        let mut file = LayoutParquet::with_options(
            Naming::BigQuery,
            &[("_bizon_attempt", ExtraKind::String), ("_bizon_iteration", ExtraKind::Int64)],
            7000,
        )
        .unwrap();
        let mut bytes = Vec::new();
        for it in 0..40 {
            file.write(
                &batch(5000, it * 5000),
                &meta(it as i64),
                &[ExtraValue::String("a1".into()), ExtraValue::Int64(it as i64)],
            )
            .unwrap();
            let chunk = file.take(256 << 10);
            assert_eq!(chunk.len() % (256 << 10), 0);
            bytes.extend(chunk);
        }
        assert_eq!(file.rows(), 200_000);
        bytes.extend(file.finish().unwrap());
        let dir = bizon_testkit::fixtures::TempDir::new("parquet");
        std::fs::write(dir.join("f.parquet"), &bytes).unwrap();
        let file = std::fs::File::open(dir.join("f.parquet")).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let mut seen = 0usize;
        for b in reader {
            let b = b.unwrap();
            let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
            let ids = col("_source_record_id");
            let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
            let data = col("_source_data");
            let data = data.as_any().downcast_ref::<StringArray>().unwrap();
            let ts = col("_source_timestamp");
            let ts = ts.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            let bid = col("_bizon_id");
            let bid = bid.as_any().downcast_ref::<StringArray>().unwrap();
            let iter = col("_bizon_iteration");
            let iter = iter.as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                let k = seen + i;
                assert_eq!(ids.value(i), k.to_string());
                assert_eq!(data.value(i), format!(r#"{{"id":{k},"s":"é"}}"#));
                assert_eq!(ts.value(i), 1_700_000_000_000_000 + k as i64);
                assert_eq!(iter.value(i), (k / 5000) as i64);
                assert_eq!(bid.value(i), format!("{:016x}{:08x}{:08x}", 0xabc, k / 5000, k % 5000));
            }
            assert_eq!(ts.timezone(), Some("UTC"));
            seen += b.num_rows();
        }
        assert_eq!(seen, 200_000);
    }
}
