//! `engine:` — the backend, the queue and the runner, with bizon's keys and defaults. Backends
//! and broker queues are picked from the registry by `type` and parse their own keys.

use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, Node};
use bizon_core::config::{RunnerConfig, RunnerType};
use serde::Deserialize;

use super::{err, lookup};
use crate::descriptor::{BackendFields, BackendSpec, BrokerSpec};
use crate::registry;

/// Default in-memory queue bound: enough pages in flight to keep both threads busy, small
/// enough to keep peak memory flat.
pub const DEFAULT_QUEUE_MB: u64 = 8;

/// Save the producer's source cursor every this many iterations (bizon's `syncCursorInDBEvery`).
pub const DEFAULT_SYNC_CURSOR_EVERY: u64 = 10;

/// The in-memory queue's names: ours and bizon's.
pub(super) const MEMORY_QUEUES: &[&str] = &["memory", "python_queue"];

#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub backend: BackendSection,
    pub queue: QueueSpec,
    pub runner: RunnerConfig,
}

#[derive(Debug, Clone)]
pub struct BackendSection {
    pub spec: Arc<dyn BackendSpec>,
    /// Save the producer's source cursor every this many iterations (bizon's name).
    pub sync_cursor_in_db_every: u64,
}

#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Bound of the in-memory queue in bytes (backpressure, never an error).
    pub max_bytes: u64,
    /// Bound in messages (bizon's `max_size`; 0 = no count bound).
    pub max_messages: u64,
    /// An external queue; `None` = in memory.
    pub broker: Option<Arc<dyn BrokerSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineKeys {
    #[serde(default)]
    runner: Option<RunnerConfig>,
}

/// `engine.backend`: bizon accepts the connection keys under `config:` or beside `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendKeys {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<BackendFields>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default, rename = "syncCursorInDBEvery")]
    sync_every: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryQueueKeys {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(default)]
    config: Option<MemoryQueueDetails>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryQueueDetails {
    #[serde(default)]
    max_nb_messages: Option<u64>,
    /// bizon's bound of the queue in bytes.
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    queue: Option<MemoryQueueBounds>,
    #[serde(default)]
    consumer: Option<MemoryQueueConsumer>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryQueueBounds {
    /// bizon: max messages (0 = unbounded in count).
    #[serde(default)]
    max_size: Option<u64>,
    /// Ours: max bytes held by the queue, in MB.
    #[serde(default)]
    max_size_mb: Option<u64>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryQueueConsumer {
    /// bizon's polling interval of its Python queue: accepted, no effect.
    #[serde(default)]
    poll_interval: Option<f64>,
}

/// JSON Schema of the in-memory queue's `engine.queue.config` (`bizon config schema`).
pub(super) fn memory_queue_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    <MemoryQueueDetails as schemars::JsonSchema>::json_schema(g)
}

/// The engine of a config without `engine:`: SQLite in `./bizon.db`, the in-memory queue, the
/// thread runner.
fn defaults() -> Result<EngineSpec, yaml::Error> {
    let node = Node::new(yaml::Value::Null, Default::default());
    let sqlite = (crate::backends::sqlite::DESCRIPTOR.parse)(&BackendFields::default(), &node)?;
    Ok(EngineSpec {
        backend: BackendSection { spec: sqlite, sync_cursor_in_db_every: DEFAULT_SYNC_CURSOR_EVERY },
        queue: QueueSpec { max_bytes: DEFAULT_QUEUE_MB << 20, max_messages: 0, broker: None },
        runner: RunnerConfig::default(),
    })
}

pub(super) fn parse(node: Option<&Node>, warnings: &mut Vec<yaml::Error>) -> Result<EngineSpec, yaml::Error> {
    let spec = parse_sections(node, warnings)?;
    if spec.runner.kind == RunnerType::Process && spec.queue.broker.is_none() {
        // bizon runs its process runner over a multiprocessing queue; one process here does what
        // it is for (producer and consumer on cores of their own)
        let at = node.and_then(|n| n.get("runner")).map(|r| r.get("type").unwrap_or(r));
        if let Some(at) = at {
            warnings.push(err(PROCESS_IN_MEMORY, at, "engine.runner.type"));
        }
    }
    Ok(spec)
}

/// Why `runner: process` with the in-memory queue runs the thread runner (a config warning, and
/// the run's log line for `--runner process`).
pub const PROCESS_IN_MEMORY: &str = "runner `process` with the in-memory queue runs as `thread` here: producer and \
     consumer on threads of one process, each on a core of its own (what bizon's process runner is for); separate \
     processes need a broker queue (engine.queue.type rabbitmq or kafka)";

fn parse_sections(node: Option<&Node>, warnings: &mut Vec<yaml::Error>) -> Result<EngineSpec, yaml::Error> {
    let mut spec = defaults()?;
    let Some(node) = node.filter(|n| n.value != yaml::Value::Null) else { return Ok(spec) };
    let keys: EngineKeys = from_node(node, "engine", &["backend", "queue"])?;
    spec.runner = keys.runner.unwrap_or_default();

    if let Some(b) = node.get("backend").filter(|n| n.value != yaml::Value::Null) {
        let keys: BackendKeys = from_node(b, "engine.backend", &[])?;
        let type_node = b.get("type").unwrap_or(b);
        let mut fields = keys.config.unwrap_or_default();
        fields.database = fields.database.or(keys.database);
        fields.schema = fields.schema.or(keys.schema);
        let every = fields.sync_every.or(keys.sync_every).unwrap_or(DEFAULT_SYNC_CURSOR_EVERY);
        if every == 0 {
            return Err(err("`syncCursorInDBEvery` must be at least 1", b, "engine.backend"));
        }
        let backend = lookup(
            "backend type",
            registry::BACKENDS,
            registry::PLANNED_BACKENDS,
            &keys.kind,
            type_node,
            "engine.backend.type",
        )?;
        let at = b.get("config").unwrap_or(b);
        spec.backend = BackendSection { spec: (backend.parse)(&fields, at)?, sync_cursor_in_db_every: every };
    }

    if let Some(q) = node.get("queue").filter(|n| n.value != yaml::Value::Null) {
        let type_node = q.get("type").ok_or_else(|| err("missing required key `type`", q, "engine.queue"))?;
        let kind: String = from_node(type_node, "engine.queue.type", &[])?;
        if !MEMORY_QUEUES.contains(&kind.as_str()) {
            let queue = registry::find(registry::QUEUES, &[], &kind).map_err(|m| {
                let mut msg = registry::missing_message("queue type", &kind, registry::QUEUES, &m);
                if matches!(m, registry::Missing::Unknown { .. }) {
                    msg.push_str(&format!(", {}", MEMORY_QUEUES.join(", ")));
                }
                err(msg, type_node, "engine.queue.type")
            })?;
            spec.queue.broker = Some((queue.parse)(q)?);
            if let Some((k, _)) =
                q.get("config").and_then(|c| c.entries().iter().find(|(k, _)| k.as_str() == Some("max_bytes")))
            {
                warnings.push(err(
                    format!("`max_bytes` has no effect on the `{kind}` queue: the broker holds the messages"),
                    k,
                    "engine.queue.config.max_bytes",
                ));
            }
            return Ok(spec);
        }
        let keys: MemoryQueueKeys = from_node(q, "engine.queue", &[])?;
        let details = keys.config.unwrap_or_default();
        let bounds = details.queue.unwrap_or_default();
        let _ = details.consumer.and_then(|c| c.poll_interval);
        spec.queue.max_messages = bounds.max_size.or(details.max_nb_messages).unwrap_or(0);
        if let Some(bytes) = details.max_bytes {
            spec.queue.max_bytes = bytes.max(1);
        }
        if let Some(mb) = bounds.max_size_mb {
            spec.queue.max_bytes = mb.max(1) << 20;
        }
    }
    Ok(spec)
}
