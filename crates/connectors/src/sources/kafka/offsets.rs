//! Positions: the per-partition offsets a page's pagination carries, the assignment that starts
//! each partition from them, the bounded read's end, and the group offsets committed after the
//! destination's commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bizon_core::config::SyncMode;
use bizon_core::{Error, Json, ReadContext, Result};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::KafkaSource;

/// Per-partition positions: topic → partition → next offset.
pub(super) type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

pub(super) fn offsets_json(o: &Offsets) -> Json {
    Json::Object(
        o.iter()
            .map(|(t, ps)| (t.clone(), Json::Object(ps.iter().map(|(p, v)| (p.to_string(), json!(v))).collect())))
            .collect(),
    )
}

pub(super) fn offsets_from(v: Option<&Json>) -> Offsets {
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

pub(super) fn get(o: &Offsets, t: &str, p: i32) -> Option<i64> {
    o.get(t).and_then(|m| m.get(&p)).copied()
}

impl KafkaSource {
    /// Partitions of every topic; a missing topic is an error naming it.
    pub(super) fn partitions(&mut self) -> Result<Vec<(String, i32)>> {
        let timeout = Duration::from_secs(self.config.consumer_timeout.max(5));
        let topics = self.topics.clone();
        let metadata = self.consumer()?.fetch_metadata(None, timeout).map_err(|e| self.error("reading metadata", e))?;
        let mut out = Vec::new();
        for t in &topics {
            let found = metadata.topics().iter().find(|m| m.name() == t);
            match found {
                Some(m) if !m.partitions().is_empty() => {
                    // in partition order: a partition lease is an index into this list
                    let mut ids: Vec<i32> = m.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    out.extend(ids.into_iter().map(|p| (t.clone(), p)));
                }
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

    /// The partitions this reader reads: all of them, or its lease's one. The lanes of a job are
    /// its partitions when it started: a different count now is an error, never a silent re-map.
    pub(super) fn leased(&self, parts: Vec<(String, i32)>) -> Result<Vec<(String, i32)>> {
        let Some((shard, shards)) = self.shard else { return Ok(parts) };
        if parts.len() != shards {
            return Err(Error::permanent(format!(
                "{}: the topics have {} partitions but this job leases {shards}: partitions were added while \
                 the job runs; stop every process, then start them again (a new job takes the new count)",
                self.describe(),
                parts.len()
            )));
        }
        Ok(vec![parts[shard].clone()])
    }

    pub(super) fn watermarks(&mut self, t: &str, p: i32) -> Result<(i64, i64)> {
        let timeout = Duration::from_secs(self.config.consumer_timeout.max(5));
        let r = self.consumer()?.fetch_watermarks(t, p, timeout);
        r.map_err(|e| self.error(&format!("reading the offsets of {t}/{p}"), e))
    }

    /// Assign every partition at the pagination's offsets (a bounded read sets its end first).
    pub(super) fn assign(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<()> {
        let all = self.partitions()?;
        let parts = self.leased(all)?;
        let bounded = ctx.sync_mode != SyncMode::Stream;
        self.next = offsets_from(pagination.get("offsets"));
        if self.shard.is_some() {
            // a leased partition's pagination holds its own offsets only
            self.next.retain(|t, ps| {
                ps.retain(|p, _| parts.iter().any(|(lt, lp)| lt == t && lp == p));
                !ps.is_empty()
            });
        }
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
    pub(super) fn expired(&self, t: &str, p: i32, from: i64, low: i64) {
        tracing::error!(
            source = %self.describe(), topic = t, partition = p, from, to = low, lost = low - from,
            "messages expired (retention) before they were read: the pipeline lagged more than the topic keeps; continuing at the log start"
        );
    }

    /// Commit the newest durable offsets to the consumer group (the destination's offsets stay
    /// authoritative, so a failure is only logged).
    pub(super) fn commit_durable(&mut self, mode: CommitMode) {
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
    pub(super) fn complete(&self) -> bool {
        let Some(until) = &self.until else { return false };
        until.iter().all(|(t, ps)| ps.iter().all(|(p, end)| get(&self.next, t, *p).unwrap_or(0) >= *end))
    }

    pub(super) fn pagination(&self) -> Json {
        let mut p = json!({"offsets": offsets_json(&self.next)});
        if let Some(until) = &self.until {
            p["until"] = offsets_json(until);
        }
        p
    }
}
