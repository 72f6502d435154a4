//! The `kafka` source end to end: the real `bizon` binary reads topics of a Kafka-protocol broker
//! (`bizon-kafka-mock`, or `BIZON_TEST_KAFKA`) filled by `bizon-kafka-load` (message `i` on
//! partition `i % 4` at offset `i / 4`, key `{"id":i}`, a ~200-byte JSON value). scripts/test.sh
//! runs them against Tansu too (`BIZON_TEST_KAFKA_FLAVOUR=tansu`): see [`tansu_batches`] and the
//! two retention tests for what differs there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const PARTITIONS: u64 = 4;

/// Produce messages `from..from+count` into `topic` (created with 4 partitions if missing).
fn load(bootstrap: &str, topic: &str, from: u64, count: u64) {
    load_with(bootstrap, topic, from, count, &[]);
}

/// [`load`] for a topic a bounded read (full refresh, incremental) will read up to its end: on
/// Tansu, one message per produced batch (see [`tansu_batches`]).
fn load_bounded(broker: &Broker, topic: &str, from: u64, count: u64) {
    let batch: &[&str] = if tansu_batches(broker) { &["--batch", "1"] } else { &[] };
    load_with(&broker.bootstrap, topic, from, count, batch);
}

/// Tansu 0.6 answers ListOffsets(latest) with the last record batch's base offset + 1, not the
/// offset after its last record: a bounded read, which stops at the end offsets it took at the
/// start, would miss all but the first message of the newest batch of each partition. Against
/// Tansu the tests that read a topic up to its end therefore produce one message per batch (the
/// watermark is then exact); the assertions stay the same. `true` when that applies.
fn tansu_batches(broker: &Broker) -> bool {
    if broker.is_tansu() {
        eprintln!("adapted against tansu: one message per produced batch (its high watermark counts the last batch as one message)");
    }
    broker.is_tansu()
}

fn load_with(bootstrap: &str, topic: &str, from: u64, count: u64, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_bizon-kafka-load"))
        .args([bootstrap, topic, "--from", &from.to_string(), "--count", &count.to_string()])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bizon-kafka-load: {text}");
    let want =
        extra.iter().position(|a| *a == "--partitions").map_or(PARTITIONS.to_string(), |i| extra[i + 1].to_owned());
    assert!(text.contains(&format!("({want} partitions)")), "the test expects {want} partitions: {text}");
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
    stream_with_kills(&s, &broker, &topic, &cfg, total, 5, || line_count(&out) >= total);
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

/// Partition leases (`lease_partitions: true`): three `bizon run` processes share the 8
/// partitions of a topic that keeps receiving messages (a PostgreSQL backend, each partition a lane
/// of the postgres destination); one is killed with signal 9 at a seeded moment and a fourth
/// joins later. The survivors take the dead one's partitions from their last commits, the
/// newcomer gets its share from the others: every offset lands in the table exactly once.
#[test]
fn eight_partitions_leased_by_three_processes_one_killed_and_one_added_land_every_offset_once() {
    const LANES: u64 = 8;
    let topic = topic("lease");
    let broker = Broker::start_with(&[format!("{topic}:{LANES}")]);
    let s = Scratch::new("kafka-lease");
    let schema = Schema::new("kafka_lease");
    let backend = format!("type: postgres\n    config:\n      {}      lease_seconds: 5\n", pg_keys(&schema.0, 6));
    let text = format!(
        "name: kafka_lease\n{}{}engine:\n  backend:\n    {backend}",
        source_block(&broker, &topic, "stream", "  lease_partitions: true\n"),
        pg_block(&schema, "events", "")
    );
    let cfg = s.write("pipeline.yml", &text);
    let cfg = cfg.to_str().unwrap();
    let (total, chunk) = (96_000u64, 4_000u64);
    load_with(&broker.bootstrap, &topic, 0, 0, &["--partitions", &LANES.to_string()]);
    let producer = {
        let (bootstrap, topic) = (broker.bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            // messages arrive over ~12 s, so the kill and the join fall mid-run
            for from in (0..total).step_by(chunk as usize) {
                load_with(&bootstrap, &topic, from, chunk, &["--partitions", &LANES.to_string()]);
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    let run = || s.spawn(&["run", cfg, "--no-progress"]);
    let mut processes = vec![run(), run(), run()];
    let mut rng = Rng(0x1ea5_e008);
    std::thread::sleep(Duration::from_millis(3000 + rng.below(1500)));
    let mut killed = processes.remove(rng.below(3) as usize);
    killed.kill().unwrap();
    let killed_log = String::from_utf8_lossy(&killed.wait_with_output().unwrap().stderr).into_owned();
    let rows_at_kill = schema.try_count("events").unwrap_or(0);
    assert!(killed_log.contains("lane taken"), "the killed process held lanes: {killed_log}");
    std::thread::sleep(Duration::from_millis(1500 + rng.below(1500)));
    processes.push(run());
    producer.join().expect("producer");
    let rows_at_end_of_production = schema.try_count("events").unwrap_or(0);
    wait_until("every message in the table", Duration::from_secs(120), || {
        schema.try_count("events").unwrap_or(0) as u64 >= total
    });
    let mut logs = Vec::new();
    for p in processes {
        sigterm(&p);
        let err = exit_ok(p, "a reader stopped by SIGTERM");
        assert!(err.contains("stopped (resumable"), "{err}");
        logs.push(err);
    }
    eprintln!("rows when the process was killed: {rows_at_kill}; when production ended: {rows_at_end_of_production}");
    assert!((rows_at_kill as u64) < total, "the kill came before every message was in: {rows_at_kill}");
    let late = logs.last().unwrap();
    assert!(late.contains("lane taken"), "the process that joined took lanes from the others: {late}");
    assert!(
        logs[..2].iter().any(|l| l.contains("a process joined: handing a lane over")),
        "the first processes handed lanes to the one that joined: {logs:?}"
    );
    let ids: Vec<u64> = client()
        .query(&format!("SELECT source_record_id FROM \"{}\".events", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| {
            let id: &str = r.get(0);
            let (p, o) = id.strip_prefix("partition_").and_then(|r| r.split_once("_offset_")).expect(id);
            o.parse::<u64>().unwrap() * LANES + p.parse::<u64>().unwrap()
        })
        .collect();
    let (missing, dups) = missing_and_duplicates(&ids, total);
    assert_eq!((ids.len() as u64, missing, dups), (total, 0, 0), "rows, missing, duplicates");
    // each partition committed its offsets with its rows, in its own lane chain
    let lanes: i64 = client()
        .query_one(
            &format!(
                "SELECT count(DISTINCT job_id) FROM \"{}\".bizon_destination_commits WHERE job_id LIKE '%~%'",
                schema.0
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(lanes, LANES as i64, "one commit chain per partition");
}

/// A bounded read (full refresh) over leased partitions: two processes (SQLite backend, file
/// destination: a file per partition lane) share 8 partitions and both exit once every partition is
/// read up to its end; the job completes, and the lane files hold every message once.
#[test]
fn a_bounded_read_over_leased_partitions_completes_when_every_partition_is_done() {
    let topic = topic("lease_bounded");
    let broker = Broker::start_with(&[format!("{topic}:8")]);
    let s = Scratch::new("kafka-lease-bounded");
    let total = 8_000u64;
    let batch: &[&str] = if tansu_batches(&broker) { &["--batch", "1"] } else { &[] };
    load_with(&broker.bootstrap, &topic, 0, total, &[&["--partitions", "8"], batch].concat());
    let source = source_block(&broker, &topic, "full_refresh", "  lease_partitions: true\n");
    let cfg = pipeline(&s, "kafka_lease_bounded", &source, &file_block(&s, ""), "");
    let processes = [s.spawn(&["run", &cfg, "--no-progress"]), s.spawn(&["run", &cfg, "--no-progress"])];
    let logs: Vec<String> = processes.into_iter().map(|p| exit_ok(p, "a reader")).collect();
    // the last lane to finish completes the job (two finishing together may both: idempotent)
    assert!(logs.iter().any(|l| l.contains("job completed")), "a lane completes the job: {logs:?}");
    // how the partitions split depends on when the second process joins (it may find them done)
    let taken: usize = logs.iter().map(|l| l.matches("lane taken").count()).sum();
    assert!(taken >= 8, "every partition was leased: {logs:?}");
    let mut ids = Vec::new();
    for lane in 0..8 {
        let file = s.path(&format!("out.lane-{lane}.json"));
        for row in read_rows(&file) {
            let id = row["source_record_id"].as_str().unwrap().to_owned();
            let (p, o) = id.strip_prefix("partition_").and_then(|r| r.split_once("_offset_")).expect(&id);
            assert_eq!(p.parse::<usize>().unwrap(), lane, "partition {p} is lane {lane}'s");
            ids.push(o.parse::<u64>().unwrap() * 8 + p.parse::<u64>().unwrap());
        }
    }
    let (missing, dups) = missing_and_duplicates(&ids, total);
    assert_eq!((ids.len() as u64, missing, dups), (total, 0, 0), "rows, missing, duplicates");
}

/// A message's key and value (`None`: absent, e.g. a tombstone).
type Message<'a> = (Option<&'a [u8]>, Option<Vec<u8>>);

/// Produce messages to partition 0 of `topic` (created by the broker if missing); on Tansu one
/// message per batch, so that a bounded read sees them all (see [`tansu_batches`]).
fn produce(broker: &Broker, topic: &str, messages: &[Message<'_>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &broker.bootstrap);
    if tansu_batches(broker) {
        config.set("batch.num.messages", "1");
    }
    let producer: BaseProducer = config.create().expect("producer");
    for (key, value) in messages {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(0);
        if let Some(k) = key {
            r = r.key(*k);
        }
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Run a bounded read (or a stream stopped once `rows` lines are in `out.json`).
fn run_to_completion(s: &Scratch, cfg: &str) -> String {
    ok(&s.run(&["run", cfg, "--no-progress"]))
}

fn data_of(row: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(row["source_data"].as_str().unwrap()).unwrap()
}

/// A schema registry on loopback speaking Confluent's API (`GET /schemas/ids/{id}` →
/// `{"schema": "…"}`) and Apicurio's (`GET /apis/registry/v2/ids/globalIds/{id}` → the schema),
/// requiring basic auth (user `user`, password `secret`).
fn registry(schemas: Vec<(u32, String)>) -> (String, Requests) {
    serve_http(move |r| {
        let confluent = schemas.iter().find(|(id, _)| r.path == format!("/schemas/ids/{id}"));
        let apicurio = schemas.iter().find(|(id, _)| r.path == format!("/apis/registry/v2/ids/globalIds/{id}"));
        let kind = "application/vnd.schemaregistry.v1+json";
        match (r.header("authorization") == Some("Basic dXNlcjpzZWNyZXQ="), confluent, apicurio) {
            (false, _, _) => ("401 Unauthorized", kind, r#"{"error_code":401}"#.to_owned()),
            (true, Some((_, schema)), _) => ("200 OK", kind, serde_json::json!({ "schema": schema }).to_string()),
            (true, None, Some((_, schema))) => ("200 OK", kind, schema.clone()),
            (true, None, None) => {
                ("404 Not Found", kind, r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned())
            }
        }
    })
}

/// A source reading Avro through the registry at `url` as user `user` / `secret`; `registry_type`
/// `None` leaves the encoding and the registry type to bizon's defaults (avro, apicurio).
fn avro_source(broker: &Broker, topic: &str, url: &str, registry_type: Option<&str>) -> String {
    let kind = registry_type.map(|t| format!("    schema_registry_type: {t}\n")).unwrap_or_default();
    let auth = format!(
        "  authentication:\n    type: basic\n{kind}    schema_registry_url: {url}\n    \
         schema_registry_username: user\n    schema_registry_password: secret\n"
    );
    let encoding = if registry_type.is_some() { "  message_encoding: avro\n" } else { "" };
    source_block(broker, topic, "full_refresh", &auth).replace("  message_encoding: utf-8\n", encoding)
}

#[test]
fn avro_messages_decode_through_a_local_schema_registry() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-avro");
    let topic = topic("avro");
    let schema_text = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},
        {"name":"email","type":["null","string"]},{"name":"plan","type":{"type":"enum","name":"Plan","symbols":["FREE","PRO"]}}]}"#;
    let schema = apache_avro::Schema::parse_str(schema_text).unwrap();
    let framed = |id: i64, email: Option<&str>, plan: &str| {
        use apache_avro::types::Value;
        let mut r = apache_avro::types::Record::new(&schema).unwrap();
        r.put("id", id);
        r.put("email", Value::Union(u32::from(email.is_some()), Box::new(email.map_or(Value::Null, |e| e.into()))));
        r.put("plan", Value::Enum(if plan == "PRO" { 1 } else { 0 }, plan.into()));
        let mut out = vec![0u8, 0, 0, 0, 42]; // magic byte, schema id 42 (Confluent wire format)
        #[allow(deprecated)]
        out.extend(apache_avro::to_avro_datum(&schema, r).unwrap());
        out
    };
    let key: &[u8] = br#"{"tenant":"t1"}"#;
    produce(
        &broker,
        &topic,
        &[
            (Some(key), Some(framed(1, Some("a@x.io"), "PRO"))),
            (None, Some(framed(2, None, "FREE"))),
            (Some(key), Some(framed(3, Some("c@x.io"), "FREE"))),
        ],
    );
    let (url, served) = registry(vec![(42, schema_text.to_owned())]);
    let source = avro_source(&broker, &topic, &url, Some("confluent"));
    let cfg = pipeline(&s, "kafka_avro", &source, &file_block(&s, ""), "");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 3 records"), "{err}");
    let rows: Vec<serde_json::Value> = read_rows(&s.path("out.json")).iter().map(data_of).collect();
    let values: Vec<serde_json::Value> = rows.iter().map(|d| d["value"].clone()).collect();
    assert_eq!(
        values,
        vec![
            serde_json::json!({"id": 1, "email": "a@x.io", "plan": "PRO"}),
            serde_json::json!({"id": 2, "email": null, "plan": "FREE"}),
            serde_json::json!({"id": 3, "email": "c@x.io", "plan": "FREE"}),
        ]
    );
    assert_eq!(rows[0]["keys"], serde_json::json!({"tenant": "t1"}));
    assert_eq!(rows[1]["keys"], serde_json::json!({}));
    assert_eq!(rows[0]["schema"]["name"], "User", "the record keeps its Avro schema, as bizon's does");
    assert_eq!((rows[2]["partition"].as_i64(), rows[2]["offset"].as_i64()), (Some(0), Some(2)));
    assert_eq!(served.lock().unwrap().len(), 1, "one registry request per schema id");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn an_unknown_schema_id_fails_the_run_naming_the_message_and_the_id() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-avro-404");
    let topic = topic("avro404");
    produce(&broker, &topic, &[(None, Some(vec![0, 0, 0, 0, 9, 2]))]);
    let (url, _) = registry(vec![]);
    let source = avro_source(&broker, &topic, &url, Some("confluent"));
    let cfg = pipeline(&s, "kafka_avro_404", &source, &file_block(&s, ""), "");
    let out = s.run(&["run", &cfg, "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("message {topic}/0 at offset 0")), "{err}");
    assert!(err.contains("schema id 9 not found"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn debezium_change_events_become_flattened_rows() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-debezium");
    let topic = topic("cdc");
    let event = |op: &str, before: serde_json::Value, after: serde_json::Value| {
        let e = serde_json::json!({"op": op, "before": before, "after": after,
            "source": {"name": "main_db", "ts_ms": 1_700_000_000_000i64, "table": "users"}});
        Some(e.to_string().into_bytes())
    };
    let key: &[u8] = br#"{"id":7}"#;
    produce(
        &broker,
        &topic,
        &[
            (Some(key), event("c", serde_json::Value::Null, serde_json::json!({"id": 7, "email": "a@x.io"}))),
            (
                Some(key),
                event(
                    "u",
                    serde_json::json!({"id": 7, "email": "a@x.io"}),
                    serde_json::json!({"id": 7, "email": "b@x.io"}),
                ),
            ),
            (Some(key), event("d", serde_json::json!({"id": 7, "email": "b@x.io"}), serde_json::Value::Null)),
            (Some(key), None), // the tombstone after a delete: skipped (skip_message_empty_value)
        ],
    );
    let source = source_block(&broker, &topic, "full_refresh", "  debezium: true\n");
    let cfg = pipeline(&s, "kafka_debezium", &source, &file_block(&s, ""), "");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 3 records"), "{err}");
    let rows: Vec<serde_json::Value> = read_rows(&s.path("out.json")).iter().map(data_of).collect();
    let got: Vec<(String, String, bool, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["__operation"].as_str().unwrap().to_owned(),
                r["email"].as_str().unwrap().to_owned(),
                r["__deleted"].as_bool().unwrap(),
                r["__kafka_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("c".into(), "a@x.io".into(), false, 0),
            ("u".into(), "b@x.io".into(), false, 1),
            ("d".into(), "b@x.io".into(), true, 2),
        ]
    );
    assert_eq!(rows[0]["__cluster"], "main-db");
    assert_eq!(rows[0]["__event_timestamp"], "2023-11-14 22:13:20.000000");
    assert_eq!(rows[0]["__kafka_topic"], topic.as_str());
}

#[test]
fn two_topics_routed_by_streams_land_in_two_tables_with_their_own_schemas() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-streams");
    let schema = Schema::new("kafka_streams");
    let (users, orders) = (topic("users"), topic("orders"));
    let cdc = |after: serde_json::Value| {
        let e = serde_json::json!({"op": "c", "before": null, "after": after, "source": {"name": "db", "ts_ms": 1}});
        (None, Some(e.to_string().into_bytes()))
    };
    produce(
        &broker,
        &users,
        &(1..=3).map(|i| cdc(serde_json::json!({"id": i, "email": format!("u{i}@x.io")}))).collect::<Vec<_>>(),
    );
    produce(
        &broker,
        &orders,
        &(1..=5)
            .map(|i| cdc(serde_json::json!({"id": 100 + i, "user_id": i % 3 + 1, "amount": i as f64 * 1.5})))
            .collect::<Vec<_>>(),
    );
    let source = format!(
        "source:\n  name: kafka\n  stream: topic\n  sync_mode: stream\n  bootstrap_servers: {}\n  group_id: {users}_g\n  \
         message_encoding: utf-8\n  debezium: true\n",
        broker.bootstrap
    );
    let streams = format!(
        "streams:\n  - name: users\n    source:\n      topic: {users}\n    destination:\n      table_id: proj.dataset.users\n      \
         record_schema:\n        - {{name: id, type: INTEGER, mode: REQUIRED}}\n        - {{name: email, type: STRING}}\n        \
         - {{name: __deleted, type: BOOLEAN}}\n  - name: orders\n    source:\n      topic: {orders}\n    destination:\n      \
         table_id: proj.dataset.orders\n      record_schema:\n        - {{name: id, type: INTEGER}}\n        \
         - {{name: user_id, type: INTEGER}}\n        - {{name: amount, type: FLOAT}}\n        - {{name: __operation, type: STRING}}\n"
    );
    // bizon's streams example runs them on the stream runner (one read → write loop)
    let rest = format!("  runner:\n    type: stream\n{streams}");
    let cfg = pipeline(&s, "kafka_streams", &source, &pg_block(&schema, "unused", ""), &rest);
    let child = s.spawn(&["run", &cfg, "--no-progress"]);
    wait_until("both tables filled", Duration::from_secs(60), || {
        schema.try_count("users").unwrap_or(0) == 3 && schema.try_count("orders").unwrap_or(0) == 5
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = client();
    let users_rows: Vec<(i64, String, bool)> = c
        .query(&format!("SELECT id, email, __deleted FROM \"{}\".users ORDER BY id", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(users_rows, (1..=3).map(|i| (i, format!("u{i}@x.io"), false)).collect::<Vec<_>>());
    let orders_rows: Vec<(i64, i64, f64, String)> = c
        .query(&format!("SELECT id, user_id, amount, __operation FROM \"{}\".orders ORDER BY id", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(orders_rows.len(), 5);
    assert_eq!(orders_rows[1], (102, 3, 3.0, "c".to_owned()));
    // each table has its own columns, not the other's
    let columns = |t: &str| table_columns(&schema, t);
    assert!(columns("users").contains(&"email".to_owned()) && !columns("users").contains(&"amount".to_owned()));
    assert!(columns("orders").contains(&"amount".to_owned()) && !columns("orders").contains(&"email".to_owned()));
}

fn table_columns(schema: &Schema, table: &str) -> Vec<String> {
    client()
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
            &[&schema.0, &table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn malformed_messages_go_to_the_dead_letter_file_with_their_offsets_and_errors() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-dead-letter");
    let schema = Schema::new("kafka_dlq");
    let topic = topic("dlq");
    let good = |i: u32| (None, Some(format!(r#"{{"id":{i}}}"#).into_bytes()));
    let bad_key: &[u8] = b"not json";
    let mut messages =
        vec![good(0), (None, Some(b"{\"id\": 1,".to_vec())), good(2), (Some(bad_key), Some(b"{}".to_vec()))];
    messages.extend((4..10).map(good));
    produce(&broker, &topic, &messages);
    let dlq = s.path("dead.json");
    let extra = format!("  on_error: dead_letter\n  dead_letter_path: {}\n", dlq.display());
    let cfg = pipeline(
        &s,
        "kafka_dlq",
        &source_block(&broker, &topic, "full_refresh", &extra),
        &pg_block(&schema, "events", ""),
        "",
    );
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 10 records"), "{err}"); // 8 good + 2 dead letters
    let ids: Vec<String> = client()
        .query(&format!("SELECT source_record_id FROM \"{}\".events ORDER BY 1", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<String> = [0, 2, 4, 5, 6, 7, 8, 9].iter().map(|o| format!("partition_0_offset_{o}")).collect();
    assert_eq!(ids, want);
    let dead: Vec<serde_json::Value> = read_rows(&dlq).iter().map(data_of).collect();
    assert_eq!(dead.len(), 2);
    assert_eq!((dead[0]["offset"].as_i64(), dead[0]["partition"].as_i64()), (Some(1), Some(0)));
    assert!(dead[0]["error"].as_str().unwrap().contains("the value is not JSON"), "{:?}", dead[0]);
    assert_eq!(dead[0]["value"], "{\"id\": 1,");
    assert_eq!(dead[1]["offset"].as_i64(), Some(3));
    assert!(dead[1]["error"].as_str().unwrap().contains("the key is not JSON"), "{:?}", dead[1]);
    assert_eq!(dead[0]["topic"], topic.as_str());
}

#[test]
fn a_malformed_message_fails_the_run_by_default_naming_topic_partition_and_offset() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-on-error-fail");
    let topic = topic("fail");
    produce(&broker, &topic, &[(None, Some(b"{\"ok\":1}".to_vec())), (None, Some(b"oops".to_vec()))]);
    let cfg = pipeline(&s, "kafka_fail", &source_block(&broker, &topic, "full_refresh", ""), &file_block(&s, ""), "");
    let out = s.run(&["run", &cfg, "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("message {topic}/0 at offset 1: the value is not JSON")), "{err}");
    assert!(err.contains("on_error: dead_letter"), "{err}");
}

#[test]
fn bounded_reads_stop_at_the_high_water_mark_and_incremental_reads_only_new_messages() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-bounded");
    let topic = topic("bounded");
    load_bounded(&broker, &topic, 0, 10_000);
    let cfg = pipeline(&s, "kafka_bounded", &source_block(&broker, &topic, "incremental", ""), &file_block(&s, ""), "");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 10000 records"), "{err}");
    load_bounded(&broker, &topic, 10_000, 2_000);
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 2000 records"), "{err}");
    let ids = file_message_indexes(&s.path("out.json"));
    assert_eq!(missing_and_duplicates(&ids, 12_000), (0, 0));
    assert_eq!(ids.len(), 12_000);
    // a full refresh re-reads the topic up to its end and replaces the file
    edit_config(&cfg, "sync_mode: incremental", "sync_mode: full_refresh");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 12000 records"), "{err}");
    assert_eq!(file_message_indexes(&s.path("out.json")).len(), 12_000);
}

#[test]
fn streams_routed_to_files_with_dead_letters_stay_exactly_once_through_kills() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-streams-files");
    let (a, b) = (topic("route_a"), topic("route_b"));
    let bad: Vec<Message<'_>> = (0..3).map(|i| (None, Some(format!("not json {i}").into_bytes()))).collect();
    produce(&broker, &a, &bad); // partition 0, offsets 0..3 of topic a
    let total = 100_000;
    load(&broker.bootstrap, &a, 0, total);
    load(&broker.bootstrap, &b, 0, total);
    let source = format!(
        "source:\n  name: kafka\n  stream: topic\n  sync_mode: stream\n  bootstrap_servers: {}\n  group_id: {a}_g\n  \
         message_encoding: utf-8\n  batch_size: 500\n  on_error: dead_letter\n  dead_letter_path: dead.json\n",
        broker.bootstrap
    );
    let streams = format!(
        "streams:\n  - name: a\n    source:\n      topic: {a}\n    destination:\n      table_id: proj.ds.table_a\n  \
         - name: b\n    source:\n      topic: {b}\n    destination:\n      table_id: proj.ds.table_b\n"
    );
    let dest = "destination:\n  name: file\n  config:\n    buffer_size: 1\n    buffer_flush_timeout: 1\n";
    let cfg = pipeline(&s, "kafka_streams_files", &source, dest, &streams);
    let mut rng = Rng(0x5eed_0011);
    for kill in 0..3 {
        let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("kill {kill}: {} records committed", committed(s.dir.path(), &cfg));
    }
    let child = s.spawn(&["run", &cfg, "--no-progress"]);
    let lines = |f: &str| line_count(&s.path(f));
    wait_until("both files complete", Duration::from_secs(120), || {
        lines("table_a.json") >= total && lines("table_b.json") >= total
    });
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    // topic a's partition 0 starts with the 3 bad messages: its good ones sit 3 offsets later
    let shifted = |id: &str| {
        let i = message_index(id);
        if i.is_multiple_of(PARTITIONS) {
            i - 3 * PARTITIONS
        } else {
            i
        }
    };
    let ids_a: Vec<u64> =
        read_rows(&s.path("table_a.json")).iter().map(|r| shifted(r["source_record_id"].as_str().unwrap())).collect();
    assert_eq!((ids_a.len() as u64, missing_and_duplicates(&ids_a, total)), (total, (0, 0)), "table_a");
    let ids_b = file_message_indexes(&s.path("table_b.json"));
    assert_eq!((ids_b.len() as u64, missing_and_duplicates(&ids_b, total)), (total, (0, 0)), "table_b");
    let dead: Vec<i64> =
        read_rows(&s.path("dead.json")).iter().map(|r| data_of(r)["offset"].as_i64().unwrap()).collect();
    assert_eq!(dead, vec![0, 1, 2]);
}

/// The consumer group's committed offset of each partition of `topic` (-1: none).
fn group_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    let offsets = got.elements().iter().map(|e| e.offset().to_raw().unwrap_or(-1)).collect();
    std::mem::forget(c); // a consumer that fetched committed offsets may hang in drop (CRATES.md)
    offsets
}

/// Move the consumer group's offsets of every partition of `topic` to `offset`.
fn set_group_offsets(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(offset)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[test]
fn group_offsets_follow_the_destination_and_the_destinations_offsets_win_on_restart() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-group");
    let topic = topic("group");
    let group = format!("{topic}_group");
    load(&broker.bootstrap, &topic, 0, 4_000);
    let cfg = pipeline(&s, "kafka_group", &source_block(&broker, &topic, "stream", ""), &file_block(&s, ""), "");
    let lines = || line_count(&s.path("out.json"));
    let stream_until = |n: u64| {
        let child = s.spawn(&["run", &cfg, "--no-progress"]);
        wait_until("the messages in the file", Duration::from_secs(60), || lines() >= n);
        std::thread::sleep(Duration::from_millis(300)); // nothing more arrives
        sigterm(&child);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    stream_until(4_000);
    // committed to the group after the destination commit: 1,000 messages per partition
    assert_eq!(group_offsets(&broker.bootstrap, &group, &topic), vec![1_000; PARTITIONS as usize]);
    // someone rewinds the group: the destination's offsets still decide where the job resumes
    set_group_offsets(&broker.bootstrap, &group, &topic, 0);
    load(&broker.bootstrap, &topic, 4_000, 2_000);
    stream_until(6_000);
    let ids = file_message_indexes(&s.path("out.json"));
    assert_eq!((ids.len(), missing_and_duplicates(&ids, 6_000)), (6_000, (0, 0)));
    assert_eq!(group_offsets(&broker.bootstrap, &group, &topic), vec![1_500; PARTITIONS as usize]);
}

#[test]
fn apicurio_framed_avro_decodes_with_bizons_default_registry_type() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-apicurio");
    let topic = topic("apicurio");
    let schema_text = r#"{"type":"record","name":"Envelope","fields":[{"name":"n","type":"int"},{"name":"tags","type":{"type":"map","values":"string"}}]}"#;
    let schema = apache_avro::Schema::parse_str(schema_text).unwrap();
    let mut r = apache_avro::types::Record::new(&schema).unwrap();
    r.put("n", 5i32);
    r.put("tags", apache_avro::types::Value::Map([("k".to_owned(), "v".into())].into_iter().collect()));
    // magic byte, then Apicurio's 8-byte global id (its first 4 bytes are zero)
    let mut framed = vec![0u8];
    framed.extend(77u64.to_be_bytes());
    #[allow(deprecated)]
    framed.extend(apache_avro::to_avro_datum(&schema, r).unwrap());
    produce(&broker, &topic, &[(None, Some(framed))]);
    let (url, served) = registry(vec![(77, schema_text.to_owned())]);
    let source = avro_source(&broker, &topic, &url, None);
    let cfg = pipeline(&s, "kafka_apicurio", &source, &file_block(&s, ""), "");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed: 1 records"), "{err}");
    let row = data_of(&read_rows(&s.path("out.json"))[0]);
    assert_eq!(row["value"], serde_json::json!({"n": 5, "tags": {"k": "v"}}));
    assert_eq!(served.lock().unwrap().len(), 1);
}

#[test]
fn an_unreachable_kafka_source_fails_in_bounded_time_naming_the_address() {
    let s = Scratch::new("kafka-src-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let source = format!(
        "source:\n  name: kafka\n  stream: topic\n  sync_mode: stream\n  topic: t\n  bootstrap_servers: 127.0.0.1:{port}\n  \
         message_encoding: utf-8\n  consumer_timeout: 1\n  authentication:\n    type: basic\n    params:\n      \
         username: u\n      password: hunter2-secret\n  consumer_config:\n    security.protocol: SASL_PLAINTEXT\n"
    );
    let cfg =
        pipeline(&s, "kafka_down", &source, &file_block(&s, ""), "  runner:\n    config:\n      max_retries: 1\n");
    let started = std::time::Instant::now();
    let out = s.run(&["run", &cfg, "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert!(err.contains(&format!("kafka 127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn messages_deleted_by_retention_before_they_were_read_are_reported_not_skipped_silently() {
    let broker = Broker::start();
    if broker.skip_on_tansu("it deletes nothing by retention (memory storage), so no offset ever expires") {
        return;
    }
    let s = Scratch::new("kafka-expired");
    let topic = topic("expired");
    let message = |i: usize| (None, Some(format!(r#"{{"id":{i},"pad":"{}"}}"#, "y".repeat(300)).into_bytes()));
    produce(&broker, &topic, &(0..10).map(message).collect::<Vec<_>>());
    let cfg = pipeline(&s, "kafka_expired", &source_block(&broker, &topic, "incremental", ""), &file_block(&s, ""), "");
    assert!(run_to_completion(&s, &cfg).contains("completed: 10 records"));
    // 10 MB more on partition 0: the mock broker keeps ~5 MB per partition, so offset 10 is deleted
    produce(&broker, &topic, &(10..33_000).map(message).collect::<Vec<_>>());
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("messages expired (retention) before they were read"), "{err}");
    assert!(err.contains(&format!("topic=\"{topic}\" partition=0 from=10")), "{err}");
    let lost: u64 = err.split("lost=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    let read = summary_records(&err);
    assert!(lost > 0 && read > 0, "{err}");
    assert_eq!(lost + read, 33_000 - 10, "every message is either read or reported lost");
}

#[test]
fn a_stream_resuming_below_the_log_start_reports_the_expired_messages_and_goes_on() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let broker = Broker::start();
    if broker.skip_on_tansu("it deletes nothing by retention (memory storage), so no offset ever expires") {
        return;
    }
    let s = Scratch::new("kafka-expired-stream");
    let topic = topic("expired_stream");
    let message = |i: usize| (None, Some(format!(r#"{{"id":{i},"pad":"{}"}}"#, "y".repeat(300)).into_bytes()));
    produce(&broker, &topic, &(0..10).map(message).collect::<Vec<_>>());
    let cfg =
        pipeline(&s, "kafka_expired_stream", &source_block(&broker, &topic, "stream", ""), &file_block(&s, ""), "");
    let lines = || line_count(&s.path("out.json")) as i64;
    let child = s.spawn(&["run", &cfg, "--no-progress"]);
    wait_until("the first messages", Duration::from_secs(30), || lines() == 10);
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    produce(&broker, &topic, &(10..33_000).map(message).collect::<Vec<_>>());
    let probe: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &broker.bootstrap).create().unwrap();
    let (low, high) = probe.fetch_watermarks(&topic, 0, Duration::from_secs(10)).unwrap();
    assert!(low > 10, "the broker deleted the start of partition 0 (log starts at {low})");
    let child = s.spawn(&["run", &cfg, "--no-progress"]);
    wait_until("the messages still in the log", Duration::from_secs(60), || lines() == 10 + high - low);
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("partition=0 from=10 to={low} lost={}", low - 10)), "{err}");
}

#[test]
fn a_poisoned_input_loads_every_good_record_and_dead_letters_every_bad_one_with_its_error() {
    let broker = Broker::start();
    let s = Scratch::new("kafka-poison");
    let schema = Schema::new("kafka_poison");
    let topic = topic("poison");
    let event = |id: serde_json::Value| {
        let e = serde_json::json!({"op": "c", "before": null, "after": {"id": id, "email": "x@y.z"}, "source": {"ts_ms": 1}});
        (None, Some(e.to_string().into_bytes()))
    };
    let mut messages: Vec<Message<'_>> = (0..5).map(|i| event(serde_json::json!(i))).collect();
    messages.push((None, Some(b"{\"op\": \"c\", \"after\": {".to_vec()))); // offset 5: invalid JSON
    messages.extend((6..8).map(|i| event(serde_json::json!(i))));
    messages.push(event(serde_json::json!("seven"))); // offset 8: not an INTEGER
    messages.extend((9..12).map(|i| event(serde_json::json!(i))));
    produce(&broker, &topic, &messages);
    let dlq = s.path("dead.json");
    let source = source_block(
        &broker,
        &topic,
        "full_refresh",
        &format!("  debezium: true\n  on_error: dead_letter\n  dead_letter_path: {}\n", dlq.display()),
    );
    let dest = pg_block(
        &schema,
        "users",
        "    on_error: dead_letter\n    unnest: true\n    record_schemas:\n      - destination_id: users\n        record_schema:\n          \
         - {name: id, type: INTEGER}\n          - {name: email, type: STRING}\n",
    );
    let cfg = pipeline(&s, "kafka_poison", &source, &dest, "");
    let err = run_to_completion(&s, &cfg);
    assert!(err.contains("completed"), "{err}");
    let ids: Vec<i64> = client()
        .query(&format!("SELECT id FROM \"{}\".users ORDER BY id", schema.0), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 6, 7, 9, 10, 11], "every good record loaded");
    let dead: Vec<serde_json::Value> = read_rows(&dlq).iter().map(data_of).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    // refused while decoding (the source) and while loading (the typed column), in one file
    let undecodable = dead.iter().find(|d| d["offset"].as_i64() == Some(5)).expect("the invalid JSON message");
    assert!(undecodable["error"].as_str().unwrap().contains("the value is not JSON"), "{undecodable}");
    let unloadable = dead.iter().find(|d| d["source_record_id"] == "partition_0_offset_8").expect("the bad id");
    assert!(
        unloadable["error"].as_str().unwrap().contains("column `id` (INTEGER) cannot hold \"seven\""),
        "{unloadable}"
    );
    assert_eq!(unloadable["record"]["id"], "seven", "the refused record as it arrived");
}
