//! The destination conformance suite: write, resume after a simulated crash, idempotence of a
//! re-delivered batch, empty batch. A connector's tests call [`run_suite`] with a factory and a
//! reader of what the target durably holds.

use bizon_core::config::SyncMode;
use bizon_core::{BatchMeta, Destination, DestinationContext, DestinationCursor, Json};

use crate::fixtures::batch;

/// How a suite builds the destination under test and reads its target back.
pub trait Harness {
    /// A fresh instance pointing at the same target (as a restarted process would build it).
    fn make(&self) -> Box<dyn Destination>;
    /// Record ids visible in the published target, in order.
    fn published_ids(&self) -> Vec<u64>;
}

fn ctx(job: &str, mode: SyncMode) -> DestinationContext {
    DestinationContext {
        pipeline: "suite".into(),
        job_id: job.into(),
        source: "suite".into(),
        stream: "records".into(),
        sync_mode: mode,
        lane: None,
    }
}

/// The cursor the engine would commit after `iteration` (`records` in total).
pub fn next_cursor(iteration: i64, records: u64) -> DestinationCursor {
    DestinationCursor {
        iteration,
        pagination: serde_json::json!({"offset": records}),
        token: Json::Null,
        records_written: records,
        bytes_written: 0,
        watermark: None,
        done: false,
    }
}

fn meta(iteration: i64) -> BatchMeta {
    BatchMeta { iteration, extracted_at: 1, loaded_at: 2, job_hash: 42 }
}

/// Write 3 batches with flushes, publish: the target holds exactly those records in order.
pub fn write_and_publish(h: &dyn Harness, mode: SyncMode) {
    let mut d = h.make();
    d.open(&ctx("j1", mode), None).expect("open");
    for i in 0..3 {
        d.write(&batch(i * 10, 10), &meta(i as i64)).expect("write");
        d.flush(&next_cursor(i as i64, (i + 1) * 10)).expect("flush");
    }
    d.finalize().expect("finalize");
    assert_eq!(h.published_ids(), (0..30).collect::<Vec<_>>(), "published content after a clean run ({mode:?})");
}

/// Commit 2 batches, write a 3rd without flushing, "crash" (drop), resume from the committed
/// token and re-deliver the 3rd: it lands exactly once.
pub fn resume_after_crash_and_redelivery(h: &dyn Harness, mode: SyncMode) {
    let mut d = h.make();
    d.open(&ctx("j2", mode), None).expect("open");
    d.write(&batch(0, 10), &meta(0)).expect("write");
    d.write(&batch(10, 10), &meta(1)).expect("write");
    let committed: Json = d.flush(&next_cursor(1, 20)).expect("flush");
    d.write(&batch(20, 10), &meta(2)).expect("write uncommitted");
    drop(d); // crash: the uncommitted batch may or may not have reached the target

    let mut d = h.make();
    d.open(&ctx("j2", mode), Some(&committed)).expect("resume");
    d.write(&batch(20, 10), &meta(2)).expect("re-deliver");
    d.flush(&next_cursor(2, 30)).expect("flush");
    d.finalize().expect("finalize");
    assert_eq!(h.published_ids(), (0..30).collect::<Vec<_>>(), "resume must drop the uncommitted tail ({mode:?})");
}

/// Empty batches are accepted and change nothing.
pub fn empty_batch(h: &dyn Harness, mode: SyncMode) {
    let mut d = h.make();
    d.open(&ctx("j4", mode), None).expect("open");
    d.write(&batch(0, 0), &meta(0)).expect("empty write");
    d.flush(&next_cursor(0, 0)).expect("flush");
    d.write(&batch(0, 5), &meta(1)).expect("write");
    d.write(&batch(0, 0), &meta(2)).expect("empty write");
    d.flush(&next_cursor(2, 5)).expect("flush");
    d.finalize().expect("finalize");
    let ids = h.published_ids();
    assert_eq!(&ids[ids.len() - 5..], &[0, 1, 2, 3, 4], "empty batches must not add rows ({mode:?})");
}

/// Finalize twice (a crash after publishing, before the job completed): same result.
pub fn finalize_is_idempotent(h: &dyn Harness, mode: SyncMode) {
    let mut d = h.make();
    d.open(&ctx("j5", mode), None).expect("open");
    d.write(&batch(0, 7), &meta(0)).expect("write");
    let token = d.flush(&next_cursor(0, 7)).expect("flush");
    d.finalize().expect("finalize");
    let before = h.published_ids();
    let mut d = h.make();
    d.open(&ctx("j5", mode), Some(&token)).expect("reopen after publish");
    d.finalize().expect("finalize again");
    assert_eq!(h.published_ids(), before, "a second finalize must not change the target ({mode:?})");
}

/// Every check, for a full-refresh target (each check starts from a fresh target).
pub fn run_suite(make_harness: &dyn Fn() -> Box<dyn Harness>, mode: SyncMode) {
    write_and_publish(make_harness().as_ref(), mode);
    resume_after_crash_and_redelivery(make_harness().as_ref(), mode);
    empty_batch(make_harness().as_ref(), mode);
    finalize_is_idempotent(make_harness().as_ref(), mode);
}

/// For destinations that store nothing (logger, null): the same call sequence — write, flush,
/// crash and resume from the committed token, re-delivery, empty batches, finalize twice —
/// must succeed. Returns the tokens of the last flush of each phase for connector-specific checks.
pub fn run_smoke_suite(make: &dyn Fn() -> Box<dyn Destination>, mode: SyncMode) -> (Json, Json) {
    let mut d = make();
    d.open(&ctx("s1", mode), None).expect("open");
    d.write(&batch(0, 10), &meta(0)).expect("write");
    d.write(&batch(10, 0), &meta(1)).expect("empty write");
    let committed = d.flush(&next_cursor(1, 10)).expect("flush");
    d.write(&batch(10, 10), &meta(2)).expect("uncommitted write");
    drop(d);
    let mut d = make();
    d.open(&ctx("s1", mode), Some(&committed)).expect("resume");
    d.write(&batch(10, 10), &meta(2)).expect("re-deliver");
    let last = d.flush(&next_cursor(2, 20)).expect("flush");
    d.finalize().expect("finalize");
    d.finalize().expect("finalize again");
    (committed, last)
}
