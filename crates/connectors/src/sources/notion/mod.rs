//! `notion` source: bizon's Notion connector over Notion's REST API (version 2025-09-03, the
//! data-sources API), with bizon's keys, streams and record shapes.
//!
//! Streams: `users`, `databases`, `data_sources`, `pages`, `blocks`, `blocks_markdown` (the
//! configured `database_ids` / `page_ids`) and `all_pages`, `all_databases`, `all_data_sources`,
//! `all_blocks_markdown` (everything shared with the integration, through the search API).
//! Blocks carry bizon's lineage fields (`parent_block_id`, `parent_input_database_id`,
//! `parent_input_page_id`, `source_page_id`, `depth`, `block_order`, `page_order`); markdown
//! records are bizon's (`block_id`, `block_type`, `markdown`, the lineage, `block_raw`).
//!
//! Stronger than bizon's:
//! - the block-tree walk is the checkpointed pagination: its frontier (the blocks fetched and not
//!   yet written, the children cursors, the pages still to walk) is the source cursor, one Notion
//!   request per iteration, so a killed run resumes at the first uncommitted request instead of
//!   re-reading every page of the batch;
//! - requests stay within Notion's rate limit (3 per second by default, `source.http.rate_limit`)
//!   instead of bursting into 429s, and a 429's `Retry-After` is honoured;
//! - a failure to read a configured object fails the run (bizon logs it and loses its records);
//!   only objects that are gone or not shared (404) are skipped, with a warning naming them;
//! - incremental `pages` / `blocks` / `blocks_markdown` use the data-source query with the
//!   `last_edited_time` filter AND `database_filters` (the same scope as their full read; bizon's
//!   `pages` / `blocks` search the whole workspace), and the watermark is the largest
//!   `last_edited_time` of the pages read (bizon: the start time of its last run).

mod markdown;
mod source;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Json, Source};
use serde::Deserialize;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
use crate::sources::http_keys;
pub use markdown::{block as block_markdown, rich_text};
pub use source::NotionSource;

/// bizon's streams.
pub const STREAMS: &[&str] = &[
    "databases",
    "data_sources",
    "pages",
    "blocks",
    "blocks_markdown",
    "users",
    "all_pages",
    "all_databases",
    "all_data_sources",
    "all_blocks_markdown",
];

/// Notion's API root.
pub const BASE_URL: &str = "https://api.notion.com/v1";

/// The `Notion-Version` bizon 0.6.4 sends (the data-sources API).
pub const NOTION_VERSION: &str = "2025-09-03";

/// Notion's documented average rate limit per integration (requests per second).
pub const RATE_LIMIT: f64 = 3.0;

fn yes() -> bool {
    true
}
fn five() -> u32 {
    5
}
fn hundred() -> u32 {
    100
}
fn three() -> u32 {
    3
}
fn base_url() -> String {
    BASE_URL.into()
}

/// `source:` keys of `notion` (beside the common ones), bizon's with bizon's defaults.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotionConfig {
    /// Databases to read (`databases`, `data_sources`, `pages`, `blocks`, `blocks_markdown`).
    #[serde(default)]
    pub database_ids: Vec<String>,
    /// Pages to read (`pages`, `blocks`, `blocks_markdown`).
    #[serde(default)]
    pub page_ids: Vec<String>,
    /// Walk nested blocks (and, in `blocks`, the pages of inline databases).
    #[serde(default = "yes")]
    pub fetch_blocks_recursively: bool,
    /// Deepest level walked (1–100; the page's own blocks are level 0).
    #[serde(default = "five")]
    pub max_recursion_depth: u32,
    /// Results per request (1–100).
    #[serde(default = "hundred")]
    pub page_size: u32,
    /// Requests in flight at once (1–10); the rate limit bounds the request rate.
    #[serde(default = "three")]
    pub max_workers: u32,
    /// Database id → a Notion filter object, sent with that database's data-source queries
    /// (AND-ed with the incremental `last_edited_time` filter).
    #[serde(default)]
    pub database_filters: BTreeMap<String, Json>,
    /// Notion's API root (default Notion's; tests point it at a local server).
    #[serde(default = "base_url")]
    pub base_url: String,
}

impl SourceSpec for NotionConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        let range = |key: &'static str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid { key, message: format!("{v} is not between {lo} and {hi}") })
            }
        };
        range("max_recursion_depth", self.max_recursion_depth, 1, 100)?;
        range("page_size", self.page_size, 1, 100)?;
        range("max_workers", self.max_workers, 1, 10)?;
        for (id, filter) in &self.database_filters {
            if !filter.is_object() {
                return Err(ConfigError::Invalid {
                    key: "database_filters",
                    message: format!("the filter of database `{id}` is not a Notion filter object: {filter}"),
                });
            }
        }
        for (key, ids) in [("database_ids", &self.database_ids), ("page_ids", &self.page_ids)] {
            if let Some(bad) = ids.iter().find(|id| id.trim().is_empty() || id.contains('/')) {
                return Err(ConfigError::Invalid { key, message: format!("{bad:?} is not a Notion id") });
            }
        }
        Ok(())
    }

    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        crate::http::boxed(NotionSource::new(self, common))
    }
}

/// Notion authenticates with the integration's token: bizon's `api_key` or `bearer` (both send
/// `Authorization: Bearer <token>`). Anything else, or none, is refused at parse time.
fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    let (c, auth) = http_keys::parse::<NotionConfig>(node, |c| &c.base_url)?;
    http_keys::require_token(node, c, auth, "notion", "the integration's secret", "the integration's token")
}

/// The `notion` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "notion",
    description:
        "Notion users, databases, data sources, pages and blocks (as Markdown too), incremental on last_edited_time",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<NotionConfig>,
    schema: <NotionConfig as schemars::JsonSchema>::json_schema,
    parse,
};
