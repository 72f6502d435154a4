//! Benchmark and test support: a local API answering like a paged SaaS API after a fixed delay,
//! so HTTP sources can be measured without the internet. Not a server for real data.
//!
//! `bizon-fake-api [--records N] [--delay-ms MS] [--parents P] [--children C]` prints
//! `url=http://127.0.0.1:PORT` and serves until killed:
//!   GET /occurrence/search?offset=&limit=   gbif's shape: {offset, limit, endOfRecords, count, results}
//!   GET /parents?page=&per_page=[&parents=]  a page of parents [{id}] (page numbers from 1)
//!   GET /parents/{id}/children[?children=]   C children [{id, parent}]
//!   GET /stats                              {"requests": n} (requests served so far)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = arg(&args, "--records", 100_000);
    let delay = Duration::from_millis(arg(&args, "--delay-ms", 20));
    let parents = arg(&args, "--parents", 100);
    let children = arg(&args, "--children", 10);
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.path == "/stats" {
            return FakeResponse::json(json!({"requests": count.load(Ordering::SeqCst)}));
        }
        count.fetch_add(1, Ordering::SeqCst);
        let num = |name: &str, default: u64| r.param(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let resp = if r.path == "/occurrence/search" {
            let (offset, limit) = (num("offset", 0), num("limit", 20));
            let n = limit.min(records.saturating_sub(offset));
            let rows: Vec<_> = (offset..offset + n)
                .map(|i| json!({"key": i, "gbifID": i.to_string(), "scientificName": "Puma concolor", "decimalLatitude": 45.5, "decimalLongitude": -73.6, "eventDate": "2024-05-01T10:00:00"}))
                .collect();
            FakeResponse::json(
                json!({"offset": offset, "limit": limit, "endOfRecords": offset + n >= records, "count": records, "results": rows}),
            )
        } else if r.path == "/parents" {
            let (page, per_page, parents) = (num("page", 1), num("per_page", 20), num("parents", parents));
            let from = (page - 1) * per_page;
            let rows: Vec<_> = (from..(from + per_page).min(parents)).map(|i| json!({"id": i})).collect();
            FakeResponse::json(json!(rows))
        } else if let Some(id) = r.path.strip_prefix("/parents/").and_then(|p| p.strip_suffix("/children")) {
            let p: u64 = id.parse().unwrap_or(0);
            let rows: Vec<_> =
                (0..num("children", children)).map(|k| json!({"id": p * 1_000 + k, "parent": p})).collect();
            FakeResponse::json(json!(rows))
        } else {
            FakeResponse::status(404, r#"{"message": "no such path"}"#)
        };
        resp.delay(delay)
    });
    println!("url={}", api.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
