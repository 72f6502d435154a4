//! Resume: after a transient backend failure the attempt restarts from the last commit in the
//! same process; after a failure that ends the run, a new `Pipeline` on the same backend (and
//! broker) — a restarted process — resumes the job from its destination cursor. Either way every
//! record lands exactly once.

mod common;

use bizon_core::{ErrorKind, JobStatus, QueueBroker};
use bizon_engine::{Outcome, Role, Runner};
use bizon_testkit::broker::MemoryBroker;
use bizon_testkit::fakes::{MemoryDestination, NumberSource, Table};
use bizon_testkit::faulty::{Call, Fault, FaultPlan, FaultyBackend};
use bizon_testkit::memory::MemoryBackend;
use common::*;

/// The three ways pages reach the writer.
fn runners() -> Vec<(&'static str, Runner, Option<MemoryBroker>)> {
    vec![
        ("stream", Runner::Stream, None),
        ("thread", Runner::Thread, None),
        ("thread over a broker", Runner::Thread, Some(MemoryBroker::new(1, 4))),
    ]
}

#[test]
fn a_transient_commit_failure_retries_from_the_last_commit() {
    for (name, runner, broker) in runners() {
        let (store, table) = (MemoryBackend::new(), Table::default());
        let plan = FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 4)], 1);
        let mut b = FaultyBackend::new(Box::new(store.handle()), plan.clone());
        let broker = broker.as_ref().map(|b| b as &dyn QueueBroker);
        let s = run(spec(runner, Role::Both, 0), (100, 10), &table, &mut b, broker).unwrap();
        assert_eq!((s.outcome, s.retries, s.records), (Outcome::Completed, 1, 100), "{name}");
        assert_eq!(plan.fired(Call::CommitDestinationCursor), 1, "{name}");
        assert_exactly_once(&table, 100);
    }
}

#[test]
fn a_lost_commit_reply_resumes_after_the_commit_that_landed() {
    for (name, runner, broker) in runners() {
        let (store, table) = (MemoryBackend::new(), Table::default());
        let plan = FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 4).after_the_call()], 1);
        let mut b = FaultyBackend::new(Box::new(store.handle()), plan);
        let broker = broker.as_ref().map(|b| b as &dyn QueueBroker);
        let s = run(spec(runner, Role::Both, 0), (100, 10), &table, &mut b, broker).unwrap();
        assert_eq!((s.outcome, s.retries), (Outcome::Completed, 1), "{name}");
        assert_exactly_once(&table, 100);
    }
}

#[test]
fn transient_failures_at_every_backend_call_of_an_attempt_are_retried() {
    // (call, which one): the fence check before the first flush, the attempt's cursor read, a
    // source cursor save, the completion after finalize (the retry finalizes again: idempotent)
    let calls =
        [(Call::CheckFence, 2), (Call::DestinationCursor, 1), (Call::SaveSourceCursor, 2), (Call::CompleteJob, 1)];
    for (call, nth) in calls {
        for (name, runner, broker) in runners() {
            let (store, table) = (MemoryBackend::new(), Table::default());
            let plan = FaultPlan::new([Fault::nth(call, nth)], 1);
            let mut b = FaultyBackend::new(Box::new(store.handle()), plan.clone());
            let broker = broker.as_ref().map(|b| b as &dyn QueueBroker);
            let s = run(spec(runner, Role::Both, 0), (100, 10), &table, &mut b, broker).unwrap();
            assert_eq!(plan.fired(call), 1, "{call:?} {name}");
            assert_eq!((s.outcome, s.retries), (Outcome::Completed, 1), "{call:?} {name}");
            assert_exactly_once(&table, 100);
        }
    }
}

#[test]
fn too_many_transient_failures_in_a_row_fail_the_run_and_a_permanent_one_is_not_retried() {
    let (store, table) = (MemoryBackend::new(), Table::default());
    let plan = FaultPlan::new([Fault::from(Call::CommitDestinationCursor, 3)], 1);
    let mut b = FaultyBackend::new(Box::new(store.handle()), plan.clone());
    let e = run(spec(Runner::Thread, Role::Both, 0), (100, 10), &table, &mut b, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message().contains("giving up after 4 attempts"), "{e}");
    assert_eq!(plan.fired(Call::CommitDestinationCursor), 4, "1 attempt + 3 retries");
    assert_eq!(job_status(&store), JobStatus::Failed, "failed jobs resume on the next run");

    let (store, table) = (MemoryBackend::new(), Table::default());
    let plan = FaultPlan::new([Fault::nth(Call::CommitDestinationCursor, 3).kind(ErrorKind::Permanent)], 1);
    let mut b = FaultyBackend::new(Box::new(store.handle()), plan.clone());
    let e = run(spec(Runner::Thread, Role::Both, 0), (100, 10), &table, &mut b, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert_eq!(plan.calls(Call::CommitDestinationCursor), 3, "no retry");
}

#[test]
fn a_restart_resumes_from_the_destination_cursor_exactly_once() {
    for (name, runner, broker) in runners() {
        let (store, table) = (MemoryBackend::new(), Table::default());
        // the 5th commit (-1, 0, 1, 2, then page 3) fails for good: the run ends after page 2
        let plan = FaultPlan::new([Fault::from(Call::CommitDestinationCursor, 5).kind(ErrorKind::Permanent)], 1);
        let mut dying = FaultyBackend::new(Box::new(store.handle()), plan);
        let q = broker.as_ref().map(|b| b as &dyn QueueBroker);
        run(spec(runner, Role::Both, 0), (100, 10), &table, &mut dying, q).unwrap_err();
        drop(dying); // the process is gone, its lock with it
        assert_eq!(job_status(&store), JobStatus::Failed, "{name}");

        // a new process: new source, destination and backend handle on the same stores
        let mut source = NumberSource::new(100, 10);
        let mut destination = MemoryDestination::new(&table);
        let mut b = store.handle();
        let s = run_with(spec(runner, Role::Both, 0), &mut source, &mut destination, &mut b, q, "", 1).unwrap();
        assert_eq!(
            (s.outcome, s.resumed_after, s.records, s.job_records),
            (Outcome::Completed, Some(2), 70, 100),
            "{name}"
        );
        assert_eq!(source.reads, 7, "{name}: the source restarts after the committed page 2");
        assert_exactly_once(&table, 100);
    }
}

#[test]
fn a_restart_after_failpoints_at_every_durability_boundary_is_exactly_once() {
    for point in bizon_engine::failpoints::POINTS {
        for (name, runner, broker) in runners() {
            let (store, table) = (MemoryBackend::new(), Table::default());
            let q = broker.as_ref().map(|b| b as &dyn QueueBroker);
            let mut runs = 0;
            loop {
                runs += 1;
                assert!(runs < 50, "{point} {name}: no run completed");
                let mut source = NumberSource::new(100, 10);
                let mut destination = MemoryDestination::new(&table);
                let mut b = store.handle();
                let mut s = spec(runner, Role::Both, 25);
                s.max_retries = 1;
                let faults = format!("{point}=error@0.3");
                if run_with(s, &mut source, &mut destination, &mut b, q, &faults, runs).is_ok() {
                    break;
                }
            }
            assert_exactly_once(&table, 100);
        }
    }
}
