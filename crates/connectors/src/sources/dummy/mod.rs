//! `dummy` source: bizon's fake API, page for page (3 pages, 5 records per stream), so existing
//! bizon examples and tests produce the same rows.

use std::time::Duration;

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::time::now_micros;
use bizon_core::{Json, Page, ReadContext, RecordBatch, Result, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};

pub const STREAMS: &[&str] = &["creatures", "plants"];

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DummyConfig {
    /// Seconds to sleep before each (fake) API call.
    #[serde(default)]
    pub sleep: u64,
}

pub struct DummySource {
    stream: String,
    config: DummyConfig,
}

impl DummySource {
    pub fn new(stream: &str, config: DummyConfig) -> Self {
        DummySource { stream: stream.to_owned(), config }
    }
}

/// The fake API: (records as (id, name, age), next cursor) for a stream and cursor.
fn fake_api_call(stream: &str, cursor: Option<&str>) -> (Vec<(u64, &'static str, u64)>, &'static str) {
    let names: [&str; 5] = match stream {
        "plants" => ["tree", "flower", "cactus", "bamboo", "rose"],
        _ => ["bizon", "croco", "froggy", "turtle", "poulpo"],
    };
    match cursor {
        None | Some("") => (vec![(9898, names[0], 26), (88787, names[1], 23)], "vfvfvuhfefpeiduzhihxb"),
        Some("final-cursor") => (vec![(56565, names[4], 26)], ""),
        Some(_) => (vec![(98, names[2], 26), (3333, names[3], 23)], "final-cursor"),
    }
}

impl Source for DummySource {
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        Ok(Some(5))
    }

    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        if self.config.sleep > 0 {
            std::thread::sleep(Duration::from_secs(self.config.sleep));
        }
        let cursor = pagination.get("cursor").and_then(Json::as_str);
        let (rows, next) = fake_api_call(&self.stream, cursor);
        let now = now_micros();
        let mut records = RecordBatch::with_capacity(rows.len(), 64 * rows.len());
        for (id, name, age) in rows {
            let data = json!({"id": id, "name": name, "age": age});
            records.push(&id.to_string(), now, data.to_string().as_bytes());
        }
        let next = if next.is_empty() { json!({}) } else { json!({"cursor": next}) };
        Ok(Page { records, next, cursor_max: None, extracted_at: now })
    }
}

/// The `dummy` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "dummy",
    description: "bizon's fake API: 3 pages, 5 records per stream",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: false },
    keys: struct_fields::<DummyConfig>,
    schema: <DummyConfig as schemars::JsonSchema>::json_schema,
    parse: parse_source::<DummyConfig>,
};

impl SourceSpec for DummyConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        Box::new(DummySource::new(&common.stream, self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_pages_like_bizon() {
        let mut s = DummySource::new("creatures", DummyConfig::default());
        let ctx = ReadContext::default();
        let mut p = Json::Null;
        let mut ids = vec![];
        let mut pages = 0;
        loop {
            let page = s.get(&p, &ctx).unwrap();
            pages += 1;
            ids.extend(page.records.iter().map(|r| r.id.to_owned()));
            if page.is_last() {
                break;
            }
            p = page.next;
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, ["9898", "88787", "98", "3333", "56565"]);
    }
}
