//! `generator` source: deterministic synthetic records, the workhorse of tests and benchmarks.
//! Record `i` is the same for the same `seed` on every run, `updated_at` grows with `i` (usable
//! as `cursor_field`), and pagination is an offset, so resume and incremental reads seek in O(1).

use std::time::{Duration, Instant};

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::time::{now_micros, parse_rfc3339, Rfc3339Writer};
use bizon_core::{Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;

pub const STREAMS: &[&str] = &["records"];

/// Records a run generates when `total` is not set.
fn default_total() -> u64 {
    1000
}
/// Records per page (iteration) when `page_size` is not set.
fn default_page_size() -> u64 {
    1000
}
/// Approximate payload bytes per record when `record_size` is not set.
fn default_record_size() -> usize {
    200
}
/// Milliseconds between consecutive records' `updated_at` when `step_ms` is not set.
fn default_step_ms() -> u64 {
    1
}

/// Record 0's `updated_at` when `start_timestamp` is not set: 2024-01-01T00:00:00Z, in
/// microseconds since the epoch (fixed, so runs are reproducible).
pub const DEFAULT_START_MICROS: i64 = 1_704_067_200_000_000;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Number of records in the stream.
    #[serde(default = "default_total")]
    pub total: u64,
    /// Records per page (iteration).
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// Approximate size of each record's JSON payload in bytes (padded with `payload`).
    #[serde(default = "default_record_size")]
    pub record_size: usize,
    /// Seed of the payload contents.
    #[serde(default)]
    pub seed: u64,
    /// `updated_at` of record 0 (RFC 3339); default 2024-01-01T00:00:00Z.
    #[serde(default)]
    pub start_timestamp: Option<String>,
    /// Milliseconds between the `updated_at` of consecutive records.
    #[serde(default = "default_step_ms")]
    pub step_ms: u64,
    /// Emit at most this many records per second (unlimited when absent).
    #[serde(default)]
    pub rate_limit: Option<f64>,
}

/// The `generator` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "generator",
    description: "deterministic synthetic records (tests, benchmarks)",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: false },
    keys: struct_fields::<GeneratorConfig>,
    schema: <GeneratorConfig as schemars::JsonSchema>::json_schema,
    parse: parse_source::<GeneratorConfig>,
};

impl SourceSpec for GeneratorConfig {
    fn build(&self, _common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        Box::new(GeneratorSource::new(self.clone()))
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.page_size == 0 {
            return Err(ConfigError::AtLeastOne { key: "page_size" });
        }
        if let Some(ts) = &self.start_timestamp {
            if parse_rfc3339(ts).is_none() {
                return Err(ConfigError::NotATimestamp { key: "start_timestamp", value: ts.clone() });
            }
        }
        if matches!(self.rate_limit, Some(r) if r <= 0.0 || r.is_nan()) {
            return Err(ConfigError::RateLimit);
        }
        Ok(())
    }
}

pub struct GeneratorSource {
    config: GeneratorConfig,
    start: i64,
    step: i64,
    began: Option<(Instant, u64)>,
    /// Random payload characters drawn once from the seed; record `i` copies a window of it
    /// chosen by a hash of `i` (deterministic, and a memcpy instead of a draw per character).
    pool: Vec<u8>,
}

const POOL: usize = 1 << 16;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Append the decimal form of `v`.
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

impl GeneratorSource {
    pub fn new(config: GeneratorConfig) -> Self {
        let start = config.start_timestamp.as_deref().and_then(parse_rfc3339).unwrap_or(DEFAULT_START_MICROS);
        let step = config.step_ms as i64 * 1000;
        let mut pool = Vec::with_capacity(POOL + config.record_size);
        let mut state = splitmix64(config.seed);
        while pool.len() < POOL + config.record_size {
            state = splitmix64(state);
            pool.extend((0..8).map(|k| ALPHABET[((state >> (k * 6)) & 63) as usize]));
        }
        GeneratorSource { config, start, step, began: None, pool }
    }

    fn updated_at(&self, i: u64) -> i64 {
        self.start + self.step * i as i64
    }

    /// First index whose cursor value is strictly greater than the watermark.
    fn first_after(&self, watermark: Option<&Json>, cursor_field: Option<&str>) -> u64 {
        let Some(w) = watermark else { return 0 };
        match cursor_field {
            Some("id") => w.as_u64().map(|v| v + 1).unwrap_or(0),
            _ => match w.as_str().and_then(parse_rfc3339) {
                Some(t) if t < self.start => 0,
                Some(_) if self.step == 0 => self.config.total,
                Some(t) => ((t - self.start) / self.step) as u64 + 1,
                None => 0,
            },
        }
    }

    fn write_record(&self, out: &mut Vec<u8>, ts: &mut Rfc3339Writer, i: u64) {
        let begin = out.len();
        out.extend_from_slice(b"{\"id\":");
        push_u64(out, i);
        out.extend_from_slice(b",\"updated_at\":\"");
        ts.write(out, self.updated_at(i));
        out.extend_from_slice(b"\",\"name\":\"record-");
        push_u64(out, i);
        out.extend_from_slice(b"\",\"payload\":\"");
        let used = out.len() - begin + 2;
        let pad = self.config.record_size.saturating_sub(used);
        let at = (splitmix64(self.config.seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D)) % POOL as u64) as usize;
        out.extend_from_slice(&self.pool[at..at + pad]);
        out.extend_from_slice(b"\"}");
    }
}

impl Source for GeneratorSource {
    fn total_records(&mut self, ctx: &ReadContext) -> Result<Option<u64>> {
        let first = self.first_after(ctx.watermark.as_ref(), ctx.cursor_field.as_deref());
        Ok(Some(self.config.total.saturating_sub(first)))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let from = match pagination.get("offset") {
            Some(o) => o.as_u64().ok_or_else(|| Error::internal(format!("generator: bad pagination {pagination}")))?,
            None => self.first_after(ctx.watermark.as_ref(), ctx.cursor_field.as_deref()),
        };
        let to = (from + self.config.page_size).min(self.config.total);
        if let Some(rate) = self.config.rate_limit {
            let (t0, n0) = *self.began.get_or_insert((Instant::now(), from));
            let due = Duration::from_secs_f64((to.saturating_sub(n0)) as f64 / rate);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let n = (to.saturating_sub(from)) as usize;
        let mut records = RecordBatch::with_capacity(n, n * (self.config.record_size + 8));
        let mut id = Vec::with_capacity(20);
        let mut ts = Rfc3339Writer::default();
        for i in from..to {
            id.clear();
            push_u64(&mut id, i);
            // push_u64 writes ASCII digits only.
            let id_str = std::str::from_utf8(&id).unwrap_or("0");
            records.push_with(id_str, self.updated_at(i), |buf| self.write_record(buf, &mut ts, i));
        }
        let cursor_max = match (to > from, ctx.cursor_field.as_deref()) {
            (true, Some("id")) => Some(json!(to - 1)),
            (true, Some("updated_at")) => Some(json!(bizon_core::time::format_rfc3339(self.updated_at(to - 1)))),
            _ => None,
        };
        let next = if to >= self.config.total { json!({}) } else { json!({"offset": to}) };
        Ok(Page { records, next, cursor_max, extracted_at: now_micros() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(total: u64, page: u64) -> GeneratorConfig {
        GeneratorConfig {
            total,
            page_size: page,
            record_size: 200,
            seed: 7,
            start_timestamp: None,
            step_ms: 1,
            rate_limit: None,
        }
    }

    #[test]
    fn records_are_valid_sized_and_deterministic() {
        let mut g = GeneratorSource::new(cfg(10, 4));
        let ctx = ReadContext::default();
        let p = g.get(&Json::Null, &ctx).unwrap();
        assert_eq!(p.records.len(), 4);
        assert_eq!(p.next, json!({"offset": 4}));
        for r in p.records.iter() {
            let v: Json = serde_json::from_slice(r.data).unwrap();
            assert_eq!(v["id"].to_string(), r.id);
            assert_eq!(r.data.len(), 200);
        }
        let again = GeneratorSource::new(cfg(10, 4)).get(&Json::Null, &ctx).unwrap();
        assert_eq!(again.records.get(3).data, p.records.get(3).data);
        let last = g.get(&json!({"offset": 8}), &ctx).unwrap();
        assert_eq!(last.records.len(), 2);
        assert!(last.is_last());
    }

    #[test]
    fn incremental_starts_after_watermark() {
        let mut g = GeneratorSource::new(cfg(100, 10));
        let ctx = ReadContext {
            sync_mode: bizon_core::config::SyncMode::Incremental,
            watermark: Some(json!("2024-01-01T00:00:00.049000+00:00")),
            cursor_field: Some("updated_at".into()),
        };
        assert_eq!(g.total_records(&ctx).unwrap(), Some(50));
        let p = g.get(&Json::Null, &ctx).unwrap();
        assert_eq!(p.records.get(0).id, "50");
        assert_eq!(p.cursor_max, Some(json!("2024-01-01T00:00:00.059000+00:00")));
    }
}
