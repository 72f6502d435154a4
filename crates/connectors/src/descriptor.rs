//! The shape every connector exports: one descriptor per folder (name, description, streams,
//! sync modes, config keys, parse, capabilities) and a parsed spec that builds the connector.
//! The registry is a list of these; listings and config validation read them, never a
//! hard-coded list of connector names.

use std::fmt::Debug;
use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, struct_fields, Node};
use bizon_core::config::{DestinationCommon, SourceCommon, StreamConfig, SyncMode};
use bizon_core::{Destination, Guarantee, QueueBroker, Source};
use serde::de::DeserializeOwned;

use crate::error::ConfigError;

/// What a source can do, for listings and validation.
#[derive(Debug, Clone, Copy)]
pub struct SourceCapabilities {
    /// Keeps its own incremental position (Kafka offsets): `cursor_field` is not needed.
    pub own_position: bool,
    /// Can send undecodable input to a dead-letter target (`on_error: dead_letter`).
    pub dead_letters: bool,
    /// Talks to a server (false: runs offline).
    pub network: bool,
}

/// A source connector.
pub struct SourceDescriptor {
    pub name: &'static str,
    pub description: &'static str,
    /// Fixed streams; empty when the streams come from the connection (tables): the parsed spec
    /// lists them ([`SourceSpec::list_streams`]).
    pub streams: &'static [&'static str],
    pub modes: &'static [SyncMode],
    pub capabilities: SourceCapabilities,
    /// The connector's own keys (beside [`SourceCommon`]'s), from its serde struct.
    pub keys: fn() -> &'static [&'static str],
    /// JSON Schema of the same struct (`bizon config schema`, docs/connectors).
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Parse and validate the connector's keys from the `source:` mapping (no I/O).
    pub parse: fn(&Node) -> Result<Arc<dyn SourceSpec>, yaml::Error>,
}

impl SourceDescriptor {
    pub fn supports(&self, mode: SyncMode) -> bool {
        self.modes.contains(&mode)
    }

    /// `stream` is one of the fixed streams (a source whose streams come from its connection
    /// takes any); else the message naming them, with the closest as a suggestion.
    pub fn check_stream(&self, stream: &str) -> Result<(), String> {
        if self.streams.is_empty() || self.streams.contains(&stream) {
            return Ok(());
        }
        let hint = bizon_core::suggest::did_you_mean(stream, self.streams.iter().copied());
        Err(format!(
            "source `{}` has no stream `{stream}`{hint} Available streams: {}",
            self.name,
            self.streams.join(", ")
        ))
    }

    /// The sync modes, for listings: `full_refresh, incremental`.
    pub fn modes_text(&self) -> String {
        self.modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// A source's parsed config: validates itself and builds the source.
pub trait SourceSpec: Debug + Send + Sync {
    /// Cross-field rules of the connector's own keys (no I/O); the message is reported at the
    /// `source:` mapping.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    /// `routes`: the source names of the `streams:` entries, in order (entry `i` is route `i`).
    fn build(&self, common: &SourceCommon, routes: &[String]) -> Box<dyn Source>;
    /// The dead-letter file of a source with `on_error: dead_letter`.
    fn dead_letter_path(&self, _destination_id: &str) -> Option<String> {
        None
    }
    /// The streams of a source whose streams come from its connection (tables).
    fn list_streams(&self) -> bizon_core::Result<Vec<String>> {
        Err(bizon_core::Error::config("this source's streams are fixed: see `bizon source list`"))
    }
}

/// Parse a source config struct from the `source:` mapping (the common keys are skipped) and
/// validate it: the `parse` of most descriptors.
pub fn parse_source<T: SourceSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Arc<dyn SourceSpec>, yaml::Error> {
    let c: T = own_keys(node, "source", struct_fields::<SourceCommon>(), struct_fields::<T>())?;
    c.validate().map_err(|e| yaml::Error::new(e.to_string(), node.mark, "source"))?;
    Ok(Arc::new(c))
}

/// What a destination can do, for listings and validation.
#[derive(Debug, Clone, Copy)]
pub struct DestinationCapabilities {
    pub guarantee: Guarantee,
    /// Commits its rows and the cursor in one transaction (at most one such part in a router).
    pub transactional: bool,
    /// Creates typed columns of a table from `record_schemas` (`unnest`). Every destination
    /// takes `unnest` (the engine's normalization stage gives it flat, typed rows); this one
    /// also declares the columns with their types.
    pub typed_columns: bool,
    /// Can split a job over several broker lanes, one consumer each.
    pub lanes: bool,
    /// Refuses single records into a dead-letter target (`on_error: dead_letter`).
    pub dead_letters: bool,
    /// Talks to a server (false: local files or nothing).
    pub network: bool,
}

/// A destination connector.
pub struct DestinationDescriptor {
    pub name: &'static str,
    pub description: &'static str,
    pub capabilities: DestinationCapabilities,
    /// The connector's own keys under `config:` (beside [`DestinationCommon`]'s).
    pub keys: fn() -> &'static [&'static str],
    /// JSON Schema of the same struct (`bizon config schema`, docs/connectors).
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Parse and validate `destination.config` (no I/O).
    pub parse: fn(&Node) -> Result<Arc<dyn DestinationSpec>, yaml::Error>,
}

/// A table (or file) of a routed destination: its name and, with a `record_schema`, its typed
/// columns (name, the destination's type).
pub type TableSpec = (String, Option<Vec<(String, String)>>);

/// A destination's parsed config: validates itself and builds the destination.
pub trait DestinationSpec: Debug + Send + Sync {
    /// Cross-field rules of the connector's own keys (no I/O), located in `node` (its `config:`).
    fn validate(&self, _node: &Node) -> Result<(), yaml::Error> {
        Ok(())
    }
    /// `typed`: the record columns (name, type) when `unnest: true`.
    fn build(&self, destination_id: &str, typed: Option<Vec<(String, String)>>) -> Box<dyn Destination>;
    /// The target of one `streams:` entry (named `name`), for destinations that write one part
    /// per stream. `typed`: its `record_schema` columns under `unnest: true`.
    fn build_stream(
        &self,
        name: &str,
        _stream: &StreamConfig,
        typed: Option<Vec<(String, String)>>,
    ) -> Box<dyn Destination> {
        self.build(name, typed)
    }
    /// One destination writing every stream's table in one transaction, if the connector can.
    fn build_routed(&self, _tables: Vec<TableSpec>) -> Option<Box<dyn Destination>> {
        None
    }
    /// The connector's column type for a `record_schemas` type (`STRING`, `INTEGER`, …).
    fn column_type(&self, kind: &str) -> Result<String, ConfigError> {
        Ok(kind.to_owned())
    }
    /// The dead-letter file of a destination with `on_error: dead_letter`.
    fn dead_letter_path(&self, _destination_id: &str) -> Option<String> {
        None
    }
    /// `bizon check`: reach the target of `destination_id` and look at it without creating or
    /// writing anything; what was found (`connected to …, schema … writable`), or the error.
    fn check(&self, destination_id: &str) -> bizon_core::Result<String>;
}

/// Parse a destination config struct from `destination.config` (the common keys are skipped)
/// and validate it: the `parse` of most descriptors.
pub fn parse_destination<T: DestinationSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Arc<dyn DestinationSpec>, yaml::Error> {
    let c: T = own_keys(node, "destination.config", struct_fields::<DestinationCommon>(), struct_fields::<T>())?;
    c.validate(node)?;
    Ok(Arc::new(c))
}

/// The keys of `engine.backend` (bizon's two forms merged: under `config:` or beside `type`).
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendFields {
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default, rename = "syncCursorInDBEvery")]
    pub sync_every: Option<u64>,
    /// bizon's SQLAlchemy echo flag: accepted, no effect.
    #[serde(default, rename = "echoEngine")]
    pub echo_engine: Option<bool>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub sslmode: Option<crate::sslmode::SslMode>,
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// postgres, bigquery: seconds without a heartbeat after which another run may take the
    /// pipeline over.
    #[serde(default)]
    pub lease_seconds: Option<u64>,
    /// bigquery: the key's JSON or its path (empty: Application Default Credentials).
    #[serde(default)]
    pub service_account_key: Option<String>,
    /// bigquery: create the dataset (`schema`) when missing.
    #[serde(default)]
    pub create_schema: Option<bool>,
    /// bigquery: location of a dataset it creates, and of its query jobs.
    #[serde(default)]
    pub schema_location: Option<String>,
    /// bigquery: BigQuery's REST base URL (default Google's).
    #[serde(default)]
    pub api_url: Option<String>,
}

/// A backend descriptor's parser: the merged keys and the section for error locations.
pub type ParseBackend = fn(&BackendFields, &Node) -> Result<Arc<dyn BackendSpec>, yaml::Error>;

/// A backend (`engine.backend.type`).
pub struct BackendDescriptor {
    pub name: &'static str,
    pub description: &'static str,
    /// Parse the merged keys; `node` is the section (`config:` when present) for error locations.
    pub parse: ParseBackend,
}

/// A parsed backend config.
pub trait BackendSpec: Debug + Send + Sync {
    /// Connect (or open the file); no lock is taken yet.
    fn open(&self) -> bizon_core::Result<Box<dyn bizon_core::Backend>>;
    /// Several processes can share it (the process runner and `--role` need that).
    fn shared(&self) -> bool;
    /// Kind and location, never a secret (`sqlite bizon.db`, `postgres host:port/db`).
    fn describe(&self) -> String;
    /// `bizon check`: open it as a run does (its own tables are created when missing) and look
    /// for the pipeline's unfinished job.
    fn check(&self, key: &bizon_core::StreamKey) -> bizon_core::Result<String> {
        unfinished_job(self.open()?.as_mut(), key)
    }
}

/// What `bizon check` says of an opened backend: the pipeline's unfinished job, if any.
pub fn unfinished_job(
    backend: &mut dyn bizon_core::Backend,
    key: &bizon_core::StreamKey,
) -> bizon_core::Result<String> {
    Ok(match backend.resumable_job(key)? {
        Some(job) => format!("opened; job {} is unfinished: the next run resumes it", job.id),
        None => String::from("opened; no unfinished job: the next run starts a new one"),
    })
}

/// A broker queue (`engine.queue.type`); the in-memory queue is the engine's own.
pub struct QueueDescriptor {
    pub name: &'static str,
    pub description: &'static str,
    /// Parse `engine.queue` (`type`, `config: {queue, consumer, lanes, max_nb_messages}`).
    pub parse: fn(&Node) -> Result<Arc<dyn BrokerSpec>, yaml::Error>,
    /// JSON Schema of `engine.queue.config` (`bizon config schema`).
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// A parsed broker queue config.
pub trait BrokerSpec: Debug + Send + Sync {
    /// Ordered lanes the pages are spread over, one consumer each.
    fn lanes(&self) -> usize;
    /// Connect.
    fn build(&self) -> bizon_core::Result<Box<dyn QueueBroker>>;
    /// `bizon check`: reach the broker without publishing or consuming; what was found.
    fn check(&self) -> bizon_core::Result<String>;
}

/// Deserialize a connector's own struct from a mapping shared with common keys; an unknown key
/// is reported against the union of both key sets, so the suggestion covers either.
pub fn own_keys<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    common: &'static [&'static str],
    own: &'static [&'static str],
) -> Result<T, yaml::Error> {
    for (k, _) in node.entries() {
        let key = k.as_str().unwrap_or_default();
        if !common.contains(&key) && !own.contains(&key) {
            let all: Vec<&str> = common.iter().chain(own.iter()).copied().collect();
            let hint = bizon_core::suggest::did_you_mean(key, all.iter().copied());
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

macro_rules! debug_by_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($t), self.name)
            }
        }
    )*};
}
debug_by_name!(SourceDescriptor, DestinationDescriptor, BackendDescriptor, QueueDescriptor);
