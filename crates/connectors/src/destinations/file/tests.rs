//! The file destination runs the destination conformance suite in every sync mode.

use std::path::PathBuf;

use bizon_core::config::SyncMode;
use bizon_core::Destination;
use bizon_testkit::destination::{run_suite, Harness};
use bizon_testkit::fixtures::{read_ids, TempDir};

use super::{FileConfig, FileDestination};

struct FileHarness {
    dir: TempDir,
}

impl FileHarness {
    fn target(&self) -> PathBuf {
        self.dir.join("out/records.json")
    }
}

impl Harness for FileHarness {
    fn make(&self) -> Box<dyn Destination> {
        let cfg = FileConfig { path: Some(self.target().display().to_string()), ..Default::default() };
        Box::new(FileDestination::new(&cfg, "ignored"))
    }
    fn published_ids(&self) -> Vec<u64> {
        read_ids(&self.target())
    }
}

#[test]
fn conformance_full_refresh() {
    run_suite(&|| Box::new(FileHarness { dir: TempDir::new("file-fr") }), SyncMode::FullRefresh);
}

#[test]
fn conformance_incremental() {
    run_suite(&|| Box::new(FileHarness { dir: TempDir::new("file-inc") }), SyncMode::Incremental);
}

#[test]
fn default_name_is_destination_id_dot_json_and_staging_is_bizons() {
    let d = FileDestination::new(&FileConfig::default(), "creatures");
    assert_eq!(d.target(), std::path::Path::new("creatures.json"));
    assert_eq!(d.staging_path(), std::path::Path::new("creatures_temp.json"));
}
