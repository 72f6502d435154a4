//! `logger` destination: logs each record's data, like bizon's. Stores nothing.

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::SyncMode;
use bizon_core::{BatchMeta, Destination, DestinationContext, DestinationCursor, Guarantee, Json, RecordBatch, Result};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    /// Accepted for compatibility with bizon's examples (`dummy: dummy`); unused.
    #[serde(default)]
    pub dummy: Option<String>,
}

/// The `logger` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "logger",
    description: "logs each record (stores nothing)",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::None,
        transactional: false,
        typed_columns: false,
        lanes: true,
        dead_letters: false,
        network: false,
    },
    keys: struct_fields::<LoggerConfig>,
    schema: <LoggerConfig as schemars::JsonSchema>::json_schema,
    parse: parse_destination::<LoggerConfig>,
};

impl DestinationSpec for LoggerConfig {
    fn build(&self, _destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::<LoggerDestination>::default()
    }

    fn check(&self, _destination_id: &str) -> Result<String> {
        Ok(String::from("logs each record; nothing to connect to"))
    }
}

#[derive(Default)]
pub struct LoggerDestination {
    mode: SyncMode,
    records: u64,
}

impl Destination for LoggerDestination {
    fn open(&mut self, ctx: &DestinationContext, _resume: Option<&Json>) -> Result<Json> {
        self.mode = ctx.sync_mode;
        Ok(json!({}))
    }

    fn write(&mut self, batch: &RecordBatch, _meta: &BatchMeta) -> Result<()> {
        for r in batch.iter() {
            tracing::info!(target: "bizon::destination::logger", "[{}] {}", self.mode.as_str(), String::from_utf8_lossy(r.data));
        }
        self.records += batch.len() as u64;
        Ok(())
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        Ok(json!({"records": self.records}))
    }

    fn finalize(&mut self) -> Result<()> {
        tracing::info!(target: "bizon::destination::logger", "logger destination: {} sync completed", self.mode.as_str());
        Ok(())
    }
}
