//! Secrets out of every line an HTTP connector prints: the auth's tokens, passwords, API keys
//! and cookies (also when they come back in a response body or a URL), and the values of query
//! parameters whose names say they are secret.

use std::sync::RwLock;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameter names whose values are masked in URLs shown to the user.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "client_secret",
    "hapikey",
];

/// The secrets known to one source; grows when an OAuth token is refreshed.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// Add a secret (values shorter than 4 characters are too common to mask safely).
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < 4 {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        if !s.iter().any(|x| x == secret) {
            s.push(secret.to_owned());
            // Longest first, so a secret containing another is masked whole.
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// `text` with every known secret, and every secret-named query value, masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        mask_query_values(&out)
    }
}

/// Mask `name=value` pairs of secret-named parameters (in URLs and form bodies).
fn mask_query_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let name_start =
            head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).map_or(0, |i| i + 1);
        let name = &head[name_start..];
        out.push_str(head);
        out.push('=');
        let tail = &tail[1..];
        if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
            let end = tail.find(|c: char| c == '&' || c == '"' || c.is_whitespace()).unwrap_or(tail.len());
            if end > 0 {
                out.push_str(MASK);
            }
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_secrets_and_secret_params() {
        let r = Redactor::default();
        r.add("s3cr3t-token");
        r.add("ab"); // too short: not masked
        let line = "GET https://api.x/y?hapikey=abc123&limit=10 failed: token s3cr3t-token refused (ab)";
        assert_eq!(r.redact(line), "GET https://api.x/y?hapikey=***&limit=10 failed: token *** refused (ab)");
        assert_eq!(r.redact("a=b&client_secret=zz x"), "a=b&client_secret=*** x");
        assert_eq!(r.redact("no secrets = here"), "no secrets = here");
    }
}
