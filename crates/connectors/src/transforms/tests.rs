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
    TransformConfig { label: label.into(), python: Some(python.into()), jq: None, on_error }
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
    let mut t = Transformed::new(Box::new(capture.clone()), transforms, crate::pyproc::interpreter(), vec![]).unwrap();
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
        vec![],
    )
    .unwrap();
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
        vec![],
    )
    .unwrap();
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

#[cfg(feature = "jq")]
mod jq_programs {
    use super::*;

    fn jq(label: &str, code: &str, on_error: OnError) -> TransformConfig {
        TransformConfig { label: label.into(), python: None, jq: Some(code.into()), on_error }
    }

    /// A record written: id, route, payload.
    type Written = (String, u16, String);

    /// One page through `transforms` with `streams:` names; the records written or the error.
    fn run_routed(
        transforms: Vec<TransformConfig>,
        streams: &[&str],
        input: &RecordBatch,
    ) -> Result<(Vec<Written>, u64)> {
        let capture = Capture::default();
        let streams = streams.iter().map(|s| s.to_string()).collect();
        let mut t = Transformed::new(Box::new(capture.clone()), transforms, crate::pyproc::interpreter(), streams)?;
        t.open(&ctx(), None)?;
        t.write(input, &meta())?;
        let dead = t.take_dead_lettered();
        let b = capture.batches.lock().unwrap()[0].clone();
        let out = (0..b.len())
            .map(|i| (b.get(i).id.to_owned(), b.route(i), String::from_utf8(b.get(i).data.to_vec()).unwrap()))
            .collect();
        Ok((out, dead))
    }

    #[test]
    fn map_filter_rename_cast_and_hash_in_one_program() {
        let code = r#"select(.keep)
            | .name |= ascii_upcase
            | .origin = "bench"
            | rename("n"; "count")
            | .count |= tostring
            | .score |= tonumber
            | .email |= sha256
            | del(.keep)"#;
        let input = batch(&[
            ("a", r#"{"keep":true,"name":"bob","n":7,"score":"1.5","email":"bob@example.com"}"#),
            ("b", r#"{"keep":false,"name":"ann"}"#),
            ("c", r#"{"keep":true,"name":"é x","n":123456789012345678901234567890,"score":"2","email":"x"}"#),
        ]);
        let (out, dead) = run_routed(vec![jq("tidy", code, OnError::Fail)], &[], &input).unwrap();
        assert_eq!(dead, 0);
        let ids: Vec<_> = out.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ["a", "c"], "b is filtered out");
        // `del` moves the last key into the deleted one's place (jaq's objects are index maps)
        assert_eq!(
            out[0].2,
            r#"{"origin":"bench","name":"BOB","count":"7","score":1.5,"email":"5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018"}"#
        );
        // non-ASCII survives; a big integer keeps its digits
        assert_eq!(
            out[1].2,
            r#"{"origin":"bench","name":"é X","count":"123456789012345678901234567890","score":2,"email":"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}"#
        );
    }

    #[test]
    fn programs_chain_with_python_transforms_in_order() {
        let transforms = vec![
            jq("first", ".a = 1", OnError::Fail),
            transform("second", "data['b'] = data['a'] + 1", OnError::Fail),
            jq("third", ".c = .b * 10", OnError::Fail),
        ];
        let (out, _) = run_routed(transforms, &[], &batch(&[("1", "{}")])).unwrap();
        assert_eq!(out[0].2, r#"{"a":1,"b":2,"c":20}"#);
    }

    #[test]
    fn route_sends_records_to_streams_by_name() {
        let code = r#"if .kind == "order" then route("orders") else route("users") end"#;
        let input = batch(&[("1", r#"{"kind":"order"}"#), ("2", r#"{"kind":"user"}"#)]);
        let (out, _) = run_routed(vec![jq("split", code, OnError::Fail)], &["users", "orders"], &input).unwrap();
        assert_eq!(out.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 0]);
        // an unknown stream is the record's error, naming the streams there are
        let e = run_routed(vec![jq("split", r#"route("nope")"#, OnError::Fail)], &["users"], &input).unwrap_err();
        assert!(e.message().contains(r#"route("nope"): no such stream (streams: users)"#), "{}", e.message());
    }

    #[test]
    fn a_failing_record_fails_the_run_or_goes_to_the_dead_letter_file() {
        let code = r#"if .n == 2 then error("bad value \(.n)") else .ok = true end"#;
        let input = batch(&[("r1", r#"{"n":1}"#), ("r2", r#"{"n":2}"#), ("r3", r#"{"n":3}"#)]);
        let e = run_routed(vec![jq("checker", code, OnError::Fail)], &[], &input).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(e.message().contains("transform `checker` failed on record `r2`: bad value 2"), "{}", e.message());
        let (out, dead) = run_routed(vec![jq("checker", code, OnError::DeadLetter)], &[], &input).unwrap();
        assert_eq!(dead, 1);
        assert_eq!(out[0], ("r1".into(), 0, r#"{"n":1,"ok":true}"#.into()));
        assert_eq!(out[1].1, DEAD_LETTER);
        assert_eq!(
            out[1].2,
            r#"{"source_record_id":"r2","transform":"checker","error":"bad value 2","record":{"n":2}}"#
        );
        assert_eq!(out[2], ("r3".into(), 0, r#"{"n":3,"ok":true}"#.into()));
        // several outputs are an error too, and so is a value JSON cannot hold
        let e = run_routed(vec![jq("many", ".a, .b", OnError::Fail)], &[], &input).unwrap_err();
        assert!(e.message().contains("gave 2 outputs"), "{}", e.message());
        let e = run_routed(vec![jq("nan", ".x = nan", OnError::Fail)], &[], &input).unwrap_err();
        assert!(e.message().contains("cannot be written as JSON"), "{}", e.message());
    }

    #[test]
    fn a_big_page_is_split_over_threads_and_comes_back_in_order() {
        let mut input = RecordBatch::with_capacity(5000, 100_000);
        for i in 0..5000u32 {
            input.push(&format!("r{i}"), 7, format!(r#"{{"i":{i}}}"#).as_bytes());
        }
        let code = "if .i % 1000 == 999 then empty elif .i % 700 == 0 then error(\"x\") else .j = .i * 2 end";
        let (out, dead) = run_routed(vec![jq("t", code, OnError::DeadLetter)], &[], &input).unwrap();
        assert_eq!(out.len(), 5000 - 5);
        assert_eq!(dead, 8); // 0, 700, …, 4900
        let mut expected = (0..5000u32).filter(|i| i % 1000 != 999);
        for (id, route, data) in &out {
            let i = expected.next().unwrap();
            assert_eq!(id, &format!("r{i}"));
            if i % 700 == 0 {
                assert_eq!(*route, DEAD_LETTER);
            } else {
                assert_eq!(data, &format!(r#"{{"i":{i},"j":{}}}"#, i * 2));
            }
        }
    }

    #[test]
    fn compile_errors_say_what_and_where() {
        let e = jq::compile(".a = (1").err().unwrap();
        assert_eq!((e.message.as_str(), e.offset), ("`(` is never closed", 5));
        let e = jq::compile(".a |\n  frobnicate(1)").err().unwrap();
        assert_eq!((e.message.as_str(), e.offset), ("undefined filter `frobnicate/1`", 7));
        let e = jq::compile(".a | | .b").err().unwrap();
        assert!(e.message.starts_with("expected term, found `|`"), "{}", e.message);
    }
}
