//! `gsm://` references end to end: the real binary resolves them through a Secret Manager
//! stand-in (`bizon_testkit::google::SecretServer`, Google's REST shapes) with Application Default
//! Credentials (GOOGLE_APPLICATION_CREDENTIALS: a key whose token endpoint is local and checks
//! the JWT's signature). Values never appear in any output; a denied or missing secret stops the
//! run before anything runs (exit 2), naming the reference and the service account.

mod common;

use bizon_testkit::google::{SecretServer, TokenServer};
use common::*;

/// The password of the `bizon_pw_test` role, which the server checks (scram-sha-256; scripts/test.sh
/// creates the role): the run succeeds only if the reference was resolved to this value.
const PASSWORD: &str = "p@ss:w/rd with spaces";
const OUT_DIR: &str = "resolved-out";

struct Setup {
    s: Scratch,
    key: std::path::PathBuf,
    _tokens: TokenServer,
    secrets: SecretServer,
    /// The PostgreSQL backend's schema (its password is a `gsm://` reference).
    schema: Schema,
}

fn setup(label: &str) -> Setup {
    let s = Scratch::new(label);
    let tokens = TokenServer::start("secrets-reader@p.iam.gserviceaccount.com", 3600, false);
    let key = s.write("adc.json", &tokens.key);
    let out = s.path(OUT_DIR).join("records.json").display().to_string();
    let secrets = SecretServer::start("proj", &[("pg-password", PASSWORD), ("out-path", &out)], &["locked"]);
    Setup { s, key, _tokens: tokens, secrets, schema: Schema::new("gsm") }
}

impl Setup {
    fn bizon(&self, args: &[&str]) -> std::process::Output {
        self.s
            .cmd(args)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &self.key)
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .output()
            .unwrap()
    }

    /// generator → file at `path: gsm://out-path`; the PostgreSQL backend's password a reference too
    /// (the role authenticates by password: a wrong or unresolved value fails the run).
    fn config(&self, extra_reference: &str) -> String {
        let text = format!(
            "name: gsm\nsource:\n  name: generator\n  stream: records\n  total: 500\n\
             destination:\n  name: file\n  config:\n    path: gsm://out-path\n\
             engine:\n  backend:\n    type: postgres\n    config:\n      host: 127.0.0.1\n      port: 5432\n      \
             database: test\n      schema: {schema}\n      username: bizon_pw_test\n      password: gsm://pg-password\n\
             {extra_reference}\
             secrets:\n  gsm:\n    project_id: proj\n    api_url: {url}\n",
            schema = self.schema.0,
            url = self.secrets.api.url,
        );
        self.s.write("pipeline.yml", &text).to_string_lossy().into_owned()
    }
}

fn all_output(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn references_resolve_and_their_values_appear_in_no_output() {
    let t = setup("gsm-ok");
    let cfg = t.config("");
    let check = t.bizon(&["secrets", "check", &cfg]);
    let text = all_output(&check);
    assert!(check.status.success(), "{text}");
    let line = text.lines().find(|l| l.starts_with("engine.backend.config.password")).unwrap_or_default();
    assert!(line.contains(&format!("ok ({} chars)", PASSWORD.len())), "{text}");
    let line = text.lines().find(|l| l.starts_with("destination.config.path")).unwrap_or_default();
    assert!(line.contains("ok ("), "{text}");
    let show = t.bizon(&["config", "show", &cfg]);
    assert!(show.status.success(), "{}", all_output(&show));
    let run = t.bizon(&["run", &cfg, "--no-progress", "--log-level", "debug"]);
    let text = all_output(&run);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("completed: 500 records"), "{text}");
    // The file went where the secret said: the reference was resolved, not used as a path.
    assert_eq!(read_ids(&t.s.path(OUT_DIR).join("records.json")).len(), 500);
    for (what, out) in [("secrets check", &check), ("config show", &show), ("run", &run)] {
        let out = all_output(out);
        assert!(!out.contains(PASSWORD), "{what} printed the password:\n{out}");
    }
    assert!(!t.s.path("gsm:").exists(), "no file named after the reference");
}

#[test]
fn a_denied_or_missing_secret_stops_the_run_before_anything_runs() {
    for (reference, expect) in [
        ("locked", "was denied to service account secrets-reader@p.iam.gserviceaccount.com"),
        ("nope", "does not exist"),
    ] {
        let t = setup("gsm-denied");
        // Inline, as bizon allows: `${gsm://…}` inside a string.
        let cfg = t.config(&format!("      sslrootcert: /certs/${{gsm://{reference}}}.pem\n"));
        let run = t.bizon(&["run", &cfg, "--no-progress"]);
        let text = all_output(&run);
        assert_eq!(run.status.code(), Some(2), "{text}");
        assert!(text.contains(&format!("gsm://{reference}")) && text.contains(expect), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!t.s.path(OUT_DIR).exists(), "nothing ran: {text}");
        let check = t.bizon(&["secrets", "check", &cfg]);
        let text = all_output(&check);
        assert_eq!(check.status.code(), Some(2), "{text}");
        assert!(text.contains("FAILED") && text.contains(&format!("gsm://{reference}")), "{text}");
    }
}
