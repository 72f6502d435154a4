//! A small source and destination for engine tests, both in memory. [`NumberSource`] yields
//! records `0..total` in pages; [`MemoryDestination`] writes into a [`Table`] shared with the test
//! and behaves like the file destination: writes land at once but are durable only at `flush`,
//! whose token is the durable row count, and `open` truncates back to the resumed token — so a
//! pipeline over it is exactly-once, and a bug in the engine's commit order shows as a lost or
//! duplicated record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, Page, ReadContext, RecordBatch, Result,
    Source,
};
use serde_json::json;

use crate::fixtures::batch;

/// Records `0..total`, `page_size` per page; the pagination is `{"offset": n}`.
pub struct NumberSource {
    pub total: u64,
    pub page_size: u64,
    /// Pages read (including re-reads after a resume).
    pub reads: u64,
}

impl NumberSource {
    pub fn new(total: u64, page_size: u64) -> Self {
        NumberSource { total, page_size: page_size.max(1), reads: 0 }
    }
}

impl Source for NumberSource {
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        Ok(Some(self.total))
    }
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        let start = match pagination {
            Json::Null => 0,
            p => p["offset"].as_u64().ok_or_else(|| Error::internal(format!("bad pagination {p}")))?,
        };
        let end = (start + self.page_size).min(self.total);
        self.reads += 1;
        Ok(Page {
            records: batch(start, end.saturating_sub(start)),
            next: if end < self.total { json!({"offset": end}) } else { Json::Null },
            cursor_max: None,
            extracted_at: 1,
        })
    }
}

/// One target's rows: `(record id, iteration)` in write order, and how many are durable.
#[derive(Debug, Default, Clone)]
pub struct Target {
    pub rows: Vec<(u64, i64)>,
    pub durable: usize,
    pub published: bool,
}

/// What every [`MemoryDestination`] built on it wrote, per target (the lane; 0 without lanes).
#[derive(Clone, Default)]
pub struct Table(Arc<Mutex<BTreeMap<usize, Target>>>);

impl Table {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Target>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Every target's rows.
    pub fn targets(&self) -> BTreeMap<usize, Target> {
        self.lock().clone()
    }
    /// The record ids of every target, sorted (a duplicate shows twice).
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.lock().values().flat_map(|t| t.rows.iter().map(|(id, _)| *id)).collect();
        ids.sort_unstable();
        ids
    }
    /// True when every target is published.
    pub fn published(&self) -> bool {
        self.lock().values().all(|t| t.published)
    }
}

/// A destination writing into a [`Table`]; a new instance on the same table is a restarted
/// process. The token is `{"rows": durable row count}`.
pub struct MemoryDestination {
    table: Table,
    target: usize,
    /// Flushes so far (each a durable commit).
    pub flushes: u64,
}

impl MemoryDestination {
    pub fn new(table: &Table) -> Self {
        MemoryDestination { table: table.clone(), target: 0, flushes: 0 }
    }
}

impl Destination for MemoryDestination {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.target = ctx.lane.map_or(0, |(lane, _)| lane);
        let mut t = self.table.lock();
        let target = t.entry(self.target).or_default();
        let rows = match resume {
            Some(token) => {
                token["rows"].as_u64().ok_or_else(|| Error::internal(format!("bad token {token}")))? as usize
            }
            None => 0, // a fresh job starts the target over (a full refresh's staging)
        };
        if rows > target.rows.len() {
            return Err(Error::internal(format!("token says {rows} rows, the target holds {}", target.rows.len())));
        }
        target.rows.truncate(rows);
        target.durable = rows;
        Ok(json!({"rows": rows}))
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        let mut t = self.table.lock();
        let target = t.entry(self.target).or_default();
        for r in batch.iter() {
            let id = r.id.parse().map_err(|_| Error::permanent(format!("record id {} is not a number", r.id)))?;
            target.rows.push((id, meta.iteration));
        }
        Ok(())
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        let mut t = self.table.lock();
        let target = t.entry(self.target).or_default();
        target.durable = target.rows.len();
        self.flushes += 1;
        Ok(json!({"rows": target.durable}))
    }

    fn finalize(&mut self) -> Result<()> {
        self.table.lock().entry(self.target).or_default().published = true;
        Ok(())
    }
}
