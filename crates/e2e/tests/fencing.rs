//! A run paused past its lease while another run takes the pipeline over must not write another
//! byte to its file destination when it wakes up: its backend commits are fenced (PostgreSQL
//! backend: advisory lock + lease + fencing token), and so are its file writes. The pause is a
//! real SIGSTOP of the real binary; each test works in a PostgreSQL schema of its own.

mod common;

use std::time::Duration;

use common::*;

/// generator → file (`out.json` in the scratch dir), PostgreSQL backend with a 2 s lease.
fn config(s: &Scratch, file: &str, schema: &Schema, name: &str, total: u64, source_extra: &str) -> String {
    let text = format!(
        "name: {name}\nsource:\n  name: generator\n  stream: records\n  total: {total}\n  page_size: 1000\n{source_extra}\
         destination:\n  name: file\n  config:\n    path: {out}\n    buffer_size: 1\n\
         engine:\n  backend:\n    type: postgres\n    config:\n      host: {host}\n      port: {port}\n      \
         database: {db}\n      username: {user}\n      schema: {schema}\n      lease_seconds: 2\n",
        out = s.path("out.json").display(),
        host = pg_host(),
        port = pg_port(),
        db = pg_db(),
        user = pg_user(),
        schema = schema.0,
    );
    s.write(file, &text).to_str().unwrap().to_owned()
}

/// The newest committed iteration of any job in the schema's backend (-1 before the first flush).
fn committed_iteration(pg: &mut postgres::Client, schema: &Schema) -> i64 {
    pg.query_one(&format!("SELECT coalesce(max(iteration), -1) FROM \"{}\".bizon_destination_cursors", schema.0), &[])
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

fn signal(child: &std::process::Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Run A (slow) commits a few flushes and is SIGSTOPped; after its lease run B (fast) takes the
/// pipeline over and completes; A is SIGCONTed. A must fail fenced (exit 1) without changing a
/// byte of the published file, which holds every record exactly once.
fn a_paused_run_cannot_write_after_a_takeover(label: &str, mode: &str) {
    let s = Scratch::new(label);
    let schema = Schema::new(label);
    let mut pg = client();
    let total = 60_000;
    let name = format!("fence-{label}");
    // rate_limit keeps A mid-run; once woken it catches up at full speed, so it has pages to write
    let slow = config(&s, "slow.yml", &schema, &name, total, &format!("{mode}  rate_limit: 10000\n"));
    let fast = config(&s, "fast.yml", &schema, &name, total, mode);
    let a = s.spawn(&["run", &slow, "--no-progress"]);
    wait_until("run A's commits", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(20));
        committed_iteration(&mut pg, &schema) >= 3
    });
    signal(&a, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2600)); // past A's 2 s lease

    let err = ok(&s.run(&["run", &fast, "--no-progress"]));
    assert!(err.contains("taking over") && err.contains("resumed after iteration"), "run B takes over:\n{err}");
    assert!(err.contains("still open in another writer"), "and finds run A's file open:\n{err}");
    let out = s.path("out.json");
    let published = std::fs::read(&out).expect("run B published the file");
    assert_exactly_once(&out, total);

    signal(&a, libc::SIGCONT);
    let a = a.wait_with_output().unwrap();
    let a_err = String::from_utf8_lossy(&a.stderr);
    assert_eq!(a.status.code(), Some(1), "the stale run fails:\n{a_err}");
    assert!(a_err.contains("fenced"), "with the fencing error:\n{a_err}");
    assert!(std::fs::read(&out).unwrap() == published, "the stale run changed the published file:\n{a_err}");
    assert_exactly_once(&out, total);
    let leftovers: Vec<String> = s.files().into_iter().filter(|f| f.contains("out") && f != "out.json").collect();
    assert!(leftovers.is_empty(), "nothing else written next to the target: {leftovers:?}");
    let jobs = stdout(&s.run(&["job", "list", &fast]));
    assert!(jobs.contains("succeeded"), "the stale run must not mark the job failed:\n{jobs}");
}

#[test]
fn a_paused_full_refresh_run_cannot_write_to_the_file_after_a_takeover() {
    a_paused_run_cannot_write_after_a_takeover("fencefr", "");
}

#[test]
fn a_paused_incremental_run_cannot_write_to_the_file_after_a_takeover() {
    a_paused_run_cannot_write_after_a_takeover("fenceinc", "  sync_mode: incremental\n  cursor_field: updated_at\n");
}
