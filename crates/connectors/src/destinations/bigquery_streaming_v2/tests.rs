//! `bigquery_streaming_v2` against the local BigQuery emulator (REST and Storage Write gRPC),
//! with a local token endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bizon_core::config::yaml;
use bizon_core::config::SyncMode;
use bizon_core::Destination;
use bizon_testkit::destination::next_cursor;

use super::DESCRIPTOR;
use crate::google::storage_write::{pb, Appended, Chunk, Rows, Schema};
use crate::google::testing::{
    assert_every_type_round_trips, assert_full_refresh_is_atomic, assert_lanes_publish_once, ctx, emulator_grpc, meta,
    records, tokens, Setup, TokenServer,
};

fn setup(extra: &str, tokens: TokenServer) -> Setup {
    Setup::new(&DESCRIPTOR, extra, tokens)
}

fn build(s: &Setup, id: &str) -> super::BigQueryStreamingV2 {
    let spec = super::config::parse_spec(&yaml::parse(&s.text).unwrap()).unwrap_or_else(|e| panic!("{}", e.message));
    super::BigQueryStreamingV2::new(Arc::new(spec), id)
}

#[test]
fn stream_mode_writes_bizons_columns_with_microseconds_through_committed_streams() {
    let s = setup("", tokens());
    let mut d = s.spec.build("creatures", None);
    assert_eq!(d.open(&ctx(SyncMode::Stream), None).unwrap(), serde_json::json!({}));
    d.write(&records(0, 3, |i| format!(r#"{{"id":{i},"name":"bizon \"{i}\""}}"#)), &meta(0)).unwrap();
    d.write(&records(3, 2, |i| format!(r#"{{"id":{i}}}"#)), &meta(1)).unwrap();
    d.flush(&next_cursor(1, 5)).unwrap();
    d.finalize().unwrap();
    let rows = s.ds.rows(
        "SELECT _source_record_id, _source_timestamp, _source_data, _bizon_extracted_at, _bizon_loaded_at, _bizon_id \
         FROM `{ds}._bizon_dummy_creatures` ORDER BY _source_record_id",
    );
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1][0], "1");
    assert_eq!(rows[1][1], "1600000000000002");
    let data: serde_json::Value = serde_json::from_str(&rows[1][2]).unwrap();
    assert_eq!(data, serde_json::json!({"id": 1, "name": "bizon \"1\""}));
    assert_eq!(rows[1][3], "1700000000123456");
    assert_eq!(rows[1][4], "1700000001654321");
    assert_eq!(rows[1][5], "0000000000000abc0000000000000001");
    assert_eq!(rows[4][5], "0000000000000abc0000000100000001");
    assert!(s.tokens.issued.load(Ordering::SeqCst) >= 1, "calls carried a token from the key's token_uri");
}

#[test]
fn a_repeated_append_at_an_offset_already_written_is_refused_not_written_twice() {
    let s = setup("destination_id: dup\n", tokens());
    let mut d = build(&s, "dup");
    d.open(&ctx(SyncMode::Stream), None).unwrap();
    let table = d.target.as_ref().unwrap().target().clone();
    let writer = d.writer.as_ref().unwrap();
    let stream = writer.create_stream(&table, pb::COMMITTED).unwrap();
    let enc = d.encoder.as_ref().unwrap();
    let row = |i: u64| {
        let mut out = Vec::new();
        for (f, name) in enc.names().enumerate() {
            match name {
                "_source_timestamp" | "_bizon_extracted_at" | "_bizon_loaded_at" => enc.put_int(&mut out, f, 1),
                "_source_data" => enc.put_text(&mut out, f, format!(r#"{{"id":{i}}}"#).as_bytes()),
                _ => enc.put_text(&mut out, f, i.to_string().as_bytes()),
            }
        }
        prost::bytes::Bytes::from(out)
    };
    let chunk = |offset: i64, ids: std::ops::Range<u64>| Chunk { offset, rows: Rows::Proto(ids.map(row).collect()) };
    let first = writer
        .append(vec![(stream.clone(), Schema::Proto(Box::new(enc.descriptor())), vec![chunk(0, 0..3), chunk(3, 3..5)])])
        .unwrap();
    assert!(matches!(first[..], [Appended::All { duplicates: 0 }]), "{first:?}");
    // The same two requests again (a writer that never saw the answers), then the next rows.
    let again = writer
        .append(vec![(
            stream.clone(),
            Schema::Proto(Box::new(enc.descriptor())),
            vec![chunk(0, 0..3), chunk(3, 3..5), chunk(5, 5..6)],
        )])
        .unwrap();
    assert!(matches!(again[..], [Appended::All { duplicates: 2 }]), "{again:?}");
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT _bizon_id) FROM `{ds}.dup`")[0], ["6", "6"]);
}

#[test]
fn a_batch_goes_to_several_pending_streams_at_once_and_lands_whole() {
    let s = setup("destination_id: wide\nmax_concurrent_threads: 4\nbq_max_rows_per_request: 10\n", tokens());
    let mut d = build(&s, "wide");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    for page in 0..3 {
        d.write(&records(page * 100, 100, |i| format!(r#"{{"id":{i}}}"#)), &meta(page as i64)).unwrap();
        d.flush(&next_cursor(page as i64, (page + 1) * 100)).unwrap();
    }
    // Staged rows are not published before finalize.
    assert!(s.ds.bq.get_table(&crate::google::bigquery::TableRef::new("p", &s.ds.name, "wide")).unwrap().is_none());
    d.finalize().unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT _bizon_id) FROM `{ds}.wide`")[0], ["300", "300"]);
    assert_eq!(d.duplicates_refused, 0);
}

#[test]
fn the_pages_of_one_flush_share_its_pending_streams_and_land_only_at_the_flush() {
    let s = setup("destination_id: per_flush\nmax_concurrent_threads: 2\nbq_max_rows_per_request: 30\n", tokens());
    let mut d = build(&s, "per_flush");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let staging = d.target.as_ref().unwrap().target().table.clone();
    let count = |s: &Setup| s.ds.rows(&format!("SELECT COUNT(*) FROM `{{ds}}.{staging}`"))[0][0].clone();
    // Three pages, one flush: two PENDING streams carry all of them, nothing visible before it.
    for page in 0..3u64 {
        d.write(&records(page * 50, 50, |i| format!(r#"{{"id":{i}}}"#)), &meta(page as i64)).unwrap();
        assert_eq!(d.streams.len(), 2, "page {page}");
        assert_eq!(d.streams.iter().map(|s| s.1).sum::<i64>(), (page as i64 + 1) * 50, "page {page}");
    }
    assert_eq!(count(&s), "0", "rows of an unflushed batch are visible");
    d.flush(&next_cursor(2, 150)).unwrap();
    assert!(d.streams.is_empty(), "the flush commits and forgets its streams");
    assert_eq!(count(&s), "150");
    // The next flush's pages go to new streams; both flushes publish once.
    d.write(&records(150, 50, |i| format!(r#"{{"id":{i}}}"#)), &meta(3)).unwrap();
    d.flush(&next_cursor(3, 200)).unwrap();
    d.finalize().unwrap();
    assert_eq!(s.ds.rows("SELECT COUNT(*), COUNT(DISTINCT _bizon_id) FROM `{ds}.per_flush`")[0], ["200", "200"]);
}

#[test]
fn arrow_rows_carry_bizons_layout_in_every_mode() {
    for (mode, id) in [(SyncMode::Stream, "arrow_stream"), (SyncMode::FullRefresh, "arrow_staged")] {
        let s = setup(
            &format!(
                "destination_id: {id}\nrow_format: arrow\nmax_concurrent_threads: 3\nbq_max_rows_per_request: 40\n"
            ),
            tokens(),
        );
        let mut d = build(&s, id);
        d.open(&ctx(mode), None).unwrap();
        for page in 0..2u64 {
            let batch = records(page * 100, 100, |i| format!(r#"{{"id":{i},"name":"bizon \"{i}\" é"}}"#));
            d.write(&batch, &meta(page as i64)).unwrap();
            d.flush(&next_cursor(page as i64, (page + 1) * 100)).unwrap();
        }
        d.finalize().unwrap();
        let rows = s.ds.rows(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT _bizon_id), MIN(_source_timestamp), MAX(_bizon_loaded_at) FROM `{{ds}}.{id}`"
        ));
        assert_eq!(rows[0], ["200", "200", "1600000000000001", "1700000001654321"], "{mode:?}");
        let one =
            s.ds.rows(&format!("SELECT _source_data, _bizon_id FROM `{{ds}}.{id}` WHERE _source_record_id = '101'"));
        let data: serde_json::Value = serde_json::from_str(&one[0][0]).unwrap();
        assert_eq!(data, serde_json::json!({"id": 101, "name": "bizon \"101\" é"}), "{mode:?}");
        assert_eq!(one[0][1], "0000000000000abc0000000100000001", "{mode:?}");
    }
    let e = super::config::parse_spec(
        &yaml::parse(&format!("project_id: p\ndataset_id: d\nrow_format: arrow\n{TYPED}")).unwrap(),
    )
    .unwrap_err();
    assert!(e.message.contains("row_format: arrow") && e.message.contains("unnest"), "{}", e.message);
}

#[test]
fn requests_stay_within_the_byte_limit() {
    let s = setup("destination_id: big\nbq_max_rows_per_request: 7\n", tokens());
    let mut d = build(&s, "big");
    d.max_request_bytes = 4096;
    d.open(&ctx(SyncMode::Incremental), None).unwrap();
    let big = "x".repeat(6000);
    let batch =
        records(
            0,
            20,
            |i| if i == 13 { format!(r#"{{"id":{i},"blob":"{big}"}}"#) } else { format!(r#"{{"id":{i}}}"#) },
        );
    d.write(&batch, &meta(0)).unwrap();
    d.flush(&next_cursor(0, 20)).unwrap();
    d.finalize().unwrap();
    let rows = s
        .ds
        .rows("SELECT COUNT(*), COUNT(DISTINCT _bizon_id), MAX(LENGTH(TO_JSON_STRING(_source_data))) FROM `{ds}.big`");
    assert_eq!(rows[0][..2], ["20", "20"]);
    assert!(rows[0][2].parse::<usize>().unwrap() > 6000, "the large row arrived whole: {rows:?}");
}

const TYPED: &str = "unnest: true\ndestination_id: typed\nrecord_schemas:\n  - destination_id: typed\n    record_schema:\n      \
                     - {name: id, type: INTEGER, mode: REQUIRED}\n      - {name: name, type: STRING, mode: NULLABLE}\n      \
                     - {name: at, type: TIMESTAMP, mode: NULLABLE}\n";

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
    assert!(e.contains("record `1`") && e.contains("column `id`") && e.contains("not a 64-bit integer"), "{e}");
    assert!(e.contains("on_error: dead_letter"), "{e}");
}

#[test]
fn with_dead_letters_refused_records_are_diverted_and_the_rest_published() {
    let s = setup(&format!("{TYPED}on_error: dead_letter\n"), tokens());
    let mut d = s.spec.build("typed", None);
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let batch = records(0, 6, |i| match i {
        1 => r#"{"id":"not a number"}"#.into(),
        3 => "[1, 2]".into(),
        4 => r#"{"id":4,"at":"yesterday"}"#.into(),
        _ => format!(r#"{{"id":{i},"name":"n{i}","at":"2024-01-0{}T00:00:00Z","ignored":true}}"#, i + 1),
    });
    d.write(&batch, &meta(0)).unwrap();
    let rejected = d.take_rejected();
    let ids: Vec<&str> = rejected.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["1", "3", "4"], "{rejected:?}");
    assert!(rejected[0].error.contains("column `id`") && rejected[0].error.contains("not a number"), "{rejected:?}");
    assert!(rejected[2].error.contains("column `at`") && rejected[2].error.contains("not a timestamp"), "{rejected:?}");
    assert_eq!(rejected[0].data, br#"{"id":"not a number"}"#);
    d.flush(&next_cursor(0, 6)).unwrap();
    d.finalize().unwrap();
    let rows = s.ds.rows("SELECT id, name, FORMAT_TIMESTAMP('%F', at, 'UTC') FROM `{ds}.typed` ORDER BY id");
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["0", "2", "5"]);
    assert_eq!(rows[1][1..], ["n2", "2024-01-03"]);
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
fn typed_columns_of_every_type_the_emulator_has_round_trip_in_stream_mode() {
    assert_every_type_round_trips(&DESCRIPTOR, SyncMode::Stream, true);
}

#[test]
fn typed_columns_of_every_type_the_emulator_has_round_trip_through_staging() {
    assert_every_type_round_trips(&DESCRIPTOR, SyncMode::FullRefresh, true);
}

#[test]
fn record_columns_need_their_fields_and_only_they_have_fields() {
    let parse = |schema: &str| {
        let text = format!(
            "project_id: p\ndataset_id: d\nunnest: true\ndestination_id: t\nrecord_schemas:\n  - destination_id: t\n    \
             record_schema:\n{schema}"
        );
        super::config::parse_spec(&yaml::parse(&text).unwrap()).map(|_| ()).map_err(|e| e.message)
    };
    let e = parse("      - {name: who, type: RECORD, mode: NULLABLE}\n").unwrap_err();
    assert!(e.contains("`who`") && e.contains("under `fields`"), "{e}");
    let e = parse("      - {name: n, type: INTEGER, fields: [{name: x, type: STRING}]}\n").unwrap_err();
    assert!(e.contains("`n`") && e.contains("`fields` belong to RECORD columns"), "{e}");
    let e = parse("      - {name: r, type: STRUCT, fields: [{name: x, type: TEXT}]}\n").unwrap_err();
    assert!(e.contains("`r`") && e.contains("`TEXT` is not a BigQuery column type"), "{e}");
    assert_eq!(parse("      - {name: r, type: STRUCT, fields: [{name: x, type: STRING}]}\n"), Ok(()));
}

#[test]
fn a_storage_endpoint_that_is_not_a_url_is_a_config_error_naming_the_key() {
    let text = "project_id: p\ndataset_id: d\nstorage_write_url: bigquerystorage.googleapis.com:443\n";
    let e = super::config::parse_spec(&yaml::parse(text).unwrap()).unwrap_err();
    assert!(
        e.message.contains("storage_write_url") && e.message.contains("bigquerystorage.googleapis.com:443"),
        "{}",
        e.message
    );
    let e = super::config::parse_spec(
        &yaml::parse("project_id: p\ndataset_id: d\nbq_max_rows_per_request: 20000\n").unwrap(),
    )
    .unwrap_err();
    assert!(e.message.contains("20000"), "{}", e.message);
}

#[test]
fn an_unreachable_storage_endpoint_fails_the_write_as_transient_naming_it() {
    let s = setup("destination_id: t\n", tokens());
    let text = s.text.replace(&emulator_grpc(), "http://127.0.0.1:9");
    let spec = super::config::parse_spec(&yaml::parse(&text).unwrap()).unwrap();
    let mut d = super::BigQueryStreamingV2::new(Arc::new(spec), "t");
    d.open(&ctx(SyncMode::FullRefresh), None).unwrap();
    let e = d.write(&records(0, 2, |i| format!(r#"{{"id":{i}}}"#)), &meta(0)).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("CreateWriteStream"), "{e}");
}

#[test]
fn lanes_stage_their_own_rows_and_the_last_lane_publishes_every_lane_once() {
    let s = setup("destination_id: lanes\n", tokens());
    assert_lanes_publish_once(&s, "lanes");
}
