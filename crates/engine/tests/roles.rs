//! Roles over the in-memory broker: a producer-only run publishes the job's pages and returns
//! `Published` without completing the job; a consumer-only run attaches to that job, writes,
//! completes it and removes the queue. Roles need an external queue.

mod common;

use bizon_core::{wire, Backend, ErrorKind, JobStatus, QueueBroker};
use bizon_engine::{Outcome, Role, Runner};
use bizon_testkit::broker::MemoryBroker;
use bizon_testkit::fakes::Table;
use bizon_testkit::fakes::{MemoryDestination, NumberSource};
use bizon_testkit::faulty::{Call, Fault, FaultPlan, FaultyBackend};
use bizon_testkit::memory::MemoryBackend;
use common::*;

#[test]
fn a_producer_publishes_and_a_consumer_completes() {
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let mut p = store.handle();
    let s = run(spec(Runner::Thread, Role::Producer, 0), (95, 10), &table, &mut p, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.records), (Outcome::Published, 95));
    assert_eq!(job_status(&store), JobStatus::Running, "the consumers complete the job, not the producer");
    let iterations: Vec<i64> = broker.ready(0).iter().map(|m| wire::decode(m).unwrap().iteration).collect();
    assert_eq!(iterations, (0..10).collect::<Vec<_>>(), "every page published in order");
    assert!(table.ids().is_empty(), "the producer writes nothing");
    let job = store.jobs(PIPELINE).into_iter().next().unwrap();
    assert_eq!(store.source_cursor(&job.id), Some((9, serde_json::Value::Null)), "source cursor saved at the end");

    let mut c = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (95, 10), &table, &mut c, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.job_id.as_str(), s.records), (Outcome::Completed, job.id.as_str(), 95));
    assert_eq!(job_status(&store), JobStatus::Succeeded);
    assert_exactly_once(&table, 95);
    assert_eq!(broker.deletes(), 1, "the consumer that completes the job removes the queue");
}

#[test]
fn a_producer_stopped_at_max_iterations_publishes_an_end_marker() {
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let mut producer_spec = spec(Runner::Thread, Role::Producer, 0);
    producer_spec.max_iterations = Some(3);
    let mut p = store.handle();
    assert_eq!(run(producer_spec, (100, 10), &table, &mut p, Some(&broker)).unwrap().outcome, Outcome::Published);
    let last = wire::decode(broker.ready(0).last().unwrap()).unwrap();
    assert_eq!((last.iteration, last.page.is_none()), (3, true), "the end: 3 is the first iteration not produced");
    let mut c = store.handle();
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (100, 10), &table, &mut c, Some(&broker)).unwrap();
    assert_eq!(s.outcome, Outcome::Completed);
    assert_eq!(table.ids(), (0..30).collect::<Vec<_>>());
}

#[test]
fn a_restarted_producer_publishes_from_the_consumers_commit() {
    // the consumer committed pages 0..=3 of the first producer's run; a new producer (a restart
    // of the process) publishes again from page 4, not from the start
    let (store, broker, table) = (MemoryBackend::new(), MemoryBroker::new(1, 64), Table::default());
    let mut p = store.handle();
    run(spec(Runner::Thread, Role::Producer, 0), (100, 10), &table, &mut p, Some(&broker)).unwrap();
    let job = store.jobs(PIPELINE).into_iter().next().unwrap();
    let mut c = store.handle();
    // a consumer whose backend refuses its 6th commit (page 4) for good
    let plan = FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 6).kind(ErrorKind::Permanent)], 1);
    let mut dying = FaultyBackend::new(Box::new(store.handle()), plan);
    run(spec(Runner::Thread, Role::Consumer, 0), (100, 10), &table, &mut dying, Some(&broker)).unwrap_err();
    drop(dying);
    let committed = c.destination_cursor(&job.id).unwrap().unwrap().iteration;
    assert_eq!(committed, 3, "commits -1, 0, 1, 2, 3 landed; the 6th failed");
    broker.purge().unwrap();
    let mut p = store.handle();
    let mut source = NumberSource::new(100, 10);
    let mut destination = MemoryDestination::new(&table);
    let s =
        run_with(spec(Runner::Thread, Role::Producer, 0), &mut source, &mut destination, &mut p, Some(&broker), "", 1)
            .unwrap();
    assert_eq!(s.outcome, Outcome::Published);
    assert_eq!(source.reads, 6, "pages 4..=9 read again, not 0..=3");
    let first: i64 = wire::decode(&broker.ready(0)[0]).unwrap().iteration;
    assert_eq!(first, 4);
    let s = run(spec(Runner::Thread, Role::Consumer, 0), (100, 10), &table, &mut c, Some(&broker)).unwrap();
    assert_eq!((s.outcome, s.resumed_after), (Outcome::Completed, Some(3)));
    assert_exactly_once(&table, 100);
}

#[test]
fn roles_need_an_external_queue() {
    let (store, table) = (MemoryBackend::new(), Table::default());
    for role in [Role::Producer, Role::Consumer] {
        let mut b = store.handle();
        let e = run(spec(Runner::Thread, role, 0), (10, 5), &table, &mut b, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("needs an external queue"), "{e}");
    }
}
