//! Benchmark and test support: the Notion API stand-in of `bizon_testkit::notion` (version
//! 2025-09-03) on a local port, so the Notion source can be measured without the internet. Not
//! a server for real data.
//!
//! `bizon-fake-notion [--pages N] [--deep-every K] [--delay-ms MS] [--rate R] [--standalone S]
//! [--users U] [--throttle-every T] [--block-types]` generates 2 databases of N pages each
//! (database 0 with two data sources), S standalone pages and U users, every Kth page with a
//! 4-level block tree (0: none), and answers after MS ms, at most R requests a second (burst 3,
//! then 429; 0: no limit), every Tth request 429 (0: never). It prints
//! `url=http://127.0.0.1:PORT/v1` and `databases=<id1>,<id2>`, then serves until killed; the
//! integration token is `bizon_testkit::notion::TOKEN`.
//!   GET /v1/stats   {"requests": 2xx answers so far, "throttled": 429s so far, "total": requests}
//!                   (no token, not throttled, not counted)

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use bizon_testkit::notion::{NotionHandler, NotionOptions, Workspace, WorkspaceSpec};
use serde_json::json;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec = WorkspaceSpec {
        databases: 2,
        pages_per_database: arg(&args, "--pages", 100),
        standalone_pages: arg(&args, "--standalone", 0),
        users: arg(&args, "--users", 3),
        deep_every: arg(&args, "--deep-every", 0),
        with_block_type_page: args.iter().any(|a| a == "--block-types"),
    };
    let delay: u64 = arg(&args, "--delay-ms", 0);
    let rate: f64 = arg(&args, "--rate", 0.0);
    let options = NotionOptions {
        latency: (delay > 0).then(|| Duration::from_millis(delay)),
        rate_per_second: (rate > 0.0).then_some(rate),
        throttle_every: arg(&args, "--throttle-every", 0),
        ..NotionOptions::default()
    };
    let workspace = Workspace::generate(&spec);
    let databases = workspace.database_ids();
    let handler = Arc::new(NotionHandler::new(workspace, options));
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (h, t) = (handler.clone(), total.clone());
    let api = FakeApi::start(move |r: &FakeRequest| {
        if r.method == "GET" && r.path == "/v1/stats" {
            return FakeResponse::json(json!({
                "requests": h.served.load(Ordering::SeqCst),
                "throttled": h.throttled.load(Ordering::SeqCst),
                "total": t.load(Ordering::SeqCst),
            }));
        }
        t.fetch_add(1, Ordering::SeqCst);
        h.handle(r)
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "url={}/v1", api.url);
    let _ = writeln!(out, "databases={}", databases.join(","));
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
