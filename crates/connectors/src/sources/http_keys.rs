//! Config parsing shared by the built-in HTTP sources (`pokeapi`, `gbif`, `cycle`): their own
//! keys beside the common ones, `authentication` checked, and the base-URL override key every
//! one of them has (default: the real API; tests and mirrors point it elsewhere) checked to be
//! an http(s) URL at parse time, located at its line, rather than failing at the first request.

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::SourceCommon;
use serde::de::DeserializeOwned;

use crate::descriptor::{own_keys, SourceSpec};
use crate::http::AuthSpec;
use std::sync::Arc;

/// Parse and validate a built-in HTTP source's keys; `base_url` picks its base-URL key's value.
pub fn parse<T: SourceSpec + DeserializeOwned + 'static>(
    node: &Node,
    base_url: fn(&T) -> &str,
) -> Result<(T, AuthSpec), yaml::Error> {
    let auth = AuthSpec::from_node(node.get("authentication"))?;
    let c: T = own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<T>())?;
    c.validate().map_err(|e| yaml::Error::new(e.to_string(), node.mark, "source"))?;
    let url = base_url(&c);
    if !url.starts_with("http://") && !url.starts_with("https://") {
        let at = node.get("base_url").unwrap_or(node);
        return Err(yaml::Error::new(
            format!("`base_url` must start with http:// or https://, got {url:?}"),
            at.mark,
            "source.base_url",
        ));
    }
    Ok((c, auth))
}

/// Fail unless `common.stream` is one of `streams` (the loader checks it too; a source built
/// directly is not loaded).
pub fn check_stream(source: &str, streams: &[&str], common: &SourceCommon) -> bizon_core::Result<()> {
    if streams.contains(&common.stream.as_str()) {
        return Ok(());
    }
    Err(bizon_core::Error::config(format!(
        "`{source}` has no stream `{}`; streams: {}",
        common.stream,
        streams.join(", ")
    )))
}

/// For a source that authenticates only with a token (`api_key`, or `bearer`, which sends the
/// same header): its spec, or a located error when `authentication` is missing (naming what
/// `token` must be) or of another type (naming what the source authenticates with).
pub fn require_token<T: SourceSpec + 'static>(
    node: &Node,
    spec: T,
    auth: AuthSpec,
    source: &str,
    token: &str,
    credential: &str,
) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    match auth {
        AuthSpec::Token { .. } => Ok(Arc::new(spec)),
        AuthSpec::None => Err(yaml::Error::new(
            format!("`{source}` needs `authentication` (type `api_key`, params `token`: {token})"),
            node.mark,
            "source.authentication",
        )),
        other => {
            let at = node.get("authentication").and_then(|a| a.get("type")).unwrap_or(node);
            Err(yaml::Error::new(
                format!(
                    "`{source}` authenticates with {credential}: authentication type `api_key` (or `bearer`), not `{}`",
                    other.kind_name()
                ),
                at.mark,
                "source.authentication.type",
            ))
        }
    }
}
