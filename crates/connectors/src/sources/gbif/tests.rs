//! `gbif` against a local server answering as GBIF's occurrence search does: `limit` (at most
//! 300) and `offset` parameters, `{offset, limit, endOfRecords, count, results}` answers, a 400
//! past offset 100,000, `limit=0` for the count alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizon_core::{ErrorKind, Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::{BASE_URL, DESCRIPTOR};
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

const SEARCH: &str = "/v1/occurrence/search";

/// An occurrence as GBIF sends it (trimmed): `key` and `gbifID` name the same record.
fn occurrence(i: u64) -> Json {
    let key = 4_000_000_000 + i;
    json!({
        "key": key,
        "gbifID": key.to_string(),
        "datasetKey": "50c9509d-22c7-4a22-a47d-8c48425ef4a7",
        "scientificName": format!("Species {i}"),
        "decimalLatitude": 52.1,
        "decimalLongitude": 4.3,
    })
}

/// GBIF's answer to `r` over `total` occurrences.
pub(crate) fn answer(r: &FakeRequest, total: u64) -> FakeResponse {
    if r.path != SEARCH {
        return FakeResponse::status(404, r#"{"message": "not found"}"#);
    }
    let num = |name: &str, default: u64| r.param(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (offset, limit) = (num("offset", 0), num("limit", 20));
    if limit > 300 || offset + limit > 100_000 {
        return FakeResponse::status(400, "Max offset of 100000 exceeded or limit above 300");
    }
    let n = limit.min(total.saturating_sub(offset));
    let results: Vec<Json> = (offset..offset + n).map(occurrence).collect();
    FakeResponse::json(json!({
        "offset": offset,
        "limit": limit,
        "endOfRecords": offset + n >= total,
        "count": total,
        "results": results,
    }))
}

pub(crate) fn api(total: u64) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| answer(r, total))
}

pub(crate) fn config(url: &str, extra: &str) -> String {
    format!("name: gbif\nstream: occurrence\nbase_url: {url}/v1\n{extra}")
}

/// (limit, offset) of each page request (the `limit=0` count has no offset).
fn page_requests(api: &FakeApi) -> Vec<(u64, u64)> {
    api.requests()
        .iter()
        .filter(|r| r.path == SEARCH && r.param("offset").is_some())
        .map(|r| (r.param("limit").unwrap().parse().unwrap(), r.param("offset").unwrap().parse().unwrap()))
        .collect()
}

fn keys(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| (4_000_000_000 + i).to_string()).collect()
}

#[test]
fn pages_of_300_with_bizon_offsets_ids_and_total() {
    let api = api(650);
    let ctx = ReadContext::default();
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, ""));
    assert_eq!(s.total_records(&ctx).unwrap(), Some(650));
    let count = &api.requests()[0];
    assert_eq!((count.method.as_str(), count.query.clone()), ("GET", vec![("limit".into(), "0".into())]));
    let p1 = s.get(&Json::Null, &ctx).unwrap();
    assert_eq!(p1.next, json!({"offset": 300}), "bizon's pagination shape");
    let data: Json = serde_json::from_slice(p1.records.get(2).data).unwrap();
    assert_eq!(data, occurrence(2), "the record as GBIF sent it");
    let p2 = s.get(&p1.next, &ctx).unwrap();
    assert_eq!(p2.next, json!({"offset": 600}));
    let p3 = s.get(&p2.next, &ctx).unwrap();
    assert!(p3.is_last(), "endOfRecords ends the stream: {}", p3.next);
    let ids: Vec<String> = [&p1, &p2, &p3].iter().flat_map(|p| p.records.iter().map(|r| r.id.to_owned())).collect();
    assert_eq!(ids, keys(0..650), "id = key");
    assert_eq!(page_requests(&api), [(300, 0), (300, 300), (300, 600)]);
}

#[test]
fn max_records_cuts_the_last_page_and_the_total() {
    let api = api(10_000);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, "max_records: 700\npage_limit: 300\n"));
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), Some(700));
    let (records, pages) = read_to_end(s.as_mut(), &ReadContext::default()).unwrap();
    assert_eq!(pages, 3);
    assert_eq!(records.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), keys(0..700));
    assert_eq!(page_requests(&api), [(300, 0), (300, 300), (100, 600)], "bizon's min(page_limit, max - offset)");
}

#[test]
fn limits_above_the_apis_are_capped_as_bizon() {
    let api = api(5_000_000);
    let text = config(&api.url, "page_limit: 1000\nmax_records: 250000\n");
    let mut s = source_from(&DESCRIPTOR, &text);
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), Some(100_000), "capped at GBIF's deep-paging limit");
    let page = s.get(&Json::Null, &ReadContext::default()).unwrap();
    assert_eq!(page.records.len(), 300);
    // Resuming near the cap asks only for what is left below offset 100,000, then stops.
    let page = s.get(&json!({"offset": 99_900}), &ReadContext::default()).unwrap();
    assert_eq!(page.records.len(), 100);
    assert!(page.is_last());
    assert_eq!(page_requests(&api), [(300, 0), (100, 99_900)]);
    // `max_records: null` is bizon's default too.
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, "max_records: null\n"));
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), Some(100_000));
}

#[test]
fn ids_fall_back_to_gbif_id_then_offset_and_index_as_bizon() {
    // bizon: str(record.get("key") or record.get("gbifID") or f"{offset}_{i}"), Python truthiness.
    let api = FakeApi::start(|_r: &FakeRequest| {
        FakeResponse::json(json!({"endOfRecords": true, "count": 6, "results": [
            {"key": 7, "gbifID": "70"},
            {"gbifID": "g8"},
            {},
            {"key": 0, "gbifID": "g10"},
            {"key": "", "gbifID": null},
            {"key": null, "gbifID": 12},
        ]}))
    });
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, ""));
    let page = s.get(&json!({"offset": 600}), &ReadContext::default()).unwrap();
    let ids: Vec<&str> = page.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, ["7", "g8", "600_2", "g10", "600_4", "12"]);
    let data: Json = serde_json::from_slice(page.records.get(3).data).unwrap();
    assert_eq!(data, json!({"key": 0, "gbifID": "g10"}), "data untouched by the re-id");
    // The first page (no pagination yet) is offset 0.
    let page = s.get(&Json::Null, &ReadContext::default()).unwrap();
    assert_eq!(page.records.get(2).id, "0_2");
}

#[test]
fn fifty_pages_with_concurrency_8_arrive_once_and_in_order() {
    // 1010 occurrences in pages of 20: 51 pages, the last one short. Each answer takes 15 ms
    // and the server counts how many requests it holds at once.
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f, m) = (in_flight.clone(), most.clone());
    let api = FakeApi::start(move |r: &FakeRequest| {
        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(15));
        f.fetch_sub(1, Ordering::SeqCst);
        answer(r, 1010)
    });
    let text = config(&api.url, "page_limit: 20\nhttp:\n  concurrency: 8\n");
    let mut s = source_from(&DESCRIPTOR, &text);
    let (records, pages) = read_to_end(s.as_mut(), &ReadContext::default()).unwrap();
    assert_eq!(pages, 51);
    let ids: Vec<String> = records.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, keys(0..1010), "every record once, in order");
    assert!(most.load(Ordering::SeqCst) > 1, "pages were not fetched concurrently");
    assert!(most.load(Ordering::SeqCst) <= 8, "more than source.http.concurrency requests at once");
    // Every page of the stream was asked for exactly once (the prefetch may also look past the end).
    let mut offsets: Vec<u64> = page_requests(&api).into_iter().map(|(_, o)| o).filter(|o| *o < 1010).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..51).map(|k| k * 20).collect::<Vec<_>>());
    // Restarting from any page's pagination yields exactly the rest, with the same concurrency.
    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ReadContext::default(), 1010);
}

#[test]
fn config_keys_defaults_and_errors() {
    let node = bizon_core::config::yaml::parse("name: gbif\nstream: occurrence\n").unwrap();
    let spec = format!("{:?}", (DESCRIPTOR.parse)(&node).unwrap());
    assert!(
        spec.contains("page_limit: 300") && spec.contains("max_records: None") && spec.contains(BASE_URL),
        "{spec}"
    );
    assert_eq!(BASE_URL, "https://api.gbif.org/v1");
    let err = parse_error(&DESCRIPTOR, "name: gbif\nstream: occurrence\npage_limit: 0\n");
    assert!(err.contains("`page_limit` must be at least 1"), "{err}");
    let err = parse_error(&DESCRIPTOR, "name: gbif\nstream: occurrence\nmax_records: 0\n");
    assert!(err.contains("`max_records` must be at least 1"), "{err}");
    let err = parse_error(&DESCRIPTOR, "name: gbif\nstream: occurrence\npage_limit: -5\n");
    assert!(err.contains("expected a non-negative integer, found `-5` (line 3)"), "{err}");
    let err = parse_error(&DESCRIPTOR, "name: gbif\nstream: occurrence\nbase_url: ftp://x\n");
    assert!(err.contains("`base_url` must start with http:// or https://"), "{err}");
    let err = parse_error(&DESCRIPTOR, "name: gbif\nstream: occurrence\nmax_record: 5\n");
    assert!(err.contains("did you mean `max_records`"), "{err}");
    let mut s = source_from(&DESCRIPTOR, "name: gbif\nstream: species\nbase_url: http://127.0.0.1:9\n");
    let err = s.get(&Json::Null, &ReadContext::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no stream `species`"), "{err}");
}

#[test]
fn gbif_passes_the_http_error_suite() {
    let handler: Handler = Arc::new(|r: &FakeRequest| answer(r, 45));
    let n = error_suite(&DESCRIPTOR, &|url| config(url, "page_limit: 20\n"), handler, "none", "");
    assert_eq!(n, 45);
}
