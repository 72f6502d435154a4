//! Shared PostgreSQL plumbing: connection config with bizon's keys, identifier quoting, error
//! mapping that never prints the password.

use bizon_core::{Error, ErrorKind};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    /// TLS if the server offers it; this build connects without TLS.
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    5432
}
fn default_user() -> String {
    "postgres".into()
}
fn default_schema() -> String {
    "public".into()
}

/// Connection keys (bizon's backend names: `database`, `schema`, `host`, `port`, `username`,
/// `password`) plus `sslmode`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConnection {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    #[serde(default = "default_user")]
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Schema holding the tables (created when missing).
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub sslmode: SslMode,
}

impl PgConnection {
    pub fn validate(&self) -> Result<(), String> {
        match self.sslmode {
            SslMode::Disable | SslMode::Prefer => Ok(()),
            other => Err(format!(
                "sslmode `{}` needs TLS, which this build does not include yet; use `disable` or `prefer`",
                match other {
                    SslMode::Require => "require",
                    SslMode::VerifyCa => "verify-ca",
                    _ => "verify-full",
                }
            )),
        }
    }

    /// Where we connect, for messages (never the password).
    pub fn describe(&self) -> String {
        format!("postgres://{}@{}:{}/{}", self.username, self.host, self.port, self.database)
    }

    pub fn connect(&self) -> bizon_core::Result<postgres::Client> {
        let mut c = postgres::Config::new();
        c.host(&self.host).port(self.port).dbname(&self.database).user(&self.username);
        c.application_name(run_tag()).connect_timeout(std::time::Duration::from_secs(10));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c.ssl_mode(match self.sslmode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            _ => postgres::config::SslMode::Prefer,
        });
        c.connect(postgres::NoTls).map_err(|e| pg_error(&format!("connecting to {}", self.describe()), &e))
    }
}

/// The `application_name` of every connection this process opens: a run that takes a pipeline
/// over from a stale one terminates the stale run's sessions by it.
pub fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("bizon:{}:{nanos:08x}", std::process::id())
    })
}

/// Map a driver error: connection problems are transient (retry from the last commit),
/// authentication and missing objects are config errors, the rest permanent.
pub fn pg_error(what: &str, e: &postgres::Error) -> Error {
    let kind = match e.code() {
        Some(code) => match code.code() {
            // invalid_password, invalid_authorization_specification, invalid_catalog_name
            "28P01" | "28000" | "3D000" => ErrorKind::Config,
            // connection exceptions, admin shutdown, crash shutdown, cannot connect now
            c if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => ErrorKind::Transient,
            // serialization failure, deadlock
            "40001" | "40P01" => ErrorKind::Transient,
            // the server is starting up / shutting down
            "57P04" | "53300" => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        },
        None if e.is_closed() => ErrorKind::Transient,
        None => {
            let msg = format!("{e} {:?}", std::error::Error::source(e));
            if msg.contains("lookup address") || msg.contains("Name or service not known") {
                ErrorKind::Config // an unknown host does not come back by retrying
            } else if msg.contains("error connecting") || msg.contains("connection") || msg.contains("timed out") {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    };
    Error::new(kind, format!("{what}: {detail}"))
}

/// `"name"` with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(qualified("s", "a\"b"), "\"s\".\"a\"\"b\"");
    }
}
