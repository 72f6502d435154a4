//! `cycle` against a local server answering as Cycle's GraphQL API does: `POST /graphql` with
//! `{query, variables: {slug}}` and a bearer API key, customers in Relay edges, 100 a page (the
//! `size` of the query's pagination), the next page after the cursor in the query's `where`.

use std::sync::Arc;

use bizon_core::{ErrorKind, Json, ReadContext};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::{customers_query, BASE_URL, DESCRIPTOR};
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

pub(crate) const TOKEN: &str = "cyc_live_4f2b9e1d7c";

/// bizon's query text for the first page and for the page after `Y3Vyc29yOjk5`, as bizon 0.6.4's
/// `CycleSource.get_customers` builds it (printed from its source with Python's `json.dumps`).
const BIZON_FIRST: &str = "\n        query Customers($slug: DefaultString!) {\n            getProductBySlug(slug: $slug) {\n                customers(pagination: {\n                    \n            size: 100\n            \n                }) {\n                    edges {\n                        cursor\n                        node {\n                            id\n                            email\n                            name\n                            company {\n                                domain\n                                id\n                                name\n                            }\n                        }\n                    }\n                    pageInfo {\n                        hasPreviousPage\n                        hasNextPage\n                        startCursor\n                        endCursor\n                    }\n                }\n            }\n        }\n        ";
const BIZON_AFTER: &str = "\n        query Customers($slug: DefaultString!) {\n            getProductBySlug(slug: $slug) {\n                customers(pagination: {\n                    \n            size: 100\n            where: {\n                cursor: \"Y3Vyc29yOjk5\"\n                direction: AFTER\n            }\n            \n                }) {\n                    edges {\n                        cursor\n                        node {\n                            id\n                            email\n                            name\n                            company {\n                                domain\n                                id\n                                name\n                            }\n                        }\n                    }\n                    pageInfo {\n                        hasPreviousPage\n                        hasNextPage\n                        startCursor\n                        endCursor\n                    }\n                }\n            }\n        }\n        ";

/// A customer node as the query selects it.
fn customer(i: u64) -> Json {
    json!({
        "id": format!("Q3VzdG9tZXI6{i:04}"),
        "email": format!("user{i}@example.com"),
        "name": format!("User {i}"),
        "company": {"domain": "example.com", "id": "Q29tcGFueTox", "name": "Example"},
    })
}

/// The opaque cursor of the customer at `i` (Cycle's are base64).
fn cursor(i: u64) -> String {
    format!("Y3Vyc29y{i}")
}

/// The cursor in the query's `where: {cursor: "…"}`, if any.
fn where_cursor(query: &str) -> Option<String> {
    let at = query.find("cursor: \"")? + "cursor: \"".len();
    Some(query[at..].split('"').next()?.to_owned())
}

/// Cycle's answer to `r` over `total` customers of product `acme`.
pub(crate) fn answer(r: &FakeRequest, total: u64) -> FakeResponse {
    if r.method != "POST" || r.path != "/graphql" {
        return FakeResponse::status(404, r#"{"message": "not found"}"#);
    }
    if r.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return FakeResponse::status(401, r#"{"errors": [{"message": "Unauthorized"}]}"#);
    }
    let body = r.json();
    let query = body["query"].as_str().unwrap_or_default();
    if !query.contains("size: 100") {
        return FakeResponse::status(400, r#"{"errors": [{"message": "pagination size missing"}]}"#);
    }
    if body["variables"] != json!({"slug": "acme"}) {
        return FakeResponse::json(json!({"data": {"getProductBySlug": null}}));
    }
    let start = match where_cursor(query) {
        None => 0,
        Some(c) => match c.strip_prefix("Y3Vyc29y").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => n + 1,
            None => return FakeResponse::json(json!({"errors": [{"message": "invalid cursor"}], "data": null})),
        },
    };
    let end = (start + 100).min(total);
    let edges: Vec<Json> = (start..end).map(|i| json!({"cursor": cursor(i), "node": customer(i)})).collect();
    let page_info = json!({
        "hasPreviousPage": start > 0,
        "hasNextPage": end < total,
        "startCursor": (start < end).then(|| cursor(start)),
        "endCursor": (start < end).then(|| cursor(end - 1)),
    });
    FakeResponse::json(json!({"data": {"getProductBySlug": {"customers": {"edges": edges, "pageInfo": page_info}}}}))
}

pub(crate) fn api(total: u64) -> FakeApi {
    FakeApi::start(move |r: &FakeRequest| answer(r, total))
}

pub(crate) fn config(url: &str) -> String {
    format!(
        "name: cycle\nstream: customers\nslug: acme\nbase_url: {url}\nauthentication:\n  type: api_key\n  params:\n    token: {TOKEN}\n"
    )
}

#[test]
fn the_query_text_is_bizons_byte_for_byte() {
    assert_eq!(customers_query(None), BIZON_FIRST);
    assert_eq!(customers_query(Some("Y3Vyc29yOjk5")), BIZON_AFTER);
    // A cursor is a string literal: a quote or backslash in it cannot end it early.
    let q = customers_query(Some(r#"a"b\c"#));
    assert!(q.contains(r#"cursor: "a\"b\\c""#), "{q}");
}

#[test]
fn pages_of_100_by_end_cursor_with_node_records() {
    let api = api(250);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url));
    let ctx = ReadContext::default();
    assert_eq!(s.total_records(&ctx).unwrap(), None, "bizon's get_total_records_count is None");
    let p1 = s.get(&Json::Null, &ctx).unwrap();
    assert_eq!(p1.records.len(), 100);
    assert_eq!(p1.next, json!({"cursor": cursor(99)}));
    assert_eq!(p1.records.get(7).id, "Q3VzdG9tZXI60007");
    let data: Json = serde_json::from_slice(p1.records.get(7).data).unwrap();
    assert_eq!(data, customer(7), "the record is the edge's node");
    let (rest, pages) = read_to_end(s.as_mut(), &ctx).unwrap();
    assert_eq!(pages, 3);
    let ids: Vec<String> = rest.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, (0..250).map(|i| format!("Q3VzdG9tZXI6{i:04}")).collect::<Vec<_>>());

    let reqs = api.requests();
    let first = &reqs[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/graphql"));
    assert_eq!(first.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert!(first.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert_eq!(first.json(), json!({"query": BIZON_FIRST, "variables": {"slug": "acme"}}));
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[1].json()["query"], BIZON_FIRST, "a new read starts over");
    assert_eq!(reqs[2].json()["query"], customers_query(Some(&cursor(99))));
    assert_eq!(where_cursor(reqs[3].json()["query"].as_str().unwrap()), Some(cursor(199)));
}

#[test]
fn resumes_from_its_cursor_and_from_bizons_page_info() {
    let api = api(250);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url));
    let ctx = ReadContext::default();
    let page = s.get(&json!({"cursor": cursor(199)}), &ctx).unwrap();
    assert_eq!(page.records.get(0).id, "Q3VzdG9tZXI60200");
    assert!(page.is_last());
    // bizon checkpoints the whole pageInfo.
    let bizon =
        json!({"hasPreviousPage": true, "hasNextPage": true, "startCursor": cursor(100), "endCursor": cursor(199)});
    let page = s.get(&bizon, &ctx).unwrap();
    assert_eq!(page.records.len(), 50);
    assert_eq!(page.records.get(0).id, "Q3VzdG9tZXI60200");
}

#[test]
fn graphql_errors_a_missing_product_and_a_lost_cursor_fail_loudly() {
    // bizon ignores all three and ends the stream as if it were empty.
    let api = FakeApi::start(|r: &FakeRequest| match where_cursor(r.json()["query"].as_str().unwrap_or_default()) {
        None => FakeResponse::json(json!({"data": {"getProductBySlug": {"customers": {
            "edges": [{"cursor": "c0", "node": customer(0)}],
            "pageInfo": {"hasNextPage": true, "endCursor": null}}}}})),
        Some(_) => FakeResponse::json(json!({"errors": [{"message": format!("token {TOKEN} expired")}], "data": null})),
    });
    let mut s = source_from(&DESCRIPTOR, &config(&api.url));
    let ctx = ReadContext::default();
    let err = s.get(&Json::Null, &ctx).unwrap_err();
    assert!(err.to_string().contains("`pageInfo.hasNextPage` is true without an `endCursor`"), "{err}");
    let err = s.get(&json!({"cursor": "c0"}), &ctx).unwrap_err().to_string();
    assert!(err.contains("the GraphQL API answered with errors: token") && err.contains("expired"), "{err}");
    assert!(!err.contains(TOKEN), "the secret leaked: {err}");

    let api = self::api(10);
    let text = config(&api.url).replace("slug: acme", "slug: acne");
    let err = source_from(&DESCRIPTOR, &text).get(&Json::Null, &ctx).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no Cycle product with slug `acne` (source.slug)"), "{err}");
}

#[test]
fn config_keys_defaults_and_errors() {
    let node = bizon_core::config::yaml::parse(
        "name: cycle\nstream: customers\nslug: acme\nauthentication:\n  type: api_key\n  params:\n    token: t\n",
    )
    .unwrap();
    let spec = format!("{:?}", (DESCRIPTOR.parse)(&node).unwrap());
    assert!(spec.contains(BASE_URL), "{spec}");
    assert_eq!(BASE_URL, "https://api.product.cycle.app");
    let err = parse_error(&DESCRIPTOR, "name: cycle\nstream: customers\nslug: acme\n");
    assert!(err.contains("`cycle` needs `authentication` (type `api_key`"), "{err}");
    let err = parse_error(
        &DESCRIPTOR,
        "name: cycle\nstream: customers\nslug: acme\nauthentication:\n  type: basic\n  params:\n    username: u\n    password: p\n",
    );
    assert!(
        err.contains("authentication type `api_key` (or `bearer`), not `basic`") && err.contains("line 5"),
        "{err}"
    );
    let err = parse_error(
        &DESCRIPTOR,
        "name: cycle\nstream: customers\nauthentication: {type: api_key, params: {token: t}}\n",
    );
    assert!(err.contains("slug"), "{err}");
    let err = parse_error(
        &DESCRIPTOR,
        "name: cycle\nstream: customers\nslug: ' '\nauthentication: {type: api_key, params: {token: t}}\n",
    );
    assert!(err.contains("`slug` is empty"), "{err}");
    let err = parse_error(&DESCRIPTOR, &config("localhost:8080"));
    assert!(err.contains("`base_url` must start with http:// or https://"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn cycle_passes_the_http_error_suite() {
    let handler: Handler = Arc::new(|r: &FakeRequest| answer(r, 120));
    let n = error_suite(&DESCRIPTOR, &|url| config(url), handler, "api_key", TOKEN);
    assert_eq!(n, 120);
}
