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
    /// Independent shards several processes can read at once, each with its own positions (Kafka
    /// with `lease_partitions`: one per partition); `None` = the source is read by one process.
    fn shards(&mut self) -> Result<Option<usize>> {
        Ok(None)
    }
    /// Read only shard `shard` of `shards` from now on (its pagination holds its positions only).
    fn select_shard(&mut self, shard: usize, shards: usize) -> Result<()> {
        Err(crate::Error::config(format!("this source cannot be read in shards (asked for shard {shard} of {shards})")))
    }
}

/// Identity of the run a destination writes for.
#[derive(Debug, Clone)]
pub struct DestinationContext {
    pub pipeline: String,
    pub job_id: String,
    /// The source's name (`source.name`): bizon's default table names start with it.
    pub source: String,
    pub stream: String,
    /// How the destination materializes: a reset of an incremental stream arrives as FullRefresh.
    pub sync_mode: SyncMode,
    /// `(lane, lanes)` when consumers split the job over several broker lanes: this destination
    /// writes lane `lane`'s share to its own target (e.g. a file per lane).
    pub lane: Option<(usize, usize)>,
}

/// The id of lane `lane`'s own cursor chain (and destination commit log) in job `job_id`: the job
/// id itself with one lane, `<job>~<lane>` with several.
pub fn lane_chain_id(job_id: &str, lane: usize, lanes: usize) -> String {
    match lanes {
        1 => job_id.to_owned(),
        _ => format!("{job_id}~{lane}"),
    }
}

impl DestinationContext {
    /// The job every lane shares: `job_id` itself, or on lanes the job of the lane's own chain
    /// ([`lane_chain_id`]).
    pub fn lane_job(&self) -> Result<&str> {
        match self.lane {
            Some((lane, lanes)) if lanes > 1 => self.job_id.strip_suffix(&format!("~{lane}")).ok_or_else(|| {
                crate::Error::internal(format!("lane {lane}'s job id `{}` has no lane suffix", self.job_id))
            }),
            _ => Ok(&self.job_id),
        }
    }
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
    /// On lanes: called once every lane is done, by the lane that completes the job (after its own
    /// `finalize`), with every lane's last commit token in lane order. A destination that publishes
    /// a job once from what its lanes staged (BigQuery's staging tables) does it here. Idempotent
    /// like `finalize`: a crash before the job completes calls it again.
    fn finalize_lanes(&mut self, _tokens: &[Json]) -> Result<()> {
        Ok(())
    }
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
    /// Not a run: a `bizon stream reset` request the stream's next run turns into a reset
    /// (bizon's `stream_resets` row). Never resumed.
    ResetRequested,
    /// A reset request a run took up (its `error` names the job).
    ResetConsumed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Stopped => "stopped",
            JobStatus::ResetRequested => "reset_requested",
            JobStatus::ResetConsumed => "reset_consumed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            "stopped" => JobStatus::Stopped,
            "reset_requested" => JobStatus::ResetRequested,
            "reset_consumed" => JobStatus::ResetConsumed,
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

/// How a destination cursor joins a job's chain: what [`check_chain`] checks it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// [`Backend::commit_destination_cursor`]: the next cursor after the stored one at
    /// `follows`; `None` = the chain's first cursor (the start state at iteration -1).
    Next { follows: Option<i64> },
    /// [`Backend::recover_destination_cursor`]: a jump from the stored cursor at `from` (`None`:
    /// nothing stored) to a newer one a transactional destination committed with its data.
    Recovery { from: Option<i64> },
}

fn iteration_name(i: Option<i64>) -> String {
    i.map_or_else(|| "none (nothing stored)".to_owned(), |i| format!("iteration {i}"))
}

/// The chain rule (STYLE rule 4) every backend applies inside its commit transaction, after the
/// fencing check: `stored` is the job's stored cursor read in that transaction (iteration,
/// done). A cursor is accepted only if the stored one is the one it builds on (compare-and-swap)
/// and it moves the chain forward:
/// - a **gap** (the caller follows an iteration ahead of the stored one: commits are missing)
///   and a cursor that does not advance (a lower iteration, or the same one again without
///   marking it done) are broken invariants of the caller: [`crate::ErrorKind::Internal`];
/// - a **fork** (the stored cursor moved past the one the caller follows: another writer
///   committed) is [`crate::ErrorKind::Permanent`]: retrying from the caller's view cannot help.
///
/// The same iteration is accepted once more when it marks the chain done (the engine's final
/// commit after `max_iterations`, which adds no page). A chain starts at iteration -1: only a
/// recovery may put a later cursor first, since only a destination can vouch for its data.
pub fn check_chain(job_id: &str, link: Link, stored: Option<(i64, bool)>, cursor: &DestinationCursor) -> Result<()> {
    let (follows, what) = match link {
        Link::Next { follows } => (follows, "commit"),
        Link::Recovery { from } => (from, "recovery"),
    };
    let at = stored.map(|(i, _)| i);
    let it = cursor.iteration;
    if at != follows {
        let gap = match (at, follows) {
            (None, Some(_)) => true,
            (Some(s), Some(f)) => f > s,
            _ => false,
        };
        return Err(if gap {
            crate::Error::internal(format!(
                "destination cursor {what} for job {job_id} does not chain (a gap): iteration {it} follows {}, but the \
                 stored cursor is at {}: the commits in between are missing",
                iteration_name(follows),
                iteration_name(at)
            ))
        } else {
            crate::Error::permanent(format!(
                "destination cursor {what} for job {job_id} does not chain (a fork): iteration {it} follows {}, but the \
                 stored cursor moved on to {}: another writer committed",
                iteration_name(follows),
                iteration_name(at)
            ))
        });
    }
    let advances = match (link, stored) {
        (_, Some((s, done))) => it > s || (it == s && cursor.done && !done),
        (Link::Next { .. }, None) => it == -1,
        (Link::Recovery { .. }, None) => it >= -1,
    };
    if advances {
        return Ok(());
    }
    Err(crate::Error::internal(match (link, at) {
        (Link::Next { .. }, None) => format!(
            "destination cursor commit for job {job_id} does not chain: iteration {it} starts the chain, which starts \
             at iteration -1 (a destination's newer commit is adopted by a recovery)"
        ),
        _ => format!(
            "destination cursor {what} for job {job_id} does not chain: iteration {it} does not advance past {} it follows",
            iteration_name(at)
        ),
    }))
}

/// The error of a write refused because another run took the lock `lock` over since this handle
/// took it (fencing token `current` > `ours`; `None` when the token row is gone). Permanent: the
/// stale run stops without committing.
pub fn fenced_error(lock: &str, ours: i64, current: Option<i64>) -> crate::Error {
    crate::Error::permanent(format!(
        "fenced: another run took pipeline `{lock}` over (fencing token {} > ours {ours}); this run stops without committing",
        current.map_or_else(|| "gone".to_owned(), |c| c.to_string())
    ))
}

/// Keeps jobs, cursors and watermarks. Each destination cursor names the stored cursor it
/// builds on and is refused unless it chains onto it ([`check_chain`], STYLE rule 4).
pub trait Backend: Send {
    /// Take the exclusive right to run this pipeline; fails with a message naming the running
    /// job and its pid. The lock is released on drop and when the process dies. Taking it bumps
    /// the pipeline's fencing token: once another handle takes the lock after this one, this
    /// handle's commits and job updates are refused (it is a stale writer).
    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>>;
    /// Whether some handle (this process or another) holds `key`'s lock now, without taking it;
    /// `None` when the backend cannot tell. Feeds the unclaimed-lanes gauge.
    fn lock_held(&mut self, _key: &StreamKey) -> Result<Option<bool>> {
        Ok(None)
    }
    /// The newest unfinished job of this stream (`running` left by a crash, `stopped` by a
    /// signal, `failed` by an error): the one a new run resumes.
    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>>;
    /// Record a new job; a job with this id already recorded is left as it is.
    fn create_job(&mut self, job: &Job) -> Result<()>;
    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()>;
    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()>;
    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>>;
    /// The destination cursors of several chains (a job's lanes), in the order of `job_ids`; a
    /// backend over a network answers in one round trip (a producer reads every lane's cursor
    /// while it waits for the consumers' commits).
    fn destination_cursors(&mut self, job_ids: &[String]) -> Result<Vec<Option<DestinationCursor>>> {
        job_ids.iter().map(|id| self.destination_cursor(id)).collect()
    }
    /// Store `cursor` as the next link of the job's chain: `follows` is the iteration of the
    /// stored cursor it builds on (`None`: the first cursor, the start state at iteration -1).
    /// One transaction checks the fencing token (where the backend has one), compares the
    /// stored iteration with `follows` and swaps in `cursor`; a gap, a fork or a cursor that
    /// does not advance is refused with nothing stored ([`check_chain`]).
    fn commit_destination_cursor(
        &mut self,
        job_id: &str,
        follows: Option<i64>,
        cursor: &DestinationCursor,
    ) -> Result<()> {
        self.swap_cursor(job_id, Link::Next { follows }, cursor)
    }
    /// Move the job's chain forward to `cursor`, which a transactional destination committed
    /// with its data (`Destination::recover_cursor`) while the backend missed those commits: a
    /// named, legitimate jump. `from` is the stored iteration the caller read (`None`: nothing
    /// stored); the swap is fenced and compared with it like a commit, and the cursor must be
    /// ahead of it.
    fn recover_destination_cursor(
        &mut self,
        job_id: &str,
        from: Option<i64>,
        cursor: &DestinationCursor,
    ) -> Result<()> {
        self.swap_cursor(job_id, Link::Recovery { from }, cursor)
    }
    /// What both of the above do, for a backend to implement: in one transaction, check the
    /// fencing token, run [`check_chain`] on the stored cursor and `link`, and store `cursor`.
    fn swap_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()>;
    /// Producer progress (bizon's source cursor), written every `syncCursorInDBEvery` iterations.
    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()>;
    /// Mark the job succeeded and make its watermark the stream's, in one step.
    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()>;
    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>>;
    /// Forget the stream's watermark and cancel its unfinished jobs; returns jobs canceled.
    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64>;
    /// Fail if another run took the pipeline over since `lock_pipeline` (fencing token moved on).
    /// The engine checks it before opening the destination, before every destination flush and
    /// before finalizing; backends also check it inside every cursor commit and job update.
    fn check_fence(&mut self) -> Result<()> {
        Ok(())
    }
    /// Newest first, with their last destination cursor.
    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>>;

    /// The stream's pending reset requests (`bizon stream reset`), oldest first. They are job
    /// rows with status `reset_requested`, so every backend keeps them with no table of its
    /// own; a request is newer than every job that ran before it, so the newest rows hold it.
    fn pending_resets(&mut self, key: &StreamKey) -> Result<Vec<Job>> {
        let mut pending: Vec<Job> = self
            .list_jobs(&key.pipeline, PENDING_RESET_SCAN)?
            .into_iter()
            .map(|(job, _)| job)
            .filter(|job| &job.key == key && job.status == JobStatus::ResetRequested)
            .collect();
        pending.reverse();
        Ok(pending)
    }
    /// Ask the stream's next run to reset it: re-read everything and replace the target.
    fn request_reset(&mut self, key: &StreamKey, request_id: &str) -> Result<()> {
        let now = crate::time::now_micros();
        self.create_job(&Job {
            id: request_id.to_owned(),
            key: key.clone(),
            sync_mode: SyncMode::Incremental,
            reset: true,
            status: JobStatus::ResetRequested,
            since: None,
            created_at: now,
            updated_at: now,
            pid: std::process::id(),
            total_records: None,
            error: None,
        })
    }
    /// Withdraw the stream's pending reset requests; returns how many there were.
    fn cancel_resets(&mut self, key: &StreamKey) -> Result<u64> {
        let pending = self.pending_resets(key)?;
        for request in &pending {
            self.set_job_status(&request.id, JobStatus::Canceled, Some("reset request canceled"))?;
        }
        Ok(pending.len() as u64)
    }
    /// Mark the pending requests as taken up by `job_id` (the reset job that serves them).
    fn consume_resets(&mut self, requests: &[Job], job_id: &str) -> Result<()> {
        for request in requests {
            self.set_job_status(&request.id, JobStatus::ResetConsumed, Some(&format!("consumed by job {job_id}")))?;
        }
        Ok(())
    }
}

/// How many of a pipeline's newest job rows [`Backend::pending_resets`] looks through.
const PENDING_RESET_SCAN: usize = 1000;

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
    /// Messages of this lane the broker holds that were not delivered yet (the lane's backlog,
    /// for the `bizon_lane_pages_waiting` gauge); `None` when the broker cannot tell. Called
    /// every few seconds, never per message.
    fn waiting(&mut self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{check_chain, DestinationCursor, Link};
    use crate::{ErrorKind, Json};

    fn at(iteration: i64, done: bool) -> DestinationCursor {
        DestinationCursor { iteration, done, ..DestinationCursor::start(Json::Null) }
    }

    fn refused(link: Link, stored: Option<(i64, bool)>, c: &DestinationCursor) -> (ErrorKind, String) {
        let e = check_chain("j", link, stored, c).expect_err("must be refused");
        (e.kind(), e.message().to_owned())
    }

    #[test]
    fn a_chain_starts_at_minus_one_and_each_link_follows_the_stored_one() {
        let next = |follows| Link::Next { follows };
        assert!(check_chain("j", next(None), None, &at(-1, false)).is_ok());
        assert!(check_chain("j", next(Some(-1)), Some((-1, false)), &at(4, false)).is_ok(), "a flush covers pages");
        assert!(check_chain("j", next(Some(4)), Some((4, false)), &at(4, true)).is_ok(), "marking done");
        let (kind, m) = refused(next(None), None, &at(3, false));
        assert!(kind == ErrorKind::Internal && m.contains("starts at iteration -1"), "{m}");
        let (kind, m) = refused(next(Some(6)), Some((4, false)), &at(9, false));
        assert!(kind == ErrorKind::Internal && m.contains("a gap") && m.contains("follows iteration 6"), "{m}");
        assert!(m.contains("at iteration 4") && m.contains("job j"), "{m}");
        let (kind, m) = refused(next(Some(2)), Some((4, false)), &at(5, false));
        assert!(kind == ErrorKind::Permanent && m.contains("a fork") && m.contains("moved on to iteration 4"), "{m}");
        let (kind, m) = refused(next(None), Some((0, false)), &at(-1, false));
        assert!(kind == ErrorKind::Permanent && m.contains("a fork"), "{m}");
        let (kind, m) = refused(next(Some(4)), Some((4, false)), &at(3, false));
        assert!(kind == ErrorKind::Internal && m.contains("does not advance past iteration 4"), "{m}");
        let (kind, _) = refused(next(Some(4)), Some((4, true)), &at(4, true));
        assert_eq!(kind, ErrorKind::Internal, "done once only");
    }

    #[test]
    fn a_recovery_may_jump_but_not_back() {
        let from = |from| Link::Recovery { from };
        assert!(check_chain("j", from(None), None, &at(7, false)).is_ok());
        assert!(check_chain("j", from(Some(2)), Some((2, false)), &at(7, true)).is_ok());
        let (kind, m) = refused(from(Some(2)), Some((5, false)), &at(7, false));
        assert!(kind == ErrorKind::Permanent && m.contains("recovery") && m.contains("a fork"), "{m}");
        let (kind, _) = refused(from(Some(5)), Some((5, false)), &at(3, false));
        assert_eq!(kind, ErrorKind::Internal);
    }
}
