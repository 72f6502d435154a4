//! Lanes over the in-memory broker: a producer publishes iteration `i` to lane `i % N`, N
//! consumers (threads standing for processes, each with its own backend handle) claim one lane
//! each, commit their own cursor chains, and the last lane to finish completes the job.

mod common;

use bizon_core::{wire, Backend, ErrorKind, JobStatus, StreamKey};
use bizon_engine::{Outcome, Role, Runner};
use bizon_testkit::broker::MemoryBroker;
use bizon_testkit::fakes::Table;
use bizon_testkit::memory::MemoryBackend;
use common::*;

fn lane_lock(lane: usize) -> String {
    format!("{PIPELINE}#consumer-{lane}")
}

/// `lanes` consumers claim their lanes, then a producer starts; all run to the end. Returns the
/// producer's outcome and the consumers'.
fn run_lanes(
    lanes: usize,
    (total, page): (u64, u64),
    store: &MemoryBackend,
    broker: &MemoryBroker,
) -> (Outcome, Vec<Outcome>) {
    let table = Table::default();
    let outcomes = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..lanes)
            .map(|_| {
                s.spawn(|| {
                    let mut backend = store.handle();
                    run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut backend, Some(broker))
                })
            })
            .collect();
        // every consumer holds its lane before the job exists (consumers wait for a producer)
        while !(0..lanes).all(|k| store.locked(&if lanes == 1 { format!("{PIPELINE}#consumer") } else { lane_lock(k) }))
        {
            std::thread::yield_now();
        }
        let mut backend = store.handle();
        let produced = run(spec(Runner::Thread, Role::Producer, 0), (total, page), &table, &mut backend, Some(broker));
        let consumed = consumers.into_iter().map(|c| c.join().expect("consumer thread").expect("consumer run").outcome);
        (produced.expect("producer run").outcome, consumed.collect())
    });
    assert_exactly_once(&table, total);
    check_lane_targets(&table, lanes, total.div_ceil(page) as i64);
    outcomes
}

/// Each target holds its lane's iterations only, each once, in order.
fn check_lane_targets(table: &Table, lanes: usize, pages: i64) {
    for (lane, target) in table.targets() {
        let mut iterations: Vec<i64> = target.rows.iter().map(|(_, i)| *i).collect();
        assert!(iterations.iter().all(|i| *i as usize % lanes == lane), "lane {lane} of {lanes}: {iterations:?}");
        iterations.dedup();
        let want: Vec<i64> = (lane as i64..pages).step_by(lanes).collect();
        assert_eq!(iterations, want, "lane {lane} of {lanes} wrote its iterations in order");
    }
}

#[test]
fn pages_go_to_lane_i_mod_n_each_lane_chains_its_own_cursor_and_the_last_lane_completes() {
    for lanes in 1..=4usize {
        let (total, page) = (230u64, 10u64); // 23 pages: lanes get unequal shares
        let (store, broker) = (MemoryBackend::new(), MemoryBroker::new(lanes, 4));
        let (produced, consumed) = run_lanes(lanes, (total, page), &store, &broker);
        assert_eq!(produced, Outcome::Published, "{lanes} lanes");
        // The last lane to finish completes the job; two lanes finishing at the same moment may
        // both see every lane done and both complete it — idempotent: the same status and the same
        // watermark, merged from the committed lane cursors (checked below).
        let completed = consumed.iter().filter(|o| **o == Outcome::Completed).count();
        assert!(completed >= 1, "a consumer completes the job ({lanes} lanes): {consumed:?}");
        assert!(
            consumed.iter().all(|o| matches!(o, Outcome::Completed | Outcome::LaneDone)),
            "the others finish their lanes ({lanes} lanes): {consumed:?}"
        );

        let mut b = store.handle();
        let job = store.jobs(PIPELINE).into_iter().find(|j| j.key.stream == "records").expect("the job");
        assert_eq!(job_status(&store), JobStatus::Succeeded, "{lanes} lanes");
        let pages = total.div_ceil(page) as i64;
        if lanes > 1 {
            for lane in 0..lanes {
                let c = b.destination_cursor(&format!("{}~{lane}", job.id)).unwrap().expect("a lane's own chain");
                assert!(c.done, "lane {lane} committed done");
                let last = (0..pages).filter(|i| *i as usize % lanes == lane).max().unwrap();
                assert_eq!(c.iteration, last, "lane {lane}'s chain ends at its last iteration");
            }
            assert!(b.destination_cursor(&job.id).unwrap().is_none(), "with lanes the job id itself has no chain");
        } else {
            assert!(b.destination_cursor(&job.id).unwrap().unwrap().done);
        }
        assert_eq!(
            broker.deletes() as usize,
            completed,
            "each completing consumer removes the queues (a second delete only warns)"
        );
        assert_eq!(broker.acked(), broker.delivered(), "every delivery acknowledged");
    }
}

#[test]
fn a_consumer_that_finishes_its_lane_takes_the_next_free_one() {
    // every page is published before any consumer starts: one consumer finishes lane 0, finds
    // lane 1 free and unfinished, consumes it too and completes the job (work stealing)
    let (total, page) = (100u64, 10u64);
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(2, 8), Table::default());
    let mut producer = store.handle();
    let published = run(spec(Runner::Thread, Role::Producer, 0), (total, page), &table, &mut producer, Some(&broker));
    assert_eq!(published.unwrap().outcome, Outcome::Published, "2 × 8 in flight: all 10 pages published");
    let mut only = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut only, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::Completed, "one consumer consumed both lanes and completed the job");
    assert_eq!(s.records, total, "its summary counts the records of both lanes");
    assert_exactly_once(&table, total);
    check_lane_targets(&table, 2, 10);
    assert_eq!(job_status(&store), JobStatus::Succeeded);
}

#[test]
fn a_consumer_finding_every_lane_taken_waits_and_takes_each_lane_its_holder_leaves() {
    let (total, page) = (100u64, 10u64);
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(2, 8), Table::default());
    let mut producer = store.handle();
    run(spec(Runner::Thread, Role::Producer, 0), (total, page), &table, &mut producer, Some(&broker)).unwrap();
    // two consumers that hold the lanes and do nothing (paused processes, say)
    let mut holder = store.handle();
    let l0 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(0), ..key() }).unwrap();
    let l1 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(1), ..key() }).unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let mut b = store.handle();
            run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut b, Some(&broker))
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(!waiting.is_finished(), "no free lane: the consumer waits instead of failing");
        assert!(table.ids().is_empty());
        drop(l0);
        // it takes lane 0 and consumes it, then waits for lane 1
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while table.ids().len() < 50 {
            assert!(std::time::Instant::now() < deadline, "lane 0 consumed once its holder left");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiting.is_finished(), "lane 1 is unfinished and held: the consumer waits for it");
        assert_eq!(table.ids().len(), 50, "lane 1 untouched while held");
        drop(l1);
        let s = waiting.join().unwrap().expect("the consumer's run");
        assert_eq!(s.outcome, Outcome::Completed);
    });
    assert_exactly_once(&table, total);
    check_lane_targets(&table, 2, 10);
}

#[test]
fn two_consumers_over_four_lanes_hand_dry_lanes_over_to_the_lanes_without_a_consumer() {
    // The producer keeps at most max_in_flight pages per lane ahead of the slowest lane, so with
    // fewer consumers than lanes it waits for the lanes nobody consumes: the consumers must move
    // to them (their own lanes run dry meanwhile), or the job never ends.
    let (total, page) = (400u64, 10u64); // 40 pages, at most 2 × 2 × 4 = 16 ahead
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(4, 2), Table::default());
    let outcomes = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut b = store.handle();
                    run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut b, Some(&broker))
                })
            })
            .collect();
        while !(0..2).all(|k| store.locked(&lane_lock(k))) {
            std::thread::yield_now();
        }
        let mut b = store.handle();
        let produced = run(spec(Runner::Thread, Role::Producer, 0), (total, page), &table, &mut b, Some(&broker));
        assert_eq!(produced.expect("producer run").outcome, Outcome::Published);
        consumers.into_iter().map(|c| c.join().expect("consumer thread").expect("consumer run")).collect::<Vec<_>>()
    });
    assert!(outcomes.iter().any(|s| s.outcome == Outcome::Completed), "{:?}", outcomes.iter().map(|s| s.outcome));
    assert_eq!(outcomes.iter().map(|s| s.records).sum::<u64>(), total, "the two consumers wrote every record once");
    assert_exactly_once(&table, total);
    check_lane_targets(&table, 4, 40);
    assert_eq!(job_status(&store), JobStatus::Succeeded);
}

#[test]
fn after_the_last_page_every_other_lane_gets_an_end_marker() {
    // 5 pages over 3 lanes: page 4 (the last) goes to lane 1; lanes 0 and 2 learn the end
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(3, 8), Table::default());
    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Producer, 0), (50, 10), &table, &mut b, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::Published);
    let lane = |k| -> Vec<(i64, bool)> {
        broker.ready(k).iter().map(|m| wire::decode(m).unwrap()).map(|m| (m.iteration, m.page.is_some())).collect()
    };
    assert_eq!(lane(0), [(0, true), (3, true), (5, false)]);
    assert_eq!(lane(1), [(1, true), (4, true)]);
    assert_eq!(lane(2), [(2, true), (5, false)]);
}

#[test]
fn lanes_need_a_consumer_each_and_a_lane_lock_is_exclusive() {
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(2, 4), Table::default());
    let mut b = store.handle();
    let e = run(spec(Runner::Thread, Role::Both, 0), (10, 5), &table, &mut b, Some(&broker)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("2 lanes need one consumer each"), "{e}");

    // a lane lock is exclusive
    let mut holder = store.handle();
    let _l0 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(0), ..key() }).unwrap();
    let mut other = store.handle();
    assert!(other.lock_pipeline(&StreamKey { pipeline: lane_lock(0), ..key() }).is_err());
    assert!(other.lock_pipeline(&StreamKey { pipeline: lane_lock(1), ..key() }).is_ok());
}

#[test]
fn the_producer_reports_the_unfinished_lanes_no_consumer_holds() {
    use bizon_engine::progress::Counters;
    use bizon_engine::{Failpoints, Pipeline};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // 4 lanes, consumers hold lanes 0 and 1 (and consume nothing): the producer fills its window
    // and waits, reporting 2 lanes that want a consumer; a third holder brings it to 1
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(4, 2), Table::default());
    let mut holder = store.handle();
    let _l0 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(0), ..key() }).unwrap();
    let _l1 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(1), ..key() }).unwrap();
    let (stop, counters) = (Arc::new(AtomicBool::new(false)), Arc::new(Counters::default()));
    let gauge = || {
        counters.lanes_unclaimed_known.load(Ordering::Relaxed).then(|| counters.lanes_unclaimed.load(Ordering::Relaxed))
    };
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut b = store.handle();
            let mut source = bizon_testkit::fakes::NumberSource::new(1000, 10);
            let mut destination = bizon_testkit::fakes::MemoryDestination::new(&table);
            Pipeline {
                spec: spec(Runner::Thread, Role::Producer, 0),
                source: &mut source,
                destination: &mut destination,
                backend: &mut b,
                broker: Some(&broker),
                stop: stop.clone(),
                failpoints: Arc::new(Failpoints::parse("", 1).unwrap()),
                counters: counters.clone(),
            }
            .run()
        });
        let wait_for = |want: u64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while gauge() != Some(want) {
                assert!(std::time::Instant::now() < deadline, "gauge {:?}, want {want}", gauge());
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        wait_for(2);
        let _l2 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(2), ..key() }).unwrap();
        wait_for(1);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(producer.join().unwrap().unwrap().outcome, Outcome::Stopped);
    });
}
