//! The `kafka` source end to end: the real `bizon` binary reads topics of a Kafka-protocol broker
//! (`bizon-kafka-mock`, or `BIZON_TEST_KAFKA`) filled by `bizon-kafka-load` (message `i` on
//! partition `i % 4` at offset `i / 4`, key `{"id":i}`, a ~200-byte JSON value).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const PARTITIONS: u64 = 4;

/// Produce messages `from..from+count` into `topic` (created with 4 partitions if missing).
fn load(bootstrap: &str, topic: &str, from: u64, count: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_bizon-kafka-load"))
        .args([bootstrap, topic, "--from", &from.to_string(), "--count", &count.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bizon-kafka-load: {text}");
    assert!(text.contains(&format!("({PARTITIONS} partitions)")), "the test expects 4 partitions: {text}");
}

/// The message number of a record id `partition_<p>_offset_<o>` (see `load`).
fn message_index(id: &str) -> u64 {
    let rest = id.strip_prefix("partition_").unwrap_or_else(|| panic!("record id {id}"));
    let (p, o) = rest.split_once("_offset_").unwrap_or_else(|| panic!("record id {id}"));
    o.parse::<u64>().unwrap() * PARTITIONS + p.parse::<u64>().unwrap()
}

fn source_block(broker: &Broker, topic: &str, mode: &str, extra: &str) -> String {
    format!(
        "source:\n  name: kafka\n  stream: topic\n  sync_mode: {mode}\n  topic: {topic}\n  bootstrap_servers: {}\n  \
         group_id: {topic}_group\n  message_encoding: utf-8\n  batch_size: 500\n  consumer_timeout: 2\n{extra}",
        broker.bootstrap
    )
}

fn file_block(s: &Scratch, extra: &str) -> String {
    format!(
        "destination:\n  name: file\n  config:\n    path: {}\n    buffer_size: 1\n    buffer_flush_timeout: 1\n{extra}",
        s.path("out.json").display()
    )
}

fn pg_block(schema: &Schema, table: &str, extra: &str) -> String {
    format!(
        "destination:\n  name: postgres\n  config:\n    host: {}\n    port: {}\n    database: {}\n    username: {}\n    \
         schema: {}\n    destination_id: {table}\n    buffer_size: 1\n    buffer_flush_timeout: 1\n{extra}",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user(),
        schema.0
    )
}

fn pipeline(s: &Scratch, name: &str, source: &str, destination: &str, rest: &str) -> String {
    let text = format!(
        "name: {name}\n{source}{destination}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n{rest}",
        s.path("state.db").display()
    );
    s.write("pipeline.yml", &text).to_str().unwrap().to_owned()
}

/// Records the backend holds as committed for the newest job (`bizon job list`).
fn committed(dir: &std::path::Path, cfg: &str) -> u64 {
    let out = Command::new(bin()).args(["job", "list", cfg]).current_dir(dir).output().unwrap();
    let text = stdout(&out);
    text.lines().nth(1).and_then(|l| l.split_whitespace().nth(5)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Produce `total` messages in chunks, each once the pipeline has committed all but a chunk of
/// what was produced (librdkafka's mock broker keeps only the newest ~5 MB per partition), while
/// `bizon` is killed with signal 9 at `kills` seeded moments and restarted; then wait until
/// `done()` and stop the last run with SIGTERM.
fn stream_with_kills(
    s: &Scratch,
    broker: &Broker,
    topic: &str,
    cfg: &str,
    total: u64,
    kills: usize,
    done: impl Fn() -> bool,
) {
    const CHUNK: u64 = 40_000;
    load(&broker.bootstrap, topic, 0, 0); // the topic exists before the first run
    let producer = {
        let (bootstrap, topic, cfg) = (broker.bootstrap.clone(), topic.to_owned(), cfg.to_owned());
        let dir = s.dir.path().to_owned();
        std::thread::spawn(move || {
            let mut produced = 0;
            while produced < total {
                wait_until("the pipeline to catch up", Duration::from_secs(120), || {
                    produced < CHUNK || committed(&dir, &cfg) + CHUNK >= produced
                });
                let n = CHUNK.min(total - produced);
                load(&bootstrap, &topic, produced, n);
                produced += n;
            }
        })
    };
    let mut rng = Rng(0x5eed_0007);
    for kill in 0..kills {
        let mut child = s.spawn(&["run", cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(800 + rng.below(1500)));
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("a stream run ended by itself: {}", String::from_utf8_lossy(&out.stderr));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("kill {kill}: {} records committed", committed(s.dir.path(), cfg));
    }
    let child = s.spawn(&["run", cfg, "--no-progress"]);
    producer.join().expect("producer");
    wait_until("every message in the destination", Duration::from_secs(240), &done);
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped (resumable"), "{err}");
}

fn file_message_indexes(path: &std::path::Path) -> Vec<u64> {
    read_rows(path).iter().map(|r| message_index(r["source_record_id"].as_str().unwrap())).collect()
}

#[test]
fn a_million_json_messages_stream_to_a_file_exactly_once_through_five_kills() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-src-file");
    let topic = topic("src_file");
    let cfg = pipeline(&s, "kafka_src_file", &source_block(&broker, &topic, "stream", ""), &file_block(&s, ""), "");
    let total = 1_000_000;
    let out = s.path("out.json");
    let lines = || std::fs::read(&out).map(|b| b.iter().filter(|c| **c == b'\n').count() as u64).unwrap_or(0);
    stream_with_kills(&s, &broker, &topic, &cfg, total, 5, || lines() >= total);
    let ids = file_message_indexes(&out);
    let (missing, dups) = missing_and_duplicates(&ids, total);
    assert_eq!((ids.len() as u64, missing, dups), (total, 0, 0), "rows, missing, duplicates");
    let row = &read_rows(&out)[0];
    let data: serde_json::Value = serde_json::from_str(row["source_data"].as_str().unwrap()).unwrap();
    let i = message_index(row["source_record_id"].as_str().unwrap());
    assert_eq!(
        (data["topic"].as_str(), data["keys"]["id"].as_u64(), data["value"]["id"].as_u64()),
        (Some(topic.as_str()), Some(i), Some(i))
    );
    assert_eq!(data["partition"].as_u64(), Some(i % PARTITIONS));
}

#[test]
fn a_million_json_messages_stream_to_postgres_exactly_once_through_five_kills() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-src-pg");
    let schema = Schema::new("kafka_src");
    let topic = topic("src_pg");
    let cfg = pipeline(
        &s,
        "kafka_src_pg",
        &source_block(&broker, &topic, "stream", ""),
        &pg_block(&schema, "events", ""),
        "",
    );
    let total = 1_000_000;
    stream_with_kills(&s, &broker, &topic, &cfg, total, 5, || schema.try_count("events").unwrap_or(0) as u64 >= total);
    let ids: Vec<u64> = client()
        .query(&format!("SELECT source_record_id FROM \"{}\".events", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| message_index(r.get(0)))
        .collect();
    let (missing, dups) = missing_and_duplicates(&ids, total);
    assert_eq!((ids.len() as u64, missing, dups), (total, 0, 0), "rows, missing, duplicates");
}
