use bizon_core::config::SyncMode;
use bizon_core::{Backend, DestinationCursor, ErrorKind, Job, JobStatus, Json, StreamKey};
use bizon_testkit::fixtures::TempDir;
use serde_json::json;

use super::SqliteBackend;

fn key() -> StreamKey {
    StreamKey { pipeline: "p".into(), source: "generator".into(), stream: "records".into() }
}

fn job(id: &str) -> Job {
    Job {
        id: id.into(),
        key: key(),
        sync_mode: SyncMode::Incremental,
        reset: false,
        status: JobStatus::Running,
        since: None,
        created_at: 1,
        updated_at: 1,
        pid: 1,
        total_records: None,
        error: None,
    }
}

fn cursor(iteration: i64) -> DestinationCursor {
    DestinationCursor {
        iteration,
        pagination: json!({"offset": iteration}),
        token: json!({"offset": iteration * 10}),
        records_written: iteration as u64,
        bytes_written: 0,
        watermark: Some(json!(iteration)),
        done: false,
    }
}

#[test]
fn cursors_chain_forward_only_and_survive_reopen() {
    let dir = TempDir::new("sqlite-chain");
    let path = dir.join("state.db");
    {
        let mut b = SqliteBackend::open(path.clone()).unwrap();
        b.create_job(&job("j1")).unwrap();
        b.commit_destination_cursor("j1", None, &cursor(-1)).unwrap();
        b.commit_destination_cursor("j1", Some(-1), &cursor(3)).unwrap();
        let e = b.commit_destination_cursor("j1", Some(3), &cursor(2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.message().contains("does not chain"), "{}", e.message());
    }
    let mut b = SqliteBackend::open(path).unwrap();
    assert_eq!(b.destination_cursor("j1").unwrap(), Some(cursor(3)));
    assert_eq!(b.resumable_job(&key()).unwrap().map(|j| j.id), Some("j1".to_string()));
}

#[test]
fn completion_sets_the_watermark_and_reset_forgets_it() {
    let mut b = SqliteBackend::in_memory().unwrap();
    b.create_job(&job("j1")).unwrap();
    b.complete_job("j1", Some(&json!("2024-01-02"))).unwrap();
    assert_eq!(b.stream_watermark(&key()).unwrap(), Some(json!("2024-01-02")));
    assert!(b.resumable_job(&key()).unwrap().is_none());
    b.create_job(&job("j2")).unwrap();
    assert_eq!(b.reset_stream(&key()).unwrap(), 1);
    assert_eq!(b.stream_watermark(&key()).unwrap(), None::<Json>);
    assert!(b.resumable_job(&key()).unwrap().is_none());
    let jobs = b.list_jobs("p", 10).unwrap();
    assert_eq!(jobs.len(), 2);
}

#[test]
fn one_lock_per_pipeline() {
    let dir = TempDir::new("sqlite-lock");
    let path = dir.join("state.db");
    let mut a = SqliteBackend::open(path.clone()).unwrap();
    let mut b = SqliteBackend::open(path.clone()).unwrap();
    a.create_job(&job("j-running")).unwrap();
    let guard = a.lock_pipeline(&key()).unwrap();
    let e = b.lock_pipeline(&key()).err().expect("second lock must fail");
    assert!(e.message().contains("already running: job j-running"), "{}", e.message());
    assert!(e.message().contains(&format!("pid {}", std::process::id())), "{}", e.message());
    let other = StreamKey { pipeline: "other".into(), ..key() };
    assert!(b.lock_pipeline(&other).is_ok(), "another pipeline is independent");
    drop(guard);
    assert!(b.lock_pipeline(&key()).is_ok(), "released on drop");
}
