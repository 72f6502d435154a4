//! Google auth for tests: a throw-away service-account key made by `openssl` for the test (no
//! key is committed) and a local token endpoint that checks the RS256 signature of the JWT it is
//! sent before handing out a token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::fixtures::TempDir;
use crate::http::{FakeApi, FakeResponse};

/// A new RSA key as a service-account key file's JSON (its `token_uri` given), and the public
/// key (PKCS#1 DER) that verifies its signatures.
pub fn test_key(client_email: &str, token_uri: &str) -> (String, Vec<u8>) {
    let dir = TempDir::new("google-key");
    let pem = dir.join("key.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl on PATH");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem.to_str().unwrap()]);
    let public = run(&["rsa", "-in", pem.to_str().unwrap(), "-RSAPublicKey_out", "-outform", "DER"]);
    let key = json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "kid-1",
        "private_key": std::fs::read_to_string(&pem).unwrap(),
        "client_email": client_email,
        "client_id": "123",
        "token_uri": token_uri,
    });
    (key.to_string(), public)
}

/// Check a JWT's RS256 signature and return its claims.
pub fn verify_jwt(jwt: &str, public: &[u8]) -> Result<Json, String> {
    let (input, sig) = jwt.rsplit_once('.').ok_or("no signature")?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| "bad signature".to_string())?;
    let claims = input.split('.').nth(1).ok_or("no claims")?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// A token endpoint that hands out a token for every JWT its key signed, and refuses others.
pub struct TokenServer {
    pub api: FakeApi,
    /// The service-account key file's JSON (its `token_uri` is this server).
    pub key: String,
    /// Tokens handed out so far.
    pub issued: Arc<AtomicU64>,
}

impl TokenServer {
    /// `expires_in`: the lifetime of the tokens it gives; `refuse`: answer every request with
    /// `invalid_grant`, as Google does for a revoked or deleted key.
    pub fn start(client_email: &str, expires_in: u64, refuse: bool) -> Self {
        let public = Arc::new(OnceLock::<Vec<u8>>::new());
        let issued = Arc::new(AtomicU64::new(0));
        let (p, n) = (public.clone(), issued.clone());
        let api = FakeApi::start(move |r| {
            if refuse {
                return FakeResponse::status(
                    400,
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                );
            }
            let grant = r.form_value("grant_type").unwrap_or_default();
            let jwt = r.form_value("assertion").unwrap_or_default();
            match p.get().map(|k| verify_jwt(&jwt, k)) {
                Some(Ok(_)) if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    FakeResponse::json(
                        json!({"access_token": format!("ya29.test-token-{i}"), "expires_in": expires_in, "token_type": "Bearer"}),
                    )
                }
                other => FakeResponse::status(
                    400,
                    &json!({"error": "invalid_grant", "error_description": format!("{other:?}")}).to_string(),
                ),
            }
        });
        let (key, pk) = test_key(client_email, &format!("{}/token", api.url));
        let _ = public.set(pk);
        TokenServer { api, key, issued }
    }
}

/// The local BigQuery emulator's REST URL: `BQEMU_URL`, else the one `scripts/bqemulator.sh`
/// starts (or finds running), once per test process.
pub fn emulator() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| started("BQEMU_URL", "bqemulator.sh", "the BigQuery emulator")).clone()
}

/// The local Cloud Storage emulator's URL (bucket `bizon-test`, its objects loadable by the
/// BigQuery emulator as gs:// URIs): `GCS_EMULATOR_URL`, else the one `scripts/gcsemulator.sh`
/// starts (or finds running), once per test process.
pub fn gcs_emulator() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| started("GCS_EMULATOR_URL", "gcsemulator.sh", "the Cloud Storage emulator")).clone()
}

/// `var`, else the URL the script prints once it answers.
fn started(var: &str, script: &str, what: &str) -> String {
    if let Ok(url) = std::env::var(var) {
        return url;
    }
    let path = format!("{}/../../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&path).output().unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(out.status.success(), "{what} did not start (scripts/{script}): {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_owned()
}
