//! PostgreSQL restarted in the middle of a run: the run retries from its last commit and
//! completes with every row exactly once. Its own test binary: cargo runs test binaries one at a
//! time, so no other test loses its connections to the restart.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_postgres_restart_mid_run_completes_with_all_rows() {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let Some(version) = version else {
        eprintln!("skipped: no local PostgreSQL cluster to restart");
        return;
    };
    let s = Scratch::new("pg-restart");
    let schema = format!("bizon_t_restart_{}", std::process::id());
    let text = format!(
        "name: pgrestart\nsource:\n  name: generator\n  stream: records\n  total: 300000\n  page_size: 1000\n  rate_limit: 100000\n\
         destination:\n  name: postgres\n  config:\n    host: 127.0.0.1\n    database: test\n    username: postgres\n    \
         schema: {schema}\n    destination_id: records\n    buffer_size: 1\n\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text);
    let child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let staged = || {
        client()
            .query_one(&format!("SELECT count(*) FROM {schema}.records__bizon_staging"), &[])
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    wait_until("rows committed before the restart", Duration::from_secs(30), || staged() > 20_000);
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "restart failed");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the run must survive the restart:\n{err}");
    assert!(err.contains("transient error: resuming from the last commit"), "the restart was noticed:\n{err}");
    let row = client()
        .query_one(&format!("SELECT count(*), count(DISTINCT source_record_id) FROM {schema}.records"), &[])
        .unwrap();
    let (n, d): (i64, i64) = (row.get(0), row.get(1));
    let _ = client().batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
    assert_eq!((n, d), (300_000, 300_000));
}
