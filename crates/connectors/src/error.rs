//! Typed errors of connector configs (STYLE rule 5): the rules a connector's own keys break,
//! found by validation (no I/O) or while building the destination of a run. Every one is the
//! user's to fix: [`ConfigError::kind`] is [`ErrorKind::Config`] (exit code 2, never retried).

use bizon_core::ErrorKind;

/// A connector config that cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be positive (`batch_size`, `page_size`).
    #[error("`{key}` must be at least 1")]
    AtLeastOne { key: &'static str },
    /// A required text that is blank (`bootstrap_servers`).
    #[error("`{key}` is empty")]
    Empty { key: &'static str },
    /// A timestamp key that does not parse as RFC 3339.
    #[error("`{key}` `{value}` is not an RFC 3339 timestamp")]
    NotATimestamp { key: &'static str, value: String },
    #[error("`rate_limit` must be a positive number of records per second")]
    RateLimit,
    /// The postgres source pages a custom query by its primary key.
    #[error("a custom `query` needs `primary_key` (the column its rows are paged by)")]
    QueryWithoutPrimaryKey,
    /// PostgreSQL: a CA file without a verifying `sslmode` would silently not be used.
    #[error("`sslrootcert` is only used with `sslmode: verify-ca` or `verify-full`")]
    SslRootCertUnused,
    /// A `record_schema` type the destination has no column type for.
    #[error("unsupported column type `{0}`")]
    UnsupportedColumnType(String),
    /// A `streams:` entry's `record_schema` column without `name` or `type`.
    #[error("stream `{stream}`: each record_schema column needs `name` and `type`")]
    IncompleteColumn { stream: String },
    /// A column of the `record_schemas` entry of `destination_id` that the destination refuses.
    #[error("record_schemas `{destination_id}`: {source}")]
    RecordSchemas { destination_id: String, source: Box<ConfigError> },
    /// A value a key does not accept, and why.
    #[error("`{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// More than one part of a routed destination commits the cursor in its own transaction.
    #[error("at most one transactional destination can be routed to")]
    SeveralTransactional,
}

impl ConfigError {
    /// Always [`ErrorKind::Config`]: the user changes the config; retrying cannot help.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

impl From<ConfigError> for bizon_core::Error {
    fn from(e: ConfigError) -> Self {
        bizon_core::Error::new(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_and_the_kind_is_config() {
        let e = ConfigError::RecordSchemas {
            destination_id: "users".into(),
            source: Box::new(ConfigError::UnsupportedColumnType("BLOB?".into())),
        };
        assert_eq!(e.to_string(), "record_schemas `users`: unsupported column type `BLOB?`");
        assert_eq!(ConfigError::AtLeastOne { key: "batch_size" }.to_string(), "`batch_size` must be at least 1");
        let core: bizon_core::Error = e.into();
        assert_eq!(core.kind(), ErrorKind::Config);
    }
}
