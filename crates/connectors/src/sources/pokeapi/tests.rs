//! `pokeapi` against a local server answering as PokéAPI does: `GET /api/v2/{stream}` pages of
//! 20 `{name, url}` with `count`, `previous` and an absolute `next` URL (`?offset=…&limit=20`),
//! null on the last page.

use std::sync::Arc;

use bizon_core::{ErrorKind, Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::{BASE_URL, DESCRIPTOR};
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

/// The page PokéAPI answers for `r`, over `total` entries per stream named `{stream}-{i}`.
pub(crate) fn answer(r: &FakeRequest, total: u64) -> FakeResponse {
    let Some(stream) = r.path.strip_prefix("/api/v2/").filter(|s| ["pokemon", "berry", "item"].contains(s)) else {
        return FakeResponse::status(404, r#"{"detail": "Not found."}"#);
    };
    let host = format!("http://{}", r.header("host").unwrap_or("localhost"));
    let num = |name: &str, default: u64| r.param(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (offset, limit) = (num("offset", 0), num("limit", 20));
    let n = limit.min(total.saturating_sub(offset));
    let link = |o: u64| format!("{host}/api/v2/{stream}?offset={o}&limit={limit}");
    let results: Vec<Json> = (offset..offset + n)
        .map(|i| json!({"name": format!("{stream}-{i}"), "url": format!("{host}/api/v2/{stream}/{}/", i + 1)}))
        .collect();
    FakeResponse::json(json!({
        "count": total,
        "next": (offset + n < total).then(|| link(offset + n)),
        "previous": (offset > 0).then(|| link(offset.saturating_sub(limit))),
        "results": results,
    }))
}

pub(crate) fn api(total: u64) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| answer(r, total))
}

pub(crate) fn config(url: &str, stream: &str) -> String {
    format!("name: pokeapi\nstream: {stream}\nbase_url: {url}/api/v2\n")
}

#[test]
fn every_stream_pages_by_next_url_with_bizon_ids_and_pagination() {
    let api = api(45);
    for stream in ["pokemon", "berry", "item"] {
        let mut s = source_from(&DESCRIPTOR, &config(&api.url, stream));
        let ctx = ReadContext::default();
        assert_eq!(s.total_records(&ctx).unwrap(), Some(45), "{stream}: count");
        let first = s.get(&Json::Null, &ctx).unwrap();
        let next20 = format!("{}/api/v2/{stream}?offset=20&limit=20", api.url);
        assert_eq!(first.next, json!({ "next": next20 }), "bizon's pagination shape");
        let ids: Vec<&str> = first.records.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 20);
        assert_eq!(ids[0], format!("{stream}-0"));
        let data: Json = serde_json::from_slice(first.records.get(3).data).unwrap();
        assert_eq!(data, json!({"name": format!("{stream}-3"), "url": format!("{}/api/v2/{stream}/4/", api.url)}));
        let second = s.get(&first.next, &ctx).unwrap();
        assert_eq!(second.records.get(0).id, format!("{stream}-20"));
        let third = s.get(&second.next, &ctx).unwrap();
        assert_eq!(third.records.len(), 5);
        assert!(third.is_last(), "null `next` ends the stream: {}", third.next);
    }
    // bizon's requests: the bare list URL, then each `next` URL as given.
    let seen: Vec<(String, Vec<(String, String)>)> =
        api.requests().into_iter().filter(|r| r.path == "/api/v2/berry").map(|r| (r.method, r.query)).collect();
    let q = |o: &str| vec![("offset".to_owned(), o.to_owned()), ("limit".to_owned(), "20".to_owned())];
    assert_eq!(
        seen,
        [("GET".into(), vec![]), ("GET".into(), vec![]), ("GET".into(), q("20")), ("GET".into(), q("40"))],
        "count request, first page, then the next URLs"
    );
}

#[test]
fn reads_all_and_resumes_from_bizon_and_engine_pagination() {
    let api = api(61);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, "pokemon"));
    let (records, pages) = read_to_end(s.as_mut(), &ReadContext::default()).unwrap();
    assert_eq!(pages, 4);
    let ids: Vec<String> = records.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, (0..61).map(|i| format!("pokemon-{i}")).collect::<Vec<_>>());
    // A checkpoint written by bizon (`{"next": url}`) resumes at that page.
    let resume = json!({ "next": format!("{}/api/v2/pokemon?offset=40&limit=20", api.url) });
    let page = s.get(&resume, &ReadContext::default()).unwrap();
    assert_eq!(page.records.get(0).id, "pokemon-40");
    assert_eq!(page.next, json!({ "next": format!("{}/api/v2/pokemon?offset=60&limit=20", api.url) }));
}

#[test]
fn config_keys_defaults_and_errors() {
    let node = bizon_core::config::yaml::parse("name: pokeapi\nstream: pokemon\n").unwrap();
    let spec = (DESCRIPTOR.parse)(&node).unwrap();
    assert!(format!("{spec:?}").contains(BASE_URL), "{spec:?}");
    assert_eq!(BASE_URL, "https://pokeapi.co/api/v2");
    let err = parse_error(&DESCRIPTOR, "name: pokeapi\nstream: pokemon\nbase_url: pokeapi.co/api/v2\n");
    assert!(err.contains("`base_url` must start with http:// or https://") && err.contains("line 3"), "{err}");
    let err = parse_error(&DESCRIPTOR, "name: pokeapi\nstream: pokemon\nbase_ur: http://x\n");
    assert!(err.contains("unknown key `base_ur`") && err.contains("did you mean `base_url`"), "{err}");
    // A stream bizon does not have fails at the first read, as a config error.
    let mut s = source_from(&DESCRIPTOR, "name: pokeapi\nstream: moves\nbase_url: http://127.0.0.1:9\n");
    let err = s.get(&Json::Null, &ReadContext::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no stream `moves`; streams: pokemon, berry, item"), "{err}");
}

#[test]
fn pokeapi_passes_the_http_error_suite() {
    let handler: Handler = Arc::new(|r: &FakeRequest| answer(r, 7));
    let n = error_suite(&DESCRIPTOR, &|url| config(url, "item"), handler, "none", "");
    assert_eq!(n, 7);
}
