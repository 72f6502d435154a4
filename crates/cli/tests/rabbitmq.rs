//! End-to-end runs through the real RabbitMQ on 127.0.0.1:5672 (guest/guest): every record
//! exactly once, kill -9 of the running process, an unreachable broker. Each test uses its own
//! queue (deleted by the run that completes).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A unique queue name per test and run, so tests run in parallel and re-run on a dirty broker.
fn queue_name(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("bizon_test_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// generator → rabbitmq → file.
fn through_rabbitmq(s: &Scratch, label: &str, total: u64, extra_source: &str, extra_dest: &str) -> (String, String) {
    let cfg = generator_to_file(s, label, total, extra_source, extra_dest);
    let queue = queue_name(label);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        port: 5672\n        \
         queue_name: {queue}\n      consumer:\n        prefetch: 16\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    (cfg.to_str().unwrap().to_owned(), queue)
}

fn queues() -> String {
    let out = std::process::Command::new("rabbitmqctl").args(["list_queues", "-q", "name"]).output().unwrap();
    assert!(out.status.success(), "rabbitmqctl list_queues: {}", stderr(&out));
    stdout(&out)
}

fn assert_exactly_once(path: &std::path::Path, expected: u64) {
    let ids = read_ids(path);
    let (missing, dups) = missing_and_duplicates(&ids, expected);
    assert_eq!((missing, dups), (0, 0), "{}: {} rows, {missing} missing, {dups} duplicates", path.display(), ids.len());
    assert_eq!(ids.len() as u64, expected);
}

#[test]
fn a_million_records_through_rabbitmq_arrive_exactly_once_and_the_queue_is_removed() {
    let s = Scratch::new("rmq-1m");
    let (cfg, queue) = through_rabbitmq(&s, "rmq1m", 1_000_000, "", "");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains(&format!("rabbitmq 127.0.0.1:5672 queue `{queue}`")), "{err}");
    assert!(err.contains("completed: 1000000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn kill_9_at_three_seeded_moments_then_resume_loses_and_duplicates_nothing() {
    let s = Scratch::new("rmq-kill");
    let (cfg, queue) = through_rabbitmq(&s, "rmqkill", 1_000_000, "  page_size: 2000\n", "    buffer_size: 1\n");
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0x5EED_0601, 3, 150, 900);
    assert!(interrupted >= 2, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn an_unreachable_broker_fails_in_bounded_time_naming_host_and_port_without_the_password() {
    let s = Scratch::new("rmq-down");
    let text = "name: rmq-down\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config: {}\n\
                engine:\n  runner:\n    config:\n      max_retries: 2\n      retry_backoff_ms: 50\n  queue:\n    type: rabbitmq\n    \
                config:\n      queue:\n        host: 127.0.0.1\n        port: 1\n        queue_name: never\n        \
                password: s3cret-rabbit-pw\n";
    let cfg = s.write("pipeline.yml", text);
    let t = Instant::now();
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    assert!(err.contains("rabbitmq 127.0.0.1:1 queue `never`: cannot connect"), "{err}");
    assert!(!err.contains("s3cret-rabbit-pw"), "password leaked:\n{err}");
}

#[test]
fn rabbitmq_config_typos_point_at_the_key() {
    let s = Scratch::new("rmq-typo");
    let text = "name: typo\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config: {}\n\
                engine:\n  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        \
                queue_nam: x\n";
    let cfg = s.write("pipeline.yml", text);
    let out = s.run(&["config", "validate", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pipeline.yml:14:9"), "{err}");
    assert!(err.contains("queue_name"), "{err}");
}
