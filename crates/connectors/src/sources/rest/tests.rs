//! The declarative `rest` source against local servers: every pagination style, concurrency,
//! parent → child streams, incremental parameters, auth types, retries and error messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::config::SyncMode;
use bizon_core::{ErrorKind, Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::DESCRIPTOR;
use crate::http::testing::{parse_error, read_to_end, source_from};

fn ctx() -> ReadContext {
    ReadContext::default()
}

/// `n` items `{id, name}` starting at `from`.
fn items(from: u64, n: u64) -> Vec<Json> {
    (from..from + n).map(|i| json!({"id": i, "name": format!("item {i}")})).collect()
}

fn ids(records: &[(String, Json)]) -> Vec<String> {
    records.iter().map(|(id, _)| id.clone()).collect()
}

fn expected(n: u64) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// An offset/limit API over `total` items, answering after `delay`.
fn offset_api(total: u64, delay: Duration) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| {
        let offset: u64 = r.param("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit: u64 = r.param("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
        let n = limit.min(total.saturating_sub(offset));
        FakeResponse::json(json!({"results": items(offset, n), "endOfRecords": offset + n >= total})).delay(delay)
    })
}

fn offset_config(url: &str, concurrency: usize) -> String {
    format!(
        "name: rest\nstream: items\nbase_url: {url}\nhttp:\n  concurrency: {concurrency}\nstreams:\n  - name: items\n    path: /items\n    records: /results\n    primary_key: id\n    paginator: {{type: offset, limit: 10, end_path: /endOfRecords}}\n"
    )
}

#[test]
fn offset_paging_reads_every_record_once() {
    let api = offset_api(95, Duration::ZERO);
    let mut s = source_from(&DESCRIPTOR, &offset_config(&api.url, 1));
    let (records, pages) = read_to_end(s.as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), expected(95));
    assert_eq!(pages, 10);
    assert_eq!(records[3].1, json!({"id": 3, "name": "item 3"}));
}

#[test]
fn offset_paging_fetches_concurrently_in_order_and_resumes() {
    let api = offset_api(200, Duration::from_millis(40));
    let text = offset_config(&api.url, 8);
    let started = Instant::now();
    let mut s = source_from(&DESCRIPTOR, &text);
    let (records, _) = read_to_end(s.as_mut(), &ctx()).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(ids(&records), expected(200), "pages delivered in order, none twice");
    // 20 pages at 40 ms each: one at a time takes 800 ms; 8 at once about 3 windows.
    assert!(elapsed < Duration::from_millis(700), "not concurrent: {elapsed:?}");
    // The conformance suite: restart from every page's pagination yields exactly the rest.
    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx(), 200);
}

#[test]
fn next_url_link_header_cursor_page_number_and_graphql() {
    let api = FakeApi::start(|r: &FakeRequest| {
        let page: u64 = r.param("page").and_then(|v| v.parse().ok()).unwrap_or(1);
        match r.path.as_str() {
            // next URL in the body; the last page's `next` is null.
            "/next" => {
                let next = (page < 3).then(|| format!("/next?page={}", page + 1));
                FakeResponse::json(json!({"data": items((page - 1) * 5, 5), "next": next}))
            }
            // RFC 8288 Link header.
            "/link" => {
                let mut resp = FakeResponse::json(json!(items((page - 1) * 4, 4)));
                if page < 4 {
                    resp = resp.header("Link", &format!("<{}?page={}>; rel=\"next\"", "/link", page + 1));
                }
                resp
            }
            // Opaque cursor in the body.
            "/cursor" => {
                let at: u64 = r.param("cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
                let next = (at < 20).then(|| (at + 10).to_string());
                FakeResponse::json(json!({"items": items(at, 10), "meta": {"next_cursor": next}}))
            }
            // Page numbers with a total page count.
            "/pages" => FakeResponse::json(json!({"rows": items((page - 1) * 3, 3), "total_pages": 4})),
            // GraphQL Relay cursors.
            "/graphql" => {
                let body = r.json();
                let after: u64 = body["variables"]["after"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
                assert_eq!(body["variables"]["slug"], "acme");
                let edges: Vec<Json> = items(after, 7).into_iter().map(|n| json!({"node": n})).collect();
                FakeResponse::json(
                    json!({"data": {"customers": {"edges": edges, "pageInfo": {"hasNextPage": after < 14, "endCursor": (after + 7).to_string()}}}}),
                )
            }
            _ => FakeResponse::status(404, "{}"),
        }
    });
    // The next URLs and Link targets are host-relative here: they resolve against the request.
    let cases = [
        ("next", "    path: /next\n    records: /data\n    paginator: {type: next_url, next_url_path: /next}\n", 15),
        ("link", "    path: /link\n    paginator: {type: link_header}\n", 16),
        (
            "cursor",
            "    path: /cursor\n    records: /items\n    paginator: {type: cursor, cursor_path: /meta/next_cursor, cursor_param: cursor}\n",
            30,
        ),
        (
            "pages",
            "    path: /pages\n    records: /rows\n    paginator: {type: page_number, total_pages_path: /total_pages}\n",
            12,
        ),
        (
            "graphql",
            "    path: /graphql\n    method: POST\n    body: {query: 'query Q($slug: String!, $after: String) { customers }', variables: {slug: acme}}\n    records: /data/customers/edges\n    primary_key: /node/id\n    paginator: {type: graphql, page_info_path: /data/customers/pageInfo}\n",
            21,
        ),
    ];
    for (name, stream, n) in cases {
        let key = if name == "graphql" { "" } else { "    primary_key: id\n" };
        let text = format!("name: rest\nstream: s\nbase_url: {}\nstreams:\n  - name: s\n{key}{stream}", api.url);
        let mut s = source_from(&DESCRIPTOR, &text);
        let (records, _) = read_to_end(s.as_mut(), &ctx()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ids(&records), expected(n), "{name}");
        bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx(), n as usize);
    }
}

#[test]
fn parent_child_streams_fetch_children_concurrently() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path == "/users" {
            let page: u64 = r.param("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let users: Vec<Json> = if page <= 2 { items((page - 1) * 5, 5) } else { vec![] };
            return FakeResponse::json(json!(users));
        }
        let user: u64 = r.path.trim_start_matches("/users/").trim_end_matches("/posts").parse().unwrap();
        let n = f.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        f.fetch_sub(1, Ordering::SeqCst);
        let posts: Vec<Json> = (0..3).map(|k| json!({"id": user * 100 + k, "user": user})).collect();
        FakeResponse::json(json!(posts))
    });
    let text = format!(
        "name: rest\nstream: posts\nbase_url: {}\nhttp: {{concurrency: 4}}\nstreams:\n  - name: users\n    path: /users\n    primary_key: id\n    paginator: {{type: page_number}}\n  - name: posts\n    path: /users/{{user_id}}/posts\n    primary_key: id\n    parent: {{stream: users, fields: {{user_id: id}}}}\n",
        api.url
    );
    let mut s = source_from(&DESCRIPTOR, &text);
    let (records, _) = read_to_end(s.as_mut(), &ctx()).unwrap();
    let want: Vec<String> = (0..10u64).flat_map(|u| (0..3).map(move |k| (u * 100 + k).to_string())).collect();
    assert_eq!(ids(&records), want, "children in parent order");
    assert_eq!(records[4].1["_parent"], json!({"user_id": "1"}));
    assert!(peak.load(Ordering::SeqCst) >= 3, "children fetched one at a time");
    assert!(peak.load(Ordering::SeqCst) <= 4, "more than `concurrency` requests at once");
    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx(), 30);
}

/// Ids past 2^64 (a float would round 12345678901234567890123 and …124 to one value): record ids
/// and a child's URL keep every digit the server sent.
#[test]
fn numeric_ids_past_64_bits_keep_every_digit_in_record_ids_and_child_urls() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path == "/users" {
            let body = r#"[{"id": 12345678901234567890123}, {"id": 12345678901234567890124}, {"id": 1.50}]"#;
            return FakeResponse::raw(200, "application/json", body.as_bytes().to_vec());
        }
        seen.lock().unwrap().push(r.path.clone());
        let user = r.path.trim_start_matches("/users/").trim_end_matches("/posts").to_owned();
        FakeResponse::raw(200, "application/json", format!(r#"[{{"id": {user}9}}]"#).into_bytes())
    });
    let text = format!(
        "name: rest\nstream: posts\nbase_url: {}\nstreams:\n  - name: users\n    path: /users\n    primary_key: id\n  - name: posts\n    path: /users/{{user_id}}/posts\n    primary_key: id\n    parent: {{stream: users, fields: {{user_id: id}}}}\n",
        api.url
    );
    let (users, _) =
        read_to_end(source_from(&DESCRIPTOR, &text.replace("stream: posts", "stream: users")).as_mut(), &ctx())
            .unwrap();
    assert_eq!(ids(&users), ["12345678901234567890123", "12345678901234567890124", "1.50"]);
    let (posts, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&posts), ["123456789012345678901239", "123456789012345678901249", "1.509"]);
    assert_eq!(
        *paths.lock().unwrap(),
        ["/users/12345678901234567890123/posts", "/users/12345678901234567890124/posts", "/users/1.50/posts"]
    );
    assert_eq!(posts[1].1["_parent"], json!({"user_id": "12345678901234567890124"}));
}

/// A parent field named by a JSON pointer fills a child's path beside a top-level one.
#[test]
fn a_child_path_takes_parent_fields_by_name_and_by_json_pointer() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path == "/users" {
            return FakeResponse::json(json!([{"id": 7, "org": {"slug": "acme", "n": 2}}]));
        }
        seen.lock().unwrap().push(r.path.clone());
        FakeResponse::json(json!([{"id": 1}]))
    });
    let text = format!(
        "name: rest\nstream: posts\nbase_url: {}\nstreams:\n  - name: users\n    path: /users\n    primary_key: id\n  - name: posts\n    path: /orgs/{{org}}/{{n}}/users/{{user_id}}/posts\n    primary_key: id\n    parent: {{stream: users, fields: {{user_id: id, org: /org/slug, n: /org/n}}}}\n",
        api.url
    );
    let (posts, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(*paths.lock().unwrap(), ["/orgs/acme/2/users/7/posts"]);
    assert_eq!(posts[0].1["_parent"], json!({"user_id": "7", "org": "acme", "n": "2"}));
}

#[test]
fn incremental_parameter_carries_the_watermark() {
    let api = FakeApi::start(|r: &FakeRequest| {
        let since = r.param("updated_since").unwrap_or("").to_owned();
        let all = [("a", "2024-01-01"), ("b", "2024-02-01"), ("c", "2024-03-01")];
        let rows: Vec<Json> =
            all.iter().filter(|(_, t)| *t > since.as_str()).map(|(id, t)| json!({"id": id, "updated_at": t})).collect();
        FakeResponse::json(json!({"rows": rows}))
    });
    let text = format!(
        "name: rest\nstream: s\nsync_mode: incremental\ncursor_field: updated_at\nbase_url: {}\nstreams:\n  - name: s\n    path: /s\n    records: /rows\n    primary_key: id\n    incremental: {{param: updated_since, initial_value: '2024-01-15'}}\n",
        api.url
    );
    let first =
        ReadContext { sync_mode: SyncMode::Incremental, watermark: None, cursor_field: Some("updated_at".into()) };
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &first).unwrap();
    assert_eq!(ids(&records), ["b", "c"], "first run sends initial_value");
    let later = ReadContext { watermark: Some(json!("2024-02-01")), ..first };
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &later).unwrap();
    assert_eq!(ids(&records), ["c"]);
    assert_eq!(api.requests().last().unwrap().param("updated_since"), Some("2024-02-01"));
}

/// A server that fails `failures` times with `status` (and a Retry-After of `retry_after`
/// seconds when given), then answers.
fn flaky(status: u16, failures: usize, retry_after: Option<&'static str>) -> FakeApi {
    let count = AtomicUsize::new(0);
    FakeApi::start(move |_r: &FakeRequest| {
        if count.fetch_add(1, Ordering::SeqCst) < failures {
            let mut resp = FakeResponse::status(status, r#"{"message": "slow down"}"#);
            if let Some(s) = retry_after {
                resp = resp.header("Retry-After", s);
            }
            return resp;
        }
        FakeResponse::json(json!([{"id": 1}, {"id": 2}]))
    })
}

fn single(url: &str, extra: &str) -> String {
    format!("name: rest\nstream: s\nbase_url: {url}\n{extra}streams:\n  - name: s\n    path: /s\n    primary_key: id\n")
}

#[test]
fn retries_429_with_retry_after_and_500_then_success() {
    let fast = "http: {retries: {backoff_factor: 0.01}}\n";
    let api = flaky(429, 2, Some("1"));
    let started = Instant::now();
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &single(&api.url, fast)).as_mut(), &ctx()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(api.requests().len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 honoured twice: {:?}", started.elapsed());

    let api = flaky(500, 1, None);
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &single(&api.url, fast)).as_mut(), &ctx()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(api.requests().len(), 2);

    // Retries are bounded: a server that keeps failing ends the read with a transient error.
    let api = flaky(503, usize::MAX, None);
    let text = single(&api.url, "http: {retries: {total: 3, backoff_factor: 0.01}}\n");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.message().contains("status 503, still failing after 3 retries"), "{err}");
    assert_eq!(api.requests().len(), 4);
}

#[test]
fn errors_name_the_request_and_never_the_token() {
    let api = FakeApi::start(|r: &FakeRequest| match r.path.as_str() {
        "/s" => FakeResponse::status(401, r#"{"message": "token tok-SECRET-123 is not valid"}"#),
        "/missing" => FakeResponse::status(404, r#"{"message": "no such thing"}"#),
        _ => FakeResponse::text(200, "application/json", "{\"rows\": [1, 2,,]}"),
    });
    let auth = "authentication:\n  type: bearer\n  params:\n    token: tok-SECRET-123\n";
    let err = read_to_end(source_from(&DESCRIPTOR, &single(&api.url, auth)).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("401 Unauthorized"), "{msg}");
    assert!(msg.contains("authentication type `bearer`"), "{msg}");
    assert!(!msg.contains("tok-SECRET-123"), "token leaked: {msg}");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(api.requests()[0].header("authorization"), Some("Bearer tok-SECRET-123"));

    let text = single(&api.url, "").replace("path: /s", "path: /missing");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    assert!(
        err.to_string().contains("GET http://127.0.0.1") && err.to_string().contains("/missing: 404 Not Found"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);

    let text = single(&api.url, "").replace("path: /s", "path: /bad");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    assert!(err.to_string().contains("malformed JSON in the response to GET"), "{err}");
    assert!(err.to_string().contains("line 1 column"), "{err}");
}

#[test]
fn auth_types_send_bizons_headers_and_are_redacted() {
    let api = FakeApi::start(|_r: &FakeRequest| FakeResponse::status(403, r#"{"echo": "denied"}"#));
    let cases = [
        ("api_key", "    token: k-123456\n", "authorization", "Bearer k-123456", "k-123456"),
        (
            "api_key",
            "    token: k-abcdef\n    auth_method: ''\n    auth_header: X-Api-Key\n",
            "x-api-key",
            "k-abcdef",
            "k-abcdef",
        ),
        (
            "basic",
            "    username: ann\n    password: pw-secret-1\n",
            "authorization",
            "Basic YW5uOnB3LXNlY3JldC0x",
            "pw-secret-1",
        ),
        ("cookies", "    cookies: {session: c00kie-val}\n", "cookie", "session=c00kie-val", "c00kie-val"),
    ];
    for (kind, params, header, value, secret) in cases {
        let auth = format!("authentication:\n  type: {kind}\n  params:\n{params}");
        let err = read_to_end(source_from(&DESCRIPTOR, &single(&api.url, &auth)).as_mut(), &ctx()).unwrap_err();
        let sent = api.requests().last().unwrap().header(header).map(str::to_owned);
        assert_eq!(sent.as_deref(), Some(value), "{kind}");
        assert!(err.to_string().contains(&format!("authentication type `{kind}`")), "{err}");
        assert!(!err.to_string().contains(secret), "{kind} secret leaked: {err}");
    }
}

/// A token endpoint issuing tokens that live `lifetime_s` seconds, and an API that refuses
/// expired ones.
struct OAuthServer {
    api: FakeApi,
    issued: Arc<Mutex<Vec<(String, Instant)>>>,
}

fn oauth_server(lifetime_s: f64, token_down: bool) -> OAuthServer {
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let i = issued.clone();
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path == "/token" {
            if token_down {
                return FakeResponse::status(503, "{}");
            }
            assert_eq!(r.form_value("grant_type").as_deref(), Some("refresh_token"));
            assert_eq!(r.form_value("refresh_token").as_deref(), Some("refresh-SECRET"));
            assert_eq!(r.form_value("scope").as_deref(), Some("read,write"));
            let mut v = i.lock().unwrap();
            let token = format!("access-{}", v.len() + 1);
            v.push((token.clone(), Instant::now()));
            return FakeResponse::json(json!({"data": {"accessToken": token, "expiresIn": lifetime_s}}));
        }
        let auth = r.header("authorization").unwrap_or("").trim_start_matches("Bearer ").to_owned();
        let valid =
            i.lock().unwrap().iter().any(|(t, at)| *t == auth && at.elapsed() < Duration::from_secs_f64(lifetime_s));
        if !valid {
            return FakeResponse::status(401, r#"{"message": "expired"}"#);
        }
        let page: u64 = r.param("page").and_then(|v| v.parse().ok()).unwrap_or(1);
        std::thread::sleep(Duration::from_millis(150));
        FakeResponse::json(json!({"rows": if page <= 10 { items((page - 1) * 2, 2) } else { vec![] }}))
    });
    OAuthServer { api, issued }
}

fn oauth_config(url: &str) -> String {
    format!(
        "name: rest\nstream: s\nbase_url: {url}\nhttp: {{retries: {{total: 2, backoff_factor: 0.01}}}}\nauthentication:\n  type: oauth\n  params:\n    token_refresh_endpoint: {url}/token\n    client_id: cid\n    client_secret: csecret-XYZ\n    refresh_token: refresh-SECRET\n    scopes: [read, write]\n    access_token_name: accessToken\n    expires_in_name: expiresIn\n    response_field_path: data\nstreams:\n  - name: s\n    path: /s\n    records: /rows\n    primary_key: id\n    paginator: {{type: page_number}}\n"
    )
}

#[test]
fn oauth_token_expiring_mid_run_is_refreshed() {
    // Tokens live 1 s; the read takes about 1.6 s (11 pages of 150 ms).
    let server = oauth_server(1.0, false);
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &oauth_config(&server.api.url)).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), expected(20));
    let refreshes = server.issued.lock().unwrap().len();
    assert!(refreshes >= 2, "the token was never refreshed ({refreshes})");
    assert_eq!(
        server.api.requests().iter().filter(|r| r.path == "/s" && r.header("authorization").is_none()).count(),
        0
    );
}

#[test]
fn oauth_refresh_endpoint_down_fails_clearly_after_bounded_retries() {
    let server = oauth_server(60.0, true);
    let err = read_to_end(source_from(&DESCRIPTOR, &oauth_config(&server.api.url)).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("oauth: could not refresh the access token"), "{msg}");
    assert!(msg.contains("still failing after 2 retries"), "{msg}");
    assert_eq!(server.api.hits("/token"), 3);
    assert_eq!(server.api.hits("/s"), 0);
    for secret in ["csecret-XYZ", "refresh-SECRET"] {
        assert!(!msg.contains(secret), "{msg}");
    }
}

#[test]
fn gzip_size_limit_and_rate_limit() {
    let api = FakeApi::start(|r: &FakeRequest| {
        if r.path == "/big" {
            return FakeResponse::json(json!([{"id": 1, "blob": "x".repeat(3 << 20)}]));
        }
        FakeResponse::json(json!({"rows": items(0, 50)})).gzipped()
    });
    let text = single(&api.url, "").replace("path: /s", "path: /gz\n    records: /rows");
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(records.len(), 50);
    assert!(api.requests()[0].header("accept-encoding").unwrap_or("").contains("gzip"));

    let text = single(&api.url, "http: {max_response_mb: 1}\n").replace("path: /s", "path: /big");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    assert!(err.to_string().contains("larger than the limit"), "{err}");

    let api = offset_api(100, Duration::ZERO);
    let text = offset_config(&api.url, 4).replace("concurrency: 4", "concurrency: 4\n  rate_limit: 20");
    let started = Instant::now();
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap();
    assert_eq!(records.len(), 100);
    // 10+ requests at 20/s: at least 0.45 s whatever the concurrency.
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
}

#[test]
fn config_errors_are_located() {
    let base = "name: rest\nstream: s\nbase_url: http://x\nstreams:\n  - name: s\n    path: /s\n";
    let err = parse_error(&DESCRIPTOR, &base.replace("stream: s\n", "stream: t\n"));
    assert!(err.contains("has no stream `t`") && err.contains("line 2"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}    paginator: {{type: offst, limit: 3}}\n"));
    assert!(err.contains("offst") && err.contains("offset"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}    record: /x\n"));
    assert!(err.contains("unknown field `record`") || err.contains("`record`"), "{err}");
    let err = parse_error(
        &DESCRIPTOR,
        &format!("{base}  - name: c\n    path: /c/{{id}}\n    parent: {{stream: sx, fields: {{id: id}}}}\n"),
    );
    assert!(err.contains("parent stream `sx` is not defined") && err.contains("did you mean"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}authentication:\n  type: bearer\n  params:\n    tokn: x\n"));
    assert!(err.contains("tokn"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace("http://x", "ftp://x"));
    assert!(err.contains("base_url") && err.contains("line 3"), "{err}");
}

#[test]
fn rest_passes_the_http_error_suite() {
    let handler: crate::http::testing::Handler =
        Arc::new(|_r: &FakeRequest| FakeResponse::json(json!({"results": items(0, 3)})));
    let config = |url: &str| {
        format!(
            "name: rest\nstream: s\nbase_url: {url}\nauthentication:\n  type: api_key\n  params:\n    token: sk-live-0123456789\nstreams:\n  - name: s\n    path: /s\n    records: /results\n    primary_key: id\n"
        )
    };
    let n = crate::http::testing::error_suite(&DESCRIPTOR, &config, handler, "api_key", "sk-live-0123456789");
    assert_eq!(n, 3);
}
