//! `sslmode`, PostgreSQL's TLS modes: plain data, parsed even in builds without the `postgres`
//! feature (the backend keys are bizon's common ones).

use serde::Deserialize;

/// libpq's `sslmode` values, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, certificate not verified.
    #[default]
    Prefer,
    /// TLS or fail, certificate not verified.
    Require,
    /// TLS, certificate chain verified against `sslrootcert` (or the system roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}
