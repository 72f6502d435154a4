//! The backend conformance suite: what the engine relies on from every backend — jobs, chained
//! destination cursors (compare-and-swap on the cursor a commit follows), watermarks, one lock
//! per pipeline and fencing of a writer whose lock was taken over.
//!
//! A backend's tests call [`run_suite`] with a factory: each call returns a new handle onto the
//! **same** store, as a restarted process (or a second host) would open it. Every check uses
//! pipelines and jobs of its own, so they share that store. A store a second handle cannot
//! reach (SQLite in memory) runs [`run_single_handle_suite`], the checks that need one handle.

use bizon_core::config::SyncMode;
use bizon_core::{Backend, DestinationCursor, Error, ErrorKind, Job, JobStatus, Json, StreamKey};
use serde_json::json;

/// Opens a handle onto the store under test.
pub type Make<'a> = &'a dyn Fn() -> Box<dyn Backend>;

pub fn key(pipeline: &str) -> StreamKey {
    StreamKey { pipeline: pipeline.into(), source: "generator".into(), stream: "records".into() }
}

/// A running incremental job of `pipeline`, created at `created_at`.
pub fn job(id: &str, pipeline: &str, created_at: i64) -> Job {
    Job {
        id: id.into(),
        key: key(pipeline),
        sync_mode: SyncMode::Incremental,
        reset: false,
        status: JobStatus::Running,
        since: None,
        created_at,
        updated_at: created_at,
        pid: std::process::id(),
        total_records: None,
        error: None,
    }
}

/// The cursor a flush after `iteration` commits (every field set, so a read back checks them all).
pub fn cursor(iteration: i64) -> DestinationCursor {
    DestinationCursor {
        iteration,
        pagination: json!({"offset": iteration + 1}),
        token: json!({"offset": (iteration + 1) * 100}),
        records_written: (iteration + 1) as u64 * 10,
        bytes_written: (iteration + 1) as u64 * 1000,
        watermark: Some(json!(format!("2024-01-{:02}", iteration + 2))),
        done: false,
    }
}

fn refused(r: bizon_core::Result<()>, what: &str) -> Error {
    match r {
        Ok(()) => panic!("{what}: must be refused"),
        Err(e) => e,
    }
}

fn status(b: &mut dyn Backend, pipeline: &str, job_id: &str) -> JobStatus {
    let jobs = b.list_jobs(pipeline, 100).expect("list_jobs");
    jobs.iter().find(|(j, _)| j.id == job_id).unwrap_or_else(|| panic!("job {job_id} not listed")).0.status
}

/// Jobs: creation is idempotent, status and totals are stored, `list_jobs` is newest first with
/// the last cursor, and `resumable_job` picks the newest running / stopped / failed job.
pub fn jobs(b: &mut dyn Backend) {
    let p = "suite-jobs";
    b.create_job(&job("jobs-1", p, 1)).expect("create");
    let mut again = job("jobs-1", p, 1);
    again.status = JobStatus::Failed;
    b.create_job(&again).expect("creating a recorded job again is not an error");
    assert_eq!(status(b, p, "jobs-1"), JobStatus::Running, "a recorded job is left as it is");

    b.set_job_total("jobs-1", Some(42)).expect("set_job_total");
    b.set_job_status("jobs-1", JobStatus::Failed, Some("boom")).expect("set_job_status");
    let listed = b.list_jobs(p, 10).expect("list_jobs");
    let (j, c) = &listed[0];
    assert_eq!((j.id.as_str(), j.status, j.total_records), ("jobs-1", JobStatus::Failed, Some(42)));
    assert_eq!(j.error.as_deref(), Some("boom"));
    assert_eq!(j.key, key(p));
    assert!(c.is_none(), "no cursor committed yet");
    assert_eq!(b.resumable_job(&key(p)).expect("resumable").map(|j| j.id), Some("jobs-1".into()), "failed resumes");

    b.create_job(&job("jobs-2", p, 2)).expect("create");
    b.set_job_status("jobs-2", JobStatus::Stopped, Some("stopped by signal")).expect("stop");
    b.create_job(&job("jobs-3", p, 3)).expect("create");
    b.set_job_status("jobs-3", JobStatus::Canceled, None).expect("cancel");
    b.create_job(&job("jobs-4", p, 4)).expect("create");
    b.complete_job("jobs-4", None).expect("complete");
    let resumable = b.resumable_job(&key(p)).expect("resumable").map(|j| j.id);
    assert_eq!(resumable.as_deref(), Some("jobs-2"), "the newest unfinished job (not canceled, not succeeded)");
    let other = StreamKey { stream: "other".into(), ..key(p) };
    assert!(b.resumable_job(&other).expect("resumable").is_none(), "jobs are per stream");

    b.commit_destination_cursor("jobs-2", None, &cursor(-1)).expect("start");
    let ids: Vec<String> = b.list_jobs(p, 10).expect("list").into_iter().map(|(j, _)| j.id).collect();
    assert_eq!(ids, ["jobs-4", "jobs-3", "jobs-2", "jobs-1"], "newest first");
    assert_eq!(b.list_jobs(p, 2).expect("list").len(), 2, "limit");
    let with_cursor = b.list_jobs(p, 10).expect("list").into_iter().find(|(j, _)| j.id == "jobs-2");
    assert_eq!(with_cursor.and_then(|(_, c)| c), Some(cursor(-1)), "listed with its cursor");
}

/// Cursors: a chain starts at -1, each commit follows the stored one (covering several pages or
/// lane iterations at once), the same iteration is committed once more to mark it done, and
/// what is read back is exactly what was committed. Lanes are chains of their own.
pub fn cursor_chain(b: &mut dyn Backend) {
    let p = "suite-cursors";
    b.create_job(&job("cursors", p, 1)).expect("create");
    assert_eq!(b.destination_cursor("cursors").expect("read"), None);
    b.commit_destination_cursor("cursors", None, &cursor(-1)).expect("the start at -1");
    assert_eq!(b.destination_cursor("cursors").expect("read"), Some(cursor(-1)));
    b.commit_destination_cursor("cursors", Some(-1), &cursor(0)).expect("0 after -1");
    b.commit_destination_cursor("cursors", Some(0), &cursor(4)).expect("a flush covering pages 1..=4");
    assert_eq!(b.destination_cursor("cursors").expect("read"), Some(cursor(4)));
    let done = DestinationCursor { done: true, ..cursor(4) };
    b.commit_destination_cursor("cursors", Some(4), &done).expect("the same iteration, marked done");
    assert_eq!(b.destination_cursor("cursors").expect("read"), Some(done.clone()));
    let e = refused(b.commit_destination_cursor("cursors", Some(4), &done), "done twice");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");

    // lanes: iteration i goes to lane i % 2, each lane commits its own chain
    for lane in ["cursors~0", "cursors~1"] {
        b.create_job(&job(lane, p, 2)).expect("lane job");
        b.commit_destination_cursor(lane, None, &cursor(-1)).expect("lane start");
    }
    b.commit_destination_cursor("cursors~0", Some(-1), &cursor(0)).expect("lane 0");
    b.commit_destination_cursor("cursors~1", Some(-1), &cursor(1)).expect("lane 1");
    b.commit_destination_cursor("cursors~0", Some(0), &cursor(2)).expect("lane 0");
    assert_eq!(b.destination_cursor("cursors~0").expect("read"), Some(cursor(2)));
    assert_eq!(b.destination_cursor("cursors~1").expect("read"), Some(cursor(1)));
    // several chains in one read: in the order asked, `None` for one never started
    let ids = ["cursors~1", "cursors~9", "cursors~0"].map(String::from);
    let several = b.destination_cursors(&ids).expect("read several");
    assert_eq!(several, [Some(cursor(1)), None, Some(cursor(2))]);
    b.save_source_cursor("cursors", 7, &json!({"offset": 8})).expect("source cursor");
    assert_eq!(b.destination_cursor("cursors").expect("read"), Some(done), "the source cursor is another chain");
}

/// Refusals: a gap, a fork, a lower iteration, a second start and a chain starting past -1 are
/// refused with an error naming the job and both iterations, and nothing is stored.
pub fn cursor_refusals(b: &mut dyn Backend) {
    let p = "suite-refusals";
    let j = "refusals";
    b.create_job(&job(j, p, 1)).expect("create");
    let e = refused(b.commit_destination_cursor(j, None, &cursor(3)), "a chain starting at 3");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(e.message().contains(j) && e.message().contains("iteration 3"), "{e}");
    b.commit_destination_cursor(j, None, &cursor(-1)).expect("start");
    b.commit_destination_cursor(j, Some(-1), &cursor(2)).expect("2 after -1");

    // a gap: the writer believes 5 is stored, the backend has 2
    let e = refused(b.commit_destination_cursor(j, Some(5), &cursor(6)), "a gap");
    assert_eq!(e.kind(), ErrorKind::Internal, "a gap is a broken invariant, not retried: {e}");
    let m = e.message();
    assert!(m.contains("gap") && m.contains(j) && m.contains("iteration 5") && m.contains("iteration 2"), "{m}");

    // a fork: another writer also built on -1 and committed 2 first
    let e = refused(b.commit_destination_cursor(j, Some(-1), &cursor(4)), "a fork");
    assert_eq!(e.kind(), ErrorKind::Permanent, "a fork by another writer is not transient: {e}");
    let m = e.message();
    assert!(m.contains("fork") && m.contains(j) && m.contains("iteration -1") && m.contains("iteration 2"), "{m}");

    // a second start of the same chain is a fork too
    let e = refused(b.commit_destination_cursor(j, None, &cursor(-1)), "a second start");
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(e.message().contains("fork") && e.message().contains("iteration 2"), "{e}");

    // a lower iteration (and the same one, not done)
    let e = refused(b.commit_destination_cursor(j, Some(2), &cursor(1)), "a lower iteration");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    let m = e.message();
    assert!(m.contains("does not chain") && m.contains("iteration 1") && m.contains("iteration 2"), "{m}");
    let e = refused(b.commit_destination_cursor(j, Some(2), &cursor(2)), "the same iteration again");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");

    assert_eq!(b.destination_cursor(j).expect("read"), Some(cursor(2)), "refused commits store nothing");
    b.commit_destination_cursor(j, Some(2), &cursor(3)).expect("the chain goes on from the stored cursor");
}

/// Recovery: the named jump to what a transactional destination holds is allowed from the
/// stored cursor (or from nothing), but not from a stale view nor backwards.
pub fn cursor_recovery(b: &mut dyn Backend) {
    let p = "suite-recovery";
    b.create_job(&job("recovery-a", p, 1)).expect("create");
    b.recover_destination_cursor("recovery-a", None, &cursor(7)).expect("recovery onto nothing stored");
    assert_eq!(b.destination_cursor("recovery-a").expect("read"), Some(cursor(7)));

    b.create_job(&job("recovery-b", p, 2)).expect("create");
    b.commit_destination_cursor("recovery-b", None, &cursor(-1)).expect("start");
    b.commit_destination_cursor("recovery-b", Some(-1), &cursor(1)).expect("1");
    b.recover_destination_cursor("recovery-b", Some(1), &cursor(9)).expect("a jump from 1 to 9");
    let done = DestinationCursor { done: true, ..cursor(9) };
    b.recover_destination_cursor("recovery-b", Some(9), &done).expect("the same iteration, now done");
    let e = refused(b.recover_destination_cursor("recovery-b", Some(1), &cursor(12)), "a recovery from a stale view");
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(e.message().contains("iteration 1") && e.message().contains("iteration 9"), "{e}");
    let e = refused(b.recover_destination_cursor("recovery-b", Some(9), &cursor(5)), "a recovery backwards");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert_eq!(b.destination_cursor("recovery-b").expect("read"), Some(done));
    b.commit_destination_cursor("recovery-b", Some(9), &cursor(10)).expect("commits chain on after a recovery");
}

/// Watermarks: completing a job marks it succeeded and makes its watermark the stream's (a job
/// completed without one keeps the stream's); a reset forgets it and cancels unfinished jobs.
pub fn watermarks(b: &mut dyn Backend) {
    let p = "suite-watermarks";
    assert_eq!(b.stream_watermark(&key(p)).expect("read"), None::<Json>);
    b.create_job(&job("wm-1", p, 1)).expect("create");
    b.complete_job("wm-1", Some(&json!("2024-01-02"))).expect("complete");
    assert_eq!(status(b, p, "wm-1"), JobStatus::Succeeded);
    assert_eq!(b.stream_watermark(&key(p)).expect("read"), Some(json!("2024-01-02")));
    assert!(b.resumable_job(&key(p)).expect("resumable").is_none(), "a succeeded job does not resume");
    b.create_job(&job("wm-2", p, 2)).expect("create");
    b.complete_job("wm-2", None).expect("complete without a watermark");
    assert_eq!(b.stream_watermark(&key(p)).expect("read"), Some(json!("2024-01-02")), "kept");
    let other = StreamKey { stream: "other".into(), ..key(p) };
    assert_eq!(b.stream_watermark(&other).expect("read"), None::<Json>, "watermarks are per stream");

    b.create_job(&job("wm-3", p, 3)).expect("create");
    b.create_job(&job("wm-4", p, 4)).expect("create");
    b.set_job_status("wm-4", JobStatus::Failed, Some("boom")).expect("fail");
    assert_eq!(b.reset_stream(&key(p)).expect("reset"), 2, "both unfinished jobs canceled");
    assert_eq!(b.stream_watermark(&key(p)).expect("read"), None::<Json>, "forgotten");
    assert!(b.resumable_job(&key(p)).expect("resumable").is_none());
    assert_eq!(status(b, p, "wm-3"), JobStatus::Canceled);
    assert_eq!(status(b, p, "wm-1"), JobStatus::Succeeded, "finished jobs stay as they are");
    assert_eq!(b.reset_stream(&key(p)).expect("reset"), 0);
}

/// Persistence: a new handle reads what another committed.
pub fn reopen(make: Make<'_>) {
    let p = "suite-reopen";
    {
        let mut b = make();
        b.create_job(&job("reopen", p, 1)).expect("create");
        b.commit_destination_cursor("reopen", None, &cursor(-1)).expect("start");
        b.commit_destination_cursor("reopen", Some(-1), &cursor(3)).expect("3");
    }
    let mut b = make();
    assert_eq!(b.destination_cursor("reopen").expect("read"), Some(cursor(3)));
    assert_eq!(b.resumable_job(&key(p)).expect("resumable").map(|j| j.id), Some("reopen".into()));
    b.commit_destination_cursor("reopen", Some(3), &cursor(4)).expect("the chain goes on in a new handle");
}

/// Locks: a second lock of the same pipeline fails naming the running job and the holder's pid;
/// other pipelines are independent; the lock is released when its guard is dropped.
pub fn locks(make: Make<'_>) {
    let p = "suite-locks";
    let (mut a, mut b) = (make(), make());
    a.create_job(&job("locks-running", p, 1)).expect("create");
    let guard = a.lock_pipeline(&key(p)).expect("first lock");
    let e = b.lock_pipeline(&key(p)).err().expect("a second lock of the same pipeline must fail");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let m = e.message();
    assert!(m.contains("already running") && m.contains("job locks-running"), "{m}");
    assert!(m.contains(&format!("pid {}", std::process::id())), "names the holder's pid: {m}");
    let other = b.lock_pipeline(&key("suite-locks-other")).expect("another pipeline is independent");
    // `lock_held` sees the lock from any handle without taking it (a backend may not tell)
    if let Some(held) = b.lock_held(&key(p)).expect("lock_held") {
        assert!(held, "held by the other handle");
        assert_eq!(a.lock_held(&key(p)).expect("lock_held"), Some(true), "and by its own handle");
        assert_eq!(b.lock_held(&key("suite-locks-free")).expect("lock_held"), Some(false), "a free lock");
    }
    drop(guard);
    if let Some(held) = b.lock_held(&key(p)).expect("lock_held") {
        assert!(!held, "released on drop");
    }
    let again = b.lock_pipeline(&key(p)).expect("released on drop");
    drop((again, other));
}

/// Fencing: a handle whose lock was taken over (here: dropped, then taken by another handle) is
/// refused in every commit and job update, with an error naming both tokens; the new holder
/// goes on from the stored cursor.
pub fn fencing(make: Make<'_>) {
    let p = "suite-fencing";
    let j = "fencing";
    let mut stale = make();
    let guard = stale.lock_pipeline(&key(p)).expect("lock");
    stale.create_job(&job(j, p, 1)).expect("create");
    stale.commit_destination_cursor(j, None, &cursor(-1)).expect("start");
    stale.commit_destination_cursor(j, Some(-1), &cursor(1)).expect("1");
    stale.check_fence().expect("the holder is not fenced");
    drop(guard); // the lock is lost (a takeover after the lease, a lock file removed…)

    let mut holder = make();
    let _lock = holder.lock_pipeline(&key(p)).expect("a new holder");
    let check = |e: Error, what: &str| {
        assert_eq!(e.kind(), ErrorKind::Permanent, "{what}: {e}");
        let m = e.message();
        assert!(m.contains("fenced") && m.contains(p), "{what}: {m}");
        let tokens = m.split("fencing token ").nth(1).unwrap_or_default();
        let (theirs, ours) = tokens.split_once(" > ours ").unwrap_or_else(|| panic!("{what}: names both tokens: {m}"));
        let ours: String = ours.chars().take_while(char::is_ascii_digit).collect();
        let (theirs, ours): (i64, i64) = (theirs.parse().expect("token"), ours.parse().expect("token"));
        assert!(theirs > ours, "{what}: {m}");
    };
    check(refused(stale.check_fence(), "check_fence"), "check_fence");
    check(refused(stale.commit_destination_cursor(j, Some(1), &cursor(2)), "a stale commit"), "a stale commit");
    check(refused(stale.recover_destination_cursor(j, Some(1), &cursor(5)), "a stale recovery"), "a stale recovery");
    check(refused(stale.set_job_status(j, JobStatus::Failed, Some("stale")), "a stale status"), "a stale status");
    check(refused(stale.complete_job(j, None), "a stale completion"), "a stale completion");
    assert_eq!(holder.destination_cursor(j).expect("read"), Some(cursor(1)), "nothing stored by the stale handle");
    assert_eq!(status(holder.as_mut(), p, j), JobStatus::Running);

    holder.check_fence().expect("the new holder is not fenced");
    holder.commit_destination_cursor(j, Some(1), &cursor(2)).expect("the new holder chains on");
    holder.complete_job(j, None).expect("and completes");
}

/// The checks one handle can run (a store no second handle reaches: SQLite in memory).
pub fn run_single_handle_suite(make: Make<'_>) {
    let mut b = make();
    jobs(b.as_mut());
    cursor_chain(b.as_mut());
    cursor_refusals(b.as_mut());
    cursor_recovery(b.as_mut());
    watermarks(b.as_mut());
}

/// Every check; `make` opens handles onto one shared store.
pub fn run_suite(make: Make<'_>) {
    run_single_handle_suite(make);
    reopen(make);
    locks(make);
    fencing(make);
}
