//! HTTP sources end to end: the real binary reads a local API (offset paging, 200 and 400 pages) and is
//! killed with signal 9 at seeded moments mid-pagination; the resumed runs deliver every record
//! exactly once to the file destination. And a failing run with each auth type prints none of
//! its secrets, even at debug level.

mod common;

use std::time::Duration;

use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use common::*;
use serde_json::json;

/// gbif-style offset paging over `total` records, each page answered after `delay_ms`.
fn paged_api(total: u64, delay_ms: u64) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| {
        let offset: u64 = r.param("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit: u64 = r.param("limit").and_then(|v| v.parse().ok()).unwrap_or(20);
        let n = limit.min(total.saturating_sub(offset));
        let rows: Vec<serde_json::Value> =
            (offset..offset + n).map(|i| json!({"id": i, "name": format!("record {i}")})).collect();
        FakeResponse::json(json!({"results": rows, "endOfRecords": offset + n >= total, "count": total}))
            .delay(Duration::from_millis(delay_ms))
    })
}

fn rest_to_file(s: &Scratch, name: &str, url: &str, concurrency: usize, page: u64) -> String {
    let text = format!(
        "name: {name}\nsource:\n  name: rest\n  stream: items\n  base_url: {url}\n  http:\n    concurrency: {concurrency}\n  streams:\n    - name: items\n      path: /occurrence/search\n      records: /results\n      primary_key: id\n      paginator: {{type: offset, limit: {page}, end_path: /endOfRecords}}\n\
         destination:\n  name: file\n  config:\n    path: {out}\n    buffer_size: 0\n\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
        out = s.path("out.json").display(),
        db = s.path("state.db").display(),
    );
    s.write("pipeline.yml", &text).to_string_lossy().into_owned()
}

#[test]
fn kill_9_mid_pagination_resumes_with_nothing_lost_or_duplicated() {
    // (seed, concurrency, pages of 50, ms per answer): a whole read takes about 5 s, a run is
    // killed after 0.3–0.9 s.
    for (seed, concurrency, pages, delay) in [(0x5eed_4701, 1, 200, 25), (0x5eed_4702, 4, 400, 50)] {
        let total = pages * 50;
        let api = paged_api(total, delay);
        let s = Scratch::new("http-kill");
        let cfg = rest_to_file(&s, "http_kill", &api.url, concurrency, 50);
        let (killed, finished) = kill_at_seeded_moments(&s, &cfg, seed, 4, 300, 600);
        assert!(killed >= 3, "only {killed} runs were killed mid-pagination (concurrency {concurrency})");
        assert!(!finished, "a run finished before the fourth kill");
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("completed"), "{}", logs.last().unwrap());
        let ids = read_ids(&s.path("out.json"));
        let (missing, dups) = missing_and_duplicates(&ids, total);
        assert_eq!(
            (ids.len() as u64, missing, dups),
            (total, 0, 0),
            "rows, missing, duplicates (concurrency {concurrency})"
        );
        // The resumed runs asked for the pages after the last committed one, not from the start:
        // far fewer requests than 60 per run.
        let first_pages = api.requests().iter().filter(|r| r.param("offset") == Some("0")).count();
        assert!(first_pages <= 5 * concurrency, "{first_pages} requests for the first page");
        let row = &read_rows(&s.path("out.json"))[7];
        let data: serde_json::Value = serde_json::from_str(row["source_data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"id": 7, "name": "record 7"}));
    }
}

#[test]
fn failing_runs_print_no_token_password_or_cookie() {
    let api = FakeApi::start(|r: &FakeRequest| {
        if r.path == "/token" {
            return FakeResponse::json(json!({"access_token": "at-SECRET-9f8e7d", "expires_in": 3600}));
        }
        FakeResponse::status(401, r#"{"message": "denied"}"#)
    });
    let cases = [
        ("api_key", "      token: tok-SECRET-123456\n", vec!["tok-SECRET-123456"]),
        ("bearer", "      token: bearer-SECRET-abcdef\n", vec!["bearer-SECRET-abcdef"]),
        ("basic", "      username: ann\n      password: pw-SECRET-777\n", vec!["pw-SECRET-777", "YW5uOnB3LVNFQ1JFVC03Nzc="]),
        ("cookies", "      cookies: {session: ck-SECRET-555}\n", vec!["ck-SECRET-555"]),
        (
            "oauth",
            "      token_refresh_endpoint: URL/token\n      client_id: cid\n      client_secret: cs-SECRET-31337\n      refresh_token: rt-SECRET-4242\n",
            vec!["cs-SECRET-31337", "rt-SECRET-4242", "at-SECRET-9f8e7d"],
        ),
    ];
    for (kind, params, secrets) in cases {
        let s = Scratch::new("http-auth");
        let text = format!(
            "name: http_auth_{kind}\nsource:\n  name: rest\n  stream: s\n  base_url: {url}\n  authentication:\n    type: {kind}\n    params:\n{params}  streams:\n    - name: s\n      path: /s\n      primary_key: id\n\
             destination:\n  name: file\n  config:\n    path: {out}\n\
             engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
            url = api.url,
            params = params.replace("URL", &api.url),
            out = s.path("out.json").display(),
            db = s.path("state.db").display(),
        );
        let cfg = s.write("pipeline.yml", &text).to_string_lossy().into_owned();
        let out = s.cmd(&["run", &cfg, "--no-progress"]).env("RUST_LOG", "debug").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{kind}: the run fails");
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("401 Unauthorized") && all.contains(&format!("authentication type `{kind}`")),
            "{kind}: {all}"
        );
        for secret in secrets {
            assert!(!all.contains(secret), "{kind}: {secret} printed:\n{all}");
        }
        let shown = stdout(&s.run(&["config", "show", &cfg]));
        for secret in params.split([' ', '{', '}', '\n']).filter(|w| w.contains("SECRET")) {
            assert!(!shown.contains(secret), "{kind}: `config show` printed {secret}:\n{shown}");
        }
        assert!(shown.contains(&api.url), "{kind}: `config show` masks the base URL:\n{shown}");
    }
}

#[test]
fn rest_streams_are_listed_and_config_errors_located() {
    let s = Scratch::new("http-cli");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rest_to_file.yml");
    let example = root.to_string_lossy().into_owned();
    let out = s.run(&["stream", "list", "rest", "--config", &example]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("posts") && text.contains("comments") && text.contains("full_refresh, incremental"),
        "{text}"
    );
    let out = s.run(&["stream", "list", "rest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --config"), "{}", stderr(&out));
    assert!(s.run(&["config", "validate", &example]).status.success());
    let bad = std::fs::read_to_string(&root).unwrap().replace("{type: page_number,", "{type: page_numbr,");
    let cfg = s.write("bad.yml", &bad).to_string_lossy().into_owned();
    let out = s.run(&["config", "validate", &cfg]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yml:22:") && err.contains("page_numbr") && err.contains("page_number"), "{err}");
}
