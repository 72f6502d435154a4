//! Shared by the engine's tests: a spec, one run of a pipeline, and the checks every test makes
//! on what the destination holds.

#![allow(dead_code)] // each test file uses its share

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bizon_core::config::SyncMode;
use bizon_core::{Backend, Destination, JobStatus, QueueBroker, Result, Source, StreamKey};
use bizon_engine::progress::{Counters, ProgressMode};
use bizon_engine::{Failpoints, Pipeline, PipelineSpec, Role, RunSummary, Runner};
use bizon_testkit::fakes::{MemoryDestination, NumberSource, Table};
use bizon_testkit::memory::MemoryBackend;

pub const PIPELINE: &str = "engine-test";

pub fn key() -> StreamKey {
    StreamKey { pipeline: PIPELINE.into(), source: "numbers".into(), stream: "records".into() }
}

/// A full-refresh spec; `buffer_bytes` 0 commits every page.
pub fn spec(runner: Runner, role: Role, buffer_bytes: u64) -> PipelineSpec {
    PipelineSpec {
        key: key(),
        sync_mode: SyncMode::FullRefresh,
        cursor_field: None,
        filter_after_watermark: false,
        max_iterations: None,
        force_ignore_checkpoint: false,
        reset: false,
        buffer_bytes,
        flush_timeout: None,
        source_cursor_every: 2,
        runner,
        queue_max_bytes: 4 << 10,
        queue_max_messages: 0,
        max_retries: 3,
        retry_backoff: Duration::ZERO,
        progress: ProgressMode::Off,
        role,
        shard: None,
    }
}

/// One run (one "process"), with failpoints as `BIZON_FAILPOINTS` would arm them.
pub fn run_with(
    spec: PipelineSpec,
    source: &mut dyn Source,
    destination: &mut dyn Destination,
    backend: &mut dyn Backend,
    broker: Option<&dyn QueueBroker>,
    failpoints: &str,
    seed: u64,
) -> Result<RunSummary> {
    Pipeline {
        spec,
        source,
        destination,
        backend,
        broker,
        stop: Arc::new(AtomicBool::new(false)),
        failpoints: Arc::new(Failpoints::parse(failpoints, seed).expect("failpoints")),
        counters: Arc::new(Counters::default()),
    }
    .run()
}

/// One run of a fresh source (`total` records, `page` per page) and destination on `table`.
pub fn run(
    spec: PipelineSpec,
    (total, page): (u64, u64),
    table: &Table,
    backend: &mut dyn Backend,
    broker: Option<&dyn QueueBroker>,
) -> Result<RunSummary> {
    let mut source = NumberSource::new(total, page);
    let mut destination = MemoryDestination::new(table);
    run_with(spec, &mut source, &mut destination, backend, broker, "", 1)
}

/// Every record `0..total` exactly once, published.
pub fn assert_exactly_once(table: &Table, total: u64) {
    let ids = table.ids();
    assert_eq!(ids, (0..total).collect::<Vec<_>>(), "every record exactly once");
    assert!(table.published(), "every target published");
}

/// The status of the pipeline's newest (non-lane) job.
pub fn job_status(backend: &MemoryBackend) -> JobStatus {
    let jobs = backend.jobs(PIPELINE);
    jobs.iter().rev().find(|j| !j.key.stream.contains("#lane-")).expect("a job").status
}
