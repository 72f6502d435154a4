//! `engine.backend.type: postgres`: the parsed spec, its defaults and the registry's descriptor.

use std::time::Duration;

use bizon_core::config::yaml;
use bizon_core::{Backend, Result};

use super::PostgresBackend;
use crate::descriptor::{BackendDescriptor, BackendSpec};
use crate::pg::PgConnection;

/// `engine.backend.type: postgres`, parsed.
#[derive(Debug, Clone)]
pub struct PostgresBackendSpec {
    pub conn: PgConnection,
    /// How long a silent lock holder keeps the pipeline.
    pub lease: Duration,
}

impl BackendSpec for PostgresBackendSpec {
    fn open(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(PostgresBackend::open(self.conn.clone(), self.lease)?))
    }
    fn shared(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        self.conn.describe()
    }
}

/// Seconds without a heartbeat after which another run may take a pipeline over (`lease_seconds`).
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

/// The `postgres` backend in the registry (bizon's keys; `lease_seconds` is ours).
pub const DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    name: "postgres",
    description: "PostgreSQL: shared by processes on many hosts; advisory lock, lease and fencing token",
    parse: |fields, node| {
        let conn = PgConnection {
            host: fields.host.clone().unwrap_or_else(crate::pg::default_host),
            port: fields.port.unwrap_or_else(crate::pg::default_port),
            database: fields.database.clone().ok_or_else(|| {
                yaml::Error::new("missing required key `database`", node.mark, "engine.backend.config")
            })?,
            username: fields.username.clone().unwrap_or_else(crate::pg::default_user),
            password: fields.password.clone(),
            schema: fields.schema.clone().unwrap_or_else(crate::pg::default_schema),
            sslmode: fields.sslmode.unwrap_or_default(),
            sslrootcert: fields.sslrootcert.clone(),
        };
        conn.validate().map_err(|e| yaml::Error::new(e.to_string(), node.mark, "engine.backend.config.sslmode"))?;
        let lease = Duration::from_secs(fields.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS).max(1));
        Ok(std::sync::Arc::new(PostgresBackendSpec { conn, lease }))
    },
};
