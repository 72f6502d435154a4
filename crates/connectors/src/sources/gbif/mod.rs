//! `gbif` source: bizon's GBIF connector. The `occurrence` stream pages
//! `{base_url}/occurrence/search` by `limit`/`offset` until `endOfRecords` or `max_records`
//! (GBIF refuses to page past offset 100,000). Runs on the shared HTTP engine: an offset
//! [`HttpStream`], so `source.http.concurrency` fetches that many pages at once and hands them
//! over in order. The pagination it checkpoints is bizon's, `{"offset": n}`; record ids are
//! bizon's `key`, else `gbifID`, else `{offset}_{i}`.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Json, Page, ReadContext, RecordBatch, Result, Source};
use serde::Deserialize;
use tracing::warn;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
use crate::http::{self, Endpoint, HttpClient, HttpSettings, HttpStream, Paginator, Request};
use crate::sources::http_keys;

#[cfg(test)]
pub(crate) mod tests;

/// bizon's streams (`GBIFStreams`).
pub const STREAMS: &[&str] = &["occurrence"];

/// bizon's `BASE_URL`.
pub const BASE_URL: &str = "https://api.gbif.org/v1";

/// GBIF refuses deep paging beyond this offset on the search endpoint (bizon's `GBIF_MAX_OFFSET`).
pub const MAX_OFFSET: u64 = 100_000;

/// The search endpoint's largest page (bizon's `GBIF_MAX_PAGE_LIMIT`).
pub const MAX_PAGE_LIMIT: u64 = 300;

fn default_base_url() -> String {
    BASE_URL.into()
}

fn default_page_limit() -> u64 {
    MAX_PAGE_LIMIT
}

/// `source:` keys of `gbif` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GbifConfig {
    /// Records per request; GBIF accepts at most 300, so a larger value is capped (as bizon).
    #[serde(default = "default_page_limit")]
    pub page_limit: u64,
    /// Stop after this many records; absent or null: 100000, GBIF's deep-paging limit, which also
    /// caps a larger value (as bizon).
    #[serde(default)]
    pub max_records: Option<u64>,
    /// API root; the stream is read from `{base_url}/{stream}/search`. Default: the public GBIF API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

impl GbifConfig {
    /// bizon's `_page_limit`.
    pub fn effective_page_limit(&self) -> u64 {
        self.page_limit.min(MAX_PAGE_LIMIT)
    }

    /// bizon's `_max_records`.
    pub fn effective_max_records(&self) -> u64 {
        self.max_records.unwrap_or(MAX_OFFSET).min(MAX_OFFSET)
    }
}

impl SourceSpec for GbifConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        // bizon loops forever on `page_limit: 0` and reads 100000 records for `max_records: 0`.
        if self.page_limit == 0 {
            return Err(ConfigError::AtLeastOne { key: "page_limit" });
        }
        if self.max_records == Some(0) {
            return Err(ConfigError::AtLeastOne { key: "max_records" });
        }
        Ok(())
    }

    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed(GbifSource::new(self, common))
    }
}

fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    let (c, _) = http_keys::parse::<GbifConfig>(node, |c| &c.base_url)?;
    Ok(Arc::new(c))
}

/// The `gbif` occurrence stream.
pub struct GbifSource {
    inner: HttpStream,
    client: Arc<HttpClient>,
    url: String,
    max_records: u64,
}

impl GbifSource {
    pub fn new(config: &GbifConfig, common: &SourceCommon) -> Result<Self> {
        http_keys::check_stream("gbif", STREAMS, common)?;
        let (limit, max_records) = (config.effective_page_limit(), config.effective_max_records());
        if limit < config.page_limit {
            warn!(page_limit = config.page_limit, used = limit, "gbif: page_limit above the API's maximum; capped");
        }
        if config.max_records.is_some_and(|m| m > max_records) {
            warn!(
                max_records = config.max_records,
                used = max_records,
                "gbif: max_records above GBIF's paging limit; capped"
            );
        }
        let client = http::client_for(common, HttpSettings::default())?;
        let url = format!("{}/{}/search", config.base_url.trim_end_matches('/'), common.stream);
        let endpoint = Endpoint {
            records: Some("/results".into()),
            primary_key: Some("key".into()),
            paginator: Paginator::Offset {
                limit,
                limit_param: "limit".into(),
                offset_param: "offset".into(),
                start: 0,
                total_path: None,
                end_path: Some("/endOfRecords".into()),
                max_records: Some(max_records),
            },
            ..Endpoint::get(url.clone())
        };
        Ok(GbifSource { inner: HttpStream::new(client.clone(), endpoint, None), client, url, max_records })
    }
}

impl Source for GbifSource {
    /// bizon's `get_total_records_count` (`count` of a `limit=0` search), capped at what one run
    /// reads.
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        let body = self.client.send(&Request::get(&self.url).query("limit", 0))?.json()?;
        Ok(body.get("count").and_then(Json::as_u64).map(|c| c.min(self.max_records)))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let offset = pagination.get("offset").and_then(Json::as_u64).unwrap_or(0);
        let page = self.inner.get(pagination, ctx)?;
        Ok(bizon_ids(page, offset))
    }
}

/// The engine ids a record by `key` (else `{offset}_{i}`); bizon's id is
/// `str(record.get("key") or record.get("gbifID") or f"{offset}_{i}")`. They differ only where
/// `key` is absent or falsy in Python's sense: those few records are re-read and re-ided; a page
/// with none is returned as it is.
fn bizon_ids(mut page: Page, offset: u64) -> Page {
    let fallback =
        |i: usize, id: &str| id.split_once('_').is_some_and(|(o, n)| o.parse() == Ok(offset) && n.parse() == Ok(i));
    let suspect = |i: usize, id: &str| matches!(id, "" | "0" | "false") || fallback(i, id);
    if !page.records.iter().enumerate().any(|(i, r)| suspect(i, r.id)) {
        return page;
    }
    let mut batch = RecordBatch::with_capacity(page.records.len(), page.records.byte_len());
    for (i, r) in page.records.iter().enumerate() {
        let id = if suspect(i, r.id) {
            let data: Json = serde_json::from_slice(r.data).unwrap_or(Json::Null);
            let id = [data.get("key"), data.get("gbifID")].into_iter().flatten().find(|v| truthy(v));
            id.map_or_else(|| format!("{offset}_{i}"), python_str)
        } else {
            r.id.to_owned()
        };
        batch.push(&id, r.timestamp, r.data);
    }
    page.records = batch;
    page
}

/// Python's truth value of a JSON value.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// Python's `str()` of the scalar ids GBIF sends.
fn python_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "True".into(),
        other => other.to_string(),
    }
}

/// The `gbif` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "gbif",
    description: "GBIF occurrence search, offset pages (concurrent with source.http.concurrency)",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<GbifConfig>,
    schema: <GbifConfig as schemars::JsonSchema>::json_schema,
    parse,
};
