//! `engine.backend.type: sqlite` / `sqlite_in_memory`: the parsed spec and the registry's
//! descriptors.

use std::path::PathBuf;

use bizon_core::{Backend, Result};

use super::SqliteBackend;
use crate::descriptor::{BackendDescriptor, BackendSpec};

/// `engine.backend.type: sqlite` (a file) or `sqlite_in_memory`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSpec {
    /// `None`: in memory.
    pub path: Option<PathBuf>,
}

impl BackendSpec for SqliteSpec {
    fn open(&self) -> Result<Box<dyn Backend>> {
        Ok(match &self.path {
            Some(p) => Box::new(SqliteBackend::open(p.clone())?),
            None => Box::new(SqliteBackend::in_memory()?),
        })
    }
    fn shared(&self) -> bool {
        self.path.is_some()
    }
    /// A file that is not there yet is not created: its directory is checked instead.
    fn check(&self, key: &bizon_core::StreamKey) -> Result<String> {
        match &self.path {
            Some(p) if !p.exists() => {
                crate::check::writable_target(p).map(|w| format!("the first run creates it; {w}"))
            }
            _ => crate::descriptor::unfinished_job(self.open()?.as_mut(), key),
        }
    }
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("sqlite {}", p.display()),
            None => "sqlite_in_memory".into(),
        }
    }
}

/// The default backend: `./bizon.db`.
pub const DEFAULT_DATABASE: &str = "bizon";

/// The `sqlite` backend in the registry: `database` names the file (`.db` added without an
/// extension).
pub const DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    name: "sqlite",
    description: "a SQLite file (default ./bizon.db); one process or processes on one host",
    parse: |fields, _node| {
        let db = fields.database.clone().unwrap_or_else(|| DEFAULT_DATABASE.into());
        let path = PathBuf::from(&db);
        let path = if path.extension().is_some() { path } else { PathBuf::from(format!("{db}.db")) };
        Ok(std::sync::Arc::new(SqliteSpec { path: Some(path) }))
    },
};

/// The `sqlite_in_memory` backend in the registry.
pub const IN_MEMORY: BackendDescriptor = BackendDescriptor {
    name: "sqlite_in_memory",
    description: "SQLite in memory: nothing survives the process (tests, one-off runs)",
    parse: |_fields, _node| Ok(std::sync::Arc::new(SqliteSpec { path: None })),
};
