//! Test support: the local BigQuery emulator (`scripts/bqemulator.sh`, started on first use), a
//! local token endpoint that checks the JWT's signature (testkit's), and datasets removed after the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bizon_core::config::{yaml, SyncMode};
use bizon_core::{BatchMeta, DestinationContext, RecordBatch};
use bizon_testkit::fixtures::TempDir;
pub use bizon_testkit::google::{emulator, emulator_grpc, gcs_emulator, TokenServer};

use crate::descriptor::{DestinationDescriptor, DestinationSpec};

use super::auth::Credentials;
use super::bigquery::{BigQuery, TableRef};

/// A dataset of its own in the emulator, deleted (with its tables) on drop.
pub struct Dataset {
    pub name: String,
    pub bq: BigQuery,
}

impl Dataset {
    pub fn new(label: &str, tokens: &TokenServer) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{label}_{}_{}_{}",
            std::process::id(),
            bizon_core::time::now_micros() % 1_000_000_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let credentials = Credentials::from_config(Some(&tokens.key)).expect("test key");
        let bq = BigQuery::new(credentials, Some(&emulator()), "p");
        bq.create_dataset("p", &name, Some("US")).expect("create dataset");
        Dataset { name, bq }
    }

    /// Rows of a query, each cell as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let sql = sql.replace("{ds}", &format!("p.{}", self.name));
        self.bq
            .query(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)).collect())
            .collect()
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        let _ = self.bq.delete_dataset("p", &self.name);
    }
}

/// A BigQuery destination of the registry on a dataset of its own, its key in a file.
pub struct Setup {
    pub spec: Arc<dyn DestinationSpec>,
    pub ds: Dataset,
    pub tokens: TokenServer,
    /// The token endpoint of the dataset's own client (it outlives the dataset).
    _admin: TokenServer,
    _dir: TempDir,
    /// The config's YAML text.
    pub text: String,
}

impl Setup {
    /// `d` configured with `extra` YAML under `config:`; its requests take tokens from `tokens`.
    pub fn new(d: &DestinationDescriptor, extra: &str, tokens: TokenServer) -> Self {
        let admin = self::tokens();
        let ds = Dataset::new(d.name, &admin);
        let dir = TempDir::new("bq-key");
        let key = dir.join("key.json");
        std::fs::write(&key, &tokens.key).unwrap();
        let grpc = storage_write_key(d.name);
        let text = format!(
            "project_id: p\ndataset_id: {}\napi_url: {}\n{grpc}authentication:\n  service_account_key: {}\n{extra}",
            ds.name,
            emulator(),
            key.display()
        );
        let node = yaml::parse(&text).unwrap();
        let spec = (d.parse)(&node).unwrap_or_else(|e| panic!("{}", e.message));
        Setup { spec, ds, tokens, _admin: admin, _dir: dir, text }
    }
}

/// The `storage_write_url` line (the emulator's gRPC endpoint) for the Storage Write
/// destination; nothing for the others.
pub fn storage_write_key(destination: &str) -> String {
    match destination {
        "bigquery_streaming_v2" => format!("storage_write_url: {}\n", emulator_grpc()),
        _ => String::new(),
    }
}

/// A token endpoint for a valid key.
pub fn tokens() -> TokenServer {
    TokenServer::start("loader@p.iam.gserviceaccount.com", 3600, false)
}

/// A job's context (job `job`, source `dummy`, stream `creatures`).
pub fn ctx(mode: SyncMode) -> DestinationContext {
    DestinationContext {
        pipeline: "t".into(),
        job_id: "job".into(),
        source: "dummy".into(),
        stream: "creatures".into(),
        sync_mode: mode,
        lane: None,
    }
}

pub fn meta(iteration: i64) -> BatchMeta {
    BatchMeta { iteration, extracted_at: 1_700_000_000_123_456, loaded_at: 1_700_000_001_654_321, job_hash: 0xabc }
}

/// Records `from..from + n`, ids their number, data from `data`.
pub fn records(from: u64, n: u64, data: impl Fn(u64) -> String) -> RecordBatch {
    let mut b = RecordBatch::default();
    for i in from..from + n {
        b.push(&i.to_string(), 1_600_000_000_000_001 + i as i64, data(i).as_bytes());
    }
    b
}

/// Full refresh of `destination_id` (built from `s`): a reader polling the table while a second
/// job replaces the first one's 1,000 rows with 3,000 sees one table or the other, never a part.
pub fn assert_full_refresh_is_atomic(s: &Setup, destination_id: &str) {
    let run = |job: &str, n: u64| {
        let mut d = s.spec.build(destination_id, None);
        d.open(&DestinationContext { job_id: job.into(), ..ctx(SyncMode::FullRefresh) }, None).unwrap();
        for page in 0..n / 500 {
            d.write(&records(page * 500, 500, |i| format!(r#"{{"id":{i}}}"#)), &meta(page as i64)).unwrap();
            d.flush(&bizon_testkit::destination::next_cursor(page as i64, (page + 1) * 500)).unwrap();
        }
        d.finalize().unwrap();
    };
    run("old", 1000);
    let count = format!("SELECT COUNT(*) FROM `{{ds}}.{destination_id}`");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                seen.insert(s.ds.rows(&count)[0][0].clone());
            }
            seen.insert(s.ds.rows(&count)[0][0].clone());
            seen
        });
        run("new", 3000);
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    assert!(seen.iter().all(|c| c == "1000" || c == "3000"), "a reader saw a partial table: {seen:?}");
    assert!(seen.contains("1000") && seen.contains("3000"), "the reader saw both tables: {seen:?}");
}

/// Lanes of one job (`lanes` consumers, each its own destination on lane `k`): each stages its own
/// rows and its `finalize` publishes nothing; `finalize_lanes` with every lane's last token
/// publishes exactly the committed rows of every lane, once (a lane's write after its last commit,
/// left by a crash, is not published), drops the lanes' staging tables, and is idempotent. Run in
/// full refresh and incremental (an incremental publication appends to the table's earlier rows).
pub fn assert_lanes_publish_once(s: &Setup, destination_id: &str) {
    let count = || {
        let sql = format!("SELECT COUNT(*), COUNT(DISTINCT _source_record_id) FROM `{{ds}}.{destination_id}`");
        let rows = s.ds.rows(&sql);
        (rows[0][0].parse::<u64>().unwrap(), rows[0][1].parse::<u64>().unwrap())
    };
    let main = TableRef::new("p", &s.ds.name, destination_id);
    let lanes = 3usize;
    // the incremental job appends its 600 rows (other record ids) to the full refresh's 600
    for (mode, job, base, before) in
        [(SyncMode::FullRefresh, "fr", 0u64, 0u64), (SyncMode::Incremental, "inc", 10_000, 600)]
    {
        let lane_ctx =
            |k: usize| DestinationContext { job_id: format!("{job}~{k}"), lane: Some((k, lanes)), ..ctx(mode) };
        let mut last = Vec::new();
        for k in 0..lanes {
            let mut d = s.spec.build(destination_id, None);
            d.open(&lane_ctx(k), None).unwrap();
            // lane k's iterations: k, k + lanes; 100 records each, ids unique across the job
            let mut token = serde_json::Value::Null;
            for (n, iteration) in [k, k + lanes].into_iter().enumerate() {
                let from = base + (iteration * 100) as u64;
                d.write(&records(from, 100, |i| format!(r#"{{"id":{i}}}"#)), &meta(iteration as i64)).unwrap();
                let next = bizon_testkit::destination::next_cursor(iteration as i64, (n as u64 + 1) * 100);
                token = d.flush(&next).unwrap();
            }
            d.finalize().unwrap();
            // a later attempt's page staged (flushed) but never committed (a crash): not published
            let mut crashed = s.spec.build(destination_id, None);
            crashed.open(&lane_ctx(k), Some(&token)).unwrap();
            let stray = records(base + 9_000 + k as u64, 1, |i| format!(r#"{{"id":{i}}}"#));
            crashed.write(&stray, &meta((k + 2 * lanes) as i64)).unwrap();
            crashed.flush(&bizon_testkit::destination::next_cursor((k + 2 * lanes) as i64, 201)).unwrap();
            last.push(token);
        }
        match before {
            0 => assert!(
                s.ds.bq.get_table(&main).unwrap().is_none(),
                "{mode:?}: nothing published before every lane is done"
            ),
            n => assert_eq!(count(), (n, n), "{mode:?}: nothing appended before every lane is done"),
        }
        let mut completing = s.spec.build(destination_id, None);
        completing.open(&lane_ctx(1), Some(&last[1])).unwrap();
        completing.finalize().unwrap();
        completing.finalize_lanes(&last).unwrap();
        assert_eq!(count(), (before + 600, before + 600), "{mode:?}: every lane's committed rows, once");
        let staging = if mode == SyncMode::FullRefresh { "temp" } else { "incremental" };
        for k in 0..lanes {
            let t = TableRef::new("p", &s.ds.name, &format!("{destination_id}_{staging}_lane{k}"));
            assert!(s.ds.bq.get_table(&t).unwrap().is_none(), "{mode:?}: lane {k}'s staging table dropped");
        }
        // a crash before the job completed: the completing lane runs its finish again
        let mut again = s.spec.build(destination_id, None);
        again.open(&lane_ctx(2), Some(&last[2])).unwrap();
        again.finalize().unwrap();
        again.finalize_lanes(&last).unwrap();
        assert_eq!(count(), (before + 600, before + 600), "{mode:?}: published once");
    }
}

/// Typed columns of every type the emulator has, written through `descriptor`'s destination in
/// `mode` (published when staged): the values read back equal the values written. Without
/// `check_bytes` the BYTES value is not compared: bqemulator's NDJSON load stores a BYTES
/// column's base64 text undecoded (BigQuery decodes it, as its insertAll path does). GEOGRAPHY
/// reads back in DuckDB's WKT spelling (`POINT (1 2)`), compared without that space.
pub fn assert_every_type_round_trips(descriptor: &DestinationDescriptor, mode: SyncMode, check_bytes: bool) {
    // BIGNUMERIC: the emulator keeps it as DECIMAL(38, 18) (scripts/bqemulator_launch.py), so the
    // value has 38 digits, not BigQuery's 76.
    let columns = [
        ("i", "INTEGER", "NULLABLE"),
        ("f", "FLOAT", "NULLABLE"),
        ("n", "NUMERIC", "NULLABLE"),
        ("b", "BOOLEAN", "NULLABLE"),
        ("s", "STRING", "REQUIRED"),
        ("by", "BYTES", "NULLABLE"),
        ("d", "DATE", "NULLABLE"),
        ("dt", "DATETIME", "NULLABLE"),
        ("t", "TIME", "NULLABLE"),
        ("ts", "TIMESTAMP", "NULLABLE"),
        ("j", "JSON", "NULLABLE"),
        ("tags", "STRING", "REPEATED"),
        ("g", "GEOGRAPHY", "NULLABLE"),
        ("bn", "BIGNUMERIC", "NULLABLE"),
    ];
    let mut schema: String =
        columns.iter().map(|(n, t, m)| format!("      - {{name: {n}, type: {t}, mode: {m}}}\n")).collect();
    schema.push_str(
        "      - {name: who, type: RECORD, mode: NULLABLE, fields: [{name: id, type: INTEGER}, \
         {name: seen_at, type: TIMESTAMP}, {name: roles, type: STRING, mode: REPEATED}, \
         {name: home, type: RECORD, fields: [{name: city, type: STRING}]}]}\n",
    );
    let s = Setup::new(
        descriptor,
        &format!(
            "unnest: true\ndestination_id: all_types\nrecord_schemas:\n  - destination_id: all_types\n    \
             record_schema:\n{schema}"
        ),
        tokens(),
    );
    let mut d = s.spec.build("all_types", None);
    d.open(&ctx(mode), None).unwrap();
    let record = r#"{"i": 9007199254740993, "f": 1.5, "n": "123.456", "b": true, "s": "bizon \"é\" \\ ok",
        "by": "aGVsbG8=", "d": "2024-02-29", "dt": "2024-02-29T12:34:56.123456", "t": "12:34:56.250000",
        "ts": "2024-02-29T12:34:56.123456Z", "j": {"a": [1, 2], "b": null}, "tags": ["x", "y"],
        "g": "LINESTRING(1 2, 3.5 -4)", "who": {"id": 7, "seen_at": "2024-01-02T03:04:05Z", "roles": ["a", "b"],
        "home": {"city": "Zürich"}}, "bn": "-12345678901234567890.123456789012345678"}"#;
    let nulls = r#"{"s": "only the required one"}"#;
    let mut batch = RecordBatch::default();
    batch.push("r1", 1, record.as_bytes());
    batch.push("r2", 2, nulls.as_bytes());
    d.write(&batch, &meta(0)).unwrap();
    d.flush(&bizon_testkit::destination::next_cursor(0, 2)).unwrap();
    d.finalize().unwrap();
    // NUMERIC is compared by value (its text differs: DuckDB keeps the scale's trailing zeros).
    let rows = s.ds.rows(
        "SELECT CAST(i AS STRING), CAST(f AS STRING), CAST(n * 1000 AS INT64), CAST(b AS STRING), s, TO_BASE64(`by`), \
         CAST(d AS STRING), FORMAT_DATETIME('%Y-%m-%dT%H:%M:%E6S', dt), FORMAT_TIME('%H:%M:%E6S', t), \
         FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6SZ', ts, 'UTC'), TO_JSON_STRING(j), ARRAY_TO_STRING(tags, ','), \
         IFNULL(ARRAY_LENGTH(tags), 0), REPLACE(ST_ASTEXT(g), ' (', '('), CAST(who.id AS STRING), \
         FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%SZ', who.seen_at, 'UTC'), ARRAY_TO_STRING(who.roles, ','), who.home.city, \
         CAST(bn AS STRING) FROM `{ds}.all_types` ORDER BY s",
    );
    let mut got = rows[0].clone();
    if !check_bytes {
        got[5] = "aGVsbG8=".into();
    }
    assert_eq!(
        got,
        [
            "9007199254740993",
            "1.5",
            "123456",
            "true",
            "bizon \"é\" \\ ok",
            "aGVsbG8=",
            "2024-02-29",
            "2024-02-29T12:34:56.123456",
            "12:34:56.250000",
            "2024-02-29T12:34:56.123456Z",
            r#"{"a":[1,2],"b":null}"#,
            "x,y",
            "2",
            "LINESTRING(1 2, 3.5 -4)",
            "7",
            "2024-01-02T03:04:05Z",
            "a,b",
            "Zürich",
            "-12345678901234567890.123456789012345678"
        ]
    );
    // The record without the optional fields: NULLs, and an empty array for the REPEATED column.
    assert_eq!(rows[1][4], "only the required one");
    assert!(
        rows[1][..4].iter().chain(&rows[1][5..11]).chain(&rows[1][13..16]).chain(&rows[1][17..]).all(|c| c == "null"),
        "{:?}",
        rows[1]
    );
    assert_eq!(rows[1][12], "0");
}
