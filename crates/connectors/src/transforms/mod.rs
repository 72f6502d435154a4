//! `transforms:` — bizon's inline Python transforms and jq programs, run in the consumer on whole
//! pages before the destination lays records out (DESIGN.md §2). [`Transformed`] wraps the run's
//! destination: every page it is given goes through the transforms first, in order (consecutive
//! ones of a language form one stage), and a record a transform fails on either fails the run
//! (naming the transform, the record and the error) or, under `on_error: dead_letter`, goes to the
//! dead-letter file with its error in the same commit.

#[cfg(feature = "jq")]
pub mod jq;
pub mod python;

use bizon_core::config::{OnError, TransformConfig};
use bizon_core::record::DEAD_LETTER;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};

use python::{Answer, WorkerPool};

/// Consecutive transforms of one language.
enum Stage {
    Python {
        transforms: Vec<TransformConfig>,
        worker: Option<WorkerPool>,
    },
    #[cfg(feature = "jq")]
    Jq(jq::JqStage),
}

/// The run's destination behind its transforms.
pub struct Transformed {
    inner: Box<dyn Destination>,
    stages: Vec<Stage>,
    interpreter: String,
    /// Python workers per stage.
    pool: usize,
    /// Records the transforms sent to the dead-letter file since the last `take_dead_lettered`.
    diverted: u64,
}

impl Transformed {
    /// `streams` are the `streams:` names `route(...)` in a jq program may name.
    pub fn new(
        inner: Box<dyn Destination>,
        transforms: Vec<TransformConfig>,
        interpreter: String,
        streams: Vec<String>,
    ) -> Result<Self> {
        let mut stages: Vec<Stage> = Vec::new();
        let mut pending: Vec<TransformConfig> = Vec::new();
        for t in transforms {
            let native = t.jq.is_some();
            let same = pending.last().is_some_and(|p| p.jq.is_some() == native);
            if !pending.is_empty() && !same {
                stages.push(stage(std::mem::take(&mut pending), &streams)?);
            }
            pending.push(t);
        }
        if !pending.is_empty() {
            stages.push(stage(pending, &streams)?);
        }
        Ok(Transformed { inner, stages, interpreter, pool: python::pool_size(), diverted: 0 })
    }

    /// Start the Python workers of every Python stage.
    fn start(&mut self) -> Result<()> {
        for s in &mut self.stages {
            if let Stage::Python { transforms, worker: w @ None } = s {
                *w = Some(WorkerPool::start(&self.interpreter, transforms, self.pool)?);
            }
        }
        Ok(())
    }

    /// The page after the transforms.
    fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.start()?;
        let mut page: Option<RecordBatch> = None;
        for s in &mut self.stages {
            let input = page.as_ref().unwrap_or(batch);
            let (out, diverted) = match s {
                Stage::Python { transforms, worker } => {
                    python_stage(worker.as_mut().expect("started above"), transforms, input)?
                }
                #[cfg(feature = "jq")]
                Stage::Jq(jq) => jq.apply(input)?,
            };
            self.diverted += diverted;
            page = Some(out);
        }
        Ok(page.unwrap_or_else(|| batch.clone()))
    }
}

/// A stage for consecutive transforms of one language.
fn stage(transforms: Vec<TransformConfig>, streams: &[String]) -> Result<Stage> {
    if transforms[0].jq.is_none() {
        return Ok(Stage::Python { transforms, worker: None });
    }
    #[cfg(feature = "jq")]
    return Ok(Stage::Jq(jq::JqStage::new(transforms, streams.to_vec())?));
    #[cfg(not(feature = "jq"))]
    {
        let _ = streams;
        Err(Error::config(format!(
            "transform `{}` is a jq program, and this build of bizon has no jq (cargo feature `jq`)",
            transforms[0].label
        )))
    }
}

/// A page through a Python stage: same records, ids, timestamps and routes, new payloads; and the
/// records sent to the dead-letter file.
fn python_stage(
    worker: &mut WorkerPool,
    transforms: &[TransformConfig],
    batch: &RecordBatch,
) -> Result<(RecordBatch, u64)> {
    let mut out = RecordBatch::with_capacity(batch.len(), batch.byte_len() + batch.byte_len() / 4);
    let mut diverted = 0u64;
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
    })?;
    Ok((out, diverted))
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
        self.start()?;
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
