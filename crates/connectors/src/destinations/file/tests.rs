//! File naming as bizon's; the conformance suite runs from `crate::conformance` for every
//! destination in the registry.

use super::{FileConfig, FileDestination};

#[test]
fn default_name_is_destination_id_dot_json_and_staging_is_bizons() {
    let d = FileDestination::new(&FileConfig::default(), "creatures");
    assert_eq!(d.target(), std::path::Path::new("creatures.json"));
    assert_eq!(d.staging_path(), std::path::Path::new("creatures_temp.json"));
}

/// A writer whose file is opened by a newer run (a takeover: the engine opens only after taking
/// the pipeline's lock) writes nothing more into it: its later chunks go to the old inode and its
/// next flush fails; the new run goes on from the committed part.
#[test]
fn a_writer_taken_over_cannot_write_into_the_file() {
    use bizon_core::config::SyncMode;
    use bizon_core::{BatchMeta, Destination, DestinationContext};
    use bizon_testkit::destination::next_cursor;
    use bizon_testkit::fixtures::{batch, read_ids, TempDir};

    let dir = TempDir::new("file-takeover");
    let target = dir.join("out/records.json");
    let make = || {
        let cfg = FileConfig { path: Some(target.display().to_string()), ..Default::default() };
        Box::new(FileDestination::new(&cfg, "ignored")) as Box<dyn Destination>
    };
    let ctx = DestinationContext {
        pipeline: "p".into(),
        job_id: "j".into(),
        source: "dummy".into(),
        stream: "records".into(),
        sync_mode: SyncMode::Incremental,
        lane: None,
    };
    let meta = |iteration| BatchMeta { iteration, extracted_at: 1, loaded_at: 2, job_hash: 42 };
    let mut stale = make();
    stale.open(&ctx, None).expect("open");
    stale.write(&batch(0, 10), &meta(0)).expect("write");
    let committed = stale.flush(&next_cursor(0, 10)).expect("flush");
    stale.write(&batch(10, 5), &meta(1)).expect("uncommitted write");
    let before = std::fs::read(&target).expect("read");

    let mut fresh = make();
    fresh.open(&ctx, Some(&committed)).expect("a new run opens the file the stale writer holds");
    // well past the write chunk: the stale writer's thread writes it out
    stale.write(&batch(15, 5000), &meta(2)).expect("the stale writer does not know yet");
    let e = stale.flush(&next_cursor(2, 5015)).expect_err("the stale writer's flush must fail");
    assert!(e.message().contains("was replaced since this run opened it"), "{}", e.message());
    assert_eq!(&std::fs::read(&target).expect("read")[..], &before[..committed["offset"].as_u64().unwrap() as usize]);

    fresh.write(&batch(10, 20), &meta(1)).expect("write");
    fresh.flush(&next_cursor(1, 30)).expect("flush");
    fresh.finalize().expect("finalize");
    drop(stale);
    assert_eq!(read_ids(&target), (0..30).collect::<Vec<_>>(), "the committed part, then the new run's rows");
    let names: Vec<_> =
        std::fs::read_dir(dir.join("out")).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["records.json"], "no takeover copy left behind");
}

/// A part flushed after the last commit (the process died before the engine committed it) is
/// deleted on resume and its rows written again once: every record once, parts numbered on.
#[cfg(feature = "parquet")]
#[test]
fn parquet_parts_flushed_after_the_commit_are_dropped_on_resume() {
    use bizon_core::config::SyncMode;
    use bizon_core::{BatchMeta, Destination, DestinationContext};
    use bizon_testkit::destination::next_cursor;
    use bizon_testkit::fixtures::{batch, TempDir};

    use crate::descriptor::DestinationSpec;

    for mode in [SyncMode::FullRefresh, SyncMode::Incremental] {
        let dir = TempDir::new("parquet-resume");
        let target = dir.join("out/records.parquet");
        let cfg = FileConfig { format: super::FileFormat::Parquet, path: Some(target.display().to_string()) };
        let ctx = DestinationContext {
            pipeline: "p".into(),
            job_id: "j".into(),
            source: "s".into(),
            stream: "records".into(),
            sync_mode: mode,
            lane: None,
        };
        let meta = |iteration| BatchMeta { iteration, extracted_at: 1, loaded_at: 2, job_hash: 7 };
        let page = |d: &mut Box<dyn Destination>, it: u64| {
            d.write(&batch(it * 10, 10), &meta(it as i64)).unwrap();
            d.flush(&next_cursor(it as i64, (it + 1) * 10)).unwrap()
        };
        let mut first = cfg.build("records", None);
        first.open(&ctx, None).unwrap();
        page(&mut first, 0);
        let committed = page(&mut first, 1);
        page(&mut first, 2); // flushed, renamed into place, never committed
        first.write(&batch(30, 10), &meta(3)).unwrap(); // a part still being written
        drop(first);
        let mut resumed = cfg.build("records", None);
        assert_eq!(resumed.open(&ctx, Some(&committed)).unwrap(), serde_json::json!({"next_part": 2}));
        for it in 2..5 {
            page(&mut resumed, it);
        }
        resumed.finalize().unwrap();
        let ids: Vec<u64> = crate::parquet::read_strings(&target, "source_record_id")
            .unwrap()
            .iter()
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(ids, (0..50).collect::<Vec<_>>(), "{mode:?}");
        let mut names: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, (0..5).map(|n| format!("part-{n:05}.parquet")).collect::<Vec<_>>(), "{mode:?}");
    }
}
