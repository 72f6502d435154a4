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
fn a_late_consumer_takes_an_unfinished_lane_not_a_finished_one() {
    // lane 0's consumer finishes and exits before lane 1 has a consumer; the next consumer to
    // start finds lane 0's lock free, but lane 0 is done: it must consume lane 1
    let (total, page) = (100u64, 10u64);
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(2, 8), Table::default());
    let mut producer = store.handle();
    let published = run(spec(Runner::Thread, Role::Producer, 0), (total, page), &table, &mut producer, Some(&broker));
    assert_eq!(published.unwrap().outcome, Outcome::Published, "2 × 8 in flight: all 10 pages published");
    let mut first = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut first, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::LaneDone);
    let mut late = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (total, page), &table, &mut late, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::Completed, "the late consumer took lane 1 and completed the job");
    assert_exactly_once(&table, total);
    check_lane_targets(&table, 2, 10);
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

    // both lanes taken: a third consumer is refused naming the pipeline
    let mut holder = store.handle();
    let _l0 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(0), ..key() }).unwrap();
    let _l1 = holder.lock_pipeline(&StreamKey { pipeline: lane_lock(1), ..key() }).unwrap();
    let e = run(spec(Runner::Thread, Role::Consumer, 0), (10, 5), &table, &mut b, Some(&broker)).unwrap_err();
    assert!(e.message().contains("all 2 consumer lanes of pipeline `engine-test` are taken"), "{e}");
}
