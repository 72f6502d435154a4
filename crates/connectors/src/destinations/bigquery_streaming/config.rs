//! The `bigquery_streaming` destination's keys (bizon's, plus `api_url`, `on_error` and
//! `dead_letter_path`) and its registry descriptor.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{DestinationCommon, OnError};
use bizon_core::{Destination, Guarantee};
use serde::Deserialize;

use super::BigQueryStreaming;
use crate::descriptor::{own_keys, DestinationCapabilities, DestinationDescriptor, DestinationSpec};
use crate::error::ConfigError;
use crate::google::table::{bq_type, DestinationKeys, TimePartitioning};

/// bizon's default and BigQuery's limit of rows per `insertAll` request.
pub const DEFAULT_ROWS_PER_REQUEST: u32 = 5000;
pub const MAX_ROWS_PER_REQUEST: u32 = 10_000;

pub(crate) fn rows_per_request() -> u32 {
    DEFAULT_ROWS_PER_REQUEST
}

/// The destination's own keys under `config:`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    pub project_id: String,
    pub dataset_id: String,
    /// Location of the dataset when it is created (it is created when missing, as bizon does).
    #[serde(default = "crate::google::table::default_location")]
    pub dataset_location: Option<String>,
    /// Partitioning of tables this destination creates; `null`: none.
    #[serde(default = "crate::google::table::default_partitioning")]
    pub time_partitioning: Option<TimePartitioning>,
    #[serde(default = "rows_per_request")]
    pub bq_max_rows_per_request: u32,
    /// Prefix of default table names (`_bizon_<source>_<stream>`); `''` for none.
    #[serde(default = "crate::google::table::default_table_prefix")]
    pub table_prefix: String,
    /// BigQuery's REST base URL (default Google's; tests and proxies override it).
    #[serde(default)]
    pub api_url: Option<String>,
    /// A row BigQuery refuses (a value its column cannot hold): fail the run naming the record
    /// and the column (default), or write it with the error to the dead-letter file.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

/// The parsed config: own keys and the common keys the destination reads.
#[derive(Debug, Clone)]
pub struct StreamingSpec {
    pub config: StreamingConfig,
    pub keys: DestinationKeys,
}

/// The `bigquery_streaming` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "bigquery_streaming",
    description:
        "BigQuery insertAll, staged and published exactly once (stream mode: at-least-once, insertId = bizon_id)",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: false,
        typed_columns: true,
        lanes: true,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<StreamingConfig>,
    schema: <StreamingConfig as schemars::JsonSchema>::json_schema,
    parse,
};

const PATH: &str = "destination.config";

fn parse(node: &Node) -> Result<Arc<dyn DestinationSpec>, yaml::Error> {
    Ok(Arc::new(parse_spec(node)?))
}

/// `destination.config` parsed and validated (no I/O).
pub fn parse_spec(node: &Node) -> Result<StreamingSpec, yaml::Error> {
    let config: StreamingConfig =
        own_keys(node, PATH, struct_fields::<DestinationCommon>(), struct_fields::<StreamingConfig>())?;
    let keys = DestinationKeys::parse(node, PATH, struct_fields::<StreamingConfig>())?;
    check_rows_per_request(node, config.bq_max_rows_per_request, "insertAll")?;
    Ok(StreamingSpec { config, keys })
}

/// `bq_max_rows_per_request` within BigQuery's limit (`request`: the API call it sizes).
pub(crate) fn check_rows_per_request(node: &Node, rows: u32, request: &str) -> Result<(), yaml::Error> {
    if (1..=MAX_ROWS_PER_REQUEST).contains(&rows) {
        return Ok(());
    }
    Err(yaml::Error::new(
        format!(
            "bq_max_rows_per_request is {rows}: BigQuery takes 1 to {MAX_ROWS_PER_REQUEST} rows per {request} request"
        ),
        node.get("bq_max_rows_per_request").unwrap_or(node).mark,
        &format!("{PATH}.bq_max_rows_per_request"),
    ))
}

impl DestinationSpec for StreamingSpec {
    fn check(&self, _destination_id: &str) -> bizon_core::Result<String> {
        let c = &self.config;
        crate::google::table::check_dataset(&self.keys.key.0, c.api_url.as_deref(), &c.project_id, &c.dataset_id, true)
    }

    fn build(&self, destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(BigQueryStreaming::new(Arc::new(self.clone()), destination_id))
    }

    fn column_type(&self, kind: &str) -> Result<String, ConfigError> {
        bq_type(kind).map(str::to_owned).map_err(|_| ConfigError::UnsupportedColumnType(kind.to_owned()))
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.config.on_error, &self.config.dead_letter_path, destination_id)
    }
}
