//! End-to-end runs through a Kafka-protocol broker: `bizon-kafka-mock` (librdkafka's mock
//! cluster in its own process, one per test). Point `BIZON_TEST_KAFKA` at `host:port` of a real
//! Kafka or Redpanda to run the same tests against it (topics are unique per test);
//! scripts/test.sh runs them against Tansu too (scripts/tansu.sh), with no test adapted.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// generator → kafka → file.
fn through_kafka(
    s: &Scratch,
    broker: &Broker,
    label: &str,
    total: u64,
    extra_source: &str,
    extra_dest: &str,
) -> String {
    let cfg = generator_to_file(s, label, total, extra_source, extra_dest);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "  queue:\n    type: kafka\n    config:\n      queue:\n        bootstrap_server: {}\n        topic: {}\n      \
         consumer:\n        group_id: {}\n",
        broker.bootstrap,
        topic(label),
        topic(&format!("{label}_group")),
    ));
    std::fs::write(&cfg, text).unwrap();
    cfg.to_str().unwrap().to_owned()
}

#[test]
fn a_million_records_through_kafka_arrive_exactly_once() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-1m");
    let cfg = through_kafka(&s, &broker, "k1m", 1_000_000, "", "");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains(&format!("kafka {} topic `bizon_test_k1m_", broker.bootstrap)), "{err}");
    assert!(err.contains("completed: 1000000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);
}

#[test]
fn kafka_kill_9_at_three_seeded_moments_then_resume_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-kill");
    let cfg = through_kafka(
        &s,
        &broker,
        "kkill",
        1_000_000,
        "  page_size: 2000\n  rate_limit: 150000\n",
        "    buffer_size: 1\n",
    );
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0x5EED_0603, 3, 200, 1200);
    assert!(interrupted >= 2, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    assert_exactly_once(&s.path("out.json"), 1_000_000);
}

#[test]
fn the_process_runner_moves_every_record_exactly_once_through_kafka() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-proc");
    let cfg = through_kafka(&s, &broker, "kproc", 500_000, "", "");
    use_process_runner(&cfg);
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("process runner: producer pid"), "{err}");
    assert!(err.contains("published (the consumer completes the job): 500000 records"), "{err}");
    assert!(err.contains("completed: 500000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 500_000);
}

#[test]
fn kafka_roles_survive_consumer_kills_while_the_producer_waits_for_commits() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-roles");
    let cfg = through_kafka(&s, &broker, "kroles", 600_000, "  rate_limit: 150000\n", "    buffer_size: 1\n");
    let producer = s.spawn(&["run", &cfg, "--role", "producer", "--no-progress"]);
    let consumer = s.spawn(&["run", &cfg, "--role", "consumer", "--no-progress"]);
    // 300 ms without a consumer: the producer stops at its window while nobody commits
    let (consumer, killed) = kill_consumer_at_seeded_moments(&s, &cfg, consumer, 0x5EED_0604, 3, (200, 500), 300);
    assert!(killed >= 2, "the kills must land mid-run (only {killed} did)");
    let out = consumer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "consumer: {err}");
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "producer: {}", String::from_utf8_lossy(&out.stderr));
    assert_exactly_once(&s.path("out.json"), 600_000);
}

#[test]
fn an_unreachable_kafka_fails_in_bounded_time_naming_the_address() {
    let s = Scratch::new("kafka-down");
    let text = "name: kdown\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config: {}\n\
                engine:\n  runner:\n    config:\n      max_retries: 0\n  queue:\n    type: kafka\n    config:\n      queue:\n        \
                bootstrap_server: 127.0.0.1:1\n        topic: never\n        sasl_password: s3cret-kafka-pw\n";
    let cfg = s.write("pipeline.yml", text);
    let t = Instant::now();
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(40), "took {:?}", t.elapsed());
    assert!(err.contains("kafka 127.0.0.1:1 topic `never`"), "{err}");
    assert!(!err.contains("s3cret-kafka-pw"), "password leaked:\n{err}");
}

#[test]
fn two_consumers_and_one_producer_split_the_work_over_two_kafka_partitions() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-lanes");
    let cfg = through_kafka(&s, &broker, "klanes", 600_000, "", "");
    use_lanes(&cfg, 2);
    two_consumers_split_one_producers_work(&s, &cfg, 600_000);
}

#[test]
fn kafka_lanes_on_a_shared_postgres_backend_survive_a_consumer_kill() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-lanes-pg");
    let schema = format!("bizon_t_lanes_{}", std::process::id());
    let cfg = through_kafka(&s, &broker, "klanespg", 600_000, "  rate_limit: 300000\n", "    buffer_size: 1\n");
    let backend = format!(
        "    type: postgres\n    config:\n      host: 127.0.0.1\n      database: test\n      username: postgres\n      \
         schema: {schema}\n"
    );
    let sqlite = format!("    type: sqlite\n    config:\n      database: {}\n", s.path("state.db").display());
    edit_config(&cfg, &sqlite, &backend);
    use_lanes(&cfg, 2);
    let consumer = || s.spawn(&["run", &cfg, "--role", "consumer", "--no-progress"]);
    let (mut a, b) = (consumer(), consumer());
    let producer = s.spawn(&["run", &cfg, "--role", "producer", "--no-progress"]);
    std::thread::sleep(Duration::from_millis(300 + Rng(0x5EED_0605).below(500)));
    assert!(a.try_wait().unwrap().is_none(), "consumer still running at the kill");
    a.kill().unwrap();
    a.wait().unwrap();
    let a = consumer(); // takes the lane the killed one held
    let mut counts = Vec::new();
    for c in [a, b, producer] {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        counts.push(summary_records(&err));
    }
    let mut ids = read_ids(&s.path("out.lane-0.json"));
    ids.extend(read_ids(&s.path("out.lane-1.json")));
    let (missing, dups) = missing_and_duplicates(&ids, 600_000);
    let mut pg = postgres::Client::connect("host=127.0.0.1 user=postgres dbname=test", postgres::NoTls).unwrap();
    let status: String =
        pg.query_one(&format!("SELECT status FROM {schema}.bizon_jobs WHERE stream = 'records'"), &[]).unwrap().get(0);
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    assert_eq!((missing, dups, ids.len()), (0, 0, 600_000), "consumer/producer counts {counts:?}");
    assert_eq!(status, "succeeded");
}
