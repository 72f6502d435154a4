//! Spans of each iteration's steps (extract, enqueue, write, commit) for a tracing exporter.
//! Off unless an exporter installs a sink: then each step costs two clock reads and a push.

use std::sync::{Arc, OnceLock};

use bizon_core::time::now_micros;

/// One step of one iteration, in microseconds since the epoch.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub name: &'static str,
    pub iteration: i64,
    pub start_micros: i64,
    pub end_micros: i64,
    /// Records the step handled.
    pub records: u64,
}

pub trait SpanSink: Send + Sync {
    fn record(&self, span: SpanRecord);
}

static SINK: OnceLock<Arc<dyn SpanSink>> = OnceLock::new();

/// Send every span of this process to `sink` (the first install wins).
pub fn install(sink: Arc<dyn SpanSink>) {
    let _ = SINK.set(sink);
}

/// The start of a step, when spans are recorded.
pub fn start() -> Option<i64> {
    SINK.get().map(|_| now_micros())
}

/// Record the step that began at `started` (from [`start`]).
pub fn end(name: &'static str, iteration: i64, records: u64, started: Option<i64>) {
    if let (Some(sink), Some(start_micros)) = (SINK.get(), started) {
        sink.record(SpanRecord { name, iteration, start_micros, end_micros: now_micros(), records });
    }
}
