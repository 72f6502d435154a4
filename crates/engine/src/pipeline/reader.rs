//! The producer's first step, `source.get(pagination)` → numbered page: one reader shared by the
//! stream runner, the thread runner's producer thread and the broker producer. It numbers
//! iterations from the last durable cursor, reads each page with its `extract` span and metrics,
//! saves the source cursor every `syncCursorInDBEvery` iterations and stops at `max_iterations`.
//! What happens to a page next (written, queued, published) is the caller's business.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use bizon_core::{Backend, DestinationCursor, Json, Page, ReadContext, Result, Source};

use super::PipelineSpec;
use crate::progress::Counters;
use crate::spans;

/// Reads a job's pages in order from a destination cursor on.
pub(super) struct PageReader<'r, 'b> {
    source: &'r mut dyn Source,
    ctx: &'r ReadContext,
    /// Shared with the consumer (same process): the source cursor is saved through it.
    backend: &'r Mutex<&'b mut dyn Backend>,
    spec: &'r PipelineSpec,
    job_id: &'r str,
    counters: &'r Counters,
    iteration: i64,
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
        PageReader {
            source,
            ctx,
            backend,
            spec,
            job_id,
            counters,
            iteration: start.iteration + 1,
            pagination: start.pagination.clone(),
        }
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
        let page = self.source.get(&self.pagination, self.ctx)?;
        spans::end("extract", iteration, page.records.len() as u64, t);
        let c = self.counters;
        c.records_extracted.fetch_add(page.records.len() as u64, Ordering::Relaxed);
        c.bytes_extracted.fetch_add(page.records.byte_len() as u64, Ordering::Relaxed);
        c.iterations_extracted.fetch_add(1, Ordering::Relaxed);
        self.save_source_cursor(iteration, &page.next)?;
        self.pagination = page.next.clone();
        self.iteration += 1;
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
