//! The three narrow roles the engine drives (STYLE rule 3): a [`Source`] yields pages, a
//! [`Destination`] writes them and makes them durable when asked, a [`Backend`] stores jobs and
//! chained cursors. The engine owns the lifecycle: no connector commits or acks by itself.

use crate::config::SyncMode;
use crate::{Json, Page, RecordBatch, Result};

/// What a source needs to know to read one page.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    pub sync_mode: SyncMode,
    /// Incremental lower bound (exclusive): the max `cursor_field` value durably written by the
    /// last successful job. `None` on a first run or after a reset.
    pub watermark: Option<Json>,
    pub cursor_field: Option<String>,
}

/// Told the pagination of each destination commit (after it is durable): a source that keeps
/// its position elsewhere too (Kafka group offsets) records it there. Called from the consumer.
pub type DurableHook = std::sync::Arc<dyn Fn(&Json) + Send + Sync>;

pub trait Source: Send {
    /// A hook the engine calls after every destination commit with the committed pagination.
    fn durable_hook(&self) -> Option<DurableHook> {
        None
    }
    /// Total number of records this run will read, when the source can tell (progress, ETA).
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Read the page that `pagination` points at (`Null` = the first page).
    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page>;
}

/// Identity of the run a destination writes for.
#[derive(Debug, Clone)]
pub struct DestinationContext {
    pub pipeline: String,
    pub job_id: String,
    pub stream: String,
    /// How the destination materializes: a reset of an incremental stream arrives as FullRefresh.
    pub sync_mode: SyncMode,
    /// `(lane, lanes)` when consumers split the job over several broker lanes: this destination
    /// writes lane `lane`'s share to its own target (e.g. a file per lane).
    pub lane: Option<(usize, usize)>,
}

/// Per-batch facts the destination writes into bizon's row layout.
#[derive(Debug, Clone, Copy)]
pub struct BatchMeta {
    pub iteration: i64,
    pub extracted_at: i64,
    pub loaded_at: i64,
    /// 64-bit digest of the job id: with iteration and index it makes `bizon_id` unique and
    /// stable across re-delivery.
    pub job_hash: u64,
}

pub trait Destination: Send {
    /// Prepare the target for a job. `resume` is the commit token of the last durable cursor of
    /// this job (`None` on a fresh job). Returns the token describing the starting state, which
    /// the engine commits before the first write so a crash at any later point can roll back.
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json>;
    /// Write (or stage) one batch. Not yet durable: only `flush` makes it so.
    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()>;
    /// Make everything written so far durable; return the commit token the engine stores in the
    /// destination cursor in the same step. `next` is that cursor (its `token` still the previous
    /// one): a transactional destination stores it in the same transaction as the rows.
    fn flush(&mut self, next: &DestinationCursor) -> Result<Json>;
    /// Publish the completed job (e.g. atomic swap of a full-refresh staging target). Must be
    /// idempotent: after a crash it may be called again on an already published result.
    fn finalize(&mut self) -> Result<()>;
    /// Records the last `write` refused one by one (a value its typed column cannot hold) under a
    /// dead-letter policy, with their errors: the engine's router writes them to the dead-letter
    /// target in the same commit. Destinations without per-record refusal return none.
    fn take_rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }
    /// Records sent to a dead-letter target since the last call (metrics).
    fn take_dead_lettered(&mut self) -> u64 {
        0
    }
    /// A destination that commits cursors with its data returns its newest one for the job, so a
    /// crash between its commit and the backend's resumes after the data it holds. Called
    /// before `open`; the engine uses it when it is ahead of the backend's cursor.
    fn recover_cursor(&mut self, _ctx: &DestinationContext) -> Result<Option<DestinationCursor>> {
        Ok(None)
    }
}

/// A record a destination refused, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub id: String,
    pub timestamp: i64,
    /// The record's JSON payload as it arrived.
    pub data: Vec<u8>,
    pub error: String,
}

/// Delivery guarantee a destination documents in `bizon destination list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
    /// Nothing is stored (logger, null).
    None,
}

impl Guarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::None => "none (nothing stored)",
        }
    }
}

/// The identity of a pipeline's stream: jobs and watermarks are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey {
    pub pipeline: String,
    pub source: String,
    pub stream: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Canceled,
    /// Stopped by SIGINT/SIGTERM after a final commit: resumable.
    Stopped,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Stopped => "stopped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            "stopped" => JobStatus::Stopped,
            _ => return None,
        })
    }
}

/// A job as the backend stores it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub key: StreamKey,
    pub sync_mode: SyncMode,
    /// The job writes as a full refresh although the stream is incremental (reset).
    pub reset: bool,
    pub status: JobStatus,
    /// Incremental lower bound this job reads after (fixed at job creation, reused on resume).
    pub since: Option<Json>,
    pub created_at: i64,
    pub updated_at: i64,
    pub pid: u32,
    pub total_records: Option<u64>,
    pub error: Option<String>,
}

/// The last durable point of a job: everything up to and including `iteration` is in the
/// destination, described by `token`; the source resumes from `pagination`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DestinationCursor {
    /// Last iteration durably written; -1 for the starting state committed at open.
    pub iteration: i64,
    pub pagination: Json,
    pub token: Json,
    pub records_written: u64,
    pub bytes_written: u64,
    /// Max `cursor_field` value written so far by this job.
    pub watermark: Option<Json>,
    /// The source was exhausted at `iteration`: only finalize is left.
    pub done: bool,
}

impl DestinationCursor {
    /// The starting state of a job (nothing written yet), with the destination's opening token.
    pub fn start(token: Json) -> Self {
        DestinationCursor {
            iteration: -1,
            pagination: Json::Null,
            token,
            records_written: 0,
            bytes_written: 0,
            watermark: None,
            done: false,
        }
    }
}

/// Keeps jobs, cursors and watermarks. Implementations check that each destination cursor
/// chains onto the stored one (STYLE rule 4).
pub trait Backend: Send {
    /// Take the exclusive right to run this pipeline; fails with a message naming the running
    /// job and its pid. The lock is released on drop and when the process dies.
    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>>;
    /// The newest unfinished job of this stream (`running` left by a crash, `stopped` by a
    /// signal, `failed` by an error): the one a new run resumes.
    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>>;
    /// Record a new job; a job with this id already recorded is left as it is.
    fn create_job(&mut self, job: &Job) -> Result<()>;
    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()>;
    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()>;
    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>>;
    /// Store `cursor` if it chains onto the stored one (its iteration is larger), else error.
    fn commit_destination_cursor(&mut self, job_id: &str, cursor: &DestinationCursor) -> Result<()>;
    /// Producer progress (bizon's source cursor), written every `syncCursorInDBEvery` iterations.
    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()>;
    /// Mark the job succeeded and make its watermark the stream's, in one step.
    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()>;
    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>>;
    /// Forget the stream's watermark and cancel its unfinished jobs; returns jobs canceled.
    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64>;
    /// Fail if another run took the pipeline over since `lock_pipeline` (fencing token moved on).
    /// The engine checks it before every destination flush; backends that fence also check it
    /// inside every cursor commit.
    fn check_fence(&mut self) -> Result<()> {
        Ok(())
    }
    /// Newest first, with their last destination cursor.
    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>>;
}

/// An external queue between producer and consumer (RabbitMQ, Kafka): pages travel as
/// [`crate::wire`] messages; a delivery is acknowledged only after the destination commit that
/// covers it, so a crash redelivers, never loses.
pub trait QueueBroker: Send + Sync {
    /// For messages: kind, address and queue, never a secret.
    fn describe(&self) -> String;
    /// Drop every queued message: a run that owns both ends re-produces from its last commit.
    fn purge(&self) -> Result<()>;
    /// Remove the queue: the job that owned both ends is complete.
    fn delete(&self) -> Result<()>;
    fn publisher(&self) -> Result<Box<dyn QueuePublisher>>;
    /// A subscriber to one lane (`0..lanes()`).
    fn subscriber(&self, lane: usize) -> Result<Box<dyn QueueSubscriber>>;
    /// Ordered lanes the pages are spread over (iteration `i` goes to lane `i % lanes`), one
    /// consumer each: a RabbitMQ queue or a Kafka partition per lane.
    fn lanes(&self) -> usize {
        1
    }
    /// Deliveries a subscriber may hold unacknowledged; the consumer commits before reaching it.
    fn max_unacked(&self) -> usize;
    /// Pages the producer may publish beyond the consumer's last commit before it waits: bounds
    /// what the broker holds for a job (and keeps a stopped consumer from being outrun). At
    /// least `max_unacked`, so the consumer always reaches its commit point.
    fn max_in_flight(&self) -> usize {
        2 * self.max_unacked()
    }
}

pub trait QueuePublisher: Send {
    /// Publish one message durably to `lane` (confirmations may be pipelined; `flush` waits for all).
    fn publish(&mut self, lane: usize, message: Vec<u8>) -> Result<()>;
    /// Wait until the broker has confirmed every published message.
    fn flush(&mut self) -> Result<()>;
}

pub trait QueueSubscriber: Send {
    /// The next message and its delivery tag, or `None` when nothing arrived within `timeout`.
    fn next(&mut self, timeout: std::time::Duration) -> Result<Option<(Vec<u8>, u64)>>;
    /// Acknowledge one delivery (a duplicate of what is already committed).
    fn ack(&mut self, tag: u64) -> Result<()>;
    /// Acknowledge every delivery up to and including `tag`: the destination committed them.
    fn ack_through(&mut self, tag: u64) -> Result<()>;
}
