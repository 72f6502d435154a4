//! BigQuery end to end: the real binary moves generator records into the local BigQuery
//! emulator (`scripts/bqemulator.sh`) with `bigquery_streaming` (insertAll) and with `bigquery`
//! (Parquet load jobs), is killed with signal 9 at seeded moments, and resumes; the published table holds every record exactly once (rows =
//! distinct `_bizon_id` = distinct `_source_record_id` = the total), in full refresh and in
//! incremental mode (its state in the `bigquery` backend). The token endpoint is a local one that
//! verifies the key's signature.
//!
//! The emulator (Python, DuckDB) takes a few thousand insertAll rows per second, so the
//! `bigquery_streaming` runs move 40,000 records; the `bigquery` (load jobs) runs move 1M, the
//! incremental ones through a Cloud Storage bucket (`scripts/gcsemulator.sh`).

mod common;

use bizon_connectors::google::auth::Credentials;
use bizon_connectors::google::bigquery::BigQuery;
use bizon_testkit::google::{emulator, TokenServer};
use common::*;

/// A dataset of its own, removed with its tables at the end.
struct Dataset {
    name: String,
    bq: BigQuery,
    _tokens: TokenServer,
}

impl Dataset {
    fn new(label: &str, url: &str) -> Self {
        let tokens = TokenServer::start("admin@p.iam.gserviceaccount.com", 3600, false);
        let name = format!("{label}_{}_{}", std::process::id(), bizon_core::time::now_micros() % 1_000_000_000);
        let bq = BigQuery::new(Credentials::from_config(Some(&tokens.key)).unwrap(), Some(url), "p");
        bq.create_dataset("p", &name, Some("US")).unwrap();
        Dataset { name, bq, _tokens: tokens }
    }

    /// One row of numbers: `sql` with `{t}` replaced by the table.
    fn numbers(&self, sql: &str, table: &str) -> Vec<i64> {
        let sql = sql.replace("{t}", &format!("`p.{}.{table}`", self.name));
        let result = self.bq.query(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        result.rows[0].iter().map(|c| c.as_str().and_then(|s| s.parse().ok()).or(c.as_i64()).unwrap()).collect()
    }

    fn tables(&self) -> Vec<String> {
        let sql = format!("SELECT table_name FROM `p.{}.INFORMATION_SCHEMA.TABLES` ORDER BY 1", self.name);
        let result = self.bq.query(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        result.rows.iter().map(|r| r[0].as_str().unwrap_or_default().to_owned()).collect()
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        let _ = self.bq.delete_dataset("p", &self.name);
    }
}

/// generator → `destination`; the state in SQLite, or with `bq_backend` in the same dataset
/// (the `bigquery` backend).
struct Pipeline<'a> {
    destination: &'a str,
    mode: &'a str,
    scale: Scale,
    bq_backend: bool,
    /// More keys under `destination.config`.
    extra: &'a str,
}

/// How much a run moves, and how fast: a whole run lasts about `total / rate_limit` seconds.
#[derive(Clone, Copy)]
struct Scale {
    total: u64,
    page_size: u64,
    rate_limit: u64,
    buffer_mb: u64,
}

fn pipeline(s: &Scratch, ds: &Dataset, url: &str, key: &str, p: &Pipeline) -> String {
    let Pipeline { destination, mode, scale, bq_backend, extra } = *p;
    let Scale { total, page_size, rate_limit, buffer_mb } = scale;
    let key_file = s.write("key.json", key);
    let grpc = match destination {
        "bigquery_streaming_v2" => format!("    storage_write_url: {}\n", bizon_testkit::google::emulator_grpc()),
        _ => String::new(),
    };
    let backend = if bq_backend {
        format!(
            "    type: bigquery\n    config:\n      database: p\n      schema: {}\n      api_url: {url}\n      \
             service_account_key: {}\n",
            ds.name,
            key_file.display()
        )
    } else {
        format!("    type: sqlite\n    config:\n      database: {}\n", s.path("state.db").display())
    };
    let text = format!(
        "name: bq_kill\nsource:\n  name: generator\n  stream: records\n  sync_mode: {mode}\n  cursor_field: updated_at\n  total: {total}\n  \
         page_size: {page_size}\n  record_size: 200\n  rate_limit: {rate_limit}\n\
         destination:\n  name: {destination}\n  config:\n    project_id: p\n    dataset_id: {ds}\n    \
         api_url: {url}\n    buffer_size: {buffer_mb}\n{grpc}{extra}    authentication:\n      service_account_key: {key}\n\
         engine:\n  backend:\n{backend}",
        ds = ds.name,
        key = key_file.display(),
    );
    s.write("pipeline.yml", &text).to_string_lossy().into_owned()
}

#[test]
fn kill_9_at_seeded_moments_then_resume_publishes_every_record_exactly_once() {
    // The emulator takes a few thousand insertAll rows per second: 40,000 records, 10 s a run.
    let scale = Scale { total: 40_000, page_size: 200, rate_limit: 4000, buffer_mb: 0 };
    kill_and_resume("bigquery_streaming", scale, [0x5eed_b001, 0x5eed_b002], "");
}

#[test]
fn load_jobs_killed_at_seeded_moments_then_resumed_publish_every_record_exactly_once() {
    // Full refresh through the upload host, incremental through a Cloud Storage bucket.
    let gcs = format!("    gcs_buffer_bucket: bizon-test\n    gcs_url: {}\n", bizon_testkit::google::gcs_emulator());
    // Load jobs take 200,000 rows per second: 1M records, 5 s a run, a load every 5 MB.
    let scale = Scale { total: 1_000_000, page_size: 5000, rate_limit: 200_000, buffer_mb: 5 };
    kill_and_resume("bigquery", scale, [0x5eed_b003, 0x5eed_b004], &gcs);
}

#[test]
fn storage_write_appends_killed_at_seeded_moments_then_resumed_publish_every_record_exactly_once() {
    // PENDING streams committed per page (incremental: 4 at once, Arrow rows): 1M records, a flush every 5 MB.
    let scale = Scale { total: 1_000_000, page_size: 5000, rate_limit: 100_000, buffer_mb: 5 };
    kill_and_resume(
        "bigquery_streaming_v2",
        scale,
        [0x5eed_b005, 0x5eed_b006],
        "    max_concurrent_threads: 4\n    bq_max_rows_per_request: 1000\n    row_format: arrow\n",
    );
}

/// `incremental_extra`: more destination keys for the incremental runs.
fn kill_and_resume(destination: &str, scale: Scale, seeds: [u64; 2], incremental_extra: &str) {
    let url = emulator();
    let tokens = TokenServer::start("loader@p.iam.gserviceaccount.com", 3600, false);
    // Incremental keeps its state in the `bigquery` backend: a killed run's lock is taken over at
    // once by the next (same host, process gone).
    for (seed, mode, bq_backend) in [(seeds[0], "full_refresh", false), (seeds[1], "incremental", true)] {
        let total = scale.total;
        let ds = Dataset::new("bq_kill", &url);
        let s = Scratch::new("bq-kill");
        let extra = if mode == "incremental" { incremental_extra } else { "" };
        let cfg = pipeline(&s, &ds, &url, &tokens.key, &Pipeline { destination, mode, scale, bq_backend, extra });
        // Kills land 0.6–1.8 s into a run.
        let (killed, finished) = kill_at_seeded_moments(&s, &cfg, seed, 4, 600, 1200);
        assert!(killed >= 3, "{destination} {mode}: only {killed} runs were killed mid-run");
        assert!(!finished, "{destination} {mode}: a run finished before the fourth kill");
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("completed"), "{}", logs.last().unwrap());
        let table = "_bizon_generator_records";
        let [rows, ids, records] = ds
            .numbers("SELECT COUNT(*), COUNT(DISTINCT _bizon_id), COUNT(DISTINCT _source_record_id) FROM {t}", table)[..]
        else {
            panic!("three numbers")
        };
        assert_eq!(
            (rows, ids, records),
            (total as i64, total as i64, total as i64),
            "{destination} {mode}: rows, ids, records"
        );
        // The staging table is gone once published (the backend's tables and the dataset's empty
        // publication marker of incremental jobs stay).
        let tables: Vec<String> =
            ds.tables().into_iter().filter(|t| !t.starts_with("bizon_") && t != "_bizon_published").collect();
        assert_eq!(tables, vec![table.to_owned()], "{destination} {mode}: tables left");
    }
}

/// `bigquery_streaming_v2` on two RabbitMQ lanes (a full refresh, SQLite backend): a producer and two consumers,
/// one killed with signal 9 mid-run and started again; each lane stages into its own table and
/// the lane that completes the job publishes both lanes' committed rows once.
#[test]
fn storage_write_on_two_lanes_with_a_consumer_killed_publishes_every_record_once() {
    let url = emulator();
    let tokens = TokenServer::start("loader@p.iam.gserviceaccount.com", 3600, false);
    let ds = Dataset::new("bq_lanes", &url);
    let s = Scratch::new("bq-lanes");
    let total = 200_000u64;
    let scale = Scale { total, page_size: 2000, rate_limit: 50_000, buffer_mb: 1 };
    let p =
        Pipeline { destination: "bigquery_streaming_v2", mode: "full_refresh", scale, bq_backend: false, extra: "" };
    let cfg = pipeline(&s, &ds, &url, &tokens.key, &p);
    let queue = topic("bqlanes"); // a unique name
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "  queue:\n    type: rabbitmq\n    config:\n      lanes: 2\n      queue:\n        host: 127.0.0.1\n        \
             port: 5672\n        queue_name: {queue}\n"
        );
    std::fs::write(&cfg, text).unwrap();
    let consumer = || s.spawn(&["run", &cfg, "--role", "consumer", "--no-progress"]);
    let mut consumers = vec![consumer(), consumer()];
    let producer = s.spawn(&["run", &cfg, "--role", "producer", "--no-progress"]);
    std::thread::sleep(std::time::Duration::from_millis(1500 + Rng(0x5eed_b1a5).below(1000)));
    consumers[0].kill().unwrap();
    let _ = consumers[0].wait();
    consumers[0] = consumer();
    exit_ok(producer, "producer");
    let logs: Vec<String> = consumers.into_iter().map(|c| exit_ok(c, "consumer")).collect();
    assert!(logs.iter().any(|l| l.contains("job completed")), "{logs:?}");
    let table = "_bizon_generator_records";
    let counts =
        ds.numbers("SELECT COUNT(*), COUNT(DISTINCT _bizon_id), COUNT(DISTINCT _source_record_id) FROM {t}", table);
    assert_eq!(counts, [total as i64; 3], "rows, ids, records");
    let tables: Vec<String> = ds.tables().into_iter().filter(|t| !t.starts_with("bizon_")).collect();
    assert_eq!(tables, vec![table.to_owned()], "the lanes' staging tables are gone");
}
