//! Sharded sources: several `bizon run` processes read one source whose shards (Kafka partitions
//! with `lease_partitions`) are the lanes of one job, without a queue between reading and writing.
//!
//! Each process holds a member slot (a backend lock, so a dead process leaves the count with its
//! connection or lease), counts the live members and keeps its fair share of the unfinished lanes:
//! `ceil(unfinished / members)`. A lane is a thread with its own source (restricted to the shard),
//! destination (the lane's target and commit chain, as a consumer lane writes it) and backend
//! connection (the lane's lock and fencing token); the shard's positions are committed with its
//! data, so a lane moves between processes at a commit: exactly-once where the destination is.
//! When a process joins, the others stop what exceeds the new share (commit, release the lock)
//! and the newcomer takes those lanes; when one dies its locks go with it and the survivors take
//! its lanes from their last commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use bizon_core::{Backend, Destination, Error, Job, Result, Source, StreamKey};

use super::lanes::{lane_key, lanes_done};
use super::{find_or_create_job, Outcome, Pipeline, PipelineSpec, RunSummary, Shard};
use crate::failpoints::Failpoints;
use crate::progress::{Counters, ProgressMode};

/// The connectors of one lane, built fresh for it (each its own connections).
pub struct ShardParts {
    pub source: Box<dyn Source>,
    pub destination: Box<dyn Destination>,
    pub backend: Box<dyn Backend>,
}

/// How often a process re-counts the members and re-balances its lanes.
const TICK: Duration = Duration::from_millis(500);

/// A lock named `<pipeline>#<what>`.
fn named(key: &StreamKey, what: &str) -> StreamKey {
    StreamKey { pipeline: format!("{}#{what}", key.pipeline), ..key.clone() }
}

/// How a lane's thread ended.
enum LaneEnd {
    /// Another process took the lane's lock first.
    Taken,
    Ran(Result<RunSummary>),
}

struct Lane<'s> {
    lane: usize,
    stop: Arc<AtomicBool>,
    /// Stopped to hand it to a process that joined.
    released: bool,
    handle: ScopedJoinHandle<'s, LaneEnd>,
}

/// What the lanes of this process added up to.
struct Tally {
    summary: RunSummary,
    completed: bool,
    failure: Option<Error>,
}

impl Tally {
    fn add(&mut self, lane: usize, end: std::thread::Result<LaneEnd>) {
        match end {
            Ok(LaneEnd::Taken) => tracing::debug!(lane, "the lane was taken by another process first"),
            Ok(LaneEnd::Ran(Ok(s))) => {
                tracing::info!(lane, records = s.records, outcome = ?s.outcome, "lane left");
                self.summary.records += s.records;
                self.summary.bytes += s.bytes;
                self.summary.retries += s.retries;
                self.completed |= s.outcome == Outcome::Completed;
            }
            Ok(LaneEnd::Ran(Err(e))) => {
                let e = e.context(format!("lane {lane}"));
                self.failure.get_or_insert(e);
            }
            Err(_) => {
                self.failure.get_or_insert(Error::internal(format!("the thread of lane {lane} panicked")));
            }
        }
    }
}

/// Run this process's share of a sharded source's job until the job completes (bounded reads),
/// a stop, or a lane's failure. `lanes` is the source's shard count; `make` builds one lane's
/// connectors. The spec is the pipeline's (`shard` unset).
pub fn run_sharded(
    mut spec: PipelineSpec,
    lanes: usize,
    backend: &mut dyn Backend,
    make: &(dyn Fn() -> Result<ShardParts> + Sync),
    stop: Arc<AtomicBool>,
    failpoints: Arc<Failpoints>,
    counters: Arc<Counters>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let key = spec.key.clone();
    let Some((_member, slot)) = join_members(backend, &key, lanes, &stop)? else {
        return Err(Error::config("stopped while waiting for a member slot (every lane had a process)"));
    };
    let job = shared_job(backend, &mut spec, &stop)?;
    tracing::info!(job = %job.id, lanes, member = slot, "reading a sharded source: leasing lanes through the backend");
    let mut tally = Tally {
        summary: RunSummary {
            job_id: job.id.clone(),
            outcome: Outcome::LaneDone,
            resumed_after: None,
            records: 0,
            bytes: 0,
            job_records: 0,
            elapsed: Duration::ZERO,
            retries: 0,
        },
        completed: false,
        failure: None,
    };
    spec.progress = ProgressMode::Off; // lanes log; the process's metrics count them all
    std::thread::scope(|s| -> Result<()> {
        let mut running: Vec<Lane<'_>> = Vec::new();
        let spawn = |lane: usize| {
            let lane_stop = Arc::new(AtomicBool::new(false));
            let mut lane_spec = spec.clone();
            lane_spec.shard = Some(Shard { lane, lanes, job: job.clone() });
            let (key, thread_stop, failpoints, counters) =
                (key.clone(), lane_stop.clone(), failpoints.clone(), counters.clone());
            let handle = std::thread::Builder::new()
                .name(format!("bizon-lane-{lane}"))
                .spawn_scoped(s, move || {
                    let mut parts = match make() {
                        Ok(p) => p,
                        Err(e) => return LaneEnd::Ran(Err(e)),
                    };
                    let Ok(lock) = parts.backend.lock_pipeline(&lane_key(&key, lane, lanes)) else {
                        return LaneEnd::Taken;
                    };
                    if let Err(e) = parts.source.select_shard(lane, lanes) {
                        return LaneEnd::Ran(Err(e));
                    }
                    tracing::info!(lane, lanes, "lane taken");
                    let run = Pipeline {
                        spec: lane_spec,
                        source: parts.source.as_mut(),
                        destination: parts.destination.as_mut(),
                        backend: parts.backend.as_mut(),
                        broker: None,
                        stop: thread_stop,
                        failpoints,
                        counters,
                    }
                    .run();
                    drop(lock);
                    LaneEnd::Ran(run)
                })
                .map_err(|e| Error::internal(format!("cannot start the thread of lane {lane}: {e}")))?;
            Ok::<_, Error>(Lane { lane, stop: lane_stop, released: false, handle })
        };
        let mut finisher_started = false;
        loop {
            let mut i = 0;
            while i < running.len() {
                if running[i].handle.is_finished() {
                    let l = running.swap_remove(i);
                    tally.add(l.lane, l.handle.join());
                } else {
                    i += 1;
                }
            }
            if stop.load(Ordering::SeqCst) || tally.failure.is_some() || tally.completed {
                for l in &running {
                    l.stop.store(true, Ordering::SeqCst);
                }
                for l in running.drain(..) {
                    tally.add(l.lane, l.handle.join());
                }
                return Ok(());
            }
            let done = lanes_done(backend, &job.id, lanes)?;
            let unfinished: Vec<usize> = (0..lanes).filter(|k| !done[*k]).collect();
            if unfinished.is_empty() {
                if running.is_empty() {
                    // Every lane committed done. The last one completed the job, unless its
                    // process died in between: a lane run on a done lane finishes it (idempotent).
                    let open = backend.resumable_job(&key)?.is_some_and(|j| j.id == job.id);
                    if !open || finisher_started {
                        return Ok(());
                    }
                    finisher_started = true;
                    running.push(spawn(0)?);
                }
            } else {
                rebalance(backend, &key, lanes, &unfinished, &mut running, &spawn)?;
            }
            std::thread::sleep(TICK);
        }
    })?;
    if let Some(e) = tally.failure {
        return Err(e);
    }
    let mut summary = tally.summary;
    summary.outcome = match (tally.completed, stop.load(Ordering::SeqCst)) {
        (true, _) => Outcome::Completed,
        (false, true) => Outcome::Stopped,
        (false, false) => Outcome::LaneDone,
    };
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Take a member slot (one per lane: more processes than lanes wait as standbys).
fn join_members(
    backend: &mut dyn Backend,
    key: &StreamKey,
    lanes: usize,
    stop: &AtomicBool,
) -> Result<Option<(Box<dyn Send>, usize)>> {
    let mut logged = false;
    while !stop.load(Ordering::SeqCst) {
        for slot in 0..lanes {
            let member = named(key, &format!("member-{slot}"));
            if matches!(backend.lock_held(&member)?, Some(true)) {
                continue;
            }
            if let Ok(lock) = backend.lock_pipeline(&member) {
                return Ok(Some((lock, slot)));
            }
        }
        if !logged {
            tracing::info!(lanes, "every lane has a process: waiting as a standby");
            logged = true;
        }
        std::thread::sleep(TICK * 2);
    }
    Ok(None)
}

/// The job every process of the pipeline shares: found or created under a short lock, so two
/// processes starting together do not create two.
fn shared_job(backend: &mut dyn Backend, spec: &mut PipelineSpec, stop: &AtomicBool) -> Result<Job> {
    let lock_name = named(&spec.key, "job");
    let mut tries = 0;
    let lock = loop {
        match backend.lock_pipeline(&lock_name) {
            Ok(lock) => break lock,
            Err(e) if tries >= 100 || stop.load(Ordering::SeqCst) => {
                return Err(e.context("finding the job of a sharded source"))
            }
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let (job, _) = find_or_create_job(backend, spec)?;
    drop(lock);
    Ok(job)
}

/// Keep this process's fair share of the unfinished lanes: release the surplus (a process
/// joined), take free lanes up to the share (a process died, or this one is new).
fn rebalance<'s>(
    backend: &mut dyn Backend,
    key: &StreamKey,
    lanes: usize,
    unfinished: &[usize],
    running: &mut Vec<Lane<'s>>,
    spawn: &dyn Fn(usize) -> Result<Lane<'s>>,
) -> Result<()> {
    let mut members = 0;
    for slot in 0..lanes {
        members += match backend.lock_held(&named(key, &format!("member-{slot}")))? {
            Some(held) => usize::from(held),
            None => return Err(Error::config("a sharded source needs a backend that can tell who holds a lock")),
        };
    }
    let share = unfinished.len().div_ceil(members.max(1));
    let active = running.iter().filter(|l| !l.released).count();
    if active > share {
        for l in running.iter_mut().filter(|l| !l.released).rev().take(active - share) {
            tracing::info!(lane = l.lane, members, share, "a process joined: handing a lane over");
            l.stop.store(true, Ordering::SeqCst);
            l.released = true;
        }
        return Ok(());
    }
    let mut want = share - active;
    for &lane in unfinished {
        if want == 0 {
            break;
        }
        if running.iter().any(|l| l.lane == lane) || backend.lock_held(&lane_key(key, lane, lanes))? == Some(true) {
            continue;
        }
        running.push(spawn(lane)?);
        want -= 1;
    }
    Ok(())
}
