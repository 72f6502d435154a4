//! Shared PostgreSQL plumbing: connection config with bizon's keys, identifier quoting, error
//! mapping that never prints the password.

use bizon_core::{Error, ErrorKind};
use serde::Deserialize;

use crate::error::ConfigError;

pub use crate::sslmode::SslMode;

/// The server when `host` is not set: this machine.
pub(crate) fn default_host() -> String {
    "localhost".into()
}
/// PostgreSQL's standard port.
pub(crate) fn default_port() -> u16 {
    5432
}
/// PostgreSQL's stock superuser, when `username` is not set.
pub(crate) fn default_user() -> String {
    "postgres".into()
}
/// PostgreSQL's default schema, when `schema` is not set.
pub(crate) fn default_schema() -> String {
    "public".into()
}

/// Connection keys (bizon's backend names: `database`, `schema`, `host`, `port`, `username`,
/// `password`) plus `sslmode`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// PEM file of the certificate authorities for `verify-ca` / `verify-full` (default: the
    /// system's roots in /etc/ssl/certs).
    #[serde(default)]
    pub sslrootcert: Option<String>,
}

/// Statements prepared on one connection, by their text: a statement run again skips a round trip
/// and the server's parse and plan. Cleared when the connection is replaced, and after an error (a
/// statement prepared before its table was dropped or altered fails from then on).
#[derive(Default)]
pub(crate) struct Prepared(std::collections::HashMap<String, postgres::Statement>);

impl Prepared {
    /// `sql` prepared on `client` (which must be the connection the cache was filled on).
    pub(crate) fn get(
        &mut self,
        client: &mut postgres::Client,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

impl PgConnection {
    /// Pure checks (no I/O): the root certificate file is read when connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sslrootcert.is_some() && !matches!(self.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Err(ConfigError::SslRootCertUnused);
        }
        Ok(())
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
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        let what = || format!("connecting to {} (sslmode {})", self.describe(), self.sslmode.as_str());
        if self.sslmode == SslMode::Disable {
            return c.connect(postgres::NoTls).map_err(|e| pg_error(&what(), &e));
        }
        let tls = tls::connector(self.sslmode, self.sslrootcert.as_deref())
            .map_err(|e| Error::new(e.kind(), format!("{}: {e}", what())))?;
        c.connect(tls).map_err(|e| pg_error(&what(), &e))
    }
}

/// rustls connectors for each `sslmode` (ring provider; no C crypto build).
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    use super::SslMode;
    use bizon_core::ErrorKind;

    /// Why no TLS connector could be set up for `sslmode`: a CA file that cannot be used (or no
    /// system roots), found before connecting. [`TlsError::kind`] is [`ErrorKind::Config`].
    #[derive(Debug, thiserror::Error)]
    pub enum TlsError {
        #[error("no usable certificate in {0}")]
        NoCertificate(String),
        #[error("cannot read sslrootcert {path}: {source}")]
        ReadRootCert { path: String, source: rustls_pki_types::pem::Error },
        #[error("cannot parse sslrootcert {path}: {source}")]
        ParseRootCert { path: String, source: rustls_pki_types::pem::Error },
        #[error("TLS verifier: {0}")]
        Verifier(#[source] rustls::client::VerifierBuilderError),
        #[error("TLS setup: {0}")]
        Setup(#[source] rustls::Error),
    }

    impl TlsError {
        /// Always [`ErrorKind::Config`]: the user points `sslrootcert` at a usable CA file.
        pub fn kind(&self) -> ErrorKind {
            ErrorKind::Config
        }
    }

    /// Verifies signatures, and the chain unless `chain` is `None`; ignores the host name when
    /// `check_name` is false (verify-ca, and the unverified modes).
    #[derive(Debug)]
    struct Verifier {
        provider: Arc<CryptoProvider>,
        chain: Option<Arc<WebPkiServerVerifier>>,
        check_name: bool,
    }

    impl ServerCertVerifier for Verifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
            match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) if !self.check_name => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }

    fn roots(rootcert: Option<&str>) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        let (path, certs): (String, Vec<_>) = match rootcert {
            Some(p) => (p.to_owned(), read_pem(p)?),
            None => {
                let p = "/etc/ssl/certs/ca-certificates.crt";
                (p.to_owned(), read_pem(p)?)
            }
        };
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::NoCertificate(path));
        }
        Ok(store)
    }

    fn read_pem(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_file_iter(path)
            .map_err(|source| TlsError::ReadRootCert { path: path.to_owned(), source })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::ParseRootCert { path: path.to_owned(), source })
    }

    pub fn connector(
        mode: SslMode,
        rootcert: Option<&str>,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let chain = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(rootcert)?), provider.clone())
                    .build()
                    .map_err(TlsError::Verifier)?,
            ),
            _ => None,
        };
        let verifier = Verifier { provider: provider.clone(), chain, check_name: mode == SslMode::VerifyFull };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
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
            } else if msg.contains("error connecting")
                || msg.contains("connection")
                || msg.contains("timed out")
                // broken pipe, reset: the server went away mid-statement
                || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            {
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
