//! Config loading: bizon's examples, locations of errors, connector lookups, cross-field rules.

use bizon_core::config::RunnerType;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

const README: &str = "name: demo-creatures-pipeline\n\nsource:\n  name: dummy\n  stream: creatures\n  authentication:\n    type: api_key\n    params:\n      token: dummy_key\n\ndestination:\n  name: logger\n  config:\n    dummy: dummy\n";

#[test]
fn bizon_readme_example_loads_with_defaults() {
    let c = load(README, &no_env).unwrap();
    assert_eq!(c.name, "demo-creatures-pipeline");
    assert_eq!(c.source_kind.name, "dummy");
    assert_eq!(c.destination.kind.name, "logger");
    assert_eq!(c.destination.common.buffer_size, 50);
    assert_eq!(c.destination.common.buffer_flush_timeout, 600);
    assert_eq!(c.engine.backend.spec.describe(), "sqlite bizon.db");
    assert_eq!(c.engine.runner.kind, RunnerType::Thread);
}

#[test]
fn typo_reports_location_and_closest_key() {
    let text = README.replace("  stream: creatures", "  stream: creatures\n  sync_mod: incremental");
    let e = load(&text, &no_env).unwrap_err();
    assert_eq!(e.mark, Some(Mark { line: 6, col: 3 }));
    assert!(e.message.contains("unknown key `sync_mod`; did you mean `sync_mode`?"), "{}", e.message);
}

#[test]
fn unknown_connectors_list_the_available_ones() {
    let e = load(&README.replace("name: logger", "name: loger"), &no_env).unwrap_err();
    assert!(e.message.contains("did you mean `logger`"), "{}", e.message);
    assert!(e.message.contains("file"), "{}", e.message);
    let e = load(&README.replace("name: dummy", "name: salesforce"), &no_env).unwrap_err();
    assert!(e.message.contains("unknown source `salesforce`") && e.message.contains("generator"), "{}", e.message);
}

#[test]
fn a_connector_left_out_of_the_build_names_its_feature() {
    let text = README.replace(
        "name: dummy\n  stream: creatures",
        "name: kafka\n  stream: topic\n  bootstrap_servers: k:9092\n  topic: t\n  message_encoding: utf-8",
    );
    let kafka_built = cfg!(feature = "kafka");
    match load(&text, &no_env) {
        Ok(c) => assert!(kafka_built && c.source_kind.name == "kafka"),
        Err(e) => {
            assert!(!kafka_built, "{}", e.message);
            assert!(e.message.contains("compiled without the `kafka` cargo feature"), "{}", e.message);
            assert_eq!(e.mark, Some(Mark { line: 4, col: 9 }));
        }
    }
}

#[test]
fn bizon_backend_forms_are_both_accepted() {
    let a = format!("{README}engine:\n  backend:\n    type: sqlite_in_memory\n    config:\n      database: not_used\n      schema: not_used\n");
    assert_eq!(load(&a, &no_env).unwrap().engine.backend.spec.describe(), "sqlite_in_memory");
    let b = format!("{README}engine:\n  backend:\n    type: sqlite\n    database: state/x\n    schema: s\n    syncCursorInDBEvery: 2\n");
    let c = load(&b, &no_env).unwrap();
    assert_eq!(c.engine.backend.spec.describe(), "sqlite state/x.db");
    assert_eq!(c.engine.backend.sync_cursor_in_db_every, 2);
    let p = format!("{README}engine:\n  backend:\n    type: bigquery\n");
    let e = load(&p, &no_env).unwrap_err().message;
    if cfg!(feature = "bigquery") {
        assert!(e.contains("missing required key `database`"), "{e}");
    } else {
        assert!(e.contains("compiled without the `bigquery` cargo feature"), "{e}");
    }
}

#[test]
#[cfg(feature = "jq")]
fn jq_programs_compile_at_load_with_errors_at_their_line_and_column_in_the_file() {
    let ok = format!("{README}transforms:\n  - label: up\n    jq: .name |= ascii_upcase\n");
    assert_eq!(load(&ok, &no_env).unwrap().transforms[0].jq.as_deref(), Some(".name |= ascii_upcase"));
    // a block scalar: the error is on the program's third line, at `frobnicate`
    let text = format!(
        "{README}transforms:\n  - label: tidy\n    jq: |\n      .a = 1\n      | .b = 2\n      |  frobnicate(.a)\n"
    );
    let e = load(&text, &no_env).unwrap_err();
    assert_eq!(e.message, "transform `tidy`: jq program does not compile: undefined filter `frobnicate/1`");
    assert_eq!(e.path, "transforms[0].jq");
    let line = text.lines().position(|l| l.contains("frobnicate")).unwrap() + 1;
    assert_eq!(e.mark.map(|m| (m.line, m.col)), Some((line, 10)));
    // plain and quoted one-liners
    let text = format!("{README}transforms:\n  - label: p\n    jq: .a = (1\n");
    let e = load(&text, &no_env).unwrap_err();
    assert!(e.message.ends_with("`(` is never closed"), "{}", e.message);
    assert_eq!(e.mark.map(|m| m.col), Some(14));
    let text = format!("{README}transforms:\n  - label: q\n    jq: \".a | nope\"\n");
    let e = load(&text, &no_env).unwrap_err();
    assert_eq!(e.mark.map(|m| m.col), Some(15));
    // one language per transform
    let text = format!("{README}transforms:\n  - label: both\n    python: data['x'] = 1\n    jq: .x = 1\n");
    assert!(load(&text, &no_env).unwrap_err().message.contains("has both `python` and `jq`"));
}

#[test]
fn cross_field_rules() {
    let e =
        load(&README.replace("stream: creatures", "stream: creatures\n  sync_mode: incremental"), &no_env).unwrap_err();
    assert!(e.message.contains("cursor_field"), "{}", e.message);
    let e = load(&README.replace("stream: creatures", "stream: animals"), &no_env).unwrap_err();
    assert!(e.message.contains("creatures, plants"), "{}", e.message);
    let cfg = load(&format!("{README}transforms:\n  - label: t\n    python: data['x'] = 1\n"), &no_env).unwrap();
    assert_eq!(cfg.transforms[0].on_error, bizon_core::config::OnError::Fail);
    let text = format!(
        "{README}transforms:\n  - label: t\n    python: data['x'] = 1\n  - label: empty\n    on_error: dead_letter\n"
    );
    let e = load(&text, &no_env).unwrap_err();
    assert!(e.message.contains("transform `empty` has no code"), "{}", e.message);
    assert_eq!(e.path, "transforms[1]");
    assert_eq!(e.mark.map(|m| m.line), text.lines().position(|l| l.contains("label: empty")).map(|l| l + 1));
}

/// `lease_partitions` needs a lane destination, a shared backend, no queue, and not incremental:
/// each refusal at the key, naming what to change.
#[cfg(feature = "kafka")]
#[test]
fn leased_kafka_partitions_need_lanes_a_shared_backend_and_no_queue() {
    let base = "name: p\nsource:\n  name: kafka\n  stream: topic\n  sync_mode: stream\n  topic: t\n  \
                bootstrap_servers: 127.0.0.1:9\n  lease_partitions: true\ndestination:\n  name: file\n  config:\n    \
                path: out.json\nengine:\n  backend:\n    type: sqlite\n    config:\n      database: s.db\n";
    load(base, &no_env).expect("file destination, sqlite backend, stream");
    let refused = |text: String, want: &str| {
        let e = load(&text, &no_env).unwrap_err();
        assert!(e.message.contains(want), "{}", e.message);
        assert_eq!(e.path, "source.lease_partitions");
        assert_eq!(e.mark.map(|m| m.line), Some(8), "{}", e.message);
    };
    refused(base.replace("sync_mode: stream", "sync_mode: incremental"), "sync_mode: stream");
    refused(
        base.replace("name: file\n  config:\n    path: out.json", "name: command\n  config:\n    command: cat"),
        "the `command` destination does not support yet",
    );
    refused(
        base.replace("type: sqlite\n    config:\n      database: s.db", "type: sqlite_in_memory"),
        "backend every process shares",
    );
    let queue = "  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: h\n        queue_name: q\n";
    refused(format!("{base}{queue}"), "without a queue");
}
