//! Test helpers of the HTTP sources: build a source from its YAML through its descriptor, and
//! read it to the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::config::yaml::{self, from_node};
use bizon_core::config::SourceCommon;
use bizon_core::{ErrorKind, Json, ReadContext, Result, Source};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};

use crate::descriptor::SourceDescriptor;

/// A source as a config builds it: descriptor parse, then build.
pub fn source_from(d: &SourceDescriptor, text: &str) -> Box<dyn Source> {
    let node = yaml::parse(text).expect("test YAML");
    let spec = (d.parse)(&node).unwrap_or_else(|e| panic!("{}: {}", d.name, e.message));
    let common: SourceCommon = from_node(&node, "source", (d.keys)()).expect("common keys");
    spec.build(&common, &[])
}

/// The parse error of a config (message with its path).
pub fn parse_error(d: &SourceDescriptor, text: &str) -> String {
    let node = yaml::parse(text).expect("test YAML");
    match (d.parse)(&node) {
        Ok(_) => panic!("{}: the config was accepted", d.name),
        Err(e) => format!("{} (line {})", e.message, e.mark.map_or(0, |m| m.line)),
    }
}

/// Every record (id, data) and the number of pages, or the first error.
pub fn read_to_end(source: &mut dyn Source, ctx: &ReadContext) -> Result<(Vec<(String, Json)>, usize)> {
    let mut out = Vec::new();
    let mut p = Json::Null;
    for pages in 1.. {
        let page = source.get(&p, ctx)?;
        for r in page.records.iter() {
            out.push((r.id.to_owned(), serde_json::from_slice(r.data).expect("record JSON")));
        }
        if page.is_last() {
            return Ok((out, pages));
        }
        p = page.next;
    }
    unreachable!()
}

/// A handler of a local API server.
pub type Handler = Arc<dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync>;

/// The error scenarios every HTTP connector is tested with, around its normal `handler`:
/// a 429 with `Retry-After` then success, a 500 then success, 401 (a clear error naming the
/// auth type, never `secret`), 404, and malformed JSON (a located error). `config(url)` is the
/// connector's `source:` mapping pointed at the local server (its base-URL override key).
/// Returns how many records a normal read gives.
pub fn error_suite(
    d: &SourceDescriptor,
    config: &dyn Fn(&str) -> String,
    handler: Handler,
    auth_type: &str,
    secret: &str,
) -> usize {
    let read = |text: &str| {
        let text = format!("{text}http:\n  retries: {{total: 3, backoff_factor: 0.01}}\n");
        read_to_end(source_from(d, &text).as_mut(), &ReadContext::default())
    };
    let h = handler.clone();
    let api = FakeApi::start(move |r: &FakeRequest| h(r));
    let (normal, _) = read(&config(&api.url)).unwrap_or_else(|e| panic!("{}: normal read: {e}", d.name));
    assert!(!normal.is_empty(), "{}: the normal read gave no records", d.name);
    let n = normal.len();

    // 429 with Retry-After, then 500, on the first request each; then the normal answers.
    for (status, retry_after) in [(429, Some("1")), (500, None)] {
        let failed = AtomicBool::new(false);
        let h = handler.clone();
        let api = FakeApi::start(move |r: &FakeRequest| {
            if !failed.swap(true, Ordering::SeqCst) {
                let resp = FakeResponse::status(status, r#"{"message": "try again"}"#);
                return match retry_after {
                    Some(s) => resp.header("Retry-After", s),
                    None => resp,
                };
            }
            h(r)
        });
        let started = Instant::now();
        let (records, _) = read(&config(&api.url)).unwrap_or_else(|e| panic!("{}: after a {status}: {e}", d.name));
        assert_eq!(records.len(), n, "{}: after a {status}", d.name);
        if retry_after.is_some() {
            assert!(started.elapsed() >= Duration::from_millis(950), "{}: Retry-After not honoured", d.name);
        }
    }

    let fixed =
        |status: u16, body: &'static str| FakeApi::start(move |_r: &FakeRequest| FakeResponse::status(status, body));
    let api = fixed(401, r#"{"message": "invalid credentials"}"#);
    let err = read(&config(&api.url)).expect_err("a 401 must fail the read");
    let msg = err.to_string();
    assert!(msg.contains("401 Unauthorized"), "{}: {msg}", d.name);
    if auth_type != "none" {
        assert!(msg.contains(&format!("authentication type `{auth_type}`")), "{}: {msg}", d.name);
    }
    if !secret.is_empty() {
        assert!(!msg.contains(secret), "{}: the secret leaked: {msg}", d.name);
    }
    assert_eq!(err.kind(), ErrorKind::Config, "{}: {msg}", d.name);

    let api = fixed(404, r#"{"message": "not found"}"#);
    let err = read(&config(&api.url)).expect_err("a 404 must fail the read");
    assert!(err.to_string().contains("404 Not Found"), "{}: {err}", d.name);
    assert_eq!(err.kind(), ErrorKind::Permanent);

    let api = fixed(200, r#"{"results": [1, 2,,"#);
    let err = read(&config(&api.url)).expect_err("malformed JSON must fail the read");
    let msg = err.to_string();
    assert!(msg.contains("malformed JSON") && msg.contains("line 1 column"), "{}: {msg}", d.name);
    n
}
