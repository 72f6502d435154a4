//! Conformance fixtures of the HTTP sources: each runs the testkit source suite (read all,
//! restart from every page's pagination, read again) against a local server speaking its API.

use std::sync::Arc;

use bizon_core::config::SourceCommon;
use bizon_core::{Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use bizon_testkit::source::run_suite;
use serde_json::json;

use crate::descriptor::SourceSpec;

/// Build a spec and its common keys from a `source:` mapping.
pub type Parse<'a> = &'a dyn Fn(&str) -> (Arc<dyn SourceSpec>, SourceCommon);

/// An offset-paged list of `total` items `{id}` at `/items`.
fn items_api(total: u64) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| {
        let offset: u64 = r.param("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit: u64 = r.param("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
        let n = limit.min(total.saturating_sub(offset));
        let rows: Vec<Json> = (offset..offset + n).map(|i| json!({"id": i})).collect();
        FakeResponse::json(json!({"results": rows}))
    })
}

/// The fixture of source `name`.
pub fn run(name: &str, parse: Parse) {
    let ctx = ReadContext::default();
    match name {
        "rest" => {
            let api = items_api(47);
            let text = format!(
                "name: rest\nstream: items\nbase_url: {}\nhttp: {{concurrency: 3}}\nstreams:\n  - name: items\n    path: /items\n    records: /results\n    primary_key: id\n    paginator: {{type: offset, limit: 5}}\n",
                api.url
            );
            let (spec, common) = parse(&text);
            run_suite(&|| spec.build(&common, &[]), &ctx, 47);
        }
        "pokeapi" => {
            use crate::sources::pokeapi::tests as t;
            let api = t::api(47);
            let (spec, common) = parse(&t::config(&api.url, "berry"));
            run_suite(&|| spec.build(&common, &[]), &ctx, 47);
        }
        "gbif" => {
            use crate::sources::gbif::tests as t;
            let api = t::api(230);
            let (spec, common) = parse(&t::config(&api.url, "page_limit: 20\nhttp: {concurrency: 3}\n"));
            run_suite(&|| spec.build(&common, &[]), &ctx, 230);
        }
        "cycle" => {
            use crate::sources::cycle::tests as t;
            let api = t::api(345);
            let (spec, common) = parse(&t::config(&api.url));
            run_suite(&|| spec.build(&common, &[]), &ctx, 345);
        }
        "hubspot" => {
            use crate::sources::hubspot::tests::{config, fake_hubspot, objects, Portal, T0};
            // 250 contacts: three list pages (100 per page), `total` from the search endpoint.
            let portal = Portal::new(objects(250));
            let api = fake_hubspot(&portal);
            let (spec, common) = parse(&config(&api.url, "contacts", ""));
            run_suite(&|| spec.build(&common, &[]), &ctx, 250);
            // Incremental after a watermark: the search endpoint, 200 newer records in two pages.
            let text = config(&api.url, "contacts", "sync_mode: incremental\ncursor_field: updatedAt\n");
            let (spec, common) = parse(&text);
            let watermark = json!(bizon_core::time::format_rfc3339((T0 + 49_000) * 1000));
            let inc = ReadContext {
                sync_mode: bizon_core::config::SyncMode::Incremental,
                watermark: Some(watermark),
                cursor_field: Some("updatedAt".into()),
            };
            run_suite(&|| spec.build(&common, &[]), &inc, 200);
        }
        "sana_ai" => {
            // A 23-row report read 5 rows a page; every restart resumes the same job's CSV.
            use crate::sources::sana_ai::tests::{config, handler, report, Behaviour};
            let h = handler(Behaviour::new(&["pending", "successful"], report(23)));
            let api = FakeApi::start(move |r: &FakeRequest| h(r));
            let (spec, common) = parse(&config(&api.url, "rows_per_page: 5\n"));
            run_suite(&|| spec.build(&common, &[]), &ctx, 23);
        }
        "periscope" => {
            // Charts of 25 dashboards: three pages of up to 10 dashboards, each in windows.
            use crate::sources::periscope::tests::{chart_ids, config, periscope_api};
            let (h, _) = periscope_api(25, std::time::Duration::ZERO);
            let api = FakeApi::start(move |r: &FakeRequest| h(r));
            let (spec, common) = parse(&config(&api.url, "charts", ""));
            run_suite(&|| spec.build(&common, &[]), &ctx, chart_ids(25).len());
            let (spec, common) = parse(&config(&api.url, "dashboards", ""));
            run_suite(&|| spec.build(&common, &[]), &ctx, 25);
        }
        other => panic!("source `{other}` has no HTTP conformance fixture in http/conformance.rs"),
    }
}
