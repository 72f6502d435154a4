//! One run of a pipeline: lock → find or create the job → open the destination at the last
//! durable cursor → pull pages (producer) → write them (consumer) → flush on size, time or end →
//! commit the destination cursor → finalize → complete the job.
//!
//! The destination cursor is the only truth about progress: the source restarts from its
//! pagination, the destination rolls back to its token. Transient errors restart the attempt
//! from that cursor inside the same process (bounded retries with backoff).
//!
//! This module holds the job lifecycle (locks, job, attempts, retries); the data flow lives in
//! its children: [`reader`] (source → numbered pages), [`runners`] (stream and thread runners in
//! this process), [`broker`] (produce / consume over an external queue), [`lanes`] (how pages
//! split over a broker's lanes) and [`writer`] (pages → destination → cursor commits).

mod broker;
mod lanes;
mod reader;
mod runners;
mod shards;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::config::SyncMode;
use bizon_core::time::now_micros;
use bizon_core::{
    Backend, Destination, DestinationContext, DestinationCursor, Error, ErrorKind, Job, JobStatus, QueueBroker,
    ReadContext, Result, Source, StreamKey,
};

use self::broker::{broker_loop, consume, produce, remove_queue, Producer};
use self::lanes::{
    claim_lane, lane_cursor_id, lane_without_consumer, slowest_lane, take_unfinished_lane, unclaimed_lanes, NextLane,
};
use self::reader::PageReader;
use self::runners::{stream_loop, thread_loop};
pub use self::shards::{run_sharded, ShardParts};
use self::writer::Writer;
use crate::failpoints::Failpoints;
use crate::progress::{Counters, ProgressMode, Reporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// Producer thread + consumer thread over the in-memory queue.
    Thread,
    /// One loop: read a page, write it.
    Stream,
}

/// Which end of an external queue this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Producer and consumer in this process.
    #[default]
    Both,
    /// Read the source and publish pages; consumers complete the job.
    Producer,
    /// Consume pages of the producer's job and write them.
    Consumer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Both => "both",
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub key: StreamKey,
    pub sync_mode: SyncMode,
    pub cursor_field: Option<String>,
    /// The source cannot filter by `cursor_field` itself: an incremental run reads everything
    /// (the source is asked for a full read) and keeps the records whose `cursor_field` is above
    /// the watermark.
    pub filter_after_watermark: bool,
    pub max_iterations: Option<u64>,
    pub force_ignore_checkpoint: bool,
    /// Forget the watermark and re-read everything into a replaced target.
    pub reset: bool,
    /// Flush after this many bytes (bizon's `buffer_size` MB); 0 = after every page.
    pub buffer_bytes: u64,
    /// Flush at least this often (bizon's `buffer_flush_timeout`); `None` = never on time.
    pub flush_timeout: Option<Duration>,
    /// Save the producer's source cursor every this many iterations (`syncCursorInDBEvery`).
    pub source_cursor_every: u64,
    pub runner: Runner,
    pub queue_max_bytes: u64,
    pub queue_max_messages: u64,
    /// Transient failures in a row (without a commit in between) before the run fails.
    pub max_retries: u32,
    /// First retry delay; doubled per retry, capped at 5 s.
    pub retry_backoff: Duration,
    pub progress: ProgressMode,
    /// Producer / consumer on separate processes (needs an external queue).
    pub role: Role,
    /// Set by [`run_sharded`] on each lane of a sharded source: the run reads and writes that
    /// lane only, of a job the caller found (`None` everywhere else).
    pub shard: Option<Shard>,
}

/// One lane of a sharded source's job (see [`shards`]).
#[derive(Debug, Clone)]
pub struct Shard {
    pub lane: usize,
    pub lanes: usize,
    pub job: Job,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The source was exhausted (or `max_iterations` reached) and the result is published.
    Completed,
    /// Stopped by a signal after committing: the job resumes on the next run.
    Stopped,
    /// A producer published every page; the consumers complete the job.
    Published,
    /// A consumer finished its lane; the consumer of the last lane to finish completes the job.
    LaneDone,
    /// A consumer handed its dry lane over to take a lane without a consumer (fewer consumers
    /// than lanes); the run goes on with that lane.
    LaneHandedOver,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub job_id: String,
    pub outcome: Outcome,
    /// Resumed an unfinished job after this iteration.
    pub resumed_after: Option<i64>,
    /// Records and bytes written by this run (not counting a resumed job's earlier runs).
    pub records: u64,
    pub bytes: u64,
    /// Records committed by the job in total.
    pub job_records: u64,
    pub elapsed: Duration,
    pub retries: u32,
}

/// Everything a run needs; the CLI builds the connectors from the config.
pub struct Pipeline<'a> {
    pub spec: PipelineSpec,
    pub source: &'a mut dyn Source,
    pub destination: &'a mut dyn Destination,
    pub backend: &'a mut dyn Backend,
    /// An external queue between producer and consumer; `None` = the in-memory queue.
    pub broker: Option<&'a dyn QueueBroker>,
    pub stop: Arc<AtomicBool>,
    pub failpoints: Arc<Failpoints>,
    pub counters: Arc<Counters>,
}

/// Read the unclaimed-lanes gauge from the backend into `counters` (nothing without lanes; a failed
/// read only logs: a metric never fails a run).
fn report_unclaimed(
    backend: &Mutex<&mut dyn Backend>,
    key: &StreamKey,
    job_id: &str,
    lanes: usize,
    counters: &Counters,
) {
    if lanes < 2 {
        return;
    }
    let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
    match unclaimed_lanes(&mut **b, key, job_id, lanes) {
        Ok(Some(n)) => {
            counters.lanes_unclaimed.store(n, Ordering::Relaxed);
            counters.lanes_unclaimed_known.store(true, Ordering::Relaxed);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "cannot count the unclaimed lanes"),
    }
}

/// Where a consumer handing its lane over puts the lock of the lane it takes.
type HandOver = Mutex<Option<(Box<dyn Send>, usize)>>;

/// How often a consumer waiting for a lane looks again.
const LANE_POLL: Duration = Duration::from_millis(500);

/// A job id: a UUID v7 (RFC 9562) in its hyphenated form. Its first 48 bits are the Unix time in
/// milliseconds and the rest random (with a counter that keeps ids of one process ordered), so ids
/// sort by creation time and two processes starting jobs at the same moment still differ.
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

impl Pipeline<'_> {
    pub fn run(mut self) -> Result<RunSummary> {
        let started = Instant::now();
        if self.spec.role != Role::Both && self.broker.is_none() {
            return Err(Error::config("a producer or consumer role needs an external queue (engine.queue)"));
        }
        if let Some(shard) = self.spec.shard.clone() {
            // a lane of a sharded source: the caller holds the lane's lock on this backend (its
            // fencing token) and found the job every lane shares
            let (job, lane, lanes) = (&shard.job, shard.lane, shard.lanes);
            let resumed = self.backend.destination_cursor(&lane_cursor_id(&job.id, lane, lanes))?.map(|c| c.iteration);
            return self.run_lane(job, resumed, (lane, lanes), started, &Mutex::new(None));
        }
        let lanes = self.broker.map_or(1, |b| b.lanes()).max(1);
        if lanes > 1 && self.spec.role == Role::Both {
            return Err(Error::config(format!(
                "{lanes} lanes need one consumer each: run `--role producer` and {lanes} × `--role consumer`, or the process runner"
            )));
        }
        // producer and consumers hold their own locks: one producer, one consumer per lane
        let (mut lock, mut lane) = match self.spec.role {
            Role::Consumer => match claim_lane(&mut *self.backend, &self.spec.key, lanes) {
                Ok((lock, lane)) => (Some(lock), lane),
                // more consumers than lanes: this one waits for a lane once the job is known
                Err(e) if lanes > 1 => {
                    tracing::info!(reason = %e, "no free lane yet");
                    (None, 0)
                }
                Err(e) => return Err(e),
            },
            role => {
                let mut key = self.spec.key.clone();
                if role == Role::Producer {
                    key.pipeline = format!("{}#producer", key.pipeline);
                }
                (Some(self.backend.lock_pipeline(&key)?), 0)
            }
        };
        let (job, resumed) = match self.spec.role {
            Role::Consumer => self.wait_for_job()?,
            _ => find_or_create_job(&mut *self.backend, &mut self.spec)?,
        };
        if self.spec.role != Role::Consumer || lanes == 1 {
            return self.run_lane(&job, resumed, (lane, lanes), started, &Mutex::new(None));
        }
        // A consumer over several lanes moves on to another unfinished lane when its own is done
        // (work stealing): it returns once every lane is done, or on a stop.
        let mut summary: Option<RunSummary> = None;
        let mut first = true;
        loop {
            let finished = |b: &mut dyn Backend, lane| {
                b.destination_cursor(&lane_cursor_id(&job.id, lane, lanes)).map(|c| c.is_some_and(|c| c.done))
            };
            if lock.is_none() || finished(&mut *self.backend, lane)? {
                match take_unfinished_lane(&mut *self.backend, &self.spec.key, &job.id, lanes, &self.stop, LANE_POLL)? {
                    NextLane::Take(l, other) => {
                        if lock.is_some() {
                            tracing::info!(lane, to_lane = other, "lane finished: taking an unfinished one");
                        }
                        // the new lock is taken before the old one is released
                        (lock, lane) = (Some(l), other);
                    }
                    // Every lane is done. A consumer arriving now runs the last lane's finish
                    // again on a lane it holds or can take, which completes the job if a crash
                    // stopped it after the last commit (idempotent); one that just finished a
                    // lane has nothing left.
                    NextLane::AllDone if first => {
                        if lock.is_none() {
                            match claim_lane(&mut *self.backend, &self.spec.key, lanes) {
                                Ok((l, k)) => (lock, lane) = (Some(l), k),
                                Err(_) => break,
                            }
                        }
                    }
                    NextLane::AllDone | NextLane::Stopped => break,
                }
            }
            first = false;
            let handover = Mutex::new(None);
            let lane_summary = self.run_lane(&job, resumed, (lane, lanes), started, &handover)?;
            if let Some((l, other)) = handover.into_inner().unwrap_or_else(|p| p.into_inner()) {
                // the other lane's lock was taken before this one is released
                (lock, lane) = (Some(l), other);
            }
            let more = matches!(lane_summary.outcome, Outcome::LaneDone | Outcome::LaneHandedOver)
                && !self.stop.load(Ordering::SeqCst);
            summary = Some(match summary {
                None => lane_summary,
                Some(s) => RunSummary { records: s.records + lane_summary.records, ..lane_summary },
            });
            if !more {
                break;
            }
        }
        drop(lock);
        if let Some(s) = summary.as_mut().filter(|s| s.outcome == Outcome::LaneHandedOver) {
            s.outcome = Outcome::Stopped; // a stop came right after a hand-over: resumable
        }
        Ok(summary.unwrap_or_else(|| RunSummary {
            job_id: job.id.clone(),
            outcome: Outcome::LaneDone,
            resumed_after: resumed,
            records: 0,
            bytes: 0,
            job_records: 0,
            elapsed: started.elapsed(),
            retries: 0,
        }))
    }

    /// Run the job on one lane (the whole job without lanes) until it completes, the lane is done,
    /// or a stop.
    /// `handover` receives the lock of the lane a consumer moves to when it hands its dry lane
    /// over ([`Outcome::LaneHandedOver`]).
    fn run_lane(
        &mut self,
        job: &Job,
        resumed: Option<i64>,
        (lane, lanes): (usize, usize),
        started: Instant,
        handover: &HandOver,
    ) -> Result<RunSummary> {
        // every log line of the run carries the job and stream (fields of JSON logs)
        let span = tracing::info_span!("job", job_id = %job.id, stream = %self.spec.key.stream);
        let _in_job = span.enter();
        *self.counters.job_id.lock().unwrap_or_else(|p| p.into_inner()) = job.id.clone();
        self.counters.touch();
        let materialize = if job.reset { SyncMode::FullRefresh } else { job.sync_mode };
        let read_ctx = ReadContext {
            sync_mode: job.sync_mode,
            watermark: if job.reset { None } else { job.since.clone() },
            cursor_field: self.spec.cursor_field.clone(),
        };
        let dctx = DestinationContext {
            pipeline: self.spec.key.pipeline.clone(),
            // a lane keeps its own cursor chain (and destination commit log)
            job_id: lane_cursor_id(&job.id, lane, lanes),
            source: self.spec.key.source.clone(),
            stream: self.spec.key.stream.clone(),
            sync_mode: materialize,
            lane: (lanes > 1).then_some((lane, lanes)),
        };
        tracing::info!(
            pipeline = %self.spec.key.pipeline, stream = %self.spec.key.stream, job = %job.id,
            sync_mode = job.sync_mode.as_str(), reset = job.reset, resumed = resumed.is_some(),
            role = self.spec.role.as_str(), lane = (self.spec.role == Role::Consumer).then_some(lane), lanes,
            "job started"
        );
        let total = match self.spec.role {
            Role::Consumer => job.total_records, // the producer knows it
            // informational (progress, ETA): a source that cannot tell now still runs
            _ => self.source.total_records(&read_ctx).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count the records to read; progress shows no total");
                None
            }),
        };
        if let Some(total) = total {
            if self.spec.role != Role::Consumer {
                self.backend.set_job_total(&job.id, Some(total))?;
            }
            self.counters.total.store(total, Ordering::Relaxed);
        }
        let reporter = Reporter::start(self.spec.progress, self.counters.clone());
        let mut retries = 0u32;
        let mut records_at_start = None;
        let result = loop {
            match self.attempt(job, &dctx, &read_ctx, &mut records_at_start, handover) {
                Ok(outcome) => break Ok(outcome),
                Err((e, progressed)) if e.kind() == ErrorKind::Transient => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if progressed {
                        retries = 0;
                    }
                    retries += 1;
                    if retries > self.spec.max_retries || self.stop.load(Ordering::SeqCst) {
                        break Err(e.context(format!("giving up after {} attempts", retries)));
                    }
                    let backoff = (self.spec.retry_backoff * (1u32 << retries.min(6))).min(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry = retries, backoff_ms = backoff.as_millis() as u64, "transient error: resuming from the last commit");
                    std::thread::sleep(backoff);
                }
                Err((e, _)) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    break Err(e);
                }
            }
        };
        reporter.finish();
        let cursor = self.backend.destination_cursor(&dctx.job_id).ok().flatten();
        let job_records = cursor.as_ref().map_or(0, |c| c.records_written);
        match result {
            Ok(outcome) => {
                let before = records_at_start.unwrap_or(0);
                Ok(RunSummary {
                    job_id: job.id.clone(),
                    outcome,
                    resumed_after: resumed,
                    records: match outcome {
                        Outcome::Published => self.counters.records_extracted.load(Ordering::Relaxed),
                        _ => job_records.saturating_sub(before),
                    },
                    bytes: self.counters.bytes_written.load(Ordering::Relaxed),
                    job_records,
                    elapsed: started.elapsed(),
                    retries,
                })
            }
            Err(e) => {
                let _ = self.backend.set_job_status(&job.id, JobStatus::Failed, Some(e.message()));
                tracing::error!(job = %job.id, error = %e, "job failed; the next run resumes from its last commit");
                Err(e)
            }
        }
    }

    /// A consumer attaches to the producer's job, waiting for the producer to start one.
    fn wait_for_job(&mut self) -> Result<(Job, Option<i64>)> {
        let mut logged = false;
        let waiting = Instant::now();
        loop {
            if let Some(job) = self.backend.resumable_job(&self.spec.key)? {
                let after = self.backend.destination_cursor(&job.id)?.map(|c| c.iteration);
                tracing::info!(job = %job.id, after_iteration = after.unwrap_or(-1), "consuming the producer's job");
                return Ok((job, after));
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(Error::config("stopped while waiting for a producer to start a job"));
            }
            if !logged {
                tracing::info!(stream = %self.spec.key.stream, "waiting for a producer to start a job");
                logged = true;
            }
            // consumers started with their producer see its job at once; a long wait polls less
            let poll = if waiting.elapsed() < Duration::from_secs(10) { 50 } else { 500 };
            std::thread::sleep(Duration::from_millis(poll));
        }
    }

    /// The producer role: publish from the last commit on.
    fn produce_only(&mut self, job: &Job, read_ctx: &ReadContext) -> Result<Outcome> {
        let broker = self.broker.ok_or_else(|| Error::config("the producer role needs an external queue"))?;
        let start = slowest_lane(&mut *self.backend, &job.id, broker.lanes().max(1))?;
        if start.done {
            return Ok(Outcome::Published);
        }
        self.counters.records_before.store(start.records_written, Ordering::Relaxed);
        tracing::info!(queue = %broker.describe(), job = %job.id, after_iteration = start.iteration, "publishing pages");
        let backend: Mutex<&mut dyn Backend> = Mutex::new(&mut *self.backend);
        let stop = &self.stop;
        let halt = || stop.load(Ordering::SeqCst);
        let lanes = broker.lanes().max(1);
        let (key, counters) = (&self.spec.key, &self.counters);
        let gauge = || report_unclaimed(&backend, key, &job.id, lanes, counters);
        let reader =
            PageReader::new(&mut *self.source, read_ctx, &backend, &self.spec, &job.id, &self.counters, &start);
        produce(reader, broker, &backend, &job.id, &halt, &gauge)?;
        Ok(if self.stop.load(Ordering::SeqCst) { Outcome::Stopped } else { Outcome::Published })
    }

    /// One attempt from the last durable cursor. The error carries whether a commit happened.
    fn attempt(
        &mut self,
        job: &Job,
        dctx: &DestinationContext,
        read_ctx: &ReadContext,
        records_at_start: &mut Option<u64>,
        handover: &HandOver,
    ) -> std::result::Result<Outcome, (Error, bool)> {
        if self.spec.role == Role::Producer {
            return self.produce_only(job, read_ctx).map_err(|e| (e, false));
        }
        let cursor_id = dctx.job_id.as_str();
        if let Some((lane, _)) = dctx.lane {
            // a lane's cursor chain hangs off a job row of its own (`<stream>#lane-<k>`)
            let mut lane_job = job.clone();
            lane_job.id = cursor_id.to_owned();
            lane_job.key.stream = format!("{}#lane-{lane}", job.key.stream);
            lane_job.pid = std::process::id();
            self.backend.create_job(&lane_job).map_err(|e| (e, false))?;
        }
        let mut stored = self.backend.destination_cursor(cursor_id).map_err(|e| (e, false))?;
        if let Some(ahead) = self.destination.recover_cursor(dctx).map_err(|e| (e, false))? {
            if stored.as_ref().is_none_or(|s| ahead.iteration > s.iteration || (ahead.done && !s.done)) {
                tracing::info!(job = %job.id, iteration = ahead.iteration, "the destination holds a newer commit: resuming after it");
                let from = stored.as_ref().map(|s| s.iteration);
                self.backend.recover_destination_cursor(cursor_id, from, &ahead).map_err(|e| (e, false))?;
                stored = Some(ahead);
            }
        }
        // the last check before the destination touches its target (a stale run must not truncate it)
        self.backend.check_fence().map_err(|e| (e, false))?;
        let token = self.destination.open(dctx, stored.as_ref().map(|c| &c.token)).map_err(|e| (e, false))?;
        let start = match stored {
            Some(c) => c,
            None => {
                let mut c = DestinationCursor::start(token);
                if self.spec.shard.is_some() {
                    // a job one process began before its source was sharded: each lane goes on
                    // from the positions that process committed (the source keeps its shard's)
                    if let Some(main) = self.backend.destination_cursor(&job.id).map_err(|e| (e, false))? {
                        c.pagination = main.pagination;
                    }
                }
                self.backend.commit_destination_cursor(cursor_id, None, &c).map_err(|e| (e, false))?;
                c
            }
        };
        records_at_start.get_or_insert(start.records_written);
        self.counters.records_before.store(start.records_written, Ordering::Relaxed);
        self.counters.records_written.store(0, Ordering::Relaxed);
        let backend: Mutex<&mut dyn Backend> = Mutex::new(&mut *self.backend);
        let mut writer = Writer::new(
            job,
            &mut *self.destination,
            &backend,
            &self.failpoints,
            &self.counters,
            &self.spec,
            start.clone(),
            cursor_id.to_owned(),
            dctx.lane.unwrap_or((0, 1)),
            self.source.durable_hook(),
        );
        if start.done {
            let outcome = writer.finish().map_err(|e| (e, false))?;
            if let (Some(broker), Role::Consumer, Outcome::Completed) = (self.broker, self.spec.role, outcome) {
                // every consumer that completes the job removes the queues (a lane taken just as
                // it was done, or a crash before the removal; a second removal only warns)
                remove_queue(broker);
            }
            return Ok(outcome);
        }
        let source = &mut *self.source;
        let stop = &self.stop;
        match (self.spec.runner, self.broker) {
            (Runner::Stream, _) => stream_loop(source, &mut writer, read_ctx, stop, &start),
            (Runner::Thread, None) => thread_loop(source, &mut writer, read_ctx, stop, &start),
            (Runner::Thread, Some(broker)) if self.spec.role == Role::Consumer => {
                let (key, (lane, lanes)) = (&self.spec.key, dctx.lane.unwrap_or((0, 1)));
                let hand_over = || {
                    let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
                    match lane_without_consumer(&mut **b, key, &job.id, lane, lanes) {
                        Ok(Some(taken)) => {
                            *handover.lock().unwrap_or_else(|p| p.into_inner()) = Some(taken);
                            true
                        }
                        Ok(None) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot look for a lane without a consumer");
                            false
                        }
                    }
                };
                let counters = &*self.counters;
                let gauge = || report_unclaimed(&backend, key, &job.id, lanes, counters);
                let outcome = consume(&mut writer, stop, &start, broker, &|| Producer::Unknown, &hand_over, &gauge);
                if outcome.as_ref().is_ok_and(|o| *o == Outcome::Completed) {
                    remove_queue(broker);
                }
                outcome
            }
            (Runner::Thread, Some(broker)) => broker_loop(source, &mut writer, read_ctx, stop, &start, broker),
        }
        .map_err(|e| (e, writer.committed))
    }
}

/// Resume the newest unfinished job of the stream, or create a new one.
pub(super) fn find_or_create_job(backend: &mut dyn Backend, spec: &mut PipelineSpec) -> Result<(Job, Option<i64>)> {
    let requests = take_up_reset_requests(backend, spec)?;
    let (job, after) = resume_or_create_job(backend, spec)?;
    if !requests.is_empty() {
        backend.consume_resets(&requests, &job.id)?;
    }
    Ok((job, after))
}

/// Pending `bizon stream reset` requests of an incremental stream make this run a reset,
/// unless the unfinished job is a reset started after them (a reset run that crashed before
/// marking them taken up): that job resumes and takes them up.
fn take_up_reset_requests(backend: &mut dyn Backend, spec: &mut PipelineSpec) -> Result<Vec<Job>> {
    if spec.sync_mode != SyncMode::Incremental {
        return Ok(Vec::new());
    }
    let key = spec.key.clone();
    let requests = backend.pending_resets(&key)?;
    let Some(newest) = requests.iter().map(|r| r.created_at).max() else { return Ok(requests) };
    let in_flight = backend.resumable_job(&key)?.is_some_and(|j| j.reset && j.created_at >= newest);
    if !in_flight && !spec.reset {
        tracing::info!(stream = %key.stream, requests = requests.len(), "a stream reset was requested (`bizon stream reset`): this run re-reads everything and replaces the target");
        spec.reset = true;
    }
    Ok(requests)
}

fn resume_or_create_job(backend: &mut dyn Backend, spec: &PipelineSpec) -> Result<(Job, Option<i64>)> {
    let key = spec.key.clone();
    if spec.reset {
        let n = backend.reset_stream(&key)?;
        tracing::info!(stream = %key.stream, canceled_jobs = n, "stream reset: watermark forgotten, re-reading everything");
    }
    if let Some(job) = backend.resumable_job(&key)? {
        let usable = !spec.force_ignore_checkpoint && job.sync_mode == spec.sync_mode;
        if usable {
            let after = backend.destination_cursor(&job.id)?.map(|c| c.iteration);
            backend.set_job_status(&job.id, JobStatus::Running, None)?;
            tracing::info!(job = %job.id, after_iteration = after.unwrap_or(-1), "resuming unfinished job");
            return Ok((job, after));
        }
        let why = if spec.force_ignore_checkpoint { "force_ignore_checkpoint" } else { "sync_mode changed" };
        backend.set_job_status(&job.id, JobStatus::Canceled, Some(why))?;
        tracing::info!(job = %job.id, reason = why, "not resuming the unfinished job");
    }
    let since = match spec.sync_mode {
        SyncMode::Incremental if !spec.reset => backend.stream_watermark(&key)?,
        _ => None,
    };
    let now = now_micros();
    let job = Job {
        id: new_job_id(),
        key,
        sync_mode: spec.sync_mode,
        reset: spec.reset && spec.sync_mode == SyncMode::Incremental,
        status: JobStatus::Running,
        since,
        created_at: now,
        updated_at: now,
        pid: std::process::id(),
        total_records: None,
        error: None,
    };
    backend.create_job(&job)?;
    Ok((job, None))
}

#[cfg(test)]
mod job_id_tests {
    #[test]
    fn job_ids_are_uuid_v7_and_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_job_id()).collect();
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(u.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 36, "hyphenated: {id}");
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing within a process");
    }
}
