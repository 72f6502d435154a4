//! BigQuery end to end: the real binary moves generator records into the local BigQuery
//! emulator (`scripts/bqemulator.sh`) with `bigquery_streaming` (insertAll) and with `bigquery`
//! (Parquet load jobs), is killed with signal 9 at seeded moments, and resumes; the published table holds every record exactly once (rows =
//! distinct `_bizon_id` = distinct `_source_record_id` = the total), in full refresh and in
//! incremental mode (its state in the `bigquery` backend). The token endpoint is a local one that
//! verifies the key's signature.
//!
//! The emulator (Python, DuckDB) takes a few thousand rows per second, so these runs move 40,000
//! records, not the 1M of the benchmark.

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
    total: u64,
    bq_backend: bool,
}

fn pipeline(s: &Scratch, ds: &Dataset, url: &str, key: &str, p: &Pipeline) -> String {
    let Pipeline { destination, mode, total, bq_backend } = *p;
    let key_file = s.write("key.json", key);
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
         page_size: 200\n  record_size: 200\n  rate_limit: 4000\n\
         destination:\n  name: {destination}\n  config:\n    project_id: p\n    dataset_id: {ds}\n    \
         api_url: {url}\n    buffer_size: 0\n    authentication:\n      service_account_key: {key}\n\
         engine:\n  backend:\n{backend}",
        ds = ds.name,
        key = key_file.display(),
    );
    s.write("pipeline.yml", &text).to_string_lossy().into_owned()
}

#[test]
fn kill_9_at_seeded_moments_then_resume_publishes_every_record_exactly_once() {
    kill_and_resume("bigquery_streaming", [0x5eed_b001, 0x5eed_b002]);
}

#[test]
fn load_jobs_killed_at_seeded_moments_then_resumed_publish_every_record_exactly_once() {
    kill_and_resume("bigquery", [0x5eed_b003, 0x5eed_b004]);
}

fn kill_and_resume(destination: &str, seeds: [u64; 2]) {
    let url = emulator();
    let tokens = TokenServer::start("loader@p.iam.gserviceaccount.com", 3600, false);
    // Incremental keeps its state in the `bigquery` backend: a killed run's lock is taken over at
    // once by the next (same host, process gone).
    for (seed, mode, bq_backend) in [(seeds[0], "full_refresh", false), (seeds[1], "incremental", true)] {
        let total = 40_000;
        let ds = Dataset::new("bq_kill", &url);
        let s = Scratch::new("bq-kill");
        let cfg = pipeline(&s, &ds, &url, &tokens.key, &Pipeline { destination, mode, total, bq_backend });
        // A whole run takes about 10 s (the rate limit); kills land 0.6–1.8 s into a run.
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
