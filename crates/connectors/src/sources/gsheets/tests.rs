//! `gsheets` against testkit's Sheets API stand-in, with a local token endpoint.

use bizon_core::config::{yaml, SyncMode};
use bizon_core::{Json, ReadContext, Source};
use bizon_testkit::google::{FakeSheets, TokenServer};
use serde_json::json;

use super::{numericise, spreadsheet_id, sql_name, DESCRIPTOR};

fn cells(row: &[&str]) -> Vec<String> {
    row.iter().map(|c| (*c).to_owned()).collect()
}

/// A source on `sheets` configured with `extra` YAML.
pub(crate) fn source(sheets: &FakeSheets, tokens: &TokenServer, extra: &str) -> Box<dyn Source> {
    source_in(sheets, tokens, "Data sheet", extra)
}

fn source_in(sheets: &FakeSheets, tokens: &TokenServer, worksheet: &str, extra: &str) -> Box<dyn Source> {
    let text = format!(
        "name: gsheets\nstream: worksheet\nspreadsheet_url: https://docs.google.com/spreadsheets/d/{}/edit#gid=1\n\
         worksheet_name: {worksheet}\nbase_url: {}\nservice_account_key: '{}'\n{extra}",
        sheets.id,
        sheets.api.url,
        tokens.key.replace('\'', "''")
    );
    let node = yaml::parse(&text).unwrap();
    let spec = (DESCRIPTOR.parse)(&node).unwrap_or_else(|e| panic!("{}", e.message));
    let common: bizon_core::config::SourceCommon =
        bizon_core::config::yaml::from_node(&node, "source", (DESCRIPTOR.keys)()).unwrap();
    spec.build(&common, &[])
}

/// Every page's records (id, data) until the stream ends.
pub(crate) fn read_all(s: &mut dyn Source, ctx: &ReadContext) -> Vec<(String, Json)> {
    let mut out = Vec::new();
    let mut pagination = Json::Null;
    loop {
        let page = s.get(&pagination, ctx).unwrap();
        for r in page.records.iter() {
            out.push((r.id.to_owned(), serde_json::from_slice(r.data).unwrap()));
        }
        if page.is_last() {
            return out;
        }
        pagination = page.next;
    }
}

fn tokens() -> TokenServer {
    TokenServer::start("sheets@p.iam.gserviceaccount.com", 3600, false)
}

#[test]
fn ten_thousand_rows_land_exactly_once_in_pages_through_a_429() {
    let mut rows = vec![cells(&["id", "Name", "amount"])];
    rows.extend((0..10_000).map(|i| vec![i.to_string(), format!("n{i}"), format!("{}.5", i)]));
    let sheets = FakeSheets::start("Data sheet", rows, 12_000, true, None);
    let tokens = tokens();
    let mut s = source(&sheets, &tokens, "rows_per_page: 700\n");
    let records = read_all(s.as_mut(), &ReadContext::default());
    assert_eq!(records.len(), 10_000);
    assert_eq!(sheets.throttled.load(std::sync::atomic::Ordering::SeqCst), 1, "one 429, retried after Retry-After");
    let ids: std::collections::BTreeSet<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 10_000, "row numbers are distinct ids");
    assert_eq!(records[0], ("2".to_owned(), json!({"id": 0, "name": "n0", "amount": 0.5})));
    assert_eq!(records[9_999].0, "10001");
    assert_eq!(records[9_999].1["amount"], json!(9999.5));
}

#[test]
fn headers_convert_as_bizons_and_ragged_and_empty_rows_read_as_gspread_gives_them() {
    let rows = vec![
        cells(&["First Name", "createdAt", "Zip Code", "note"]),
        cells(&["Ada", "2024-01-02", "01234", "x"]),
        cells(&["Bob"]),
        cells(&[]),
        cells(&["Cy", "", "", "1e3"]),
    ];
    let sheets = FakeSheets::start("Data sheet", rows, 1000, false, None);
    let tokens = tokens();
    let records = read_all(source(&sheets, &tokens, "").as_mut(), &ReadContext::default());
    let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["2", "3", "4", "5"]);
    // bizon's conversion: `_` before capitals, lower case, spaces to `_`.
    assert_eq!(records[0].1, json!({"first__name": "Ada", "created_at": "2024-01-02", "zip__code": 1234, "note": "x"}));
    assert_eq!(records[1].1, json!({"first__name": "Bob", "created_at": "", "zip__code": "", "note": ""}));
    assert_eq!(records[2].1, json!({"first__name": "", "created_at": "", "zip__code": "", "note": ""}));
    assert_eq!(records[3].1["note"], json!(1000.0));
    let raw = read_all(
        source(&sheets, &tokens, "convert_column_names_to_sql_format: false\ncolumn_names: [Zip Code, First Name]\n")
            .as_mut(),
        &ReadContext::default(),
    );
    assert_eq!(raw[0].1, json!({"Zip Code": 1234, "First Name": "Ada"}));
}

#[test]
fn duplicate_or_missing_columns_are_errors_naming_them() {
    let rows = vec![cells(&["a", "b", "a", "c", "b"]), cells(&["1", "2", "3", "4", "5"])];
    let sheets = FakeSheets::start("Data sheet", rows, 1000, false, None);
    let tokens = tokens();
    let e = source(&sheets, &tokens, "").get(&Json::Null, &ReadContext::default()).unwrap_err().to_string();
    assert!(e.contains("column names are not unique: a, b"), "{e}");
    let e = source(&sheets, &tokens, "column_names: [c, zz]\n")
        .get(&Json::Null, &ReadContext::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("column `zz`") && e.contains("not in the header"), "{e}");
    let ok = read_all(source(&sheets, &tokens, "column_names: [c]\n").as_mut(), &ReadContext::default());
    assert_eq!(ok, [("2".to_owned(), json!({"c": 4}))]);
    let e = source_in(&sheets, &tokens, "Nope", "").get(&Json::Null, &ReadContext::default()).unwrap_err().to_string();
    assert!(e.contains("no worksheet `Nope`") && e.contains("Other, Data sheet"), "{e}");
}

#[test]
fn incremental_keeps_rows_above_the_watermark() {
    let rows = vec![
        cells(&["id", "updated_at"]),
        cells(&["1", "2024-01-01T00:00:00Z"]),
        cells(&["2", "2024-03-01T00:00:00Z"]),
        cells(&["3", "2024-02-01T00:00:00Z"]),
    ];
    let sheets = FakeSheets::start("Data sheet", rows, 1000, false, None);
    let tokens = tokens();
    let ctx = ReadContext {
        sync_mode: SyncMode::Incremental,
        watermark: Some(json!("2024-01-15T00:00:00Z")),
        cursor_field: Some("updated_at".into()),
    };
    let records = read_all(source(&sheets, &tokens, "").as_mut(), &ctx);
    let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["3", "4"]);
    let first = ReadContext { watermark: None, ..ctx };
    assert_eq!(read_all(source(&sheets, &tokens, "").as_mut(), &first).len(), 3, "a first run reads everything");
}

#[test]
fn urls_names_and_numbers_as_bizon_and_gspread() {
    assert_eq!(spreadsheet_id("https://docs.google.com/spreadsheets/d/1aB-c_D/edit#gid=0").as_deref(), Some("1aB-c_D"));
    assert_eq!(spreadsheet_id("1aB-c_D").as_deref(), Some("1aB-c_D"));
    assert_eq!(spreadsheet_id("https://example.com/x"), None);
    assert_eq!(sql_name("createdAt"), "created_at");
    assert_eq!(sql_name("First Name"), "first__name");
    assert_eq!(sql_name("ID"), "i_d");
    assert_eq!(numericise("12"), json!(12));
    assert_eq!(numericise("-3"), json!(-3));
    assert_eq!(numericise("1.5"), json!(1.5));
    assert_eq!(numericise(""), json!(""));
    assert_eq!(numericise("1_000"), json!("1_000"));
    assert_eq!(numericise("nan"), json!("nan"));
    assert_eq!(numericise("12 apples"), json!("12 apples"));
}
