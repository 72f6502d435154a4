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

#[derive(Default)]
pub struct Counters {
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Records committed before this run started (resume), for the % complete.
    pub records_before: AtomicU64,
    /// 0 = unknown.
    pub total: AtomicU64,
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
                "{spinner} {bar:30} {pos}/{len} records  {per_sec}  {percent}%  ETA {eta}"
            } else {
                "{spinner} {pos} records  {per_sec}  {elapsed}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                pb.set_style(style);
            }
            styled_total = Some(total);
        }
        pb.set_position(c.records_before.load(Ordering::Relaxed) + c.records_written.load(Ordering::Relaxed));
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
        let written = c.records_written.load(Ordering::Relaxed);
        let done = c.records_before.load(Ordering::Relaxed) + written;
        let rate = written as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let total = c.total.load(Ordering::Relaxed);
        if total > 0 {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            let eta = if rate > 0.0 { total.saturating_sub(done) as f64 / rate } else { f64::NAN };
            tracing::info!(
                records = done,
                total,
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
