//! `rest` source: a declarative REST API in the YAML (dlt's rest_api, Airbyte's low-code): a
//! base URL, auth, headers, and streams with a path, method, params or body, a record selector,
//! a primary key, a paginator, an incremental parameter filled from the watermark, and parent →
//! child streams. Runs on the shared HTTP engine (`crate::http`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Json, Source};
use serde::Deserialize;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::http::stream::{IncrementalParam, ParentLink};
use crate::http::{self, AuthSpec, Endpoint, HttpSettings, HttpStream, Method, Paginator};

#[cfg(test)]
mod tests;

/// `source:` keys of `rest` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Prefix of every stream's `path` (`https://api.example.com/v1`).
    pub base_url: String,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The API's streams; `source.stream` picks the one to read.
    pub streams: Vec<RestStream>,
}

/// One stream of a `rest` source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestStream {
    pub name: String,
    /// Appended to `base_url` (or a full URL); `{field}` placeholders come from `parent.fields`.
    pub path: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub params: BTreeMap<String, Json>,
    /// JSON body (POST, GraphQL).
    #[serde(default)]
    pub body: Option<Json>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer to the records (`/data/items`); absent: the body is the array.
    #[serde(default)]
    pub records: Option<String>,
    /// Field (or JSON pointer) holding the record id: a string's text, any other value as the
    /// server wrote it (a number keeps every digit).
    #[serde(default)]
    pub primary_key: Option<String>,
    #[serde(default)]
    pub paginator: Paginator,
    #[serde(default)]
    pub incremental: Option<RestIncremental>,
    #[serde(default)]
    pub parent: Option<RestParent>,
}

/// `incremental:` of a stream: the request parameter that receives the watermark.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestIncremental {
    pub param: String,
    #[serde(default)]
    pub in_body: bool,
    /// Sent on a first run (no watermark yet).
    #[serde(default)]
    pub initial_value: Option<String>,
}

/// `parent:` of a child stream.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestParent {
    /// The parent stream's name.
    pub stream: String,
    /// Placeholder in this stream's path → field (or JSON pointer) of the parent record.
    pub fields: BTreeMap<String, String>,
}

/// The parsed `rest` source: the config and the stream `source.stream` picked.
#[derive(Debug, Clone)]
pub struct RestSpec {
    pub config: RestConfig,
    pub stream: String,
}

fn parse(node: &Node) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    AuthSpec::from_node(node.get("authentication"))?;
    let config: RestConfig =
        crate::descriptor::own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<RestConfig>())?;
    let at = |key: &str, i: Option<usize>| -> (&Node, String) {
        let streams = node.get("streams");
        match (streams, i) {
            (Some(s), Some(i)) => {
                let item = match &s.value {
                    yaml::Value::Seq(items) => items.get(i),
                    _ => None,
                };
                let n = item.and_then(|it| it.get(key)).or(item).unwrap_or(s);
                (n, format!("source.streams[{i}].{key}"))
            }
            _ => (node.get(key).unwrap_or(node), format!("source.{key}")),
        }
    };
    let fail = |msg: String, key: &str, i: Option<usize>| {
        let (n, path) = at(key, i);
        yaml::Error::new(msg, n.mark, &path)
    };
    if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
        return Err(fail(
            format!("`base_url` must start with http:// or https://, got {:?}", config.base_url),
            "base_url",
            None,
        ));
    }
    if config.streams.is_empty() {
        return Err(fail("`streams` needs at least one stream".into(), "streams", None));
    }
    let mut names = BTreeSet::new();
    for (i, s) in config.streams.iter().enumerate() {
        if !names.insert(s.name.as_str()) {
            return Err(fail(format!("stream `{}` is defined twice", s.name), "name", Some(i)));
        }
        if let Some(p) = &s.records {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(fail(
                    format!("`records` is a JSON pointer and starts with `/` (e.g. `/{p}`), got {p:?}"),
                    "records",
                    Some(i),
                ));
            }
        }
        if let Some(parent) = &s.parent {
            if parent.stream == s.name {
                return Err(fail(format!("stream `{}` cannot be its own parent", s.name), "parent", Some(i)));
            }
            let Some(p) = config.streams.iter().find(|p| p.name == parent.stream) else {
                let hint =
                    bizon_core::suggest::did_you_mean(&parent.stream, config.streams.iter().map(|s| s.name.as_str()));
                return Err(fail(format!("parent stream `{}` is not defined{hint}", parent.stream), "parent", Some(i)));
            };
            if p.parent.is_some() {
                return Err(fail(
                    format!("parent stream `{}` is itself a child: one level of nesting is supported", p.name),
                    "parent",
                    Some(i),
                ));
            }
            for name in parent.fields.keys() {
                if !s.path.contains(&format!("{{{name}}}")) {
                    return Err(fail(
                        format!("`parent.fields` names `{name}` but the path {:?} has no `{{{name}}}`", s.path),
                        "parent",
                        Some(i),
                    ));
                }
            }
        }
    }
    let stream: String = match node.get("stream") {
        Some(n) => from_node(n, "source.stream", &[])?,
        None => return Err(yaml::Error::new("missing key `stream`", node.mark, "source")),
    };
    if !names.contains(stream.as_str()) {
        let hint = bizon_core::suggest::did_you_mean(&stream, names.iter().copied());
        let list = names.iter().copied().collect::<Vec<_>>().join(", ");
        let n = node.get("stream").unwrap_or(node);
        return Err(yaml::Error::new(
            format!("`rest` source has no stream `{stream}`{hint} Streams defined under `source.streams`: {list}"),
            n.mark,
            "source.stream",
        ));
    }
    Ok(Arc::new(RestSpec { config, stream }))
}

impl RestConfig {
    fn endpoint(&self, s: &RestStream) -> Endpoint {
        let url = if s.path.starts_with("http://") || s.path.starts_with("https://") {
            s.path.clone()
        } else {
            format!("{}/{}", self.base_url.trim_end_matches('/'), s.path.trim_start_matches('/'))
        };
        let text = |v: &Json| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        Endpoint {
            method: s.method,
            url,
            params: s.params.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            headers: self.headers.iter().chain(&s.headers).map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: s.body.clone(),
            records: s.records.clone().filter(|r| !r.is_empty()),
            primary_key: s.primary_key.clone(),
            paginator: s.paginator.clone(),
            incremental: s.incremental.as_ref().map(|i| IncrementalParam {
                param: i.param.clone(),
                in_body: i.in_body,
                initial: i.initial_value.clone(),
            }),
        }
    }
}

impl SourceSpec for RestSpec {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed((|| {
            let client = http::client_for(common, HttpSettings::default())?;
            let s =
                self.config.streams.iter().find(|s| s.name == self.stream).ok_or_else(|| {
                    bizon_core::Error::config(format!("`rest` source has no stream `{}`", self.stream))
                })?;
            let parent = s.parent.as_ref().and_then(|p| {
                let ps = self.config.streams.iter().find(|x| x.name == p.stream)?;
                Some(ParentLink {
                    parent: self.config.endpoint(ps),
                    vars: p.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
            });
            Ok(HttpStream::new(client, self.config.endpoint(s), parent))
        })())
    }

    fn list_streams(&self) -> bizon_core::Result<Vec<String>> {
        Ok(self.config.streams.iter().map(|s| s.name.clone()).collect())
    }
}

/// The `rest` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "rest",
    description: "any REST API described in the YAML: paths, auth, pagination, incremental, parent → child streams",
    streams: &[],
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<RestConfig>,
    schema: <RestConfig as schemars::JsonSchema>::json_schema,
    parse,
};
