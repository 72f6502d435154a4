//! `gsm://` references resolved through Secret Manager's REST API (`versions/*:access`) with
//! Application Default Credentials, bizon's path forms: `ID` (latest version), `ID/versions/N`,
//! or a full `projects/P/secrets/ID/versions/N`. The client is made on the first reference (a
//! config without one never touches Google), values are cached for the run and registered with
//! [`bizon_core::redact`] so no printed line shows them. Errors name the reference and the
//! credentials, never a value.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

use base64::Engine;
use bizon_core::Json;

use super::auth::{client, Credentials, CLOUD_PLATFORM};
use crate::http::client::{HttpClient, Request};
use crate::http::settings::HttpSettings;

/// Google's Secret Manager endpoint.
pub const API_URL: &str = "https://secretmanager.googleapis.com";

pub struct GsmResolver {
    /// `secrets.gsm.project_id`, else GOOGLE_CLOUD_PROJECT.
    project: Option<String>,
    api: String,
    client: OnceCell<Result<(HttpClient, Credentials), String>>,
    cache: RefCell<HashMap<String, String>>,
}

impl GsmResolver {
    pub fn new(project: Option<String>, api_url: Option<&str>) -> Self {
        GsmResolver {
            project: project.filter(|p| !p.is_empty()),
            api: api_url.unwrap_or(API_URL).trim_end_matches('/').to_owned(),
            client: OnceCell::new(),
            cache: RefCell::new(HashMap::new()),
        }
    }

    fn client(&self) -> Result<&(HttpClient, Credentials), String> {
        self.client
            .get_or_init(|| {
                let credentials = Credentials::application_default()
                    .map_err(|e| format!("no Google credentials for Secret Manager: {e}"))?;
                let settings = HttpSettings { max_retries: 4, ..Default::default() };
                Ok((client(credentials.clone(), CLOUD_PLATFORM, settings), credentials))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The secret version's resource name of `path`.
    fn resource_name(&self, path: &str) -> Result<String, String> {
        let path = path.trim().trim_matches('/');
        if path.starts_with("projects/") {
            return Ok(path.to_owned());
        }
        let (id, version) = path.split_once("/versions/").unwrap_or((path, "latest"));
        if id.is_empty() || id.contains('/') || version.is_empty() {
            return Err(format!(
                "`gsm://{path}` is not a secret: expected `gsm://ID`, `gsm://ID/versions/N` or \
                 `gsm://projects/P/secrets/ID/versions/N`"
            ));
        }
        let project = match &self.project {
            Some(p) => p.clone(),
            None => self.client()?.1.project_id().map(str::to_owned).ok_or_else(|| {
                format!(
                    "cannot resolve `gsm://{path}`: no Google Cloud project; set `secrets.gsm.project_id`, \
                     GOOGLE_CLOUD_PROJECT, or write `gsm://projects/<project>/secrets/{id}/versions/{version}`"
                )
            })?,
        };
        Ok(format!("projects/{project}/secrets/{id}/versions/{version}"))
    }

    /// The value of `gsm://path`.
    pub fn resolve(&self, path: &str) -> Result<String, String> {
        if let Some(v) = self.cache.borrow().get(path) {
            return Ok(v.clone());
        }
        let name = self.resource_name(path)?;
        let (http, credentials) = self.client()?;
        let reference = format!("`gsm://{}` ({name})", path.trim());
        let r = http
            .send_accepting(&Request::get(format!("{}/v1/{name}:access", self.api)), &[400, 401, 403, 404])
            .map_err(|e| format!("{reference}: {e}"))?;
        let why = |r: &crate::http::client::Response| {
            r.json()
                .ok()
                .and_then(|j| j.pointer("/error/message").and_then(Json::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("status {}", r.status))
        };
        match r.status {
            404 => return Err(format!("{reference} does not exist: {}", why(&r))),
            401 | 403 => {
                return Err(format!("access to {reference} was denied to {}: {}", credentials.describe(), why(&r)))
            }
            400 => return Err(format!("{reference} was refused: {}", why(&r))),
            _ => {}
        }
        let body = r.json().map_err(|e| format!("{reference}: {e}"))?;
        let data = body
            .pointer("/payload/data")
            .and_then(Json::as_str)
            .ok_or_else(|| format!("{reference}: the answer has no payload.data"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("{reference}: the payload is not base64 ({e})"))?;
        let value = String::from_utf8(bytes).map_err(|_| format!("{reference}: the secret is not UTF-8 text"))?;
        bizon_core::redact::register(&value);
        self.cache.borrow_mut().insert(path.to_owned(), value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::GsmResolver;

    #[test]
    fn bizons_path_forms_name_a_version() {
        let r = GsmResolver::new(Some("proj".into()), None);
        assert_eq!(r.resource_name("db-pw").unwrap(), "projects/proj/secrets/db-pw/versions/latest");
        assert_eq!(r.resource_name("db-pw/versions/3").unwrap(), "projects/proj/secrets/db-pw/versions/3");
        assert_eq!(
            r.resource_name("projects/other/secrets/x/versions/1").unwrap(),
            "projects/other/secrets/x/versions/1"
        );
        assert!(r.resource_name("a/b").unwrap_err().contains("not a secret"));
    }
}
