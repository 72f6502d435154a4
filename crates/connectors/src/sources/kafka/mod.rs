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

pub mod decode;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::config::yaml::struct_fields;
pub use bizon_core::config::OnError;
use bizon_core::config::{AuthConfig, AuthType, SourceCommon, SyncMode};
use bizon_core::record::{json_escape_into, DEAD_LETTER};
use bizon_core::time::now_micros;
use bizon_core::{DurableHook, Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::json;

pub use decode::RegistryKind;
use decode::{CachedSchema, Origin, Registry};

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};

pub const STREAMS: &[&str] = &["topic"];

fn yes() -> bool {
    true
}
fn default_group() -> String {
    "bizon".into()
}
fn default_batch() -> usize {
    100
}
fn default_timeout() -> u64 {
    10
}

/// bizon's `topics` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    #[serde(default)]
    pub destination_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Encoding {
    /// JSON text (bizon's `utf-8`).
    #[serde(rename = "utf-8", alias = "utf8", alias = "json")]
    Json,
    /// Avro in the schema-registry wire format (bizon's default).
    #[default]
    #[serde(rename = "avro")]
    Avro,
}

#[derive(Debug, Clone, Deserialize)]
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
}

/// The `kafka` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "kafka",
    description: "topics (JSON, Avro + schema registry, Debezium); offsets committed with the data",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental, SyncMode::Stream],
    capabilities: SourceCapabilities { own_position: true, dead_letters: true, network: true },
    keys: struct_fields::<KafkaSourceConfig>,
    parse: parse_source::<KafkaSourceConfig>,
};

impl SourceSpec for KafkaSourceConfig {
    fn build(&self, common: &SourceCommon, routes: &[String]) -> Box<dyn Source> {
        Box::new(KafkaSource::new(self.clone(), common.authentication.clone(), routes))
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.on_error, &self.dead_letter_path, destination_id)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.batch_size == 0 {
            return Err("`batch_size` must be at least 1".into());
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err("`bootstrap_servers` is empty".into());
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

/// Per-partition positions: topic → partition → next offset.
type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

fn offsets_json(o: &Offsets) -> Json {
    Json::Object(
        o.iter()
            .map(|(t, ps)| (t.clone(), Json::Object(ps.iter().map(|(p, v)| (p.to_string(), json!(v))).collect())))
            .collect(),
    )
}

fn offsets_from(v: Option<&Json>) -> Offsets {
    let mut out = Offsets::new();
    if let Some(Json::Object(topics)) = v {
        for (t, ps) in topics {
            if let Json::Object(ps) = ps {
                let m = out.entry(t.clone()).or_default();
                for (p, o) in ps {
                    if let (Ok(p), Some(o)) = (p.parse::<i32>(), o.as_i64()) {
                        m.insert(p, o);
                    }
                }
            }
        }
    }
    out
}

fn get(o: &Offsets, t: &str, p: i32) -> Option<i64> {
    o.get(t).and_then(|m| m.get(&p)).copied()
}

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
        }
    }

    fn describe(&self) -> String {
        format!("kafka {} (topics {})", self.config.bootstrap_servers, self.topics.join(", "))
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::transient(format!("{}: {what}: {e}", self.describe()))
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("socket.timeout.ms", "10000")
            .set("session.timeout.ms", "45000")
            // librdkafka pauses fetching for a whole second (fetch.queue.backoff.ms) whenever its
            // prefetch queue is full: with a consumer this fast that idles it most of the time
            .set("fetch.queue.backoff.ms", "5")
            // bounded prefetch (default 64 MB): flat memory, still enough to keep fetching ahead
            .set("queued.max.messages.kbytes", "16384");
        if let Some(AuthConfig { kind: AuthType::Basic, params: Some(p), .. }) = &self.auth {
            // bizon: basic authentication = SASL PLAIN over TLS (consumer_config may override)
            let field = |k: &str| p.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", field("username"))
                .set("sasl.password", field("password"));
        }
        for (k, v) in &self.config.consumer_config {
            let v = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            c.set(k, v);
        }
        c
    }

    fn consumer(&mut self) -> Result<&BaseConsumer> {
        if self.consumer.is_none() {
            let c: BaseConsumer =
                self.client_config().create().map_err(|e| self.error("cannot create a consumer", e))?;
            self.consumer = Some(c);
        }
        Ok(self.consumer.as_ref().expect("created above"))
    }

    /// Partitions of every topic; a missing topic is an error naming it.
    fn partitions(&mut self) -> Result<Vec<(String, i32)>> {
        let timeout = Duration::from_secs(self.config.consumer_timeout.max(5));
        let topics = self.topics.clone();
        let metadata = self.consumer()?.fetch_metadata(None, timeout).map_err(|e| self.error("reading metadata", e))?;
        let mut out = Vec::new();
        for t in &topics {
            let found = metadata.topics().iter().find(|m| m.name() == t);
            match found {
                Some(m) if !m.partitions().is_empty() => out.extend(m.partitions().iter().map(|p| (t.clone(), p.id()))),
                _ => {
                    let known: Vec<&str> = metadata.topics().iter().map(|m| m.name()).collect();
                    return Err(Error::permanent(format!(
                        "{}: topic `{t}` does not exist (topics on the cluster: {})",
                        self.describe(),
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }

    fn watermarks(&mut self, t: &str, p: i32) -> Result<(i64, i64)> {
        let timeout = Duration::from_secs(self.config.consumer_timeout.max(5));
        let r = self.consumer()?.fetch_watermarks(t, p, timeout);
        r.map_err(|e| self.error(&format!("reading the offsets of {t}/{p}"), e))
    }

    /// Assign every partition at the pagination's offsets (a bounded read sets its end first).
    fn assign(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<()> {
        let parts = self.partitions()?;
        let bounded = ctx.sync_mode != SyncMode::Stream;
        self.next = offsets_from(pagination.get("offsets"));
        self.until = bounded.then(|| offsets_from(pagination.get("until")));
        let fresh = pagination.is_null();
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &parts {
            let (low, high) = self.watermarks(t, *p)?;
            if let Some(until) = self.until.as_mut().filter(|_| fresh) {
                until.entry(t.clone()).or_default().insert(*p, high);
                let since = match ctx.sync_mode {
                    SyncMode::Incremental => offsets_from(ctx.watermark.as_ref()),
                    _ => Offsets::new(),
                };
                let start = get(&since, t, *p).unwrap_or(low);
                if start < low {
                    self.expired(t, *p, start, low);
                }
                self.next.entry(t.clone()).or_default().insert(*p, start.max(low));
            }
            let offset = match get(&self.next, t, *p) {
                Some(o) if o < low => {
                    self.expired(t, *p, o, low);
                    self.next.entry(t.clone()).or_default().insert(*p, low);
                    Offset::Offset(low)
                }
                Some(o) => Offset::Offset(o),
                // a partition this job has not read yet: the group's offset, else auto.offset.reset
                None if bounded => Offset::Offset(low),
                None => Offset::Stored,
            };
            tpl.add_partition_offset(t, *p, offset).map_err(|e| self.error("assigning", e))?;
        }
        let r = self.consumer()?.assign(&tpl);
        r.map_err(|e| self.error("assigning partitions", e))?;
        self.partitions_checked = Instant::now();
        tracing::info!(source = %self.describe(), partitions = parts.len(), resumed = !fresh, "partitions assigned");
        Ok(())
    }

    /// Messages the broker deleted (retention) before this pipeline read them: nothing can bring
    /// them back, so the run goes on from the log start, but never silently.
    fn expired(&self, t: &str, p: i32, from: i64, low: i64) {
        tracing::error!(
            source = %self.describe(), topic = t, partition = p, from, to = low, lost = low - from,
            "messages expired (retention) before they were read: the pipeline lagged more than the topic keeps; continuing at the log start"
        );
    }

    /// Commit the newest durable offsets to the consumer group (the destination's offsets stay
    /// authoritative, so a failure is only logged).
    fn commit_durable(&mut self, mode: CommitMode) {
        let Some(p) = self.durable.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let mut tpl = TopicPartitionList::new();
        for (t, ps) in &offsets_from(p.get("offsets")) {
            for (part, o) in ps {
                let _ = tpl.add_partition_offset(t, *part, Offset::Offset(*o));
            }
        }
        if let (Some(c), true) = (&self.consumer, tpl.count() > 0) {
            if let Err(e) = c.commit(&tpl, mode) {
                tracing::warn!(error = %e, "committing the group offsets failed (the destination's offsets stay authoritative)");
            }
        }
    }

    /// True when a bounded read has reached its end on every partition.
    fn complete(&self) -> bool {
        let Some(until) = &self.until else { return false };
        until.iter().all(|(t, ps)| ps.iter().all(|(p, end)| get(&self.next, t, *p).unwrap_or(0) >= *end))
    }

    fn pagination(&self) -> Json {
        let mut p = json!({"offsets": offsets_json(&self.next)});
        if let Some(until) = &self.until {
            p["until"] = offsets_json(until);
        }
        p
    }

    /// Append one message as a record (or a dead letter, or skip it by policy).
    fn push(&mut self, m: &BorrowedMessage<'_>, batch: &mut RecordBatch) -> Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let ts_ms = m.timestamp().to_millis();
        let id = format!("partition_{partition}_offset_{offset}");
        let route = self.routes.get(topic).copied().unwrap_or(0);
        let Some(value) = m.payload().filter(|v| !v.is_empty()) else {
            if self.config.skip_message_empty_value {
                self.skipped += 1;
                return Ok(());
            }
            return self.bad(m, batch, "the message has no value (a tombstone)".into(), false);
        };
        let key = match m.key() {
            None | Some(b"") => None,
            Some(k) => match serde_json::from_slice::<serde::de::IgnoredAny>(k) {
                Ok(_) => Some(k),
                Err(e) => {
                    let skip = self.config.skip_message_invalid_keys;
                    return self.bad(m, batch, format!("the key is not JSON: {e}"), skip);
                }
            },
        };
        let decoded = match self.decode(value, topic, partition, offset) {
            Ok(v) => v,
            Err(e) => {
                let skip = self.config.skip_message_on_decode_error;
                return self.bad(m, batch, e, skip);
            }
        };
        let ts = ts_ms.map_or_else(now_micros, |ms| ms * 1000);
        batch.push_routed(route, &id, ts, |out| match decoded {
            Decoded::Row(row) => {
                let _ = serde_json::to_writer(&mut *out, &row);
            }
            Decoded::Value(value, schema) => {
                out.extend_from_slice(b"{\"topic\":\"");
                json_escape_into(out, topic.as_bytes());
                out.extend_from_slice(
                    format!("\",\"offset\":{offset},\"partition\":{partition},\"timestamp\":").as_bytes(),
                );
                match ts_ms {
                    Some(ms) => out.extend_from_slice(ms.to_string().as_bytes()),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"keys\":");
                out.extend_from_slice(key.unwrap_or(b"{}"));
                out.extend_from_slice(b",\"headers\":{");
                if let Some(h) = m.headers() {
                    for (i, header) in h.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.push(b'"');
                        json_escape_into(out, header.key.as_bytes());
                        out.extend_from_slice(b"\":\"");
                        json_escape_into(out, String::from_utf8_lossy(header.value.unwrap_or_default()).as_bytes());
                        out.push(b'"');
                    }
                }
                out.extend_from_slice(b"},\"value\":");
                match value {
                    Value::Raw(raw) => out.extend_from_slice(raw),
                    Value::Json(v) => {
                        let _ = serde_json::to_writer(&mut *out, &v);
                    }
                }
                out.extend_from_slice(b",\"schema\":");
                out.extend_from_slice(schema.as_ref().map_or("{}", |s| &s.json).as_bytes());
                out.push(b'}');
            }
        });
        Ok(())
    }

    fn decode<'m>(
        &mut self,
        value: &'m [u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> std::result::Result<Decoded<'m>, String> {
        let (v, schema) = match self.config.message_encoding {
            Encoding::Json => {
                if self.config.debezium {
                    (
                        Value::Json(serde_json::from_slice(value).map_err(|e| format!("the value is not JSON: {e}"))?),
                        None,
                    )
                } else {
                    serde_json::from_slice::<serde::de::IgnoredAny>(value)
                        .map_err(|e| format!("the value is not JSON: {e}"))?;
                    (Value::Raw(value), None)
                }
            }
            Encoding::Avro => {
                let (id, datum) = decode::split_framed(value)?;
                let registry = self.registry()?;
                let schema = registry.schema(id)?;
                (Value::Json(decode::avro_to_json(&schema.schema, datum)?), Some(schema))
            }
        };
        if !self.config.debezium {
            return Ok(Decoded::Value(v, schema));
        }
        let event = match v {
            Value::Json(j) => j,
            Value::Raw(r) => serde_json::from_slice(r).map_err(|e| e.to_string())?,
        };
        decode::debezium_flatten(event, &Origin { topic, partition, offset }).map(Decoded::Row)
    }

    fn registry(&mut self) -> std::result::Result<&mut Registry, String> {
        if self.registry.is_none() {
            let auth = self.auth.as_ref();
            let url = auth.and_then(|a| a.schema_registry_url.clone()).filter(|u| !u.is_empty()).ok_or(
                "`message_encoding: avro` needs `authentication.schema_registry_url` (or use `message_encoding: utf-8`)",
            )?;
            let kind = auth.and_then(|a| a.schema_registry_type.as_deref()).unwrap_or("apicurio");
            let kind = RegistryKind::parse(kind)
                .ok_or_else(|| format!("unknown `schema_registry_type` `{kind}` (apicurio or confluent)"))?;
            let (user, pass) = (
                auth.and_then(|a| a.schema_registry_username.as_deref()),
                auth.and_then(|a| a.schema_registry_password.as_deref()),
            );
            self.registry = Some(Registry::new(&url, kind, user, pass));
        }
        Ok(self.registry.as_mut().expect("set above"))
    }

    /// A message that cannot be used: skipped by a `skip_*` key, else by `on_error`.
    fn bad(&mut self, m: &BorrowedMessage<'_>, batch: &mut RecordBatch, error: String, skip: bool) -> Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        if skip {
            self.skipped += 1;
            tracing::warn!(topic, partition, offset, error = %error, "message skipped (skip_message_* policy)");
            return Ok(());
        }
        match self.config.on_error {
            OnError::Fail => Err(Error::permanent(format!(
                "{}: message {topic}/{partition} at offset {offset}: {error} (set `on_error: dead_letter` to divert bad messages)",
                self.describe()
            ))),
            OnError::DeadLetter => {
                tracing::warn!(topic, partition, offset, error = %error, "message sent to the dead-letter file");
                let row = json!({
                    "topic": topic, "partition": partition, "offset": offset,
                    "timestamp": m.timestamp().to_millis(),
                    "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    "value": m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                    "error": error,
                });
                let id = format!("{topic}/partition_{partition}_offset_{offset}");
                batch.push_routed(DEAD_LETTER, &id, now_micros(), |out| {
                    let _ = serde_json::to_writer(&mut *out, &row);
                });
                Ok(())
            }
        }
    }
}

enum Value<'m> {
    Raw(&'m [u8]),
    Json(Json),
}

enum Decoded<'m> {
    /// bizon's message record: the value and its Avro schema.
    Value(Value<'m>, Option<Arc<CachedSchema>>),
    /// A flattened Debezium row.
    Row(Json),
}

impl Source for KafkaSource {
    /// A bounded read knows its size: the messages between the start and the end offsets.
    fn total_records(&mut self, ctx: &ReadContext) -> Result<Option<u64>> {
        if ctx.sync_mode == SyncMode::Stream {
            return Ok(None);
        }
        let since = match ctx.sync_mode {
            SyncMode::Incremental => offsets_from(ctx.watermark.as_ref()),
            _ => Offsets::new(),
        };
        let mut total = 0;
        for (t, p) in self.partitions()? {
            let (low, high) = self.watermarks(&t, p)?;
            total += (high - get(&since, &t, p).unwrap_or(low).max(low)).max(0) as u64;
        }
        Ok(Some(total))
    }

    fn durable_hook(&self) -> Option<DurableHook> {
        let slot = self.durable.clone();
        Some(Arc::new(move |p: &Json| {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let stream = ctx.sync_mode == SyncMode::Stream;
        if self.position.as_ref() != Some(pagination) {
            self.assign(pagination, ctx)?;
        } else if stream && self.partitions_checked.elapsed() > Duration::from_secs(30) {
            // partitions added to a topic join the assignment (from the group's offset / earliest)
            let known: usize = self.partitions()?.len();
            let assigned = self.consumer()?.assignment().map(|a| a.count()).unwrap_or(known);
            if known != assigned {
                tracing::info!(assigned, now = known, "the topics have new partitions: reassigning");
                let p = pagination.clone();
                self.assign(&p, ctx)?;
            }
            self.partitions_checked = Instant::now();
        }
        self.commit_durable(CommitMode::Async);
        let extracted_at = now_micros();
        let mut batch = RecordBatch::with_capacity(self.config.batch_size.min(10_000), 0);
        if self.complete() {
            return Ok(Page { records: batch, next: Json::Null, cursor_max: None, extracted_at });
        }
        // wait for the first message (a bounded read ends after `consumer_timeout` of silence,
        // a stream returns an empty page after a second), then take what keeps arriving
        let idle = match stream {
            true => Duration::from_secs(1),
            false => Duration::from_secs(self.config.consumer_timeout.max(1)),
        };
        let started = Instant::now();
        let mut taken = 0usize;
        // jumps of more than one offset (compaction, or retention deleting unread messages)
        let mut gaps: Vec<(String, i32, i64)> = Vec::new();
        let consumer = self.consumer.take().expect("assigned above");
        let result = (|| {
            while taken < self.config.batch_size {
                let wait = if taken == 0 { idle.saturating_sub(started.elapsed()) } else { Duration::from_millis(50) };
                if wait.is_zero() {
                    break;
                }
                let Some(msg) = consumer.poll(wait) else { break };
                let m = msg.map_err(|e| self.error("consuming", e))?;
                let (t, p, o) = (m.topic().to_owned(), m.partition(), m.offset());
                if let Some(end) = self.until.as_ref().map(|u| get(u, &t, p).unwrap_or(0)) {
                    if o >= end {
                        continue; // past the bounded read's end
                    }
                }
                match get(&self.next, &t, p) {
                    Some(n) if o < n => continue, // already returned (a seek re-delivered it)
                    Some(n) if o > n + 1 => gaps.push((t.clone(), p, n)),
                    _ => {}
                }
                taken += 1;
                self.push(&m, &mut batch)?;
                self.next.entry(t).or_default().insert(p, o + 1);
                if self.complete() {
                    break;
                }
            }
            Ok(())
        })();
        self.consumer = Some(consumer);
        result?;
        for (t, p, from) in gaps {
            // a transaction marker takes one offset, compaction leaves holes in the log: only
            // a log start past the expected offset means unread messages were deleted
            let (low, _) = self.watermarks(&t, p)?;
            if low > from {
                self.expired(&t, p, from, low);
            }
        }
        let exhausted = !stream && (self.complete() || taken == 0);
        if exhausted && !self.complete() {
            tracing::info!(source = %self.describe(), "no message within consumer_timeout: the bounded read ends here");
        }
        let next = if exhausted { Json::Null } else { self.pagination() };
        self.position = Some(next.clone());
        let cursor_max = (ctx.sync_mode == SyncMode::Incremental).then(|| offsets_json(&self.next));
        Ok(Page { records: batch, next, cursor_max, extracted_at })
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // the last destination commit may have come after the last poll
        self.commit_durable(CommitMode::Sync);
        if self.skipped > 0 {
            tracing::info!(skipped = self.skipped, "messages skipped by the skip_message_* keys");
        }
    }
}
