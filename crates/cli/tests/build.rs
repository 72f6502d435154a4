//! The shipped binary in whatever feature set this build has (CI also builds and runs this file
//! with `--no-default-features`): dummy / generator → file / logger / null pipelines run, the
//! listings come from the registry, and a config naming a connector the build left out fails
//! with exit 2 naming the cargo feature that provides it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bizon-build-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bizon(dir: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bizon")).args(args).current_dir(dir).output().expect("spawn bizon")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn generator_to_file_logger_and_null_run_in_this_build() {
    let dir = scratch("run");
    let file = "name: gen-file\nsource:\n  name: generator\n  stream: records\n  total: 2500\n  page_size: 100\n\
                destination:\n  name: file\n  config:\n    path: out.json\n";
    std::fs::write(dir.join("file.yml"), file).unwrap();
    let o = bizon(&dir, &["run", "file.yml", "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.json")).unwrap();
    let ids: std::collections::HashSet<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["source_record_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!((out.lines().count(), ids.len()), (2500, 2500));

    let null = file.replace("gen-file", "gen-null").replace("name: file\n  config:\n    path: out.json", "name: null");
    std::fs::write(dir.join("null.yml"), null).unwrap();
    let o = bizon(&dir, &["run", "null.yml", "--no-progress"]);
    assert!(o.status.success() && text(&o).contains("2500 records"), "{}", text(&o));

    let logger = "name: demo\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config:\n    dummy: dummy\n";
    std::fs::write(dir.join("logger.yml"), logger).unwrap();
    let o = bizon(&dir, &["run", "logger.yml", "--no-progress"]);
    assert!(o.status.success() && text(&o).contains("5 records"), "{}", text(&o));
    assert!(text(&o).contains("froggy"), "the logger logs each record: {}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listings_come_from_the_registry() {
    let dir = scratch("list");
    let o = bizon(&dir, &["source", "list"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("generator") && t.contains("dummy"), "{t}");
    assert_eq!(t.contains("  kafka "), cfg!(feature = "kafka"), "{t}");
    assert_eq!(t.contains("kafka (feature `kafka`)"), !cfg!(feature = "kafka"), "{t}");
    let o = bizon(&dir, &["destination", "list"]);
    let t = text(&o);
    assert!(t.contains("file") && t.contains("exactly-once") && t.contains("lanes"), "{t}");
    assert_eq!(t.contains("postgres (feature `postgres`)"), !cfg!(feature = "postgres"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_connector_left_out_of_the_build_fails_with_exit_2_naming_its_feature() {
    let dir = scratch("left-out");
    let cases = [
        ("kafka", "source:\n  name: kafka\n  stream: topic\n  bootstrap_servers: k:9092\n  topic: t\ndestination:\n  name: logger\n"),
        ("postgres", "source:\n  name: dummy\n  stream: creatures\ndestination:\n  name: postgres\n  config:\n    database: test\n"),
        ("rabbitmq", "source:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\nengine:\n  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: localhost\n        queue_name: q\n"),
    ];
    for (feature, body) in cases {
        std::fs::write(dir.join("c.yml"), format!("name: p\n{body}")).unwrap();
        let o = bizon(&dir, &["config", "validate", "c.yml"]);
        let enabled = match feature {
            "kafka" => cfg!(feature = "kafka"),
            "postgres" => cfg!(feature = "postgres"),
            _ => cfg!(feature = "rabbitmq"),
        };
        if enabled {
            assert!(o.status.success(), "{feature}: {}", text(&o));
        } else {
            assert_eq!(o.status.code(), Some(2), "{feature}: {}", text(&o));
            assert!(text(&o).contains(&format!("without the `{feature}` cargo feature")), "{}", text(&o));
            assert!(text(&o).contains("c.yml:"), "located: {}", text(&o));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn source_keys_bizon_ignores_warn_with_their_line_and_strict_makes_them_errors() {
    let dir = scratch("strict");
    let cfg = "name: p\nid: p-state\nsource:\n  name: dummy\n  stream: creatures\n  legacy_page_token: abc\n\
               destination:\n  name: logger\n  buffer_size: 400\n  config: {}\n";
    std::fs::write(dir.join("c.yml"), cfg).unwrap();
    let o = bizon(&dir, &["config", "validate", "c.yml"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "warning: c.yml:6:3: unknown key `legacy_page_token` for source `dummy`: ignored, as bizon does \
             (at `source.legacy_page_token`)"
        ),
        "{err}"
    );
    assert!(err.contains("warning: c.yml:9:3: `destination.buffer_size` has no effect"), "{err}");
    let o = bizon(&dir, &["config", "validate", "--strict", "c.yml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("c.yml:6:3: unknown key `legacy_page_token`"), "{}", text(&o));
    assert!(text(&o).contains("(an error with --strict)"), "{}", text(&o));
    // The run keys its job by `id` (bizon's job_name).
    let o = bizon(&dir, &["run", "c.yml", "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = bizon(&dir, &["job", "list", "c.yml"]);
    assert!(o.status.success() && !text(&o).contains("no jobs"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bizons_incremental_file_example_runs_twice_reading_everything_each_time() {
    // bizon's file_incremental.example.yml: the dummy source cannot filter by `updated_at`, and its
    // records have no such field, so the engine keeps every record on every run (as bizon does).
    let dir = scratch("incremental");
    let cfg =
        "name: dummy to file (incremental)\nsource:\n  name: dummy\n  stream: creatures\n  sync_mode: incremental\n  \
               cursor_field: updated_at\n  authentication:\n    type: api_key\n    params:\n      token: dummy_key\n\
               destination:\n  name: file\n  config:\n    format: json\n";
    std::fs::write(dir.join("c.yml"), cfg).unwrap();
    let mut lines = Vec::new();
    for _ in 0..2 {
        let o = bizon(&dir, &["run", "c.yml", "--no-progress"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("cannot filter by `updated_at` itself"), "{}", text(&o));
        let out = std::fs::read_to_string(dir.join("creatures.json")).unwrap_or_default();
        lines.push(out.lines().count());
    }
    assert!(lines[0] > 0 && lines[1] == 2 * lines[0], "appended each run: {lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn result_json_records_success_and_config_failures_as_bizon_does() {
    let dir = scratch("result-json");
    let cfg = "name: p\nsource:\n  name: generator\n  stream: records\n  total: 250\n  page_size: 100\n\
               destination:\n  name: null\n";
    std::fs::write(dir.join("c.yml"), cfg).unwrap();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).expect("result file")).expect("JSON")
    };
    let o = bizon(&dir, &["run", "c.yml", "--no-progress", "--result-json", "ok.json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = read("ok.json");
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["records_written"], 250, "{r}");
    assert!(r["failure_class"].is_null() && r["error"].is_null(), "{r}");
    assert!(r["job_id"].as_str().is_some_and(|id| text(&o).contains(id)), "{r}");
    assert!(r["duration_s"].as_f64().is_some_and(|d| d >= 0.0), "{r}");
    assert!(r["started_at"].as_str().is_some_and(|t| t.ends_with("+00:00") && t.starts_with("20")), "{r}");
    assert!(!dir.join("ok.json.tmp").exists());

    std::fs::write(dir.join("bad.yml"), cfg.replace("total: 250", "totl: 250")).unwrap();
    let o = bizon(&dir, &["run", "bad.yml", "--no-progress", "--result-json", "bad.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let r = read("bad.json");
    assert_eq!((r["status"].as_str(), r["failure_class"].as_str()), (Some("failure"), Some("config")), "{r}");
    assert!(r["error"].as_str().is_some_and(|e| e.contains("totl")), "{r}");

    // An unwritable path stops the run before anything runs.
    let o = bizon(&dir, &["run", "c.yml", "--no-progress", "--result-json", "no/such/dir/r.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--result-json no/such/dir/r.json"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
