//! The `kafka` source's config (bizon's keys, their defaults) and its registry descriptor.

use std::collections::BTreeMap;

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{OnError, SourceCommon, SyncMode};
use bizon_core::{Json, Source};
use serde::Deserialize;

use super::KafkaSource;
use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;

pub const STREAMS: &[&str] = &["topic"];

/// Tombstones are skipped unless `skip_message_empty_value: false` (bizon's default).
fn yes() -> bool {
    true
}
/// The consumer group when `group_id` is not set (bizon's).
fn default_group() -> String {
    "bizon".into()
}
/// Messages per page when `batch_size` is not set (bizon's).
fn default_batch() -> usize {
    100
}
/// Seconds a bounded read waits for a message when `consumer_timeout` is not set (bizon's).
fn default_timeout() -> u64 {
    10
}

/// bizon's `topics` entry.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    #[serde(default)]
    pub destination_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
pub enum Encoding {
    /// JSON text (bizon's `utf-8`).
    #[serde(rename = "utf-8", alias = "utf8", alias = "json")]
    Json,
    /// Avro in the schema-registry wire format (bizon's default).
    #[default]
    #[serde(rename = "avro")]
    Avro,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Topics to read (bizon); with `streams:` they come from the streams' `source.topic`.
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    /// One topic (shorthand for `topics: [{name: …}]`).
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(alias = "bootstrap_server")]
    pub bootstrap_servers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Skip tombstones (messages without a value), as bizon does by default.
    #[serde(default = "yes")]
    pub skip_message_empty_value: bool,
    /// Skip messages whose key is not JSON (logged with their offset) instead of `on_error`.
    #[serde(default)]
    pub skip_message_invalid_keys: bool,
    /// Skip messages whose value cannot be decoded (logged with their offset) instead of `on_error`.
    #[serde(default)]
    pub skip_message_on_decode_error: bool,
    /// Messages per page (iteration) at most.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds a bounded read waits for a message before it ends (bizon's `consumer_timeout`).
    #[serde(default = "default_timeout")]
    pub consumer_timeout: u64,
    /// librdkafka properties (`auto.offset.reset`, `security.protocol`, …), as bizon passes them.
    #[serde(default)]
    pub consumer_config: BTreeMap<String, Json>,
    #[serde(default)]
    pub message_encoding: Encoding,
    /// bizon's explicit schema-id width; the width is read from each message here.
    #[serde(default)]
    pub nb_bytes_schema_id: Option<u8>,
    /// bizon key for its BigQuery streaming destination; accepted.
    #[serde(default)]
    pub timestamp_ms_name: Option<String>,
    /// Values are Debezium change events: each record is the flattened row (see `decode`).
    #[serde(default)]
    pub debezium: bool,
    #[serde(default)]
    pub on_error: OnError,
    /// The dead-letter file of `on_error: dead_letter` (default `<destination_id>_dead_letter.json`).
    #[serde(default)]
    pub dead_letter_path: Option<String>,
    /// Read the topics with several `bizon run` processes at once: each partition is a lane its
    /// process leases through the shared backend and commits with its data; processes joining or
    /// dying re-balance the partitions (not bizon: its runs read every partition in one process).
    #[serde(default)]
    pub lease_partitions: bool,
}

/// The `kafka` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "kafka",
    description: "topics (JSON, Avro + schema registry, Debezium); offsets committed with the data",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental, SyncMode::Stream],
    capabilities: SourceCapabilities { own_position: true, dead_letters: true, network: true },
    keys: struct_fields::<KafkaSourceConfig>,
    schema: <KafkaSourceConfig as schemars::JsonSchema>::json_schema,
    parse: parse_source::<KafkaSourceConfig>,
};

impl SourceSpec for KafkaSourceConfig {
    fn build(&self, common: &SourceCommon, routes: &[String]) -> Box<dyn Source> {
        Box::new(KafkaSource::new(self.clone(), common.authentication.clone(), routes))
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.on_error, &self.dead_letter_path, destination_id)
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::AtLeastOne { key: "batch_size" });
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::Empty { key: "bootstrap_servers" });
        }
        Ok(())
    }
}

impl KafkaSourceConfig {
    /// The topics to read: `topics`, `topic`, then the `streams:` topics.
    pub fn topic_names(&self, streams: &[String]) -> Vec<String> {
        let mut names: Vec<String> = self.topics.iter().map(|t| t.name.clone()).collect();
        names.extend(self.topic.clone());
        for s in streams {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
        names
    }
}
