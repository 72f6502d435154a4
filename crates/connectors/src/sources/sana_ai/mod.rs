//! `sana_ai` source: a report of Sana's Insights API, bizon's names and record ids. The query
//! is submitted as a job (`POST {base}/reports/query`), the job is polled until it is
//! `successful` (bounded by `max_wait_seconds`), then its CSV (`data.link.url`) is downloaded
//! and handed to the engine in pages of `rows_per_page` rows, one record per row (header →
//! string value, id = 0-based row index). The job id is in every page's pagination, so a
//! resumed read re-downloads that job's report instead of running the query again.

mod csv;
mod source;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::Source;
use serde::Deserialize;

use crate::descriptor::{own_keys, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::http::{self, AuthSpec, HttpSettings};

pub use source::SanaSource;

pub const STREAMS: &[&str] = &["insight_report"];

fn default_poll_interval() -> f64 {
    3.0
}
fn default_max_wait() -> f64 {
    3600.0
}
fn default_rows_per_page() -> usize {
    5000
}

/// `source:` keys of `sana_ai` (beside the common ones; `authentication` is bizon's `oauth`
/// with `grant_type: client_credentials`, see the example).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SanaConfig {
    /// Insights SQL query (a widget's `</>` button in Sana copies it).
    pub query: String,
    /// The Sana instance: `acme` for https://acme.sana.ai.
    pub domain: String,
    /// API base URL instead of `https://{domain}.sana.ai/api/v1` (a proxy; tests).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Seconds between two polls of the report job (bizon: 3).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: f64,
    /// Fail when the report job has not finished after this many seconds (bizon waits forever).
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: f64,
    /// CSV rows per page; each page is checkpointed (bizon: the whole report in one page).
    #[serde(default = "default_rows_per_page")]
    pub rows_per_page: usize,
}

impl SanaConfig {
    /// `https://{domain}.sana.ai/api/v1`, or `base_url`.
    pub fn base(&self) -> String {
        match &self.base_url {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => format!("https://{}.sana.ai/api/v1", self.domain),
        }
    }
}

fn parse(node: &Node) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    AuthSpec::from_node(node.get("authentication"))?;
    let c: SanaConfig = own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<SanaConfig>())?;
    let fail = |key: &str, msg: String| {
        let at = node.get(key).unwrap_or(node);
        yaml::Error::new(msg, at.mark, &format!("source.{key}"))
    };
    if c.query.trim().is_empty() {
        return Err(fail("query", "`query` is empty".into()));
    }
    let label =
        |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'));
    if !label(&c.domain) {
        return Err(fail(
            "domain",
            format!(
                "`domain` is the instance name of https://<domain>.sana.ai (letters, digits, `-`, `_`, `.`), got {:?}",
                c.domain
            ),
        ));
    }
    if let Some(b) = &c.base_url {
        if !b.starts_with("http://") && !b.starts_with("https://") {
            return Err(fail("base_url", format!("`base_url` must start with http:// or https://, got {b:?}")));
        }
    }
    if !(c.poll_interval_seconds.is_finite() && c.poll_interval_seconds >= 0.0) {
        return Err(fail("poll_interval_seconds", "`poll_interval_seconds` must be a number ≥ 0".into()));
    }
    if !(c.max_wait_seconds.is_finite() && c.max_wait_seconds > 0.0) {
        return Err(fail("max_wait_seconds", "`max_wait_seconds` must be a number > 0".into()));
    }
    if c.rows_per_page == 0 {
        return Err(fail("rows_per_page", "`rows_per_page` must be at least 1".into()));
    }
    Ok(Arc::new(c))
}

impl SourceSpec for SanaConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed((|| {
            let client = http::client_for(common, HttpSettings::default())?;
            let settings = client.settings().clone();
            Ok(SanaSource::new(client, settings, self.clone()))
        })())
    }
}

/// The `sana_ai` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "sana_ai",
    description: "Sana Insights API: a report query run as a job, its CSV read in pages",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<SanaConfig>,
    schema: <SanaConfig as schemars::JsonSchema>::json_schema,
    parse,
};
