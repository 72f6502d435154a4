//! `pokeapi` source: bizon's PokéAPI connector. One list endpoint per stream
//! (`{base_url}/{stream}`), paged by the `next` URL in each answer, records `$.results[*]`
//! (`{name, url}`) with id `name`. Runs on the shared HTTP engine ([`HttpStream`] with a next-URL
//! [`Paginator`]); the pagination it checkpoints keeps bizon's shape, `{"next": url}`.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Json, Page, ReadContext, Result, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::http::{self, Endpoint, HttpClient, HttpSettings, HttpStream, Paginator, Request};
use crate::sources::http_keys;

#[cfg(test)]
pub(crate) mod tests;

/// bizon's streams (`PokeAPIStreams`).
pub const STREAMS: &[&str] = &["pokemon", "berry", "item"];

/// bizon's `BASE_URL`.
pub const BASE_URL: &str = "https://pokeapi.co/api/v2";

fn default_base_url() -> String {
    BASE_URL.into()
}

/// `source:` keys of `pokeapi` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PokeApiConfig {
    /// API root; a stream is read from `{base_url}/{stream}`. Default: the public PokéAPI.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

impl SourceSpec for PokeApiConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        http::boxed(PokeApiSource::new(self, common))
    }
}

fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    let (c, _) = http_keys::parse::<PokeApiConfig>(node, |c| &c.base_url)?;
    Ok(Arc::new(c))
}

/// A `pokeapi` stream: the engine's next-URL stream, its pagination translated to bizon's.
pub struct PokeApiSource {
    inner: HttpStream,
    client: Arc<HttpClient>,
    url: String,
}

impl PokeApiSource {
    pub fn new(config: &PokeApiConfig, common: &SourceCommon) -> Result<Self> {
        http_keys::check_stream("pokeapi", STREAMS, common)?;
        let client = http::client_for(common, HttpSettings::default())?;
        let url = format!("{}/{}", config.base_url.trim_end_matches('/'), common.stream);
        let endpoint = Endpoint {
            records: Some("/results".into()),
            primary_key: Some("name".into()),
            paginator: Paginator::NextUrl { next_url_path: "/next".into() },
            ..Endpoint::get(url.clone())
        };
        Ok(PokeApiSource { inner: HttpStream::new(client.clone(), endpoint, None), client, url })
    }
}

impl Source for PokeApiSource {
    /// bizon's `get_total_records_count`: the list's `count`.
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        let body = self.client.send(&Request::get(&self.url))?.json()?;
        Ok(body.get("count").and_then(Json::as_u64))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        // bizon checkpoints `{"next": url}`; the engine's next-URL paginator reads `{"url": …}`.
        let state = match pagination.get("next") {
            Some(next) => json!({ "url": next }),
            None => pagination.clone(),
        };
        let mut page = self.inner.get(&state, ctx)?;
        if let Some(url) = page.next.get("url").cloned() {
            page.next = json!({ "next": url });
        }
        Ok(page)
    }
}

/// The `pokeapi` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "pokeapi",
    description: "PokéAPI lists (pokemon, berry, item), paged by next URL",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<PokeApiConfig>,
    schema: <PokeApiConfig as schemars::JsonSchema>::json_schema,
    parse,
};
