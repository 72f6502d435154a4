//! The top-level config loader: bizon's YAML → [`BizonConfig`], in two pure steps (STYLE rule 2):
//! parse (YAML, placeholders, typed sections; errors with file:line:column) then validate
//! (cross-field rules). Nothing here opens a file other than the config or touches the network.

use std::path::PathBuf;

use bizon_core::config::interp::{self, Env};
use bizon_core::config::yaml::{self, from_node, Mark, Node};
use bizon_core::config::{
    AlertingConfig, DestinationCommon, MonitoringConfig, RunnerConfig, RunnerType, SecretsConfig, SourceCommon,
    StreamConfig, SyncMode, TransformConfig,
};
use bizon_core::Json;
use serde::Deserialize;

use crate::queues::kafka::{KafkaConsumerConfig, KafkaQueueConfig};
use crate::queues::rabbitmq::{RabbitConsumerConfig, RabbitQueueConfig};
use crate::registry::{DestinationConfig, DestinationKind, SourceConfig, SourceKind};

pub const TOP_LEVEL_KEYS: &[&str] =
    &["name", "source", "destination", "engine", "transforms", "streams", "monitoring", "alerting", "secrets"];

#[derive(Debug, Clone)]
pub struct BizonConfig {
    pub name: String,
    pub source_kind: SourceKind,
    pub source: SourceCommon,
    pub source_config: SourceConfig,
    pub destination: DestinationSpec,
    pub engine: EngineSpec,
    pub transforms: Vec<TransformConfig>,
    pub streams: Vec<StreamConfig>,
    pub monitoring: Option<MonitoringConfig>,
    pub alerting: Option<AlertingConfig>,
    pub secrets: Option<SecretsConfig>,
    /// The resolved tree, for `config show` (masked there).
    pub root: Node,
}

impl BizonConfig {
    /// The topics of the `streams:` entries, in order (entry `i` is route `i`).
    pub fn stream_topics(&self) -> Vec<String> {
        self.streams.iter().filter_map(|s| s.source.get("topic").and_then(Json::as_str).map(str::to_owned)).collect()
    }

    /// The destination of the run: the configured one, or a router over one target per
    /// `streams:` entry and the source's dead-letter file.
    pub fn build_destination(&self) -> Result<Box<dyn bizon_core::Destination>, String> {
        use crate::destinations::router::{Part, Router, Takes};
        let spec = &self.destination;
        let id = spec.destination_id(&self.source.stream);
        let typed = spec.typed_columns(&self.source.stream).transpose()?;
        let dead_letter = self.source_config.dead_letter_path(&id).or_else(|| match &spec.config {
            DestinationConfig::Postgres(c) => crate::registry::dead_letter_file(c.on_error, &c.dead_letter_path, &id),
            _ => None,
        });
        if self.streams.is_empty() && dead_letter.is_none() {
            return Ok(spec.config.build(&id, typed));
        }
        let transactional = spec.kind == DestinationKind::Postgres;
        let mut parts = Vec::new();
        if self.streams.is_empty() {
            parts.push(Part {
                name: id.clone(),
                takes: Takes::Route(0),
                destination: spec.config.build(&id, typed),
                transactional,
            });
        } else {
            let targets = self.streams.iter().map(stream_target).collect::<Result<Vec<_>, String>>()?;
            match &spec.config {
                DestinationConfig::Postgres(c) => parts.push(Part {
                    name: "tables".into(),
                    takes: Takes::AllButDeadLetters,
                    destination: Box::new(crate::destinations::postgres::PostgresDestination::routed(c, targets)),
                    transactional,
                }),
                other => {
                    for (i, (name, _)) in targets.into_iter().enumerate() {
                        let destination = match other {
                            DestinationConfig::File(c) => {
                                let path = self.streams[i].destination.get("path").and_then(Json::as_str);
                                let c = crate::destinations::file::FileConfig {
                                    path: path.map(str::to_owned),
                                    ..c.clone()
                                };
                                DestinationConfig::File(c).build(&name, None)
                            }
                            o => o.build(&name, None),
                        };
                        parts.push(Part { name, takes: Takes::Route(i as u16), destination, transactional: false });
                    }
                }
            }
        }
        if let Some(path) = dead_letter {
            let c = crate::destinations::file::FileConfig { path: Some(path.clone()), ..Default::default() };
            parts.push(Part {
                name: format!("dead letters ({path})"),
                takes: Takes::Route(bizon_core::record::DEAD_LETTER),
                destination: Box::new(crate::destinations::file::FileDestination::new(&c, &path)),
                transactional: false,
            });
        }
        Ok(Box::new(Router::new(parts).map_err(|e| e.to_string())?))
    }
}

/// A `streams:` entry's target: the last part of `table_id` (bizon writes `project.dataset.table`)
/// and, with a `record_schema`, its typed columns.
fn stream_target(s: &StreamConfig) -> Result<crate::destinations::postgres::TableSpec, String> {
    let table_id = s.destination.get("table_id").and_then(Json::as_str).unwrap_or(&s.name);
    let table = table_id.rsplit('.').next().unwrap_or(table_id).to_owned();
    let typed = match s.destination.get("record_schema").and_then(Json::as_array) {
        None => None,
        Some(cols) => Some(
            cols.iter()
                .map(|c| {
                    let name = c.get("name").and_then(Json::as_str);
                    let kind = c.get("type").and_then(Json::as_str);
                    match (name, kind) {
                        (Some(n), Some(k)) => crate::destinations::postgres::pg_type(k).map(|t| (n.to_owned(), t)),
                        _ => Err(format!("stream `{}`: each record_schema column needs `name` and `type`", s.name)),
                    }
                })
                .collect::<Result<Vec<_>, String>>()?,
        ),
    };
    Ok((table, typed))
}

#[derive(Debug, Clone)]
pub struct DestinationSpec {
    pub kind: DestinationKind,
    pub alias: Option<String>,
    pub common: DestinationCommon,
    pub config: DestinationConfig,
}

impl DestinationSpec {
    /// What names the output: `destination_id`, else the stream name.
    pub fn destination_id(&self, stream: &str) -> String {
        self.common.destination_id.clone().unwrap_or_else(|| stream.to_owned())
    }

    /// With `unnest: true`: the (name, PostgreSQL type) columns of this destination's
    /// `record_schemas` entry; `None` when there is no entry for it.
    pub fn typed_columns(&self, stream: &str) -> Option<Result<Vec<(String, String)>, String>> {
        if !self.common.unnest {
            return None;
        }
        let id = self.destination_id(stream);
        let schema = self.common.record_schemas.as_ref()?.iter().find(|s| s.destination_id == id)?;
        Some(
            schema
                .record_schema
                .iter()
                .map(|c| crate::destinations::postgres::pg_type(&c.kind).map(|t| (c.name.clone(), t)))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|m| format!("record_schemas `{id}`: {m}")),
        )
    }
}

#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub backend: BackendSpec,
    pub queue: QueueSpec,
    pub runner: RunnerConfig,
}

#[derive(Debug, Clone)]
pub enum BackendKind {
    /// A SQLite database file.
    Sqlite(PathBuf),
    SqliteInMemory,
    /// PostgreSQL; `lease` = how long a silent lock holder keeps the pipeline.
    Postgres(crate::pg::PgConnection, std::time::Duration),
}

impl PartialEq for BackendKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BackendKind::Sqlite(a), BackendKind::Sqlite(b)) => a == b,
            (BackendKind::SqliteInMemory, BackendKind::SqliteInMemory) => true,
            (BackendKind::Postgres(a, _), BackendKind::Postgres(b, _)) => a.describe() == b.describe(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub kind: BackendKind,
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
    pub broker: Option<BrokerSpec>,
}

#[derive(Debug, Clone)]
pub enum BrokerSpec {
    /// The last field: lanes.
    RabbitMq(RabbitQueueConfig, RabbitConsumerConfig, usize),
    Kafka(KafkaQueueConfig, KafkaConsumerConfig, usize),
}

impl BrokerSpec {
    pub fn lanes(&self) -> usize {
        match self {
            BrokerSpec::RabbitMq(_, _, n) | BrokerSpec::Kafka(_, _, n) => *n,
        }
    }

    pub fn build(&self) -> bizon_core::Result<Box<dyn bizon_core::QueueBroker>> {
        match self {
            BrokerSpec::RabbitMq(q, c, n) => {
                Ok(Box::new(crate::queues::rabbitmq::RabbitBroker::new(q.clone(), c, *n)?))
            }
            BrokerSpec::Kafka(q, c, n) => {
                Ok(Box::new(crate::queues::kafka::KafkaBroker::new(q.clone(), c.clone(), *n)))
            }
        }
    }
}

/// `engine.queue` of a broker: bizon's `config.queue` / `config.consumer` shapes, whose own keys
/// (`Q`, `C`) differ per broker.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "Q: Deserialize<'de>, C: Deserialize<'de> + Default"))]
struct BrokerKeys<Q, C> {
    #[serde(rename = "type")]
    _kind: String,
    config: BrokerDetails<Q, C>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "Q: Deserialize<'de>, C: Deserialize<'de> + Default"))]
struct BrokerDetails<Q, C> {
    /// bizon's bound on queued messages: the broker holds them here, so it is accepted and unused.
    #[serde(default)]
    max_nb_messages: Option<u64>,
    /// Ours: ordered lanes the pages are spread over, one consumer each (default 1).
    #[serde(default)]
    lanes: Option<usize>,
    queue: Q,
    #[serde(default)]
    consumer: C,
}

/// A broker's `engine.queue` section: its queue keys, consumer keys and lanes.
fn broker_keys<Q, C>(queue: &Node) -> Result<(Q, C, usize), yaml::Error>
where
    Q: for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de> + Default,
{
    let keys: BrokerKeys<Q, C> = from_node(queue, "engine.queue", &[])?;
    let _ = keys.config.max_nb_messages;
    let lanes = lanes_of(keys.config.lanes, queue)?;
    Ok((keys.config.queue, keys.config.consumer, lanes))
}

pub const BACKEND_TYPES: &[&str] = &["sqlite", "sqlite_in_memory", "postgres"];
pub const PLANNED_BACKENDS: &[&str] = &["bigquery"];
pub const QUEUE_TYPES: &[&str] = &["python_queue", "memory", "rabbitmq", "kafka"];
pub const PLANNED_QUEUES: &[&str] = &[];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineKeys {
    #[serde(default)]
    runner: Option<RunnerConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendDetails {
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default, rename = "syncCursorInDBEvery")]
    sync_every: Option<u64>,
    #[serde(default, rename = "echoEngine")]
    _echo_engine: Option<bool>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    sslmode: Option<crate::pg::SslMode>,
    #[serde(default)]
    sslrootcert: Option<String>,
    /// postgres: seconds without a heartbeat after which another run may take the pipeline over.
    #[serde(default)]
    lease_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendKeys {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<BackendDetails>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemoryQueueDetails {
    #[serde(default)]
    max_nb_messages: Option<u64>,
    #[serde(default)]
    queue: Option<MemoryQueueBounds>,
    #[serde(default)]
    consumer: Option<MemoryQueueConsumer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemoryQueueBounds {
    /// bizon: max messages (0 = unbounded in count).
    #[serde(default)]
    max_size: Option<u64>,
    /// Ours: max bytes held by the queue, in MB.
    #[serde(default)]
    max_size_mb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemoryQueueConsumer {
    #[serde(default)]
    poll_interval: Option<f64>,
}

/// Default in-memory queue bound: enough pages in flight to keep both threads busy, small
/// enough to keep peak memory flat.
pub const DEFAULT_QUEUE_MB: u64 = 8;

fn err(msg: impl Into<String>, node: &Node, path: &str) -> yaml::Error {
    yaml::Error::new(msg, node.mark, path)
}

fn choose(what: &str, value: &str, allowed: &[&str], planned: &[&str], node: &Node, path: &str) -> yaml::Error {
    if planned.contains(&value) {
        return err(
            format!("{what} `{value}` is not available in this build yet; available: {}", allowed.join(", ")),
            node,
            path,
        );
    }
    let hint = bizon_core::suggest::closest(value, allowed.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    err(format!("unknown {what} `{value}`{hint} Available: {}", allowed.join(", ")), node, path)
}

/// Parse and validate a config text. `env` resolves placeholders.
pub fn load(text: &str, env: &dyn Env) -> Result<BizonConfig, yaml::Error> {
    let mut root = yaml::parse(text)?;
    let top = Mark { line: 1, col: 1 };
    match &root.value {
        yaml::Value::Map(_) => {}
        yaml::Value::Null => {
            return Err(yaml::Error::new(
                "the config is empty: expected a mapping with `name`, `source` and `destination`",
                top,
                "",
            ))
        }
        _ => return Err(err(format!("expected a mapping at the top level, found {}", root.kind_name()), &root, "")),
    }
    interp::resolve(&mut root, env, "")?;
    for (k, _) in root.entries() {
        let key = k.as_str().unwrap_or_default();
        if !TOP_LEVEL_KEYS.contains(&key) {
            let hint = bizon_core::suggest::closest(key, TOP_LEVEL_KEYS.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(err(format!("unknown key `{key}`{hint} Valid keys: {}", TOP_LEVEL_KEYS.join(", ")), k, key));
        }
    }
    let required = |key: &str| {
        root.get(key)
            .filter(|n| n.value != yaml::Value::Null)
            .ok_or_else(|| yaml::Error::new(format!("missing required key `{key}`"), root.mark, ""))
    };
    let name: String = from_node(required("name")?, "name", &[])?;
    if name.trim().is_empty() {
        return Err(err("`name` must not be empty", required("name")?, "name"));
    }

    // source: common keys + the connector's own, picked by `name`.
    let src = required("source")?;
    if !matches!(src.value, yaml::Value::Map(_)) {
        return Err(err(format!("expected a mapping, found {}", src.kind_name()), src, "source"));
    }
    let src_name_node = src.get("name").ok_or_else(|| err("missing required key `name`", src, "source"))?;
    let src_name: String = from_node(src_name_node, "source.name", &[])?;
    let source_kind = SourceKind::from_name(&src_name)
        .ok_or_else(|| choose("source", &src_name, &SourceKind::names(), &[], src_name_node, "source.name"))?;
    let source_config = SourceConfig::parse(source_kind, src)?;
    let source: SourceCommon = from_node(src, "source", source_kind.own_fields())?;

    // destination: { name, alias?, config }.
    let dst = required("destination")?;
    for (k, _) in dst.entries() {
        let key = k.as_str().unwrap_or_default();
        if !["name", "alias", "config"].contains(&key) {
            let hint = bizon_core::suggest::closest(key, ["name", "alias", "config"])
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(err(
                format!(
                    "unknown key `{key}`{hint} Valid keys: name, alias, config (connector options go under `config`)"
                ),
                k,
                &format!("destination.{key}"),
            ));
        }
    }
    let dst_name_node = dst.get("name").ok_or_else(|| err("missing required key `name`", dst, "destination"))?;
    // `name: null` parses as YAML's null: read it as the `null` destination it names.
    let dst_name: String = match dst_name_node.value {
        yaml::Value::Null => "null".into(),
        _ => from_node(dst_name_node, "destination.name", &[])?,
    };
    let kind = DestinationKind::from_name(&dst_name).ok_or_else(|| {
        choose(
            "destination",
            &dst_name,
            &DestinationKind::names(),
            &["bigquery", "bigquery_streaming", "bigquery_streaming_v2"],
            dst_name_node,
            "destination.name",
        )
    })?;
    let alias: Option<String> = match dst.get("alias") {
        Some(n) => from_node(n, "destination.alias", &[])?,
        None => None,
    };
    let empty = Node::new(yaml::Value::Null, dst.mark);
    let dst_cfg = dst.get("config").unwrap_or(&empty);
    let config = DestinationConfig::parse(kind, dst_cfg)?;
    let common: DestinationCommon = from_node(dst_cfg, "destination.config", kind.own_fields())?;
    let destination = DestinationSpec { kind, alias, common, config };

    let engine = parse_engine(root.get("engine"))?;
    let opt = |key: &str| root.get(key).filter(|n| n.value != yaml::Value::Null);
    let transforms: Vec<TransformConfig> =
        opt("transforms").map(|n| from_node(n, "transforms", &[])).transpose()?.unwrap_or_default();
    let streams: Vec<StreamConfig> =
        opt("streams").map(|n| from_node(n, "streams", &[])).transpose()?.unwrap_or_default();
    let monitoring = opt("monitoring").map(|n| from_node(n, "monitoring", &[])).transpose()?;
    let alerting = opt("alerting").map(|n| from_node(n, "alerting", &[])).transpose()?;
    let secrets = opt("secrets").map(|n| from_node(n, "secrets", &[])).transpose()?;

    let cfg = BizonConfig {
        name,
        source_kind,
        source,
        source_config,
        destination,
        engine,
        transforms,
        streams,
        monitoring,
        alerting,
        secrets,
        root,
    };
    validate(&cfg)?;
    Ok(cfg)
}

fn parse_engine(node: Option<&Node>) -> Result<EngineSpec, yaml::Error> {
    let mut spec = EngineSpec {
        backend: BackendSpec { kind: BackendKind::Sqlite(PathBuf::from("bizon.db")), sync_cursor_in_db_every: 10 },
        queue: QueueSpec { max_bytes: DEFAULT_QUEUE_MB << 20, max_messages: 0, broker: None },
        runner: RunnerConfig::default(),
    };
    let Some(node) = node.filter(|n| n.value != yaml::Value::Null) else { return Ok(spec) };
    let keys: EngineKeys = from_node(node, "engine", &["backend", "queue"])?;
    spec.runner = keys.runner.unwrap_or_default();

    if let Some(b) = node.get("backend").filter(|n| n.value != yaml::Value::Null) {
        let keys: BackendKeys = from_node(b, "engine.backend", &[])?;
        let type_node = b.get("type").unwrap_or(b);
        let details = keys.config.unwrap_or(BackendDetails {
            database: None,
            schema: None,
            sync_every: None,
            _echo_engine: None,
            host: None,
            port: None,
            username: None,
            password: None,
            sslmode: None,
            sslrootcert: None,
            lease_seconds: None,
        });
        let database = details.database.clone().or(keys.database);
        let schema = details.schema.clone().or(keys.schema);
        let every = details.sync_every.or(keys.sync_every).unwrap_or(10);
        if every == 0 {
            return Err(err("`syncCursorInDBEvery` must be at least 1", b, "engine.backend"));
        }
        let kind = match keys.kind.as_str() {
            "sqlite" => {
                let db = database.unwrap_or_else(|| "bizon".into());
                let path = PathBuf::from(&db);
                BackendKind::Sqlite(if path.extension().is_some() { path } else { PathBuf::from(format!("{db}.db")) })
            }
            "sqlite_in_memory" => BackendKind::SqliteInMemory,
            "postgres" => {
                let cfg_node = b.get("config").unwrap_or(b);
                let conn = crate::pg::PgConnection {
                    host: details.host.clone().unwrap_or_else(|| "localhost".into()),
                    port: details.port.unwrap_or(5432),
                    database: database
                        .ok_or_else(|| err("missing required key `database`", cfg_node, "engine.backend.config"))?,
                    username: details.username.clone().unwrap_or_else(|| "postgres".into()),
                    password: details.password.clone(),
                    schema: schema.unwrap_or_else(|| "public".into()),
                    sslmode: details.sslmode.unwrap_or_default(),
                    sslrootcert: details.sslrootcert.clone(),
                };
                conn.validate().map_err(|m| err(m, cfg_node, "engine.backend.config.sslmode"))?;
                let lease = std::time::Duration::from_secs(details.lease_seconds.unwrap_or(30).max(1));
                BackendKind::Postgres(conn, lease)
            }
            other => {
                return Err(choose(
                    "backend type",
                    other,
                    BACKEND_TYPES,
                    PLANNED_BACKENDS,
                    type_node,
                    "engine.backend.type",
                ))
            }
        };
        spec.backend = BackendSpec { kind, sync_cursor_in_db_every: every };
    }

    if let Some(q) = node.get("queue").filter(|n| n.value != yaml::Value::Null) {
        let type_node = q.get("type").ok_or_else(|| err("missing required key `type`", q, "engine.queue"))?;
        let kind: String = from_node(type_node, "engine.queue.type", &[])?;
        if !QUEUE_TYPES.contains(&kind.as_str()) {
            return Err(choose("queue type", &kind, QUEUE_TYPES, PLANNED_QUEUES, type_node, "engine.queue.type"));
        }
        if kind == "rabbitmq" {
            let (queue, consumer, lanes) = broker_keys(q)?;
            spec.queue.broker = Some(BrokerSpec::RabbitMq(queue, consumer, lanes));
            return Ok(spec);
        }
        if kind == "kafka" {
            let (queue, consumer, lanes) = broker_keys(q)?;
            spec.queue.broker = Some(BrokerSpec::Kafka(queue, consumer, lanes));
            return Ok(spec);
        }
        let keys: MemoryQueueKeys = from_node(q, "engine.queue", &[])?;
        let details = keys.config.unwrap_or_default();
        let bounds = details.queue.unwrap_or_default();
        let _ = details.consumer.and_then(|c| c.poll_interval);
        spec.queue.max_messages = bounds.max_size.or(details.max_nb_messages).unwrap_or(0);
        if let Some(mb) = bounds.max_size_mb {
            spec.queue.max_bytes = mb.max(1) << 20;
        }
    }
    Ok(spec)
}

fn lanes_of(lanes: Option<usize>, queue: &Node) -> Result<usize, yaml::Error> {
    match lanes {
        None => Ok(1),
        Some(n) if (1..=64).contains(&n) => Ok(n),
        Some(n) => {
            let at = queue.get("config").and_then(|c| c.get("lanes")).unwrap_or(queue);
            Err(err(format!("`lanes` must be between 1 and 64, not {n}"), at, "engine.queue.config.lanes"))
        }
    }
}

/// Cross-field rules, each reported at the key that breaks it.
fn validate(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    let src = root.get("source").unwrap_or(root);
    let at = |key: &str| src.get(key).unwrap_or(src);
    let streams = cfg.source_kind.streams();
    if !streams.is_empty() && !streams.contains(&cfg.source.stream.as_str()) {
        let hint = bizon_core::suggest::closest(&cfg.source.stream, streams.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(err(
            format!(
                "source `{}` has no stream `{}`{hint} Available streams: {}",
                cfg.source_kind.name(),
                cfg.source.stream,
                streams.join(", ")
            ),
            at("stream"),
            "source.stream",
        ));
    }
    if let Some(path) = &cfg.source.source_file_path {
        return Err(err(
            format!(
                "custom Python sources (`source_file_path: {path}`) are not supported by bizon-rs; \
                 a source is a Rust module in crates/connectors/src/sources/<name> plus one registry entry"
            ),
            at("source_file_path"),
            "source.source_file_path",
        ));
    }
    match cfg.source.sync_mode {
        SyncMode::Incremental => {
            if cfg.source.cursor_field.is_none() && cfg.source_kind.needs_cursor_field() {
                return Err(err(
                    "`sync_mode: incremental` needs `cursor_field` (the field whose max value is the watermark, e.g. updated_at)",
                    at("sync_mode"),
                    "source.sync_mode",
                ));
            }
            if !cfg.source_kind.supports_incremental() {
                let ok: Vec<_> =
                    SourceKind::ALL.iter().filter(|k| k.supports_incremental()).map(|k| k.name()).collect();
                return Err(err(
                    format!(
                        "source `{}` cannot read incrementally; use `sync_mode: full_refresh` (sources with incremental: {})",
                        cfg.source_kind.name(),
                        ok.join(", ")
                    ),
                    at("sync_mode"),
                    "source.sync_mode",
                ));
            }
        }
        SyncMode::Stream if cfg.source_kind.supports_stream() => {}
        SyncMode::Stream => {
            return Err(err(
                format!(
                    "`sync_mode: stream` needs a streaming source (kafka); `{}` supports full_refresh{}",
                    cfg.source_kind.name(),
                    if cfg.source_kind.supports_incremental() { " and incremental" } else { "" }
                ),
                at("sync_mode"),
                "source.sync_mode",
            ))
        }
        SyncMode::FullRefresh => {}
    }
    if !cfg.streams.is_empty() && cfg.source.sync_mode != SyncMode::Stream {
        let n = root.get("streams").unwrap_or(root);
        return Err(err("`streams` routing requires `source.sync_mode: stream`", n, "streams"));
    }
    for (i, s) in cfg.streams.iter().enumerate() {
        let n = match root.get("streams").map(|l| &l.value) {
            Some(yaml::Value::Seq(items)) => items.get(i).unwrap_or(root),
            _ => root,
        };
        let path = format!("streams[{i}]");
        if s.source.get("topic").and_then(Json::as_str).is_none() {
            return Err(err(format!("stream `{}` needs `source.topic` (the Kafka topic it routes)", s.name), n, &path));
        }
        if s.destination.get("table_id").and_then(Json::as_str).is_none() {
            return Err(err(format!("stream `{}` needs `destination.table_id` (its table or file)", s.name), n, &path));
        }
    }
    if let Some(t) = cfg.transforms.first() {
        let n = root.get("transforms").unwrap_or(root);
        return Err(err(
            format!(
                "transform `{}`: inline Python transforms are not supported by bizon-rs; remove `transforms` \
                 (declarative transforms are planned) or reshape records in the source",
                t.label
            ),
            n,
            "transforms",
        ));
    }
    if cfg.destination.common.unnest && cfg.destination.common.record_schemas.as_ref().is_none_or(Vec::is_empty) {
        let dst = root.get("destination").and_then(|d| d.get("config")).unwrap_or(root);
        return Err(err(
            "`unnest: true` needs at least one entry in `record_schemas`",
            dst.get("unnest").unwrap_or(dst),
            "destination.config.unnest",
        ));
    }
    if cfg.destination.common.unnest {
        let dst = root.get("destination").and_then(|d| d.get("config")).unwrap_or(root);
        let id = cfg.destination.destination_id(&cfg.source.stream);
        match cfg.destination.typed_columns(&cfg.source.stream) {
            None => {
                return Err(err(
                    format!("`unnest: true` needs a `record_schemas` entry with `destination_id: {id}`"),
                    dst.get("record_schemas").unwrap_or(dst),
                    "destination.config.record_schemas",
                ))
            }
            Some(Err(m)) => {
                return Err(err(m, dst.get("record_schemas").unwrap_or(dst), "destination.config.record_schemas"))
            }
            Some(Ok(_)) => {}
        }
    }
    if cfg.destination.common.unnest
        && !matches!(cfg.destination.kind, DestinationKind::Logger | DestinationKind::Postgres)
    {
        let dst = root.get("destination").and_then(|d| d.get("config")).unwrap_or(root);
        return Err(err(
            format!("`unnest` is not supported by the `{}` destination yet", cfg.destination.kind.name()),
            dst.get("unnest").unwrap_or(dst),
            "destination.config.unnest",
        ));
    }
    let lanes = cfg.engine.queue.broker.as_ref().map_or(1, BrokerSpec::lanes);
    if lanes > 1
        && !matches!(cfg.destination.kind, DestinationKind::File | DestinationKind::Logger | DestinationKind::Null)
    {
        let q = root.get("engine").and_then(|e| e.get("queue")).unwrap_or(root);
        let at = q.get("config").and_then(|c| c.get("lanes")).unwrap_or(q);
        return Err(err(
            format!(
                "`lanes: {lanes}` splits the job over several consumers, which the `{}` destination does not support yet \
                 (file, logger and null do)",
                cfg.destination.kind.name()
            ),
            at,
            "engine.queue.config.lanes",
        ));
    }
    if cfg.engine.runner.kind == RunnerType::Process {
        let engine = root.get("engine").unwrap_or(root);
        let n = engine.get("runner").and_then(|r| r.get("type")).unwrap_or(engine);
        if cfg.engine.queue.broker.is_none() {
            return Err(err(
                "runner `process` runs the producer and the consumer as separate processes, which talk through a \
                 broker: set engine.queue.type to rabbitmq or kafka (the in-memory queue lives inside one process)",
                n,
                "engine.runner.type",
            ));
        }
        if cfg.engine.backend.kind == BackendKind::SqliteInMemory {
            return Err(err(
                "runner `process` needs a backend both processes share: sqlite (a file) or postgres, not sqlite_in_memory",
                n,
                "engine.runner.type",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const README: &str = "name: demo-creatures-pipeline\n\nsource:\n  name: dummy\n  stream: creatures\n  authentication:\n    type: api_key\n    params:\n      token: dummy_key\n\ndestination:\n  name: logger\n  config:\n    dummy: dummy\n";

    #[test]
    fn bizon_readme_example_loads_with_defaults() {
        let c = load(README, &no_env).unwrap();
        assert_eq!(c.name, "demo-creatures-pipeline");
        assert_eq!(c.source_kind, SourceKind::Dummy);
        assert_eq!(c.destination.kind, DestinationKind::Logger);
        assert_eq!(c.destination.common.buffer_size, 50);
        assert_eq!(c.destination.common.buffer_flush_timeout, 600);
        assert_eq!(c.engine.backend.kind, BackendKind::Sqlite(PathBuf::from("bizon.db")));
        assert_eq!(c.engine.runner.kind, RunnerType::Thread);
    }

    #[test]
    fn typo_reports_location_and_closest_key() {
        let text = README.replace("  stream: creatures", "  stream: creatures\n  sync_mod: incremental");
        let e = load(&text, &no_env).unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 6, col: 3 }));
        assert!(e.message.contains("unknown key `sync_mod`; did you mean `sync_mode`?"), "{}", e.message);
    }

    #[test]
    fn unknown_connectors_list_the_available_ones() {
        let e = load(&README.replace("name: logger", "name: loger"), &no_env).unwrap_err();
        assert!(e.message.contains("did you mean `logger`"), "{}", e.message);
        assert!(e.message.contains("file"), "{}", e.message);
        let e = load(&README.replace("name: dummy", "name: hubspot"), &no_env).unwrap_err();
        assert!(e.message.contains("unknown source `hubspot`") && e.message.contains("generator"), "{}", e.message);
    }

    #[test]
    fn bizon_backend_forms_are_both_accepted() {
        let a = format!("{README}engine:\n  backend:\n    type: sqlite_in_memory\n    config:\n      database: not_used\n      schema: not_used\n");
        assert_eq!(load(&a, &no_env).unwrap().engine.backend.kind, BackendKind::SqliteInMemory);
        let b = format!("{README}engine:\n  backend:\n    type: sqlite\n    database: state/x\n    schema: s\n    syncCursorInDBEvery: 2\n");
        let c = load(&b, &no_env).unwrap();
        assert_eq!(c.engine.backend.kind, BackendKind::Sqlite(PathBuf::from("state/x.db")));
        assert_eq!(c.engine.backend.sync_cursor_in_db_every, 2);
        let p = format!("{README}engine:\n  backend:\n    type: bigquery\n");
        assert!(load(&p, &no_env).unwrap_err().message.contains("not available in this build yet"));
    }

    #[test]
    fn cross_field_rules() {
        let e = load(&README.replace("stream: creatures", "stream: creatures\n  sync_mode: incremental"), &no_env)
            .unwrap_err();
        assert!(e.message.contains("cursor_field"), "{}", e.message);
        let e = load(&README.replace("stream: creatures", "stream: animals"), &no_env).unwrap_err();
        assert!(e.message.contains("creatures, plants"), "{}", e.message);
        let e = load(&format!("{README}transforms:\n  - label: t\n    python: data['x'] = 1\n"), &no_env).unwrap_err();
        assert!(e.message.contains("Python transforms are not supported"), "{}", e.message);
    }
}
