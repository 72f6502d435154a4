//! Property tests of pagination, cursors and resume: for arbitrary stream sizes, page sizes, flush
//! sizes, runners and faults injected at every durability boundary, a run that retries from its
//! last commit — and a new run after a failed one — ends with every record exactly once; the same
//! through a broker queue (testkit's in-memory broker: lanes, prefetch, redelivery, a lost
//! message) with a producer and one consumer per lane restarted after each failure. The algebra
//! those rely on (cursor merging, the wire format, route splitting) is property-tested in
//! bizon-core.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizon_connectors::backends::sqlite::SqliteBackend;
use bizon_connectors::destinations::file::{FileConfig, FileDestination};
use bizon_connectors::sources::generator::{GeneratorConfig, GeneratorSource};
use bizon_core::config::SyncMode;
use bizon_core::{QueueBroker, StreamKey};
use bizon_engine::failpoints::Failpoints;
use bizon_engine::pipeline::{Outcome, Pipeline, PipelineSpec, Role, RunSummary, Runner};
use bizon_engine::progress::{Counters, ProgressMode};
use bizon_testkit::broker::MemoryBroker;
use common::*;
use proptest::prelude::*;

fn spec(buffer_bytes: u64, runner: Runner, max_retries: u32) -> PipelineSpec {
    PipelineSpec {
        key: StreamKey { pipeline: "props".into(), source: "generator".into(), stream: "records".into() },
        sync_mode: SyncMode::FullRefresh,
        cursor_field: None,
        filter_after_watermark: false,
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
        shard: None,
    }
}

/// One run of the pipeline as a (re)started process builds it: a fresh generator source and file
/// destination, a new handle on the SQLite backend file.
#[allow(clippy::too_many_arguments)]
fn one_run(
    dir: &TempDir,
    (total, page, buffer): (u64, u64, u64),
    runner: Runner,
    role: Role,
    broker: Option<&dyn QueueBroker>,
    stop: &Arc<AtomicBool>,
    faults: &str,
    seed: u64,
    counters: &Arc<Counters>,
) -> bizon_core::Result<RunSummary> {
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
        &FileConfig { path: Some(dir.join("out.json").display().to_string()), ..Default::default() },
        "records",
    );
    let mut backend = SqliteBackend::open(dir.join("state.db")).expect("backend");
    let mut spec = spec(buffer, runner, 3);
    spec.role = role;
    Pipeline {
        spec,
        source: &mut source,
        destination: &mut destination,
        backend: &mut backend,
        broker,
        stop: stop.clone(),
        failpoints: Arc::new(Failpoints::parse(faults, seed).expect("failpoints")),
        counters: counters.clone(),
    }
    .run()
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
    run_until_complete_over(dir, (total, page, buffer), runner, None, faults, seed)
}

fn run_until_complete_over(
    dir: &TempDir,
    sizes: (u64, u64, u64),
    runner: Runner,
    broker: Option<&dyn QueueBroker>,
    faults: &str,
    seed: u64,
) -> (usize, u64) {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    for attempt in 0..30 {
        let seed = seed.wrapping_add(attempt as u64);
        if one_run(dir, sizes, runner, Role::Both, broker, &stop, faults, seed, &counters).is_ok() {
            return (attempt + 1, counters.retries.load(Ordering::Relaxed));
        }
    }
    panic!("no run completed in 30 attempts (faults {faults})");
}

/// A producer process and one consumer process per lane over `broker` (threads here), each
/// restarted after a failed run until it ends. Consumers stop (their `stop` flag) once one of
/// them completed the job: a consumer restarted after that would wait for the producer's next job.
fn run_roles_until_complete(dir: &TempDir, sizes: (u64, u64, u64), broker: &MemoryBroker, faults: &str, seed: u64) {
    let lanes = broker.lanes();
    let completed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let (stop, counters) = (Arc::new(AtomicBool::new(false)), Arc::new(Counters::default()));
            for attempt in 0..30 {
                match one_run(dir, sizes, Runner::Thread, Role::Producer, Some(broker), &stop, "", attempt, &counters) {
                    Ok(r) => return r.outcome,
                    Err(e) => eprintln!("producer run failed, restarting: {e}"),
                }
            }
            panic!("the producer never finished");
        });
        let consumers: Vec<_> = (0..lanes as u64)
            .map(|k| {
                let completed = completed.clone();
                s.spawn(move || {
                    let counters = Arc::new(Counters::default());
                    for attempt in 0..60u64 {
                        if completed.load(Ordering::SeqCst) {
                            return None;
                        }
                        let seed = seed.wrapping_add(k * 1000 + attempt);
                        let r = one_run(
                            dir,
                            sizes,
                            Runner::Thread,
                            Role::Consumer,
                            Some(broker),
                            &completed,
                            faults,
                            seed,
                            &counters,
                        );
                        match r {
                            Ok(r) if r.outcome == Outcome::Completed => {
                                completed.store(true, Ordering::SeqCst);
                                return Some(r.outcome);
                            }
                            Ok(r) if r.outcome == Outcome::LaneDone => return Some(r.outcome),
                            Ok(_) | Err(_) => continue,
                        }
                    }
                    panic!("consumer {k} never finished (faults {faults})");
                })
            })
            .collect();
        assert_eq!(producer.join().expect("producer thread"), Outcome::Published);
        let outcomes: Vec<_> = consumers.into_iter().map(|c| c.join().expect("consumer thread")).collect();
        assert!(outcomes.contains(&Some(Outcome::Completed)), "one consumer completed the job: {outcomes:?}");
    });
}

/// Every record of the job's output: `out.json`, or the union of the lane files.
fn output_ids(dir: &TempDir, lanes: usize) -> Vec<u64> {
    let files: Vec<_> = match lanes {
        1 => vec![dir.join("out.json")],
        _ => (0..lanes).map(|k| dir.join(&format!("out.lane-{k}.json"))).collect(),
    };
    files.iter().filter(|f| f.exists()).flat_map(|f| read_ids(f)).collect()
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
}

proptest! {
    // each case starts a producer and up to 4 consumers, restarted after failures
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sizes_lanes_and_faults_through_a_broker_end_exactly_once(
        total in 0u64..2000,
        page in 50u64..400,
        buffer in prop_oneof![Just(0u64), 1u64..20_000, Just(1u64 << 30)],
        lanes in 1usize..=4,
        max_unacked in 1usize..8,
        separate_roles in any::<bool>(),
        lost in prop_oneof![Just(0u64), 1u64..12],
        point in prop::sample::select(bizon_engine::failpoints::POINTS.to_vec()),
        probability in 0.0f64..0.1,
        seed in any::<u64>(),
    ) {
        let dir = TempDir::new("props-broker");
        let broker = MemoryBroker::new(lanes, max_unacked);
        let faults = format!("{point}=error@{probability:.3}");
        if lanes == 1 && !separate_roles {
            // one process owns both ends: a lost message is a gap the next attempt repairs by
            // purging and publishing again from the last commit
            if lost > 0 {
                broker.lose(lost);
            }
            run_until_complete_over(&dir, (total, page, buffer), Runner::Thread, Some(&broker), &faults, seed);
        } else {
            run_roles_until_complete(&dir, (total, page, buffer), &broker, &faults, seed);
        }
        let ids = output_ids(&dir, lanes);
        prop_assert_eq!(missing_and_duplicates(&ids, total), (0, 0));
        prop_assert_eq!(ids.len() as u64, total);
        prop_assert_eq!(broker.unacked(), 0, "nothing left unacknowledged");
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
