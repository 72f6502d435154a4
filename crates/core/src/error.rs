//! Typed errors that say who acts and whether to retry (STYLE rule 5).

use std::fmt;

/// Who has to act on an error, and whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong: the user fixes it; exit code 2.
    Config,
    /// Temporary (network, lock contention, injected fault): retry from the last checkpoint.
    Transient,
    /// Retrying will not help (bad data, missing permission).
    Permanent,
    /// A bug or a broken invariant (e.g. a cursor that does not chain).
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "config",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Internal => "internal",
        })
    }
}

/// The error type shared by sources, destinations, backends and the engine.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// An I/O error on `what` (a path or a resource name); interrupted/would-block are transient.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::Interrupted | K::WouldBlock | K::TimedOut => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Prefix the message with context, keeping the kind.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error { kind: self.kind, message: format!("{ctx}: {}", self.message) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
