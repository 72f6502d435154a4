//! `hubspot` source: HubSpot CRM objects (bizon's `hubspot`, streams `contacts`, `companies`,
//! `deals`) read over the CRM v3 API on the shared HTTP engine (`crate::http`). One record per
//! CRM object; its id is the object's `id` and its data the object as HubSpot returns it
//! (`{id, properties, createdAt, updatedAt, archived}`), exactly as bizon writes it.
//!
//! ## Requests
//! - properties: `GET {base_url}/crm/v3/properties/{stream}` → `results[].name`, fetched once per
//!   run at the first read (not at build: building does no I/O). `properties.strategy: all`
//!   reads every property; `selected` reads `selected_properties`, each checked to exist (a
//!   config error lists the unknown ones with a did-you-mean).
//! - full refresh: `GET {base_url}/crm/v3/objects/{stream}?limit=100&properties=a,b,c[&after=…]`,
//!   paged by `paging.next.after` (pagination `{"link", "after"}` as bizon). The last page has
//!   no `paging.next`.
//! - total (progress): `POST {base_url}/crm/v3/objects/{stream}/search` with bizon's
//!   `HAS_PROPERTY hs_object_id` filter → `total`.
//!
//! ## Auth
//! `api_key` sends `Authorization: Bearer <token>` (a private app token). `oauth` uses the
//! `refresh_token` grant against `{base_url}/oauth/v1/token` unless `token_refresh_endpoint` is
//! set (bizon hard-codes HubSpot's endpoint and ignores a configured one). Other types are a
//! config error at parse time.
//!
//! ## Incremental (new in bizon-rs; bizon 0.6.4 accepts `sync_mode: incremental` but reads
//! everything every run)
//! `cursor_field` is one of `hs_lastmodifieddate`, `lastmodifieddate` or `updatedAt`: they all
//! name the object's last modification time, which the CRM search API filters and sorts by
//! through one property per object type: **contacts `lastmodifieddate`, companies and deals
//! `hs_lastmodifieddate`** (HubSpot's CRM search guide; `updatedAt` is the same instant at the
//! top level of a record). Whatever name is configured, the source filters on the object's
//! property and asks for it in every read.
//!
//! - First run (no watermark): the list endpoint above, which has no result cap.
//! - Later runs: `POST …/search` with `{propertyName: <prop>, operator: GT, value: <watermark
//!   in epoch ms>}`, sorted ascending by that property, `limit` 100, paged by `after`. Records
//!   have the list's shape. HubSpot's search pages through at most 10,000 results per query: when
//!   the next `after` would pass that, the source starts a new query from the last modification
//!   time it read (`GTE`), a keyset continuation; the records at exactly that instant are read
//!   twice (at least once, never lost). Pagination `{"since", "inclusive", "after"}`.
//! - The watermark: the engine takes the max of `cursor_field` over the top-level keys of each
//!   record, but HubSpot nests the properties (`properties.hs_lastmodifieddate`), so this source
//!   sets `Page::cursor_max` itself: the max modification time of the page as
//!   `2024-01-01T00:00:00.123000+00:00` (fixed width, so it orders as text; HubSpot may drop
//!   zero milliseconds, which would not).

mod source;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, struct_fields, Node, Value};
use bizon_core::config::{AuthConfig, AuthType, SourceCommon, SyncMode};
use bizon_core::{Json, Source};
use serde::Deserialize;

use crate::descriptor::{own_keys, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::http::{self, Auth, AuthSpec, HttpClient, HttpSettings};
pub use source::HubSpotSource;

/// bizon's `URL_BASE`.
pub const BASE_URL: &str = "https://api.hubapi.com";
pub const STREAMS: &[&str] = &["contacts", "companies", "deals"];
/// The `cursor_field` values accepted in incremental mode (all the last modification time).
pub const CURSOR_FIELDS: &[&str] = &["hs_lastmodifieddate", "lastmodifieddate", "updatedAt"];
/// The authentication types HubSpot accepts.
const AUTH_TYPES: &str = "`api_key` (a private app token) or `oauth` (refresh_token grant)";

fn default_base_url() -> String {
    BASE_URL.into()
}

/// `source:` keys of `hubspot` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    /// API root; the default OAuth token endpoint is `{base_url}/oauth/v1/token`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Which properties each record carries (bizon's `properties`).
    #[serde(default)]
    pub properties: PropertiesConfig,
}

/// `properties:` (bizon's `PropertiesConfig`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertiesConfig {
    /// `all` (every property of the object type) or `selected`.
    #[serde(default)]
    pub strategy: PropertiesStrategy,
    /// The properties read with `strategy: selected`; each must exist on the object type.
    #[serde(default)]
    pub selected_properties: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PropertiesStrategy {
    #[default]
    All,
    Selected,
}

/// The property holding an object type's last modification time in the CRM search API.
pub fn lastmodified_property(stream: &str) -> &'static str {
    match stream {
        "contacts" => "lastmodifieddate",
        _ => "hs_lastmodifieddate",
    }
}

fn scalar(text: &str, mark: yaml::Mark) -> Node {
    Node::new(Value::Scalar { text: text.into(), plain: false }, mark)
}

/// The `authentication:` node with `params.token_refresh_endpoint` defaulted for `oauth`.
fn auth_node_with_default(auth: &Node, base_url: &str) -> Node {
    let mut auth = auth.clone();
    if auth.get("type").and_then(Node::as_str) != Some("oauth") {
        return auth;
    }
    if let Value::Map(entries) = &mut auth.value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("params") && v.get("token_refresh_endpoint").is_none() {
                if let Value::Map(params) = &mut v.value {
                    let mark = v.mark;
                    params.push((scalar("token_refresh_endpoint", mark), scalar(&token_endpoint(base_url), mark)));
                }
            }
        }
    }
    auth
}

/// HubSpot's OAuth token endpoint under `base_url`.
pub fn token_endpoint(base_url: &str) -> String {
    format!("{}/oauth/v1/token", base_url.trim_end_matches('/'))
}

fn parse(node: &Node) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    let config: HubSpotConfig =
        own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<HubSpotConfig>())?;
    let at = |key: &str| node.get(key).unwrap_or(node);
    if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
        return Err(yaml::Error::new(
            format!("`base_url` must start with http:// or https://, got {:?}", config.base_url),
            at("base_url").mark,
            "source.base_url",
        ));
    }

    // Authentication: required, `api_key` or `oauth` only.
    let Some(auth) = node.get("authentication") else {
        return Err(yaml::Error::new(
            format!("`hubspot` needs `authentication`: type {AUTH_TYPES}"),
            node.mark,
            "source.authentication",
        ));
    };
    if let Some(t) = auth.get("type") {
        let kind: AuthType = from_node(t, "source.authentication.type", &[])?;
        if !matches!(kind, AuthType::ApiKey | AuthType::Oauth) {
            return Err(yaml::Error::new(
                format!(
                    "`hubspot` does not support authentication type `{}`: use {AUTH_TYPES}",
                    t.as_str().unwrap_or("?")
                ),
                t.mark,
                "source.authentication.type",
            ));
        }
    }
    AuthSpec::from_node(Some(&auth_node_with_default(auth, &config.base_url)))?;

    // Properties.
    let props = &config.properties;
    if props.strategy == PropertiesStrategy::Selected && props.selected_properties.as_ref().is_none_or(Vec::is_empty) {
        let n = node.get("properties").unwrap_or(node);
        return Err(yaml::Error::new(
            "`properties.strategy: selected` needs a non-empty `selected_properties` list",
            n.mark,
            "source.properties",
        ));
    }

    // Incremental: the cursor field must name the last modification time.
    let incremental = node.get("sync_mode").and_then(Node::as_str) == Some("incremental");
    if let (true, Some(cf)) = (incremental, node.get("cursor_field")) {
        let name = cf.as_str().unwrap_or_default();
        if !CURSOR_FIELDS.contains(&name) {
            let hint = bizon_core::suggest::did_you_mean(name, CURSOR_FIELDS.iter().copied());
            return Err(yaml::Error::new(
                format!(
                    "`hubspot` reads incrementally by last modification time: `cursor_field` is one of {}, got `{name}`{hint}",
                    CURSOR_FIELDS.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                ),
                cf.mark,
                "source.cursor_field",
            ));
        }
    }
    Ok(Arc::new(config))
}

impl HubSpotConfig {
    /// The client: `source.http` over HubSpot's defaults, and the auth with the default OAuth
    /// token endpoint filled in.
    fn client(&self, common: &SourceCommon) -> bizon_core::Result<Arc<HttpClient>> {
        // bizon's HubSpot session: up to 30 status retries with a 1 s backoff factor.
        let defaults = HttpSettings { max_retries: 30, backoff_factor: 1.0, ..HttpSettings::default() };
        let settings = HttpSettings::from_config(common.http.as_ref(), defaults);
        let auth = common.authentication.as_ref().map(|a| {
            let mut a: AuthConfig = a.clone();
            if a.kind == AuthType::Oauth {
                if let Some(Json::Object(p)) = &mut a.params {
                    p.entry("token_refresh_endpoint").or_insert_with(|| Json::String(token_endpoint(&self.base_url)));
                }
            }
            a
        });
        let spec = AuthSpec::from_config(auth.as_ref())?;
        Ok(Arc::new(HttpClient::new(settings, Auth::new(spec))))
    }
}

impl SourceSpec for HubSpotConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed(self.client(common).map(|client| HubSpotSource::new(client, self, &common.stream)))
    }
}

/// The `hubspot` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "hubspot",
    description: "HubSpot CRM objects (v3 API): full refresh, or incremental by last modification time",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<HubSpotConfig>,
    schema: <HubSpotConfig as schemars::JsonSchema>::json_schema,
    parse,
};
