//! The HubSpot reader: resolves the property list once, then pages through the list endpoint
//! (full refresh, first incremental run) or the search endpoint (incremental runs after a
//! watermark), with the keyset continuation past the search API's 10,000-result cap. See the
//! module docs of `hubspot` for the requests and the watermark.

use std::sync::Arc;

use bizon_core::time::{format_rfc3339, parse_rfc3339};
use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde_json::json;
use tracing::{debug, warn};

use super::{lastmodified_property, HubSpotConfig, PropertiesConfig, PropertiesStrategy};
use crate::http::stream::to_page;
use crate::http::{HttpClient, Request};

/// Page size of the list and search requests (bizon's 100; the search API allows up to 200).
pub const LIMIT: u64 = 100;
/// HubSpot's search API returns at most this many results per query (`after` past it is a 400).
pub const SEARCH_CAP: u64 = 10_000;

/// A `hubspot` stream being read.
pub struct HubSpotSource {
    client: Arc<HttpClient>,
    base: String,
    stream: String,
    properties: PropertiesConfig,
    /// The property holding the last modification time (search filter and sort).
    lastmod: &'static str,
    /// The properties asked for, resolved at the first read.
    resolved: Option<Vec<String>>,
}

impl HubSpotSource {
    pub fn new(client: Arc<HttpClient>, config: &HubSpotConfig, stream: &str) -> Self {
        if config.properties.strategy == PropertiesStrategy::All
            && config.properties.selected_properties.as_ref().is_some_and(|s| !s.is_empty())
        {
            warn!(stream, "`properties.selected_properties` is ignored with `strategy: all`");
        }
        HubSpotSource {
            client,
            base: config.base_url.trim_end_matches('/').to_owned(),
            stream: stream.to_owned(),
            properties: config.properties.clone(),
            lastmod: lastmodified_property(stream),
            resolved: None,
        }
    }

    fn objects_url(&self) -> String {
        format!("{}/crm/v3/objects/{}", self.base, self.stream)
    }

    fn search_url(&self) -> String {
        format!("{}/crm/v3/objects/{}/search", self.base, self.stream)
    }

    /// The property names to request: every property of the object type, or the selected ones
    /// (each checked to exist). In incremental mode the last-modified property is always added:
    /// it is the watermark.
    fn properties(&mut self, incremental: bool) -> Result<Vec<String>> {
        if let Some(p) = &self.resolved {
            return Ok(p.clone());
        }
        let url = format!("{}/crm/v3/properties/{}", self.base, self.stream);
        let resp = self.client.send(&Request::get(&url))?;
        let body = resp.json()?;
        let all: Vec<String> = body
            .get("results")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(|p| p.get("name").and_then(Json::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        if all.is_empty() {
            return Err(Error::permanent(format!("{}: no properties listed for `{}`", resp.what, self.stream)));
        }
        let mut chosen = match self.properties.strategy {
            PropertiesStrategy::All => all.clone(),
            PropertiesStrategy::Selected => {
                let selected = self.properties.selected_properties.clone().unwrap_or_default();
                let unknown: Vec<String> = selected
                    .iter()
                    .filter(|s| !all.contains(s))
                    .map(|s| {
                        let hint = bizon_core::suggest::did_you_mean(s, all.iter().map(String::as_str));
                        let hint = hint.trim_start_matches("; ");
                        if hint.is_empty() {
                            format!("`{s}`")
                        } else {
                            format!("`{s}` ({hint})")
                        }
                    })
                    .collect();
                if !unknown.is_empty() {
                    return Err(Error::config(format!(
                        "source.properties.selected_properties: {} {} of HubSpot `{}` \
                         (GET /crm/v3/properties/{} lists them)",
                        unknown.join(", "),
                        if unknown.len() == 1 { "is not a property" } else { "are not properties" },
                        self.stream,
                        self.stream
                    )));
                }
                selected
            }
        };
        if incremental && !chosen.iter().any(|p| p == self.lastmod) {
            chosen.push(self.lastmod.to_owned());
        }
        debug!(stream = %self.stream, properties = chosen.len(), "hubspot properties resolved");
        self.resolved = Some(chosen.clone());
        Ok(chosen)
    }

    /// A page of the list endpoint at `after`.
    fn list_page(&mut self, pagination: &Json, incremental: bool) -> Result<(Vec<Json>, Json)> {
        let properties = self.properties(incremental)?;
        let mut req = Request::get(self.objects_url()).query("limit", LIMIT).query("properties", properties.join(","));
        if let Some(after) = pagination.get("after").and_then(as_text) {
            req = req.query("after", after);
        }
        let resp = self.client.send(&req)?;
        let mut body = resp.json()?;
        let records = take_results(&mut body);
        // bizon returned a bare tuple for the last page and for empty pages (an AttributeError in
        // its producer): here they are normal pages, the last one with `{}`.
        let next = match body.pointer("/paging/next") {
            Some(n) => match n.get("after").and_then(as_text) {
                Some(after) => json!({"link": n.get("link").cloned().unwrap_or(Json::Null), "after": after}),
                None => json!({}),
            },
            None => json!({}),
        };
        Ok((records, next))
    }

    /// The search request body from `since` (`inclusive`: GTE, else GT) at `after`.
    fn search_body(&self, properties: &[String], since_ms: i64, inclusive: bool, after: Option<&str>) -> Json {
        let mut body = json!({
            "filterGroups": [{"filters": [{
                "propertyName": self.lastmod,
                "operator": if inclusive { "GTE" } else { "GT" },
                "value": since_ms.to_string(),
            }]}],
            "sorts": [{"propertyName": self.lastmod, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": LIMIT,
        });
        if let Some(a) = after {
            body["after"] = Json::String(a.to_owned());
        }
        body
    }

    /// A page of the search endpoint: records modified after the pagination's `since`.
    fn search_page(&mut self, pagination: &Json) -> Result<(Vec<Json>, Json)> {
        let properties = self.properties(true)?;
        let since = pagination.get("since").cloned().unwrap_or(Json::Null);
        let since_us = watermark_micros(&since).ok_or_else(|| {
            Error::config(format!(
                "hubspot: cannot read the watermark {since} as a time (RFC 3339 or epoch milliseconds)"
            ))
        })?;
        let inclusive = pagination.get("inclusive").and_then(Json::as_bool).unwrap_or(false);
        let after = pagination.get("after").and_then(as_text);
        let body = self.search_body(&properties, since_us.div_euclid(1000), inclusive, after.as_deref());
        let resp = self.client.send(&Request::post_json(self.search_url(), body))?;
        let mut body = resp.json()?;
        let records = take_results(&mut body);
        let Some(next_after) = body.pointer("/paging/next/after").and_then(as_text) else {
            return Ok((records, json!({})));
        };
        // One search query pages through at most SEARCH_CAP results. When the next page would
        // pass it, start a new query from the last modification time read so far (the records
        // are sorted ascending by it): GTE, because more records may share that instant; the
        // ones already read are read again (at least once, never lost). If a whole query's
        // window shares one instant (a bulk import), GTE cannot move: continue with GT and
        // warn that records at that instant past the cap are skipped.
        let past_cap = next_after.parse::<u64>().is_ok_and(|a| a + LIMIT > SEARCH_CAP);
        if !past_cap {
            let next = json!({"since": format_rfc3339(since_us), "inclusive": inclusive, "after": next_after});
            return Ok((records, next));
        }
        let last = records.iter().filter_map(|r| self.modified_micros(r)).max();
        let next = match last {
            Some(t) if t > since_us || !inclusive => {
                debug!(stream = %self.stream, since = %format_rfc3339(t), "search cap reached: new query from the last modification time");
                json!({"since": format_rfc3339(t), "inclusive": true})
            }
            Some(t) => {
                warn!(stream = %self.stream, at = %format_rfc3339(t), cap = SEARCH_CAP,
                    "more records than the search cap share one modification time: continuing after it, some may be skipped");
                json!({"since": format_rfc3339(t), "inclusive": false})
            }
            None => {
                return Err(Error::permanent(format!(
                    "{}: the search page at the {SEARCH_CAP}-result cap has no readable `{}`",
                    resp.what, self.lastmod
                )))
            }
        };
        Ok((records, next))
    }

    /// A record's last modification time: the object-type property, else `updatedAt`.
    fn modified_micros(&self, record: &Json) -> Option<i64> {
        record
            .get("properties")
            .and_then(|p| p.get(self.lastmod))
            .and_then(watermark_micros)
            .or_else(|| record.get("updatedAt").and_then(watermark_micros))
    }
}

/// A time as microseconds: RFC 3339 text, or epoch milliseconds (number or digits).
fn watermark_micros(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok().map(|ms| ms * 1000)
        }
        Json::String(s) => parse_rfc3339(s),
        Json::Number(n) => n.as_i64().map(|ms| ms * 1000),
        _ => None,
    }
}

/// A JSON scalar as text (`after` tokens are strings, numbers tolerated).
fn as_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Move `results` out of a response body (absent or null: none).
fn take_results(body: &mut Json) -> Vec<Json> {
    match body.get_mut("results").map(Json::take) {
        Some(Json::Array(a)) => a,
        _ => Vec::new(),
    }
}

impl Source for HubSpotSource {
    fn total_records(&mut self, ctx: &ReadContext) -> Result<Option<u64>> {
        // bizon's body; an incremental run after a watermark counts only what it will read.
        let mut filters = vec![json!({"operator": "HAS_PROPERTY", "propertyName": "hs_object_id"})];
        if ctx.sync_mode == bizon_core::config::SyncMode::Incremental {
            if let Some(us) = ctx.watermark.as_ref().and_then(watermark_micros) {
                filters.push(
                    json!({"propertyName": self.lastmod, "operator": "GT", "value": us.div_euclid(1000).to_string()}),
                );
            }
        }
        let body = json!({"filterGroups": [{"filters": filters}]});
        let resp = self.client.send(&Request::post_json(self.search_url(), body))?;
        Ok(resp.json()?.get("total").and_then(Json::as_u64))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let incremental = ctx.sync_mode == bizon_core::config::SyncMode::Incremental;
        // The pagination says which endpoint it belongs to; a first call picks the search when
        // there is a watermark to read after.
        let start;
        let pagination = match (pagination, &ctx.watermark) {
            (Json::Null, Some(w)) if incremental && !w.is_null() => {
                start = json!({"since": w, "inclusive": false});
                &start
            }
            (p, _) => p,
        };
        let (records, next) = if pagination.get("since").is_some() {
            self.search_page(pagination)?
        } else {
            self.list_page(pagination, incremental)?
        };
        // The engine only finds top-level cursor fields; HubSpot nests the properties.
        let watermark = if incremental {
            records.iter().filter_map(|r| self.modified_micros(r)).max().map(|us| Json::String(format_rfc3339(us)))
        } else {
            None
        };
        let records: Vec<(String, Json)> = records
            .into_iter()
            .map(|r| {
                let id = r.get("id").and_then(as_text).unwrap_or_default();
                (id, r)
            })
            .collect();
        if records.iter().any(|(id, _)| id.is_empty()) {
            return Err(Error::permanent(format!("hubspot `{}`: a record without `id`", self.stream)));
        }
        let mut page = to_page(records, next);
        page.cursor_max = watermark;
        Ok(page)
    }
}
