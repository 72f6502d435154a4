//! The `hubspot` source against a local server speaking HubSpot's CRM v3 API as documented:
//! the properties list, the objects list paged by an opaque `after`, the search endpoint (filters,
//! ascending sort, `after` offsets, `total`, the 10,000-result cap answered with a 400), the
//! OAuth token endpoint (form-encoded `refresh_token` grant) and HubSpot's 401 for bad tokens.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bizon_core::config::SyncMode;
use bizon_core::record::cursor_max;
use bizon_core::time::{format_rfc3339, parse_rfc3339};
use bizon_core::{ErrorKind, Json, ReadContext, Source};
use bizon_testkit::http::{FakeApi, FakeRequest, FakeResponse};
use serde_json::json;

use super::source::{LIMIT, SEARCH_CAP};
use super::DESCRIPTOR;
use crate::http::testing::{error_suite, parse_error, read_to_end, source_from, Handler};

/// 2024-01-01T00:00:00Z in epoch milliseconds.
pub(crate) const T0: i64 = 1_704_067_200_000;
const TOKEN: &str = "pat-na1-SECRET-0123456789";

/// A time as HubSpot writes it: `2024-01-01T00:00:00.123Z`, without the fraction when the
/// milliseconds are zero (Java's `Instant`), so the source must normalize before comparing.
pub(crate) fn iso(ms: i64) -> String {
    let s = format_rfc3339(ms * 1000);
    if ms % 1000 == 0 {
        format!("{}Z", &s[..19])
    } else {
        format!("{}Z", &s[..23])
    }
}

/// The watermark the source writes for `ms`.
fn mark(ms: i64) -> Json {
    json!(format_rfc3339(ms * 1000))
}

/// The properties of an object type (`GET /crm/v3/properties/{object}`).
fn property_names(stream: &str) -> &'static [&'static str] {
    match stream {
        "contacts" => &["email", "firstname", "lastname", "createdate", "lastmodifieddate", "hs_object_id"],
        "companies" => &["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
        _ => &["dealname", "amount", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    }
}

fn lastmod(stream: &str) -> &'static str {
    if stream == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// One HubSpot account: objects as (id, last modification in ms), the same for every object type.
pub(crate) struct Portal {
    pub objects: Mutex<Vec<(u64, i64)>>,
    /// OAuth app: (client_id, client_secret, refresh_token).
    pub oauth: Option<(String, String, String)>,
    pub issued: Mutex<Vec<String>>,
}

impl Portal {
    pub fn new(objects: Vec<(u64, i64)>) -> Arc<Portal> {
        Arc::new(Portal { objects: Mutex::new(objects), oauth: None, issued: Mutex::default() })
    }

    pub fn with_oauth(objects: Vec<(u64, i64)>) -> Arc<Portal> {
        let app = ("client-1".to_owned(), "csecret-XYZ".to_owned(), "refresh-SECRET".to_owned());
        Arc::new(Portal { objects: Mutex::new(objects), oauth: Some(app), issued: Mutex::default() })
    }

    /// Set (or add) an object's last modification time.
    pub fn touch(&self, id: u64, ms: i64) {
        let mut o = self.objects.lock().unwrap();
        match o.iter_mut().find(|(i, _)| *i == id) {
            Some(x) => x.1 = ms,
            None => o.push((id, ms)),
        }
        o.sort();
    }

    /// An object as the API returns it, with the requested properties.
    pub fn object(stream: &str, id: u64, ms: i64, props: &[String]) -> Json {
        let created = T0 - 86_400_000 + id as i64;
        let mut p = serde_json::Map::new();
        for name in props {
            let v = match name.as_str() {
                "createdate" => json!(iso(created)),
                "lastmodifieddate" | "hs_lastmodifieddate" => json!(iso(ms)),
                "hs_object_id" => json!(id.to_string()),
                "email" => json!(format!("user{id}@example.com")),
                "firstname" => json!(format!("First{id}")),
                "lastname" => Json::Null,
                "name" => json!(format!("Company {id}")),
                "domain" => json!(format!("c{id}.example.com")),
                "dealname" => json!(format!("Deal {id}")),
                "amount" => json!("1000"),
                _ => continue,
            };
            if property_names(stream).contains(&name.as_str()) {
                p.insert(name.clone(), v);
            }
        }
        json!({"id": id.to_string(), "properties": p, "createdAt": iso(created), "updatedAt": iso(ms), "archived": false})
    }

    fn authorized(&self, r: &FakeRequest) -> bool {
        let Some(token) = r.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        match &self.oauth {
            None => token == TOKEN,
            Some(_) => self.issued.lock().unwrap().iter().any(|t| t == token),
        }
    }

    /// The API's answer to `r`.
    pub fn handle(&self, r: &FakeRequest) -> FakeResponse {
        if r.path == "/oauth/v1/token" {
            return self.token(r);
        }
        if !self.authorized(r) {
            return FakeResponse::status(
                401,
                r#"{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}"#,
            );
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["crm", "v3", "properties", stream]) => {
                let results: Vec<Json> = property_names(stream)
                    .iter()
                    .map(|n| json!({"name": n, "label": n.to_uppercase(), "type": "string", "fieldType": "text", "groupName": "info", "description": ""}))
                    .collect();
                FakeResponse::json(json!({"results": results}))
            }
            ("GET", ["crm", "v3", "objects", stream]) => self.list(stream, r),
            ("POST", ["crm", "v3", "objects", stream, "search"]) => self.search(stream, r),
            _ => FakeResponse::status(404, r#"{"status":"error","message":"Not found"}"#),
        }
    }

    fn token(&self, r: &FakeRequest) -> FakeResponse {
        let Some((id, secret, refresh)) = &self.oauth else {
            return FakeResponse::status(404, "{}");
        };
        let form = |k: &str| r.form_value(k).unwrap_or_default();
        let content_type = r.header("content-type").unwrap_or_default();
        if !content_type.starts_with("application/x-www-form-urlencoded")
            || form("grant_type") != "refresh_token"
            || form("client_id") != *id
            || form("client_secret") != *secret
            || form("refresh_token") != *refresh
        {
            return FakeResponse::status(
                400,
                r#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#,
            );
        }
        let mut issued = self.issued.lock().unwrap();
        let token = format!("access-{}", issued.len() + 1);
        issued.push(token.clone());
        FakeResponse::json(
            json!({"token_type": "bearer", "refresh_token": refresh, "access_token": token, "expires_in": 1800}),
        )
    }

    fn list(&self, stream: &str, r: &FakeRequest) -> FakeResponse {
        let limit: usize = match r.param("limit").and_then(|v| v.parse().ok()) {
            Some(l) if l <= 100 => l,
            _ => return FakeResponse::status(400, r#"{"status":"error","message":"limit must be at most 100"}"#),
        };
        let props: Vec<String> =
            r.param("properties").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        // `after` is opaque to clients (base64 here, as HubSpot's look).
        let offset: usize = match r.param("after") {
            None => 0,
            Some(a) => {
                match base64::engine::general_purpose::STANDARD.decode(a).ok().and_then(|b| String::from_utf8(b).ok()) {
                    Some(s) => s.parse().unwrap_or(usize::MAX),
                    None => return FakeResponse::status(400, r#"{"status":"error","message":"bad after"}"#),
                }
            }
        };
        let objects = self.objects.lock().unwrap();
        let page: Vec<Json> =
            objects.iter().skip(offset).take(limit).map(|(id, ms)| Portal::object(stream, *id, *ms, &props)).collect();
        let mut body = json!({"results": page});
        if offset + limit < objects.len() {
            let after = base64::engine::general_purpose::STANDARD.encode((offset + limit).to_string());
            body["paging"] = json!({"next": {"after": after, "link": format!("https://api.hubapi.com/crm/v3/objects/{stream}?after={after}")}});
        }
        FakeResponse::json(body)
    }

    fn search(&self, stream: &str, r: &FakeRequest) -> FakeResponse {
        let bad = |m: &str| {
            FakeResponse::status(
                400,
                &json!({"status": "error", "message": m, "category": "VALIDATION_ERROR"}).to_string(),
            )
        };
        let body = r.json();
        let limit = body.get("limit").and_then(Json::as_u64).unwrap_or(10);
        if limit > 200 {
            return bad("limit must be at most 200");
        }
        let offset: u64 = match body.get("after") {
            None => 0,
            Some(a) => match a.as_str().and_then(|s| s.parse().ok()) {
                Some(n) => n,
                None => return bad("after must be a numeric string"),
            },
        };
        if offset + limit > SEARCH_CAP {
            return bad("Search results are limited to 10,000 total results");
        }
        let value_ms = |v: &Json| -> Option<i64> {
            let s = v.as_str()?;
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                parse_rfc3339(s).map(|us| us / 1000)
            }
        };
        let groups = body.get("filterGroups").and_then(Json::as_array).cloned().unwrap_or_default();
        // Validate the filters once: known properties and operators only.
        for f in groups.iter().flat_map(|g| g["filters"].as_array().cloned().unwrap_or_default()) {
            let prop = f["propertyName"].as_str().unwrap_or_default();
            if !property_names(stream).contains(&prop) {
                return bad(&format!("Property {prop} does not exist on {stream}"));
            }
            match f["operator"].as_str() {
                Some("HAS_PROPERTY") => {}
                Some("GT" | "GTE" | "EQ") if prop == lastmod(stream) && value_ms(&f["value"]).is_some() => {}
                _ => return bad("unsupported filter"),
            }
        }
        let matches = |ms: i64| {
            groups.is_empty()
                || groups.iter().any(|g| {
                    g["filters"].as_array().into_iter().flatten().all(|f| {
                        let v = value_ms(&f["value"]).unwrap_or(0);
                        match f["operator"].as_str() {
                            Some("GT") => ms > v,
                            Some("GTE") => ms >= v,
                            Some("EQ") => ms == v,
                            _ => true,
                        }
                    })
                })
        };
        let mut hits: Vec<(u64, i64)> =
            self.objects.lock().unwrap().iter().copied().filter(|(_, ms)| matches(*ms)).collect();
        if let Some(s) = body.get("sorts").and_then(Json::as_array).and_then(|s| s.first()) {
            if s["propertyName"] != lastmod(stream) || s["direction"] != "ASCENDING" {
                return bad("unexpected sort");
            }
            hits.sort_by_key(|(id, ms)| (*ms, *id));
        }
        let props: Vec<String> = match body.get("properties").and_then(Json::as_array) {
            Some(p) => p.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            None => ["createdate", "hs_object_id", lastmod(stream)].iter().map(|s| s.to_string()).collect(),
        };
        let page: Vec<Json> = hits
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|(id, ms)| Portal::object(stream, *id, *ms, &props))
            .collect();
        let mut out = json!({"total": hits.len(), "results": page});
        if offset + limit < hits.len() as u64 {
            out["paging"] = json!({"next": {"after": (offset + limit).to_string()}});
        }
        FakeResponse::json(out)
    }
}

/// A local HubSpot over `portal`.
pub(crate) fn fake_hubspot(portal: &Arc<Portal>) -> FakeApi {
    let p = portal.clone();
    FakeApi::start(move |r: &FakeRequest| p.handle(r))
}

/// `n` objects with ids 1..=n whose modification times are a permutation of T0 + 0..n seconds
/// (so the search order is not the id order).
pub(crate) fn objects(n: u64) -> Vec<(u64, i64)> {
    (1..=n).map(|id| (id, T0 + ((id * 7919) % n) as i64 * 1000)).collect()
}

/// The `source:` mapping with an api_key.
pub(crate) fn config(url: &str, stream: &str, extra: &str) -> String {
    format!(
        "name: hubspot\nstream: {stream}\nbase_url: {url}\n{extra}authentication:\n  type: api_key\n  params:\n    token: {TOKEN}\n"
    )
}

fn ids(records: &[(String, Json)]) -> Vec<String> {
    records.iter().map(|(id, _)| id.clone()).collect()
}

fn full() -> ReadContext {
    ReadContext::default()
}

fn incremental(watermark: Option<Json>, cursor_field: &str) -> ReadContext {
    ReadContext { sync_mode: SyncMode::Incremental, watermark, cursor_field: Some(cursor_field.into()) }
}

/// A read as the engine does it: records, paginations after each page, and the watermark (the
/// max of the pages' `cursor_max`).
fn read_pages(
    source: &mut dyn Source,
    from: Json,
    ctx: &ReadContext,
) -> (Vec<(String, Json)>, Vec<Json>, Option<Json>) {
    let (mut records, mut after, mut watermark) = (Vec::new(), Vec::new(), None);
    let mut p = from;
    loop {
        let page = source.get(&p, ctx).unwrap_or_else(|e| panic!("get: {e}"));
        for r in page.records.iter() {
            records.push((r.id.to_owned(), serde_json::from_slice(r.data).expect("record JSON")));
        }
        watermark = cursor_max(watermark, page.cursor_max.clone());
        after.push(page.next.clone());
        if page.is_last() {
            return (records, after, watermark);
        }
        p = page.next;
    }
}

#[test]
fn full_refresh_pages_the_list_with_bizons_requests_ids_and_records() {
    let portal = Portal::new(objects(250));
    let api = fake_hubspot(&portal);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, "contacts", "properties:\n  strategy: all\n"));
    assert!(api.requests().is_empty(), "building must not call the API");
    let (records, pages) = read_to_end(s.as_mut(), &full()).unwrap();
    assert_eq!(pages, 3, "100 + 100 + 50: the last page is a normal page");
    assert_eq!(ids(&records), (1..=250).map(|i| i.to_string()).collect::<Vec<_>>());
    // The record is HubSpot's object as returned (bizon's `data=record`).
    let all: Vec<String> = property_names("contacts").iter().map(|s| s.to_string()).collect();
    assert_eq!(records[6].1, Portal::object("contacts", 7, objects(250)[6].1, &all));
    assert_eq!(records[6].1["properties"]["email"], "user7@example.com");
    assert_eq!(records[6].1["properties"]["lastname"], Json::Null);

    let reqs = api.requests();
    assert_eq!(api.hits("/crm/v3/properties/contacts"), 1, "the property list is fetched once per run");
    let lists: Vec<&FakeRequest> = reqs.iter().filter(|r| r.path == "/crm/v3/objects/contacts").collect();
    assert_eq!(lists.len(), 3);
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    }
    assert_eq!(lists[0].method, "GET");
    assert_eq!(lists[0].param("limit"), Some("100"));
    assert_eq!(lists[0].param("properties"), Some("email,firstname,lastname,createdate,lastmodifieddate,hs_object_id"));
    assert_eq!(lists[0].param("after"), None);
    assert_eq!(lists[1].param("after"), Some("MTAw"), "paging.next.after is passed back as given");
    assert_eq!(lists[2].param("after"), Some("MjAw"));
    assert!(lists[0].body.is_empty(), "no `null` body on GETs (bizon sent json.dumps(None))");

    // bizon's pagination shape; `{}` at the end.
    let (_, after, watermark) =
        read_pages(source_from(&DESCRIPTOR, &config(&api.url, "contacts", "")).as_mut(), Json::Null, &full());
    assert_eq!(after[0], json!({"link": "https://api.hubapi.com/crm/v3/objects/contacts?after=MTAw", "after": "MTAw"}));
    assert_eq!(after[2], json!({}));
    assert_eq!(watermark, None, "no cursor_max outside incremental mode");
}

#[test]
fn empty_and_exactly_full_results_end_cleanly() {
    // bizon returned a tuple for these (an AttributeError in its producer).
    for (n, pages) in [(0u64, 1usize), (100, 1), (200, 2)] {
        let portal = Portal::new(objects(n));
        let api = fake_hubspot(&portal);
        let mut s = source_from(&DESCRIPTOR, &config(&api.url, "deals", ""));
        let (records, got) = read_to_end(s.as_mut(), &full()).unwrap();
        assert_eq!((records.len() as u64, got), (n, pages), "{n} objects");
    }
}

#[test]
fn every_stream_reads_its_own_objects_and_properties() {
    let portal = Portal::new(objects(5));
    let api = fake_hubspot(&portal);
    for stream in super::STREAMS {
        let mut s = source_from(&DESCRIPTOR, &config(&api.url, stream, ""));
        let (records, _) = read_to_end(s.as_mut(), &full()).unwrap();
        assert_eq!(ids(&records), ["1", "2", "3", "4", "5"], "{stream}");
        let keys: Vec<&String> = records[0].1["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), property_names(stream).len(), "{stream}: {keys:?}");
        assert_eq!(api.hits(&format!("/crm/v3/objects/{stream}")), 1);
    }
}

#[test]
fn selected_properties_are_checked_and_sent() {
    let portal = Portal::new(objects(3));
    let api = fake_hubspot(&portal);
    let text =
        config(&api.url, "contacts", "properties:\n  strategy: selected\n  selected_properties: [email, firstname]\n");
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &full()).unwrap();
    assert_eq!(records[0].1["properties"], json!({"email": "user1@example.com", "firstname": "First1"}));
    assert_eq!(api.requests().last().unwrap().param("properties"), Some("email,firstname"));

    let text = config(
        &api.url,
        "contacts",
        "properties:\n  strategy: selected\n  selected_properties: [email, fristname, shoe_size]\n",
    );
    let before = api.requests().len();
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &full()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{msg}");
    assert!(
        msg.contains("`fristname` (did you mean `firstname`?), `shoe_size` are not properties of HubSpot `contacts`"),
        "{msg}"
    );
    assert!(!msg.contains("`email`"), "{msg}");
    assert_eq!(api.requests().len(), before + 1, "only the property list was asked for");
}

#[test]
fn total_records_counts_with_bizons_search() {
    let portal = Portal::new(objects(42));
    let api = fake_hubspot(&portal);
    let mut s = source_from(&DESCRIPTOR, &config(&api.url, "companies", ""));
    assert_eq!(s.total_records(&full()).unwrap(), Some(42));
    let r = api.requests().pop().unwrap();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/crm/v3/objects/companies/search"));
    assert_eq!(
        r.json(),
        json!({"filterGroups": [{"filters": [{"operator": "HAS_PROPERTY", "propertyName": "hs_object_id"}]}]})
    );
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"));

    // After a watermark, only what the run will read.
    let ctx = incremental(Some(mark(T0 + 31_000)), "hs_lastmodifieddate");
    assert_eq!(s.total_records(&ctx).unwrap(), Some(10));
    let r = api.requests().pop().unwrap();
    assert_eq!(
        r.json()["filterGroups"][0]["filters"][1],
        json!({"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": (T0 + 31_000).to_string()})
    );
}

#[test]
fn incremental_second_run_reads_only_newer_records() {
    for (stream, cursor_field) in
        [("contacts", "updatedAt"), ("companies", "hs_lastmodifieddate"), ("deals", "lastmodifieddate")]
    {
        let portal = Portal::new(objects(150));
        let api = fake_hubspot(&portal);
        let extra = format!("sync_mode: incremental\ncursor_field: {cursor_field}\nproperties:\n  strategy: selected\n  selected_properties: [createdate]\n");
        let text = config(&api.url, stream, &extra);
        let prop = lastmod(stream);

        // First run: no watermark, the list endpoint (no 10k cap); the watermark is the max
        // modification time, found in the nested properties.
        let (records, _, watermark) =
            read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &incremental(None, cursor_field));
        assert_eq!(records.len(), 150, "{stream}");
        assert_eq!(watermark, Some(mark(T0 + 149_000)), "{stream}");
        let list = api.requests().into_iter().find(|r| r.path.starts_with("/crm/v3/objects/")).unwrap();
        assert_eq!(list.method, "GET");
        assert_eq!(
            list.param("properties"),
            Some(format!("createdate,{prop}").as_str()),
            "the watermark property is always read"
        );

        // Changes: 3 and 7 modified (7 first), 151 created.
        portal.touch(7, T0 + 200_000);
        portal.touch(3, T0 + 200_500);
        portal.touch(151, T0 + 201_000);
        let before = api.requests().len();
        let ctx = incremental(watermark.clone(), cursor_field);
        let (records, after, watermark2) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &ctx);
        assert_eq!(ids(&records), ["7", "3", "151"], "{stream}: only newer records, oldest change first");
        assert_eq!(records[1].1["properties"][prop], iso(T0 + 200_500));
        assert_eq!(watermark2, Some(mark(T0 + 201_000)));
        assert_eq!(after, [json!({})]);
        let reqs = &api.requests()[before..];
        let search = reqs.iter().find(|r| r.path == format!("/crm/v3/objects/{stream}/search")).unwrap();
        assert_eq!(
            search.json(),
            json!({
                "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GT", "value": (T0 + 149_000).to_string()}]}],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": ["createdate", prop],
                "limit": 100,
            }),
            "{stream}"
        );
        assert!(!reqs.iter().any(|r| r.path == format!("/crm/v3/objects/{stream}")), "{stream}: no list read");

        // Nothing changed since: one empty page, the watermark stays.
        let ctx = incremental(watermark2, cursor_field);
        let (records, after, watermark3) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &ctx);
        assert!(records.is_empty() && after == [json!({})] && watermark3.is_none(), "{stream}");
    }
}

#[test]
fn incremental_search_pages_and_resumes_from_any_page() {
    let portal = Portal::new(objects(250));
    let api = fake_hubspot(&portal);
    let text = config(&api.url, "contacts", "sync_mode: incremental\ncursor_field: lastmodifieddate\n");
    // 200 records are newer than T0 + 49 s; the search returns them by modification time.
    let ctx = incremental(Some(mark(T0 + 49_000)), "lastmodifieddate");
    let (records, after, _) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &ctx);
    assert_eq!(records.len(), 200);
    let times: Vec<i64> =
        records.iter().map(|(_, r)| parse_rfc3339(r["updatedAt"].as_str().unwrap()).unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "ascending by modification time");
    assert_eq!(after[0], json!({"since": format_rfc3339((T0 + 49_000) * 1000), "inclusive": false, "after": "100"}));
    let searches: Vec<FakeRequest> = api.requests().into_iter().filter(|r| r.path.ends_with("/search")).collect();
    assert_eq!(searches[1].json()["after"], "100");
    bizon_testkit::source::run_suite(&|| source_from(&DESCRIPTOR, &text), &ctx, 200);
}

#[test]
fn search_cap_continues_from_the_last_modification_time() {
    // 10,250 changed records, two per millisecond-instant: past the 10,000-result cap the
    // source re-queries from the last instant it read (GTE), reading that instant's pair again.
    let n = 10_250u64;
    let portal = Portal::new((1..=n).map(|id| (id, T0 + 10_000 + (id as i64 - 1) / 2)).collect());
    let api = fake_hubspot(&portal);
    let text = config(&api.url, "deals", "sync_mode: incremental\ncursor_field: hs_lastmodifieddate\n");
    let ctx = incremental(Some(mark(T0)), "hs_lastmodifieddate");
    let (records, after, watermark) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &ctx);
    let mut seen: Vec<u64> = records.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert_eq!(watermark, Some(mark(T0 + 10_000 + 5_124)));
    // Records 9,999 and 10,000 share the last instant of the first query's window.
    let boundary = T0 + 10_000 + 4_999;
    let k = (SEARCH_CAP / LIMIT) as usize;
    assert_eq!(after[k - 1], json!({"since": format_rfc3339(boundary * 1000), "inclusive": true}));
    assert_eq!(records.len(), n as usize + 2);
    assert_eq!(&ids(&records)[10_000..10_002], ["9999", "10000"], "the boundary instant read again");
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "every record read");
    let reqs = api.requests();
    let keyset = reqs.iter().filter(|r| r.path.ends_with("/search")).nth(k).unwrap().json();
    assert_eq!(keyset["filterGroups"][0]["filters"][0]["operator"], "GTE");
    assert_eq!(keyset["filterGroups"][0]["filters"][0]["value"], boundary.to_string());
    assert!(keyset.get("after").is_none());

    // Resume from the keyset pagination: exactly the rest.
    let (rest, _, _) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), after[k - 1].clone(), &ctx);
    assert_eq!(ids(&rest), ids(&records)[10_000..]);
}

#[test]
fn search_cap_on_a_single_instant_moves_past_it() {
    // 10,050 records modified in one millisecond (a bulk import): a GTE query cannot move
    // past them; the source continues after that instant instead of looping.
    let portal = Portal::new((1..=10_050).map(|id| (id, T0 + 5_000)).chain([(20_000, T0 + 6_000)]).collect());
    let api = fake_hubspot(&portal);
    let text = config(&api.url, "companies", "sync_mode: incremental\ncursor_field: hs_lastmodifieddate\n");
    let ctx = incremental(Some(mark(T0)), "hs_lastmodifieddate");
    let (records, after, _) = read_pages(source_from(&DESCRIPTOR, &text).as_mut(), Json::Null, &ctx);
    assert_eq!(records.last().unwrap().0, "20000", "the later record is read");
    assert!(after.contains(&json!({"since": format_rfc3339((T0 + 5_000) * 1000), "inclusive": false})));
    assert_eq!(records.len(), 20_001, "the instant's first 10,000 twice (GT then GTE), then the rest");
}

fn oauth_config(url: &str, endpoint: Option<&str>) -> String {
    let endpoint = endpoint.map(|e| format!("    token_refresh_endpoint: {e}\n")).unwrap_or_default();
    format!(
        "name: hubspot\nstream: contacts\nbase_url: {url}\nauthentication:\n  type: oauth\n  params:\n{endpoint}    client_id: client-1\n    client_secret: csecret-XYZ\n    refresh_token: refresh-SECRET\n"
    )
}

#[test]
fn oauth_refreshes_against_hubspots_endpoint_by_default() {
    let portal = Portal::with_oauth(objects(120));
    let api = fake_hubspot(&portal);
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &oauth_config(&api.url, None)).as_mut(), &full()).unwrap();
    assert_eq!(records.len(), 120);
    let reqs = api.requests();
    let token = &reqs[0];
    assert_eq!((token.method.as_str(), token.path.as_str()), ("POST", "/oauth/v1/token"));
    let mut form = token.form();
    form.sort();
    assert_eq!(
        form,
        [
            ("client_id".to_owned(), "client-1".to_owned()),
            ("client_secret".to_owned(), "csecret-XYZ".to_owned()),
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), "refresh-SECRET".to_owned()),
        ]
    );
    assert_eq!(api.hits("/oauth/v1/token"), 1, "the token lives 30 minutes");
    assert!(reqs[1..].iter().all(|r| r.header("authorization") == Some("Bearer access-1")));
}

#[test]
fn oauth_honours_a_configured_token_endpoint() {
    let portal = Portal::with_oauth(objects(3));
    let api = fake_hubspot(&portal);
    let auth_server = fake_hubspot(&portal);
    let text = oauth_config(&api.url, Some(&format!("{}/oauth/v1/token", auth_server.url)));
    let (records, _) = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &full()).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!((api.hits("/oauth/v1/token"), auth_server.hits("/oauth/v1/token")), (0, 1));
}

#[test]
fn oauth_refused_refresh_token_fails_clearly_without_secrets() {
    let portal = Portal::with_oauth(objects(3));
    let api = fake_hubspot(&portal);
    let text = oauth_config(&api.url, None).replace("refresh-SECRET", "refresh-REVOKED");
    let err = read_to_end(source_from(&DESCRIPTOR, &text).as_mut(), &full()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("oauth: could not refresh the access token"), "{msg}");
    assert!(msg.contains("400") && msg.contains("BAD_REFRESH_TOKEN"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Config);
    for secret in ["csecret-XYZ", "refresh-REVOKED"] {
        assert!(!msg.contains(secret), "{secret} leaked: {msg}");
    }
    assert_eq!(api.hits("/crm/v3/properties/contacts"), 0);
}

#[test]
fn hubspot_passes_the_http_error_suite_with_an_api_key() {
    let portal = Portal::new(objects(130));
    let p = portal.clone();
    let handler: Handler = Arc::new(move |r: &FakeRequest| p.handle(r));
    let config = |url: &str| config(url, "contacts", "");
    assert_eq!(error_suite(&DESCRIPTOR, &config, handler, "api_key", TOKEN), 130);
}

#[test]
fn hubspot_passes_the_http_error_suite_with_oauth() {
    let portal = Portal::with_oauth(objects(130));
    // The token endpoint on its own server, so the suite's failing servers fail the API calls.
    let auth_server = fake_hubspot(&portal);
    let endpoint = format!("{}/oauth/v1/token", auth_server.url);
    let p = portal.clone();
    let handler: Handler = Arc::new(move |r: &FakeRequest| p.handle(r));
    let config = |url: &str| oauth_config(url, Some(&endpoint));
    assert_eq!(error_suite(&DESCRIPTOR, &config, handler, "oauth", "csecret-XYZ"), 130);
}

#[test]
fn config_errors_name_the_allowed_values() {
    let base = "name: hubspot\nstream: contacts\n";
    let auth = "authentication:\n  type: api_key\n  params:\n    token: x\n";

    let err = parse_error(&DESCRIPTOR, &format!("{base}authentication:\n  type: bearer\n  params:\n    token: x\n"));
    assert!(
        err.contains("does not support authentication type `bearer`")
            && err.contains("`api_key`")
            && err.contains("`oauth`")
            && err.contains("line 4"),
        "{err}"
    );
    let err = parse_error(&DESCRIPTOR, base);
    assert!(err.contains("needs `authentication`"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}authentication:\n  type: oauth\n  params:\n    client_id: a\n"));
    assert!(err.contains("client_secret"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}{auth}properties:\n  strategy: selected\n"));
    assert!(err.contains("needs a non-empty `selected_properties`"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}{auth}properties:\n  strategy: some\n"));
    assert!(err.contains("some") && err.contains("selected"), "{err}");
    let err = parse_error(&DESCRIPTOR, &format!("{base}{auth}propertis:\n  strategy: all\n"));
    assert!(err.contains("unknown key `propertis`; did you mean `properties`?"), "{err}");
    let err =
        parse_error(&DESCRIPTOR, &format!("{base}sync_mode: incremental\ncursor_field: hs_lastmodifieddat\n{auth}"));
    assert!(
        err.contains("did you mean `hs_lastmodifieddate`?") && err.contains("`updatedAt`") && err.contains("line 4"),
        "{err}"
    );
    let err = parse_error(&DESCRIPTOR, &format!("{base}base_url: api.hubapi.com\n{auth}"));
    assert!(err.contains("base_url"), "{err}");
    // Accepted: bizon's examples (oauth with and without the endpoint), each cursor field.
    for text in [
        format!("{base}properties:\n  strategy: all\n{auth}"),
        oauth_config("https://api.hubapi.com", None),
        oauth_config("https://api.hubapi.com", Some("https://api.hubapi.com/oauth/v1/token")),
        format!("{base}sync_mode: incremental\ncursor_field: updatedAt\n{auth}"),
    ] {
        let node = bizon_core::config::yaml::parse(&text).unwrap();
        assert!((DESCRIPTOR.parse)(&node).is_ok(), "{text}");
    }
}
