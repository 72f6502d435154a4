//! External queues between producer and consumer (`engine.queue.type`): RabbitMQ and Kafka, each
//! behind its cargo feature. The in-memory queue is the engine's own (`memory`, bizon's
//! `python_queue`).

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

use bizon_core::config::yaml::{self, from_node, Node};
use serde::Deserialize;

/// `engine.queue` of a broker: bizon's `config.queue` / `config.consumer` shapes, whose own keys
/// (`Q`, `C`) differ per broker.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "Q: Deserialize<'de>, C: Deserialize<'de> + Default"))]
struct BrokerKeys<Q, C> {
    #[serde(rename = "type")]
    _kind: String,
    config: BrokerDetails<Q, C>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "Q: Deserialize<'de>, C: Deserialize<'de> + Default"))]
#[schemars(bound = "Q: schemars::JsonSchema, C: schemars::JsonSchema + Default")]
struct BrokerDetails<Q, C> {
    /// bizon's bound on queued messages: the broker holds them here, so it is accepted and unused.
    #[serde(default)]
    max_nb_messages: Option<u64>,
    /// bizon's bound of the queue in bytes: the broker holds the messages; accepted with a warning.
    #[serde(default)]
    max_bytes: Option<u64>,
    /// Ours: ordered lanes the pages are spread over, one consumer each (default 1).
    #[serde(default)]
    lanes: Option<usize>,
    queue: Q,
    #[serde(default)]
    consumer: C,
}

/// JSON Schema of a broker's `engine.queue.config` with its own `queue` / `consumer` keys.
#[allow(dead_code)] // used by the feature-gated brokers only
pub(crate) fn config_schema<Q: schemars::JsonSchema, C: schemars::JsonSchema + Default>(
    g: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    <BrokerDetails<Q, C> as schemars::JsonSchema>::json_schema(g)
}

/// Most lanes a broker queue may have.
pub const MAX_LANES: usize = 64;

/// A broker's `engine.queue` section: its queue keys, consumer keys and lanes.
#[allow(dead_code)] // unused in builds without a broker feature
pub(crate) fn broker_keys<Q, C>(queue: &Node) -> Result<(Q, C, usize), yaml::Error>
where
    Q: for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de> + Default,
{
    let keys: BrokerKeys<Q, C> = from_node(queue, "engine.queue", &[])?;
    let _ = (keys.config.max_nb_messages, keys.config.max_bytes);
    let lanes = match keys.config.lanes {
        None => 1,
        Some(n) if (1..=MAX_LANES).contains(&n) => n,
        Some(n) => {
            let at = queue.get("config").and_then(|c| c.get("lanes")).unwrap_or(queue);
            return Err(yaml::Error::new(
                format!("`lanes` must be between 1 and {MAX_LANES}, not {n}"),
                at.mark,
                "engine.queue.config.lanes",
            ));
        }
    };
    Ok((keys.config.queue, keys.config.consumer, lanes))
}
