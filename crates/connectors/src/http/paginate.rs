//! Pagination styles of HTTP APIs, as one enum the declarative `rest` source reads from YAML
//! and the built-in connectors construct in code. The pagination state after a page is the
//! source cursor the engine checkpoints, so a killed run resumes at the last committed page:
//! `{"url": …}` (next URL, Link header), `{"cursor": …}` (body or GraphQL cursor),
//! `{"offset": n}`, `{"page": n}`; `{}` = done.

use bizon_core::{Error, Json, Result};
use serde::Deserialize;
use serde_json::json;

use super::client::{Body, Request, Response};

/// How a stream pages (`paginator:` of a `rest` stream).
#[derive(Debug, Clone, PartialEq, Deserialize, Default, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paginator {
    /// One request, one page.
    #[default]
    Single,
    /// The body carries the next page's full URL (`next_url_path`, a JSON pointer such as
    /// `/next`); null or absent = last page.
    NextUrl {
        #[serde(default = "default_next_path")]
        next_url_path: String,
    },
    /// The body carries an opaque cursor sent back as a query parameter (`cursor_param`), or in
    /// the JSON body when `in_body` is true.
    Cursor {
        cursor_path: String,
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
        #[serde(default)]
        in_body: bool,
        /// JSON pointer to a boolean "more pages" flag, when the API has one.
        #[serde(default)]
        has_more_path: Option<String>,
    },
    /// RFC 8288 `Link: <url>; rel="next"` header (GitHub style).
    LinkHeader,
    /// `offset` and `limit` parameters; stops at a short page, at `total_path`, at
    /// `end_path` (a boolean such as gbif's `/endOfRecords`) or at `max_records`.
    Offset {
        limit: u64,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default)]
        start: u64,
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        end_path: Option<String>,
        #[serde(default)]
        max_records: Option<u64>,
    },
    /// A page number parameter; stops at an empty or short page or at `total_pages_path`.
    PageNumber {
        #[serde(default = "default_page_param")]
        page_param: String,
        #[serde(default = "one")]
        start: u64,
        #[serde(default)]
        page_size: Option<u64>,
        #[serde(default)]
        page_size_param: Option<String>,
        #[serde(default)]
        total_pages_path: Option<String>,
    },
    /// GraphQL Relay cursors: `pageInfo { endCursor hasNextPage }` at `page_info_path`; the
    /// cursor goes into the query's variable `cursor_variable`.
    Graphql {
        page_info_path: String,
        #[serde(default = "default_graphql_variable")]
        cursor_variable: String,
    },
}

fn default_next_path() -> String {
    "/next".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_graphql_variable() -> String {
    "after".into()
}
fn one() -> u64 {
    1
}

/// The end of a stream.
pub fn done() -> Json {
    json!({})
}

impl Paginator {
    /// Pages are addressed by a number known in advance (offset, page number): several can be
    /// fetched at once.
    pub fn numbered(&self) -> bool {
        matches!(self, Paginator::Offset { .. } | Paginator::PageNumber { .. })
    }

    /// The position of the first page.
    pub fn first(&self) -> Json {
        match self {
            Paginator::Offset { start, .. } => json!({ "offset": start }),
            Paginator::PageNumber { start, .. } => json!({ "page": start }),
            _ => Json::Null,
        }
    }

    /// The numbered position `k` pages after `state` (offset and page-number styles).
    pub fn ahead(&self, state: &Json, k: u64) -> Option<Json> {
        match self {
            Paginator::Offset { limit, max_records, .. } => {
                let o = state.get("offset")?.as_u64()? + k * limit;
                (max_records.is_none_or(|m| o < m)).then(|| json!({ "offset": o }))
            }
            Paginator::PageNumber { .. } => Some(json!({ "page": state.get("page")?.as_u64()? + k })),
            _ => None,
        }
    }

    /// Apply the position `state` (`Null` = first page) to the request of a page.
    pub fn apply(&self, state: &Json, req: &mut Request) -> Result<()> {
        let state = if state.is_null() { self.first() } else { state.clone() };
        match self {
            Paginator::Single => {}
            Paginator::NextUrl { .. } | Paginator::LinkHeader => {
                if let Some(url) = state.get("url").and_then(Json::as_str) {
                    // The next URL carries every parameter already.
                    req.url = resolve(&req.url, url);
                    req.query.clear();
                }
            }
            Paginator::Cursor { cursor_param, in_body, .. } => {
                if let Some(c) = state.get("cursor").filter(|c| !c.is_null()) {
                    let text = c.as_str().map_or_else(|| c.to_string(), str::to_owned);
                    if *in_body {
                        body_object(req)?.insert(cursor_param.clone(), c.clone());
                    } else {
                        set_query(req, cursor_param, text);
                    }
                }
            }
            Paginator::Offset { limit, limit_param, offset_param, max_records, .. } => {
                let offset = state.get("offset").and_then(Json::as_u64).unwrap_or(0);
                let limit = max_records.map_or(*limit, |m| (*limit).min(m.saturating_sub(offset)).max(1));
                set_query(req, offset_param, offset.to_string());
                set_query(req, limit_param, limit.to_string());
            }
            Paginator::PageNumber { page_param, page_size, page_size_param, .. } => {
                let page = state.get("page").and_then(Json::as_u64).unwrap_or(1);
                set_query(req, page_param, page.to_string());
                if let (Some(size), Some(param)) = (page_size, page_size_param) {
                    set_query(req, param, size.to_string());
                }
            }
            Paginator::Graphql { cursor_variable, .. } => {
                let cursor = state.get("cursor").cloned().unwrap_or(Json::Null);
                let body = body_object(req)?;
                let vars = body.entry("variables").or_insert_with(|| json!({}));
                match vars.as_object_mut() {
                    Some(v) => {
                        v.insert(cursor_variable.clone(), cursor);
                    }
                    None => return Err(Error::config("a graphql paginator needs `variables` to be a mapping")),
                }
            }
        }
        Ok(())
    }

    /// The position after a page: `state` is the page's own position, `records` how many it
    /// held. `{}` when it was the last.
    pub fn next(&self, state: &Json, resp: &Response, body: &Json, records: usize) -> Json {
        let state = if state.is_null() { self.first() } else { state.clone() };
        match self {
            Paginator::Single => done(),
            Paginator::NextUrl { next_url_path } => match body.pointer(next_url_path).and_then(Json::as_str) {
                Some(u) if !u.is_empty() && records > 0 => json!({ "url": u }),
                _ => done(),
            },
            Paginator::LinkHeader => match resp.header("link").and_then(next_link) {
                Some(u) => json!({ "url": u }),
                None => done(),
            },
            Paginator::Cursor { cursor_path, has_more_path, .. } => {
                let more = has_more_path.as_ref().map(|p| body.pointer(p).and_then(Json::as_bool).unwrap_or(false));
                match body.pointer(cursor_path) {
                    Some(c) if !c.is_null() && c != "" && more != Some(false) && records > 0 => {
                        json!({ "cursor": c })
                    }
                    _ => done(),
                }
            }
            Paginator::Offset { limit, total_path, end_path, max_records, .. } => {
                let offset = state.get("offset").and_then(Json::as_u64).unwrap_or(0);
                let next = offset + records as u64;
                let ended = end_path.as_ref().is_some_and(|p| body.pointer(p).and_then(Json::as_bool) == Some(true));
                let total = total_path.as_ref().and_then(|p| body.pointer(p)).and_then(Json::as_u64);
                let short = end_path.is_none() && total.is_none() && (records as u64) < *limit;
                if records == 0
                    || ended
                    || short
                    || total.is_some_and(|t| next >= t)
                    || max_records.is_some_and(|m| next >= m)
                {
                    done()
                } else {
                    json!({ "offset": next })
                }
            }
            Paginator::PageNumber { page_size, total_pages_path, .. } => {
                let page = state.get("page").and_then(Json::as_u64).unwrap_or(1);
                let total = total_pages_path.as_ref().and_then(|p| body.pointer(p)).and_then(Json::as_u64);
                let short = total.is_none() && page_size.is_some_and(|s| (records as u64) < s);
                if records == 0 || short || total.is_some_and(|t| page >= t) {
                    done()
                } else {
                    json!({ "page": page + 1 })
                }
            }
            Paginator::Graphql { page_info_path, .. } => {
                let info = body.pointer(page_info_path);
                let more = info.and_then(|i| i.get("hasNextPage")).and_then(Json::as_bool).unwrap_or(false);
                match info.and_then(|i| i.get("endCursor")) {
                    Some(c) if more && !c.is_null() => json!({ "cursor": c }),
                    _ => done(),
                }
            }
        }
    }
}

/// `next` (absolute, host-relative `/path` or relative `path`) against the URL it came from.
pub fn resolve(base: &str, next: &str) -> String {
    if next.starts_with("http://") || next.starts_with("https://") {
        return next.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if next.starts_with('/') {
        return format!("{}{next}", &base[..origin_end]);
    }
    let path = base.split(['?', '#']).next().unwrap_or(base);
    let dir_end = path.rfind('/').filter(|i| *i >= origin_end).map_or(path.len(), |i| i + 1);
    let dir = &path[..dir_end];
    if dir.ends_with('/') {
        format!("{dir}{next}")
    } else {
        format!("{dir}/{next}")
    }
}

/// Replace or add a query parameter.
pub fn set_query(req: &mut Request, name: &str, value: String) {
    match req.query.iter_mut().find(|(k, _)| k == name) {
        Some(p) => p.1 = value,
        None => req.query.push((name.to_owned(), value)),
    }
}

/// The request's JSON body as a mapping (created when absent).
fn body_object(req: &mut Request) -> Result<&mut serde_json::Map<String, Json>> {
    if req.body.is_none() {
        req.body = Some(Body::Json(json!({})));
    }
    match &mut req.body {
        Some(Body::Json(Json::Object(m))) => Ok(m),
        _ => Err(Error::config("this paginator puts its cursor in the body: the body must be a JSON mapping")),
    }
}

/// The `rel="next"` target of a Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_next_urls() {
        assert_eq!(resolve("https://a.io/v1/items?x=1", "https://b.io/n"), "https://b.io/n");
        assert_eq!(resolve("https://a.io/v1/items?x=1", "/v1/items?page=2"), "https://a.io/v1/items?page=2");
        assert_eq!(resolve("https://a.io/v1/items", "items?page=2"), "https://a.io/v1/items?page=2");
        assert_eq!(resolve("http://127.0.0.1:9/x", "/y"), "http://127.0.0.1:9/y");
    }

    #[test]
    fn link_header_next() {
        let h = r#"<https://api.x/items?page=2>; rel="next", <https://api.x/items?page=9>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("https://api.x/items?page=2"));
        assert_eq!(next_link(r#"<https://api.x/items?page=1>; rel="prev""#), None);
    }

    #[test]
    fn offset_applies_and_stops() {
        let p = Paginator::Offset {
            limit: 300,
            limit_param: "limit".into(),
            offset_param: "offset".into(),
            start: 0,
            total_path: None,
            end_path: Some("/endOfRecords".into()),
            max_records: Some(700),
        };
        let mut req = Request::get("http://x/occurrence/search");
        p.apply(&json!({"offset": 600}), &mut req).unwrap();
        // The last page is cut to max_records.
        assert_eq!(req.query, [("offset".into(), "600".into()), ("limit".into(), "100".into())]);
        let resp = Response::for_test(&[]);
        assert_eq!(p.next(&Json::Null, &resp, &json!({"endOfRecords": false}), 300), json!({"offset": 300}));
        assert_eq!(p.next(&json!({"offset": 300}), &resp, &json!({"endOfRecords": true}), 300), done());
        assert_eq!(
            p.next(&json!({"offset": 300}), &resp, &json!({"endOfRecords": false}), 300),
            json!({"offset": 600})
        );
        assert_eq!(p.next(&json!({"offset": 600}), &resp, &json!({"endOfRecords": false}), 100), done());
        assert_eq!(p.ahead(&json!({"offset": 0}), 2), Some(json!({"offset": 600})));
        assert_eq!(p.ahead(&json!({"offset": 0}), 3), None);
    }

    #[test]
    fn graphql_cursor_in_variables() {
        let p =
            Paginator::Graphql { page_info_path: "/data/customers/pageInfo".into(), cursor_variable: "after".into() };
        let mut req = Request::post_json("http://x/graphql", json!({"query": "q", "variables": {"slug": "s"}}));
        p.apply(&json!({"cursor": "abc"}), &mut req).unwrap();
        let Some(Body::Json(b)) = &req.body else { panic!() };
        assert_eq!(b["variables"], json!({"slug": "s", "after": "abc"}));
        let resp = Response::for_test(&[]);
        let body = json!({"data": {"customers": {"pageInfo": {"hasNextPage": true, "endCursor": "c2"}}}});
        assert_eq!(p.next(&Json::Null, &resp, &body, 10), json!({"cursor": "c2"}));
        let last = json!({"data": {"customers": {"pageInfo": {"hasNextPage": false, "endCursor": "c3"}}}});
        assert_eq!(p.next(&Json::Null, &resp, &last, 10), done());
    }

    #[test]
    fn page_number_and_cursor() {
        let p = Paginator::PageNumber {
            page_param: "page".into(),
            start: 1,
            page_size: Some(50),
            page_size_param: Some("per_page".into()),
            total_pages_path: Some("/total_pages".into()),
        };
        let resp = Response::for_test(&[]);
        assert_eq!(p.next(&Json::Null, &resp, &json!({"total_pages": 3}), 50), json!({"page": 2}));
        assert_eq!(p.next(&json!({"page": 3}), &resp, &json!({"total_pages": 3}), 50), done());
        let c = Paginator::Cursor {
            cursor_path: "/meta/next".into(),
            cursor_param: "cursor".into(),
            in_body: false,
            has_more_path: None,
        };
        assert_eq!(c.next(&Json::Null, &resp, &json!({"meta": {"next": "n1"}}), 5), json!({"cursor": "n1"}));
        assert_eq!(c.next(&Json::Null, &resp, &json!({"meta": {"next": null}}), 5), done());
        let mut req = Request::get("http://x/a");
        c.apply(&json!({"cursor": "n1"}), &mut req).unwrap();
        assert_eq!(req.query, [("cursor".into(), "n1".into())]);
    }
}
