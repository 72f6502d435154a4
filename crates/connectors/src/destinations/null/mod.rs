//! `null` destination: discards records. Measures the engine alone, and doubles as the
//! fault-injecting destination of the test kit (`fail_rate`, `latency_ms`).

use std::time::Duration;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Guarantee, Json, RecordBatch, Result,
};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {
    /// Probability (0..1) that a write fails with a transient error.
    #[serde(default)]
    pub fail_rate: f64,
    /// Delay added to every write, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Seed of the failure draws (same seed, same failures).
    #[serde(default)]
    pub seed: u64,
}

/// The `null` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "null",
    description: "discards records; fault injection with fail_rate / latency_ms",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::None,
        transactional: false,
        typed_columns: false,
        lanes: true,
        dead_letters: false,
        network: false,
    },
    keys: struct_fields::<NullConfig>,
    schema: <NullConfig as schemars::JsonSchema>::json_schema,
    parse: parse_destination::<NullConfig>,
};

impl DestinationSpec for NullConfig {
    fn validate(&self, node: &Node) -> std::result::Result<(), yaml::Error> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            let at = node.get("fail_rate").unwrap_or(node);
            return Err(yaml::Error::new(
                "`fail_rate` must be between 0 and 1",
                at.mark,
                "destination.config.fail_rate",
            ));
        }
        Ok(())
    }

    fn build(&self, _destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(NullDestination::new(self.clone()))
    }

    fn check(&self, _destination_id: &str) -> Result<String> {
        Ok(String::from("discards records; nothing to connect to"))
    }
}

pub struct NullDestination {
    config: NullConfig,
    rng: u64,
    records: u64,
    /// Records acknowledged by a flush: what a real destination would hold.
    pub committed: u64,
}

impl NullDestination {
    pub fn new(config: NullConfig) -> Self {
        let rng = config.seed ^ 0x5DEE_CE66_D1CE_5EED;
        NullDestination { config, rng, records: 0, committed: 0 }
    }

    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Destination for NullDestination {
    fn open(&mut self, _ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.records = resume.and_then(|t| t.get("records")).and_then(Json::as_u64).unwrap_or(0);
        self.committed = self.records;
        Ok(json!({"records": self.records}))
    }

    fn write(&mut self, batch: &RecordBatch, _meta: &BatchMeta) -> Result<()> {
        if self.config.latency_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.latency_ms));
        }
        if self.config.fail_rate > 0.0 && self.draw() < self.config.fail_rate {
            return Err(Error::transient("null destination: injected write failure (fail_rate)"));
        }
        self.records += batch.len() as u64;
        Ok(())
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        self.committed = self.records;
        Ok(json!({"records": self.records}))
    }

    fn finalize(&mut self) -> Result<()> {
        Ok(())
    }
}
