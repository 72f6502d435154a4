//! `periscope` against a local server answering as Periscope's browser endpoints do (the
//! shapes bizon reads): `Dashboard`, `SqlView`, `Database` lists, the owners array, the global
//! search's `results.data`, and `remaining_widgets` windows with `Widget` and `TextBox` lists.
//! Every request is checked for the session cookies, the CSRF token and bizon's headers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizon_core::{ErrorKind, Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::charts::textbox_text;
use super::DESCRIPTOR;
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

const CF_BM: &str = "cf-SECRET-1";
const SESSION: &str = "sess-SECRET-2";
const CSRF: &str = "csrf-SECRET-3";
const SITE: &str = "99999";
const CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36";

fn ctx() -> ReadContext {
    ReadContext::default()
}

/// Dashboards 1..=`n`; dashboard `d` has `d % 3` windows of widgets.
pub fn windows(d: u64) -> u64 {
    d % 3
}

/// A Slate document: a paragraph with two text leaves and a link.
fn slate(word: &str) -> Json {
    json!({"document": {"object": "document", "nodes": [
        {"object": "block", "type": "paragraph", "nodes": [
            {"object": "text", "leaves": [{"object": "leaf", "text": format!("\u{feff}{word} ")}, {"object": "leaf", "text": "world"}]},
            {"object": "inline", "type": "link", "data": {"url": "https://example.com/doc"}, "nodes": [
                {"object": "text", "leaves": [{"text": "click"}, {"text": " here "}]}
            ]}
        ]}
    ]}})
}

/// Window `w` of dashboard `d`: two widgets of database 999 (one a text box), one of database
/// 7 (filtered out), and in the second window a repeat of the first window's first widget.
fn window(d: u64, w: u64) -> Json {
    let id = |k: u64| d * 100 + w * 10 + k;
    let mut widgets = vec![
        json!({"id": id(1), "dashboard_id": d, "database_id": 999, "content_id": null, "title": format!("chart {}", id(1))}),
        json!({"id": id(2), "dashboard_id": d, "database_id": "999", "content_id": id(5), "title": "notes"}),
        json!({"id": id(3), "dashboard_id": d, "database_id": 7, "content_id": null}),
    ];
    if w == 1 {
        widgets.push(json!({"id": d * 100 + 1, "dashboard_id": d, "database_id": 999, "content_id": null}));
    }
    let textboxes = vec![
        json!({"id": id(5), "text_data": slate(&format!("Hello{}", id(5)))}),
        json!({"id": id(6), "text_data": null}),
    ];
    json!({"Widget": widgets, "TextBox": textboxes, "Image": []})
}

/// The chart ids of the 25-dashboard site, in read order.
pub fn chart_ids(dashboards: u64) -> Vec<String> {
    (1..=dashboards)
        .flat_map(|d| (0..windows(d)).flat_map(move |w| [d * 100 + w * 10 + 1, d * 100 + w * 10 + 2]))
        .map(|i| i.to_string())
        .collect()
}

/// Periscope with `dashboards` dashboards; widget windows answer after `delay`.
pub fn periscope_api(dashboards: u64, delay: Duration) -> (Handler, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let p = peak.clone();
    let handler: Handler = Arc::new(move |r: &FakeRequest| {
        // Every request carries the session, the CSRF token and bizon's browser headers.
        assert_eq!(r.header("cookie"), Some("__cf_bm=cf-SECRET-1; periscope_session=sess-SECRET-2"), "{}", r.path);
        assert_eq!(r.header("x-csrf-token"), Some(CSRF), "{}", r.path);
        assert_eq!(r.header("user-agent"), Some(CHROME));
        assert_eq!(r.header("x-requested-with"), Some("XMLHttpRequest"));
        assert_eq!(r.header("accept"), Some("application/json, text/javascript, */*; q=0.01"));
        assert_eq!(r.header("authority"), Some("app.periscopedata.com"));
        assert_eq!(r.header("sec-fetch-site"), Some("same-origin"));
        if r.method == "GET" {
            assert_eq!(r.param("client_site_id"), Some(SITE), "{}", r.path);
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/login_state/dashboards") => {
                let list: Vec<Json> =
                    (1..=dashboards).map(|d| json!({"id": d, "name": format!("dashboard {d}")})).collect();
                FakeResponse::json(json!({"Dashboard": list, "Tag": []}))
            }
            ("POST", "/global_search/search") => {
                assert_eq!(
                    r.json(),
                    json!({"client_site_id": 99999, "filters": [{"name": "typeFilter", "input": "Dashboard"}], "limit": 2000, "query_plan": null})
                );
                FakeResponse::json(json!({"results": {"data": [
                    {"id": "dashboard-1", "name": "Sales", "type": "Dashboard"},
                    {"id": "dashboard-2", "name": "Ops", "type": "Dashboard"}
                ], "total": 2}}))
            }
            ("GET", "/login_state/sql_views") => {
                FakeResponse::json(json!({"SqlView": [{"id": 31, "name": "v_orders"}, {"id": 32, "name": "v_users"}]}))
            }
            ("GET", "/users/owners") => FakeResponse::json(json!([
                {"id": 5, "email": "ann@example.com"}, {"id": 6, "email": "bob@example.com"}, {"id": 7, "email": "cy@example.com"}
            ])),
            ("GET", "/welcome/remaining_state/site_models") => {
                FakeResponse::json(json!({"Database": [{"id": 999, "name": "warehouse"}], "Site": {}}))
            }
            ("GET", "/welcome/remaining_widgets") => {
                assert_eq!(r.param("fluid_column_for_last_widget_in_row"), Some("0"));
                let d: u64 = r.param("current_dashboard").unwrap().parse().unwrap();
                let row: u64 = r.param("minimum_dashboard_fluid_row").unwrap().parse().unwrap();
                assert_eq!(row % 50, 0);
                let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(delay);
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let w = row / 50;
                if w < windows(d) {
                    FakeResponse::json(window(d, w))
                } else {
                    FakeResponse::json(json!({"Widget": [], "TextBox": []}))
                }
            }
            _ => FakeResponse::status(404, r#"{"error": "no route"}"#),
        }
    });
    (handler, peak)
}

fn serve(h: Handler) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| h(r))
}

/// The `source:` mapping of `stream` against `url`.
pub fn config(url: &str, stream: &str, extra: &str) -> String {
    format!(
        "name: periscope\nstream: {stream}\nworkspace_name: ACME\nclient_site_id: 99999\ndatabase_id: 999\nx_csrf_token: {CSRF}\nbase_url: {url}\n{extra}authentication:\n  type: cookies\n  params:\n    cookies:\n      periscope_session: {SESSION}\n      cf_bm: {CF_BM}\n"
    )
}

fn ids(records: &[(String, Json)]) -> Vec<String> {
    records.iter().map(|(id, _)| id.clone()).collect()
}

#[test]
fn single_page_streams_read_bizons_paths_and_ids() {
    let (h, _) = periscope_api(3, Duration::ZERO);
    let api = serve(h);
    let cases: [(&str, &[&str]); 5] = [
        ("dashboards", &["1", "2", "3"]),
        ("dashboards_metadata", &["dashboard-1", "dashboard-2"]),
        ("views", &["31", "32"]),
        ("users", &["5", "6", "7"]),
        ("databases", &["999"]),
    ];
    for (stream, want) in cases {
        let (records, pages) =
            read_to_end(source_from(&DESCRIPTOR, &config(&api.url, stream, "")).as_mut(), &ctx()).unwrap();
        assert_eq!(ids(&records), want, "{stream}");
        assert_eq!(pages, 1, "{stream}");
    }
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "users", "")).as_mut(), &ctx()).unwrap();
    assert_eq!(records[0].1, json!({"id": 5, "email": "ann@example.com"}));
    let (records, _) =
        read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "dashboards_metadata", "")).as_mut(), &ctx()).unwrap();
    assert_eq!(records[1].1, json!({"id": "dashboard-2", "name": "Ops", "type": "Dashboard"}));
    let search = api.requests().into_iter().find(|r| r.path == "/global_search/search").unwrap();
    assert_eq!(search.method, "POST");
    assert_eq!(search.header("content-type"), Some("application/json"));
}

#[test]
fn charts_over_25_dashboards_in_batches_of_10_with_windows_and_text_boxes() {
    let (h, peak) = periscope_api(25, Duration::from_millis(15));
    let api = serve(h);
    let text = config(&api.url, "charts", "");
    let mut s = source_from(&DESCRIPTOR, &text);
    let mut p = Json::Null;
    let mut paginations = Vec::new();
    let mut records: Vec<(String, Json)> = Vec::new();
    loop {
        let page = s.get(&p, &ctx()).unwrap();
        records.extend(page.records.iter().map(|r| (r.id.to_owned(), serde_json::from_slice(r.data).unwrap())));
        paginations.push(page.next.clone());
        if page.is_last() {
            break;
        }
        p = page.next;
    }
    assert_eq!(ids(&records), chart_ids(25), "database 999 only, deduplicated, dashboards in order");
    let rest = |from: u64| json!({"dashboard_ids": (from..=25).map(|d| d.to_string()).collect::<Vec<_>>()});
    assert_eq!(paginations, [rest(11), rest(21), json!({})]);

    // The text box chart carries the text bizon extracts; others `raw_text: null`.
    let chart = |id: &str| records.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone()).unwrap();
    assert_eq!(
        chart("202"),
        json!({"id": 202, "dashboard_id": 2, "database_id": "999", "content_id": 205, "title": "notes",
               "raw_text": "Hello205 world [clickhere](https://example.com/doc)"})
    );
    assert_eq!(
        chart("211"),
        json!({"id": 211, "dashboard_id": 2, "database_id": 999, "content_id": null, "title": "chart 211", "raw_text": null})
    );

    // Windows of 50 rows until an empty one: dashboard 2 has two, dashboard 3 none.
    let rows_of = |d: &str| -> Vec<String> {
        api.requests()
            .iter()
            .filter(|r| r.path == "/welcome/remaining_widgets" && r.param("current_dashboard") == Some(d))
            .map(|r| r.param("minimum_dashboard_fluid_row").unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows_of("2"), ["0", "50", "100"]);
    assert_eq!(rows_of("3"), ["0"]);
    let widget_requests = api.hits("/welcome/remaining_widgets");
    assert_eq!(widget_requests as u64, (1..=25).map(|d| windows(d) + 1).sum::<u64>());
    assert_eq!(api.hits("/login_state/dashboards"), 1);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=10).contains(&peak), "dashboards of a batch fetched concurrently, at most 10: {peak}");
}

#[test]
fn charts_concurrency_follows_source_http_and_resumes_from_any_page() {
    let (h, peak) = periscope_api(25, Duration::from_millis(15));
    let api = serve(h);
    let text = config(&api.url, "charts", "http: {concurrency: 3}\n");
    let (records, pages) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), chart_ids(25));
    assert_eq!(pages, 3);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "concurrency 3: {peak}");

    // A resume from bizon's pagination reads only the dashboards listed.
    let mut s = source_from(&DESCRIPTOR, &text);
    let page = s.get(&json!({"dashboard_ids": ["23", "24", "25"]}), &ctx()).unwrap();
    let got: Vec<String> = page.records.iter().map(|r| r.id.to_owned()).collect();
    assert_eq!(got, ["2301", "2302", "2311", "2312", "2501", "2502"]);
    assert!(page.is_last());
    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx(), chart_ids(25).len());
}

#[test]
fn no_dashboard_is_one_empty_last_page() {
    let (h, _) = periscope_api(0, Duration::ZERO);
    let api = serve(h);
    let (records, pages) =
        read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "charts", "")).as_mut(), &ctx()).unwrap();
    assert!(records.is_empty());
    assert_eq!(pages, 1);
    assert_eq!(api.hits("/welcome/remaining_widgets"), 0);
}

#[test]
fn a_failing_chart_window_fails_the_read_after_bounded_retries() {
    let (h, _) = periscope_api(12, Duration::ZERO);
    let api = serve(Arc::new(move |r: &FakeRequest| {
        if r.path == "/welcome/remaining_widgets" && r.param("current_dashboard") == Some("5") {
            return FakeResponse::status(500, r#"{"error": "boom"}"#);
        }
        h(r)
    }));
    let text = config(&api.url, "charts", "http: {retries: {total: 2, backoff_factor: 0.01}}\n");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(msg.contains("/welcome/remaining_widgets?current_dashboard=5&minimum_dashboard_fluid_row=0"), "{msg}");
    assert!(msg.contains("status 500, still failing after 2 retries"), "{msg}");
    let attempts = api
        .requests()
        .iter()
        .filter(|r| r.path == "/welcome/remaining_widgets" && r.param("current_dashboard") == Some("5"))
        .count();
    assert_eq!(attempts, 3, "bizon retried a failing window up to 1000 times");
    for secret in [CF_BM, SESSION, CSRF] {
        assert!(!msg.contains(secret), "{msg}");
    }
}

#[test]
fn errors_never_show_the_cookies_or_the_csrf_token() {
    let api = FakeApi::start(|r: &FakeRequest| {
        let echo = format!(
            r#"{{"error": "bad session", "cookie": "{}", "csrf": "{}"}}"#,
            r.header("cookie").unwrap_or(""),
            r.header("x-csrf-token").unwrap_or("")
        );
        FakeResponse::status(if r.path == "/users/owners" { 403 } else { 422 }, &echo)
    });
    for stream in ["users", "views"] {
        let err = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, stream, "")).as_mut(), &ctx()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad session"), "the body is shown: {msg}");
        for secret in [CF_BM, SESSION, CSRF] {
            assert!(!msg.contains(secret), "{secret} leaked: {msg}");
        }
    }
}

#[test]
fn config_headers_override_bizons_by_name() {
    let (h, _) = periscope_api(1, Duration::ZERO);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let api = serve(Arc::new(move |r: &FakeRequest| {
        s2.lock().unwrap().push(r.header("accept-language").map(str::to_owned));
        h(r)
    }));
    let text = config(&api.url, "dashboards", "")
        .replace("    cookies:\n", "    headers: {Accept-Language: en-GB}\n    cookies:\n");
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), ["1"]);
    assert_eq!(*seen.lock().unwrap(), [Some("en-GB".to_owned())]);
}

#[test]
fn periscope_passes_the_http_error_suite() {
    let (h, _) = periscope_api(12, Duration::ZERO);
    let config = |url: &str| config(url, "charts", "");
    let n = error_suite(&DESCRIPTOR, &config, h, "cookies", SESSION);
    assert_eq!(n, chart_ids(12).len());
}

#[test]
fn textbox_text_as_bizon_extracts_it() {
    assert_eq!(textbox_text(&json!({"id": 1, "text_data": null})), "");
    assert_eq!(textbox_text(&json!({"id": 1, "text_data": {}})), "");
    let nested = json!({"text_data": {"document": {"nodes": [
        {"object": "block", "type": "heading", "nodes": [{"object": "text", "leaves": [{"text": " Title "}]}]},
        {"object": "block", "type": "list", "nodes": [
            {"object": "block", "type": "item", "nodes": [{"object": "text", "leaves": [{"text": "one"}, {"text": ""}]}]},
            {"object": "inline", "type": "link", "data": {"url": "https://x.io/a?b=1"}, "nodes": [{"object": "text", "leaves": [{"text": "\u{feff}docs"}]}]}
        ]}
    ]}}});
    // Empty leaves are kept as bizon keeps them (a double space).
    assert_eq!(textbox_text(&nested), "Title one  [docs](https://x.io/a?b=1)");
}

#[test]
fn config_errors_are_located() {
    let base = config("http://x", "charts", "");
    let err = parse_error(&DESCRIPTOR, &base.replace(&format!("x_csrf_token: {CSRF}\n"), ""));
    assert!(err.contains("missing key `x_csrf_token`") && err.contains("example configs omit it"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace("cf_bm:", "cfbm:"));
    assert!(err.contains("unknown cookie `cfbm`") && err.contains("did you mean `cf_bm`"), "{err}");
    assert!(err.contains("line 13"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace(&format!("      periscope_session: {SESSION}\n"), ""));
    assert!(err.contains("missing cookie `periscope_session`"), "{err}");
    let text = base.split("authentication:").next().unwrap().to_owned()
        + "authentication:\n  type: api_key\n  params:\n    token: abc\n";
    let err = parse_error(&DESCRIPTOR, &text);
    assert!(err.contains("authentication type `api_key` is not supported") && err.contains("line 9"), "{err}");
    let text = base.split("authentication:").next().unwrap().to_owned();
    let err = parse_error(&DESCRIPTOR, &text);
    assert!(err.contains("missing key `authentication`"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace("database_id: 999", "database_id: main"));
    assert!(err.contains("expected an integer, found `main`") && err.contains("line 5"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace("stream: charts\n", "stream: charts\nbase_ur: x\n"));
    assert!(err.contains("unknown key `base_ur`") && err.contains("base_url"), "{err}");
}
