//! Property tests of pagination, cursors and resume: for arbitrary stream sizes, page sizes, flush
//! sizes, runners and faults injected at every durability boundary, a run that retries from its
//! last commit — and a new run after a failed one — ends with every record exactly once. Plus the
//! algebra those rely on: cursor merging, the queue wire format, route splitting.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bizon_connectors::backends::sqlite::SqliteBackend;
use bizon_connectors::destinations::file::{FileConfig, FileDestination};
use bizon_connectors::sources::generator::{GeneratorConfig, GeneratorSource};
use bizon_core::config::SyncMode;
use bizon_core::record::{cursor_max, DEAD_LETTER};
use bizon_core::{Page, RecordBatch, StreamKey};
use bizon_engine::failpoints::Failpoints;
use bizon_engine::pipeline::{Pipeline, PipelineSpec, Role, Runner};
use bizon_engine::progress::{Counters, ProgressMode};
use common::*;
use proptest::prelude::*;

fn spec(buffer_bytes: u64, runner: Runner, max_retries: u32) -> PipelineSpec {
    PipelineSpec {
        key: StreamKey { pipeline: "props".into(), source: "generator".into(), stream: "records".into() },
        sync_mode: SyncMode::FullRefresh,
        cursor_field: None,
        max_iterations: None,
        force_ignore_checkpoint: false,
        reset: false,
        buffer_bytes,
        flush_timeout: None,
        source_cursor_every: 3,
        runner,
        queue_max_bytes: 64 << 10,
        queue_max_messages: 0,
        max_retries,
        retry_backoff: Duration::ZERO,
        progress: ProgressMode::Off,
        role: Role::Both,
    }
}

/// Runs of one pipeline until it completes (each a fresh source and destination, as a restarted
/// process builds them; the backend file persists), with `faults` armed in every run.
/// Returns (runs, in-process retries) it took.
fn run_until_complete(
    dir: &TempDir,
    total: u64,
    page: u64,
    buffer: u64,
    runner: Runner,
    faults: &str,
    seed: u64,
) -> (usize, u64) {
    let out = dir.join("out.json");
    let counters = Arc::new(Counters::default());
    for attempt in 0..30 {
        let mut source = GeneratorSource::new(GeneratorConfig {
            total,
            page_size: page,
            record_size: 64,
            seed: 1,
            start_timestamp: None,
            step_ms: 1,
            rate_limit: None,
        });
        let mut destination = FileDestination::new(
            &FileConfig { path: Some(out.display().to_string()), ..Default::default() },
            "records",
        );
        let mut backend = SqliteBackend::open(dir.join("state.db")).expect("backend");
        let pipeline = Pipeline {
            spec: spec(buffer, runner, 3),
            source: &mut source,
            destination: &mut destination,
            backend: &mut backend,
            broker: None,
            stop: Arc::new(AtomicBool::new(false)),
            failpoints: Arc::new(Failpoints::parse(faults, seed.wrapping_add(attempt as u64)).expect("failpoints")),
            counters: counters.clone(),
        };
        if pipeline.run().is_ok() {
            return (attempt + 1, counters.retries.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
    panic!("no run completed in 30 attempts (faults {faults})");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sizes_and_faults_resume_to_exactly_once(
        total in 0u64..3000,
        page in 50u64..400, // at most 60 pages: a run without an intermediate commit must be able to finish
        buffer in prop_oneof![Just(0u64), 1u64..20_000, Just(1u64 << 30)],
        stream_runner in any::<bool>(),
        point in prop::sample::select(bizon_engine::failpoints::POINTS.to_vec()),
        probability in 0.0f64..0.02,
        seed in any::<u64>(),
    ) {
        let dir = TempDir::new("props");
        let runner = if stream_runner { Runner::Stream } else { Runner::Thread };
        // committing every page guarantees progress, so it can take far more faults
        let probability = if buffer == 0 { probability * 15.0 } else { probability };
        let faults = format!("{point}=error@{probability:.3}");
        run_until_complete(&dir, total, page, buffer, runner, &faults, seed);
        let ids = if total == 0 && !dir.join("out.json").exists() { Vec::new() } else { read_ids(&dir.join("out.json")) };
        prop_assert_eq!(missing_and_duplicates(&ids, total), (0, 0));
        prop_assert_eq!(ids.len() as u64, total);
    }

    #[test]
    fn object_cursors_merge_commutatively_associatively_and_idempotently(
        a in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
        b in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
        c in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
    ) {
        let j = |m: &std::collections::BTreeMap<String, i64>| serde_json::to_value(m).unwrap();
        let max = |x: serde_json::Value, y: serde_json::Value| cursor_max(Some(x), Some(y)).unwrap();
        let sorted = |v: serde_json::Value| serde_json::to_value(serde_json::from_value::<std::collections::BTreeMap<String, i64>>(v).unwrap()).unwrap();
        prop_assert_eq!(sorted(max(j(&a), j(&b))), sorted(max(j(&b), j(&a))));
        prop_assert_eq!(sorted(max(max(j(&a), j(&b)), j(&c))), sorted(max(j(&a), max(j(&b), j(&c)))));
        prop_assert_eq!(sorted(max(j(&a), j(&a))), sorted(j(&a)));
        // every key keeps its largest offset: a merged position never goes back
        let m = max(j(&a), j(&b));
        for (k, v) in a.iter().chain(b.iter()) {
            prop_assert!(m[k].as_i64().unwrap() >= *v);
        }
    }

    #[test]
    fn pages_survive_the_queue_wire_format_and_route_splits(
        records in prop::collection::vec(("[a-z0-9_]{0,12}", any::<i64>(), "[ -~]{0,40}", prop_oneof![Just(0u16), 1u16..5, Just(DEAD_LETTER)]), 0..50),
        iteration in any::<i64>(),
    ) {
        let mut batch = RecordBatch::default();
        for (id, ts, text, route) in &records {
            let json = serde_json::to_vec(text).unwrap();
            batch.push_routed(*route, id, *ts, |o| o.extend_from_slice(&json));
        }
        let page = Page { records: batch, next: serde_json::json!({"offsets": {"t": {"0": iteration}}}), cursor_max: None, extracted_at: iteration };
        let msg = bizon_core::wire::decode(&bizon_core::wire::encode("job", iteration, Some(&page))).unwrap();
        let back = msg.page.unwrap();
        prop_assert_eq!(back.records.len(), records.len());
        for (i, (id, ts, _, route)) in records.iter().enumerate() {
            let r = back.records.get(i);
            prop_assert_eq!((r.id, r.timestamp, back.records.route(i)), (id.as_str(), *ts, *route));
        }
        let split: usize = back.records.split_routes().iter().map(|(_, b)| b.len()).sum();
        prop_assert_eq!(split, records.len(), "route splitting keeps every record");
    }
}

#[test]
fn the_fault_injection_really_fires_and_runs_still_end_exactly_once() {
    let dir = TempDir::new("props-faults");
    let (runs, retries) =
        run_until_complete(&dir, 5000, 100, 0, Runner::Thread, "after_write=error@0.2,before_commit=error@0.1", 3);
    assert!(retries > 5, "faults fired: {retries} retries over {runs} runs");
    assert!(runs > 1, "some runs gave up after 3 retries and a new run resumed: {runs}");
    let ids = read_ids(&dir.join("out.json"));
    assert_eq!((ids.len(), missing_and_duplicates(&ids, 5000)), (5000, (0, 0)));
}
