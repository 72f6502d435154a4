//! The command source against real executables: a Singer tap in Python, an Airbyte-shaped one,
//! shell lines; resume from STATE, malformed lines, a failing command.

use super::*;

/// A Singer tap: `total` records of stream `users`, a STATE every 10, resumable with `--state`.
pub(crate) const SINGER_TAP: &str = r#"
import json, sys
state = {}
if "--state" in sys.argv:
    state = json.load(open(sys.argv[sys.argv.index("--state") + 1]))
total = int(sys.argv[1])
print(json.dumps({"type": "SCHEMA", "stream": "users", "schema": {}, "key_properties": ["id"]}))
for i in range(state.get("offset", 0), total):
    print(json.dumps({"type": "RECORD", "stream": "users", "record": {"id": "u%d" % i, "n": i}}))
    if i % 7 == 0:
        print(json.dumps({"type": "RECORD", "stream": "other", "record": {"id": "x"}}))
    if (i + 1) % 10 == 0:
        print(json.dumps({"type": "STATE", "value": {"offset": i + 1}}))
"#;

fn source(command: CommandLine, stream: &str, extra: Json) -> CommandSource {
    let mut config = json!({"command": command_json(&command)});
    for (k, v) in extra.as_object().into_iter().flatten() {
        config[k] = v.clone();
    }
    let config: CommandSourceConfig = serde_json::from_value(config).unwrap();
    CommandSource { config, stream: stream.into(), run: None }
}

fn command_json(c: &CommandLine) -> Json {
    match c {
        CommandLine::Argv(v) => json!(v),
        CommandLine::Shell(s) => json!(s),
    }
}

/// Read to the end from `from`: (ids, routes, paginations).
fn read(s: &mut CommandSource, from: Json) -> Result<(Vec<String>, Vec<u16>, Vec<Json>)> {
    let ctx = ReadContext::default();
    let (mut ids, mut routes, mut pages, mut p) = (Vec::new(), Vec::new(), Vec::new(), from);
    loop {
        let page = s.get(&p, &ctx)?;
        for i in 0..page.records.len() {
            ids.push(page.records.get(i).id.to_owned());
            routes.push(page.records.route(i));
        }
        pages.push(page.next.clone());
        if page.is_last() {
            return Ok((ids, routes, pages));
        }
        p = page.next;
    }
}

fn tap(dir: &bizon_testkit::fixtures::TempDir) -> String {
    let p = dir.join("tap.py");
    std::fs::write(&p, SINGER_TAP).unwrap();
    p.display().to_string()
}

#[test]
fn a_singer_tap_pages_at_its_states_and_resumes_from_one() {
    let dir = bizon_testkit::fixtures::TempDir::new("cmd-singer");
    let argv = |n: &str| CommandLine::Argv(vec!["python3".into(), tap(&dir), n.into()]);
    let mut s = source(argv("35"), "users", json!({"primary_key": "id"}));
    let (ids, _, pages) = read(&mut s, Json::Null).unwrap();
    assert_eq!(ids, (0..35).map(|i| format!("u{i}")).collect::<Vec<_>>(), "the other stream is skipped");
    assert_eq!(pages[0], json!({"state": {"offset": 10}, "after": 0, "position": 10}));
    assert_eq!(pages.len(), 4);
    // resume: 3 records of the STATE {"offset": 20} were committed: the tap restarts at 20, and
    // bizon skips 20, 21, 22
    let mut s = source(argv("35"), "users", json!({"primary_key": "/id"}));
    let (ids, _, _) = read(&mut s, json!({"state": {"offset": 20}, "after": 3, "position": 23})).unwrap();
    assert_eq!(ids, (23..35).map(|i| format!("u{i}")).collect::<Vec<_>>());
    // without a primary key the id is the record's position in the read
    let mut s = source(argv("12"), "users", json!({"page_size": 5}));
    let (ids, _, pages) = read(&mut s, Json::Null).unwrap();
    assert_eq!(ids, (0..12).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(pages[0], json!({"state": null, "after": 5, "position": 5}), "a page of page_size before any STATE");
}

#[test]
fn airbyte_messages_shell_lines_and_logs() {
    let lines = [
        r#"{"type":"LOG","log":{"level":"INFO","message":"starting"}}"#,
        r#"{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1700000000000}}"#,
        r#"{"type":"RECORD","record":{"stream":"users","data":{"id":2},"emitted_at":1700000000001}}"#,
        r#"{"type":"STATE","state":{"data":{"cursor":"b"}}}"#,
        r#"{"type":"TRACE","trace":{}}"#,
    ];
    let script = lines.iter().map(|l| format!("echo '{l}'")).collect::<Vec<_>>().join("; ");
    let mut s = source(CommandLine::Shell(script), "users", json!({"primary_key": "id"}));
    let page = s.get(&Json::Null, &ReadContext::default()).unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.records.get(0).id, "1");
    assert_eq!(page.records.get(1).timestamp, 1_700_000_000_001_000, "emitted_at, in µs");
    assert_eq!(std::str::from_utf8(page.records.get(1).data).unwrap(), r#"{"id":2}"#);
    assert_eq!(page.next["state"], json!({"data": {"cursor": "b"}}));
    let page = s.get(&page.next, &ReadContext::default()).unwrap();
    assert!(page.is_last() && page.records.is_empty());
    // a shell line gets the state in its environment
    let mut s = source(
        CommandLine::Shell(
            r#"echo "{\"type\":\"RECORD\",\"record\":$BIZON_STATE}"; test -f "$BIZON_STATE_FILE""#.into(),
        ),
        "any",
        json!({}),
    );
    let page = s.get(&json!({"state": {"k": 7}, "after": 0}), &ReadContext::default()).unwrap();
    assert_eq!(std::str::from_utf8(page.records.get(0).data).unwrap(), r#"{"k":7}"#);
}

#[test]
fn records_and_their_ids_keep_every_digit_the_command_wrote() {
    // past 2^64 a float rounds both ids to 1.2345678901234568e22: two records, one id, and data
    // no longer what the tap sent
    let lines = [
        r#"{"type": "RECORD", "stream": "big", "record": {"id": 12345678901234567890123, "price": 1.50, "k": {"n": [1, 2e3]}}}"#,
        r#"{"type": "RECORD", "stream": "big", "record": {"id": 12345678901234567890124, "price": 0.10, "k": {"n": [3]}}}"#,
        r#"{"type":"RECORD","record":{"stream":"big","data":{"id": 98765432109876543210,"x":"\u00e9 \" y"},"emitted_at":1}}"#,
    ];
    let script = lines.iter().map(|l| format!("printf '%s\\n' '{l}'")).collect::<Vec<_>>().join("; ");
    for (key, ids) in [
        ("id", ["12345678901234567890123", "12345678901234567890124", "98765432109876543210"]),
        ("/k/n/0", ["1", "3", "2"]),
    ] {
        let mut s = source(CommandLine::Shell(script.clone()), "big", json!({ "primary_key": key }));
        let page = s.get(&Json::Null, &ReadContext::default()).unwrap();
        let got: Vec<&str> = (0..page.records.len()).map(|i| page.records.get(i).id).collect();
        assert_eq!(got, ids, "primary_key {key}");
        let data = |i| std::str::from_utf8(page.records.get(i).data).unwrap().to_owned();
        assert_eq!(data(0), r#"{"id":12345678901234567890123,"price":1.50,"k":{"n":[1,2e3]}}"#);
        assert_eq!(data(1), r#"{"id":12345678901234567890124,"price":0.10,"k":{"n":[3]}}"#);
        assert_eq!(data(2), r#"{"id":98765432109876543210,"x":"\u00e9 \" y"}"#);
    }
}

#[test]
fn malformed_lines_follow_on_error_and_a_failing_command_names_its_exit_code() {
    let script = r#"echo '{"type":"RECORD","record":{"a":1}}'; echo 'oops, not json'; echo '{"type":"NOPE"}'; echo '{"type":"RECORD","record":{"a":2}}'"#;
    let e = read(&mut source(CommandLine::Shell(script.into()), "s", json!({})), Json::Null).unwrap_err();
    assert!(e.message().contains("printed a line that is not JSON: oops, not json"), "{}", e.message());
    let (ids, routes, _) =
        read(&mut source(CommandLine::Shell(script.into()), "s", json!({"on_error": "dead_letter"})), Json::Null)
            .unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(routes, vec![0, DEAD_LETTER, DEAD_LETTER, 0]);
    let failing = r#"echo '{"type":"RECORD","record":{"a":1}}'; echo 'cannot reach the API' >&2; exit 3"#;
    let e = read(&mut source(CommandLine::Shell(failing.into()), "s", json!({})), Json::Null).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Permanent);
    assert!(e.message().contains("failed: exit code 3; its last stderr line: cannot reach the API"), "{}", e.message());
    let e =
        read(&mut source(CommandLine::Argv(vec!["/nonexistent/tap".into()]), "s", json!({})), Json::Null).unwrap_err();
    assert!(e.message().contains("cannot start the command `/nonexistent/tap`"), "{}", e.message());
}
