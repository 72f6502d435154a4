//! Destinations that store nothing run the smoke suite; the file destination runs the full
//! conformance suite in `file/tests.rs`.

use bizon_core::config::SyncMode;
use bizon_testkit::destination::run_smoke_suite;
use serde_json::json;

use super::logger::LoggerDestination;
use super::null::{NullConfig, NullDestination};

#[test]
fn logger_smoke() {
    for mode in [SyncMode::FullRefresh, SyncMode::Incremental] {
        run_smoke_suite(&|| Box::<LoggerDestination>::default(), mode);
    }
}

#[test]
fn null_smoke_counts_only_committed_records() {
    let (committed, last) =
        run_smoke_suite(&|| Box::new(NullDestination::new(NullConfig::default())), SyncMode::FullRefresh);
    assert_eq!(committed, json!({"records": 10}));
    assert_eq!(last, json!({"records": 20}), "the uncommitted batch is counted once, after re-delivery");
}
