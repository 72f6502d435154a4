//! The HTTP client every HTTP source shares: one pooled agent (rustls, gzip, connection reuse),
//! connect/read timeouts, retries with exponential backoff and jitter on 429, 5xx and timeouts
//! (honouring `Retry-After`), a request rate and a concurrency limit, a response size limit,
//! the source's auth on every request, and errors with every secret masked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::{Error, Json, Result};
use tracing::{debug, warn};

use super::auth::Auth;
use super::limit::{Permits, RateLimiter};
use super::redact::Redactor;
use super::settings::HttpSettings;

/// HTTP methods the connectors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Json),
    Form(Vec<(String, String)>),
    /// Bytes sent as they are, with their content type (rows already serialized, uploads).
    Raw {
        content_type: String,
        bytes: Arc<Vec<u8>>,
    },
}

/// One request, before auth.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Self {
        Request { url: url.into(), ..Default::default() }
    }
    pub fn post_json(url: impl Into<String>, body: Json) -> Self {
        Request { method: Method::Post, url: url.into(), body: Some(Body::Json(body)), ..Default::default() }
    }
    pub fn query(mut self, name: &str, value: impl ToString) -> Self {
        self.query.push((name.to_owned(), value.to_string()));
        self
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// `METHOD url?query` for messages (not yet redacted).
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method.as_str(), self.url);
        for (i, (k, v)) in self.query.iter().enumerate() {
            s.push(if i == 0 && !self.url.contains('?') { '?' } else { '&' });
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

/// A response whose status was accepted.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `METHOD url` of the request, already redacted (for error messages).
    pub what: String,
}

impl Response {
    /// A response built by hand (tests, and pages a connector assembles itself).
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>, what: impl Into<String>) -> Self {
        Response { status, headers, body, what: what.into() }
    }

    #[cfg(test)]
    pub fn for_test(headers: &[(&str, &str)]) -> Self {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Response::new(200, headers, Vec::new(), "GET test")
    }

    /// A header's value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; a malformed body is a permanent error located by line and column.
    pub fn json(&self) -> Result<Json> {
        serde_json::from_slice(&self.body).map_err(|e| self.malformed(&e))
    }

    /// The error of a body that is not the JSON it should be (`e` locates the fault).
    pub fn malformed(&self, e: &serde_json::Error) -> Error {
        Error::permanent(format!(
            "malformed JSON in the response to {} (status {}): {e}; body starts with {:?}",
            self.what,
            self.status,
            snippet(&self.body)
        ))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The first 200 characters of a body, for messages.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// The shared client of one source.
pub struct HttpClient {
    agent: ureq::Agent,
    settings: HttpSettings,
    limiter: RateLimiter,
    permits: Permits,
    auth: Auth,
    redactor: Arc<Redactor>,
    /// Requests sent (attempts included), for progress and the benchmark.
    pub requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("auth", &self.auth.kind_name()).finish_non_exhaustive()
    }
}

/// What one attempt ended with.
enum Attempt {
    Done(Response),
    /// Retry after at least this long (from `Retry-After`, else the backoff), with why.
    Retry(Option<Duration>, String),
}

impl HttpClient {
    pub fn new(settings: HttpSettings, auth: Auth) -> Self {
        let redactor = auth.redactor();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_per_read(Some(settings.read_timeout))
            .timeout_recv_response(Some(settings.read_timeout))
            .max_idle_connections_per_host(settings.concurrency.max(4))
            .user_agent(concat!("bizon-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpClient {
            agent,
            limiter: RateLimiter::new(settings.rate_limit),
            permits: Permits::new(settings.concurrency),
            settings,
            auth,
            redactor,
            requests: Default::default(),
        }
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    /// The auth headers of the next request (a token refreshed when it is about to expire), for
    /// calls that do not go through this client (gRPC).
    pub fn auth_headers(&self) -> Result<Vec<(String, String)>> {
        self.auth.headers(self)
    }

    /// Mask every secret in `text`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Send with auth, throttles and retries; `Ok` only for a 2xx answer.
    pub fn send(&self, req: &Request) -> Result<Response> {
        self.send_accepting(req, &[])
    }

    /// As [`send`](Self::send), also accepting the listed non-2xx statuses (a 404 an API uses
    /// for "nothing here", say).
    pub fn send_accepting(&self, req: &Request, accept: &[u16]) -> Result<Response> {
        let what = self.redact(&req.describe());
        let mut auth_retried = false;
        let mut attempt = 0u32;
        loop {
            match self.attempt(req, &what, accept, &mut auth_retried)? {
                Attempt::Done(r) => return Ok(r),
                Attempt::Retry(after, why) => {
                    if attempt >= self.settings.max_retries {
                        return Err(Error::transient(format!(
                            "{what}: {why}, still failing after {} retries",
                            self.settings.max_retries
                        )));
                    }
                    let wait = after.unwrap_or_else(|| self.settings.backoff(attempt)).min(self.settings.max_backoff);
                    warn!(request = %what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "{why}; retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    fn attempt(&self, req: &Request, what: &str, accept: &[u16], auth_retried: &mut bool) -> Result<Attempt> {
        let headers = self.auth.headers(self)?;
        self.limiter.acquire();
        let _permit = self.permits.acquire();
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        // A 3xx the caller accepts is an answer, not a redirect (a resumable upload's 308).
        let follow = !accept.iter().any(|s| (300..400).contains(s));
        let result = self.call(req, &headers, follow);
        debug!(request = %what, elapsed_ms = started.elapsed().as_millis() as u64, "http request");
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return self.transport_error(what, e),
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let headers_out: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = match resp.body_mut().with_config().limit(self.settings.max_response_bytes).read_to_vec() {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(n)) => {
                return Err(Error::permanent(format!(
                    "{what}: the response is larger than the limit of {n} bytes (source.http.max_response_mb)"
                )))
            }
            Err(e) => return self.transport_error(what, e),
        };
        let response = Response { status, headers: headers_out, body, what: what.to_owned() };
        if (200..300).contains(&status) || accept.contains(&status) {
            return Ok(Attempt::Done(response));
        }
        if self.settings.retry_statuses.contains(&status) {
            return Ok(Attempt::Retry(retry_after, format!("status {status}")));
        }
        if status == 401 && self.auth.can_refresh() && !*auth_retried {
            // The token may have been revoked early: refresh once and try again.
            *auth_retried = true;
            self.auth.invalidate();
            return Ok(Attempt::Retry(Some(Duration::ZERO), "status 401, token refreshed".into()));
        }
        let body = self.redact(&snippet(&response.body));
        Err(match status {
            401 | 403 => Error::config(format!(
                "{what}: {status} {}: the server refused the credentials of authentication type `{}` \
                 (check {}); response: {body}",
                reason(status),
                self.auth.kind_name(),
                if self.auth.kind_name() == "google" {
                    "authentication.service_account_key, or the Application Default Credentials"
                } else {
                    "source.authentication"
                }
            )),
            404 => Error::permanent(format!("{what}: 404 Not Found; response: {body}")),
            _ => Error::permanent(format!("{what}: {status} {}; response: {body}", reason(status))),
        })
    }

    fn transport_error(&self, what: &str, e: ureq::Error) -> Result<Attempt> {
        let msg = self.redact(&e.to_string());
        match e {
            ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::BodyStalled
            | ureq::Error::Protocol(_) => Ok(Attempt::Retry(None, msg)),
            _ => Err(Error::permanent(format!("{what}: {msg}"))),
        }
    }

    /// Send without auth, retries or throttles (the OAuth token request goes through
    /// [`send_plain`](Self::send_plain), which adds the retries).
    fn call(
        &self,
        req: &Request,
        auth_headers: &[(String, String)],
        follow_redirects: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        macro_rules! build {
            ($b:expr) => {{
                let mut b = $b;
                if !follow_redirects {
                    b = b.config().max_redirects(0).max_redirects_will_error(false).build();
                }
                for (k, v) in &req.query {
                    b = b.query(k, v);
                }
                for (k, v) in req.headers.iter().chain(auth_headers) {
                    b = b.header(k.as_str(), v.as_str());
                }
                b
            }};
        }
        match req.method {
            Method::Get | Method::Delete if req.body.is_none() => {
                let b = if req.method == Method::Get { self.agent.get(&req.url) } else { self.agent.delete(&req.url) };
                build!(b).call()
            }
            m => {
                let b = match m {
                    Method::Get => self.agent.get(&req.url).force_send_body(),
                    Method::Delete => self.agent.delete(&req.url).force_send_body(),
                    Method::Post => self.agent.post(&req.url),
                    Method::Put => self.agent.put(&req.url),
                    Method::Patch => self.agent.patch(&req.url),
                };
                let b = build!(b);
                match &req.body {
                    None => b.send_empty(),
                    Some(Body::Json(j)) => {
                        b.content_type("application/json").send(serde_json::to_vec(j).unwrap_or_default())
                    }
                    Some(Body::Form(f)) => b.send_form(f.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                    Some(Body::Raw { content_type, bytes }) => b.content_type(content_type.as_str()).send(&bytes[..]),
                }
            }
        }
    }

    /// Send with retries and throttles but without the source's auth (token endpoints).
    pub(crate) fn send_plain(&self, req: &Request) -> Result<Response> {
        let what = self.redact(&req.describe());
        let mut attempt = 0u32;
        loop {
            self.limiter.acquire();
            let outcome = {
                let _permit = self.permits.acquire();
                self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.call(req, &[], true)
            };
            let why = match outcome {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(self.settings.max_response_bytes)
                        .read_to_vec()
                        .unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(Response { status, headers: Vec::new(), body, what });
                    }
                    if !self.settings.retry_statuses.contains(&status) {
                        return Err(Error::config(format!(
                            "{what}: {status} {}; response: {}",
                            reason(status),
                            self.redact(&snippet(&body))
                        )));
                    }
                    format!("status {status}")
                }
                Err(e) => match self.transport_error(&what, e)? {
                    Attempt::Retry(_, why) => why,
                    Attempt::Done(r) => return Ok(r),
                },
            };
            if attempt >= self.settings.max_retries {
                return Err(Error::transient(format!(
                    "{what}: {why}, still failing after {} retries",
                    self.settings.max_retries
                )));
            }
            let wait = self.settings.backoff(attempt).min(self.settings.max_backoff);
            warn!(request = %what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "{why}; retrying");
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s >= 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s));
    }
    let when = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc()).as_seconds_f64();
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

/// The reason phrase of common statuses.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
