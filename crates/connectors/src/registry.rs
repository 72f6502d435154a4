//! One closed enum per connector kind and one exhaustive match each (STYLE): `bizon source
//! list`, `destination list`, config parsing and construction are all driven from here.
//! Adding a connector = one folder, one variant, one arm in each match.

use bizon_core::config::yaml::{self, from_node, struct_fields, Node};
use bizon_core::config::{DestinationCommon, OnError, SourceCommon};
use bizon_core::{Destination, Guarantee, Source};

use crate::destinations::{file, logger, null, postgres};
use crate::sources::{dummy, generator, kafka, postgres as pg_source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Dummy,
    Generator,
    Postgres,
    Kafka,
}

impl SourceKind {
    pub const ALL: &'static [SourceKind] =
        &[SourceKind::Dummy, SourceKind::Generator, SourceKind::Postgres, SourceKind::Kafka];

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Dummy => "dummy",
            SourceKind::Generator => "generator",
            SourceKind::Postgres => "postgres",
            SourceKind::Kafka => "kafka",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            SourceKind::Dummy => "bizon's fake API: 3 pages, 5 records per stream",
            SourceKind::Generator => "deterministic synthetic records (tests, benchmarks)",
            SourceKind::Postgres => "a table or query, keyset-paged; streams are tables",
            SourceKind::Kafka => "topics (JSON, Avro + schema registry, Debezium); offsets committed with the data",
        }
    }

    /// Fixed streams; empty when streams come from the connection (tables).
    pub fn streams(self) -> &'static [&'static str] {
        match self {
            SourceKind::Dummy => dummy::STREAMS,
            SourceKind::Generator => generator::STREAMS,
            SourceKind::Postgres => &[],
            SourceKind::Kafka => kafka::STREAMS,
        }
    }

    /// Can read only the records after a watermark (`sync_mode: incremental`).
    pub fn supports_incremental(self) -> bool {
        match self {
            SourceKind::Dummy => false,
            SourceKind::Generator | SourceKind::Postgres | SourceKind::Kafka => true,
        }
    }

    /// The sync modes it supports, for listings.
    pub fn modes(self) -> &'static str {
        match (self.supports_incremental(), self.supports_stream()) {
            (true, true) => "full_refresh, incremental, stream",
            (true, false) => "full_refresh, incremental",
            _ => "full_refresh",
        }
    }

    /// Reads continuously (`sync_mode: stream`).
    pub fn supports_stream(self) -> bool {
        self == SourceKind::Kafka
    }

    /// Keeps its own incremental position (Kafka offsets): no `cursor_field` needed.
    pub fn needs_cursor_field(self) -> bool {
        self != SourceKind::Kafka
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.name()).collect()
    }

    /// The connector's own keys (beside [`SourceCommon`]'s).
    pub fn own_fields(self) -> &'static [&'static str] {
        match self {
            SourceKind::Dummy => struct_fields::<dummy::DummyConfig>(),
            SourceKind::Generator => struct_fields::<generator::GeneratorConfig>(),
            SourceKind::Postgres => struct_fields::<pg_source::PostgresSourceConfig>(),
            SourceKind::Kafka => struct_fields::<kafka::KafkaSourceConfig>(),
        }
    }
}

/// A source's own keys, beside [`SourceCommon`].
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Dummy(dummy::DummyConfig),
    Generator(generator::GeneratorConfig),
    Postgres(pg_source::PostgresSourceConfig),
    Kafka(kafka::KafkaSourceConfig),
}

impl SourceConfig {
    /// Parse the connector's keys from the `source:` mapping (the common keys are skipped).
    pub fn parse(kind: SourceKind, node: &Node) -> Result<Self, yaml::Error> {
        let (common, own) = (struct_fields::<SourceCommon>(), kind.own_fields());
        Ok(match kind {
            SourceKind::Dummy => SourceConfig::Dummy(own_keys(node, "source", common, own)?),
            SourceKind::Generator => {
                let c: generator::GeneratorConfig = own_keys(node, "source", common, own)?;
                c.validate().map_err(|m| yaml::Error::new(m, node.mark, "source"))?;
                SourceConfig::Generator(c)
            }
            SourceKind::Postgres => {
                let c: pg_source::PostgresSourceConfig = own_keys(node, "source", common, own)?;
                c.validate().map_err(|m| yaml::Error::new(m, node.mark, "source"))?;
                SourceConfig::Postgres(c)
            }
            SourceKind::Kafka => {
                let c: kafka::KafkaSourceConfig = own_keys(node, "source", common, own)?;
                c.validate().map_err(|m| yaml::Error::new(m, node.mark, "source"))?;
                SourceConfig::Kafka(c)
            }
        })
    }

    /// The dead-letter file of a source with `on_error: dead_letter`.
    pub fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        match self {
            SourceConfig::Kafka(c) => dead_letter_file(c.on_error, &c.dead_letter_path, destination_id),
            _ => None,
        }
    }

    /// `streams`: the topics (or other source names) of the `streams:` entries, in order.
    pub fn build(&self, common: &SourceCommon, streams: &[String]) -> Box<dyn Source> {
        match self {
            SourceConfig::Dummy(c) => Box::new(dummy::DummySource::new(&common.stream, c.clone())),
            SourceConfig::Generator(c) => Box::new(generator::GeneratorSource::new(c.clone())),
            SourceConfig::Postgres(c) => Box::new(pg_source::PostgresSource::new(c.clone(), &common.stream)),
            SourceConfig::Kafka(c) => {
                Box::new(kafka::KafkaSource::new(c.clone(), common.authentication.clone(), streams))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    Logger,
    File,
    Null,
    Postgres,
}

impl DestinationKind {
    pub const ALL: &'static [DestinationKind] =
        &[DestinationKind::Logger, DestinationKind::File, DestinationKind::Null, DestinationKind::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            DestinationKind::Logger => "logger",
            DestinationKind::File => "file",
            DestinationKind::Null => "null",
            DestinationKind::Postgres => "postgres",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            DestinationKind::Logger => "logs each record (stores nothing)",
            DestinationKind::File => "NDJSON file in bizon's row layout; byte offset in the cursor, truncate on resume",
            DestinationKind::Null => "discards records; fault injection with fail_rate / latency_ms",
            DestinationKind::Postgres => "binary COPY in bizon's row layout; cursor committed with the rows",
        }
    }

    pub fn guarantee(self) -> Guarantee {
        match self {
            DestinationKind::Logger | DestinationKind::Null => Guarantee::None,
            DestinationKind::File | DestinationKind::Postgres => Guarantee::ExactlyOnce,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.name()).collect()
    }

    /// The connector's own keys under `config:` (beside [`DestinationCommon`]'s).
    pub fn own_fields(self) -> &'static [&'static str] {
        match self {
            DestinationKind::Logger => struct_fields::<logger::LoggerConfig>(),
            DestinationKind::File => struct_fields::<file::FileConfig>(),
            DestinationKind::Null => struct_fields::<null::NullConfig>(),
            DestinationKind::Postgres => struct_fields::<postgres::PostgresConfig>(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum DestinationConfig {
    Logger(logger::LoggerConfig),
    File(file::FileConfig),
    Null(null::NullConfig),
    Postgres(postgres::PostgresConfig),
}

impl DestinationConfig {
    /// Parse the connector's keys from `destination.config` (the common keys are skipped).
    pub fn parse(kind: DestinationKind, node: &Node) -> Result<Self, yaml::Error> {
        let (common, own) = (struct_fields::<DestinationCommon>(), kind.own_fields());
        let path = "destination.config";
        Ok(match kind {
            DestinationKind::Logger => DestinationConfig::Logger(own_keys(node, path, common, own)?),
            DestinationKind::File => DestinationConfig::File(own_keys(node, path, common, own)?),
            DestinationKind::Null => {
                let c: null::NullConfig = own_keys(node, path, common, own)?;
                if !(0.0..=1.0).contains(&c.fail_rate) {
                    return Err(yaml::Error::new("`fail_rate` must be between 0 and 1", node.mark, path));
                }
                DestinationConfig::Null(c)
            }
            DestinationKind::Postgres => {
                let c: postgres::PostgresConfig = own_keys(node, path, common, own)?;
                c.connection()
                    .validate()
                    .map_err(|m| yaml::Error::new(m, node.get("sslmode").unwrap_or(node).mark, path))?;
                DestinationConfig::Postgres(c)
            }
        })
    }

    /// `typed`: the record columns (name, type) when `unnest: true`.
    pub fn build(&self, destination_id: &str, typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        match self {
            DestinationConfig::Logger(_) => Box::<logger::LoggerDestination>::default(),
            DestinationConfig::File(c) => Box::new(file::FileDestination::new(c, destination_id)),
            DestinationConfig::Null(c) => Box::new(null::NullDestination::new(c.clone())),
            DestinationConfig::Postgres(c) => Box::new(postgres::PostgresDestination::new(c, destination_id, typed)),
        }
    }
}

/// Where `on_error: dead_letter` writes: the configured path, else `<destination_id>_dead_letter.json`.
pub fn dead_letter_file(on_error: OnError, path: &Option<String>, destination_id: &str) -> Option<String> {
    (on_error == OnError::DeadLetter)
        .then(|| path.clone().unwrap_or_else(|| format!("{destination_id}_dead_letter.json")))
}

/// Deserialize a connector's own struct from a mapping shared with common keys; an unknown key
/// is reported against the union of both key sets, so the suggestion covers either.
fn own_keys<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &str,
    common: &'static [&'static str],
    own: &'static [&'static str],
) -> Result<T, yaml::Error> {
    for (k, _) in node.entries() {
        let key = k.as_str().unwrap_or_default();
        if !common.contains(&key) && !own.contains(&key) {
            let all: Vec<&str> = common.iter().chain(own.iter()).copied().collect();
            let hint = bizon_core::suggest::closest(key, all.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let list = all.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            return Err(yaml::Error::new(
                format!("unknown key `{key}`{hint} Valid keys: {list}"),
                k.mark,
                &format!("{path}.{key}"),
            ));
        }
    }
    from_node(node, path, common)
}
