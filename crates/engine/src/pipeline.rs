//! One run of a pipeline: lock → find or create the job → open the destination at the last
//! durable cursor → pull pages (producer) → write them (consumer) → flush on size, time or end →
//! commit the destination cursor → finalize → complete the job.
//!
//! The destination cursor is the only truth about progress: the source restarts from its
//! pagination, the destination rolls back to its token. Transient errors restart the attempt
//! from that cursor inside the same process (bounded retries with backoff).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::config::SyncMode;
use bizon_core::record::{cursor_cmp, cursor_max, DEAD_LETTER};
use bizon_core::time::now_micros;
use bizon_core::{
    Backend, BatchMeta, Destination, DestinationContext, DestinationCursor, DurableHook, Error, ErrorKind, Job,
    JobStatus, Json, Page, QueueBroker, ReadContext, Result, Source, StreamKey,
};

use crate::failpoints::Failpoints;
use crate::progress::{Counters, ProgressMode, Reporter};
use crate::queue::{ByteQueue, Pop};
use crate::spans;

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
}

/// The backend key of a lane's destination cursor chain (the job id itself with one lane).
fn lane_cursor_id(job_id: &str, lane: usize, lanes: usize) -> String {
    match lanes {
        1 => job_id.to_owned(),
        _ => format!("{job_id}~{lane}"),
    }
}

/// The first iteration after `prev` that belongs to `lane` of `lanes`.
fn next_in_lane(prev: i64, lane: usize, lanes: usize) -> i64 {
    let i = prev + 1;
    let n = lanes as i64;
    i + (lane as i64 - i).rem_euclid(n)
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

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

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
        let lanes = self.broker.map_or(1, |b| b.lanes()).max(1);
        if lanes > 1 && self.spec.role == Role::Both {
            return Err(Error::config(format!(
                "{lanes} lanes need one consumer each: run `--role producer` and {lanes} × `--role consumer`, or the process runner"
            )));
        }
        // producer and consumers hold their own locks: one producer, one consumer per lane
        let (_lock, lane) = match self.spec.role {
            Role::Consumer => self.claim_lane(lanes)?,
            role => {
                let mut key = self.spec.key.clone();
                if role == Role::Producer {
                    key.pipeline = format!("{}#producer", key.pipeline);
                }
                (self.backend.lock_pipeline(&key)?, 0)
            }
        };
        let (job, resumed) = match self.spec.role {
            Role::Consumer => self.wait_for_job()?,
            _ => self.find_or_create_job()?,
        };
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
            match self.attempt(&job, &dctx, &read_ctx, &mut records_at_start) {
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
                    job_id: job.id,
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

    /// A consumer takes the first free lane (a lock per lane).
    fn claim_lane(&mut self, lanes: usize) -> Result<(Box<dyn Send>, usize)> {
        for lane in 0..lanes {
            let mut key = self.spec.key.clone();
            key.pipeline = match lanes {
                1 => format!("{}#consumer", key.pipeline),
                _ => format!("{}#consumer-{lane}", key.pipeline),
            };
            match self.backend.lock_pipeline(&key) {
                Ok(lock) => return Ok((lock, lane)),
                Err(e) if lane + 1 == lanes => {
                    return Err(if lanes == 1 {
                        e
                    } else {
                        e.context(format!(
                            "all {lanes} consumer lanes of pipeline `{}` are taken",
                            self.spec.key.pipeline
                        ))
                    })
                }
                Err(_) => continue,
            }
        }
        unreachable!("lanes >= 1")
    }

    /// A consumer attaches to the producer's job, waiting for the producer to start one.
    fn wait_for_job(&mut self) -> Result<(Job, Option<i64>)> {
        let mut logged = false;
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
            std::thread::sleep(Duration::from_millis(200));
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
        produce(&mut *self.source, broker, &backend, &self.spec, &job.id, read_ctx, &start, &halt, &self.counters)?;
        Ok(if self.stop.load(Ordering::SeqCst) { Outcome::Stopped } else { Outcome::Published })
    }

    /// Resume the newest unfinished job of the stream, or create a new one.
    fn find_or_create_job(&mut self) -> Result<(Job, Option<i64>)> {
        let key = self.spec.key.clone();
        if self.spec.reset {
            let n = self.backend.reset_stream(&key)?;
            tracing::info!(stream = %key.stream, canceled_jobs = n, "stream reset: watermark forgotten, re-reading everything");
        }
        if let Some(job) = self.backend.resumable_job(&key)? {
            let usable = !self.spec.force_ignore_checkpoint && job.sync_mode == self.spec.sync_mode;
            if usable {
                let after = self.backend.destination_cursor(&job.id)?.map(|c| c.iteration);
                self.backend.set_job_status(&job.id, JobStatus::Running, None)?;
                tracing::info!(job = %job.id, after_iteration = after.unwrap_or(-1), "resuming unfinished job");
                return Ok((job, after));
            }
            let why = if self.spec.force_ignore_checkpoint { "force_ignore_checkpoint" } else { "sync_mode changed" };
            self.backend.set_job_status(&job.id, JobStatus::Canceled, Some(why))?;
            tracing::info!(job = %job.id, reason = why, "not resuming the unfinished job");
        }
        let since = match self.spec.sync_mode {
            SyncMode::Incremental if !self.spec.reset => self.backend.stream_watermark(&key)?,
            _ => None,
        };
        let now = now_micros();
        let job = Job {
            id: new_job_id(),
            key,
            sync_mode: self.spec.sync_mode,
            reset: self.spec.reset && self.spec.sync_mode == SyncMode::Incremental,
            status: JobStatus::Running,
            since,
            created_at: now,
            updated_at: now,
            pid: std::process::id(),
            total_records: None,
            error: None,
        };
        self.backend.create_job(&job)?;
        Ok((job, None))
    }

    /// One attempt from the last durable cursor. The error carries whether a commit happened.
    fn attempt(
        &mut self,
        job: &Job,
        dctx: &DestinationContext,
        read_ctx: &ReadContext,
        records_at_start: &mut Option<u64>,
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
                let c = DestinationCursor::start(token);
                self.backend.commit_destination_cursor(cursor_id, None, &c).map_err(|e| (e, false))?;
                c
            }
        };
        records_at_start.get_or_insert(start.records_written);
        self.counters.records_before.store(start.records_written, Ordering::Relaxed);
        self.counters.records_written.store(0, Ordering::Relaxed);
        let backend: Mutex<&mut dyn Backend> = Mutex::new(&mut *self.backend);
        let mut writer = Writer {
            job,
            destination: &mut *self.destination,
            backend: &backend,
            failpoints: &self.failpoints,
            counters: &self.counters,
            spec: &self.spec,
            cursor: start.clone(),
            pending: None,
            since_flush: 0,
            last_flush: Instant::now(),
            committed: false,
            job_hash: fnv64(&job.id),
            cursor_id: cursor_id.to_owned(),
            lane: dctx.lane.unwrap_or((0, 1)),
            durable: self.source.durable_hook(),
            unflushed: Vec::new(),
        };
        if start.done {
            return writer.finish().map_err(|e| (e, false));
        }
        let source = &mut *self.source;
        let stop = &self.stop;
        match (self.spec.runner, self.broker) {
            (Runner::Stream, _) => stream_loop(source, &mut writer, read_ctx, stop, &start),
            (Runner::Thread, None) => thread_loop(source, &mut writer, read_ctx, stop, &start),
            (Runner::Thread, Some(broker)) if self.spec.role == Role::Consumer => {
                let outcome = consume(&mut writer, stop, &start, broker, &|| None);
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

/// What the consumer has written but not yet committed.
struct Pending {
    iteration: i64,
    pagination: Json,
    records: u64,
    bytes: u64,
    watermark: Option<Json>,
    last: bool,
}

/// The consumer side: writes pages, decides when to flush, commits cursors in order.
struct Writer<'w> {
    job: &'w Job,
    destination: &'w mut dyn Destination,
    /// Shared with the producer thread, which saves the source cursor.
    backend: &'w Mutex<&'w mut dyn Backend>,
    failpoints: &'w Failpoints,
    counters: &'w Counters,
    spec: &'w PipelineSpec,
    cursor: DestinationCursor,
    pending: Option<Pending>,
    since_flush: u64,
    last_flush: Instant,
    committed: bool,
    job_hash: u64,
    /// Where the cursor chain is stored: the job id, or the job's lane.
    cursor_id: String,
    /// `(lane, lanes)`: this writer takes iterations `lane`, `lane + lanes`, …
    lane: (usize, usize),
    /// The source's hook, told each committed pagination (Kafka group offsets).
    durable: Option<DurableHook>,
    /// `extracted_at` of each page written since the last commit (latency metrics).
    unflushed: Vec<i64>,
}

impl<'w> Writer<'w> {
    /// The iteration that must come next.
    fn expected(&self) -> i64 {
        let prev = self.pending.as_ref().map_or(self.cursor.iteration, |p| p.iteration);
        next_in_lane(prev, self.lane.0, self.lane.1)
    }

    fn backend(&self) -> std::sync::MutexGuard<'_, &'w mut dyn Backend> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept(&mut self, iteration: i64, page: Page) -> Result<()> {
        let expected = self.expected();
        if iteration != expected {
            return Err(Error::internal(format!("iteration {iteration} arrived, expected {expected}")));
        }
        let meta =
            BatchMeta { iteration, extracted_at: page.extracted_at, loaded_at: now_micros(), job_hash: self.job_hash };
        self.failpoints.hit("before_write")?;
        let t = spans::start();
        self.destination.write(&page.records, &meta)?;
        spans::end("write", iteration, page.records.len() as u64, t);
        let refused = self.destination.take_dead_lettered(); // refused at load time
        self.counters.dead_letters.fetch_add(refused, Ordering::Relaxed);
        self.failpoints.hit("after_write")?;
        let n = page.records.len() as u64;
        let bytes = page.records.byte_len() as u64;
        let c = self.counters;
        c.records_loaded.fetch_add(n, Ordering::Relaxed);
        c.bytes_loaded.fetch_add(bytes, Ordering::Relaxed);
        c.iterations_loaded.fetch_add(1, Ordering::Relaxed);
        if page.records.is_routed() {
            let dead = (0..page.records.len()).filter(|i| page.records.route(*i) == DEAD_LETTER).count();
            c.dead_letters.fetch_add(dead as u64, Ordering::Relaxed);
        }
        if n > 0 {
            c.touch(); // progress = records written (idle stream pages are not)
        }
        self.unflushed.push(page.extracted_at);
        let watermark = match (&self.spec.cursor_field, self.job.sync_mode) {
            (field, SyncMode::Incremental) => {
                page.cursor_max.clone().or_else(|| field.as_deref().and_then(|f| extract_max(&page, f)))
            }
            _ => None,
        };
        let last = page.is_last();
        let prev = self.pending.take();
        let (records, pbytes, wm) = match prev {
            Some(p) => (p.records + n, p.bytes + bytes, cursor_max(p.watermark, watermark)),
            None => (n, bytes, watermark),
        };
        self.pending = Some(Pending { iteration, pagination: page.next, records, bytes: pbytes, watermark: wm, last });
        self.since_flush += bytes;
        self.counters.buffer_bytes.store(self.since_flush, Ordering::Relaxed);
        self.counters.records_written.fetch_add(n, Ordering::Relaxed);
        self.counters.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        if self.since_flush >= self.spec.buffer_bytes || last {
            self.flush(false)?;
        } else {
            self.tick()?;
        }
        Ok(())
    }

    /// Time-based flush (`buffer_flush_timeout`).
    fn tick(&mut self) -> Result<()> {
        if let Some(t) = self.spec.flush_timeout {
            if self.pending.is_some() && self.last_flush.elapsed() >= t {
                self.flush(false)?;
            }
        }
        Ok(())
    }

    fn until_deadline(&self) -> Duration {
        match self.spec.flush_timeout {
            Some(t) if self.pending.is_some() => {
                t.saturating_sub(self.last_flush.elapsed()).max(Duration::from_millis(1))
            }
            _ => Duration::from_millis(200),
        }
    }

    /// Make pending writes durable and commit the cursor that covers them.
    /// `exhausted` marks the cursor done even without pending pages (max_iterations).
    fn flush(&mut self, exhausted: bool) -> Result<()> {
        let Some(p) = self.pending.take() else {
            if exhausted && !self.cursor.done {
                let mut c = self.cursor.clone();
                c.done = true;
                self.commit(c)?;
            }
            return Ok(());
        };
        self.failpoints.hit("before_flush")?;
        let started = Instant::now();
        let span = spans::start();
        // A run that was paused while another took over must not publish anything.
        self.backend().check_fence()?;
        let mut c = DestinationCursor {
            iteration: p.iteration,
            pagination: p.pagination,
            token: self.cursor.token.clone(),
            records_written: self.cursor.records_written + p.records,
            bytes_written: self.cursor.bytes_written + p.bytes,
            watermark: cursor_max(self.cursor.watermark.clone(), p.watermark),
            done: p.last || exhausted,
        };
        c.token = self.destination.flush(&c)?;
        self.commit(c)?;
        self.since_flush = 0;
        self.last_flush = Instant::now();
        spans::end("commit", self.cursor.iteration, p.records, span);
        let counters = self.counters;
        counters.commits.observe(started.elapsed().as_secs_f64());
        counters.buffer_bytes.store(0, Ordering::Relaxed);
        let now = now_micros();
        for extracted in self.unflushed.drain(..) {
            counters.latency.observe((now - extracted).max(0) as f64 / 1e6);
        }
        Ok(())
    }

    /// Commit `c` as the link after the last committed cursor (`self.cursor`).
    fn commit(&mut self, c: DestinationCursor) -> Result<()> {
        self.failpoints.hit("before_commit")?;
        let job_id = self.cursor_id.clone();
        self.backend().commit_destination_cursor(&job_id, Some(self.cursor.iteration), &c)?;
        self.failpoints.hit("after_commit")?;
        tracing::debug!(job = %job_id, iteration = c.iteration, records = c.records_written, "cursor committed");
        if let Some(hook) = &self.durable {
            hook(&c.pagination);
        }
        self.cursor = c;
        self.committed = true;
        Ok(())
    }

    /// Publish and complete: the source is exhausted and everything is committed.
    fn finish(&mut self) -> Result<Outcome> {
        self.flush(true)?;
        self.failpoints.hit("before_finalize")?;
        // publishing (a rename, a table swap) is a write too: not after a takeover
        self.backend().check_fence()?;
        self.destination.finalize()?;
        self.failpoints.hit("after_finalize")?;
        let mut written = self.cursor.watermark.clone();
        let mut records = self.cursor.records_written;
        let (lane, lanes) = self.lane;
        if lanes > 1 {
            // each lane commits `done` before looking at the others: the last one sees them all
            let mut backend = self.backend();
            let (mut done, mut total, mut watermark) = (0, 0, None);
            for c in lane_cursors(&mut **backend, &self.job.id, lanes)?.into_iter().flatten() {
                done += usize::from(c.done);
                total += c.records_written;
                watermark = cursor_max(watermark, c.watermark);
            }
            backend.set_job_status(&self.cursor_id, JobStatus::Succeeded, None)?;
            drop(backend);
            if done < lanes {
                tracing::info!(job = %self.job.id, lane, lanes, lanes_done = done, records = self.cursor.records_written, "lane done; the last lane to finish completes the job");
                return Ok(Outcome::LaneDone);
            }
            (written, records) = (watermark, total);
        }
        let watermark = match (self.job.sync_mode, self.job.reset) {
            (SyncMode::Incremental, false) => cursor_max(self.job.since.clone(), written),
            (SyncMode::Incremental, true) => written,
            _ => None,
        };
        let job_id = self.job.id.clone();
        self.backend().complete_job(&job_id, watermark.as_ref())?;
        tracing::info!(job = %job_id, records, "job completed");
        Ok(Outcome::Completed)
    }

    fn stopped(&mut self) -> Result<Outcome> {
        self.flush(false)?;
        let job_id = self.job.id.clone();
        self.backend().set_job_status(&job_id, JobStatus::Stopped, Some("stopped by signal"))?;
        tracing::info!(job = %job_id, iteration = self.cursor.iteration, "stopped by signal after committing; the next run resumes");
        Ok(Outcome::Stopped)
    }
}

/// The producer's progress (bizon's source cursor), every `syncCursorInDBEvery` iterations.
/// Informational: resume always starts from the destination cursor.
fn save_source_cursor(
    backend: &Mutex<&mut dyn Backend>,
    spec: &PipelineSpec,
    job_id: &str,
    iteration: i64,
    pagination: &Json,
) -> Result<()> {
    if ((iteration + 1) as u64).is_multiple_of(spec.source_cursor_every) {
        backend.lock().unwrap_or_else(|p| p.into_inner()).save_source_cursor(job_id, iteration, pagination)?;
    }
    Ok(())
}

/// Max of `field` over a page's records, parsing payloads (sources that know it set
/// `Page::cursor_max` instead).
fn extract_max(page: &Page, field: &str) -> Option<Json> {
    let mut best: Option<Json> = None;
    for r in page.records.iter() {
        if let Ok(Json::Object(mut m)) = serde_json::from_slice::<Json>(r.data) {
            if let Some(v) = m.remove(field).filter(|v| !v.is_null()) {
                if best.as_ref().is_none_or(|b| cursor_cmp(&v, b).is_gt()) {
                    best = Some(v);
                }
            }
        }
    }
    best
}

/// Read iteration `iteration`'s page from the source, with its `extract` span and metrics.
fn extract(
    source: &mut dyn Source,
    pagination: &Json,
    ctx: &ReadContext,
    iteration: i64,
    c: &Counters,
) -> Result<Page> {
    let t = spans::start();
    let page = source.get(pagination, ctx)?;
    spans::end("extract", iteration, page.records.len() as u64, t);
    c.records_extracted.fetch_add(page.records.len() as u64, Ordering::Relaxed);
    c.bytes_extracted.fetch_add(page.records.byte_len() as u64, Ordering::Relaxed);
    c.iterations_extracted.fetch_add(1, Ordering::Relaxed);
    Ok(page)
}

fn reached_max(spec: &PipelineSpec, iteration: i64) -> bool {
    spec.max_iterations.is_some_and(|m| iteration >= m as i64)
}

fn stream_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
) -> Result<Outcome> {
    let mut iteration = start.iteration + 1;
    let mut pagination = start.pagination.clone();
    loop {
        if stop.load(Ordering::SeqCst) {
            return w.stopped();
        }
        if reached_max(w.spec, iteration) {
            return w.finish();
        }
        let page = extract(source, &pagination, ctx, iteration, w.counters)?;
        let last = page.is_last();
        let next = page.next.clone();
        save_source_cursor(w.backend, w.spec, &w.job.id, iteration, &next)?;
        w.accept(iteration, page)?;
        if last {
            return w.finish();
        }
        pagination = next;
        iteration += 1;
    }
}

enum Item {
    Page(i64, Box<Page>),
    /// The producer stopped at `max_iterations`.
    Exhausted,
}

fn thread_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
) -> Result<Outcome> {
    let queue: ByteQueue<Item> = ByteQueue::new(w.spec.queue_max_bytes as usize, w.spec.queue_max_messages as usize);
    let (spec, backend, job_id, counters) = (w.spec, w.backend, w.job.id.as_str(), w.counters);
    let gauge = |q: &ByteQueue<Item>| {
        let (items, bytes) = q.depth();
        counters.queue_messages.store(items as u64, Ordering::Relaxed);
        counters.queue_bytes.store(bytes as u64, Ordering::Relaxed);
    };
    std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("bizon-producer".into())
            .spawn_scoped(s, || {
                let mut iteration = start.iteration + 1;
                let mut pagination = start.pagination.clone();
                let result = loop {
                    if stop.load(Ordering::SeqCst) {
                        break Ok(());
                    }
                    if reached_max(spec, iteration) {
                        let _ = queue.push(Item::Exhausted, 0);
                        break Ok(());
                    }
                    let page = match extract(source, &pagination, ctx, iteration, counters) {
                        Ok(p) => p,
                        Err(e) => break Err(e),
                    };
                    let last = page.is_last();
                    let next = page.next.clone();
                    let bytes = page.records.byte_len();
                    if let Err(e) = save_source_cursor(backend, spec, job_id, iteration, &next) {
                        break Err(e);
                    }
                    let (t, n) = (spans::start(), page.records.len() as u64);
                    if queue.push(Item::Page(iteration, Box::new(page)), bytes).is_err() {
                        break Ok(()); // the consumer gave up
                    }
                    spans::end("enqueue", iteration, n, t);
                    gauge(&queue);
                    if last {
                        break Ok(());
                    }
                    pagination = next;
                    iteration += 1;
                };
                queue.close();
                result
            })
            .map_err(|e| Error::internal(format!("cannot start the producer thread: {e}")))?;

        let consumed = (|| -> Result<Option<Outcome>> {
            loop {
                if stop.load(Ordering::SeqCst) {
                    // Stop pulling; what is already queued is written, then committed.
                    while let Pop::Item(Item::Page(i, p)) = queue.pop(Duration::ZERO) {
                        w.accept(i, *p)?;
                    }
                    return w.stopped().map(Some);
                }
                match queue.pop(w.until_deadline()) {
                    Pop::Item(Item::Page(i, page)) => {
                        gauge(&queue);
                        let last = page.is_last();
                        w.accept(i, *page)?;
                        if last {
                            return w.finish().map(Some);
                        }
                    }
                    Pop::Item(Item::Exhausted) => return w.finish().map(Some),
                    Pop::Timeout => w.tick()?,
                    Pop::Closed => return Ok(None),
                }
            }
        })();
        if consumed.is_err() {
            queue.abandon();
        }
        let produced = producer.join().map_err(|_| Error::internal("the producer thread panicked"))?;
        match (consumed, produced) {
            (Err(e), _) => Err(e),
            (Ok(Some(outcome)), _) => Ok(outcome),
            // Closed without a last page: the producer failed or was stopped.
            (Ok(None), Err(e)) => {
                w.flush(false)?;
                Err(e)
            }
            (Ok(None), Ok(())) => w.stopped(),
        }
    })
}

/// Publish pages from `start` on until the last one (or `max_iterations`, or a stop). Pages
/// already in the queue from an earlier attempt are published again: consumers skip what they
/// committed.
#[allow(clippy::too_many_arguments)]
fn produce(
    source: &mut dyn Source,
    broker: &dyn QueueBroker,
    backend: &Mutex<&mut dyn Backend>,
    spec: &PipelineSpec,
    job_id: &str,
    ctx: &ReadContext,
    start: &DestinationCursor,
    halt: &dyn Fn() -> bool,
    counters: &Counters,
) -> Result<()> {
    use bizon_core::wire;
    let mut publisher = broker.publisher()?;
    let lanes = broker.lanes().max(1);
    let lane_of = |iteration: i64| (iteration as usize) % lanes;
    let mut iteration = start.iteration + 1;
    let mut pagination = start.pagination.clone();
    let window = (broker.max_in_flight().max(1) * lanes) as i64;
    let mut committed = start.iteration;
    loop {
        if halt() {
            return publisher.flush();
        }
        // flow control: wait for the consumers' commits (read from the shared backend)
        if iteration - committed > window {
            publisher.flush()?;
            let (waiting, mut pause, mut logged) = (Instant::now(), Duration::from_millis(2), false);
            loop {
                let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
                committed = slowest_lane(&mut **b, job_id, lanes)?.iteration;
                drop(b);
                if iteration - committed <= window || halt() {
                    break;
                }
                if !logged && waiting.elapsed() > Duration::from_secs(10) {
                    tracing::info!(
                        iteration,
                        committed,
                        lanes,
                        "waiting for the consumers to commit (is one lane without a consumer?)"
                    );
                    logged = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            continue;
        }
        if reached_max(spec, iteration) {
            // the end: every lane learns the first iteration that was not produced
            for lane in 0..lanes {
                publisher.publish(lane, wire::encode(job_id, iteration, None))?;
            }
            return publisher.flush();
        }
        let page = extract(source, &pagination, ctx, iteration, counters)?;
        let last = page.is_last();
        save_source_cursor(backend, spec, job_id, iteration, &page.next)?;
        let t = spans::start();
        publisher.publish(lane_of(iteration), wire::encode(job_id, iteration, Some(&page)))?;
        spans::end("enqueue", iteration, page.records.len() as u64, t);
        if last {
            for lane in (0..lanes).filter(|l| *l != lane_of(iteration)) {
                publisher.publish(lane, wire::encode(job_id, iteration + 1, None))?;
            }
            return publisher.flush();
        }
        pagination = page.next;
        iteration += 1;
    }
}

/// Every lane's destination cursor (`None` for a lane that has not started).
fn lane_cursors(backend: &mut dyn Backend, job_id: &str, lanes: usize) -> Result<Vec<Option<DestinationCursor>>> {
    (0..lanes).map(|lane| backend.destination_cursor(&lane_cursor_id(job_id, lane, lanes))).collect()
}

/// Where a producer restarts: the cursor of the lane that committed least (every lane then
/// skips what it already has); a done cursor when every lane is done.
fn slowest_lane(backend: &mut dyn Backend, job_id: &str, lanes: usize) -> Result<DestinationCursor> {
    let fresh = DestinationCursor::start(Json::Null);
    let mut slowest: Option<DestinationCursor> = None;
    let mut all_done = true;
    for c in lane_cursors(backend, job_id, lanes)? {
        let Some(c) = c else { return Ok(fresh) };
        all_done &= c.done;
        if slowest.as_ref().is_none_or(|s| c.iteration < s.iteration) {
            slowest = Some(c);
        }
    }
    let mut c = slowest.unwrap_or(fresh);
    c.done = all_done;
    Ok(c)
}

/// Consume pages in iteration order from `start` on, write, commit, then acknowledge. A page
/// already committed (a redelivery, a restarted producer's copy, another job's leftover) is
/// acknowledged and skipped; a gap fails the attempt (retried). `producer_failed` reports a
/// producer thread's error when the queue runs dry.
fn consume(
    w: &mut Writer<'_>,
    stop: &AtomicBool,
    start: &DestinationCursor,
    broker: &dyn QueueBroker,
    producer_failed: &dyn Fn() -> Option<Error>,
) -> Result<Outcome> {
    use bizon_core::wire;
    let (lane, lanes) = w.lane;
    let mut subscriber = broker.subscriber(lane)?;
    let max_unacked = broker.max_unacked().max(1);
    tracing::info!(queue = %broker.describe(), lane, lanes, after_iteration = start.iteration, "pages travel through the queue");
    // the newest accepted delivery, and how many are held unacknowledged
    let mut held: Option<(u64, i64)> = None;
    let mut unacked = 0usize;
    loop {
        if stop.load(Ordering::SeqCst) {
            let outcome = w.stopped()?;
            if let Some((tag, _)) = held {
                subscriber.ack_through(tag)?;
            }
            return Ok(outcome);
        }
        let outcome = match subscriber.next(w.until_deadline())? {
            None => {
                if let Some(e) = producer_failed() {
                    let _ = w.flush(false); // commit what arrived, report the producer's error
                    return Err(e);
                }
                w.tick()?;
                None
            }
            Some((bytes, tag)) => {
                let msg = wire::decode(&bytes)
                    .map_err(|e| Error::permanent(format!("{}: undecodable message: {e}", broker.describe())))?;
                let expected = w.expected();
                let gap = |arrived: i64| {
                    Error::transient(format!(
                        "{}: iteration {expected} is missing (iteration {arrived} arrived)",
                        broker.describe()
                    ))
                };
                if msg.job_id != w.job.id || (msg.page.is_some() && msg.iteration < expected) {
                    subscriber.ack(tag)?; // another job's leftover or a redelivered duplicate
                    continue;
                }
                match msg.page {
                    // the end of the stream: `iteration` is the first one that was not produced
                    None if msg.iteration <= expected => {
                        held = Some((tag, msg.iteration));
                        Some(w.finish()?)
                    }
                    None => return Err(gap(msg.iteration)),
                    Some(_) if msg.iteration > expected => return Err(gap(msg.iteration)),
                    Some(page) => {
                        held = Some((tag, msg.iteration));
                        unacked += 1;
                        let last = page.is_last();
                        w.accept(msg.iteration, page)?;
                        if last {
                            Some(w.finish()?)
                        } else {
                            if unacked >= max_unacked {
                                w.flush(false)?; // the broker sends no more until we acknowledge
                            }
                            None
                        }
                    }
                }
            }
        };
        if let Some((tag, iteration)) = held {
            if w.cursor.iteration >= iteration || outcome.is_some() {
                subscriber.ack_through(tag)?;
                held = None;
                unacked = 0;
            }
        }
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
}

/// The thread runner over an external queue: a producer thread publishes, this thread consumes.
/// Both ends restart from the last commit, so the queue is purged first; the queue is removed
/// when the job completes.
fn broker_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
    broker: &dyn QueueBroker,
) -> Result<Outcome> {
    broker.purge()?;
    let (spec, backend, job_id, counters) = (w.spec, w.backend, w.job.id.clone(), w.counters);
    let abandon = AtomicBool::new(false);
    let produced: Mutex<Option<Result<()>>> = Mutex::new(None);
    let outcome = std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("bizon-producer".into())
            .spawn_scoped(s, || {
                let halt = || stop.load(Ordering::SeqCst) || abandon.load(Ordering::SeqCst);
                let r = produce(source, broker, backend, spec, &job_id, ctx, start, &halt, counters);
                *produced.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            })
            .map_err(|e| Error::internal(format!("cannot start the producer thread: {e}")))?;
        let producer_failed = || {
            let mut result = produced.lock().unwrap_or_else(|p| p.into_inner());
            match result.take() {
                Some(Err(e)) => Some(e),
                other => {
                    *result = other;
                    None
                }
            }
        };
        let consumed = consume(w, stop, start, broker, &producer_failed);
        if consumed.is_err() {
            abandon.store(true, Ordering::SeqCst);
        }
        producer.join().map_err(|_| Error::internal("the producer thread panicked"))?;
        let produced = produced.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (consumed, produced) {
            (Err(e), _) => Err(e),
            (Ok(Outcome::Stopped), Some(Err(e))) => Err(e),
            (Ok(outcome), _) => Ok(outcome),
        }
    })?;
    if outcome == Outcome::Completed {
        remove_queue(broker);
    }
    Ok(outcome)
}

fn remove_queue(broker: &dyn QueueBroker) {
    if let Err(e) = broker.delete() {
        tracing::warn!(error = %e, "the job is complete but its queue could not be deleted");
    }
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
