//! RabbitMQ restarted (`rabbitmqctl stop_app` / `start_app`) in the middle of a run: the run
//! retries from its last commit and completes with every record exactly once. Its own test
//! binary: cargo runs test binaries one at a time, so no other test loses its broker.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", stderr(&out));
}

#[test]
fn a_rabbitmq_restart_mid_run_completes_with_every_record_exactly_once() {
    let s = Scratch::new("rmq-restart");
    let queue = format!("bizon_test_restart_{}", std::process::id());
    let cfg = generator_to_file(
        &s,
        "rmqrestart",
        400_000,
        "  page_size: 1000\n  rate_limit: 80000\n",
        "    buffer_size: 1\n",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "  runner:\n    config:\n      max_retries: 30\n      retry_backoff_ms: 200\n  queue:\n    type: rabbitmq\n    \
         config:\n      queue:\n        host: 127.0.0.1\n        queue_name: {queue}\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let out_file = s.path("out_temp.json");
    wait_until("records committed before the restart", Duration::from_secs(30), || {
        std::fs::metadata(&out_file).map(|m| m.len() > 10_000_000).unwrap_or(false)
    });
    rabbitmqctl(&["stop_app"]);
    std::thread::sleep(Duration::from_secs(1));
    rabbitmqctl(&["start_app"]);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the run must survive the restart:\n{err}");
    assert!(err.contains("transient error: resuming from the last commit"), "the restart was noticed:\n{err}");
    let ids = read_ids(&s.path("out.json"));
    let (missing, dups) = missing_and_duplicates(&ids, 400_000);
    assert_eq!((missing, dups, ids.len()), (0, 0, 400_000));
}
