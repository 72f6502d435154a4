//! bizon's source authentication types with bizon's keys (`source.authentication`):
//! `api_key` / `bearer` (token, auth_method, auth_header), `basic` (username, password,
//! auth_method, auth_header), `oauth` (refresh_token and client_credentials grants, refreshed
//! before expiry) and `cookies` (cookies, headers). Every secret is registered with the
//! source's redactor so no log line or error shows it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bizon_core::config::yaml::{self, from_node, Node};
use bizon_core::config::{AuthConfig, AuthType};
use bizon_core::{Error, Json, Result};
use serde::Deserialize;
use tracing::info;

use super::client::{Body, HttpClient, Method, Request};
use super::redact::Redactor;

fn bearer() -> String {
    "Bearer".into()
}
fn basic() -> String {
    "Basic".into()
}
fn authorization() -> String {
    "Authorization".into()
}
fn access_token() -> String {
    "access_token".into()
}
fn expires_in() -> String {
    "expires_in".into()
}
fn refresh_grant() -> String {
    "refresh_token".into()
}

/// `api_key` and `bearer` params (bizon's `TokenAuthParams`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    pub token: String,
    /// Prefix of the header value; empty sends the bare token.
    #[serde(default = "bearer")]
    pub auth_method: String,
    #[serde(default = "authorization")]
    pub auth_header: String,
}

/// `basic` params (bizon's `BasicHttpAuthParams`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicParams {
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default = "basic")]
    pub auth_method: String,
    #[serde(default = "authorization")]
    pub auth_header: String,
}

/// `oauth` params (bizon's `Oauth2AuthParams`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthParams {
    pub token_refresh_endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// When the first access token (none is configured) is taken to expire: accepted for
    /// bizon compatibility; the first request always fetches a token.
    #[serde(default)]
    pub token_expiry_date: Option<String>,
    #[serde(default)]
    pub token_expiry_date_format: Option<String>,
    #[serde(default = "access_token")]
    pub access_token_name: String,
    #[serde(default = "expires_in")]
    pub expires_in_name: String,
    /// Extra form fields of the token request (never overriding the standard ones).
    #[serde(default)]
    pub refresh_request_body: Option<BTreeMap<String, Json>>,
    #[serde(default = "refresh_grant")]
    pub grant_type: String,
    /// `/`-separated path to the object holding the token in the response (`data`).
    #[serde(default)]
    pub response_field_path: Option<String>,
    /// Refresh this many seconds before expiry (default: 10 % of the lifetime, at most 60 s).
    #[serde(default)]
    pub expiry_skew_seconds: Option<f64>,
}

/// `cookies` params (bizon's `CookiesAuthParams`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CookiesParams {
    pub cookies: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Bearer tokens from somewhere other than bizon's auth types (Google credentials): the client
/// caches them and asks for a new one before expiry, or once after a 401.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// The auth type named in messages (`google`).
    fn kind_name(&self) -> &'static str;
    /// Secrets the source holds (keys, refresh tokens), masked in every message.
    fn secrets(&self) -> Vec<String>;
    /// A new access token and its lifetime; token requests go through
    /// [`HttpClient::send_plain`].
    fn fetch(&self, client: &HttpClient) -> Result<(String, Duration)>;
}

/// A parsed `source.authentication`.
#[derive(Debug, Clone)]
pub enum AuthSpec {
    None,
    Token { kind: AuthType, params: TokenParams },
    Basic(BasicParams),
    OAuth(Box<OAuthParams>),
    Cookies(CookiesParams),
    Provider(Arc<dyn TokenSource>),
}

impl AuthSpec {
    /// Parse the `authentication:` mapping of a source (located errors).
    pub fn from_node(node: Option<&Node>) -> Result<AuthSpec, yaml::Error> {
        let Some(node) = node else { return Ok(AuthSpec::None) };
        let kind: AuthType = match node.get("type") {
            Some(t) => from_node(t, "source.authentication.type", &[])?,
            None => return Err(yaml::Error::new("missing key `type`", node.mark, "source.authentication")),
        };
        let Some(params) = node.get("params") else {
            return Err(yaml::Error::new(
                format!("authentication type `{}` needs `params`", type_name(kind)),
                node.mark,
                "source.authentication",
            ));
        };
        let path = "source.authentication.params";
        Ok(match kind {
            AuthType::ApiKey | AuthType::Bearer => AuthSpec::Token { kind, params: from_node(params, path, &[])? },
            AuthType::Basic => AuthSpec::Basic(from_node(params, path, &[])?),
            AuthType::Oauth => AuthSpec::OAuth(Box::new(from_node(params, path, &[])?)),
            AuthType::Cookies => AuthSpec::Cookies(from_node(params, path, &[])?),
        })
    }

    /// From the loaded config (already validated by [`from_node`](Self::from_node)).
    pub fn from_config(auth: Option<&AuthConfig>) -> Result<AuthSpec> {
        let Some(auth) = auth else { return Ok(AuthSpec::None) };
        let params = auth.params.clone().unwrap_or(Json::Null);
        let bad = |e: serde_json::Error| Error::config(format!("source.authentication.params: {e}"));
        Ok(match auth.kind {
            AuthType::ApiKey | AuthType::Bearer => {
                AuthSpec::Token { kind: auth.kind, params: serde_json::from_value(params).map_err(bad)? }
            }
            AuthType::Basic => AuthSpec::Basic(serde_json::from_value(params).map_err(bad)?),
            AuthType::Oauth => AuthSpec::OAuth(Box::new(serde_json::from_value(params).map_err(bad)?)),
            AuthType::Cookies => AuthSpec::Cookies(serde_json::from_value(params).map_err(bad)?),
        })
    }

    /// The type name as configured (`api_key`, `oauth`, …), or `none`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            AuthSpec::None => "none",
            AuthSpec::Token { kind, .. } => type_name(*kind),
            AuthSpec::Basic(_) => "basic",
            AuthSpec::OAuth(_) => "oauth",
            AuthSpec::Cookies(_) => "cookies",
            AuthSpec::Provider(p) => p.kind_name(),
        }
    }
}

fn type_name(kind: AuthType) -> &'static str {
    match kind {
        AuthType::Oauth => "oauth",
        AuthType::ApiKey => "api_key",
        AuthType::Bearer => "bearer",
        AuthType::Basic => "basic",
        AuthType::Cookies => "cookies",
    }
}

/// A cached OAuth access token.
#[derive(Debug)]
struct Token {
    value: String,
    expires_at: Instant,
    lifetime: Duration,
}

/// The auth of a running source: fixed headers, or an OAuth token refreshed before expiry.
#[derive(Debug)]
pub struct Auth {
    spec: AuthSpec,
    /// Headers sent on every request (all but OAuth).
    fixed: Vec<(String, String)>,
    token: Mutex<Option<Token>>,
    redactor: Arc<Redactor>,
}

impl Auth {
    pub fn new(spec: AuthSpec) -> Self {
        let redactor = Arc::new(Redactor::default());
        let mut fixed = Vec::new();
        match &spec {
            AuthSpec::None => {}
            AuthSpec::Token { params, .. } => {
                redactor.add(&params.token);
                if !params.auth_header.is_empty() {
                    let value = if params.auth_method.is_empty() {
                        params.token.clone()
                    } else {
                        format!("{} {}", params.auth_method, params.token)
                    };
                    fixed.push((params.auth_header.clone(), value));
                }
            }
            AuthSpec::Basic(p) => {
                redactor.add(&p.password);
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", p.username, p.password));
                redactor.add(&encoded);
                fixed.push((p.auth_header.clone(), format!("{} {encoded}", p.auth_method)));
            }
            AuthSpec::OAuth(p) => {
                redactor.add(&p.client_secret);
                if let Some(r) = &p.refresh_token {
                    redactor.add(r);
                }
            }
            AuthSpec::Cookies(p) => {
                for v in p.cookies.values() {
                    redactor.add(v);
                }
                let cookie = p.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
                redactor.add(&cookie);
                fixed.push(("Cookie".into(), cookie));
                fixed.extend(p.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            AuthSpec::Provider(p) => {
                for s in p.secrets() {
                    redactor.add(&s);
                }
            }
        }
        Auth { spec, fixed, token: Mutex::new(None), redactor }
    }

    pub fn kind_name(&self) -> &'static str {
        self.spec.kind_name()
    }

    pub fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }

    /// Whether a 401 is worth one retry with a fresh token.
    pub fn can_refresh(&self) -> bool {
        matches!(self.spec, AuthSpec::OAuth(_) | AuthSpec::Provider(_))
    }

    /// Forget the cached token (the server refused it).
    pub fn invalidate(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The headers of the next request; refreshes a token that is about to expire.
    pub fn headers(&self, client: &HttpClient) -> Result<Vec<(String, String)>> {
        let skew = match &self.spec {
            AuthSpec::OAuth(p) => p.expiry_skew_seconds,
            AuthSpec::Provider(_) => None,
            _ => return Ok(self.fixed.clone()),
        };
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = token.as_ref().is_some_and(|t| {
            let skew = skew.map_or_else(|| (t.lifetime.as_secs_f64() * 0.1).min(60.0), |s| s.max(0.0));
            Instant::now() + Duration::from_secs_f64(skew) < t.expires_at
        });
        if !fresh {
            *token = Some(match &self.spec {
                AuthSpec::OAuth(p) => self.refresh(p, client)?,
                AuthSpec::Provider(source) => {
                    let (value, lifetime) = source.fetch(client)?;
                    self.redactor.add(&value);
                    Token { value, expires_at: Instant::now() + lifetime, lifetime }
                }
                _ => return Err(Error::internal("no token to refresh")),
            });
        }
        let value = token.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        Ok(vec![("Authorization".into(), format!("Bearer {value}"))])
    }

    /// POST the token request (form-encoded, as bizon) and read the token and its lifetime.
    fn refresh(&self, p: &OAuthParams, client: &HttpClient) -> Result<Token> {
        let mut form = vec![
            ("grant_type".to_owned(), p.grant_type.clone()),
            ("client_id".to_owned(), p.client_id.clone()),
            ("client_secret".to_owned(), p.client_secret.clone()),
        ];
        if let Some(r) = &p.refresh_token {
            form.push(("refresh_token".into(), r.clone()));
        }
        if let Some(s) = p.scopes.as_ref().filter(|s| !s.is_empty()) {
            form.push(("scope".into(), s.join(",")));
        }
        for (k, v) in p.refresh_request_body.iter().flatten() {
            if !form.iter().any(|(f, _)| f == k) {
                form.push((k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
            }
        }
        let req = Request {
            method: Method::Post,
            url: p.token_refresh_endpoint.clone(),
            body: Some(Body::Form(form)),
            ..Default::default()
        };
        let fail = |e: Error| e.context("oauth: could not refresh the access token");
        let resp = client.send_plain(&req).map_err(fail)?;
        let body = resp.json().map_err(fail)?;
        let holder = match &p.response_field_path {
            Some(path) => path.split('/').filter(|s| !s.is_empty()).try_fold(&body, |j, k| j.get(k)),
            None => Some(&body),
        };
        let missing = |what: &str| {
            Error::config(format!(
                "oauth: the token response of {} has no `{what}`{}",
                resp.what,
                p.response_field_path.as_ref().map(|f| format!(" under `{f}`")).unwrap_or_default()
            ))
        };
        let holder = holder.ok_or_else(|| missing(p.response_field_path.as_deref().unwrap_or("")))?;
        let value =
            holder.get(&p.access_token_name).and_then(Json::as_str).ok_or_else(|| missing(&p.access_token_name))?;
        let secs = match holder.get(&p.expires_in_name) {
            Some(Json::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Json::String(s)) => s.parse::<f64>().map_err(|_| missing(&p.expires_in_name))?,
            _ => return Err(missing(&p.expires_in_name)),
        };
        self.redactor.add(value);
        let lifetime = Duration::from_secs_f64(secs.max(0.0));
        info!(expires_in_s = secs, "oauth access token refreshed");
        Ok(Token { value: value.to_owned(), expires_at: Instant::now() + lifetime, lifetime })
    }
}
