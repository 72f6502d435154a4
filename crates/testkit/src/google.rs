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

/// The local BigQuery emulator's Storage Write gRPC endpoint: `BQEMU_GRPC_URL`, else port 9060
/// of the one `scripts/bqemulator.sh` starts (REST and gRPC come up together).
pub fn emulator_grpc() -> String {
    if let Ok(url) = std::env::var("BQEMU_GRPC_URL") {
        return url;
    }
    emulator();
    "http://127.0.0.1:9060".into()
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

/// A Secret Manager stand-in (`GET /v1/projects/P/secrets/ID/versions/V:access`, Google's
/// answer shape): `secrets` (ID → value) answered for a bearer token the token endpoint issued,
/// `denied` IDs answered 403 `PERMISSION_DENIED`, others 404 `NOT_FOUND`.
pub struct SecretServer {
    pub api: FakeApi,
}

impl SecretServer {
    pub fn start(project: &str, secrets: &[(&str, &str)], denied: &[&str]) -> Self {
        let project = project.to_owned();
        let secrets: Vec<(String, String)> = secrets.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let denied: Vec<String> = denied.iter().map(|d| (*d).to_owned()).collect();
        let api = FakeApi::start(move |r| {
            let error = |code: u16, status: &str, message: String| {
                FakeResponse::status(
                    code,
                    &json!({"error": {"code": code, "message": message, "status": status}}).to_string(),
                )
            };
            if !r.header("authorization").is_some_and(|a| a.starts_with("Bearer ya29.test-token-")) {
                return error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.".into());
            }
            let prefix = format!("/v1/projects/{project}/secrets/");
            let Some(rest) = r.path.strip_prefix(&prefix).and_then(|p| p.strip_suffix(":access")) else {
                return error(404, "NOT_FOUND", format!("no route {}", r.path));
            };
            let (id, version) = rest.split_once("/versions/").unwrap_or((rest, ""));
            let name = format!("projects/{project}/secrets/{id}/versions/{version}");
            if denied.iter().any(|d| d == id) {
                return error(
                    403,
                    "PERMISSION_DENIED",
                    format!("Permission 'secretmanager.versions.access' denied for resource '{name}'"),
                );
            }
            match secrets.iter().find(|(k, _)| k == id) {
                Some((_, v)) => FakeResponse::json(json!({
                    "name": format!("projects/{project}/secrets/{id}/versions/1"),
                    "payload": {"data": base64::engine::general_purpose::STANDARD.encode(v)},
                })),
                None => error(404, "NOT_FOUND", format!("Secret [{name}] not found or has no versions.")),
            }
        });
        SecretServer { api }
    }
}

/// A Sheets API v4 stand-in for one spreadsheet (Google's response shapes): `GET
/// /v4/spreadsheets/ID` (sheet properties with the grid's `rowCount`) and `GET
/// /v4/spreadsheets/ID/values/'Title'!N:M` (the rows of that range, trailing empty cells and
/// trailing empty rows left out, as the API does). `throttle_first`: answer the first values
/// request 429 with `Retry-After: 1`; `delay`: wait this long before each values answer.
pub struct FakeSheets {
    pub api: FakeApi,
    pub id: String,
    /// Values requests answered 429.
    pub throttled: Arc<AtomicU64>,
}

impl FakeSheets {
    pub fn start(
        title: &str,
        rows: Vec<Vec<String>>,
        grid_rows: u64,
        throttle_first: bool,
        delay: Option<std::time::Duration>,
    ) -> Self {
        let id = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-sheet".to_owned();
        let title = title.to_owned();
        let throttled = Arc::new(AtomicU64::new(0));
        let values_seen = Arc::new(AtomicU64::new(0));
        let (sid, t) = (id.clone(), throttled.clone());
        let api = FakeApi::start(move |r| {
            if !r.header("authorization").is_some_and(|a| a.starts_with("Bearer ya29.test-token-")) {
                return FakeResponse::status(401, r#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#);
            }
            let path = crate::http::decode(&r.path);
            if path == format!("/v4/spreadsheets/{sid}") {
                return FakeResponse::json(json!({"sheets": [
                    {"properties": {"sheetId": 0, "title": "Other", "gridProperties": {"rowCount": 1000, "columnCount": 26}}},
                    {"properties": {"sheetId": 1, "title": title, "gridProperties": {"rowCount": grid_rows, "columnCount": 26}}},
                ]}));
            }
            let Some(range) = path.strip_prefix(&format!("/v4/spreadsheets/{sid}/values/")) else {
                return FakeResponse::status(
                    404,
                    r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#,
                );
            };
            let quoted = format!("'{}'!", title.replace('\'', "''"));
            let Some(span) = range.strip_prefix(&quoted) else {
                return FakeResponse::status(
                    400,
                    &json!({"error": {"code": 400, "message": format!("Unable to parse range: {range}"), "status": "INVALID_ARGUMENT"}})
                        .to_string(),
                );
            };
            if throttle_first && values_seen.fetch_add(1, Ordering::SeqCst) == 0 {
                t.fetch_add(1, Ordering::SeqCst);
                return FakeResponse::status(429, r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#)
                    .header("Retry-After", "1");
            }
            let (from, to) = span.split_once(':').unwrap_or((span, span));
            let (from, to): (usize, usize) = (from.parse().unwrap_or(1), to.parse().unwrap_or(1));
            let mut out: Vec<Vec<String>> = rows
                .iter()
                .skip(from - 1)
                .take(to + 1 - from)
                .map(|row| {
                    let keep = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
                    row[..keep].to_vec()
                })
                .collect();
            while out.last().is_some_and(Vec::is_empty) {
                out.pop();
            }
            let mut answer = json!({"range": format!("{quoted}A{from}:Z{to}"), "majorDimension": "ROWS"});
            if !out.is_empty() {
                answer["values"] = json!(out);
            }
            let response = FakeResponse::json(answer);
            match delay {
                Some(d) => response.delay(d),
                None => response,
            }
        });
        FakeSheets { api, id, throttled }
    }
}
