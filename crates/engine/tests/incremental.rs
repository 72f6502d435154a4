//! Incremental runs of a source that cannot filter by `cursor_field` itself: the engine reads
//! everything and keeps the records above the last run's watermark, through every runner.

mod common;

use bizon_core::config::SyncMode;
use bizon_core::QueueBroker;
use bizon_engine::{Outcome, Role, Runner};
use bizon_testkit::broker::MemoryBroker;
use bizon_testkit::fakes::Table;
use bizon_testkit::memory::MemoryBackend;
use common::*;

#[test]
fn a_source_without_incremental_reads_all_and_only_records_above_the_watermark_are_written() {
    for (name, runner, broker) in [
        ("stream", Runner::Stream, None),
        ("thread", Runner::Thread, None),
        ("thread over a broker", Runner::Thread, Some(MemoryBroker::new(1, 4))),
    ] {
        let broker = broker.as_ref().map(|b| b as &dyn QueueBroker);
        let incremental = |filter: bool| {
            let mut s = spec(runner, Role::Both, 0);
            s.sync_mode = SyncMode::Incremental;
            s.cursor_field = Some("id".into());
            s.filter_after_watermark = filter;
            s
        };
        let (store, table) = (MemoryBackend::new(), Table::default());
        let mut b = store.handle();
        // First run: no watermark, everything (ids 0..10, watermark 9).
        let s = run(incremental(true), (10, 3), &table, &mut b, broker).unwrap();
        assert_eq!((s.outcome, s.records), (Outcome::Completed, 10), "{name}");
        // The source now holds 0..15 and returns all of it: only 10..15 are written.
        let s = run(incremental(true), (15, 4), &table, &mut b, broker).unwrap();
        assert_eq!((s.outcome, s.records), (Outcome::Completed, 5), "{name}");
        // (the memory destination holds one job's rows)
        assert_eq!(table.ids(), (10..15).collect::<Vec<_>>(), "{name}: the records above the watermark");
        // Nothing new: nothing written, the watermark stays.
        let s = run(incremental(true), (15, 4), &table, &mut b, broker).unwrap();
        assert_eq!(s.records, 0, "{name}");
        assert!(table.ids().is_empty(), "{name}");
        // Without the filter the same source's records would all be appended again (the control).
        let s = run(incremental(false), (15, 4), &table, &mut b, broker).unwrap();
        assert_eq!(s.records, 15, "{name}");
        assert_eq!(table.ids(), (0..15).collect::<Vec<_>>(), "{name}");
    }
}
