//! The SQLite backend runs the backend conformance suite on a database file (every check, with
//! several handles on the file as several processes would open it) and in memory (the checks one
//! handle can run), plus what is SQLite's own: the schema migration and the lock file.

use bizon_core::{Backend, ErrorKind};
use bizon_testkit::backend::{cursor, job, key, run_single_handle_suite, run_suite};
use bizon_testkit::fixtures::TempDir;

use super::SqliteBackend;

#[test]
fn conformance_on_a_file() {
    let dir = TempDir::new("sqlite-conformance");
    let path = dir.join("state.db");
    run_suite(&|| Box::new(SqliteBackend::open(path.clone()).expect("open")));
}

#[test]
fn conformance_in_memory() {
    run_single_handle_suite(&|| Box::new(SqliteBackend::in_memory().expect("open")));
}

#[test]
fn cursors_chain_forward_only_and_survive_reopen() {
    let dir = TempDir::new("sqlite-chain");
    let path = dir.join("state.db");
    {
        let mut b = SqliteBackend::open(path.clone()).unwrap();
        b.create_job(&job("j1", "p", 1)).unwrap();
        b.commit_destination_cursor("j1", None, &cursor(-1)).unwrap();
        b.commit_destination_cursor("j1", Some(-1), &cursor(3)).unwrap();
        let e = b.commit_destination_cursor("j1", Some(3), &cursor(2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.message().contains("does not chain"), "{}", e.message());
    }
    let mut b = SqliteBackend::open(path).unwrap();
    assert_eq!(b.destination_cursor("j1").unwrap(), Some(cursor(3)));
    assert_eq!(b.resumable_job(&key("p")).unwrap().map(|j| j.id), Some("j1".to_string()));
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_cursors() {
    let dir = TempDir::new("sqlite-migrate");
    let path = dir.join("state.db");
    {
        // what a bizon of schema version 1 left: its tables, no fencing epochs
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::schema::MIGRATION_1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute_batch(
            "INSERT INTO bizon_jobs (id, pipeline, source, stream, sync_mode, status, created_at, updated_at, pid) \
             VALUES ('old', 'p', 'generator', 'records', 'full_refresh', 'running', 1, 1, 1); \
             INSERT INTO bizon_destination_cursors VALUES ('old', 4, '{}', '{\"offset\":9}', 5, 9, NULL, 0, 1);",
        )
        .unwrap();
    }
    let mut b = SqliteBackend::open(path.clone()).unwrap();
    assert_eq!(b.destination_cursor("old").unwrap().map(|c| c.iteration), Some(4));
    let _lock = b.lock_pipeline(&key("p")).expect("the fencing table exists");
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, super::schema::SCHEMA_VERSION);
}

#[test]
fn the_lock_file_names_the_holder_for_a_lane() {
    let dir = TempDir::new("sqlite-lock");
    let path = dir.join("state.db");
    let (mut a, mut b) = (SqliteBackend::open(path.clone()).unwrap(), SqliteBackend::open(path).unwrap());
    a.create_job(&job("j-lane", "p", 1)).unwrap();
    let _guard = a.lock_pipeline(&key("p#consumer-1")).unwrap();
    let e = b.lock_pipeline(&key("p#consumer-1")).err().expect("second lock must fail");
    assert!(
        e.message().contains("the consumer lane 1 of pipeline `p` is already running: job j-lane"),
        "{}",
        e.message()
    );
}
