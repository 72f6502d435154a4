//! An in-memory [`Backend`] for engine tests: jobs, chained destination cursors, watermarks, one
//! lock per pipeline and fencing, kept in a store several handles share — as processes or hosts
//! share a PostgreSQL backend. It applies the same rules as the real backends ([`check_chain`]
//! inside the "transaction", the fencing token before every write) and passes the backend
//! conformance suite ([`crate::backend::run_suite`]), so a test on it tests the engine, not a
//! laxer backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bizon_core::time::now_micros;
use bizon_core::{
    check_chain, fenced_error, Backend, DestinationCursor, Error, Job, JobStatus, Json, Link, Result, StreamKey,
};

#[derive(Default)]
struct Store {
    /// Jobs in creation order (ties in `created_at` list the later-created one first).
    jobs: Vec<Job>,
    cursors: HashMap<String, DestinationCursor>,
    source_cursors: HashMap<String, (i64, Json)>,
    watermarks: HashMap<(String, String, String), Json>,
    /// Lock name → (holder handle, pid) while held.
    locks: HashMap<String, (u64, u32)>,
    /// Lock name → fencing token, bumped at every acquisition.
    fences: HashMap<String, i64>,
    next_handle: u64,
}

/// A handle onto a shared in-memory store. [`MemoryBackend::handle`] opens another handle onto
/// the same store (a restarted process, a second consumer).
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
    id: u64,
    /// (lock name, fencing token) of the last lock this handle took.
    fence: Option<(String, i64)>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who a lock name belongs to, for messages: `p`, `p#producer`, `p#consumer-1`.
fn lock_subject(name: &str) -> (&str, String) {
    match name.split_once('#') {
        Some((pipeline, role)) => (pipeline, format!("the {} of pipeline `{pipeline}`", role.replace('-', " lane "))),
        None => (name, format!("pipeline `{name}`")),
    }
}

/// Releases a pipeline lock when dropped (if this handle still holds it).
struct Guard {
    store: Arc<Mutex<Store>>,
    name: String,
    holder: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut s = lock(&self.store);
        if s.locks.get(&self.name).is_some_and(|(h, _)| *h == self.holder) {
            s.locks.remove(&self.name);
        }
    }
}

impl MemoryBackend {
    /// A new, empty store and a first handle onto it.
    pub fn new() -> Self {
        MemoryBackend { store: Arc::default(), id: 0, fence: None }.handle()
    }

    /// Another handle onto the same store (holding no lock).
    pub fn handle(&self) -> Self {
        let id = {
            let mut s = lock(&self.store);
            s.next_handle += 1;
            s.next_handle
        };
        MemoryBackend { store: self.store.clone(), id, fence: None }
    }

    /// The source cursor the producer saved last for `job_id` (iteration, pagination).
    pub fn source_cursor(&self, job_id: &str) -> Option<(i64, Json)> {
        lock(&self.store).source_cursors.get(job_id).cloned()
    }

    /// True while some handle holds the lock `name` (a pipeline, `<pipeline>#producer`,
    /// `<pipeline>#consumer-<k>`).
    pub fn locked(&self, name: &str) -> bool {
        lock(&self.store).locks.contains_key(name)
    }

    /// Every job of `pipeline` (lane jobs included), in creation order.
    pub fn jobs(&self, pipeline: &str) -> Vec<Job> {
        lock(&self.store).jobs.iter().filter(|j| j.key.pipeline == pipeline).cloned().collect()
    }

    /// The store, after checking this handle's fencing token when it holds a lock: a stale
    /// writer changes nothing.
    fn fenced(&self) -> Result<MutexGuard<'_, Store>> {
        let s = lock(&self.store);
        if let Some((name, ours)) = &self.fence {
            let current = s.fences.get(name).copied();
            if current != Some(*ours) {
                return Err(fenced_error(name, *ours, current));
            }
        }
        Ok(s)
    }

    fn store_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        let mut s = self.fenced()?;
        let stored = s.cursors.get(job_id).map(|c| (c.iteration, c.done));
        check_chain(job_id, link, stored, cursor)?;
        s.cursors.insert(job_id.to_owned(), cursor.clone());
        if let Some(j) = s.jobs.iter_mut().find(|j| j.id == job_id) {
            j.updated_at = now_micros();
        }
        Ok(())
    }
}

fn job_mut<'s>(s: &'s mut Store, job_id: &str) -> Option<&'s mut Job> {
    s.jobs.iter_mut().find(|j| j.id == job_id)
}

fn unfinished(status: JobStatus) -> bool {
    matches!(status, JobStatus::Running | JobStatus::Stopped | JobStatus::Failed)
}

impl Backend for MemoryBackend {
    fn lock_held(&mut self, key: &StreamKey) -> Result<Option<bool>> {
        Ok(Some(lock(&self.store).locks.contains_key(&key.pipeline)))
    }

    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        let mut s = lock(&self.store);
        let name = key.pipeline.clone();
        if let Some((_, pid)) = s.locks.get(&name).copied() {
            let (pipeline, subject) = lock_subject(&name);
            let running = s
                .jobs
                .iter()
                .rev()
                .filter(|j| j.key.pipeline == pipeline && j.status == JobStatus::Running)
                .max_by_key(|j| j.created_at)
                .map(|j| j.id.clone());
            return Err(Error::config(format!(
                "{subject} is already running: job {} (pid {pid}); wait for it to finish or stop it first",
                running.as_deref().unwrap_or("unknown")
            )));
        }
        s.locks.insert(name.clone(), (self.id, std::process::id()));
        let token = {
            let t = s.fences.entry(name.clone()).or_insert(0);
            *t += 1;
            *t
        };
        drop(s);
        self.fence = Some((name.clone(), token));
        Ok(Box::new(Guard { store: self.store.clone(), name, holder: self.id }))
    }

    fn check_fence(&mut self) -> Result<()> {
        self.fenced().map(drop)
    }

    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>> {
        let s = lock(&self.store);
        // newest first; among equal creation times the later-created one
        Ok(s.jobs.iter().rev().filter(|j| &j.key == key && unfinished(j.status)).max_by_key(|j| j.created_at).cloned())
    }

    fn create_job(&mut self, job: &Job) -> Result<()> {
        let mut s = self.fenced()?;
        if !s.jobs.iter().any(|j| j.id == job.id) {
            s.jobs.push(job.clone());
        }
        Ok(())
    }

    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()> {
        let mut s = self.fenced()?;
        if let Some(j) = job_mut(&mut s, job_id) {
            j.status = status;
            j.error = error.map(str::to_owned);
            j.updated_at = now_micros();
            j.pid = std::process::id();
        }
        Ok(())
    }

    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()> {
        let mut s = self.fenced()?;
        if let Some(j) = job_mut(&mut s, job_id) {
            j.total_records = total;
            j.updated_at = now_micros();
        }
        Ok(())
    }

    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>> {
        Ok(lock(&self.store).cursors.get(job_id).cloned())
    }

    fn swap_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        self.store_cursor(job_id, link, cursor)
    }

    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()> {
        lock(&self.store).source_cursors.insert(job_id.to_owned(), (iteration, pagination.clone()));
        Ok(())
    }

    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()> {
        let mut s = self.fenced()?;
        let j =
            job_mut(&mut s, job_id).ok_or_else(|| Error::internal(format!("completing job {job_id}: no such job")))?;
        j.status = JobStatus::Succeeded;
        j.error = None;
        j.updated_at = now_micros();
        let k = j.key.clone();
        if let Some(w) = watermark {
            s.watermarks.insert((k.pipeline, k.source, k.stream), w.clone());
        }
        Ok(())
    }

    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>> {
        let k = (key.pipeline.clone(), key.source.clone(), key.stream.clone());
        Ok(lock(&self.store).watermarks.get(&k).cloned())
    }

    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64> {
        let mut s = self.fenced()?;
        s.watermarks.remove(&(key.pipeline.clone(), key.source.clone(), key.stream.clone()));
        let mut n = 0;
        for j in s.jobs.iter_mut().filter(|j| &j.key == key && unfinished(j.status)) {
            j.status = JobStatus::Canceled;
            j.error = Some("stream reset".into());
            j.updated_at = now_micros();
            n += 1;
        }
        Ok(n)
    }

    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>> {
        let s = lock(&self.store);
        let mut jobs: Vec<(usize, &Job)> =
            s.jobs.iter().enumerate().filter(|(_, j)| j.key.pipeline == pipeline).collect();
        jobs.sort_by_key(|(seq, j)| std::cmp::Reverse((j.created_at, *seq)));
        Ok(jobs.into_iter().take(limit).map(|(_, j)| (j.clone(), s.cursors.get(&j.id).cloned())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryBackend;

    #[test]
    fn conformance() {
        let store = MemoryBackend::new();
        crate::backend::run_suite(&|| Box::new(store.handle()));
    }
}
