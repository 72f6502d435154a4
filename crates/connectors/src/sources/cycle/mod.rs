//! `cycle` source: bizon's Cycle connector. The `customers` stream is one GraphQL query POSTed
//! to `{base_url}/graphql` with bizon's exact query text and its `slug` variable, 100 customers a
//! page; the next page's cursor goes into the query text (`where: {cursor: "…", direction:
//! AFTER}`), as bizon sends it, so the paging is done here over [`HttpClient::send`] rather than by
//! the engine's variable-based GraphQL paginator. Records are the edges' `node`s, id `node.id`.
//!
//! The pagination checkpointed is `{"cursor": endCursor}` (bizon keeps the whole `pageInfo`; a
//! resume from bizon's shape, `{"endCursor": …}`, is read too).

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
use crate::http::stream::to_page;
use crate::http::{self, HttpClient, HttpSettings, Request};
use crate::sources::http_keys;

#[cfg(test)]
pub(crate) mod tests;

/// bizon's streams.
pub const STREAMS: &[&str] = &["customers"];

/// The API root of bizon's `url_graphql` (`https://api.product.cycle.app/graphql`).
pub const BASE_URL: &str = "https://api.product.cycle.app";

fn default_base_url() -> String {
    BASE_URL.into()
}

/// bizon's query, `PAGINATION_STRING` standing for the pagination fragment (whitespace included:
/// the text sent is bizon's byte for byte).
const QUERY: &str = concat!(
    "\n",
    "        query Customers($slug: DefaultString!) {\n",
    "            getProductBySlug(slug: $slug) {\n",
    "                customers(pagination: {\n",
    "                    PAGINATION_STRING\n",
    "                }) {\n",
    "                    edges {\n",
    "                        cursor\n",
    "                        node {\n",
    "                            id\n",
    "                            email\n",
    "                            name\n",
    "                            company {\n",
    "                                domain\n",
    "                                id\n",
    "                                name\n",
    "                            }\n",
    "                        }\n",
    "                    }\n",
    "                    pageInfo {\n",
    "                        hasPreviousPage\n",
    "                        hasNextPage\n",
    "                        startCursor\n",
    "                        endCursor\n",
    "                    }\n",
    "                }\n",
    "            }\n",
    "        }\n",
    "        ",
);

/// bizon's first-page pagination fragment.
const FIRST_PAGE: &str = "\n            size: 100\n            ";

/// bizon's next-page fragment; `"PAGINATION_CURSOR"` stands for the quoted cursor.
const NEXT_PAGE: &str = concat!(
    "\n",
    "            size: 100\n",
    "            where: {\n",
    "                cursor: \"PAGINATION_CURSOR\"\n",
    "                direction: AFTER\n",
    "            }\n",
    "            ",
);

/// The query of the page after `cursor` (`None`: the first page). The cursor is written as a
/// quoted string literal with its `"` and `\` escaped (bizon pastes it raw); an opaque base64
/// cursor comes out exactly as bizon's text.
pub fn customers_query(cursor: Option<&str>) -> String {
    let fragment = match cursor {
        None => FIRST_PAGE.to_owned(),
        // A JSON string is a valid GraphQL string literal.
        Some(c) => NEXT_PAGE.replace("\"PAGINATION_CURSOR\"", &Json::String(c.to_owned()).to_string()),
    };
    QUERY.replace("PAGINATION_STRING", &fragment)
}

/// `source:` keys of `cycle` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CycleConfig {
    /// Slug of the Cycle product, sent as the query's `$slug` variable.
    pub slug: String,
    /// API root; queries are POSTed to `{base_url}/graphql`. Default: Cycle's API.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

impl SourceSpec for CycleConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.slug.trim().is_empty() {
            return Err(ConfigError::Empty { key: "slug" });
        }
        Ok(())
    }

    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed(CycleSource::new(self, common))
    }
}

/// bizon authenticates only with `api_key` (a token sent as `Authorization: Bearer <token>`) and
/// silently sends nothing for any other type, or crashes without `authentication`: here both
/// are parse errors. `bearer` sends the same header, so it is accepted too.
fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    let (c, auth) = http_keys::parse::<CycleConfig>(node, |c| &c.base_url)?;
    http_keys::require_token(node, c, auth, "cycle", "the Cycle API key", "an API key")
}

/// The `cycle` customers stream.
pub struct CycleSource {
    client: Arc<HttpClient>,
    url: String,
    slug: String,
}

impl CycleSource {
    pub fn new(config: &CycleConfig, common: &SourceCommon) -> Result<Self> {
        http_keys::check_stream("cycle", STREAMS, common)?;
        let client = http::client_for(common, HttpSettings::default())?;
        let url = format!("{}/graphql", config.base_url.trim_end_matches('/'));
        Ok(CycleSource { client, url, slug: config.slug.clone() })
    }
}

impl Source for CycleSource {
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        let cursor = pagination.get("cursor").or_else(|| pagination.get("endCursor")).and_then(Json::as_str);
        let body = json!({ "query": customers_query(cursor), "variables": { "slug": self.slug } });
        let resp = self.client.send(&Request::post_json(&self.url, body))?;
        let what = &resp.what;
        let data = resp.json()?;
        // bizon ignores `errors` and ends the stream on a missing product or list: a bad slug, an
        // expired key or a schema change would look like an empty stream.
        if let Some(errors) = data.get("errors").and_then(Json::as_array).filter(|e| !e.is_empty()) {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| e.get("message").and_then(Json::as_str).map_or_else(|| e.to_string(), str::to_owned))
                .collect();
            return Err(Error::permanent(format!(
                "{what}: the GraphQL API answered with errors: {}",
                self.client.redact(&messages.join("; "))
            )));
        }
        let product = data.pointer("/data/getProductBySlug").filter(|p| !p.is_null()).ok_or_else(|| {
            Error::config(format!("{what}: no Cycle product with slug `{}` (source.slug)", self.slug))
        })?;
        let customers = product
            .get("customers")
            .filter(|c| c.is_object())
            .ok_or_else(|| Error::permanent(format!("{what}: the answer has no `data.getProductBySlug.customers`")))?;
        let edges = customers.get("edges").and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
        let mut records = Vec::with_capacity(edges.len());
        for (i, edge) in edges.iter().enumerate() {
            let node = edge.get("node").cloned().unwrap_or_else(|| json!({}));
            let id = match node.get("id") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                _ => return Err(Error::permanent(format!("{what}: customer {i} of the page has no `node.id`"))),
            };
            records.push((id, node));
        }
        let info = customers.get("pageInfo");
        let more = info.and_then(|i| i.get("hasNextPage")).and_then(Json::as_bool).unwrap_or(false);
        let next = if !more {
            json!({})
        } else {
            match info.and_then(|i| i.get("endCursor")).and_then(Json::as_str) {
                Some(c) => json!({ "cursor": c }),
                // bizon would send the cursor "None"; stopping would silently drop the rest.
                None => {
                    return Err(Error::permanent(format!(
                        "{what}: `pageInfo.hasNextPage` is true without an `endCursor`"
                    )))
                }
            }
        };
        Ok(to_page(records, next))
    }
}

/// The `cycle` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "cycle",
    description: "Cycle customers over GraphQL (API key), cursor pages of 100",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<CycleConfig>,
    schema: <CycleConfig as schemars::JsonSchema>::json_schema,
    parse,
};
