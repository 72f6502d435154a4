//! `kafka` source (bizon's keys): reads topics with librdkafka, one record per message, in
//! bizon's record shape: id `partition_<p>_offset_<o>`, the message timestamp, and the data
//! `{topic, offset, partition, timestamp, keys, headers, value, schema}`.
//!
//! Positions are the pagination: `{"offsets": {topic: {partition: next offset}}}`. The engine
//! commits it with the data (PostgreSQL: same transaction; file: with the byte offset), so a
//! restart resumes from the destination's offsets, which win over the consumer group's. Group
//! offsets are committed after each destination commit (for lag monitoring and for partitions
//! the destination has not seen yet, which start from the group's offset, else
//! `auto.offset.reset`).
//!
//! - `stream`: continuous; an idle poll returns an empty page after at most a second so the
//!   engine can flush on time and stop on a signal. Partitions added to a topic are picked up.
//! - `full_refresh` / `incremental`: a bounded read up to the high-water marks taken when the
//!   job starts (kept in the pagination under `until`); incremental starts after the offsets the
//!   last successful job wrote (its watermark).
//!
//! A run owns every partition of its topics: the pipeline lock keeps one reader per pipeline,
//! and positions live in the destination, so there is no group rebalancing to lose data in.
//! With `lease_partitions: true` the partitions (of every topic, in topic then partition order)
//! are the shards of the engine's partition leases: each reader is restricted to one partition
//! ([`Source::select_shard`](bizon_core::Source::select_shard)) and its pagination holds that
//! partition's offsets only.

mod config;
pub mod decode;
mod offsets;
mod source;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bizon_core::config::AuthConfig;
pub use bizon_core::config::OnError;
use bizon_core::{Error, Json};
use rdkafka::consumer::BaseConsumer;

pub use config::{Encoding, KafkaSourceConfig, TopicConfig, DESCRIPTOR, STREAMS};
use decode::Registry;
pub use decode::RegistryKind;
use offsets::Offsets;

pub struct KafkaSource {
    config: KafkaSourceConfig,
    topics: Vec<String>,
    /// topic → route (its `streams:` entry); empty without routing.
    routes: BTreeMap<String, u16>,
    auth: Option<AuthConfig>,
    consumer: Option<BaseConsumer>,
    registry: Option<Registry>,
    /// Next offsets of what was returned so far, and the bounded read's end (exclusive).
    next: Offsets,
    until: Option<Offsets>,
    /// The pagination this consumer's assignment continues from (a different one = seek).
    position: Option<Json>,
    partitions_checked: Instant,
    /// The newest committed pagination, waiting to be committed to the group.
    durable: Arc<Mutex<Option<Json>>>,
    skipped: u64,
    /// The record id being written (reused: one allocation per run, not per message).
    id_buf: String,
    /// `(shard, shards)`: this reader's partition lease (`lease_partitions`).
    shard: Option<(usize, usize)>,
}

impl KafkaSource {
    /// `streams`: the `streams:` entries' topics, in order (route `i` = entry `i`).
    pub fn new(config: KafkaSourceConfig, auth: Option<AuthConfig>, streams: &[String]) -> Self {
        let topics = config.topic_names(streams);
        let routes = streams.iter().enumerate().map(|(i, t)| (t.clone(), i as u16)).collect();
        KafkaSource {
            config,
            topics,
            routes,
            auth,
            consumer: None,
            registry: None,
            next: Offsets::new(),
            until: None,
            position: None,
            partitions_checked: Instant::now(),
            durable: Arc::new(Mutex::new(None)),
            skipped: 0,
            id_buf: String::new(),
            shard: None,
        }
    }

    fn describe(&self) -> String {
        format!("kafka {} (topics {})", self.config.bootstrap_servers, self.topics.join(", "))
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::transient(format!("{}: {what}: {e}", self.describe()))
    }
}
