//! `notion` end to end: the real binary walks a generated workspace on testkit's Notion
//! stand-in (answers after 15 ms, 4 % of requests at random a 429 with `Retry-After: 1`) into a file,
//! is killed with signal 9 at seeded moments mid-walk and resumes: every block exactly once, in
//! reading order per page; then an incremental run after edits reads exactly the edited pages'
//! blocks; the integration token appears in no output.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bizon_testkit::notion::{FakeNotion, NotionOptions, Workspace, WorkspaceSpec, TOKEN};
use common::*;

fn config(s: &Scratch, url: &str, databases: &[String], mode: &str) -> String {
    let ids: Vec<String> = databases.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        "name: notion_kill\nsource:\n  name: notion\n  stream: blocks_markdown\n  sync_mode: {mode}\n  cursor_field: last_edited_time\n  \
         authentication:\n    type: api_key\n    params:\n      token: {TOKEN}\n  database_ids: [{ids}]\n  page_size: 20\n  base_url: {url}\n  \
         http:\n    rate_limit: 1000\n\
         destination:\n  name: file\n  config:\n    path: {out}\n    buffer_size: 0\n\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
        ids = ids.join(", "),
        out = s.path("out.json").display(),
        db = s.path("state.db").display(),
    );
    s.write("pipeline.yml", &text).to_string_lossy().into_owned()
}

#[test]
fn kill_9_mid_walk_then_resume_writes_every_block_once_and_increments_read_the_edits() {
    let ws = Workspace::generate(&WorkspaceSpec {
        databases: 2,
        pages_per_database: 100,
        standalone_pages: 0,
        users: 1,
        deep_every: 3,
        with_block_type_page: false,
    });
    let dbs = ws.database_ids();
    let pages: Vec<String> = dbs.iter().flat_map(|d| ws.database_page_ids(d)).collect();
    let expected: Vec<String> = pages.iter().flat_map(|p| ws.block_ids_preorder(p, 5)).collect();
    let options = NotionOptions {
        latency: Some(Duration::from_millis(15)),
        throttle_share: 0.04,
        retry_after_seconds: 1,
        ..Default::default()
    };
    let notion = FakeNotion::start(ws, options);
    let s = Scratch::new("notion-kill");
    let cfg = config(&s, &notion.url(), &dbs, "incremental");
    let (killed, finished) = kill_at_seeded_moments(&s, &cfg, 0x0b10c5, 4, 1500, 2500);
    assert!(killed >= 3, "only {killed} runs were killed mid-walk");
    let logs = if finished { Vec::new() } else { run_until_done(&s, &cfg, 3) };
    if let Some(last) = logs.last() {
        assert!(last.contains("resumed after iteration"), "{last}");
    }
    let rows = read_rows(&s.path("out.json"));
    let got: Vec<String> = rows.iter().map(|r| r["source_record_id"].as_str().unwrap().to_owned()).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    let dups = counts.values().filter(|c| **c > 1).count();
    let missing = expected.iter().filter(|id| !counts.contains_key(id.as_str())).count();
    assert_eq!((got.len(), missing, dups), (expected.len(), 0, 0), "rows, missing, duplicates");
    assert_eq!(got, expected, "reading order");
    let first: serde_json::Value = serde_json::from_str(rows[0]["source_data"].as_str().unwrap()).unwrap();
    assert_eq!(first["block_id"], first["block_raw"]["id"]);
    assert!(notion.throttled.load(std::sync::atomic::Ordering::SeqCst) > 0);

    // Edit two pages; the next incremental run reads exactly their blocks.
    let edited = [pages[5].clone(), pages[150].clone()];
    {
        let mut ws = notion.workspace.lock().unwrap();
        ws.edit_page(&edited[0], "2031-06-01T12:00:00.000Z");
        ws.edit_page(&edited[1], "2031-06-01T12:01:00.000Z");
    }
    let out = s.cmd(&["run", &cfg, "--no-progress", "--log-level", "debug"]).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    let rows = read_rows(&s.path("out.json"));
    let second: Vec<String> =
        rows[got.len()..].iter().map(|r| r["source_record_id"].as_str().unwrap().to_owned()).collect();
    let ws = notion.workspace.lock().unwrap();
    let want: Vec<String> = edited.iter().flat_map(|p| ws.block_ids_preorder(p, 5)).collect();
    assert_eq!(second, want, "the second run wrote the edited pages' blocks, nothing else");
    assert!(!text.contains(TOKEN), "the token was printed:\n{text}");
    for log in &logs {
        assert!(!log.contains(TOKEN), "the token was printed:\n{log}");
    }
}
