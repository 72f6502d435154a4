//! `sana_ai` against a local server answering as Sana's Insights API does: the OAuth
//! client-credentials token (`data.accessToken`/`data.expiresIn`), `POST /reports/query` →
//! `data.jobId`, `GET /reports/jobs/{id}` → `data.status` and, once `successful`,
//! `data.link.url`, and the CSV behind the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::{ErrorKind, Json, ReadContext, Source};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::DESCRIPTOR;
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

const QUERY: &str = r#"SELECT "user", "user_type" FROM "analytics"."users" ORDER BY "user" ASC"#;
const SECRET: &str = "client-SECRET-42";
const SIGNATURE: &str = "X-Amz-Signature=sig0123456789abcdef";

fn ctx() -> ReadContext {
    ReadContext::default()
}

/// A report of `n` rows `user,user_type,note` (notes with commas, quotes and line breaks).
pub fn report(n: usize) -> String {
    let mut s = String::from("user,user_type,note\r\n");
    for i in 0..n {
        s.push_str(&format!(
            "u{i},{},\"note {i}, \"\"quoted\"\"\nsecond line\"\r\n",
            if i % 2 == 0 { "admin" } else { "member" }
        ));
    }
    s
}

/// How the fake Sana behaves.
#[derive(Clone)]
pub struct Behaviour {
    /// Status of successive polls of a job; the last one repeats.
    statuses: Vec<&'static str>,
    csv: String,
    /// Host of the download link (`None`: the API's own host).
    link_host: Option<String>,
    /// Jobs the server no longer knows (404).
    gone: Vec<&'static str>,
}

impl Behaviour {
    pub fn new(statuses: &[&'static str], csv: String) -> Self {
        Behaviour { statuses: statuses.to_vec(), csv, link_host: None, gone: Vec::new() }
    }
}

/// Sana's API under `/api/v1`, its token endpoint at `/api/token`, the CSVs at `/files/`.
pub fn handler(b: Behaviour) -> Handler {
    let jobs = AtomicUsize::new(0);
    let polls: Mutex<HashMap<String, usize>> = Mutex::default();
    Arc::new(move |r: &FakeRequest| {
        let host = r.header("host").unwrap_or("127.0.0.1").to_owned();
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/api/token") => {
                assert_eq!(r.form_value("grant_type").as_deref(), Some("client_credentials"));
                assert_eq!(r.form_value("client_id").as_deref(), Some("my-client"));
                assert_eq!(r.form_value("client_secret").as_deref(), Some(SECRET));
                assert_eq!(r.form_value("scope").as_deref(), Some("read,write"));
                FakeResponse::json(
                    json!({"data": {"accessToken": "access-TOKEN-1", "tokenType": "bearer", "expiresIn": 3600}}),
                )
            }
            ("POST", "/api/v1/reports/query") => {
                assert_eq!(r.json(), json!({"query": QUERY, "format": "csv"}));
                assert_eq!(r.header("content-type"), Some("application/json"));
                let n = jobs.fetch_add(1, Ordering::SeqCst) + 1;
                FakeResponse::json(json!({"data": {"jobId": format!("job-{n}")}}))
            }
            ("GET", p) if p.starts_with("/api/v1/reports/jobs/") => {
                let id = p.trim_start_matches("/api/v1/reports/jobs/").to_owned();
                if b.gone.contains(&id.as_str()) {
                    return FakeResponse::status(404, r#"{"error": {"message": "job not found"}}"#);
                }
                let mut polls = polls.lock().unwrap();
                let k = polls.entry(id.clone()).or_default();
                let status = b.statuses[(*k).min(b.statuses.len() - 1)];
                *k += 1;
                let mut data = json!({"jobId": id, "status": status});
                if status == "successful" {
                    let h = match &b.link_host {
                        Some(other) => format!("{other}:{}", host.rsplit(':').next().unwrap()),
                        None => host,
                    };
                    data["link"] = json!({"url": format!("http://{h}/files/{id}.csv?{SIGNATURE}")});
                }
                if status == "failed" {
                    data["error"] = json!("syntax error at or near \"FORM\"");
                }
                FakeResponse::json(json!({"data": data}))
            }
            ("GET", p) if p.starts_with("/files/") => {
                assert_eq!(r.param("X-Amz-Signature"), Some("sig0123456789abcdef"));
                FakeResponse::text(200, "text/csv", &b.csv)
            }
            _ => FakeResponse::status(404, r#"{"error": "no route"}"#),
        }
    })
}

fn start(b: Behaviour) -> FakeApi {
    let h = handler(b);
    FakeApi::start(move |r: &FakeRequest| h(r))
}

const OAUTH: &str = "authentication:\n  type: oauth\n  params:\n    token_refresh_endpoint: {url}/api/token\n    client_id: my-client\n    client_secret: client-SECRET-42\n    grant_type: client_credentials\n    access_token_name: accessToken\n    expires_in_name: expiresIn\n    response_field_path: data\n    scopes: [read, write]\n";

/// The `source:` mapping against `url`, with `extra` keys.
pub fn config(url: &str, extra: &str) -> String {
    format!(
        "name: sana_ai\nstream: insight_report\ndomain: acme\nquery: '{}'\nbase_url: {url}/api/v1\npoll_interval_seconds: 0.05\n{extra}{}",
        QUERY.replace('\'', "''"),
        OAUTH.replace("{url}", url)
    )
}

fn ids(records: &[(String, Json)]) -> Vec<String> {
    records.iter().map(|(id, _)| id.clone()).collect()
}

fn range(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| i.to_string()).collect()
}

#[test]
fn a_job_that_succeeds_after_two_polls_gives_one_record_per_row() {
    let api = start(Behaviour::new(&["pending", "running", "successful"], report(3)));
    let started = Instant::now();
    let (records, pages) = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap();
    assert_eq!(pages, 1);
    assert_eq!(ids(&records), ["0", "1", "2"]);
    assert_eq!(records[1].1, json!({"user": "u1", "user_type": "member", "note": "note 1, \"quoted\"\nsecond line"}));
    // Keys in the header's order, values strings, as csv.DictReader gives them.
    let keys: Vec<&String> = records[0].1.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["user", "user_type", "note"]);

    let reqs = api.requests();
    let paths: Vec<String> = reqs.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        paths,
        [
            "POST /api/token",
            "POST /api/v1/reports/query",
            "GET /api/v1/reports/jobs/job-1",
            "GET /api/v1/reports/jobs/job-1",
            "GET /api/v1/reports/jobs/job-1",
            "GET /files/job-1.csv",
        ]
    );
    // The bearer token on every API call, and on the link: it is on the API's own host.
    for r in &reqs[1..] {
        assert_eq!(r.header("authorization"), Some("Bearer access-TOKEN-1"), "{}", r.path);
    }
    assert!(started.elapsed() >= Duration::from_millis(100), "two waits of 50 ms between the polls");
}

#[test]
fn a_link_on_another_host_is_fetched_without_the_token() {
    // `localhost` reaches the same server, but is not the API's host (127.0.0.1).
    let mut b = Behaviour::new(&["successful"], report(2));
    b.link_host = Some("localhost".into());
    let api = start(b);
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), ["0", "1"]);
    let download = api.requests().into_iter().find(|r| r.path.starts_with("/files/")).unwrap();
    assert_eq!(download.header("authorization"), None);
    assert!(download.header("host").unwrap().starts_with("localhost:"));
}

#[test]
fn a_job_that_never_finishes_fails_after_max_wait() {
    let api = start(Behaviour::new(&["pending", "running"], report(1)));
    let text = config(&api.url, "max_wait_seconds: 0.3\n");
    let started = Instant::now();
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    let elapsed = started.elapsed();
    let msg = err.to_string();
    assert!(msg.contains("report job `job-1` is still `running` after "), "{msg}");
    assert!(msg.contains(" s (max_wait_seconds: 0.3)"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    let polls = api.hits("/api/v1/reports/jobs/job-1");
    assert!((3..=10).contains(&polls), "about 0.3 s / 0.05 s polls, got {polls}");
    assert_eq!(api.hits("/files/job-1.csv"), 0);
}

#[test]
fn a_failed_job_fails_with_its_status() {
    let api = start(Behaviour::new(&["pending", "failed"], report(1)));
    let err = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg, "sana_ai: report job `job-1` ended with status `failed`: syntax error at or near \"FORM\"");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(api.hits("/api/v1/reports/jobs/job-1"), 2);

    // Any state that is neither waiting nor `successful` is a failure.
    let api = start(Behaviour::new(&["cancelled"], report(1)));
    let err = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap_err();
    assert!(err.to_string().contains("ended with status `cancelled`"), "{err}");
}

#[test]
fn csv_quoting_survives_and_short_and_long_rows_follow_dictreader() {
    let csv = "\u{feff}id,\"name, full\",comment\n1,\"Doe, Jane\",\"she said \"\"hi\"\"\r\nthen left\"\n\n2,Solo\n3,a,b,extra1,extra2\n";
    let api = start(Behaviour::new(&["successful"], csv.into()));
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap();
    assert_eq!(ids(&records), ["0", "1", "2"], "the blank line is skipped, as DictReader does");
    assert_eq!(
        records[0].1,
        json!({"id": "1", "name, full": "Doe, Jane", "comment": "she said \"hi\"\r\nthen left"}),
        "BOM stripped from the first column name"
    );
    assert_eq!(records[1].1, json!({"id": "2", "name, full": "Solo", "comment": null}));
    assert_eq!(records[2].1, json!({"id": "3", "name, full": "a", "comment": "b", "null": ["extra1", "extra2"]}));

    // A header-only report has no records.
    let api = start(Behaviour::new(&["successful"], "a,b\n".into()));
    let (records, pages) = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap();
    assert!(records.is_empty());
    assert_eq!(pages, 1);
}

#[test]
fn pages_of_rows_carry_the_job_and_a_resume_skips_to_the_row() {
    let api = start(Behaviour::new(&["successful"], report(12)));
    let text = config(&api.url, "rows_per_page: 5\n");
    let mut s = source_from(&DESCRIPTOR, &text);
    let mut paginations = Vec::new();
    let mut p = Json::Null;
    let mut all = Vec::new();
    loop {
        let page = s.get(&p, &ctx()).unwrap();
        all.extend(page.records.iter().map(|r| r.id.to_owned()));
        paginations.push(page.next.clone());
        if page.is_last() {
            break;
        }
        p = page.next;
    }
    assert_eq!(all, range(0, 12));
    assert_eq!(paginations, [json!({"job_id": "job-1", "row": 5}), json!({"job_id": "job-1", "row": 10}), json!({})]);
    // One job, one download for the whole read.
    assert_eq!(api.hits("/api/v1/reports/query"), 1);
    assert_eq!(api.hits("/files/job-1.csv"), 1);

    // A new instance resumed mid-report: the same job, a fresh link, rows from 5 on.
    let mut s = source_from(&DESCRIPTOR, &text);
    let page = s.get(&json!({"job_id": "job-1", "row": 5}), &ctx()).unwrap();
    let got: Vec<String> = page.records.iter().map(|r| r.id.to_owned()).collect();
    assert_eq!(got, range(5, 10));
    let first: Json = serde_json::from_slice(page.records.iter().next().unwrap().data).unwrap();
    assert_eq!(first["user"], "u5");
    assert_eq!(page.next, json!({"job_id": "job-1", "row": 10}));
    assert_eq!(api.hits("/api/v1/reports/query"), 1, "the query is not submitted again");
    assert_eq!(api.hits("/files/job-1.csv"), 2);

    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx(), 12);
}

#[test]
fn a_resume_whose_job_is_gone_submits_the_query_again() {
    let mut b = Behaviour::new(&["successful"], report(8));
    b.gone = vec!["job-old"];
    let api = start(b);
    let text = config(&api.url, "rows_per_page: 5\n");
    let mut s = source_from(&DESCRIPTOR, &text);
    let page = s.get(&json!({"job_id": "job-old", "row": 5}), &ctx()).unwrap();
    let got: Vec<String> = page.records.iter().map(|r| r.id.to_owned()).collect();
    assert_eq!(got, range(5, 8));
    assert!(page.is_last());
    assert_eq!(api.hits("/api/v1/reports/jobs/job-old"), 1);
    assert_eq!(api.hits("/api/v1/reports/query"), 1);
    assert_eq!(api.hits("/files/job-1.csv"), 1);
}

#[test]
fn errors_never_show_the_secret_the_token_or_the_link_signature() {
    // The API refuses the token: a config error naming oauth, with neither secret nor token.
    let api = FakeApi::start(|r: &FakeRequest| match r.path.as_str() {
        "/api/token" => FakeResponse::json(json!({"data": {"accessToken": "access-TOKEN-1", "expiresIn": 3600}})),
        _ => FakeResponse::status(401, r#"{"error": "token access-TOKEN-1 revoked; client client-SECRET-42"}"#),
    });
    let text = config(&api.url, "http: {retries: {total: 1, backoff_factor: 0.01}}\n");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("401 Unauthorized") && msg.contains("authentication type `oauth`"), "{msg}");
    assert!(!msg.contains("access-TOKEN-1") && !msg.contains(SECRET), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Config);

    // The token endpoint refuses the client: the secret stays masked.
    let api =
        FakeApi::start(|_r: &FakeRequest| FakeResponse::status(400, r#"{"error": "invalid client client-SECRET-42"}"#));
    let err = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("oauth: could not refresh the access token"), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");

    // A link that expired: the download error names the job, not the signature.
    let inner = handler(Behaviour::new(&["successful"], report(1)));
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path.starts_with("/files/") {
            return FakeResponse::text(
                403,
                "application/xml",
                "<Error><Code>AccessDenied</Code>Request has expired</Error>",
            );
        }
        inner(r)
    });
    let err = read_to_end(source_from(&DESCRIPTOR, &config(&api.url, "")).as_mut(), &ctx()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("sana_ai: downloading the CSV of report job `job-1`: GET http://"), "{msg}");
    assert!(msg.contains("403 Forbidden") && msg.contains("/files/job-1.csv?***"), "{msg}");
    assert!(!msg.contains("sig0123456789abcdef"), "{msg}");
}

#[test]
fn sana_passes_the_http_error_suite() {
    // The suite's first request is the report query (an API token, so no token request first).
    let handler = handler(Behaviour::new(&["pending", "successful"], report(4)));
    let config = |url: &str| {
        format!(
            "name: sana_ai\nstream: insight_report\ndomain: acme\nquery: '{}'\nbase_url: {url}/api/v1\npoll_interval_seconds: 0.01\nauthentication:\n  type: api_key\n  params:\n    token: sana-api-TOKEN-7\n",
            QUERY.replace('\'', "''")
        )
    };
    assert_eq!(error_suite(&DESCRIPTOR, &config, handler, "api_key", "sana-api-TOKEN-7"), 4);
}

#[test]
fn config_defaults_and_located_errors() {
    let base = "name: sana_ai\nstream: insight_report\ndomain: acme\nquery: 'SELECT 1'\n".to_owned();
    let node = bizon_core::config::yaml::parse(&base).unwrap();
    let c: super::SanaConfig = crate::descriptor::own_keys(
        &node,
        "source",
        bizon_core::config::yaml::struct_fields::<bizon_core::config::SourceCommon>(),
        bizon_core::config::yaml::struct_fields::<super::SanaConfig>(),
    )
    .unwrap();
    assert_eq!(c.base(), "https://acme.sana.ai/api/v1");
    assert_eq!((c.poll_interval_seconds, c.max_wait_seconds, c.rows_per_page), (3.0, 3600.0, 5000));

    let err = parse_error(&DESCRIPTOR, &base.replace("domain: acme", "domain: 'acme.sana.ai/x'"));
    assert!(err.contains("`domain` is the instance name") && err.contains("line 3"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}max_wait_seconds: 0\n"));
    assert!(err.contains("`max_wait_seconds` must be a number > 0") && err.contains("line 5"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}rows_per_page: 0\n"));
    assert!(err.contains("`rows_per_page` must be at least 1"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}poll_interval: 5\n"));
    assert!(err.contains("unknown key `poll_interval`") && err.contains("poll_interval_seconds"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}base_url: acme.sana.ai\n"));
    assert!(err.contains("`base_url` must start with http"), "{err}");
    let err = parse_error(&DESCRIPTOR, &base.replace("query: 'SELECT 1'\n", ""));
    assert!(err.contains("query"), "{err}");
    let err = parse_error(
        &DESCRIPTOR,
        &format!("{base}authentication:\n  type: oauth\n  params:\n    client_id: x\n    client_secret: y\n"),
    );
    assert!(err.contains("token_refresh_endpoint"), "{err}");
}

#[test]
fn unexpected_pagination_is_an_internal_error() {
    let api = start(Behaviour::new(&["successful"], report(1)));
    let mut s: Box<dyn Source> = source_from(&DESCRIPTOR, &config(&api.url, ""));
    let err = s.get(&json!({"offset": 3}), &ctx()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("expected {\"job_id\", \"row\"}"), "{err}");
    assert_eq!(api.requests().len(), 0);
}
