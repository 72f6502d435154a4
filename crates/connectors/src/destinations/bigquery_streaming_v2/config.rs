//! The `bigquery_streaming_v2` destination's keys (bizon's, plus `api_url`, `storage_write_url`,
//! `on_error` and `dead_letter_path`) and its registry descriptor.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{DestinationCommon, OnError};
use bizon_core::{Destination, Guarantee};
use serde::Deserialize;

use super::BigQueryStreamingV2;
use crate::descriptor::{own_keys, DestinationCapabilities, DestinationDescriptor, DestinationSpec};
use crate::destinations::bigquery_streaming::config::check_rows_per_request;
use crate::error::ConfigError;
use crate::google::table::{bq_type, DestinationKeys, TimePartitioning};

/// How rows travel in `AppendRows` requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowFormat {
    /// Protobuf messages described by a descriptor made from the table's columns (every column
    /// type; what every Storage Write endpoint takes).
    #[default]
    Protobuf,
    /// Apache Arrow record batches (bizon's layout only): no per-row message to decode on the
    /// receiving side.
    Arrow,
}

/// The destination's own keys under `config:`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamingV2Config {
    pub project_id: String,
    pub dataset_id: String,
    /// Location of the dataset when it is created (it is created when missing, as bizon does).
    #[serde(default = "crate::google::table::default_location")]
    pub dataset_location: Option<String>,
    /// Partitioning of tables this destination creates; `null`: none.
    #[serde(default = "crate::google::table::default_partitioning")]
    pub time_partitioning: Option<TimePartitioning>,
    /// bizon: drop a table whose partitioning differs on a full refresh. A full refresh here
    /// always recreates the table with the configured partitioning (`CREATE OR REPLACE`).
    #[serde(default)]
    pub enforce_partitioning: bool,
    /// Rows per `AppendRows` request (each also stays under 9 MB; BigQuery's limit is 10 MB).
    #[serde(default = "crate::destinations::bigquery_streaming::config::rows_per_request")]
    pub bq_max_rows_per_request: u32,
    /// Prefix of default table names (`_bizon_<source>_<stream>`); `''` for none.
    #[serde(default = "crate::google::table::default_table_prefix")]
    pub table_prefix: String,
    /// BigQuery's REST base URL (default Google's; tests and proxies override it).
    #[serde(default)]
    pub api_url: Option<String>,
    /// The Storage Write API's gRPC endpoint (default `https://bigquerystorage.googleapis.com`;
    /// `http://HOST:PORT` for a local emulator).
    #[serde(default)]
    pub storage_write_url: Option<String>,
    /// `protobuf` (default) or `arrow` (bizon's layout, not `unnest`).
    #[serde(default)]
    pub row_format: RowFormat,
    /// A record a typed column cannot hold: fail the run naming the record and the column
    /// (default), or write it with the error to the dead-letter file.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

/// The parsed config: own keys and the common keys the destination reads.
#[derive(Debug, Clone)]
pub struct StreamingV2Spec {
    pub config: StreamingV2Config,
    pub keys: DestinationKeys,
}

/// The `bigquery_streaming_v2` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "bigquery_streaming_v2",
    description: "BigQuery Storage Write API (gRPC, protobuf rows, appends with offsets), staged and published \
                  exactly once (stream mode: at-least-once across crashes)",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: false,
        typed_columns: true,
        lanes: true,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<StreamingV2Config>,
    schema: <StreamingV2Config as schemars::JsonSchema>::json_schema,
    parse,
};

const PATH: &str = "destination.config";

fn parse(node: &Node) -> Result<Arc<dyn DestinationSpec>, yaml::Error> {
    Ok(Arc::new(parse_spec(node)?))
}

/// `destination.config` parsed and validated (no I/O).
pub fn parse_spec(node: &Node) -> Result<StreamingV2Spec, yaml::Error> {
    let config: StreamingV2Config =
        own_keys(node, PATH, struct_fields::<DestinationCommon>(), struct_fields::<StreamingV2Config>())?;
    let keys = DestinationKeys::parse(node, PATH, struct_fields::<StreamingV2Config>())?;
    check_rows_per_request(node, config.bq_max_rows_per_request, "AppendRows")?;
    if let Some(url) = &config.storage_write_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(yaml::Error::new(
                format!("storage_write_url `{url}` is not an http:// or https:// URL"),
                node.get("storage_write_url").unwrap_or(node).mark,
                &format!("{PATH}.storage_write_url"),
            ));
        }
    }
    if config.row_format == RowFormat::Arrow && keys.unnest {
        return Err(yaml::Error::new(
            "row_format: arrow carries bizon's layout only; with `unnest` the typed columns go as protobuf \
             (remove row_format)",
            node.get("row_format").unwrap_or(node).mark,
            &format!("{PATH}.row_format"),
        ));
    }
    Ok(StreamingV2Spec { config, keys })
}

impl DestinationSpec for StreamingV2Spec {
    fn check(&self, _destination_id: &str) -> bizon_core::Result<String> {
        let c = &self.config;
        crate::google::table::check_dataset(&self.keys.key.0, c.api_url.as_deref(), &c.project_id, &c.dataset_id, true)
    }

    fn build(&self, destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(BigQueryStreamingV2::new(Arc::new(self.clone()), destination_id))
    }

    fn column_type(&self, kind: &str) -> Result<String, ConfigError> {
        bq_type(kind).map(str::to_owned).map_err(|_| ConfigError::UnsupportedColumnType(kind.to_owned()))
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.config.on_error, &self.config.dead_letter_path, destination_id)
    }
}
