//! `bigquery` (load jobs) against the local BigQuery emulator, with a local token endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bizon_core::config::{yaml, SyncMode};
use bizon_core::{Destination, DestinationContext};
use bizon_testkit::destination::next_cursor;

use super::{BigQueryBatch, DESCRIPTOR};
use crate::google::bigquery::TableRef;
use crate::google::testing::{
    assert_every_type_round_trips, assert_full_refresh_is_atomic, assert_lanes_publish_once, ctx, meta, records,
    tokens, Setup,
};
use crate::google::upload::UPLOAD_UNIT;

fn setup(extra: &str) -> Setup {
    Setup::new(&DESCRIPTOR, extra, tokens())
}

/// The destination with small upload chunks (many chunks per load file).
fn batch(s: &Setup, destination_id: &str) -> BigQueryBatch {
    let spec = super::config::parse_spec(&yaml::parse(&s.text).unwrap()).unwrap();
    let mut d = BigQueryBatch::new(Arc::new(spec), destination_id);
    d.chunk = UPLOAD_UNIT;
    d.row_group_rows = 1000;
    d
}

#[test]
fn stream_mode_loads_bizons_batch_columns_from_parquet_with_microseconds() {
    let s = setup("create_dataset: true\n");
    let mut d = s.spec.build("creatures", None);
    assert_eq!(d.open(&ctx(SyncMode::Stream), None).unwrap(), serde_json::json!({}));
    d.write(&records(0, 3, |i| format!(r#"{{"id":{i},"name":"bizon \"{i}\" é"}}"#)), &meta(0)).unwrap();
    d.flush(&next_cursor(0, 3)).unwrap();
    d.finalize().unwrap();
    let rows = s.ds.rows(
        "SELECT _source_record_id, _source_timestamp, _source_data, _bizon_extracted_at, _bizon_loaded_at, _bizon_id \
         FROM `{ds}._bizon_dummy_creatures` ORDER BY _source_record_id",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], "1");
    assert_eq!(rows[1][1], "1600000000000002");
    // bizon's batch layout: `_source_data` is the record's JSON text, a STRING.
    assert_eq!(rows[1][2], r#"{"id":1,"name":"bizon \"1\" é"}"#);
    assert_eq!(rows[1][3], "1700000000123456");
    assert_eq!(rows[1][4], "1700000001654321");
    assert_eq!(rows[1][5], "0000000000000abc0000000000000001");
    let table = s.ds.bq.get_table(&TableRef::new("p", &s.ds.name, "_bizon_dummy_creatures")).unwrap().unwrap();
    let types: Vec<&str> =
        table["schema"]["fields"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["STRING", "TIMESTAMP", "STRING", "TIMESTAMP", "TIMESTAMP", "STRING"]);
    assert!(s.tokens.issued.load(Ordering::SeqCst) >= 1, "requests carried a token from the key's token_uri");
}

#[test]
fn a_missing_dataset_is_an_error_unless_create_dataset() {
    let s = setup("");
    let text = s.text.replacen(&format!("dataset_id: {}\n", s.ds.name), "dataset_id: nope_not_here\n", 1);
    let spec = super::config::parse_spec(&yaml::parse(&text).unwrap()).unwrap();
    let e = BigQueryBatch::new(Arc::new(spec), "t").open(&ctx(SyncMode::FullRefresh), None).unwrap_err().to_string();
    assert!(e.contains("p.nope_not_here does not exist") && e.contains("create_dataset: true"), "{e}");
}

#[test]
fn bizons_keys_parse_and_a_csv_buffer_is_refused_where_it_is_written() {
    let ok =
        "project_id: p\ndataset_id: d\ngcs_buffer_bucket: my-bucket\ngcs_buffer_format: parquet\nasync_load: true\n\
              load_files_per_job: 5\nload_max_in_flight_jobs: 2\ntime_partitioning: DAY\nenforce_partitioning: true\n\
              buffer_size: 400\n";
    let spec = super::config::parse_spec(&yaml::parse(ok).unwrap()).unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(spec.config.gcs_buffer_bucket.as_deref(), Some("my-bucket"));
    assert_eq!(spec.config.load_files_per_job, 5);
    let e = super::config::parse_spec(&yaml::parse("project_id: p\ndataset_id: d\ngcs_buffer_format: csv\n").unwrap())
        .unwrap_err();
    assert!(e.message.contains("gcs_buffer_format: csv is not supported"), "{}", e.message);
    assert_eq!(e.path, "destination.config.gcs_buffer_format");
    let e = super::config::parse_spec(&yaml::parse("project_id: p\ndataset_id: d\nload_files_per_job: 0\n").unwrap())
        .unwrap_err();
    assert!(e.message.contains("load_files_per_job is 0"), "{}", e.message);
}

#[test]
fn a_file_sent_in_many_chunks_loads_every_row_once() {
    let s = setup("destination_id: chunks\n");
    let mut d = batch(&s, "chunks");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    // ~1 MB of Parquet over 4 pages: several 256 KiB chunks, one load job.
    for page in 0..4u64 {
        let rows =
            records(page * 5000, 5000, |i| format!(r#"{{"id":{i},"pad":"{:x}"}}"#, i.wrapping_mul(0x9e3779b97f4a7c15)));
        d.write(&rows, &meta(page as i64)).unwrap();
    }
    d.flush(&next_cursor(3, 20_000)).unwrap();
    d.finalize().unwrap();
    assert_eq!(
        s.ds.rows(
            "SELECT COUNT(*), COUNT(DISTINCT _bizon_id), MIN(CAST(_source_record_id AS INT64)), \
                   MAX(CAST(_source_record_id AS INT64)) FROM `{ds}.chunks`"
        )[0],
        ["20000", "20000", "0", "19999"]
    );
    assert_eq!(d.loads, 1, "one load job per flush");
    assert!(d.chunks >= 3, "the file went in several chunks: {}", d.chunks);
    let staging = TableRef::new("p", &s.ds.name, "chunks_temp");
    assert!(s.ds.bq.get_table(&staging).unwrap().is_none(), "the staging table is dropped");
}

#[test]
fn a_resumed_job_publishes_the_committed_loads_and_not_the_crashed_attempts_tail() {
    for mode in [SyncMode::FullRefresh, SyncMode::Incremental] {
        let s = setup("destination_id: resumed\n");
        let page = |d: &mut BigQueryBatch, it: u64| {
            d.write(&records(it * 100, 100, |i| format!(r#"{{"id":{i}}}"#)), &meta(it as i64)).unwrap();
            d.flush(&next_cursor(it as i64, (it + 1) * 100)).unwrap()
        };
        let mut first = batch(&s, "resumed");
        first.open(&ctx(mode), None).unwrap();
        page(&mut first, 0);
        let committed = page(&mut first, 1);
        // Pages 2 and 3 are loaded, but the process dies before the engine commits them.
        page(&mut first, 2);
        page(&mut first, 3);
        drop(first);
        let mut resumed = batch(&s, "resumed");
        resumed.open(&ctx(mode), Some(&committed)).unwrap();
        for it in 2..5 {
            page(&mut resumed, it);
        }
        resumed.finalize().unwrap();
        assert_eq!(
            s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT _source_record_id) FROM `{ds}.resumed`")[0],
            ["500", "500"],
            "{mode:?}"
        );
        if mode == SyncMode::Incremental {
            // A later incremental job appends its own rows.
            let mut next = batch(&s, "resumed");
            next.open(&DestinationContext { job_id: "job-2".into(), ..ctx(mode) }, None).unwrap();
            next.write(&records(500, 50, |i| format!(r#"{{"id":{i}}}"#)), &meta(0)).unwrap();
            next.flush(&next_cursor(0, 50)).unwrap();
            next.finalize().unwrap();
            assert_eq!(s.ds.rows("SELECT COUNT(DISTINCT _source_record_id) FROM `{ds}.resumed`")[0][0], "550");
        }
    }
}

const TYPED: &str = "unnest: true\ndestination_id: typed\nrecord_schemas:\n  - destination_id: typed\n    record_schema:\n      \
                     - {name: id, type: INTEGER, mode: REQUIRED}\n      - {name: name, type: STRING, mode: NULLABLE}\n      \
                     - {name: ts, type: TIMESTAMP, mode: NULLABLE}\n      - {name: attrs, type: JSON, mode: NULLABLE}\n";

#[test]
fn typed_columns_load_from_json_lines_and_publish_once() {
    let s = setup(TYPED);
    let mut d = batch(&s, "typed");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let rows = records(0, 3, |i| {
        format!(r#"{{"id":{i},"name":"n{i}","ts":"2024-02-29T12:34:56.{i}00000Z","attrs":{{"k":[{i}]}},"extra":1}}"#)
    });
    d.write(&rows, &meta(0)).unwrap();
    d.flush(&next_cursor(0, 3)).unwrap();
    d.finalize().unwrap();
    let got = s.ds.rows(
        "SELECT id, name, FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6SZ', ts, 'UTC'), TO_JSON_STRING(attrs) \
         FROM `{ds}.typed` ORDER BY id",
    );
    assert_eq!(got.len(), 3);
    assert_eq!(got[2][..3], ["2", "n2", "2024-02-29T12:34:56.200000Z"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&got[2][3]).unwrap(), serde_json::json!({"k": [2]}));
    // The published table has the record schema's columns only.
    let table = s.ds.bq.get_table(&TableRef::new("p", &s.ds.name, "typed")).unwrap().unwrap();
    let names: Vec<&str> =
        table["schema"]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "name", "ts", "attrs"]);
}

#[test]
fn typed_columns_of_every_type_the_emulator_has_round_trip_through_a_staged_load() {
    // BYTES not compared: the emulator's NDJSON load keeps the base64 text (BigQuery decodes it).
    assert_every_type_round_trips(&DESCRIPTOR, SyncMode::FullRefresh, false);
}

#[test]
fn a_value_its_column_refuses_fails_the_write_naming_the_record_and_the_column() {
    let s = setup(TYPED);
    let mut d = batch(&s, "typed");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let e = d
        .write(
            &records(0, 2, |i| if i == 1 { r#"{"id":"not a number"}"#.into() } else { format!(r#"{{"id":{i}}}"#) }),
            &meta(0),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("record `1`") && e.contains("column `id`") && e.contains("not a 64-bit integer"), "{e}");
    assert!(e.contains("typed_temp") && e.contains("on_error: dead_letter"), "{e}");
    let e = {
        let mut d = batch(&s, "typed");
        d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
        d.write(&records(0, 1, |_| "[1]".into()), &meta(0)).unwrap_err().to_string()
    };
    assert!(e.contains("record `0`") && e.contains("not a JSON object"), "{e}");
}

#[test]
fn with_dead_letters_refused_records_are_diverted_and_the_rest_loaded() {
    let s = setup(&format!("{TYPED}on_error: dead_letter\n"));
    let mut d = batch(&s, "typed");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let rows = records(0, 5, |i| match i {
        1 => r#"{"id":"not a number"}"#.into(),
        2 => r#"{"id":2,"ts":"the day after"}"#.into(),
        3 => "[3]".into(),
        _ => format!(r#"{{"id":{i},"name":"n{i}"}}"#),
    });
    d.write(&rows, &meta(0)).unwrap();
    let rejected = d.take_rejected();
    let ids: Vec<&str> = rejected.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"], "{rejected:?}");
    assert!(rejected[1].error.contains("column `ts`") && rejected[1].error.contains("not a timestamp"), "{rejected:?}");
    assert_eq!(rejected[0].data, br#"{"id":"not a number"}"#);
    d.flush(&next_cursor(0, 5)).unwrap();
    d.finalize().unwrap();
    let got = s.ds.rows("SELECT id, name FROM `{ds}.typed` ORDER BY id");
    assert_eq!(got, [["0", "n0"], ["4", "n4"]]);
}

#[test]
fn full_refresh_readers_see_the_old_table_or_the_new_one_never_a_part() {
    let s = setup("destination_id: swap\n");
    assert_full_refresh_is_atomic(&s, "swap");
}

/// With `gcs_buffer_bucket`, as bizon: each load file is uploaded to the bucket in chunks, loaded
/// by its gs:// URI with a job id of our own, and removed once loaded; a crashed attempt's loads
/// are not published.
#[test]
fn with_a_bucket_files_are_staged_in_cloud_storage_loaded_by_uri_and_removed() {
    let gcs = crate::google::testing::gcs_emulator();
    let s = setup(&format!("destination_id: staged\ngcs_buffer_bucket: bizon-test\ngcs_url: {gcs}\n"));
    let page = |d: &mut BigQueryBatch, it: u64| {
        let rows =
            records(it * 3000, 3000, |i| format!(r#"{{"id":{i},"pad":"{:x}"}}"#, i.wrapping_mul(0x9e3779b97f4a7c15)));
        d.write(&rows, &meta(it as i64)).unwrap();
        d.flush(&next_cursor(it as i64, (it + 1) * 3000)).unwrap()
    };
    let mut first = batch(&s, "staged");
    first.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let committed = page(&mut first, 0);
    page(&mut first, 1); // loaded, never committed
    assert!(first.chunks >= 2, "files went in chunks: {}", first.chunks);
    drop(first);
    let mut resumed = batch(&s, "staged");
    resumed.open(&ctx(SyncMode::FullRefresh), Some(&committed)).unwrap();
    page(&mut resumed, 1);
    page(&mut resumed, 2);
    resumed.finalize().unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT _source_record_id) FROM `{ds}.staged`")[0], ["9000", "9000"]);
    // Every job loaded from the bucket, and nothing is left in it.
    let http = s.ds.bq.http();
    let listed = http
        .send(
            &crate::http::client::Request::get(format!("{gcs}/storage/v1/b/bizon-test/o"))
                .query("prefix", "dummy/creatures/"),
        )
        .unwrap()
        .json()
        .unwrap();
    assert!(listed.get("items").and_then(serde_json::Value::as_array).is_none_or(Vec::is_empty), "{listed}");
    assert_eq!(resumed.staged_files, 2, "both of the resumed run's files went through the bucket");
}

/// A load job submitted again with the same id (a request retried after its answer was lost) is
/// recognised as the job that ran: the rows are loaded once.
#[test]
fn a_load_submitted_twice_with_one_job_id_loads_once() {
    let gcs_url = crate::google::testing::gcs_emulator();
    let s = setup("");
    let table = TableRef::new("p", &s.ds.name, "twice");
    let columns = [crate::google::table::Column::new("id", "INT64", "NULLABLE")];
    crate::google::table::ensure_table(&s.ds.bq, &table, &columns, None, None).unwrap();
    let gcs = crate::google::storage::Storage::new(s.ds.bq.shared_http(), Some(&gcs_url));
    let object = format!("twice/{}.json", s.ds.name);
    let mut upload = gcs.start_upload("bizon-test", &object).unwrap();
    upload.send(b"{\"id\":1}\n{\"id\":2}\n".to_vec(), true, &[]).unwrap();
    let load = serde_json::json!({
        "destinationTable": {"projectId": "p", "datasetId": s.ds.name, "tableId": "twice"},
        "sourceFormat": "NEWLINE_DELIMITED_JSON",
        "sourceUris": [format!("gs://bizon-test/{object}")],
        "writeDisposition": "WRITE_APPEND",
    });
    let job_id = format!("bizon_test_{}", s.ds.name);
    s.ds.bq.load_uris(load.clone(), &job_id, "first").unwrap();
    s.ds.bq.load_uris(load, &job_id, "again").unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*) FROM `{ds}.twice`")[0][0], "2");
    gcs.delete("bizon-test", &object).unwrap();
}

#[test]
fn lanes_stage_their_own_rows_and_the_last_lane_publishes_every_lane_once() {
    let s = setup("destination_id: lanes\n");
    assert_lanes_publish_once(&s, "lanes");
}
