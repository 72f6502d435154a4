//! bizon's inline Python `transforms:` through the real binary and the `python3` on PATH: a
//! million records, a failing transform (exit code, message), dead letters, a kill -9.

mod common;
use common::*;

use bizon_testkit::fixtures::read_ids;
use serde_json::Value;

/// bizon's README example shape: upper-case one field, add one.
const UPPER_AND_ADD: &str = "transforms:\n  - label: upper\n    python: |\n      data['name'] = data['name'].upper()\n      data['origin'] = 'bizon-rs'\n";

fn rows(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The record a file row holds (`source_data`, a JSON string as bizon writes it).
fn source_data(row: &Value) -> Value {
    serde_json::from_str(row["source_data"].as_str().expect("source_data is a string")).unwrap()
}

#[test]
fn a_million_records_through_a_python_transform_land_once_each_transformed() {
    let s = Scratch::new("transform-1m");
    let total = 1_000_000;
    let cfg = generator_to_file(&s, "t1m", total, "  page_size: 5000\n", "");
    edit_config(cfg.to_str().unwrap(), "engine:\n", &format!("{UPPER_AND_ADD}engine:\n"));
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = ok(&out);
    assert_eq!(summary_records(&err), total, "{err}");
    let out = s.path("out.json");
    assert_exactly_once(&out, total);
    // content: every record went through the transform, the rest of it as it was
    let text = std::fs::read_to_string(&out).unwrap();
    let mut checked = 0u64;
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let data = row["source_data"].as_str().unwrap();
        let id = row["source_record_id"].as_str().unwrap();
        assert!(data.starts_with(&format!("{{\"id\": {id}, \"updated_at\": \"")), "{data:.120}");
        assert!(data.contains(&format!("\"name\": \"RECORD-{id}\", \"payload\": \"")), "{data:.120}");
        assert!(data.ends_with("\", \"origin\": \"bizon-rs\"}"), "{data:.120}");
        checked += 1;
    }
    assert_eq!(checked, total);
}

#[test]
fn a_raising_transform_fails_the_run_naming_its_label_record_and_exception() {
    let s = Scratch::new("transform-raise");
    let cfg = generator_to_file(&s, "traise", 50, "  page_size: 10\n", "");
    let bad = "transforms:\n  - label: upper\n    python: data['name'] = data['name'].upper()\n  - label: reject-27\n    python: |\n      if data['id'] == 27:\n          raise ValueError(f\"id {data['id']} is not allowed\")\n";
    edit_config(cfg.to_str().unwrap(), "engine:\n", &format!("{bad}engine:\n"));
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("transform `reject-27` failed on record `27`: ValueError: id 27 is not allowed"), "{err}");
    // nothing published (full refresh: the target appears at the end), two pages committed
    assert!(!s.path("out.json").exists(), "{:?}", s.files());
    let jobs = ok_stdout(&s.run(&["job", "list", cfg.to_str().unwrap()]));
    assert!(jobs.contains("failed"), "{jobs}");

    // with dead_letter, the rest lands and the failing record is in the dead-letter file
    edit_config(cfg.to_str().unwrap(), "    python: |\n", "    on_error: dead_letter\n    python: |\n");
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = ok(&out);
    let ids = read_ids(&s.path("out.json"));
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).filter(|i| *i != 27).collect::<Vec<_>>(), "{err}");
    let dead = rows(&s.path("records_dead_letter.json"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let row = source_data(&dead[0]);
    assert_eq!(row["transform"], "reject-27");
    assert_eq!(row["error"], "ValueError: id 27 is not allowed");
    assert_eq!(row["record"]["name"], "record-27", "the record as it arrived, before any transform");
}

#[test]
fn kill_9_mid_run_with_a_transform_then_resume_lands_every_record_once() {
    let s = Scratch::new("transform-kill");
    let total = 300_000;
    let cfg =
        generator_to_file(&s, "tkill", total, "  page_size: 1000\n  rate_limit: 150000\n", "    buffer_size: 0\n");
    edit_config(cfg.to_str().unwrap(), "engine:\n", &format!("{UPPER_AND_ADD}engine:\n"));
    let cfg = cfg.to_str().unwrap().to_owned();
    let (killed, _) = kill_at_seeded_moments(&s, &cfg, 0x7a5f, 3, 300, 900);
    assert_eq!(killed, 3, "three runs killed mid-run");
    let outs = run_until_done(&s, &cfg, 3);
    assert!(!outs.is_empty());
    let out = s.path("out.json");
    assert_exactly_once(&out, total);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().all(|l| l.contains(r#"\"origin\": \"bizon-rs\"}"#)), "every row transformed");
}

#[test]
fn bizons_dummy_transform_example_gives_bizons_bytes() {
    // The rows bizon 0.6.4 wrote for this config (dummy → file, 2026-12-05): `source_data` as
    // its transform step leaves it (`json.dumps`, key order kept, added keys last).
    let s = Scratch::new("transform-dummy");
    let cfg = s.write(
        "c.yml",
        "name: dummy_to_file_transform\nsource:\n  name: dummy\n  stream: creatures\n  authentication:\n    type: api_key\n    params:\n      token: dummy_key\n\
         destination:\n  name: file\n  config:\n    destination_id: out\n    format: json\n\
         transforms:\n  - label: upper_name\n    python: |\n      data['name'] = data['name'].upper()\n      data['cookies'] = 'chocolate'\n",
    );
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let got: Vec<(String, String)> = rows(&s.path("out.json"))
        .iter()
        .map(|r| (r["source_record_id"].as_str().unwrap().to_owned(), r["source_data"].as_str().unwrap().to_owned()))
        .collect();
    let bizon = [
        ("9898", r#"{"id": 9898, "name": "BIZON", "age": 26, "cookies": "chocolate"}"#),
        ("88787", r#"{"id": 88787, "name": "CROCO", "age": 23, "cookies": "chocolate"}"#),
        ("98", r#"{"id": 98, "name": "FROGGY", "age": 26, "cookies": "chocolate"}"#),
        ("3333", r#"{"id": 3333, "name": "TURTLE", "age": 23, "cookies": "chocolate"}"#),
        ("56565", r#"{"id": 56565, "name": "POULPO", "age": 26, "cookies": "chocolate"}"#),
    ];
    assert_eq!(got, bizon.map(|(i, d)| (i.to_owned(), d.to_owned())).to_vec());
}

/// The same two lines in the native language.
const UPPER_AND_ADD_JQ: &str =
    "transforms:\n  - label: upper\n    jq: |\n      .name |= ascii_upcase\n      | .origin = \"bizon-rs\"\n";

#[test]
fn a_million_records_through_a_jq_program_land_once_each_transformed() {
    let s = Scratch::new("transform-jq-1m");
    let total = 1_000_000;
    let cfg = generator_to_file(&s, "tjq1m", total, "  page_size: 5000\n", "");
    edit_config(cfg.to_str().unwrap(), "engine:\n", &format!("{UPPER_AND_ADD_JQ}engine:\n"));
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = ok(&out);
    assert_eq!(summary_records(&err), total, "{err}");
    let out = s.path("out.json");
    assert_exactly_once(&out, total);
    // content: every record went through the program (compact JSON out), the rest as it was
    let text = std::fs::read_to_string(&out).unwrap();
    let mut checked = 0u64;
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let data = row["source_data"].as_str().unwrap();
        let id = row["source_record_id"].as_str().unwrap();
        assert!(data.starts_with(&format!("{{\"id\":{id},\"updated_at\":\"")), "{data:.120}");
        assert!(data.contains(&format!("\"name\":\"RECORD-{id}\",\"payload\":\"")), "{data:.120}");
        assert!(data.ends_with("\",\"origin\":\"bizon-rs\"}"), "{data:.120}");
        checked += 1;
    }
    assert_eq!(checked, total);
}

#[test]
fn a_jq_program_is_checked_by_config_validate_at_its_line_and_column_and_filters_records() {
    let s = Scratch::new("transform-jq-validate");
    let cfg = generator_to_file(&s, "tjqv", 100, "  page_size: 10\n", "");
    let bad = "transforms:\n  - label: tidy\n    jq: |\n      select(.id % 2 == 0)\n      | .name |= ascii_upcase(1)\n";
    edit_config(cfg.to_str().unwrap(), "engine:\n", &format!("{bad}engine:\n"));
    let out = s.run(&["config", "validate", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line = text.lines().position(|l| l.contains("ascii_upcase(1)")).unwrap() + 1;
    // `ascii_upcase` is at column 18 of its line: 6 spaces of indentation, then `| .name |= `
    assert!(
        err.contains(&format!(
            "pipeline.yml:{line}:18: transform `tidy`: jq program does not compile: undefined filter `ascii_upcase/1`"
        )),
        "{err}"
    );
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_ne!(out.status.code(), Some(0), "a run refuses it too");
    assert!(!s.path("out.json").exists());

    // fixed: odd ids are filtered out, the others upper-cased; a record the program raises on
    // goes to the dead-letter file under on_error: dead_letter
    let good = "    on_error: dead_letter\n    jq: |\n      select(.id % 2 == 0)\n      | if .id == 42 then error(\"no 42\") else . end\n      | .name |= ascii_upcase\n";
    edit_config(
        cfg.to_str().unwrap(),
        "    jq: |\n      select(.id % 2 == 0)\n      | .name |= ascii_upcase(1)\n",
        good,
    );
    ok(&s.run(&["config", "validate", cfg.to_str().unwrap()]));
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let mut ids = read_ids(&s.path("out.json"));
    ids.sort_unstable();
    assert_eq!(ids, (0..100).filter(|i| i % 2 == 0 && *i != 42).collect::<Vec<_>>(), "{err}");
    for row in rows(&s.path("out.json")) {
        let data = source_data(&row);
        assert_eq!(data["name"], format!("RECORD-{}", data["id"]));
    }
    let dead = rows(&s.path("records_dead_letter.json"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let row = source_data(&dead[0]);
    assert_eq!((row["transform"].as_str(), row["error"].as_str()), (Some("tidy"), Some("no 42")));
    assert_eq!(row["record"]["name"], "record-42", "the record as it arrived");
}
