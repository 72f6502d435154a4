//! `gsheets` end to end: the real binary reads a 10,000-row worksheet from testkit's Sheets API
//! stand-in (each page answered after 150 ms) into a file, is killed with signal 9 at seeded
//! moments and resumes at the first uncommitted page: every row once (ids are row numbers).

mod common;

use bizon_testkit::google::{FakeSheets, TokenServer};
use common::*;

#[test]
fn kill_9_mid_read_then_resume_lands_every_row_exactly_once() {
    let mut rows = vec![vec!["id".to_owned(), "Name".to_owned()]];
    rows.extend((0..10_000).map(|i| vec![i.to_string(), format!("n{i}")]));
    let sheets = FakeSheets::start("Sheet1", rows, 10_001, false, Some(std::time::Duration::from_millis(150)));
    let tokens = TokenServer::start("sheets@p.iam.gserviceaccount.com", 3600, false);
    let s = Scratch::new("gsheets-kill");
    let key = s.write("key.json", &tokens.key);
    let text = format!(
        "name: gsheets_kill\nsource:\n  name: gsheets\n  stream: worksheet\n  spreadsheet_url: {id}\n  \
         worksheet_name: Sheet1\n  service_account_key: {key}\n  base_url: {url}\n  rows_per_page: 250\n\
         destination:\n  name: file\n  config:\n    path: {out}\n    buffer_size: 0\n\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
        id = sheets.id,
        key = key.display(),
        url = sheets.api.url,
        out = s.path("out.json").display(),
        db = s.path("state.db").display(),
    );
    let cfg = s.write("pipeline.yml", &text).to_string_lossy().into_owned();
    // 40 pages of 150 ms: a whole read takes about 6 s; kills land 0.4–1.6 s into a run.
    let (killed, finished) = kill_at_seeded_moments(&s, &cfg, 0x5eed_5ee7, 3, 400, 1200);
    assert!(killed >= 3, "only {killed} runs were killed mid-read");
    if !finished {
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    let rows = read_rows(&s.path("out.json"));
    let ids: Vec<u64> =
        rows.iter().map(|r| r["source_record_id"].as_str().unwrap().parse::<u64>().unwrap() - 2).collect();
    let (missing, dups) = missing_and_duplicates(&ids, 10_000);
    assert_eq!((ids.len(), missing, dups), (10_000, 0, 0), "rows, missing, duplicates");
    let first: serde_json::Value = serde_json::from_str(rows[0]["source_data"].as_str().unwrap()).unwrap();
    assert_eq!(first, serde_json::json!({"id": 0, "name": "n0"}));
}
