//! A fault-injecting [`Backend`]: wraps any backend and fails the calls a test chooses — the Nth
//! `commit_destination_cursor`, every `check_fence` from some point on, a random share of
//! commits — transiently or permanently, before the call reaches the backend or after it (the
//! commit landed, the reply was lost: an unknown commit state). The plan is shared, so the
//! handles of a restarted "process" keep counting where the last one stopped.

use std::sync::{Arc, Mutex};

use bizon_core::{Backend, DestinationCursor, Error, ErrorKind, Job, JobStatus, Json, Link, Result, StreamKey};

/// The backend calls a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    LockPipeline,
    ResumableJob,
    CreateJob,
    SetJobStatus,
    SetJobTotal,
    DestinationCursor,
    CommitDestinationCursor,
    RecoverDestinationCursor,
    SaveSourceCursor,
    CompleteJob,
    StreamWatermark,
    ResetStream,
    CheckFence,
    ListJobs,
}

/// Which calls of its kind a fault hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Calls `from`, `from + 1`, … `from + count - 1` (1-based; `u64::MAX` = from then on).
    Nth { from: u64, count: u64 },
    /// Each call with this probability (the plan's seeded generator draws).
    Random(f64),
}

/// One fault: which call, when, with which error kind, and whether the call went through first.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub call: Call,
    pub when: When,
    pub kind: ErrorKind,
    /// The call reaches the backend and succeeds, then the error is returned (a lost reply).
    pub after: bool,
}

impl Fault {
    /// Fail the `n`th call (1-based) of `call` once, with a transient error, before it runs.
    pub fn nth(call: Call, n: u64) -> Self {
        Fault { call, when: When::Nth { from: n, count: 1 }, kind: ErrorKind::Transient, after: false }
    }
    /// Fail every call of `call` from the `n`th on.
    pub fn from(call: Call, n: u64) -> Self {
        Fault { call, when: When::Nth { from: n, count: u64::MAX }, kind: ErrorKind::Transient, after: false }
    }
    /// Fail each call of `call` with probability `p`.
    pub fn random(call: Call, p: f64) -> Self {
        Fault { call, when: When::Random(p), kind: ErrorKind::Transient, after: false }
    }
    pub fn kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
    /// Let the call through, then report the error (the caller cannot know it succeeded).
    pub fn after_the_call(mut self) -> Self {
        self.after = true;
        self
    }
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    calls: Vec<(Call, u64)>,
    fired: Vec<(Call, u64)>,
    rng: u64,
}

/// The faults and the count of calls so far, shared by every [`FaultyBackend`] built on it.
#[derive(Clone, Default)]
pub struct FaultPlan(Arc<Mutex<State>>);

impl FaultPlan {
    pub fn new(faults: impl IntoIterator<Item = Fault>, seed: u64) -> Self {
        FaultPlan(Arc::new(Mutex::new(State {
            faults: faults.into_iter().collect(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            ..State::default()
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Disarm every fault (the calls go on being counted).
    pub fn clear(&self) {
        self.state().faults.clear();
    }

    /// How many calls of `call` were made.
    pub fn calls(&self, call: Call) -> u64 {
        self.state().calls.iter().find(|(c, _)| *c == call).map_or(0, |(_, n)| *n)
    }

    /// How many faults fired on `call`.
    pub fn fired(&self, call: Call) -> u64 {
        self.state().fired.iter().find(|(c, _)| *c == call).map_or(0, |(_, n)| *n)
    }

    /// Count a call of `call`; the fault to raise, if one hits it.
    fn draw(&self, call: Call) -> Option<Fault> {
        let mut s = self.state();
        let n = match s.calls.iter_mut().find(|(c, _)| *c == call) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                s.calls.push((call, 1));
                1
            }
        };
        let mut hit = None;
        for i in 0..s.faults.len() {
            let f = s.faults[i];
            if f.call != call {
                continue;
            }
            let fires = match f.when {
                When::Nth { from, count } => n >= from && n - from < count,
                When::Random(p) => {
                    let r = &mut s.rng;
                    *r ^= *r << 13;
                    *r ^= *r >> 7;
                    *r ^= *r << 17;
                    ((*r >> 11) as f64 / (1u64 << 53) as f64) < p
                }
            };
            if fires && hit.is_none() {
                hit = Some(f);
            }
        }
        if hit.is_some() {
            match s.fired.iter_mut().find(|(c, _)| *c == call) {
                Some((_, n)) => *n += 1,
                None => s.fired.push((call, 1)),
            }
        }
        hit
    }
}

/// A backend whose calls fail as its [`FaultPlan`] says.
pub struct FaultyBackend {
    inner: Box<dyn Backend>,
    plan: FaultPlan,
}

impl FaultyBackend {
    pub fn new(inner: Box<dyn Backend>, plan: FaultPlan) -> Self {
        FaultyBackend { inner, plan }
    }

    fn call<T>(&mut self, call: Call, f: impl FnOnce(&mut dyn Backend) -> Result<T>) -> Result<T> {
        let Some(fault) = self.plan.draw(call) else { return f(self.inner.as_mut()) };
        let error = || Error::new(fault.kind, format!("injected fault: {call:?} failed"));
        if fault.after {
            f(self.inner.as_mut())?;
        }
        Err(error())
    }
}

impl Backend for FaultyBackend {
    fn lock_pipeline(&mut self, key: &StreamKey) -> Result<Box<dyn Send>> {
        self.call(Call::LockPipeline, |b| b.lock_pipeline(key))
    }
    fn lock_held(&mut self, key: &StreamKey) -> Result<Option<bool>> {
        self.inner.lock_held(key)
    }
    fn resumable_job(&mut self, key: &StreamKey) -> Result<Option<Job>> {
        self.call(Call::ResumableJob, |b| b.resumable_job(key))
    }
    fn create_job(&mut self, job: &Job) -> Result<()> {
        self.call(Call::CreateJob, |b| b.create_job(job))
    }
    fn set_job_status(&mut self, job_id: &str, status: JobStatus, error: Option<&str>) -> Result<()> {
        self.call(Call::SetJobStatus, |b| b.set_job_status(job_id, status, error))
    }
    fn set_job_total(&mut self, job_id: &str, total: Option<u64>) -> Result<()> {
        self.call(Call::SetJobTotal, |b| b.set_job_total(job_id, total))
    }
    fn destination_cursor(&mut self, job_id: &str) -> Result<Option<DestinationCursor>> {
        self.call(Call::DestinationCursor, |b| b.destination_cursor(job_id))
    }
    fn commit_destination_cursor(
        &mut self,
        job_id: &str,
        follows: Option<i64>,
        cursor: &DestinationCursor,
    ) -> Result<()> {
        self.call(Call::CommitDestinationCursor, |b| b.commit_destination_cursor(job_id, follows, cursor))
    }
    fn recover_destination_cursor(
        &mut self,
        job_id: &str,
        from: Option<i64>,
        cursor: &DestinationCursor,
    ) -> Result<()> {
        self.call(Call::RecoverDestinationCursor, |b| b.recover_destination_cursor(job_id, from, cursor))
    }
    /// Only reached through the two calls above, which count and fault: straight through.
    fn swap_cursor(&mut self, job_id: &str, link: Link, cursor: &DestinationCursor) -> Result<()> {
        self.inner.swap_cursor(job_id, link, cursor)
    }
    fn save_source_cursor(&mut self, job_id: &str, iteration: i64, pagination: &Json) -> Result<()> {
        self.call(Call::SaveSourceCursor, |b| b.save_source_cursor(job_id, iteration, pagination))
    }
    fn complete_job(&mut self, job_id: &str, watermark: Option<&Json>) -> Result<()> {
        self.call(Call::CompleteJob, |b| b.complete_job(job_id, watermark))
    }
    fn stream_watermark(&mut self, key: &StreamKey) -> Result<Option<Json>> {
        self.call(Call::StreamWatermark, |b| b.stream_watermark(key))
    }
    fn reset_stream(&mut self, key: &StreamKey) -> Result<u64> {
        self.call(Call::ResetStream, |b| b.reset_stream(key))
    }
    fn check_fence(&mut self) -> Result<()> {
        self.call(Call::CheckFence, |b| b.check_fence())
    }
    fn list_jobs(&mut self, pipeline: &str, limit: usize) -> Result<Vec<(Job, Option<DestinationCursor>)>> {
        self.call(Call::ListJobs, |b| b.list_jobs(pipeline, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cursor, job, run_suite};
    use crate::memory::MemoryBackend;

    #[test]
    fn without_faults_it_is_the_backend_it_wraps() {
        let store = MemoryBackend::new();
        let plan = FaultPlan::default();
        run_suite(&|| Box::new(FaultyBackend::new(Box::new(store.handle()), plan.clone())));
        assert!(plan.calls(Call::CommitDestinationCursor) > 10);
    }

    #[test]
    fn the_nth_commit_fails_before_or_after_it_lands() {
        let store = MemoryBackend::new();
        let plan = FaultPlan::new(
            [
                Fault::nth(Call::CommitDestinationCursor, 2),
                Fault::nth(Call::CommitDestinationCursor, 3).after_the_call(),
            ],
            1,
        );
        let mut b = FaultyBackend::new(Box::new(store.handle()), plan.clone());
        b.create_job(&job("j", "p", 1)).unwrap();
        b.commit_destination_cursor("j", None, &cursor(-1)).unwrap();
        let e = b.commit_destination_cursor("j", Some(-1), &cursor(0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(b.destination_cursor("j").unwrap(), Some(cursor(-1)), "failed before the call: nothing stored");
        assert!(b.commit_destination_cursor("j", Some(-1), &cursor(0)).is_err(), "the lost reply");
        assert_eq!(b.destination_cursor("j").unwrap(), Some(cursor(0)), "failed after the call: stored");
        b.commit_destination_cursor("j", Some(0), &cursor(1)).unwrap();
        assert_eq!((plan.calls(Call::CommitDestinationCursor), plan.fired(Call::CommitDestinationCursor)), (4, 2));
    }
}
