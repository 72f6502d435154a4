//! Progress of a run: shared counters, a reporter thread (a bar on a TTY, periodic log lines
//! otherwise) and the closing summary.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines every `interval` otherwise.
    Auto {
        interval: Duration,
    },
    Off,
}

/// Progress of the current attempt and the run's metrics. The metrics fields only ever grow
/// (counters) or hold the latest value (gauges) for the life of the process: exporters read them.
#[derive(Default)]
pub struct Counters {
    /// Written in the current attempt (reset when an attempt restarts from the last commit).
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Records committed before this run started (resume), for the % complete.
    pub records_before: AtomicU64,
    /// 0 = unknown.
    pub total: AtomicU64,
    /// The job this process works on (set when it starts): for logs and spans, never a metrics label.
    pub job_id: std::sync::Mutex<String>,
    pub records_extracted: AtomicU64,
    pub bytes_extracted: AtomicU64,
    pub iterations_extracted: AtomicU64,
    /// Handed to the destination (counters over the whole run, retries included).
    pub records_loaded: AtomicU64,
    pub bytes_loaded: AtomicU64,
    pub iterations_loaded: AtomicU64,
    /// Durable commits (destination flush + cursor commit) and their duration.
    pub commits: Histogram,
    /// Source extraction → durable commit, per page.
    pub latency: Histogram,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
    pub dead_letters: AtomicU64,
    /// The lane this process writes (0 without lanes) and the pages waiting on it: in the
    /// in-memory queue, or in the broker for a consumer. `lane_known`: a writer set them (a
    /// producer-only process has no lane to report).
    pub lane: AtomicU64,
    pub lane_waiting: AtomicU64,
    pub lane_known: AtomicBool,
    /// Unfinished lanes of the job that no consumer holds (autoscaling signal), read by producers
    /// and consumers every few seconds; `lanes_unclaimed_known`: the backend could tell.
    pub lanes_unclaimed: AtomicU64,
    pub lanes_unclaimed_known: AtomicBool,
    /// Gauges: in-memory queue depth, bytes written since the last commit.
    pub queue_messages: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub buffer_bytes: AtomicU64,
    /// Microseconds since the epoch of the last record written or commit (stuck-run detection).
    pub last_progress_micros: AtomicU64,
}

impl Counters {
    /// Records committed by the job so far (resumed part included).
    pub fn done(&self) -> u64 {
        self.records_before.load(Ordering::Relaxed) + self.records_written.load(Ordering::Relaxed)
    }

    /// % complete when the total is known.
    pub fn percent(&self) -> Option<f64> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.done() as f64 * 100.0 / total as f64).min(100.0))
    }

    /// Records written per second over `elapsed` (this run).
    pub fn rate(&self, elapsed: Duration) -> f64 {
        self.records_written.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-3)
    }

    /// Seconds to completion at that rate, when the total is known and records flow.
    pub fn eta_seconds(&self, elapsed: Duration) -> Option<f64> {
        let total = self.total.load(Ordering::Relaxed);
        let rate = self.rate(elapsed);
        (total > 0 && rate > 0.0).then(|| total.saturating_sub(self.done()) as f64 / rate)
    }

    pub fn job(&self) -> String {
        self.job_id.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn touch(&self) {
        self.last_progress_micros.store(bizon_core::time::now_micros().max(0) as u64, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the histogram buckets.
pub const BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0];

/// A fixed-bucket histogram of durations, lock-free.
#[derive(Default)]
pub struct Histogram {
    /// Observations ≤ `BUCKETS[i]` (not cumulative); the last slot is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let i = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus' `le` buckets; the last is +Inf = the count).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.counts
            .iter()
            .map(|c| {
                acc += c.load(Ordering::Relaxed);
                acc
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(mode: ProgressMode, counters: Arc<Counters>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ProgressMode::Auto { interval } = mode else { return Reporter { stop, handle: None } };
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bizon-progress".into())
            .spawn(move || {
                if std::io::stderr().is_terminal() {
                    bar(&flag, &counters)
                } else {
                    lines(&flag, &counters, interval)
                }
            })
            .ok();
        Reporter { stop, handle }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn bar(stop: &AtomicBool, c: &Counters) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    let mut styled_total = None;
    while !stop.load(Ordering::SeqCst) {
        let total = c.total.load(Ordering::Relaxed);
        if styled_total != Some(total) {
            let template = if total > 0 {
                pb.set_length(total);
                "{spinner} {bar:30} {pos}/{len} records  {rate}  {percent}%  ETA {eta}"
            } else {
                "{spinner} {pos} records  {rate}  {elapsed}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                // whole records per second (indicatif's `{per_sec}` prints four decimals)
                pb.set_style(style.with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} records/s", s.per_sec());
                }));
            }
            styled_total = Some(total);
        }
        pb.set_position(c.done());
        std::thread::park_timeout(Duration::from_millis(100));
    }
    pb.finish_and_clear();
}

fn lines(stop: &AtomicBool, c: &Counters, interval: Duration) {
    let start = Instant::now();
    let mut next = start + interval;
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += interval;
        let (done, elapsed) = (c.done(), start.elapsed());
        let rate = c.rate(elapsed);
        if let Some(pct) = c.percent() {
            let eta = c.eta_seconds(elapsed).unwrap_or(f64::NAN);
            tracing::info!(
                records = done,
                total = c.total.load(Ordering::Relaxed),
                rate = rate.round(),
                percent = format!("{pct:.1}"),
                eta_s = eta.round(),
                "progress"
            );
        } else {
            tracing::info!(records = done, rate = rate.round(), "progress");
        }
    }
}
