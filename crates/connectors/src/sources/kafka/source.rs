//! The `kafka` source's reads: the librdkafka consumer, one record per message (decoded,
//! dead-lettered or skipped by policy), and the `Source` implementation the engine drives.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::config::{AuthConfig, AuthType, OnError, SyncMode, DEFAULT_SCHEMA_REGISTRY_TYPE};
use bizon_core::record::{json_escape_into, DEAD_LETTER};
use bizon_core::time::now_micros;
use bizon_core::{DurableHook, Error, ErrorKind, Json, Page, ReadContext, RecordBatch, Result, Source};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use serde_json::json;

use super::decode::{self, CachedSchema, DecodeError, Origin, Registry, RegistryKind};
use super::offsets::{get, offsets_from, offsets_json, Offsets};
use super::{Encoding, KafkaSource};

impl KafkaSource {
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
            // bounded prefetch (default 64 MB): 1 MB keeps this consumer fed (the same msgs/s as
            // 2 or 16 MB on the benchmark's 16 partitions) at half the peak RSS (40 MB against 87)
            .set("queued.max.messages.kbytes", "1024");
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

    pub(super) fn consumer(&mut self) -> Result<&BaseConsumer> {
        if self.consumer.is_none() {
            let c: BaseConsumer =
                self.client_config().create().map_err(|e| self.error("cannot create a consumer", e))?;
            self.consumer = Some(c);
        }
        Ok(self.consumer.as_ref().expect("created above"))
    }

    /// Append one message as a record (or a dead letter, or skip it by policy).
    fn push(&mut self, m: &BorrowedMessage<'_>, batch: &mut RecordBatch) -> Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let ts_ms = m.timestamp().to_millis();
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
            // the message itself is bad: skipped or dead-lettered by policy
            Err(e) if e.kind() == ErrorKind::Permanent => {
                let skip = self.config.skip_message_on_decode_error;
                return self.bad(m, batch, e.to_string(), skip);
            }
            // the registry is down or misconfigured: never the message's fault, never diverted
            Err(e) => {
                let at = format!("message {topic}/{partition} at offset {offset}");
                return Err(Error::new(e.kind(), format!("{}: {at}: {e}", self.describe())));
            }
        };
        let ts = ts_ms.map_or_else(now_micros, |ms| ms * 1000);
        let route = self.routes.get(topic).copied().unwrap_or(0);
        // Per message: no allocation for the id or the numbers (a million messages a second).
        let mut id = std::mem::take(&mut self.id_buf);
        id.clear();
        let _ = write!(id, "partition_{partition}_offset_{offset}");
        batch.push_routed(route, &id, ts, |out| match decoded {
            Decoded::Row(row) => {
                let _ = serde_json::to_writer(&mut *out, &row);
            }
            Decoded::Value(value, schema) => {
                out.extend_from_slice(b"{\"topic\":\"");
                json_escape_into(out, topic.as_bytes());
                let _ = std::io::Write::write_fmt(
                    out,
                    format_args!("\",\"offset\":{offset},\"partition\":{partition},\"timestamp\":"),
                );
                match ts_ms {
                    Some(ms) => {
                        let _ = std::io::Write::write_fmt(out, format_args!("{ms}"));
                    }
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
        self.id_buf = id;
        Ok(())
    }

    fn decode<'m>(
        &mut self,
        value: &'m [u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> std::result::Result<Decoded<'m>, DecodeError> {
        let (v, schema) = match self.config.message_encoding {
            Encoding::Json => {
                if self.config.debezium {
                    (Value::Json(serde_json::from_slice(value).map_err(DecodeError::ValueNotJson)?), None)
                } else {
                    serde_json::from_slice::<serde::de::IgnoredAny>(value).map_err(DecodeError::ValueNotJson)?;
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
            Value::Raw(r) => serde_json::from_slice(r).map_err(DecodeError::EventNotJson)?,
        };
        decode::debezium_flatten(event, &Origin { topic, partition, offset }).map(Decoded::Row)
    }

    fn registry(&mut self) -> std::result::Result<&mut Registry, DecodeError> {
        if self.registry.is_none() {
            let auth = self.auth.as_ref();
            let url = auth
                .and_then(|a| a.schema_registry_url.clone())
                .filter(|u| !u.is_empty())
                .ok_or(DecodeError::NoRegistryUrl)?;
            let kind = auth.and_then(|a| a.schema_registry_type.as_deref()).unwrap_or(DEFAULT_SCHEMA_REGISTRY_TYPE);
            let kind = RegistryKind::parse(kind).ok_or_else(|| DecodeError::UnknownRegistryType(kind.to_owned()))?;
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

    fn shards(&mut self) -> Result<Option<usize>> {
        match self.config.lease_partitions {
            true => Ok(Some(self.partitions()?.len())),
            false => Ok(None),
        }
    }

    fn select_shard(&mut self, shard: usize, shards: usize) -> Result<()> {
        if !self.config.lease_partitions || shard >= shards {
            return Err(Error::internal(format!("{}: no partition lease {shard} of {shards}", self.describe())));
        }
        self.shard = Some((shard, shards));
        self.position = None; // the next read assigns the leased partition
        Ok(())
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let stream = ctx.sync_mode == SyncMode::Stream;
        if self.position.as_ref() != Some(pagination) {
            self.assign(pagination, ctx)?;
        } else if stream && self.shard.is_none() && self.partitions_checked.elapsed() > Duration::from_secs(30) {
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
        let result = (|| -> Result<()> {
            while taken < self.config.batch_size {
                let wait = if taken == 0 { idle.saturating_sub(started.elapsed()) } else { Duration::from_millis(50) };
                if wait.is_zero() {
                    break;
                }
                let Some(msg) = consumer.poll(wait) else { break };
                let m = msg.map_err(|e| self.error("consuming", e))?;
                let (t, p, o) = (m.topic(), m.partition(), m.offset());
                let end = self.until.as_ref().map(|u| get(u, t, p).unwrap_or(0));
                if end.is_some_and(|end| o >= end) {
                    continue; // past the bounded read's end
                }
                match get(&self.next, t, p) {
                    Some(n) if o < n => continue, // already returned (a seek re-delivered it)
                    Some(n) if o > n + 1 => gaps.push((t.to_owned(), p, n)),
                    _ => {}
                }
                taken += 1;
                self.push(&m, &mut batch)?;
                match self.next.get_mut(t) {
                    Some(parts) => parts.insert(p, o + 1),
                    None => self.next.entry(t.to_owned()).or_default().insert(p, o + 1),
                };
                // The read is complete only when a partition reaches its end: check then.
                if end.is_some_and(|end| o + 1 >= end) && self.complete() {
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
