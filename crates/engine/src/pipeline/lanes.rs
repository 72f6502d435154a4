//! Lanes: how a job's pages are split over several ordered broker lanes (iteration `i` → lane
//! `i % N`), each consumed by one consumer that holds the lane's lock and commits its own cursor
//! chain. The producer reads every lane's chain to know where to restart and how far ahead it is.

use bizon_core::{Backend, DestinationCursor, Json, Result, StreamKey};

/// The backend key of a lane's destination cursor chain (the job id itself with one lane).
pub(super) use bizon_core::lane_chain_id as lane_cursor_id;

/// The first iteration after `prev` that belongs to `lane` of `lanes`.
pub(super) fn next_in_lane(prev: i64, lane: usize, lanes: usize) -> i64 {
    let i = prev + 1;
    let n = lanes as i64;
    i + (lane as i64 - i).rem_euclid(n)
}

/// Whether each lane committed `done`.
pub(super) fn lanes_done(backend: &mut dyn Backend, job_id: &str, lanes: usize) -> Result<Vec<bool>> {
    Ok(lane_cursors(backend, job_id, lanes)?.iter().map(|c| c.as_ref().is_some_and(|c| c.done)).collect())
}

/// Every lane's destination cursor (`None` for a lane that has not started).
pub(super) fn lane_cursors(
    backend: &mut dyn Backend,
    job_id: &str,
    lanes: usize,
) -> Result<Vec<Option<DestinationCursor>>> {
    let ids: Vec<String> = (0..lanes).map(|lane| lane_cursor_id(job_id, lane, lanes)).collect();
    backend.destination_cursors(&ids)
}

/// Where a producer restarts: the cursor of the lane that committed least (every lane then
/// skips what it already has); a done cursor when every lane is done.
pub(super) fn slowest_lane(backend: &mut dyn Backend, job_id: &str, lanes: usize) -> Result<DestinationCursor> {
    let fresh = DestinationCursor::start(Json::Null);
    let mut slowest: Option<DestinationCursor> = None;
    let mut all_done = true;
    for c in lane_cursors(backend, job_id, lanes)? {
        let Some(c) = c else { return Ok(fresh) };
        all_done &= c.done;
        if slowest.as_ref().is_none_or(|s| c.iteration < s.iteration) {
            slowest = Some(c);
        }
    }
    let mut c = slowest.unwrap_or(fresh);
    c.done = all_done;
    Ok(c)
}

/// The lock of a consumer lane: `<pipeline>#consumer` with one lane, `<pipeline>#consumer-<k>`
/// with several.
pub(super) fn lane_key(key: &StreamKey, lane: usize, lanes: usize) -> StreamKey {
    let mut lane_key = key.clone();
    lane_key.pipeline = match lanes {
        1 => format!("{}#consumer", key.pipeline),
        _ => format!("{}#consumer-{lane}", key.pipeline),
    };
    lane_key
}

/// A consumer takes the first free lane of `key`'s pipeline (a lock per lane). Returns the lock
/// guard and the lane.
pub(super) fn claim_lane(backend: &mut dyn Backend, key: &StreamKey, lanes: usize) -> Result<(Box<dyn Send>, usize)> {
    for lane in 0..lanes {
        match backend.lock_pipeline(&lane_key(key, lane, lanes)) {
            Ok(lock) => return Ok((lock, lane)),
            Err(e) if lane + 1 == lanes => {
                return Err(if lanes == 1 {
                    e
                } else {
                    e.context(format!("all {lanes} consumer lanes of pipeline `{}` are taken", key.pipeline))
                })
            }
            Err(_) => continue,
        }
    }
    unreachable!("lanes >= 1")
}

/// Unfinished lanes of the job whose lock nobody holds: consumers wanted (`None` when the backend
/// cannot tell whether a lock is held).
pub(super) fn unclaimed_lanes(
    backend: &mut dyn Backend,
    key: &StreamKey,
    job_id: &str,
    lanes: usize,
) -> Result<Option<u64>> {
    let mut unclaimed = 0;
    for (lane, done) in lanes_done(backend, job_id, lanes)?.into_iter().enumerate() {
        if done {
            continue;
        }
        match backend.lock_held(&lane_key(key, lane, lanes))? {
            None => return Ok(None),
            Some(false) => unclaimed += 1,
            Some(true) => {}
        }
    }
    Ok(Some(unclaimed))
}

/// What a consumer without an unfinished lane of its own can do next.
pub(super) enum NextLane {
    /// It took this unfinished lane (free, or its holder's lease expired).
    Take(Box<dyn Send>, usize),
    /// Every lane of the job is done: nothing left to consume.
    AllDone,
    /// Stopped by a signal while waiting for a lane.
    Stopped,
}

/// The lock of an unfinished lane other than `except`, trying the lanes after `except` first (so
/// consumers handing lanes over spread out); `None` when every one is held. A lock the backend
/// reports held is not tried (taking a lock may open a connection: waiting consumers poll), unless
/// its holder's lease may have expired, which only `lock_pipeline` finds out: every lane is tried
/// on each `LEASE_PROBE_EVERY`-th call. A lane is looked at again once its lock is held: its
/// consumer may have finished it (and released the lock) since `done` was read.
fn lock_free_lane(
    backend: &mut dyn Backend,
    key: &StreamKey,
    job_id: &str,
    done: &[bool],
    except: Option<usize>,
    probe_all: bool,
) -> Option<(Box<dyn Send>, usize)> {
    let lanes = done.len();
    let from = except.map_or(0, |e| e + 1);
    (0..lanes).map(|k| (from + k) % lanes).filter(|k| !done[*k] && Some(*k) != except).find_map(|k| {
        let lane = lane_key(key, k, lanes);
        if !probe_all && matches!(backend.lock_held(&lane), Ok(Some(true))) {
            return None;
        }
        let lock = backend.lock_pipeline(&lane).ok()?;
        match backend.destination_cursor(&lane_cursor_id(job_id, k, lanes)) {
            Ok(c) if c.as_ref().is_some_and(|c| c.done) => None, // finished meanwhile: the lock is dropped
            _ => Some((lock, k)),
        }
    })
}

/// Every how many polls a waiting consumer tries the held lanes too (a paused holder's lease).
const LEASE_PROBE_EVERY: u32 = 10;

/// Steps per poll of the lanes. A waiting consumer checks for a stop at every step; it looks at the
/// job's status with every poll and, once a lane is done, at every step too (the producer deals
/// pages to the lanes in turn, so the others end within a few pages). Consumers on standby thus
/// cost the shared backend little while the job runs.
const JOB_LOOKS_PER_POLL: u32 = 10;

/// A consumer on a dry `lane` takes an unfinished lane that has no consumer, if there is one.
pub(super) fn lane_without_consumer(
    backend: &mut dyn Backend,
    key: &StreamKey,
    job_id: &str,
    lane: usize,
    lanes: usize,
) -> Result<Option<(Box<dyn Send>, usize)>> {
    let done = lanes_done(backend, job_id, lanes)?;
    Ok(lock_free_lane(backend, key, job_id, &done, Some(lane), false))
}

/// Work stealing: a consumer whose lane is finished (or that found every lane taken) takes an
/// unfinished lane that is free, or one whose holder's lease expired (the backend's lock takes over
/// a lock whose heartbeat stopped; a killed holder's lock is gone at once). While every
/// unfinished lane has a live consumer it waits, polling every `every`, so a consumer that dies is
/// replaced within a poll; it returns once every lane is done.
pub(super) fn take_unfinished_lane(
    backend: &mut dyn Backend,
    key: &StreamKey,
    job_id: &str,
    lanes: usize,
    stop: &std::sync::atomic::AtomicBool,
    every: std::time::Duration,
) -> Result<NextLane> {
    let (mut logged, mut ending) = (false, false);
    for tick in 0u32.. {
        // a look at the job with every look at the lanes (one query for every lane), and near the
        // end between them too: a consumer waiting next to the last lane exits as soon as that
        // lane completes the job; a canceled job is seen at the next poll
        let poll_tick = tick.is_multiple_of(JOB_LOOKS_PER_POLL);
        if (ending || poll_tick) && backend.resumable_job(key)?.is_none_or(|j| j.id != job_id) {
            return Ok(NextLane::AllDone);
        }
        if !poll_tick {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(NextLane::Stopped);
            }
            std::thread::sleep(every / JOB_LOOKS_PER_POLL);
            continue;
        }
        let poll = tick / JOB_LOOKS_PER_POLL;
        let done = lanes_done(backend, job_id, lanes)?;
        if done.iter().all(|d| *d) {
            return Ok(NextLane::AllDone);
        }
        ending = done.iter().any(|d| *d);
        if let Some((lock, lane)) =
            lock_free_lane(backend, key, job_id, &done, None, poll.is_multiple_of(LEASE_PROBE_EVERY))
        {
            return Ok(NextLane::Take(lock, lane));
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(NextLane::Stopped);
        }
        if !logged {
            let open: Vec<usize> = (0..lanes).filter(|k| !done[*k]).collect();
            tracing::info!(lanes, unfinished = ?open, "every unfinished lane has a consumer: waiting to take one that frees up");
            logged = true;
        }
        std::thread::sleep(every / JOB_LOOKS_PER_POLL);
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::{lane_cursor_id, lock_free_lane, next_in_lane};
    use bizon_core::{Backend, DestinationCursor};
    use bizon_testkit::backend::{cursor, job, key};
    use bizon_testkit::memory::MemoryBackend;

    #[test]
    fn a_lane_finished_after_the_lanes_were_read_is_not_taken() {
        let mut b = MemoryBackend::new();
        let (k, lanes) = (key("retake"), 2);
        for lane in 0..lanes {
            let id = lane_cursor_id("j", lane, lanes);
            b.create_job(&job(&id, "retake", 1)).expect("lane job");
            b.commit_destination_cursor(&id, None, &cursor(-1)).expect("lane start");
        }
        // lane 0 finishes (and its consumer lets its lock go) after a waiting consumer read the lanes
        let read_before = [false, false];
        let done = DestinationCursor { done: true, ..cursor(-1) };
        b.commit_destination_cursor(&lane_cursor_id("j", 0, lanes), Some(-1), &done).expect("lane 0 done");
        let (lock, lane) = lock_free_lane(&mut b, &k, "j", &read_before, None, false).expect("lane 1 is free");
        assert_eq!(lane, 1, "the finished lane 0 is passed over");
        drop(lock);
        b.commit_destination_cursor(&lane_cursor_id("j", 1, lanes), Some(-1), &done).expect("lane 1 done");
        assert!(lock_free_lane(&mut b, &k, "j", &read_before, None, false).is_none(), "nothing left to take");
    }

    #[test]
    fn each_lane_takes_every_nth_iteration_from_where_it_stands() {
        for lanes in 1..5usize {
            for lane in 0..lanes {
                // from the start (-1) a lane's chain visits lane, lane + N, lane + 2N, …
                let mut prev = -1;
                let mut seen = Vec::new();
                for _ in 0..5 {
                    prev = next_in_lane(prev, lane, lanes);
                    seen.push(prev);
                }
                let want: Vec<i64> = (0..5).map(|k| (lane + k * lanes) as i64).collect();
                assert_eq!(seen, want, "lane {lane} of {lanes}");
            }
        }
        // after a commit of another lane's iteration (the producer's restart point) too
        assert_eq!(next_in_lane(4, 1, 3), 7);
        assert_eq!(next_in_lane(5, 1, 3), 7);
        assert_eq!(next_in_lane(6, 1, 3), 7);
        assert_eq!(lane_cursor_id("j", 0, 1), "j");
        assert_eq!(lane_cursor_id("j", 2, 3), "j~2");
    }
}
