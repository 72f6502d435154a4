//! Google credentials and access tokens, shared by every Google connector (BigQuery, and the
//! Google Sheets / Secret Manager connectors after it).
//!
//! Where credentials come from, in order: a service-account key given in the config (bizon's
//! `authentication.service_account_key`: the key's JSON text, or the path of its file), else
//! Application Default Credentials: the file `GOOGLE_APPLICATION_CREDENTIALS` names, gcloud's
//! user credentials (`application_default_credentials.json` under `CLOUDSDK_CONFIG` or
//! `~/.config/gcloud`), and last the metadata server of a Google Cloud VM (`GCE_METADATA_HOST`
//! overrides its address). A service-account key is exchanged for an access token with a JWT
//! signed RS256 (`ring`) sent to the key's `token_uri`, so tests point that at a local server.
//! Tokens are cached and refreshed before they expire by the HTTP client's auth
//! ([`crate::http::auth::Auth`]); every secret is masked in logs and errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bizon_core::{Error, Json, Result};
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::TokenSource;
use crate::http::client::{Body, HttpClient, Method, Request};

/// The scope every token asks for (BigQuery, Cloud Storage, Sheets and Secret Manager accept it).
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint (a key file's `token_uri` overrides it).
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_HOST: &str = "metadata.google.internal";

fn token_uri() -> String {
    TOKEN_URI.into()
}

/// A service-account key file (the fields used).
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

/// gcloud's user credentials (`gcloud auth application-default login`).
#[derive(Clone, Deserialize)]
pub struct AuthorizedUser {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    #[serde(default = "token_uri")]
    pub token_uri: String,
}

/// Resolved credentials.
#[derive(Clone)]
pub enum Credentials {
    ServiceAccount {
        key: ServiceAccountKey,
        der: Vec<u8>,
        from: String,
    },
    AuthorizedUser {
        user: AuthorizedUser,
        from: String,
    },
    /// The metadata server of the VM the process runs on.
    Metadata {
        host: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Credentials {
    /// bizon's `service_account_key`: the key's JSON text, or the path of its file. Empty:
    /// Application Default Credentials.
    pub fn from_config(key: Option<&str>) -> Result<Credentials> {
        match key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) if k.starts_with('{') => Credentials::from_json(k, "authentication.service_account_key"),
            Some(path) => Credentials::from_file(Path::new(path)),
            None => Credentials::application_default(),
        }
    }

    /// Application Default Credentials, as Google's client libraries find them.
    pub fn application_default() -> Result<Credentials> {
        if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
            return Credentials::from_file(Path::new(&path))
                .map_err(|e| e.context("GOOGLE_APPLICATION_CREDENTIALS names a file that cannot be used"));
        }
        if let Some(path) = gcloud_credentials().filter(|p| p.is_file()) {
            return Credentials::from_file(&path);
        }
        let host = std::env::var("GCE_METADATA_HOST").ok().filter(|h| !h.is_empty());
        Ok(Credentials::Metadata { host: host.unwrap_or_else(|| METADATA_HOST.into()) })
    }

    fn from_file(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read the Google credentials file {}: {e}", path.display())))?;
        Credentials::from_json(&text, &path.display().to_string())
    }

    /// A key file's JSON (`from` names where it came from, for messages).
    pub fn from_json(text: &str, from: &str) -> Result<Credentials> {
        let bad = |what: String| Error::config(format!("Google credentials in {from}: {what}"));
        let value: Json = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        match value.get("type").and_then(Json::as_str) {
            Some("service_account") => {
                let key: ServiceAccountKey =
                    serde_json::from_value(value).map_err(|e| bad(format!("not a service-account key: {e}")))?;
                let der = pem_to_der(&key.private_key)
                    .map_err(|e| bad(format!("the private key of {} cannot be read: {e}", key.client_email)))?;
                // Refuse a key ring cannot use now, not at the first token.
                ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                    bad(format!("the private key of {} is not an RSA PKCS#8 key ({e})", key.client_email))
                })?;
                Ok(Credentials::ServiceAccount { key, der, from: from.to_owned() })
            }
            Some("authorized_user") => Ok(Credentials::AuthorizedUser {
                user: serde_json::from_value(value).map_err(|e| bad(format!("not gcloud user credentials: {e}")))?,
                from: from.to_owned(),
            }),
            Some(other) => Err(bad(format!(
                "credentials of type `{other}` are not supported (use a service-account key, gcloud's \
                 application-default credentials or the metadata server)"
            ))),
            None => Err(bad("no `type` (expected `service_account` or `authorized_user`)".into())),
        }
    }

    /// Who the credentials are, never a secret (`service account x@p.iam.gserviceaccount.com`).
    pub fn describe(&self) -> String {
        match self {
            Credentials::ServiceAccount { key, from, .. } => {
                format!("service account {} (key from {from})", key.client_email)
            }
            Credentials::AuthorizedUser { from, .. } => format!("gcloud user credentials ({from})"),
            Credentials::Metadata { host } => format!("the metadata server at {host}"),
        }
    }

    /// The project the key belongs to, when it says.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            Credentials::ServiceAccount { key, .. } => key.project_id.as_deref(),
            _ => None,
        }
    }

    /// Secrets to mask in every message.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Credentials::ServiceAccount { key, .. } => vec![key.private_key.clone()],
            Credentials::AuthorizedUser { user, .. } => vec![user.client_secret.clone(), user.refresh_token.clone()],
            Credentials::Metadata { .. } => Vec::new(),
        }
    }

    /// The signed JWT a service account sends to its token endpoint (RFC 7523).
    pub fn jwt(key: &ServiceAccountKey, der: &[u8], scope: &str, now: u64) -> Result<String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &key.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": key.client_email,
            "scope": scope,
            "aud": key.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der)
            .map_err(|e| Error::config(format!("the private key of {} cannot sign: {e}", key.client_email)))?;
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| Error::internal(format!("signing the token request of {} failed", key.client_email)))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// gcloud's application-default credentials file.
fn gcloud_credentials() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

/// The DER bytes of a PEM block (`-----BEGIN PRIVATE KEY-----`).
fn pem_to_der(pem: &str) -> std::result::Result<Vec<u8>, String> {
    let body: String = pem.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("-----")).collect();
    if body.is_empty() {
        return Err("no PEM block".into());
    }
    STANDARD.decode(body).map_err(|e| format!("bad base64 in the PEM block ({e})"))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A Google token source for the HTTP client's auth.
#[derive(Debug)]
pub struct GoogleTokens {
    pub credentials: Credentials,
    pub scope: String,
}

/// An HTTP client whose requests carry tokens of `credentials` for `scope`, refreshed before
/// they expire: what every Google API client here is built on.
pub fn client(credentials: Credentials, scope: &str, settings: crate::http::settings::HttpSettings) -> HttpClient {
    let tokens = GoogleTokens { credentials, scope: scope.to_owned() };
    let auth = crate::http::auth::Auth::new(crate::http::auth::AuthSpec::Provider(std::sync::Arc::new(tokens)));
    HttpClient::new(settings, auth)
}

impl GoogleTokens {
    pub fn new(credentials: Credentials) -> Self {
        GoogleTokens { credentials, scope: CLOUD_PLATFORM.into() }
    }

    fn request(&self) -> Result<Request> {
        Ok(match &self.credentials {
            Credentials::ServiceAccount { key, der, .. } => Request {
                method: Method::Post,
                url: key.token_uri.clone(),
                body: Some(Body::Form(vec![
                    ("grant_type".into(), "urn:ietf:params:oauth:grant-type:jwt-bearer".into()),
                    ("assertion".into(), Credentials::jwt(key, der, &self.scope, unix_now())?),
                ])),
                ..Default::default()
            },
            Credentials::AuthorizedUser { user, .. } => Request {
                method: Method::Post,
                url: user.token_uri.clone(),
                body: Some(Body::Form(vec![
                    ("grant_type".into(), "refresh_token".into()),
                    ("client_id".into(), user.client_id.clone()),
                    ("client_secret".into(), user.client_secret.clone()),
                    ("refresh_token".into(), user.refresh_token.clone()),
                ])),
                ..Default::default()
            },
            Credentials::Metadata { host } => {
                let base = if host.contains("://") { host.clone() } else { format!("http://{host}") };
                Request::get(format!("{base}/computeMetadata/v1/instance/service-accounts/default/token"))
                    .header("Metadata-Flavor", "Google")
            }
        })
    }
}

impl TokenSource for GoogleTokens {
    fn kind_name(&self) -> &'static str {
        "google"
    }

    fn secrets(&self) -> Vec<String> {
        self.credentials.secrets()
    }

    fn fetch(&self, client: &HttpClient) -> Result<(String, Duration)> {
        let who = self.credentials.describe();
        let fail = |e: Error| {
            let hint = match &self.credentials {
                Credentials::ServiceAccount { .. } => {
                    " (is the key valid, not revoked or deleted, and its service account enabled?)"
                }
                Credentials::AuthorizedUser { .. } => " (run `gcloud auth application-default login` again?)",
                Credentials::Metadata { .. } => {
                    " (no service_account_key was given, GOOGLE_APPLICATION_CREDENTIALS is not set and there \
                     are no gcloud credentials: only a Google Cloud VM's metadata server was left)"
                }
            };
            e.context(format!("Google refused an access token for {who}{hint}"))
        };
        let resp = client.send_plain(&self.request()?).map_err(fail)?;
        let body = resp.json().map_err(fail)?;
        let token = body
            .get("access_token")
            .and_then(Json::as_str)
            .ok_or_else(|| fail(Error::config(format!("the answer of {} has no access_token", resp.what))))?;
        let secs = body.get("expires_in").and_then(Json::as_f64).unwrap_or(3600.0);
        Ok((token.to_owned(), Duration::from_secs_f64(secs.max(0.0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizon_testkit::google::{test_key, verify_jwt};

    #[test]
    fn a_key_signs_a_jwt_its_public_key_verifies() {
        let (key, public) = test_key("sa@p.iam.gserviceaccount.com", "http://127.0.0.1:1/token");
        let Credentials::ServiceAccount { key, der, .. } = Credentials::from_config(Some(&key)).unwrap() else {
            panic!("a service account")
        };
        let jwt = Credentials::jwt(&key, &der, CLOUD_PLATFORM, 1_700_000_000).unwrap();
        let claims = verify_jwt(&jwt, &public).unwrap();
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "http://127.0.0.1:1/token");
        assert_eq!(claims["exp"], 1_700_003_600u64);
        assert_eq!(claims["scope"], CLOUD_PLATFORM);
        let mut tampered = jwt.clone();
        tampered.insert(10, 'x');
        assert!(verify_jwt(&tampered, &public).is_err());
    }

    #[test]
    fn bad_keys_are_refused_naming_where_they_came_from() {
        let e = Credentials::from_config(Some("{not json")).unwrap_err().to_string();
        assert!(e.contains("authentication.service_account_key") && e.contains("not valid JSON"), "{e}");
        let e = Credentials::from_config(Some(r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a@b") && e.contains("not an RSA PKCS#8 key"), "{e}");
        assert!(!e.contains("AAAA"), "the key material is not printed: {e}");
        let e = Credentials::from_config(Some("/no/such/key.json")).unwrap_err().to_string();
        assert!(e.contains("/no/such/key.json"), "{e}");
        let e = Credentials::from_config(Some(r#"{"type":"external_account"}"#)).unwrap_err().to_string();
        assert!(e.contains("external_account") && e.contains("not supported"), "{e}");
    }
}
