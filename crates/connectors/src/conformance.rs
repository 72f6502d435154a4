//! Every source and destination in the registry runs the testkit conformance suites, built from
//! a YAML config through its own descriptor (parse → build), as a user's config would be. A
//! connector added to the registry without a fixture here fails the test that walks the
//! registry: no connector can skip its suite. Fixtures that need a server use the local
//! PostgreSQL (a schema per test, dropped after) or librdkafka's in-process mock cluster.

use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Destination, Json, ReadContext, Source};
use bizon_testkit::destination::{run_smoke_suite, run_suite as destination_suite, Harness};
use bizon_testkit::fixtures::{read_ids, TempDir};
use bizon_testkit::source::run_suite as source_suite;
use serde_json::json;

use crate::descriptor::{DestinationDescriptor, DestinationSpec, SourceDescriptor, SourceSpec};
use crate::registry;

/// A source as a config would build it: the descriptor's parser on the `source:` mapping.
fn source_of(d: &SourceDescriptor, yaml_text: &str) -> (Arc<dyn SourceSpec>, SourceCommon) {
    let node = yaml::parse(yaml_text).expect("fixture YAML");
    let spec = (d.parse)(&node).unwrap_or_else(|e| panic!("{}: {}", d.name, e.message));
    let common: SourceCommon = from_node(&node, "source", (d.keys)()).expect("common keys");
    (spec, common)
}

/// A destination as a config would build it: the descriptor's parser on `destination.config`.
fn destination_of(d: &DestinationDescriptor, yaml_text: &str) -> Arc<dyn DestinationSpec> {
    let node = yaml::parse(yaml_text).expect("fixture YAML");
    (d.parse)(&node).unwrap_or_else(|e| panic!("{}: {}", d.name, e.message))
}

fn incremental(cursor_field: &str, watermark: Json) -> ReadContext {
    ReadContext {
        sync_mode: SyncMode::Incremental,
        watermark: Some(watermark),
        cursor_field: Some(cursor_field.into()),
    }
}

/// A name unique to this test process and call (schemas, topics, groups).
#[cfg(any(feature = "postgres", feature = "kafka"))]
fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("conf_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

#[test]
fn every_registered_source_runs_the_conformance_suite() {
    for d in registry::available(registry::SOURCES) {
        match d.name {
            "dummy" => {
                for stream in d.streams {
                    let (spec, common) = source_of(d, &format!("name: dummy\nstream: {stream}\n"));
                    source_suite(&|| spec.build(&common, &[]), &ReadContext::default(), 5);
                }
            }
            "generator" => {
                let text = "name: generator\nstream: records\ntotal: 95\npage_size: 10\nrecord_size: 120\nseed: 3\n";
                let (spec, common) = source_of(d, text);
                let make = || spec.build(&common, &[]);
                source_suite(&make, &ReadContext::default(), 95);
                source_suite(&make, &incremental("updated_at", json!("2024-01-01T00:00:00.019000+00:00")), 75);
            }
            "command" => {
                // a Singer tap: pages end at its STATEs; a restart from any of them re-reads nothing
                let dir = TempDir::new("conformance-command");
                let tap = dir.join("tap.py");
                std::fs::write(&tap, crate::sources::command::tests::SINGER_TAP).unwrap();
                let text = format!("name: command\nstream: users\ncommand: [python3, {}, '35']\n", tap.display());
                let (spec, common) = source_of(d, &text);
                source_suite(&|| spec.build(&common, &[]), &ReadContext::default(), 35);
            }
            #[cfg(feature = "postgres")]
            "postgres" => postgres_source(d),
            #[cfg(feature = "kafka")]
            "kafka" => kafka_source(d),
            #[cfg(feature = "http")]
            name @ ("rest" | "pokeapi" | "gbif" | "hubspot" | "cycle" | "sana_ai" | "periscope") => {
                crate::http::conformance::run(name, &|text| source_of(d, text))
            }
            #[cfg(feature = "http")]
            "notion" => {
                use bizon_testkit::notion::{FakeNotion, NotionOptions};
                let ws = crate::sources::notion::tests::workspace(3, 2);
                let dbs = ws.database_ids();
                let expected: usize =
                    dbs.iter().flat_map(|d| ws.database_page_ids(d)).map(|p| ws.block_ids_preorder(&p, 5).len()).sum();
                let notion = FakeNotion::start(ws, NotionOptions::default());
                let scope = format!("database_ids: [{}]\npage_size: 4\n", dbs.join(", "));
                let text = crate::sources::notion::tests::config(&notion.url(), "blocks_markdown", &scope);
                let (spec, common) = source_of(d, &text);
                source_suite(&|| spec.build(&common, &[]), &ReadContext::default(), expected);
            }
            #[cfg(feature = "bigquery")]
            "gsheets" => {
                use bizon_testkit::google::{FakeSheets, TokenServer};
                let mut rows = vec![vec!["id".to_owned(), "updated_at".to_owned()]];
                rows.extend((0..95).map(|i| vec![i.to_string(), format!("2024-01-01T00:00:{:02}Z", i % 60)]));
                let sheets = FakeSheets::start("Data sheet", rows, 200, false, None);
                let tokens = TokenServer::start("conformance@p.iam.gserviceaccount.com", 3600, false);
                let text = format!(
                    "name: gsheets\nstream: worksheet\nspreadsheet_url: {}\nworksheet_name: Data sheet\nbase_url: {}\n\
                     rows_per_page: 10\nservice_account_key: '{}'\n",
                    sheets.id,
                    sheets.api.url,
                    tokens.key.replace('\'', "''")
                );
                let (spec, common) = source_of(d, &text);
                source_suite(&|| spec.build(&common, &[]), &ReadContext::default(), 95);
            }
            other => panic!("source `{other}` is in the registry but has no conformance fixture in conformance.rs"),
        }
    }
}

#[test]
fn every_registered_destination_runs_the_conformance_suite() {
    for d in registry::available(registry::DESTINATIONS) {
        for mode in [SyncMode::FullRefresh, SyncMode::Incremental] {
            match d.name {
                "logger" => {
                    let spec = destination_of(d, "dummy: dummy\n");
                    run_smoke_suite(&|| spec.build("records", None), mode);
                }
                "null" => {
                    let spec = destination_of(d, "latency_ms: 0\n");
                    let (committed, _) = run_smoke_suite(&|| spec.build("records", None), mode);
                    assert_eq!(committed, json!({"records": 10}));
                }
                "command" => destination_suite(&|| Box::new(CommandHarness::new(d)), mode),
                "file" => {
                    destination_suite(&|| Box::new(FileHarness::new(d)), mode);
                    #[cfg(feature = "parquet")]
                    destination_suite(&|| Box::new(ParquetHarness::new(d)), mode);
                }
                #[cfg(feature = "postgres")]
                "postgres" => destination_suite(&|| Box::new(pg::PgHarness::new(d)), mode),
                #[cfg(feature = "bigquery")]
                "bigquery" | "bigquery_streaming" | "bigquery_streaming_v2" => {
                    destination_suite(&|| Box::new(bq::BqHarness::new(d)), mode)
                }
                other => {
                    panic!("destination `{other}` is in the registry but has no conformance fixture in conformance.rs")
                }
            }
        }
        // Streams routing: the router over one part per stream plus the dead-letter file runs the
        // same suite for every destination that writes parts.
        if d.name == "file" {
            destination_suite(&|| Box::new(RouterHarness::new(d)), SyncMode::Incremental);
        }
    }
}

/// The file destination, built from its config.
struct FileHarness {
    dir: TempDir,
    spec: Arc<dyn DestinationSpec>,
}

impl FileHarness {
    fn new(d: &DestinationDescriptor) -> Self {
        let dir = TempDir::new("conformance-file");
        let spec = destination_of(d, &format!("path: {}\n", dir.join("out/records.json").display()));
        FileHarness { dir, spec }
    }
}

impl Harness for FileHarness {
    fn make(&self) -> Box<dyn Destination> {
        self.spec.build("records", None)
    }
    fn published_ids(&self) -> Vec<u64> {
        read_ids(&self.dir.join("out/records.json"))
    }
}

/// The command destination running the example Singer target, read back from the target's file.
/// Not deduplicated: the suite's crash drops the destination before its unflushed batch left
/// bizon's buffer, so even an at-least-once target holds each record once.
struct CommandHarness {
    dir: TempDir,
    spec: Arc<dyn DestinationSpec>,
}

impl CommandHarness {
    fn new(d: &DestinationDescriptor) -> Self {
        let dir = TempDir::new("conformance-command");
        let target = dir.join("target.py");
        std::fs::write(&target, crate::destinations::command::tests::JSONL_TARGET).unwrap();
        let out = dir.join("out/records.jsonl");
        let spec = destination_of(d, &format!("command: [python3, {}, {}]\n", target.display(), out.display()));
        CommandHarness { dir, spec }
    }
}

impl Harness for CommandHarness {
    fn make(&self) -> Box<dyn Destination> {
        self.spec.build("records", None)
    }
    fn published_ids(&self) -> Vec<u64> {
        let rows = crate::destinations::command::tests::lines(&self.dir.join("out/records.jsonl"));
        rows.iter().map(|r| r["record_id"].as_str().expect("record_id").parse().expect("numeric id")).collect()
    }
}

/// The file destination with `format: parquet`: ids read back from its part files in order.
#[cfg(feature = "parquet")]
struct ParquetHarness {
    dir: TempDir,
    spec: Arc<dyn DestinationSpec>,
}

#[cfg(feature = "parquet")]
impl ParquetHarness {
    fn new(d: &DestinationDescriptor) -> Self {
        let dir = TempDir::new("conformance-parquet");
        let spec = destination_of(d, &format!("format: parquet\npath: {}\n", dir.join("out/records").display()));
        ParquetHarness { dir, spec }
    }
}

#[cfg(feature = "parquet")]
impl Harness for ParquetHarness {
    fn make(&self) -> Box<dyn Destination> {
        self.spec.build("records", None)
    }
    fn published_ids(&self) -> Vec<u64> {
        crate::parquet::read_strings(&self.dir.join("out/records"), "source_record_id")
            .unwrap_or_default()
            .iter()
            .map(|id| id.parse().expect("numeric id"))
            .collect()
    }
}

/// The router the engine builds for `streams:` with dead letters: route 0 → a file part, dead
/// letters → their own file. The suite's records all take route 0.
struct RouterHarness {
    file: FileHarness,
}

impl RouterHarness {
    fn new(d: &DestinationDescriptor) -> Self {
        RouterHarness { file: FileHarness::new(d) }
    }
}

impl Harness for RouterHarness {
    fn make(&self) -> Box<dyn Destination> {
        use crate::destinations::router::{Part, Router, Takes};
        let dead = crate::destinations::file::FileConfig {
            path: Some(self.file.dir.join("dead.json").display().to_string()),
            ..Default::default()
        };
        let parts = vec![
            Part {
                name: "records".into(),
                takes: Takes::Route(0),
                destination: self.file.make(),
                transactional: false,
            },
            Part {
                name: "dead letters".into(),
                takes: Takes::Route(bizon_core::record::DEAD_LETTER),
                destination: Box::new(crate::destinations::file::FileDestination::new(&dead, "dead")),
                transactional: false,
            },
        ];
        Box::new(Router::new(parts).expect("router"))
    }
    fn published_ids(&self) -> Vec<u64> {
        self.file.published_ids()
    }
}

/// A BigQuery destination against the local emulator, authenticated through a local token
/// endpoint with a key made for the test; the table is `records` in a dataset of its own.
#[cfg(feature = "bigquery")]
pub(crate) mod bq {
    use super::*;
    use crate::google::testing::{emulator, storage_write_key, Dataset, TokenServer};

    pub struct BqHarness {
        pub dataset: Dataset,
        _tokens: TokenServer,
        _dir: TempDir,
        spec: Arc<dyn DestinationSpec>,
    }

    impl BqHarness {
        pub fn new(d: &DestinationDescriptor) -> Self {
            let tokens = TokenServer::start("conformance@p.iam.gserviceaccount.com", 3600, false);
            let dataset = Dataset::new("conf", &tokens);
            let dir = TempDir::new("bq-key");
            let key = dir.join("key.json");
            std::fs::write(&key, &tokens.key).expect("key file");
            let grpc = storage_write_key(d.name);
            let spec = destination_of(
                d,
                &format!(
                    "project_id: p\ndataset_id: {ds}\napi_url: {url}\ndestination_id: p.{ds}.records\n{grpc}\
                     authentication:\n  service_account_key: {key}\n",
                    ds = dataset.name,
                    url = emulator(),
                    key = key.display()
                ),
            );
            BqHarness { dataset, _tokens: tokens, _dir: dir, spec }
        }
    }

    impl Harness for BqHarness {
        fn make(&self) -> Box<dyn Destination> {
            self.spec.build("records", None)
        }
        fn published_ids(&self) -> Vec<u64> {
            let sql = format!(
                "SELECT _source_record_id FROM `p.{}.records` ORDER BY CAST(_source_record_id AS INT64)",
                self.dataset.name
            );
            match self.dataset.bq.query(&sql) {
                Ok(r) => r.rows.iter().map(|row| row[0].as_str().expect("text").parse().expect("numeric id")).collect(),
                Err(_) => Vec::new(), // not published yet: no table
            }
        }
    }
}

#[cfg(feature = "postgres")]
pub(crate) mod pg {
    use super::*;

    pub fn client() -> postgres::Client {
        postgres::Client::connect("host=127.0.0.1 port=5432 user=postgres dbname=test", postgres::NoTls)
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/deps.sh --services starts it)")
    }

    /// A schema that is dropped with everything in it when the value goes.
    pub struct Schema(pub String);

    impl Schema {
        pub fn new(label: &str) -> Self {
            let name = unique(label);
            client().batch_execute(&format!("CREATE SCHEMA {name}")).expect("create schema");
            Schema(name)
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let _ = client().batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
        }
    }

    pub struct PgHarness {
        schema: Schema,
        spec: Arc<dyn DestinationSpec>,
    }

    impl PgHarness {
        pub fn new(d: &DestinationDescriptor) -> Self {
            let schema = Schema::new("pgdst");
            let spec = destination_of(
                d,
                &format!("host: 127.0.0.1\nport: 5432\ndatabase: test\nusername: postgres\nschema: {}\n", schema.0),
            );
            PgHarness { schema, spec }
        }
    }

    impl Harness for PgHarness {
        fn make(&self) -> Box<dyn Destination> {
            self.spec.build("records", None)
        }
        fn published_ids(&self) -> Vec<u64> {
            let sql =
                format!("SELECT source_record_id FROM {}.records ORDER BY bizon_loaded_at, bizon_id", self.schema.0);
            match client().query(&sql, &[]) {
                Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0).parse().expect("numeric id")).collect(),
                Err(_) => Vec::new(), // not published yet: no table
            }
        }
    }
}

#[cfg(feature = "postgres")]
fn postgres_source(d: &SourceDescriptor) {
    let schema = pg::Schema::new("pgsrc");
    pg::client()
        .batch_execute(&format!(
            "CREATE TABLE {s}.items (id bigint PRIMARY KEY, name text);
             INSERT INTO {s}.items SELECT i, 'n' || i FROM generate_series(1, 95) i;",
            s = schema.0
        ))
        .expect("source table");
    let text = format!(
        "name: postgres\nstream: {}.items\nhost: 127.0.0.1\nport: 5432\ndatabase: test\nusername: postgres\nbatch_size: 10\n",
        schema.0
    );
    let (spec, common) = source_of(d, &text);
    let make = || spec.build(&common, &[]);
    source_suite(&make, &ReadContext::default(), 95);
    source_suite(&make, &incremental("id", json!(20)), 75);
    assert_eq!(spec.list_streams().expect("list tables").iter().filter(|t| t.ends_with("items")).count(), 1);

    // A table without a key (bizon's own row layout has none) is read in block ranges: ~12 rows
    // per 8 KB block, pages of about 50 rows, and a hole of empty blocks where rows were deleted.
    pg::client()
        .batch_execute(&format!(
            "CREATE TABLE {s}.bare (n bigint, body text);
             INSERT INTO {s}.bare SELECT i, repeat('x', 600) FROM generate_series(1, 1000) i;
             DELETE FROM {s}.bare WHERE n BETWEEN 301 AND 700; ANALYZE {s}.bare;",
            s = schema.0
        ))
        .expect("keyless table");
    for key in ["", "primary_key: n\n"] {
        let text = format!(
            "name: postgres\nstream: {}.bare\nhost: 127.0.0.1\nport: 5432\ndatabase: test\nusername: postgres\nbatch_size: 50\n{key}",
            schema.0
        );
        let (spec, common) = source_of(d, &text);
        let make = || spec.build(&common, &[]);
        source_suite(&make, &ReadContext::default(), 600);
        source_suite(&make, &incremental("n", json!(900)), 100);
    }
}

#[cfg(feature = "kafka")]
fn kafka_source(d: &SourceDescriptor) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let topic = unique("topic");
    cluster.create_topic(&topic, 1, 1).expect("topic");
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    for i in 0..95 {
        let value = format!("{{\"id\":{i}}}");
        producer.send(BaseRecord::<(), str>::to(&topic).payload(&value)).expect("produce");
    }
    producer.flush(std::time::Duration::from_secs(10)).expect("flush");
    let text = format!(
        "name: kafka\nstream: topic\ntopic: {topic}\nbootstrap_servers: {}\nmessage_encoding: utf-8\nbatch_size: 10\ngroup_id: {}\nconsumer_timeout: 2\n",
        cluster.bootstrap_servers(),
        unique("group")
    );
    let (spec, common) = source_of(d, &text);
    source_suite(&|| spec.build(&common, &[]), &ReadContext::default(), 95);
}

#[test]
fn a_source_built_through_its_descriptor_reads_like_a_direct_one() {
    let d = registry::find(registry::SOURCES, &[], "generator").expect("generator");
    let (spec, common) = source_of(d, "name: generator\nstream: records\ntotal: 3\npage_size: 10\n");
    let mut s: Box<dyn Source> = spec.build(&common, &[]);
    let page = s.get(&Json::Null, &ReadContext::default()).expect("page");
    assert_eq!(page.records.len(), 3);
}
