//! Sharded sources (`run_sharded`): "processes" (threads, each with its own backend handle and
//! per-lane connectors) lease the shards of one source as lanes of one job through the shared
//! backend, re-balance when one joins, and complete the job once every shard is read.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizon_core::{Json, Page, ReadContext, Result, Source};
use bizon_engine::{run_sharded, Counters, Failpoints, Outcome, Role, RunSummary, Runner, ShardParts};
use bizon_testkit::fakes::{MemoryDestination, Table};
use bizon_testkit::fixtures::batch;
use bizon_testkit::memory::MemoryBackend;
use common::*;
use serde_json::json;

const SHARDS: usize = 8;

/// `SHARDS` shards of `per` records each (shard `k` holds ids `k * per ..`), `page` per page,
/// `delay` per page (a source slow enough for a process to join mid-run).
struct ShardedNumbers {
    per: u64,
    page: u64,
    delay: Duration,
    shard: Option<usize>,
}

impl Source for ShardedNumbers {
    fn shards(&mut self) -> Result<Option<usize>> {
        Ok(Some(SHARDS))
    }
    fn select_shard(&mut self, shard: usize, shards: usize) -> Result<()> {
        assert_eq!(shards, SHARDS);
        self.shard = Some(shard);
        Ok(())
    }
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        let shard = self.shard.expect("a lane reads its own shard only") as u64;
        let start = pagination["offset"].as_u64().unwrap_or(0);
        let end = (start + self.page).min(self.per);
        std::thread::sleep(self.delay);
        Ok(Page {
            records: batch(shard * self.per + start, end - start),
            next: if end < self.per { json!({"offset": end}) } else { Json::Null },
            cursor_max: None,
            extracted_at: 1,
        })
    }
}

/// One "process": its own backend handle; every lane gets a fresh source, destination and handle.
fn process(store: &MemoryBackend, table: &Table, per: u64, delay: Duration, stop: Arc<AtomicBool>) -> RunSummary {
    let make = || -> Result<ShardParts> {
        Ok(ShardParts {
            source: Box::new(ShardedNumbers { per, page: 10, delay, shard: None }),
            destination: Box::new(MemoryDestination::new(table)),
            backend: Box::new(store.handle()),
        })
    };
    let mut backend = store.handle();
    let spec = spec(Runner::Thread, Role::Both, 0);
    let (failpoints, counters) = (Arc::new(Failpoints::default()), Arc::new(Counters::default()));
    run_sharded(spec, SHARDS, &mut backend, &make, stop, failpoints, counters).expect("a sharded run")
}

/// Each lane's target holds its own shard's records, numbered with the lane's iterations
/// (`lane`, `lane + SHARDS`, …: unique across the job).
fn check_lanes(table: &Table, per: u64) {
    let targets = table.targets();
    assert_eq!(targets.len(), SHARDS, "a target per lane");
    for (lane, target) in targets {
        let shard = lane as u64;
        assert!(target.rows.iter().all(|(id, i)| id / per == shard && *i as usize % SHARDS == lane), "lane {lane}");
    }
}

#[test]
fn two_processes_split_the_shards_and_the_job_completes_once_every_shard_is_read() {
    let (store, table, per) = (MemoryBackend::new(), Table::default(), 200u64);
    let stop = Arc::new(AtomicBool::new(false));
    let summaries = std::thread::scope(|s| {
        let a = s.spawn(|| process(&store, &table, per, Duration::from_millis(2), stop.clone()));
        let b = s.spawn(|| process(&store, &table, per, Duration::from_millis(2), stop.clone()));
        [a.join().unwrap(), b.join().unwrap()]
    });
    assert_exactly_once(&table, per * SHARDS as u64);
    check_lanes(&table, per);
    let completed = summaries.iter().filter(|s| s.outcome == Outcome::Completed).count();
    assert!(completed >= 1, "a lane completes the job: {summaries:?}");
    assert!(summaries.iter().all(|s| matches!(s.outcome, Outcome::Completed | Outcome::LaneDone)), "{summaries:?}");
    assert_eq!(summaries.iter().map(|s| s.records).sum::<u64>(), per * SHARDS as u64, "records counted once");
    assert_eq!(job_status(&store), bizon_core::JobStatus::Succeeded);
}

#[test]
fn a_process_that_joins_mid_run_gets_lanes_the_first_one_hands_over() {
    let (store, table, per) = (MemoryBackend::new(), Table::default(), 1000u64);
    let stop = Arc::new(AtomicBool::new(false));
    // 100 pages of 20 ms per shard: ~2 s alone; the second process joins after 0.6 s
    let delay = Duration::from_millis(20);
    let (first, late) = std::thread::scope(|s| {
        let a = s.spawn(|| process(&store, &table, per, delay, stop.clone()));
        std::thread::sleep(Duration::from_millis(600));
        let b = s.spawn(|| process(&store, &table, per, delay, stop.clone()));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_exactly_once(&table, per * SHARDS as u64);
    check_lanes(&table, per);
    assert!(first.records > 0 && late.records > 0, "both wrote: {first:?} {late:?}");
    assert_eq!(first.records + late.records, per * SHARDS as u64);
    // lanes moved at commits: the hand-over left each lane's rows in order, each once
    for (lane, target) in table.targets() {
        let mut ids: Vec<u64> = target.rows.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        let want: Vec<u64> = (lane as u64 * per..(lane as u64 + 1) * per).collect();
        assert_eq!(ids, want, "lane {lane}");
    }
}

#[test]
fn a_stop_stops_every_lane_after_its_commit_and_the_next_run_resumes_them() {
    let (store, table, per) = (MemoryBackend::new(), Table::default(), 1000u64);
    let stop = Arc::new(AtomicBool::new(false));
    let first = std::thread::scope(|s| {
        let a = s.spawn(|| process(&store, &table, per, Duration::from_millis(20), stop.clone()));
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::SeqCst);
        a.join().unwrap()
    });
    assert_eq!(first.outcome, Outcome::Stopped);
    assert!(first.records > 0 && first.records < per * SHARDS as u64, "{first:?}");
    let second = process(&store, &table, per, Duration::ZERO, Arc::new(AtomicBool::new(false)));
    assert_eq!(second.outcome, Outcome::Completed);
    assert_eq!(first.records + second.records, per * SHARDS as u64, "the second run went on from the commits");
    assert_exactly_once(&table, per * SHARDS as u64);
}
