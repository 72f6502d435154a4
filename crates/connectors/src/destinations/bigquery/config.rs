//! The `bigquery` destination's keys (bizon's, plus `api_url`) and its registry descriptor.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{DestinationCommon, OnError};
use bizon_core::{Destination, Guarantee};
use serde::Deserialize;

use super::BigQueryBatch;
use crate::descriptor::{own_keys, DestinationCapabilities, DestinationDescriptor, DestinationSpec};
use crate::error::ConfigError;
use crate::google::table::{bq_type, DestinationKeys, TimePartitioning};

fn ten() -> u32 {
    10
}
fn three() -> u32 {
    3
}

/// bizon's `gcs_buffer_format` (bizon itself writes only Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BufferFormat {
    #[default]
    Parquet,
    Csv,
}

/// The destination's own keys under `config:`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub project_id: String,
    pub dataset_id: String,
    #[serde(default = "crate::google::table::default_location")]
    pub dataset_location: Option<String>,
    /// Create the dataset when it is missing (bizon's default: a missing dataset is an error).
    #[serde(default)]
    pub create_dataset: bool,
    /// Stage each load file in this bucket (`<source>/<stream>/<job id>.parquet`, removed once
    /// loaded) and load it by URI, as bizon does; without it (bizon requires it) files go straight
    /// to BigQuery's upload endpoint.
    #[serde(default)]
    pub gcs_buffer_bucket: Option<String>,
    /// Cloud Storage's base URL (default Google's; tests override it).
    #[serde(default)]
    pub gcs_url: Option<String>,
    #[serde(default)]
    pub gcs_buffer_format: BufferFormat,
    /// Partitioning of tables this destination creates; `null`: none.
    #[serde(default = "crate::google::table::default_partitioning")]
    pub time_partitioning: Option<TimePartitioning>,
    /// bizon: drop a table whose partitioning differs on a full refresh. A full refresh here
    /// always recreates the table with the configured partitioning (`CREATE OR REPLACE`).
    #[serde(default)]
    pub enforce_partitioning: bool,
    /// bizon's asynchronous loads. Accepted; each flush's load file is uploaded while the rows
    /// are written and its load job is done before the flush commits (exactly-once needs the
    /// rows in BigQuery before the cursor moves), so there is nothing left to run asynchronously.
    #[serde(default)]
    pub async_load: bool,
    /// bizon's files per load job (with `async_load`): one load job per flush here.
    #[serde(default = "ten")]
    pub load_files_per_job: u32,
    #[serde(default = "three")]
    pub load_max_in_flight_jobs: u32,
    /// Prefix of default table names (`_bizon_<source>_<stream>`); `''` for none.
    #[serde(default = "crate::google::table::default_table_prefix")]
    pub table_prefix: String,
    /// BigQuery's REST base URL (default Google's; tests and proxies override it).
    #[serde(default)]
    pub api_url: Option<String>,
    /// With `unnest`: a record a typed column cannot hold fails the run naming the record and the
    /// column (default), or goes with the error to the dead-letter file and the rest is loaded.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

/// The parsed config: own keys and the common keys the destination reads.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub config: BatchConfig,
    pub keys: DestinationKeys,
}

/// The `bigquery` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "bigquery",
    description: "BigQuery load jobs of Parquet files, staged and published exactly once",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: false,
        typed_columns: true,
        lanes: true,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<BatchConfig>,
    schema: <BatchConfig as schemars::JsonSchema>::json_schema,
    parse,
};

const PATH: &str = "destination.config";

fn parse(node: &Node) -> Result<Arc<dyn DestinationSpec>, yaml::Error> {
    Ok(Arc::new(parse_spec(node)?))
}

/// `destination.config` parsed and validated (no I/O).
pub fn parse_spec(node: &Node) -> Result<BatchSpec, yaml::Error> {
    let config: BatchConfig =
        own_keys(node, PATH, struct_fields::<DestinationCommon>(), struct_fields::<BatchConfig>())?;
    let keys = DestinationKeys::parse(node, PATH, struct_fields::<BatchConfig>())?;
    let at = |key: &str| node.get(key).unwrap_or(node).mark;
    if config.gcs_buffer_format == BufferFormat::Csv {
        return Err(yaml::Error::new(
            String::from("gcs_buffer_format: csv is not supported (bizon 0.6.4 refuses it too): use parquet"),
            at("gcs_buffer_format"),
            &format!("{PATH}.gcs_buffer_format"),
        ));
    }
    for (k, v) in
        [("load_files_per_job", config.load_files_per_job), ("load_max_in_flight_jobs", config.load_max_in_flight_jobs)]
    {
        if v == 0 {
            return Err(yaml::Error::new(format!("{k} is 0: it must be at least 1"), at(k), &format!("{PATH}.{k}")));
        }
    }
    if config.async_load {
        tracing::warn!(
            "bigquery: async_load has no effect: each flush's file is uploaded while rows are written and loaded \
             before the flush commits"
        );
    }
    Ok(BatchSpec { config, keys })
}

impl DestinationSpec for BatchSpec {
    fn check(&self, _destination_id: &str) -> bizon_core::Result<String> {
        let c = &self.config;
        crate::google::table::check_dataset(
            &self.keys.key.0,
            c.api_url.as_deref(),
            &c.project_id,
            &c.dataset_id,
            self.config.create_dataset,
        )
    }

    fn build(&self, destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(BigQueryBatch::new(Arc::new(self.clone()), destination_id))
    }

    fn column_type(&self, kind: &str) -> Result<String, ConfigError> {
        bq_type(kind).map(str::to_owned).map_err(|_| ConfigError::UnsupportedColumnType(kind.to_owned()))
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.config.on_error, &self.config.dead_letter_path, destination_id)
    }
}
