//! The producer's first step, `source.get(pagination)` → numbered page: one reader shared by the
//! stream runner, the thread runner's producer thread and the broker producer. It numbers
//! iterations from the last durable cursor, reads each page with its `extract` span and metrics,
//! saves the source cursor every `syncCursorInDBEvery` iterations and stops at `max_iterations`.
//! What happens to a page next (written, queued, published) is the caller's business.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use bizon_core::config::SyncMode;
use bizon_core::record::cursor_cmp;
use bizon_core::{Backend, DestinationCursor, Json, Page, ReadContext, RecordBatch, Result, Source};

use super::PipelineSpec;
use crate::progress::Counters;
use crate::spans;

/// Reads a job's pages in order from a destination cursor on.
pub(super) struct PageReader<'r, 'b> {
    source: &'r mut dyn Source,
    ctx: &'r ReadContext,
    /// With [`PipelineSpec::filter_after_watermark`]: what the source is told (a full read).
    full_read: Option<ReadContext>,
    /// Shared with the consumer (same process): the source cursor is saved through it.
    backend: &'r Mutex<&'b mut dyn Backend>,
    spec: &'r PipelineSpec,
    job_id: &'r str,
    counters: &'r Counters,
    iteration: i64,
    /// Iterations between two pages: 1, or the lane count of a sharded source's lane.
    step: i64,
    pagination: Json,
}

impl<'r, 'b> PageReader<'r, 'b> {
    /// A reader that starts after `start` (the last durable cursor): its pagination, its
    /// iteration + 1.
    pub(super) fn new(
        source: &'r mut dyn Source,
        ctx: &'r ReadContext,
        backend: &'r Mutex<&'b mut dyn Backend>,
        spec: &'r PipelineSpec,
        job_id: &'r str,
        counters: &'r Counters,
        start: &DestinationCursor,
    ) -> Self {
        let full_read = (spec.filter_after_watermark && ctx.sync_mode == SyncMode::Incremental).then(|| ReadContext {
            sync_mode: SyncMode::FullRefresh,
            watermark: None,
            cursor_field: ctx.cursor_field.clone(),
        });
        PageReader {
            source,
            ctx,
            full_read,
            backend,
            spec,
            job_id,
            counters,
            iteration: start.iteration + 1,
            step: 1,
            pagination: start.pagination.clone(),
        }
    }

    /// Number pages as lane `lane` of `lanes` does (`lane`, `lane + lanes`, …): a sharded source's
    /// lanes read their own pages, and iterations stay unique across the job (they make `bizon_id`).
    pub(super) fn in_lane(mut self, (lane, lanes): (usize, usize)) -> Self {
        if lanes > 1 {
            self.iteration = super::lanes::next_in_lane(self.iteration - 1, lane, lanes);
            self.step = lanes as i64;
        }
        self
    }

    /// The iteration the next [`PageReader::read`] produces.
    pub(super) fn iteration(&self) -> i64 {
        self.iteration
    }

    /// Read the next page with its iteration (`Page::is_last` when the source is exhausted after
    /// it), or `None` when `max_iterations` is reached: nothing was read, and
    /// [`PageReader::iteration`] is the first iteration not produced. Not called again after a
    /// last page or `None`.
    pub(super) fn read(&mut self) -> Result<Option<(i64, Page)>> {
        let iteration = self.iteration;
        if self.spec.max_iterations.is_some_and(|m| iteration >= m as i64) {
            return Ok(None);
        }
        let t = spans::start();
        let mut page = self.source.get(&self.pagination, self.full_read.as_ref().unwrap_or(self.ctx))?;
        spans::end("extract", iteration, page.records.len() as u64, t);
        let c = self.counters;
        c.records_extracted.fetch_add(page.records.len() as u64, Ordering::Relaxed);
        c.bytes_extracted.fetch_add(page.records.byte_len() as u64, Ordering::Relaxed);
        c.iterations_extracted.fetch_add(1, Ordering::Relaxed);
        if let (Some(_), Some(field), Some(watermark)) = (&self.full_read, &self.ctx.cursor_field, &self.ctx.watermark)
        {
            page.records = above_watermark(&page.records, field, watermark);
        }
        self.save_source_cursor(iteration, &page.next)?;
        self.pagination = page.next.clone();
        self.iteration += self.step;
        Ok(Some((iteration, page)))
    }

    /// The producer's progress (bizon's source cursor), every `syncCursorInDBEvery` iterations.
    /// Informational: resume always starts from the destination cursor.
    fn save_source_cursor(&self, iteration: i64, pagination: &Json) -> Result<()> {
        if ((iteration + 1) as u64).is_multiple_of(self.spec.source_cursor_every) {
            let mut backend = self.backend.lock().unwrap_or_else(|p| p.into_inner());
            backend.save_source_cursor(self.job_id, iteration, pagination)?;
        }
        Ok(())
    }
}

/// The records whose `field` (a top-level key, or a JSON pointer such as `/properties/updated`)
/// is above `watermark`; a record without the field (or unparsable) is kept: it cannot be placed,
/// and dropping it could lose it.
fn above_watermark(records: &RecordBatch, field: &str, watermark: &Json) -> RecordBatch {
    let mut kept = RecordBatch::with_capacity(records.len(), records.byte_len());
    for (i, r) in records.iter().enumerate() {
        let value = serde_json::from_slice::<Json>(r.data).ok().and_then(|j| {
            let v = if field.starts_with('/') { j.pointer(field).cloned() } else { j.get(field).cloned() };
            v.filter(|v| !v.is_null())
        });
        if value.is_none_or(|v| cursor_cmp(&v, watermark).is_gt()) {
            kept.push_routed(records.route(i), r.id, r.timestamp, |out| out.extend_from_slice(r.data));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_records_above_the_watermark_and_those_without_the_field() {
        let mut records = RecordBatch::default();
        for (id, data) in [
            ("a", r#"{"updated": "2024-01-03"}"#),
            ("b", r#"{"updated": "2024-01-09"}"#),
            ("c", r#"{"other": 1}"#),
            ("d", r#"{"updated": "2024-01-05", "p": {"n": 7}}"#),
        ] {
            records.push(id, 0, data.as_bytes());
        }
        let ids = |b: RecordBatch| b.iter().map(|r| r.id.to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(above_watermark(&records, "updated", &Json::from("2024-01-05"))), ["b", "c"]);
        assert_eq!(ids(above_watermark(&records, "/p/n", &Json::from(6))), ["a", "b", "c", "d"]);
        assert_eq!(ids(above_watermark(&records, "/p/n", &Json::from(7))), ["a", "b", "c"]);
    }
}
