//! The consumer side of the data flow: every runner hands its pages, in iteration order, to one
//! `Writer`, which writes them to the destination, decides when to flush (buffer size, flush
//! timeout, last page), commits the destination cursor as the next link of the chain, and ends
//! the job (`finish`: finalize + complete, or `LaneDone` for a lane) or stops it (`stopped`).

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bizon_core::config::SyncMode;
use bizon_core::record::{cursor_cmp, cursor_max, DEAD_LETTER};
use bizon_core::time::now_micros;
use bizon_core::{
    Backend, BatchMeta, Destination, DestinationCursor, DurableHook, Error, Job, JobStatus, Json, Page, Result,
};

use super::lanes::{lane_cursors, next_in_lane};
use super::{Outcome, PipelineSpec};
use crate::failpoints::Failpoints;
use crate::progress::Counters;
use crate::spans;

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
pub(super) struct Writer<'w> {
    pub(super) job: &'w Job,
    destination: &'w mut dyn Destination,
    /// Shared with the producer thread, which saves the source cursor.
    pub(super) backend: &'w Mutex<&'w mut dyn Backend>,
    failpoints: &'w Failpoints,
    pub(super) counters: &'w Counters,
    pub(super) spec: &'w PipelineSpec,
    pub(super) cursor: DestinationCursor,
    pending: Option<Pending>,
    since_flush: u64,
    last_flush: Instant,
    pub(super) committed: bool,
    job_hash: u64,
    /// Where the cursor chain is stored: the job id, or the job's lane.
    pub(super) cursor_id: String,
    /// `(lane, lanes)`: this writer takes iterations `lane`, `lane + lanes`, …
    pub(super) lane: (usize, usize),
    /// The source's hook, told each committed pagination (Kafka group offsets).
    durable: Option<DurableHook>,
    /// `extracted_at` of each page written since the last commit (latency metrics).
    unflushed: Vec<i64>,
}

impl<'w> Writer<'w> {
    /// A writer that goes on from `start`, the last committed cursor of chain `cursor_id`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        job: &'w Job,
        destination: &'w mut dyn Destination,
        backend: &'w Mutex<&'w mut dyn Backend>,
        failpoints: &'w Failpoints,
        counters: &'w Counters,
        spec: &'w PipelineSpec,
        start: DestinationCursor,
        cursor_id: String,
        lane: (usize, usize),
        durable: Option<DurableHook>,
    ) -> Self {
        Writer {
            job,
            destination,
            backend,
            failpoints,
            counters,
            spec,
            cursor: start,
            pending: None,
            since_flush: 0,
            last_flush: Instant::now(),
            committed: false,
            job_hash: fnv64(&job.id),
            cursor_id,
            lane,
            durable,
            unflushed: Vec::new(),
        }
    }

    /// The iteration that must come next.
    pub(super) fn expected(&self) -> i64 {
        let prev = self.pending.as_ref().map_or(self.cursor.iteration, |p| p.iteration);
        next_in_lane(prev, self.lane.0, self.lane.1)
    }

    fn backend(&self) -> std::sync::MutexGuard<'_, &'w mut dyn Backend> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn accept(&mut self, iteration: i64, page: Page) -> Result<()> {
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
    pub(super) fn tick(&mut self) -> Result<()> {
        if let Some(t) = self.spec.flush_timeout {
            if self.pending.is_some() && self.last_flush.elapsed() >= t {
                self.flush(false)?;
            }
        }
        Ok(())
    }

    pub(super) fn until_deadline(&self) -> Duration {
        match self.spec.flush_timeout {
            Some(t) if self.pending.is_some() => {
                t.saturating_sub(self.last_flush.elapsed()).max(Duration::from_millis(1))
            }
            _ => Duration::from_millis(200),
        }
    }

    /// Make pending writes durable and commit the cursor that covers them.
    /// `exhausted` marks the cursor done even without pending pages (max_iterations).
    pub(super) fn flush(&mut self, exhausted: bool) -> Result<()> {
        let Some(p) = self.pending.take() else {
            if exhausted && !self.cursor.done {
                let mut c = self.cursor.clone();
                c.done = true;
                if self.lane.1 > 1 {
                    // on lanes the destination learns that this lane is done too (its last rows
                    // were committed earlier): one that publishes the job once (PostgreSQL's
                    // staging swap) counts the done lanes in its own commit log
                    self.backend().check_fence()?;
                    c.token = self.destination.flush(&c)?;
                }
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
    pub(super) fn finish(&mut self) -> Result<Outcome> {
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
            let (mut done, mut total, mut watermark, mut tokens) = (0, 0, None, Vec::with_capacity(lanes));
            for c in lane_cursors(&mut **backend, &self.job.id, lanes)?.into_iter().flatten() {
                done += usize::from(c.done);
                total += c.records_written;
                watermark = cursor_max(watermark, c.watermark);
                tokens.push(c.token);
            }
            backend.set_job_status(&self.cursor_id, JobStatus::Succeeded, None)?;
            drop(backend);
            if done < lanes {
                tracing::info!(job = %self.job.id, lane, lanes, lanes_done = done, records = self.cursor.records_written, "lane done; the last lane to finish completes the job");
                return Ok(Outcome::LaneDone);
            }
            (written, records) = (watermark, total);
            // every lane is done: a destination that publishes the job once does it now
            self.backend().check_fence()?;
            self.destination.finalize_lanes(&tokens)?;
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

    pub(super) fn stopped(&mut self) -> Result<Outcome> {
        self.flush(false)?;
        // a sharded source's lane stops alone (a re-balance): the job goes on in other processes
        let job_id = if self.spec.shard.is_some() { self.cursor_id.clone() } else { self.job.id.clone() };
        self.backend().set_job_status(&job_id, JobStatus::Stopped, Some("stopped by signal"))?;
        tracing::info!(job = %job_id, iteration = self.cursor.iteration, "stopped by signal after committing; the next run resumes");
        Ok(Outcome::Stopped)
    }
}

/// Max of `field` over a page's records, parsing payloads (sources that know it set
/// `Page::cursor_max` instead).
fn extract_max(page: &Page, field: &str) -> Option<Json> {
    let mut best: Option<Json> = None;
    for r in page.records.iter() {
        if let Ok(mut j) = serde_json::from_slice::<Json>(r.data) {
            // A JSON pointer (`/properties/hs_lastmodifieddate`) reaches nested fields.
            let v = match (field.starts_with('/'), &mut j) {
                (true, j) => j.pointer_mut(field).map(Json::take),
                (false, Json::Object(m)) => m.remove(field),
                _ => None,
            };
            if let Some(v) = v.filter(|v| !v.is_null()) {
                if best.as_ref().is_none_or(|b| cursor_cmp(&v, b).is_gt()) {
                    best = Some(v);
                }
            }
        }
    }
    best
}

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizon_core::RecordBatch;

    #[test]
    fn cursor_max_of_top_level_and_nested_fields() {
        let mut records = RecordBatch::with_capacity(3, 256);
        for (id, t) in [("a", "2024-01-03"), ("b", "2024-01-09"), ("c", "2024-01-05")] {
            let data = serde_json::json!({"id": id, "updated": t, "properties": {"modified": t}});
            records.push(id, 0, data.to_string().as_bytes());
        }
        let page = Page { records, next: Json::Null, cursor_max: None, extracted_at: 0 };
        assert_eq!(extract_max(&page, "updated"), Some(Json::from("2024-01-09")));
        assert_eq!(extract_max(&page, "/properties/modified"), Some(Json::from("2024-01-09")));
        assert_eq!(extract_max(&page, "/properties/missing"), None);
        assert_eq!(extract_max(&page, "missing"), None);
    }
}
