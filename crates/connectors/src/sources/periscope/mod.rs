//! `periscope` source: Periscope Data's (Sisense for Cloud Data Teams) browser endpoints, as
//! bizon reads them with a logged-in session's cookies and CSRF token. Streams `dashboards`,
//! `dashboards_metadata`, `databases`, `users`, `views` (one page each) and `charts` (the
//! widgets of every dashboard, ten dashboards per page, fetched concurrently). Record id = the
//! record's `id`.

mod charts;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Error, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{own_keys, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::http::auth::CookiesParams;
use crate::http::{self, Auth, AuthSpec, Endpoint, HttpClient, HttpSettings, HttpStream, Method};

pub use charts::ChartsSource;

pub const STREAMS: &[&str] = &["charts", "dashboards_metadata", "dashboards", "databases", "users", "views"];

/// bizon's `BASE_URL`.
pub const BASE_URL: &str = "https://app.periscopedata.com";

/// The cookies bizon's `PeriscopeCookies` takes, and the cookie each becomes.
const COOKIES: &[(&str, &str)] = &[("cf_bm", "__cf_bm"), ("periscope_session", "periscope_session")];

/// bizon's fixed browser headers (without `x-csrf-token`, which comes from the config).
const HEADERS: &[(&str, &str)] = &[
    ("authority", "app.periscopedata.com"),
    ("accept", "application/json, text/javascript, */*; q=0.01"),
    ("accept-language", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
    ("sec-ch-ua", "\"Chromium\";v=\"118\", \"Google Chrome\";v=\"118\", \"Not=A?Brand\";v=\"99\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"macOS\""),
    ("sec-fetch-dest", "empty"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-site", "same-origin"),
    (
        "user-agent",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
    ),
    ("x-requested-with", "XMLHttpRequest"),
];

fn default_base_url() -> String {
    BASE_URL.into()
}

/// `source:` keys of `periscope` (beside the common ones; `authentication` is `type: cookies`
/// with `params.cookies.cf_bm` and `params.cookies.periscope_session`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriscopeConfig {
    /// Name of the workspace (bizon requires it; no request uses it).
    pub workspace_name: String,
    /// The site (`client_site_id` of every request).
    pub client_site_id: i64,
    /// `charts` keeps the widgets of this database only.
    pub database_id: i64,
    /// CSRF token of the browser session (its `x-csrf-token` request header).
    pub x_csrf_token: String,
    /// API base URL (a proxy; tests).
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn parse(node: &Node) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    AuthSpec::from_node(node.get("authentication"))?;
    check_auth(node)?;
    if node.get("x_csrf_token").is_none() {
        return Err(yaml::Error::new(
            "missing key `x_csrf_token`: the CSRF token of the logged-in Periscope session (the `x-csrf-token` \
             header its requests send). bizon requires it too, though its example configs omit it",
            node.mark,
            "source",
        ));
    }
    let c: PeriscopeConfig =
        own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<PeriscopeConfig>())?;
    let fail = |key: &str, msg: String| {
        let at = node.get(key).unwrap_or(node);
        yaml::Error::new(msg, at.mark, &format!("source.{key}"))
    };
    if c.x_csrf_token.trim().is_empty() {
        return Err(fail("x_csrf_token", "`x_csrf_token` is empty".into()));
    }
    if !c.base_url.starts_with("http://") && !c.base_url.starts_with("https://") {
        return Err(fail("base_url", format!("`base_url` must start with http:// or https://, got {:?}", c.base_url)));
    }
    Ok(Arc::new(c))
}

/// Periscope's auth: `type: cookies` with exactly bizon's two cookies (located errors).
fn check_auth(node: &Node) -> Result<(), yaml::Error> {
    let need = "periscope needs `authentication: {type: cookies, params: {cookies: {cf_bm: …, periscope_session: …}}}`";
    let Some(auth) = node.get("authentication") else {
        return Err(yaml::Error::new(format!("missing key `authentication`: {need}"), node.mark, "source"));
    };
    // `AuthSpec::from_node` has checked that `type` and `params` are there and well-formed.
    let kind = auth.get("type").unwrap_or(auth);
    if kind.as_str() != Some("cookies") {
        return Err(yaml::Error::new(
            format!("authentication type `{}` is not supported: {need}", kind.as_str().unwrap_or("?")),
            kind.mark,
            "source.authentication.type",
        ));
    }
    let params = auth.get("params").unwrap_or(auth);
    let cookies = params.get("cookies").unwrap_or(params);
    for (k, _) in cookies.entries() {
        let name = k.as_str().unwrap_or_default();
        if !COOKIES.iter().any(|(c, _)| *c == name) {
            let hint = bizon_core::suggest::did_you_mean(name, COOKIES.iter().map(|(c, _)| *c));
            return Err(yaml::Error::new(
                format!("unknown cookie `{name}`{hint} Periscope's cookies: `cf_bm`, `periscope_session`"),
                k.mark,
                &format!("source.authentication.params.cookies.{name}"),
            ));
        }
    }
    for (c, _) in COOKIES {
        match cookies.get(c).and_then(Node::as_str) {
            Some(v) if !v.is_empty() => {}
            _ => {
                return Err(yaml::Error::new(
                    format!("missing cookie `{c}`: {need}"),
                    cookies.mark,
                    "source.authentication.params.cookies",
                ))
            }
        }
    }
    Ok(())
}

impl PeriscopeConfig {
    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// The client: cookies renamed as bizon does (`cf_bm` → `__cf_bm`), bizon's headers with
    /// the CSRF token (any `params.headers` of the config override them by name), bizon's
    /// policy with 10 requests at once (the charts batch).
    fn client(&self, common: &SourceCommon) -> bizon_core::Result<Arc<HttpClient>> {
        let AuthSpec::Cookies(p) = AuthSpec::from_config(common.authentication.as_ref())? else {
            return Err(Error::config("periscope needs authentication type `cookies`"));
        };
        let mut cookies = BTreeMap::new();
        for (key, cookie) in COOKIES {
            let v = p.cookies.get(*key).ok_or_else(|| Error::config(format!("periscope: missing cookie `{key}`")))?;
            cookies.insert((*cookie).to_owned(), v.clone());
        }
        let mut headers: BTreeMap<String, String> =
            HEADERS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        headers.insert("x-csrf-token".into(), self.x_csrf_token.clone());
        for (k, v) in &p.headers {
            headers.insert(k.to_ascii_lowercase(), v.clone());
        }
        let defaults = HttpSettings { concurrency: 10, ..HttpSettings::default() };
        let settings = HttpSettings::from_config(common.http.as_ref(), defaults);
        let client = HttpClient::new(settings, Auth::new(AuthSpec::Cookies(CookiesParams { cookies, headers })));
        // The engine masks cookie values; the CSRF token is a credential too.
        client.redactor().add(&self.x_csrf_token);
        Ok(Arc::new(client))
    }

    /// `GET {base}{path}?client_site_id=…` with the records at `records`.
    fn get(&self, path: &str, records: Option<&str>) -> Endpoint {
        let mut e = Endpoint::get(format!("{}{path}", self.base()));
        e.params = vec![("client_site_id".into(), self.client_site_id.to_string())];
        e.records = records.map(str::to_owned);
        e.primary_key = Some("id".into());
        e
    }

    /// The single-page endpoint of a stream (`charts` reads `dashboards` first).
    fn endpoint(&self, stream: &str) -> Option<Endpoint> {
        Some(match stream {
            "dashboards" | "charts" => self.get("/login_state/dashboards", Some("/Dashboard")),
            "views" => self.get("/login_state/sql_views", Some("/SqlView")),
            "users" => self.get("/users/owners", None),
            "databases" => self.get("/welcome/remaining_state/site_models", Some("/Database")),
            "dashboards_metadata" => {
                let mut e = Endpoint::get(format!("{}/global_search/search", self.base()));
                e.method = Method::Post;
                e.body = Some(json!({
                    "client_site_id": self.client_site_id,
                    "filters": [{"name": "typeFilter", "input": "Dashboard"}],
                    "limit": 2000,
                    "query_plan": null,
                }));
                e.records = Some("/results/data".into());
                e.primary_key = Some("id".into());
                e
            }
            _ => return None,
        })
    }
}

impl SourceSpec for PeriscopeConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        let stream = common.stream.as_str();
        let client = match self.client(common) {
            Ok(c) => c,
            Err(e) => return http::boxed::<HttpStream>(Err(e)),
        };
        let Some(endpoint) = self.endpoint(stream) else {
            return http::boxed::<HttpStream>(Err(Error::config(format!("periscope has no stream `{stream}`"))));
        };
        if stream == "charts" {
            let widgets = format!("{}/welcome/remaining_widgets", self.base());
            return Box::new(ChartsSource::new(client, endpoint, widgets, self.client_site_id, self.database_id));
        }
        Box::new(HttpStream::new(client, endpoint, None))
    }
}

/// The `periscope` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "periscope",
    description: "Periscope Data: dashboards, charts (with text boxes), databases, users, views, with session cookies",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<PeriscopeConfig>,
    schema: <PeriscopeConfig as schemars::JsonSchema>::json_schema,
    parse,
};
