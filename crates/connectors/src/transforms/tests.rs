//! Transforms against the real `python3` (as CI has it): bizon's semantics and byte output, the
//! failure paths, and a worker that dies.

use super::*;
use bizon_core::config::SyncMode;
use bizon_core::ErrorKind;

/// Keeps what it is given, where the test can read it.
#[derive(Default, Clone)]
struct Capture {
    batches: std::sync::Arc<std::sync::Mutex<Vec<RecordBatch>>>,
}

impl Destination for Capture {
    fn open(&mut self, _: &DestinationContext, _: Option<&Json>) -> Result<Json> {
        Ok(Json::Null)
    }
    fn write(&mut self, batch: &RecordBatch, _: &BatchMeta) -> Result<()> {
        self.batches.lock().unwrap().push(batch.clone());
        Ok(())
    }
    fn flush(&mut self, _: &DestinationCursor) -> Result<Json> {
        Ok(Json::Null)
    }
    fn finalize(&mut self) -> Result<()> {
        Ok(())
    }
}

fn transform(label: &str, python: &str, on_error: OnError) -> TransformConfig {
    TransformConfig { label: label.into(), python: Some(python.into()), on_error }
}

fn ctx() -> DestinationContext {
    DestinationContext {
        pipeline: "p".into(),
        job_id: "j".into(),
        source: "dummy".into(),
        stream: "s".into(),
        sync_mode: SyncMode::FullRefresh,
        lane: None,
    }
}

fn meta() -> BatchMeta {
    BatchMeta { iteration: 0, extracted_at: 0, loaded_at: 0, job_hash: 0 }
}

fn batch(records: &[(&str, &str)]) -> RecordBatch {
    let mut b = RecordBatch::with_capacity(records.len(), 256);
    for (id, data) in records {
        b.push(id, 7, data.as_bytes());
    }
    b
}

/// Run `transforms` over `records`; the records written (id, route, payload) or the error.
fn run(transforms: Vec<TransformConfig>, input: RecordBatch) -> Result<Vec<(String, u16, String)>> {
    let capture = Capture::default();
    let mut t = Transformed::new(Box::new(capture.clone()), transforms, crate::pyproc::interpreter());
    t.open(&ctx(), None)?;
    t.write(&input, &meta())?;
    t.write(&input, &meta())?; // a second page on the same worker
    let dead = t.take_dead_lettered();
    let batches = capture.batches.lock().unwrap();
    assert_eq!(batches.len(), 2);
    let b = &batches[1];
    let out: Vec<_> = (0..b.len())
        .map(|i| {
            let r = b.get(i);
            (r.id.to_owned(), b.route(i), String::from_utf8(r.data.to_vec()).unwrap())
        })
        .collect();
    let routed = out.iter().filter(|r| r.1 == DEAD_LETTER).count() as u64;
    let from_source = (0..input.len()).filter(|i| input.route(*i) == DEAD_LETTER).count() as u64;
    assert_eq!(dead, 2 * (routed - from_source), "dead letters counted for both pages");
    Ok(out)
}

#[test]
fn bizons_example_upper_cases_and_adds_a_field_byte_for_byte_as_json_dumps() {
    // bizon's README transform, indented as YAML's block scalar leaves it
    let code = "    data['name'] = data['name'].upper()\n    data['added'] = 'é ✓'\n";
    let out = run(
        vec![transform("upper", code, OnError::Fail)],
        batch(&[("1", r#"{"id":1,"name":"bob","n":1.5,"tags":["a"],"z":null}"#), ("2", r#"{"name":"ann"}"#)]),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            (
                "1".into(),
                0,
                r#"{"id": 1, "name": "BOB", "n": 1.5, "tags": ["a"], "z": null, "added": "\u00e9 \u2713"}"#.into()
            ),
            ("2".into(), 0, r#"{"name": "ANN", "added": "\u00e9 \u2713"}"#.into()),
        ]
    );
}

#[test]
fn reassignment_imports_builtins_and_order_of_transforms() {
    let out = run(
        vec![
            transform(
                "rebuild",
                "import hashlib\ndata = {'k': data['id'], 'h': hashlib.md5(b'x').hexdigest()[:6]}",
                OnError::Fail,
            ),
            transform("second", "data['k2'] = len(str(data['k'])) * 10", OnError::Fail),
        ],
        batch(&[("a", r#"{"id":12345,"drop":"me"}"#)]),
    )
    .unwrap();
    assert_eq!(out, vec![("a".into(), 0, r#"{"k": 12345, "h": "9dd4e4", "k2": 50}"#.into())]);
}

#[test]
fn an_exception_fails_the_run_naming_the_label_the_record_and_the_exception() {
    let code = "if data['id'] == 2:\n    raise ValueError('bad value ' + str(data['id']))\n";
    let e = run(
        vec![transform("ok", "pass", OnError::Fail), transform("checker", code, OnError::Fail)],
        batch(&[("r1", r#"{"id":1}"#), ("r2", r#"{"id":2}"#)]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    let m = e.message();
    assert!(
        m.contains("transform `checker`") && m.contains("record `r2`") && m.contains("ValueError: bad value 2"),
        "{m}"
    );
}

#[test]
fn dead_letter_keeps_the_rest_and_writes_the_failure_with_its_record() {
    let code = "data['inv'] = 1 / data['d']";
    let out = run(
        vec![transform("invert", code, OnError::DeadLetter)],
        batch(&[("x", r#"{"d":2}"#), ("y", r#"{"d":0}"#), ("z", r#"{"d":4}"#)]),
    )
    .unwrap();
    assert_eq!(out[0], ("x".into(), 0, r#"{"d": 2, "inv": 0.5}"#.into()));
    assert_eq!(out[2], ("z".into(), 0, r#"{"d": 4, "inv": 0.25}"#.into()));
    let (id, route, row) = &out[1];
    assert_eq!((id.as_str(), *route), ("y", DEAD_LETTER));
    let row: Json = serde_json::from_str(row).unwrap();
    assert_eq!(row["transform"], "invert");
    assert_eq!(row["source_record_id"], "y");
    assert_eq!(row["record"], serde_json::json!({"d": 0}));
    assert!(row["error"].as_str().unwrap().starts_with("ZeroDivisionError"), "{row}");
}

#[test]
fn records_a_source_dead_lettered_pass_untouched_and_routes_are_kept() {
    let mut b = RecordBatch::with_capacity(3, 64);
    b.push_routed(0, "a", 1, |o| o.extend_from_slice(br#"{"v":1}"#));
    b.push_routed(DEAD_LETTER, "bad", 2, |o| o.extend_from_slice(br#"{"raw":"%%"}"#));
    b.push_routed(3, "c", 3, |o| o.extend_from_slice(br#"{"v":3}"#));
    let out = run(vec![transform("double", "data['v'] *= 2", OnError::Fail)], b).unwrap();
    assert_eq!(
        out,
        vec![
            ("a".into(), 0, r#"{"v": 2}"#.into()),
            ("bad".into(), DEAD_LETTER, r#"{"raw":"%%"}"#.into()),
            ("c".into(), 3, r#"{"v": 6}"#.into()),
        ]
    );
}

#[test]
fn print_in_a_transform_goes_to_the_log_not_into_the_records() {
    let out = run(
        vec![transform("chatty", "print('hello', data)\nprint(3, end='')\ndata['seen'] = True", OnError::Fail)],
        batch(&[("1", r#"{"a":1}"#)]),
    )
    .unwrap();
    assert_eq!(out, vec![("1".into(), 0, r#"{"a": 1, "seen": true}"#.into())]);
}

#[test]
fn a_syntax_error_is_a_config_error_naming_the_transform_and_line() {
    let e = run(
        vec![transform("ok", "pass", OnError::Fail), transform("broken", "x = 1\nif x\n", OnError::Fail)],
        batch(&[]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains("transform `broken` does not compile: SyntaxError") && e.message().contains("line 2"),
        "{}",
        e.message()
    );
}

#[test]
fn a_worker_that_dies_fails_the_run_with_its_exit_status_and_last_stderr_line() {
    let code = "import os, sys\nif data['id'] == 2:\n    sys.stderr.write('giving up on 2\\n'); sys.stderr.flush(); os._exit(3)\n";
    let e =
        run(vec![transform("exit", code, OnError::DeadLetter)], batch(&[("1", r#"{"id":1}"#), ("2", r#"{"id":2}"#)]))
            .unwrap_err();
    let m = e.message();
    assert!(m.contains("exit status: 3") && m.contains("giving up on 2"), "{m}");
}

#[test]
fn nan_and_infinity_are_refused_as_records() {
    let e = run(vec![transform("nan", "data['x'] = float('nan')", OnError::Fail)], batch(&[("n", "{}")])).unwrap_err();
    assert!(
        e.message().contains("json.dumps") && e.message().contains("record `n`") && e.message().contains("ValueError"),
        "{}",
        e.message()
    );
}

#[test]
fn a_missing_interpreter_is_a_config_error_naming_it_and_the_fix() {
    let mut t = Transformed::new(
        Box::new(Capture::default()),
        vec![transform("t", "pass", OnError::Fail)],
        "/nonexistent/python3".into(),
    );
    let e = t.open(&ctx(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("`/nonexistent/python3`") && e.message().contains("BIZON_PYTHON"), "{}", e.message());
}

#[test]
fn a_page_split_between_three_workers_comes_back_in_order_with_its_failures_placed() {
    let capture = Capture::default();
    let code = "if data['i'] % 250 == 249:\n    raise ValueError('bad %d' % data['i'])\ndata['w'] = data['i'] * 2";
    let mut t = Transformed::new(
        Box::new(capture.clone()),
        vec![transform("split", code, OnError::DeadLetter)],
        crate::pyproc::interpreter(),
    );
    t.pool = 3;
    t.open(&ctx(), None).unwrap();
    let mut input = RecordBatch::with_capacity(1000, 16_000);
    for i in 0..1000u32 {
        let route = if i == 500 { DEAD_LETTER } else { 0 };
        input.push_routed(route, &format!("r{i}"), i64::from(i), |o| {
            o.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes())
        });
    }
    t.write(&input, &meta()).unwrap();
    assert_eq!(t.take_dead_lettered(), 4, "249, 499, 749, 999");
    let batches = capture.batches.lock().unwrap();
    let b = &batches[0];
    assert_eq!(b.len(), 1000);
    for i in 0..1000usize {
        let r = b.get(i);
        assert_eq!((r.id, r.timestamp), (format!("r{i}").as_str(), i as i64), "record {i} in its place");
        let data = std::str::from_utf8(r.data).unwrap();
        match i {
            500 => assert_eq!((b.route(i), data), (DEAD_LETTER, r#"{"i":500}"#)),
            _ if i % 250 == 249 => {
                assert_eq!(b.route(i), DEAD_LETTER);
                assert!(data.contains(&format!("ValueError: bad {i}")), "{data}");
            }
            _ => assert_eq!((b.route(i), data), (0, format!("{{\"i\": {i}, \"w\": {}}}", i * 2).as_str())),
        }
    }
}
