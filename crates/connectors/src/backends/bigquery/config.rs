//! `engine.backend.type: bigquery`: bizon's keys (`database` = project, `schema` = dataset,
//! `service_account_key`, `create_schema`, `schema_location`) plus `api_url` and `lease_seconds`.

use std::time::Duration;

use bizon_core::config::yaml;
use bizon_core::{Backend, Result};

use super::BigQueryBackend;
use crate::descriptor::{BackendDescriptor, BackendSpec};
use crate::google::auth::Credentials;
use crate::google::bigquery::BigQuery;

/// Seconds without a heartbeat after which another run may take a pipeline over.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;

/// `engine.backend.type: bigquery`, parsed.
#[derive(Clone)]
pub struct BigQueryBackendSpec {
    pub project: String,
    pub dataset: String,
    /// The key's JSON or its path; empty: Application Default Credentials.
    pub service_account_key: String,
    pub create_schema: bool,
    pub schema_location: Option<String>,
    pub api_url: Option<String>,
    pub lease: Duration,
}

impl std::fmt::Debug for BigQueryBackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryBackendSpec")
            .field("project", &self.project)
            .field("dataset", &self.dataset)
            .field("service_account_key", &if self.service_account_key.is_empty() { "(ADC)" } else { "***" })
            .field("create_schema", &self.create_schema)
            .field("schema_location", &self.schema_location)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl BackendSpec for BigQueryBackendSpec {
    fn open(&self) -> Result<Box<dyn Backend>> {
        let credentials = Credentials::from_config(Some(&self.service_account_key))?;
        let mut bq = BigQuery::new(credentials, self.api_url.as_deref(), &self.project);
        bq.location = self.schema_location.clone();
        Ok(Box::new(BigQueryBackend::open(
            bq,
            &self.dataset,
            self.create_schema,
            self.schema_location.as_deref(),
            self.lease,
        )?))
    }
    fn shared(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("bigquery {}.{}", self.project, self.dataset)
    }
}

/// The `bigquery` backend in the registry.
pub const DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    name: "bigquery",
    description: "BigQuery dataset: shared by processes on many hosts; lease row, fencing token, compare-and-swap DML",
    parse: |fields, node| {
        let required = |v: &Option<String>, key: &str, what: &str| {
            v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
                yaml::Error::new(
                    format!("missing required key `{key}` (the {what})"),
                    node.mark,
                    "engine.backend.config",
                )
            })
        };
        let project = required(&fields.database, "database", "Google Cloud project")?;
        let dataset = required(&fields.schema, "schema", "BigQuery dataset holding the state tables")?;
        if let Some(l) = &fields.schema_location {
            if l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || l.starts_with('-') {
                return Err(yaml::Error::new(
                    format!("schema_location `{l}` is not a BigQuery location (e.g. US, EU, europe-west1)"),
                    node.get("schema_location").unwrap_or(node).mark,
                    "engine.backend.config.schema_location",
                ));
            }
        }
        Ok(std::sync::Arc::new(BigQueryBackendSpec {
            project,
            dataset,
            service_account_key: fields.service_account_key.clone().unwrap_or_default(),
            create_schema: fields.create_schema.unwrap_or(false),
            schema_location: fields.schema_location.clone(),
            api_url: fields.api_url.clone(),
            lease: Duration::from_secs(fields.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS).max(1)),
        }))
    },
};
