//! The consumer's ordering and acknowledgement rules over the in-memory broker: pages are taken
//! in iteration order; a delivery already committed (a redelivery, a restarted producer's copy,
//! another job's leftover) is acknowledged and skipped; a gap fails the attempt as transient
//! (retried, and the thread runner recovers by purging and publishing again from the last
//! commit); a delivery is acknowledged only after the commit that covers it.

mod common;

use bizon_core::{wire, Backend, ErrorKind, QueueBroker};
use bizon_engine::{Outcome, Role, Runner};
use bizon_testkit::broker::MemoryBroker;
use bizon_testkit::fakes::Table;
use bizon_testkit::faulty::{Call, Fault, FaultPlan, FaultyBackend};
use bizon_testkit::memory::MemoryBackend;
use common::*;

/// A producer-only run publishes `total / page` pages of a new job; returns the messages it
/// queued (lane 0), purged from the broker so a test can queue them in the order it wants.
fn published(store: &MemoryBackend, broker: &MemoryBroker, (total, page): (u64, u64)) -> Vec<Vec<u8>> {
    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Producer, 0), (total, page), &Table::default(), &mut b, Some(broker));
    assert_eq!(s.expect("producer").outcome, Outcome::Published);
    let messages = broker.ready(0);
    broker.purge().unwrap();
    messages
}

fn queue(broker: &MemoryBroker, messages: &[&Vec<u8>]) {
    let mut p = broker.publisher().unwrap();
    for m in messages {
        p.publish(0, (*m).clone()).unwrap();
    }
}

#[test]
fn duplicates_and_another_jobs_leftovers_are_acked_and_skipped() {
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let m = published(&store, &broker, (60, 10)); // pages 0..=5
    assert_eq!(m.len(), 6);
    let leftover = wire::encode("an-older-job", 3, None);
    // a restarted producer's copies of 0 and 1, and a leftover of another job, among the pages
    queue(&broker, &[&m[0], &m[1], &m[0], &m[2], &leftover, &m[1], &m[3], &m[2], &m[4], &m[5]]);
    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (60, 10), &table, &mut b, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::Completed);
    assert_exactly_once(&table, 60);
    assert_eq!((broker.delivered(), broker.acked()), (10, 10), "every delivery acknowledged, duplicates too");
}

#[test]
fn a_redelivered_page_already_committed_is_acked_and_skipped_after_a_lost_commit_reply() {
    // the 4th commit (iteration 2: -1, 0, 1, 2) lands, but the consumer hears an error and dies
    // before acknowledging; the next consumer gets pages 2.. again and must skip page 2
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let m = published(&store, &broker, (60, 10));
    queue(&broker, &m.iter().collect::<Vec<_>>());
    let plan =
        FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 4).kind(ErrorKind::Permanent).after_the_call()], 1);
    let mut dying = FaultyBackend::new(Box::new(store.handle()), plan.clone());
    let e = run(spec(Runner::Thread, Role::Consumer, 0), (60, 10), &table, &mut dying, Some(&broker)).unwrap_err();
    assert!(e.message().contains("injected fault"), "{e}");
    drop(dying);
    let job = store.jobs(PIPELINE).into_iter().next().unwrap();
    assert_eq!(store.handle().destination_cursor(&job.id).unwrap().unwrap().iteration, 2, "the commit landed");
    assert_eq!(broker.ready(0).len(), 4, "pages 2..=5 are back in the queue (2 was never acknowledged)");

    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (60, 10), &table, &mut b, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.resumed_after, s.records), (Outcome::Completed, Some(2), 30));
    assert_exactly_once(&table, 60);
}

#[test]
fn deliveries_are_acknowledged_only_after_the_commit_that_covers_them() {
    // a large buffer: the consumer flushes at max_unacked (4) pages; the 3rd commit (-1, pages
    // 0..=3, pages 4..=7) fails for good, so pages 4..=7 stay unacknowledged and come back
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 4), Table::default());
    let mut producer = store.handle();
    let plan = FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 3).kind(ErrorKind::Permanent)], 1);
    let mut consumer = FaultyBackend::new(Box::new(store.handle()), plan);
    std::thread::scope(|s| {
        let p =
            s.spawn(|| run(spec(Runner::Thread, Role::Producer, 0), (100, 10), &table, &mut producer, Some(&broker)));
        let e = run(spec(Runner::Thread, Role::Consumer, 1 << 30), (100, 10), &table, &mut consumer, Some(&broker))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
        assert_eq!(broker.acked(), 4, "only the 4 pages the 2nd commit covered are acknowledged");
        let back: Vec<i64> = broker.ready(0).iter().take(4).map(|m| wire::decode(m).unwrap().iteration).collect();
        assert_eq!(back, [4, 5, 6, 7], "the uncommitted pages are redelivered first, in order");
        // a restarted consumer finishes the job (the producer was waiting for commits)
        let mut b = store.handle();
        let r = run(spec(Runner::Thread, Role::Consumer, 1 << 30), (100, 10), &table, &mut b, Some(&broker)).unwrap();
        assert_eq!((r.outcome, r.resumed_after), (Outcome::Completed, Some(3)));
        assert_eq!(p.join().unwrap().unwrap().outcome, Outcome::Published);
    });
    assert_exactly_once(&table, 100);
}

#[test]
fn a_gap_fails_the_attempt_as_transient_and_commits_nothing_past_it() {
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let m = published(&store, &broker, (60, 10));
    queue(&broker, &[&m[0], &m[2], &m[3], &m[4], &m[5]]); // page 1 is missing
    let mut b = store.handle();
    let e = run(spec(Runner::Thread, Role::Consumer, 0), (60, 10), &table, &mut b, Some(&broker)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("iteration 1 is missing (iteration 2 arrived)"), "{e}");
    assert!(e.message().contains("giving up after 4 attempts"), "retried max_retries (3) times: {e}");
    let job = store.jobs(PIPELINE).into_iter().next().unwrap();
    assert_eq!(b.destination_cursor(&job.id).unwrap().unwrap().iteration, 0, "page 0 committed, nothing after");
    assert_eq!(table.ids(), (0..10).collect::<Vec<_>>());
    let waiting: Vec<i64> = broker.ready(0).iter().map(|m| wire::decode(m).unwrap().iteration).collect();
    assert_eq!(waiting, [2, 3, 4, 5], "the page past the gap is never acknowledged");
}

#[test]
fn the_thread_runner_recovers_from_a_lost_message_by_publishing_again_from_the_last_commit() {
    // the 3rd publish (page 2) is lost: the consumer sees page 3 where 2 belongs, the attempt
    // fails as transient, and the retry purges and republishes from the last commit
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 4), Table::default());
    broker.lose(3);
    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Both, 0), (100, 10), &table, &mut b, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.retries), (Outcome::Completed, 1));
    assert_exactly_once(&table, 100);
    assert!(broker.purges() >= 2, "each attempt purges: {}", broker.purges());
    assert_eq!(broker.deletes(), 1, "the completed job's queue is removed");
}

#[test]
fn the_thread_runner_recovers_from_a_lost_last_message_once_its_producer_is_done() {
    // the 10th publish (page 9, the last) is lost: no later page shows a gap, but the producer
    // thread finished, so after a grace period the attempt restarts from the last commit
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 4), Table::default());
    broker.lose(10);
    let mut b = store.handle();
    let s = run(spec(Runner::Thread, Role::Both, 0), (100, 10), &table, &mut b, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.retries), (Outcome::Completed, 1));
    assert_exactly_once(&table, 100);
}
