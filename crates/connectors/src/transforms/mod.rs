//! `transforms:` — bizon's inline Python transforms, run in the consumer on whole pages before the
//! destination lays records out (DESIGN.md §2). [`Transformed`] wraps the run's destination:
//! every page it is given goes through the transforms first, and a record a transform fails on
//! either fails the run (naming the transform, the record and the exception) or, under
//! `on_error: dead_letter`, goes to the dead-letter file with its error in the same commit.

pub mod python;

use bizon_core::config::{OnError, TransformConfig};
use bizon_core::record::DEAD_LETTER;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};

use python::{Answer, WorkerPool};

/// The run's destination behind its transforms.
pub struct Transformed {
    inner: Box<dyn Destination>,
    transforms: Vec<TransformConfig>,
    interpreter: String,
    /// Started by `open`.
    worker: Option<WorkerPool>,
    /// Workers in the pool.
    pool: usize,
    /// Records the transforms sent to the dead-letter file since the last `take_dead_lettered`.
    diverted: u64,
}

impl Transformed {
    pub fn new(inner: Box<dyn Destination>, transforms: Vec<TransformConfig>, interpreter: String) -> Self {
        Transformed { inner, transforms, interpreter, worker: None, pool: python::pool_size(), diverted: 0 }
    }

    fn worker(&mut self) -> Result<&mut WorkerPool> {
        if self.worker.is_none() {
            self.worker = Some(WorkerPool::start(&self.interpreter, &self.transforms, self.pool)?);
        }
        Ok(self.worker.as_mut().expect("started above"))
    }

    /// The page after the transforms: same records, ids, timestamps and routes, new payloads.
    fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut out = RecordBatch::with_capacity(batch.len(), batch.byte_len() + batch.byte_len() / 4);
        let mut diverted = 0u64;
        let transforms = std::mem::take(&mut self.transforms);
        let result = self.worker().and_then(|worker| {
            worker.page(batch, |i, answer| {
                let r = batch.get(i);
                match answer {
                    Answer::Record(data) => {
                        out.push_routed(batch.route(i), r.id, r.timestamp, |o| o.extend_from_slice(data));
                        Ok(())
                    }
                    Answer::Untouched => {
                        out.push_routed(DEAD_LETTER, r.id, r.timestamp, |o| o.extend_from_slice(r.data));
                        Ok(())
                    }
                    Answer::Failed(index, msg) => {
                        let t = index.and_then(|k| transforms.get(k));
                        let label = t.map_or("json.dumps (after the transforms)", |t| t.label.as_str());
                        let on_error = t.map_or_else(
                            || if transforms.iter().any(|t| t.on_error == OnError::DeadLetter) { OnError::DeadLetter } else { OnError::Fail },
                            |t| t.on_error,
                        );
                        if on_error == OnError::Fail {
                            return Err(Error::permanent(format!(
                                "transform `{label}` failed on record `{}`: {msg} (set `on_error: dead_letter` on the transform to divert such records)",
                                r.id
                            )));
                        }
                        tracing::warn!(record = %r.id, transform = label, error = %msg, "record sent to the dead-letter file");
                        out.push_routed(DEAD_LETTER, r.id, r.timestamp, |o| dead_letter_row(o, r.id, label, &msg, r.data));
                        diverted += 1;
                        Ok(())
                    }
                }
            })
        });
        self.transforms = transforms;
        result?;
        self.diverted += diverted;
        Ok(out)
    }
}

/// `{"source_record_id", "transform", "error", "record"}`: the dead-letter file's row for a record
/// a transform failed on (the record as it arrived).
fn dead_letter_row(out: &mut Vec<u8>, id: &str, label: &str, error: &str, record: &[u8]) {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    out.extend_from_slice(b"{\"source_record_id\":");
    out.extend_from_slice(s(id).as_bytes());
    out.extend_from_slice(b",\"transform\":");
    out.extend_from_slice(s(label).as_bytes());
    out.extend_from_slice(b",\"error\":");
    out.extend_from_slice(s(error).as_bytes());
    out.extend_from_slice(b",\"record\":");
    out.extend_from_slice(record);
    out.push(b'}');
}

impl Destination for Transformed {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.worker()?;
        self.inner.open(ctx, resume)
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        let out = self.apply(batch)?;
        self.inner.write(&out, meta)
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        self.inner.flush(next)
    }

    fn finalize(&mut self) -> Result<()> {
        self.inner.finalize()
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.inner.take_rejected()
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.diverted) + self.inner.take_dead_lettered()
    }

    fn recover_cursor(&mut self, ctx: &DestinationContext) -> Result<Option<DestinationCursor>> {
        self.inner.recover_cursor(ctx)
    }
}

#[cfg(test)]
mod tests;
