//! `notion` against testkit's Notion stand-in (the API's documented shapes, paging at
//! `page_size`, random 429s with `Retry-After`): every stream's ids, the block-type fixture's Markdown,
//! incremental runs, `database_filters`, restarts from every checkpoint, and errors.

use std::collections::BTreeSet;

use bizon_core::config::yaml::{self, from_node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Json, ReadContext, Source};
use bizon_testkit::notion::{FakeNotion, NotionOptions, Workspace, WorkspaceSpec, TOKEN};
use bizon_testkit::source::run_suite;
use serde_json::json;

use super::DESCRIPTOR;

const EXPECTED_MARKDOWN: &str = include_str!("testdata/block_types.md");

pub(crate) fn workspace(pages_per_database: usize, deep_every: usize) -> Workspace {
    Workspace::generate(&WorkspaceSpec {
        databases: 2,
        pages_per_database,
        standalone_pages: 3,
        users: 4,
        deep_every,
        with_block_type_page: true,
    })
}

/// The `source:` mapping of a stream over the stand-in at `url` (no rate limit: the stand-in
/// answers at once; the limiter has its own tests).
pub(crate) fn config(url: &str, stream: &str, extra: &str) -> String {
    format!(
        "name: notion\nstream: {stream}\nauthentication:\n  type: api_key\n  params:\n    token: {TOKEN}\n\
         base_url: {url}\nhttp: {{rate_limit: 100000}}\n{extra}"
    )
}

fn build(text: &str) -> (Box<dyn Source>, SourceCommon) {
    let node = yaml::parse(text).expect("fixture YAML");
    let spec = (DESCRIPTOR.parse)(&node).unwrap_or_else(|e| panic!("{}", e.message));
    let common: SourceCommon = from_node(&node, "source", (DESCRIPTOR.keys)()).expect("common keys");
    (spec.build(&common, &[]), common)
}

fn ids_yaml(key: &str, ids: &[String]) -> String {
    format!("{key}: [{}]\n", ids.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", "))
}

/// Every record of a read: (id, payload), and the largest `cursor_max` seen.
fn read(s: &mut dyn Source, ctx: &ReadContext) -> (Vec<(String, Json)>, Option<Json>) {
    let mut out = Vec::new();
    let mut newest: Option<Json> = None;
    let mut p = Json::Null;
    for _ in 0..100_000 {
        let page = s.get(&p, ctx).unwrap_or_else(|e| panic!("{}", e.message()));
        for r in page.records.iter() {
            out.push((r.id.to_owned(), serde_json::from_slice(r.data).unwrap()));
        }
        if let Some(m) = page.cursor_max.clone() {
            if newest.as_ref().is_none_or(|n| m.as_str() > n.as_str()) {
                newest = Some(m);
            }
        }
        if page.is_last() {
            return (out, newest);
        }
        p = page.next;
    }
    panic!("the read never ended");
}

fn ids(records: &[(String, Json)]) -> Vec<String> {
    records.iter().map(|(id, _)| id.clone()).collect()
}

fn sorted(v: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = v.into_iter().collect();
    set.into_iter().collect()
}

fn full() -> ReadContext {
    ReadContext::default()
}

fn incremental(watermark: Option<Json>) -> ReadContext {
    ReadContext { sync_mode: SyncMode::Incremental, watermark, cursor_field: Some("last_edited_time".into()) }
}

#[test]
fn every_stream_reads_its_objects_once_with_bizons_ids() {
    let ws = workspace(110, 7);
    let (dbs, standalone) = (ws.database_ids(), ws.standalone_page_ids());
    let mut expected_pages: Vec<String> = dbs.iter().flat_map(|d| ws.database_page_ids(d)).collect();
    expected_pages.extend(standalone.iter().cloned());
    // bizon walks the configured pages first, then the databases' pages.
    let walk_order: Vec<String> = standalone
        .iter()
        .chain(dbs.iter().flat_map(|d| ws.database_page_ids(d)).collect::<Vec<_>>().iter())
        .cloned()
        .collect();
    let blocks_md: Vec<String> = walk_order.iter().flat_map(|p| ws.block_ids_preorder(p, 5)).collect();
    let all_pages = ws.all_page_ids();
    let users = ws.user_ids();
    let all_dss = ws.data_source_ids();
    let notion =
        FakeNotion::start(ws, NotionOptions { throttle_share: 0.03, retry_after_seconds: 0, ..Default::default() });
    let scope = format!("{}{}page_size: 50\n", ids_yaml("database_ids", &dbs), ids_yaml("page_ids", &standalone));
    let read_stream = |stream: &str| {
        let (mut s, _) = build(&config(&notion.url(), stream, &scope));
        read(s.as_mut(), &full()).0
    };
    assert_eq!(ids(&read_stream("users")), users);
    let databases = read_stream("databases");
    assert_eq!(ids(&databases), dbs);
    assert_eq!(databases[0].1["object"], "database");
    let data_sources = read_stream("data_sources");
    assert_eq!(data_sources.len(), 3, "database 0 has two data sources, database 1 one");
    assert_eq!(data_sources[0].1["parent_database_id"], json!(dbs[0]));
    assert!(data_sources[0].1["parent_database_title"].as_str().is_some_and(|t| !t.is_empty()));
    let pages = read_stream("pages");
    assert_eq!(ids(&pages), expected_pages, "database pages, then the configured pages");
    assert!(pages.len() >= 200);
    let markdown = read_stream("blocks_markdown");
    assert_eq!(ids(&markdown), blocks_md, "every block of every page once, in reading order");
    let first = &markdown[0].1;
    let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "block_id",
            "block_type",
            "markdown",
            "source_page_id",
            "parent_block_id",
            "parent_input_database_id",
            "parent_input_page_id",
            "depth",
            "block_order",
            "page_order",
            "block_raw"
        ]
    );
    assert!(markdown.iter().any(|(_, r)| r["depth"] == 3), "trees four levels deep");
    // `blocks` also walks the pages of inline databases (bizon's fetch_child_databases).
    let blocks = read_stream("blocks");
    assert!(blocks.len() > markdown.len(), "blocks {} vs markdown {}", blocks.len(), markdown.len());
    assert_eq!(sorted(ids(&blocks)).len(), blocks.len(), "no block twice");
    for (_, b) in &blocks {
        for k in ["parent_block_id", "source_page_id", "depth", "block_order", "page_order", "type"] {
            assert!(b.get(k).is_some(), "{k} missing in {b}");
        }
    }
    assert_eq!(sorted(ids(&read_stream("all_pages"))), sorted(all_pages.clone()));
    let all_ds = ids(&read_stream("all_data_sources"));
    assert!(all_ds.len() > all_dss.len(), "the inline database's data source is found by search too");
    assert!(all_dss.iter().all(|d| all_ds.contains(d)));
    let all_db = ids(&read_stream("all_databases"));
    assert_eq!(all_db.len(), dbs.len() + 1, "the two databases and the inline one");
    let all_md = read_stream("all_blocks_markdown");
    assert_eq!(sorted(ids(&all_md)).len(), all_md.len(), "no block twice");
    assert!(all_md.len() > markdown.len(), "all pages, the block-type page and inline pages included");
    assert!(notion.throttled.load(std::sync::atomic::Ordering::SeqCst) > 10, "429s were answered and retried");
}

#[test]
fn the_block_type_fixture_renders_as_the_expected_markdown() {
    let ws = workspace(2, 0);
    let page = ws.block_type_page_id().expect("fixture page");
    let notion = FakeNotion::start(ws, NotionOptions::default());
    let (mut s, _) =
        build(&config(&notion.url(), "blocks_markdown", &ids_yaml("page_ids", std::slice::from_ref(&page))));
    let (records, _) = read(s.as_mut(), &full());
    let mut text = String::new();
    for (i, (_, r)) in records.iter().enumerate() {
        assert_eq!(r["page_order"], json!(i));
        assert_eq!(r["source_page_id"], json!(page));
        assert_eq!(r["parent_input_page_id"], json!(page));
        text.push_str(&format!(
            "<!-- {i} depth {} {} -->\n{}\n",
            r["depth"],
            r["block_type"].as_str().unwrap(),
            r["markdown"].as_str().unwrap()
        ));
    }
    if text != EXPECTED_MARKDOWN {
        let diff: Vec<String> = text
            .lines()
            .zip(EXPECTED_MARKDOWN.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(n, (a, b))| format!("line {}: got {a:?}\n  expected {b:?}", n + 1))
            .collect();
        panic!("markdown differs from testdata/block_types.md:\n{}\n\nfull output:\n{text}", diff.join("\n"));
    }
    // The raw block is kept with its lineage, as bizon's block_raw.
    let toggle_child = records.iter().find(|(_, r)| r["depth"] == 3).unwrap();
    assert_eq!(toggle_child.1["block_raw"]["depth"], 3);
    assert_eq!(toggle_child.1["block_raw"]["parent_block_id"], toggle_child.1["parent_block_id"]);
}

#[test]
fn incremental_runs_read_exactly_what_was_edited_since() {
    let ws = workspace(60, 5);
    let dbs = ws.database_ids();
    let edited: Vec<String> = vec![ws.database_page_ids(&dbs[0])[3].clone(), ws.database_page_ids(&dbs[1])[10].clone()];
    let edited_blocks: Vec<String> = edited.iter().flat_map(|p| ws.block_ids_preorder(p, 5)).collect();
    let notion = FakeNotion::start(ws, NotionOptions::default());
    let scope = format!("{}sync_mode: incremental\ncursor_field: last_edited_time\n", ids_yaml("database_ids", &dbs));
    let streams = ["pages", "blocks_markdown", "blocks", "all_pages", "all_blocks_markdown"];
    let mut marks = Vec::new();
    for stream in streams {
        let (mut s, _) = build(&config(&notion.url(), stream, &scope));
        let (first, newest) = read(s.as_mut(), &incremental(None));
        assert!(!first.is_empty(), "{stream}: the first incremental run is a full read");
        marks.push(newest.unwrap_or_else(|| panic!("{stream}: no watermark")));
    }
    // Nothing edited: a second run reads nothing.
    for (stream, mark) in streams.iter().zip(&marks) {
        let (mut s, _) = build(&config(&notion.url(), stream, &scope));
        let (again, _) = read(s.as_mut(), &incremental(Some(mark.clone())));
        assert!(again.is_empty(), "{stream}: {} records with nothing edited", again.len());
    }
    {
        let mut ws = notion.workspace.lock().unwrap();
        for (i, p) in edited.iter().enumerate() {
            ws.edit_page(p, &format!("2030-01-01T00:0{i}:00.000Z"));
        }
    }
    for (stream, mark) in streams.iter().zip(&marks) {
        let (mut s, _) = build(&config(&notion.url(), stream, &scope));
        let (second, newest) = read(s.as_mut(), &incremental(Some(mark.clone())));
        let got = ids(&second);
        match *stream {
            "pages" | "all_pages" => assert_eq!(sorted(got), sorted(edited.clone()), "{stream}"),
            _ => assert_eq!(sorted(got), sorted(edited_blocks.clone()), "{stream}"),
        }
        assert_eq!(newest, Some(json!("2030-01-01T00:01:00.000Z")), "{stream}: the watermark moves to the newest edit");
    }
}

#[test]
fn database_filters_are_sent_and_anded_with_the_watermark() {
    let ws = workspace(30, 0);
    let dbs = ws.database_ids();
    let notion = FakeNotion::start(ws, NotionOptions::default());
    let filters = format!(
        "{}database_filters:\n  \"{}\": {{property: Status, select: {{equals: Done}}}}\n",
        ids_yaml("database_ids", &dbs),
        dbs[0]
    );
    let (mut s, _) = build(&config(&notion.url(), "pages", &filters));
    let (pages, _) = read(s.as_mut(), &full());
    let (db0, db1): (Vec<_>, Vec<_>) =
        pages.iter().partition(|(_, p)| p.pointer("/parent/database_id") == Some(&json!(dbs[0])));
    assert!(
        !db0.is_empty() && db0.iter().all(|(_, p)| p.pointer("/properties/Status/select/name") == Some(&json!("Done")))
    );
    assert!(db0.len() < 30, "filtered: {}", db0.len());
    assert_eq!(db1.len(), 30, "the other database is not filtered");
    // Incremental: the filter AND the watermark.
    let q =
        notion.api.requests().into_iter().filter(|r| r.path.ends_with("/query")).map(|r| r.json()).collect::<Vec<_>>();
    assert!(q.iter().any(|b| b["filter"]["property"] == "Status"), "{q:?}");
    let (mut s, _) = build(&config(&notion.url(), "blocks_markdown", &filters));
    let _ = read(s.as_mut(), &incremental(Some(json!("2025-01-01T00:10:00.000Z"))));
    let anded = notion
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/query"))
        .map(|r| r.json())
        .find(|b| b["filter"]["and"].is_array())
        .expect("an AND filter was sent");
    assert_eq!(anded["filter"]["and"][0]["last_edited_time"]["after"], "2025-01-01T00:10:00.000Z");
    assert_eq!(anded["filter"]["and"][1]["select"]["equals"], "Done");
}

#[test]
fn a_restart_from_any_checkpoint_reads_the_rest_exactly() {
    // Small pages so the walk spans many checkpoints: restarts mid-children-list, mid-tree, mid-listing.
    let ws = Workspace::generate(&WorkspaceSpec {
        databases: 2,
        pages_per_database: 4,
        standalone_pages: 1,
        users: 1,
        deep_every: 2,
        with_block_type_page: false,
    });
    let dbs = ws.database_ids();
    let notion = FakeNotion::start(ws, NotionOptions::default());
    for stream in ["blocks_markdown", "blocks", "pages"] {
        let text = config(&notion.url(), stream, &format!("{}page_size: 2\n", ids_yaml("database_ids", &dbs)));
        let (mut s, _) = build(&text);
        let expected = read(s.as_mut(), &full()).0.len();
        run_suite(&|| build(&text).0, &full(), expected);
    }
}

#[test]
fn errors_name_the_object_and_never_the_token() {
    let ws = workspace(2, 0);
    let notion = FakeNotion::start(ws, NotionOptions::default());
    let missing = "00000000-0000-4000-8000-0000000000ff";
    let (mut s, _) = build(&config(&notion.url(), "databases", &ids_yaml("database_ids", &[missing.into()])));
    let e = s.get(&Json::Null, &full()).unwrap_err();
    assert!(e.message().contains(missing) && e.message().contains("shared with the integration"), "{}", e.message());
    let bad = config(&notion.url(), "users", "").replace(TOKEN, "secret_wrong_token_value_42");
    let (mut s, _) = build(&bad);
    let e = s.get(&Json::Null, &full()).unwrap_err();
    assert!(e.message().contains("401"), "{}", e.message());
    assert!(!e.message().contains("secret_wrong_token_value_42"), "{}", e.message());
    // A page that is gone is skipped with a warning, not a failed run.
    let (mut s, _) = build(&config(&notion.url(), "blocks_markdown", &ids_yaml("page_ids", &[missing.into()])));
    assert!(read(s.as_mut(), &full()).0.is_empty());
}

#[test]
fn keys_are_checked_at_parse_time() {
    let parse = |text: &str| (DESCRIPTOR.parse)(&yaml::parse(text).unwrap()).err().map(|e| e.message);
    let base = "name: notion\nstream: pages\nauthentication: {type: api_key, params: {token: t}}\n";
    assert_eq!(parse(base), None);
    assert!(parse(&format!("{base}page_size: 101\n")).unwrap().contains("101 is not between 1 and 100"));
    assert!(parse(&format!("{base}max_workers: 0\n")).unwrap().contains("max_workers"));
    assert!(parse(&format!("{base}database_filters: {{abc: 3}}\n")).unwrap().contains("`abc`"));
    assert!(parse("name: notion\nstream: pages\n").unwrap().contains("needs `authentication`"));
    let basic = "name: notion\nstream: pages\nauthentication: {type: basic, params: {username: u, password: p}}\n";
    assert!(parse(basic).unwrap().contains("not `basic`"));
    assert!(parse(&format!("{base}base_url: ftp://x\n")).unwrap().contains("http://"));
}
