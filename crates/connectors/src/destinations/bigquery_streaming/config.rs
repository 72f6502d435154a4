//! The `bigquery_streaming` destination's keys (bizon's, plus `api_url`, `on_error` and
//! `dead_letter_path`) and its registry descriptor.

use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, struct_fields, Node};
use bizon_core::config::{DestinationCommon, OnError, RecordSchemaConfig};
use bizon_core::{Destination, Guarantee};
use serde::Deserialize;

use super::BigQueryStreaming;
use crate::descriptor::{own_keys, DestinationCapabilities, DestinationDescriptor, DestinationSpec};
use crate::error::ConfigError;
use crate::google::table::{bq_type, typed_columns, BigQueryAuthentication, Column, TimePartitioning};

/// bizon's default and BigQuery's limit of rows per `insertAll` request.
pub const DEFAULT_ROWS_PER_REQUEST: u32 = 5000;
pub const MAX_ROWS_PER_REQUEST: u32 = 10_000;

fn us() -> Option<String> {
    Some("US".into())
}
fn partitioning() -> Option<TimePartitioning> {
    Some(TimePartitioning::default())
}
fn rows_per_request() -> u32 {
    DEFAULT_ROWS_PER_REQUEST
}
fn bizon_prefix() -> String {
    "_bizon_".into()
}

/// The destination's own keys under `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    pub project_id: String,
    pub dataset_id: String,
    /// Location of the dataset when it is created (it is created when missing, as bizon does).
    #[serde(default = "us")]
    pub dataset_location: Option<String>,
    /// Partitioning of tables this destination creates; `null`: none.
    #[serde(default = "partitioning")]
    pub time_partitioning: Option<TimePartitioning>,
    #[serde(default = "rows_per_request")]
    pub bq_max_rows_per_request: u32,
    /// Prefix of default table names (`_bizon_<source>_<stream>`); `''` for none.
    #[serde(default = "bizon_prefix")]
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

/// A secret that never shows in `Debug`.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "(none)" } else { "***" })
    }
}

/// The parsed config: own keys and the common keys the destination reads.
#[derive(Debug, Clone)]
pub struct StreamingSpec {
    pub config: StreamingConfig,
    /// `authentication.service_account_key`.
    pub key: Secret,
    /// `destination_id` as written (a `project.dataset.table`, or a table of `dataset_id`).
    pub destination_id: Option<String>,
    pub record_schemas: Vec<RecordSchemaConfig>,
    pub unnest: bool,
    /// `time_partitioning.field` is written in the config (bizon: with `unnest`, an unwritten
    /// field means ingestion-time partitioning).
    pub partition_field_written: bool,
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
        lanes: false,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<StreamingConfig>,
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
    let common: DestinationCommon = from_node(node, PATH, struct_fields::<StreamingConfig>())?;
    let at = |key: &str| node.get(key).unwrap_or(node).mark;
    let key = match node.get("authentication") {
        Some(n) => from_node::<BigQueryAuthentication>(n, &format!("{PATH}.authentication"), &[])?.service_account_key,
        None => String::new(),
    };
    if !(1..=MAX_ROWS_PER_REQUEST).contains(&config.bq_max_rows_per_request) {
        return Err(yaml::Error::new(
            format!(
                "bq_max_rows_per_request is {}: BigQuery takes 1 to {MAX_ROWS_PER_REQUEST} rows per insertAll request",
                config.bq_max_rows_per_request
            ),
            at("bq_max_rows_per_request"),
            &format!("{PATH}.bq_max_rows_per_request"),
        ));
    }
    for s in common.record_schemas.iter().flatten() {
        typed_columns(&s.record_schema)
            .map_err(|e| yaml::Error::new(e.message(), at("record_schemas"), &format!("{PATH}.record_schemas")))?;
    }
    Ok(StreamingSpec {
        config,
        key: Secret(key),
        destination_id: common.destination_id,
        record_schemas: common.record_schemas.unwrap_or_default(),
        unnest: common.unnest,
        partition_field_written: node.get("time_partitioning").and_then(|p| p.get("field")).is_some(),
    })
}

impl StreamingSpec {
    /// The typed columns (mode and description included) of `destination_id`'s record schema.
    pub fn typed(&self, destination_id: &str) -> Option<(Vec<Column>, Option<Vec<String>>)> {
        if !self.unnest {
            return None;
        }
        let s = self.record_schemas.iter().find(|s| s.destination_id == destination_id)?;
        Some((typed_columns(&s.record_schema).ok()?, s.clustering_keys.clone()))
    }
}

impl DestinationSpec for StreamingSpec {
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
