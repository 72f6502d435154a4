//! `bigquery_streaming` against the local BigQuery emulator, with a local token endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bizon_core::config::yaml;
use bizon_core::config::SyncMode;
use bizon_core::{Destination, DestinationContext};
use bizon_testkit::destination::next_cursor;

use super::DESCRIPTOR;
use crate::google::testing::{
    assert_every_type_round_trips, assert_full_refresh_is_atomic, assert_lanes_publish_once, ctx, emulator, meta,
    records, tokens, Setup, TokenServer,
};

fn setup(extra: &str, tokens: TokenServer) -> Setup {
    Setup::new(&DESCRIPTOR, extra, tokens)
}

#[test]
fn stream_mode_writes_bizons_columns_to_the_default_table_with_microseconds() {
    let s = setup("", tokens());
    let mut d = s.spec.build("creatures", None);
    assert_eq!(d.open(&ctx(SyncMode::Stream), None).unwrap(), serde_json::json!({}));
    d.write(&records(0, 3, |i| format!(r#"{{"id":{i},"name":"bizon \"{i}\""}}"#)), &meta(0)).unwrap();
    d.flush(&next_cursor(0, 3)).unwrap();
    d.finalize().unwrap();
    // bizon's default name: `_bizon_<source>_<stream>` in the dataset (created when missing).
    let rows = s.ds.rows(
        "SELECT _source_record_id, _source_timestamp, _source_data, _bizon_extracted_at, _bizon_loaded_at, _bizon_id \
         FROM `{ds}._bizon_dummy_creatures` ORDER BY _source_record_id",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], "1");
    // TIMESTAMP cells come back as µs: nothing truncated to seconds (bizon drops them).
    assert_eq!(rows[1][1], "1600000000000002");
    let data: serde_json::Value = serde_json::from_str(&rows[1][2]).unwrap();
    assert_eq!(data, serde_json::json!({"id": 1, "name": "bizon \"1\""}));
    assert_eq!(rows[1][3], "1700000000123456");
    assert_eq!(rows[1][4], "1700000001654321");
    assert_eq!(rows[1][5], "0000000000000abc0000000000000001");
    assert!(s.tokens.issued.load(Ordering::SeqCst) >= 1, "requests carried a token from the key's token_uri");
}

#[test]
fn requests_stay_within_the_limits_and_rows_too_large_go_through_a_load_job() {
    let s = setup("", tokens());
    let text = format!(
        "project_id: p\ndataset_id: {}\napi_url: {}\nbq_max_rows_per_request: 7\ndestination_id: big\n\
         authentication:\n  service_account_key: '{}'\n",
        s.ds.name,
        emulator(),
        s.tokens.key.replace('\'', "''")
    );
    let spec = super::config::parse_spec(&yaml::parse(&text).unwrap()).unwrap_or_else(|e| panic!("{}", e.message));
    assert!(!format!("{spec:?}").contains("PRIVATE KEY"), "the key never shows in Debug");
    let mut d = super::BigQueryStreaming::new(Arc::new(spec), "big");
    d.max_request_bytes = 4096;
    d.open(&ctx(SyncMode::Incremental), None).unwrap();
    let big = "x".repeat(6000);
    let batch =
        records(
            0,
            20,
            |i| {
                if i == 13 {
                    format!(r#"{{"id":{i},"blob":"{big}"}}"#)
                } else {
                    format!(r#"{{"id":{i}}}"#)
                }
            },
        );
    d.write(&batch, &meta(0)).unwrap();
    d.flush(&next_cursor(0, 20)).unwrap();
    d.finalize().unwrap();
    let rows = s
        .ds
        .rows("SELECT COUNT(*), COUNT(DISTINCT _bizon_id), MAX(LENGTH(TO_JSON_STRING(_source_data))) FROM `{ds}.big`");
    assert_eq!(rows[0][0], "20");
    assert_eq!(rows[0][1], "20");
    assert!(rows[0][2].parse::<usize>().unwrap() > 6000, "the large row arrived whole: {rows:?}");
    // the staging table is gone once published
    let staging = crate::google::bigquery::TableRef::new("p", &s.ds.name, "big_incremental");
    assert!(s.ds.bq.get_table(&staging).unwrap().is_none());
}

const TYPED: &str = "unnest: true\ndestination_id: typed\nrecord_schemas:\n  - destination_id: typed\n    record_schema:\n      \
                     - {name: id, type: INTEGER, mode: REQUIRED}\n      - {name: name, type: STRING, mode: NULLABLE}\n      \
                     - {name: attrs, type: JSON, mode: NULLABLE}\n";

#[test]
fn a_value_its_column_refuses_fails_the_run_naming_the_record_and_the_column() {
    let s = setup(TYPED, tokens());
    let mut d = s.spec.build("typed", None);
    d.open(&ctx(SyncMode::Incremental), None).unwrap();
    let e = d
        .write(
            &records(0, 3, |i| if i == 1 { r#"{"id":"not a number"}"#.into() } else { format!(r#"{{"id":{i}}}"#) }),
            &meta(0),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("record `1`") && e.contains("column `") && e.contains("not a number"), "{e}");
    assert!(e.contains("on_error: dead_letter"), "{e}");
}

#[test]
fn with_dead_letters_refused_rows_are_diverted_and_the_rest_published() {
    let s = setup(&format!("{TYPED}on_error: dead_letter\n"), tokens());
    let mut d = s.spec.build("typed", None);
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let batch = records(0, 5, |i| match i {
        1 => r#"{"id":"not a number"}"#.into(),
        3 => "[1, 2]".into(),
        _ => format!(r#"{{"id":{i},"name":"n{i}","attrs":{{"k":[{i}]}},"ignored":true}}"#),
    });
    d.write(&batch, &meta(0)).unwrap();
    let rejected = d.take_rejected();
    let ids: Vec<&str> = rejected.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["3", "1"], "{rejected:?}");
    assert!(rejected[1].error.contains("not a number"), "{}", rejected[1].error);
    assert_eq!(rejected[1].data, br#"{"id":"not a number"}"#);
    d.flush(&next_cursor(0, 5)).unwrap();
    d.finalize().unwrap();
    let rows = s.ds.rows("SELECT id, name, TO_JSON_STRING(attrs) FROM `{ds}.typed` ORDER BY id");
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["0", "2", "4"]);
    assert_eq!(rows[1][1], "n2");
    let attrs: serde_json::Value = serde_json::from_str(&rows[1][2]).unwrap();
    assert_eq!(attrs, serde_json::json!({"k": [2]}));
}

#[test]
fn full_refresh_readers_see_the_old_table_or_the_new_one_never_a_part() {
    let s = setup("destination_id: swap\n", tokens());
    assert_full_refresh_is_atomic(&s, "swap");
}

#[test]
fn a_revoked_key_fails_with_an_error_naming_its_client_email_and_no_secret() {
    let s = setup("destination_id: t\n", TokenServer::start("revoked@p.iam.gserviceaccount.com", 3600, true));
    let mut d = s.spec.build("t", None);
    let e = d.open(&ctx(SyncMode::Stream), None).unwrap_err().to_string();
    assert!(e.contains("revoked@p.iam.gserviceaccount.com") && e.contains("invalid_grant"), "{e}");
    assert!(!e.contains("PRIVATE KEY") && !e.contains("assertion="), "{e}");
}

#[test]
fn a_token_expiring_mid_run_is_refreshed_and_the_run_goes_on() {
    let s = setup("destination_id: t\n", TokenServer::start("short@p.iam.gserviceaccount.com", 1, false));
    let mut d = s.spec.build("t", None);
    d.open(&ctx(SyncMode::Stream), None).unwrap();
    let before = s.tokens.issued.load(Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    d.write(&records(0, 2, |i| format!(r#"{{"id":{i}}}"#)), &meta(0)).unwrap();
    d.flush(&next_cursor(0, 2)).unwrap();
    assert!(s.tokens.issued.load(Ordering::SeqCst) > before, "a new token was fetched after the first expired");
    assert_eq!(s.ds.rows("SELECT COUNT(*) FROM `{ds}.t`")[0][0], "2");
}

#[test]
fn typed_columns_of_every_type_the_emulator_has_round_trip() {
    assert_every_type_round_trips(&DESCRIPTOR, SyncMode::Stream, true);
}

#[test]
fn an_incremental_job_resumed_after_publishing_but_before_dropping_its_staging_appends_nothing_twice() {
    // Typed (`unnest`) tables have no `_bizon_id` to tell published rows apart: the marker does.
    let s = setup(TYPED, tokens());
    let spec = super::config::parse_spec(&yaml::parse(&s.text).unwrap()).unwrap();
    let mut first = super::BigQueryStreaming::new(Arc::new(spec.clone()), "typed");
    first.open(&ctx(SyncMode::Incremental), None).unwrap();
    first.write(&records(0, 5, |i| format!(r#"{{"id":{i},"name":"n{i}"}}"#)), &meta(0)).unwrap();
    let token = first.flush(&next_cursor(0, 5)).unwrap();
    // The job ends: its rows are published, then the process dies before dropping the staging table.
    first.target.as_ref().unwrap().publish().unwrap();
    drop(first);
    assert_eq!(s.ds.rows("SELECT COUNT(*) FROM `{ds}.typed`")[0][0], "5");
    let mut resumed = super::BigQueryStreaming::new(Arc::new(spec), "typed");
    resumed.open(&ctx(SyncMode::Incremental), Some(&token)).unwrap();
    resumed.finalize().unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT id) FROM `{ds}.typed`")[0], ["5", "5"]);
    let staging = crate::google::bigquery::TableRef::new("p", &s.ds.name, "typed_incremental");
    assert!(s.ds.bq.get_table(&staging).unwrap().is_none(), "the staging table is dropped");
    assert_eq!(s.ds.rows("SELECT COUNT(*) FROM `{ds}._bizon_published`")[0][0], "0", "and the marker removed");
    // A later job of the same stream appends its own rows.
    let mut next = s.spec.build("typed", None);
    let later = DestinationContext { job_id: "job-2".into(), ..ctx(SyncMode::Incremental) };
    next.open(&later, None).unwrap();
    next.write(&records(5, 3, |i| format!(r#"{{"id":{i},"name":"n{i}"}}"#)), &meta(0)).unwrap();
    next.flush(&next_cursor(0, 3)).unwrap();
    next.finalize().unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT id) FROM `{ds}.typed`")[0], ["8", "8"]);
}

#[test]
fn lanes_stage_their_own_rows_and_the_last_lane_publishes_every_lane_once() {
    let s = setup("destination_id: lanes\n", tokens());
    assert_lanes_publish_once(&s, "lanes");
}
