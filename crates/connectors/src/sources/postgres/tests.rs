//! The block-range paging of tables without an indexed key, against the test server (the
//! conformance suite reads such tables too; these tests check what it cannot see).

use bizon_core::config::SyncMode;
use bizon_core::{Json, ReadContext, Source};
use serde_json::json;

use super::{next_span, Paging, PostgresSource, PostgresSourceConfig};
use crate::conformance::pg::{client, Schema};

/// The test server, `schema` as the default schema, pages of `batch_size` rows.
fn config(schema: &Schema, primary_key: Option<&str>, batch_size: u64) -> PostgresSourceConfig {
    PostgresSourceConfig {
        host: Some("127.0.0.1".into()),
        port: Some(5432),
        database: "test".into(),
        username: Some("postgres".into()),
        password: None,
        schema: Some(schema.0.clone()),
        sslmode: Some(crate::pg::SslMode::Disable),
        sslrootcert: None,
        query: None,
        primary_key: primary_key.map(str::to_owned),
        batch_size,
    }
}

/// bizon's own row layout (no primary key), `n` rows whose bizon_id is `id-<i>`.
fn bizon_layout(schema: &Schema, n: u32) {
    client()
        .batch_execute(&format!(
            "CREATE TABLE {s}.rows (bizon_id text NOT NULL, bizon_extracted_at timestamp NOT NULL, \
             bizon_loaded_at timestamp NOT NULL, source_record_id text NOT NULL, source_timestamp timestamp NOT NULL, \
             source_data jsonb NOT NULL);
             INSERT INTO {s}.rows SELECT 'id-' || i, now(), now(), i::text, now(), jsonb_build_object('i', i, 'pad', repeat('p', 200)) \
             FROM generate_series(1, {n}) i; ANALYZE {s}.rows;",
            s = schema.0
        ))
        .expect("bizon-layout table");
}

/// Every page of a full read: (ids of each page, the pagination after each).
fn read_all(source: &mut PostgresSource, ctx: &ReadContext) -> (Vec<Vec<String>>, Vec<Json>) {
    let (mut pages, mut after, mut at) = (Vec::new(), Vec::new(), Json::Null);
    loop {
        let page = source.get(&at, ctx).expect("page");
        pages.push(page.records.iter().map(|r| r.id.to_owned()).collect());
        let last = page.is_last();
        after.push(page.next.clone());
        if last {
            return (pages, after);
        }
        at = page.next;
    }
}

#[test]
fn a_keyless_table_is_read_in_block_ranges_of_about_batch_size_rows() {
    let schema = Schema::new("pgblocks");
    bizon_layout(&schema, 20_000);
    let mut source = PostgresSource::new(config(&schema, None, 1000), "rows");
    let (pages, _) = read_all(&mut source, &ReadContext::default());
    assert!(matches!(source.paging, Some(Paging::Blocks { id: None, .. })), "{:?}", source.paging);
    let ids: Vec<String> = pages.concat();
    assert_eq!(ids.len(), 20_000);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 20_000, "ctids are unique");
    assert!(ids.iter().all(|id| id.starts_with('(') && id.ends_with(')')), "ids are ctids: {}", ids[0]);
    // ~1000 rows a page: the span comes from the statistics and adapts to each page's density.
    assert!((15..=30).contains(&pages.len()), "{} pages", pages.len());
    assert!(pages.iter().all(|p| p.len() <= 2000), "page sizes {:?}", pages.iter().map(Vec::len).collect::<Vec<_>>());
}

#[test]
fn block_pages_are_tid_range_scans_not_sorts_of_the_table() {
    let schema = Schema::new("pgplan");
    bizon_layout(&schema, 5_000);
    let mut source = PostgresSource::new(config(&schema, Some("bizon_id"), 1000), "rows");
    source.get(&Json::Null, &ReadContext::default()).expect("first page");
    let sql = source.blocks_sql(&ReadContext::default(), Some("bizon_id"), 10, 20);
    let plan: Vec<String> =
        client().query(&format!("EXPLAIN {sql}"), &[]).expect("explain").iter().map(|r| r.get(0)).collect();
    let plan = plan.join("\\n");
    assert!(plan.contains("Tid Range Scan"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

#[test]
fn a_configured_key_without_an_index_gives_the_ids_and_an_index_turns_on_keyset_pages() {
    let schema = Schema::new("pgkeyidx");
    bizon_layout(&schema, 3_000);
    let mut source = PostgresSource::new(config(&schema, Some("bizon_id"), 500), "rows");
    let (pages, _) = read_all(&mut source, &ReadContext::default());
    assert!(
        matches!(&source.paging, Some(Paging::Blocks { id: Some(k), .. }) if k == "bizon_id"),
        "{:?}",
        source.paging
    );
    let mut ids = pages.concat();
    ids.sort();
    let mut expected: Vec<String> = (1..=3000).map(|i| format!("id-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);

    client().batch_execute(&format!("CREATE INDEX ON {}.rows (bizon_id)", schema.0)).expect("index");
    let mut source = PostgresSource::new(config(&schema, Some("bizon_id"), 500), "rows");
    let (pages, _) = read_all(&mut source, &ReadContext::default());
    assert!(matches!(&source.paging, Some(Paging::Keyset { key }) if key == "bizon_id"), "{:?}", source.paging);
    assert_eq!(pages.concat().len(), 3000);
    // The saved position of a block read does not fit keyset pages: refused, not re-read.
    let err = source.get(&json!({"block": 12, "span": 4}), &ReadContext::default()).expect_err("mismatch");
    assert!(err.to_string().contains("saved position (at block 12)"), "{err}");
    assert!(err.to_string().contains("--reset"), "{err}");
}

#[test]
fn a_block_read_sees_one_snapshot_and_refuses_a_keyset_position() {
    let schema = Schema::new("pgsnap");
    bizon_layout(&schema, 4_000);
    let mut source = PostgresSource::new(config(&schema, None, 500), "rows");
    let ctx = ReadContext::default();
    let first = source.get(&Json::Null, &ctx).expect("first page");
    // Rows written (and deleted) after the run's first page are not seen by the rest of it.
    client()
        .batch_execute(&format!(
            "INSERT INTO {s}.rows SELECT * FROM {s}.rows; DELETE FROM {s}.rows WHERE source_record_id = '3999'",
            s = schema.0
        ))
        .expect("concurrent writes");
    let mut n = first.records.len();
    let mut at = first.next;
    while !bizon_core::record::pagination_done(&at) {
        let page = source.get(&at, &ctx).expect("page");
        n += page.records.len();
        at = page.next;
    }
    assert_eq!(n, 4_000);
    let err = source.get(&json!({"after": 42}), &ctx).expect_err("a keyset position");
    assert!(err.to_string().contains("saved position (after key 42)"), "{err}");
}

#[test]
fn incremental_block_reads_filter_on_the_watermark_and_an_unknown_key_is_named() {
    let schema = Schema::new("pgblkinc");
    bizon_layout(&schema, 2_000);
    let ctx = ReadContext {
        sync_mode: SyncMode::Incremental,
        watermark: Some(json!("1500")),
        cursor_field: Some("source_record_id".into()),
    };
    let mut source = PostgresSource::new(config(&schema, None, 300), "rows");
    let (pages, _) = read_all(&mut source, &ctx);
    // Text comparison: '1500' < '1501'..'1999' and '2000', and < '151'..'199' and '16'..'9…'.
    let expected = (1..=2000).filter(|i| i.to_string().as_str() > "1500").count();
    assert_eq!(pages.concat().len(), expected);

    let mut source = PostgresSource::new(config(&schema, Some("nope"), 1000), "rows");
    let err = source.get(&Json::Null, &ReadContext::default()).expect_err("no such column");
    assert!(err.to_string().contains("has no column `nope`"), "{err}");
}

#[test]
fn spans_follow_the_density_within_a_factor_of_four() {
    assert_eq!(next_span(10, 1000, 1000), 10);
    assert_eq!(next_span(10, 500, 1000), 20);
    assert_eq!(next_span(10, 0, 1000), 40, "empty pages grow the span");
    assert_eq!(next_span(10, 1, 1000), 40, "bounded growth");
    assert_eq!(next_span(10, 100_000, 1000), 2, "bounded shrink");
    assert_eq!(next_span(1, 100_000, 1000), 1, "at least one block");
}
