//! The `postgres` destination's keys, its registry descriptor and bizon's column types.

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::{Destination, Guarantee};
use serde::Deserialize;

use super::PostgresDestination;
use crate::descriptor::{
    parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec, TableSpec,
};
use crate::error::ConfigError;
use crate::pg::PgConnection;

/// The destination's own keys; the table is `destination_id` (default: the stream name).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    #[serde(default = "crate::pg::default_host")]
    pub host: String,
    #[serde(default = "crate::pg::default_port")]
    pub port: u16,
    pub database: String,
    #[serde(default = "crate::pg::default_user")]
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Schema of the target table (created when missing).
    #[serde(default = "crate::pg::default_schema")]
    pub schema: String,
    #[serde(default)]
    pub sslmode: crate::pg::SslMode,
    /// CA certificates (PEM) for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Upsert on these comma-separated columns instead of appending (beyond bizon): the newest
    /// row per key wins. Typed columns with `unnest`, else bizon's (e.g. `source_record_id`).
    #[serde(default)]
    pub primary_key: Option<String>,
    /// A record whose value its typed column cannot hold (`unnest`): fail the run (default) or
    /// write it with its error to the dead-letter file (`dead_letter_path`, default
    /// `<destination_id>_dead_letter.json`) and load the rest.
    #[serde(default)]
    pub on_error: bizon_core::config::OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

/// The `postgres` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "postgres",
    description: "binary COPY in bizon's row layout; cursor committed with the rows",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: true,
        typed_columns: true,
        lanes: true,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<PostgresConfig>,
    schema: <PostgresConfig as schemars::JsonSchema>::json_schema,
    parse: parse_destination::<PostgresConfig>,
};

impl DestinationSpec for PostgresConfig {
    fn validate(&self, node: &Node) -> std::result::Result<(), yaml::Error> {
        self.connection().validate().map_err(|e| {
            yaml::Error::new(e.to_string(), node.get("sslmode").unwrap_or(node).mark, "destination.config")
        })
    }

    fn build(&self, destination_id: &str, typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(PostgresDestination::new(self, destination_id, typed))
    }

    fn build_routed(&self, tables: Vec<TableSpec>) -> Option<Box<dyn Destination>> {
        Some(Box::new(PostgresDestination::routed(self, tables)))
    }

    fn column_type(&self, kind: &str) -> std::result::Result<String, ConfigError> {
        pg_type(kind)
    }

    /// Connect, and ask whether the user may create the table: in the schema when it exists,
    /// else the schema itself in the database.
    fn check(&self, destination_id: &str) -> bizon_core::Result<String> {
        let c = self.connection();
        let mut client = c.connect()?;
        let row = client
            .query_one(
                "SELECT current_user::text, \
                        (SELECT has_schema_privilege(current_user, oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), \
                        has_database_privilege(current_user, current_database(), 'CREATE')",
                &[&self.schema],
            )
            .map_err(|e| crate::pg::pg_error("checking privileges", &e))?;
        let (user, in_schema, in_database): (String, Option<bool>, bool) = (row.get(0), row.get(1), row.get(2));
        let table = crate::pg::qualified(&self.schema, destination_id);
        match in_schema {
            Some(true) => Ok(format!("connected to {} as {user}; may create {table}", c.describe())),
            Some(false) => Err(bizon_core::Error::config(format!(
                "connected to {} as {user}, who may not create tables in schema `{}` (GRANT CREATE ON SCHEMA {} TO {user})",
                c.describe(),
                self.schema,
                crate::pg::ident(&self.schema)
            ))),
            None if in_database => Ok(format!(
                "connected to {} as {user}; schema `{}` is missing and is created by the run",
                c.describe(),
                self.schema
            )),
            None => Err(bizon_core::Error::config(format!(
                "connected to {} as {user}: schema `{}` is missing and {user} may not create it",
                c.describe(),
                self.schema
            ))),
        }
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.on_error, &self.dead_letter_path, destination_id)
    }
}

impl PostgresConfig {
    pub fn connection(&self) -> PgConnection {
        PgConnection {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            schema: self.schema.clone(),
            sslmode: self.sslmode,
            sslrootcert: self.sslrootcert.clone(),
        }
    }

    pub fn primary_key(&self) -> Vec<String> {
        self.primary_key
            .as_deref()
            .map(|k| k.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// A typed column of `unnest: true`: PostgreSQL type of a bizon/BigQuery type name (or a
/// PostgreSQL type name as is).
pub fn pg_type(kind: &str) -> std::result::Result<String, ConfigError> {
    let t = match kind.to_ascii_uppercase().as_str() {
        "STRING" | "TEXT" => "text",
        "INTEGER" | "INT64" | "INT" | "BIGINT" => "bigint",
        "FLOAT" | "FLOAT64" | "DOUBLE" => "double precision",
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" => "numeric",
        "BOOLEAN" | "BOOL" => "boolean",
        "TIMESTAMP" | "TIMESTAMPTZ" => "timestamptz",
        "DATETIME" => "timestamp",
        "DATE" => "date",
        "TIME" => "time",
        "JSON" | "JSONB" | "RECORD" | "STRUCT" => "jsonb",
        "BYTES" => "bytea",
        _ if kind.chars().all(|c| c.is_ascii_alphanumeric() || " _(),[]".contains(c)) => return Ok(kind.to_owned()),
        _ => return Err(ConfigError::UnsupportedColumnType(kind.to_owned())),
    };
    Ok(t.to_owned())
}
