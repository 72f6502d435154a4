//! The command destination against real targets: the example Singer target in Python (records
//! land in its file, a commit returns after its fsync and echo), targets that fail mid-stream,
//! never acknowledge, or exit non-zero at the end.

use super::*;
use bizon_core::config::SyncMode;
use bizon_core::ErrorKind;
use bizon_testkit::fixtures::TempDir;

/// A Singer target appending RECORD lines to the file `argv[1]`, fsyncing and echoing each
/// STATE: the shipped example, so the example is what the tests and the conformance suite run.
pub(crate) const JSONL_TARGET: &str = include_str!("../../../../../examples/command/target.py");

pub(crate) fn ctx() -> DestinationContext {
    DestinationContext {
        pipeline: "p".into(),
        job_id: "j".into(),
        source: "s".into(),
        stream: "records".into(),
        sync_mode: SyncMode::FullRefresh,
        lane: None,
    }
}

fn meta() -> BatchMeta {
    BatchMeta { iteration: 0, extracted_at: 1, loaded_at: 2, job_hash: 7 }
}

fn cursor() -> DestinationCursor {
    DestinationCursor::start(Json::Null)
}

fn destination(command: Json, extra: Json) -> CommandDestination {
    let mut config = json!({"command": command});
    for (k, v) in extra.as_object().into_iter().flatten() {
        config[k] = v.clone();
    }
    CommandDestination::new(serde_json::from_value(config).unwrap(), "records")
}

fn jsonl_target(dir: &TempDir) -> (Json, std::path::PathBuf) {
    let script = dir.join("target.py");
    std::fs::write(&script, JSONL_TARGET).unwrap();
    let out = dir.join("out.jsonl");
    (json!(["python3", script.display().to_string(), out.display().to_string()]), out)
}

/// The RECORD lines a target wrote to `path`, parsed.
pub(crate) fn lines(path: &std::path::Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l:.200}", path.display())))
        .collect()
}

fn batch(ids: std::ops::Range<u64>) -> RecordBatch {
    let mut b = RecordBatch::default();
    for i in ids {
        b.push(&format!("r{i}"), 1_700_000_000_000_000 + i as i64, format!(r#"{{"n":{i},"s":"a\"b"}}"#).as_bytes());
    }
    b
}

#[test]
fn records_reach_the_targets_file_and_a_flush_returns_after_its_ack() {
    let dir = TempDir::new("cmd-dest");
    let (command, out) = jsonl_target(&dir);
    let mut d = destination(command, json!({}));
    assert_eq!(d.open(&ctx(), None).unwrap(), json!({"commits": 0}));
    d.write(&batch(0..3), &meta()).unwrap();
    d.write(&batch(3..5), &meta()).unwrap();
    // the target holds records until their STATE: nothing is in the file before the commit
    std::thread::sleep(Duration::from_millis(200));
    assert!(lines(&out).is_empty(), "no record before the STATE");
    assert_eq!(d.flush(&cursor()).unwrap(), json!({"commits": 1}));
    // flush returned: the target echoed the STATE, so it wrote and fsynced before
    let rows = lines(&out);
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["type"], "RECORD");
        assert_eq!(row["stream"], "records");
        assert_eq!(row["record_id"], format!("r{i}"));
        assert_eq!(row["record"], json!({"n": i, "s": "a\"b"}), "the payload verbatim");
    }
    assert_eq!(rows[1]["time_extracted"], "2023-11-14T22:13:20.000001+00:00");
    d.write(&batch(5..7), &meta()).unwrap();
    assert_eq!(d.flush(&cursor()).unwrap(), json!({"commits": 2}));
    assert_eq!(lines(&out).len(), 7);
    d.finalize().unwrap();
    d.finalize().unwrap(); // idempotent
                           // a resumed job continues the commit count
    let (command, _) = jsonl_target(&dir);
    let mut d = destination(command, json!({}));
    assert_eq!(d.open(&ctx(), Some(&json!({"commits": 2}))).unwrap(), json!({"commits": 2}));
    d.write(&batch(7..8), &meta()).unwrap();
    assert_eq!(d.flush(&cursor()).unwrap(), json!({"commits": 3}));
    d.finalize().unwrap();
    let ids: Vec<_> = lines(&out).iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, (0..8).map(|i| format!("r{i}")).collect::<Vec<_>>());
}

#[test]
fn a_target_failing_mid_stream_names_its_exit_code_and_last_stderr_line() {
    // reads the SCHEMA and two lines, then fails
    let script =
        "read a; read b; read c; echo 'Traceback (most recent call last):' >&2; echo 'ValueError: boom' >&2; exit 3";
    let mut d = destination(json!(script), json!({}));
    d.open(&ctx(), None).unwrap();
    // enough to fill the pipe: the write itself meets the closed stdin, else the flush does
    let big = batch(0..20_000);
    let e = d.write(&big, &meta()).and_then(|()| d.flush(&cursor())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    let m = e.message();
    assert!(m.contains(&format!("command destination `{script}` exited with code 3")), "{m}");
    assert!(m.contains("before acknowledging commit 1: ValueError: boom"), "{m}");
    // a target exiting before the ack of a small batch fails the flush the same way
    let script = "read a; read b; read c; echo 'disk full' >&2; exit 4";
    let mut d = destination(json!(script), json!({}));
    d.open(&ctx(), Some(&json!({"commits": 4}))).unwrap();
    d.write(&batch(0..3), &meta()).unwrap();
    let e = d.flush(&cursor()).unwrap_err();
    assert!(e.message().ends_with("exited with code 4 before acknowledging commit 5: disk full"), "{}", e.message());
    // a missing program is a config error naming it
    let mut d = destination(json!(["/nonexistent/target"]), json!({}));
    let e = d.open(&ctx(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("cannot start the command destination `/nonexistent/target`"), "{}", e.message());
}

#[test]
fn a_target_that_never_acknowledges_times_out() {
    // reads everything, prints other states and logs, never the one asked for
    let script = r#"while read line; do echo '{"type":"STATE","value":{"other":1}}'; echo '{"type":"LOG","log":{"level":"INFO","message":"hi"}}'; echo 'plain text'; done"#;
    let mut d = destination(json!(script), json!({"ack_timeout_secs": 1}));
    d.open(&ctx(), None).unwrap();
    d.write(&batch(0..3), &meta()).unwrap();
    let started = Instant::now();
    let e = d.flush(&cursor()).unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(
        e.message().contains(&format!("command destination `{script}` did not acknowledge commit 1 within 1 s")),
        "{}",
        e.message()
    );
    // a retry reopens: a fresh target, the same commit asked again
    d.open(&ctx(), None).unwrap();
    assert!(d.flush(&cursor()).unwrap_err().message().contains("commit 1 within 1 s"));
}

#[test]
fn finalize_waits_for_the_exit_and_reports_a_failure() {
    // a target acknowledging in Airbyte's shape, then exiting with `code` at EOF
    let target = |code: i32| {
        json!(format!(
            r#"while read line; do case "$line" in *'"STATE"'*) echo '{{"type":"STATE","state":{{"data":{{"bizon_commit":1}}}}}}';; esac; done; echo 'bye' >&2; exit {code}"#
        ))
    };
    let mut d = destination(target(0), json!({}));
    d.open(&ctx(), None).unwrap();
    d.write(&batch(0..2), &meta()).unwrap();
    assert_eq!(d.flush(&cursor()).unwrap(), json!({"commits": 1}));
    d.finalize().unwrap();
    d.finalize().unwrap();
    let mut d = destination(target(2), json!({}));
    d.open(&ctx(), None).unwrap();
    d.flush(&cursor()).unwrap();
    let e = d.finalize().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.message().ends_with("exited with code 2 at the end of the job: bye"), "{}", e.message());
    // a bare state value, as Singer's `emit_state` prints it, is an ack too
    let mut d = destination(
        json!(r#"while read line; do echo "$line" | grep -q STATE && echo '{"bizon_commit": 1}'; done"#),
        json!({}),
    );
    d.open(&ctx(), None).unwrap();
    assert_eq!(d.flush(&cursor()).unwrap(), json!({"commits": 1}));
    d.finalize().unwrap();
}

#[test]
fn a_dropped_destination_leaves_no_target_running() {
    let dir = TempDir::new("cmd-dest-drop");
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let mut d = destination(json!(["sh", "-c", script]), json!({}));
    d.open(&ctx(), None).unwrap();
    let started = Instant::now();
    while !pid_file.exists() || std::fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the target never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    drop(d);
    // SAFETY: signal 0 only checks whether the process exists
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the target {pid} outlived its destination");
}

#[test]
fn the_command_must_not_be_empty() {
    for (text, wanted) in [
        ("command: []\n", "`command` is empty"),
        ("command: '  '\n", "`command` is empty"),
        ("command: [python3]\nack_timeout_secs: 0\n", "`ack_timeout_secs` must be at least 1"),
        ("command: [python3]\ncolour: red\n", "unknown key `colour`"),
    ] {
        let node = yaml::parse(text).unwrap();
        let e = (DESCRIPTOR.parse)(&node).unwrap_err();
        assert!(e.message.contains(wanted), "{text}: {}", e.message);
    }
    let node = yaml::parse("command: 'target-jsonl > /dev/null'\nenv: {A: b}\n").unwrap();
    assert!((DESCRIPTOR.parse)(&node).is_ok());
}
