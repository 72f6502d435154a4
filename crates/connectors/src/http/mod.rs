//! The HTTP engine every HTTP source is built on: a pooled client with retries, throttles and
//! redaction ([`client`]), bizon's auth types ([`auth`]), pagination styles ([`paginate`]) and
//! a page reader with concurrent fetching and parent → child streams ([`stream`]). Sources
//! (`rest`, `pokeapi`, `gbif`, `hubspot`, …) describe their requests; the engine here sends them.

pub mod auth;
pub mod body;
pub mod client;
#[cfg(test)]
pub mod conformance;
pub mod limit;
pub mod paginate;
pub mod redact;
pub mod settings;
pub mod stream;
#[cfg(test)]
pub mod testing;

use std::sync::Arc;

use bizon_core::config::yaml::{self, Node};
use bizon_core::config::SourceCommon;
use bizon_core::Result;
use serde::de::DeserializeOwned;

use crate::descriptor::{parse_source, SourceSpec};
pub use auth::{Auth, AuthSpec};
pub use client::{HttpClient, Method, Request, Response};
pub use paginate::Paginator;
pub use settings::HttpSettings;
pub use stream::{Endpoint, HttpStream};

/// `parse_source` for HTTP sources: also checks `authentication` (types and keys, located).
pub fn parse_http_source<T: SourceSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    AuthSpec::from_node(node.get("authentication"))?;
    parse_source::<T>(node)
}

/// The client of a source: `source.http` over the connector's defaults, and its auth.
pub fn client_for(common: &SourceCommon, defaults: HttpSettings) -> Result<Arc<HttpClient>> {
    let settings = HttpSettings::from_config(common.http.as_ref(), defaults);
    let auth = Auth::new(AuthSpec::from_config(common.authentication.as_ref())?);
    Ok(Arc::new(HttpClient::new(settings, auth)))
}

/// A source whose build failed: every read returns the error (builds cannot fail; parse already
/// validated what can be checked without I/O, so this is only reached on an inconsistent config).
pub struct BrokenSource(pub bizon_core::Error);

impl bizon_core::Source for BrokenSource {
    fn get(&mut self, _: &bizon_core::Json, _: &bizon_core::ReadContext) -> Result<bizon_core::Page> {
        Err(bizon_core::Error::new(self.0.kind(), self.0.message()))
    }
}

/// Box a built source, or the build error as a [`BrokenSource`].
pub fn boxed<S: bizon_core::Source + 'static>(built: Result<S>) -> Box<dyn bizon_core::Source> {
    match built {
        Ok(s) => Box::new(s),
        Err(e) => Box::new(BrokenSource(e)),
    }
}
