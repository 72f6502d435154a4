//! End-to-end: the CLI verbs, the README example, config errors.

mod common;

use common::*;

const README_CONFIG: &str = "name: demo-creatures-pipeline\n\nsource:\n  name: dummy\n  stream: creatures\n  authentication:\n    type: api_key\n    params:\n      token: dummy_key\n\ndestination:\n  name: logger\n  config:\n    dummy: dummy\n";

#[test]
fn readme_command_runs_dummy_to_logger() {
    // The README's first command, minus the cargo build: the shipped example from a clean dir.
    let s = Scratch::new("readme");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dummy_to_logger.yml");
    let out = s.run(&["run", example.to_str().unwrap()]);
    let err = ok(&out);
    for rec in [
        r#"{"id":9898,"name":"bizon","age":26}"#,
        r#"{"id":88787,"name":"croco","age":23}"#,
        r#"{"id":98,"name":"froggy","age":26}"#,
        r#"{"id":3333,"name":"turtle","age":23}"#,
        r#"{"id":56565,"name":"poulpo","age":26}"#,
    ] {
        assert!(err.contains(&format!("[full_refresh] {rec}")), "missing {rec} in:\n{err}");
    }
    assert!(err.contains("completed: 5 records"), "{err}");
    assert!(s.path("bizon.db").exists(), "default backend is ./bizon.db");
}

#[test]
fn dummy_to_file_writes_bizons_rows_exactly() {
    let s = Scratch::new("dummy-file");
    let cfg = s.write(
        "c.yml",
        "name: dummy-file\nsource:\n  name: dummy\n  stream: plants\ndestination:\n  name: file\n  config:\n    destination_id: plants_out\n",
    );
    ok(&s.run(&["run", cfg.to_str().unwrap()]));
    let rows = read_rows(&s.path("plants_out.json"));
    let data: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["source_record_id"].as_str().unwrap().to_owned(), r["source_data"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        data,
        [
            ("9898", r#"{"id":9898,"name":"tree","age":26}"#),
            ("88787", r#"{"id":88787,"name":"flower","age":23}"#),
            ("98", r#"{"id":98,"name":"cactus","age":26}"#),
            ("3333", r#"{"id":3333,"name":"bamboo","age":23}"#),
            ("56565", r#"{"id":56565,"name":"rose","age":26}"#),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    for r in &rows {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, bizon_connectors::destinations::BIZON_COLUMNS);
        assert_eq!(r["bizon_id"].as_str().unwrap().len(), 32);
        assert!(r["bizon_loaded_at"].as_str().unwrap().ends_with("+00:00"));
    }
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r["bizon_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 5, "bizon_id is unique");
    assert!(!s.path("plants_out_temp.json").exists(), "staging file renamed away");
}

/// Each bad config: exit 2, a clear message, no panic, nothing written.
#[test]
fn config_errors_exit_2_with_location_and_write_nothing() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "typo",
            &README_CONFIG.replace("  stream: creatures", "  stream: creatures\n  sync_mod: incremental"),
            &["bad.yml:6:3", "unknown key `sync_mod`", "did you mean `sync_mode`"],
        ),
        (
            "typo-in-destination",
            &README_CONFIG.replace("    dummy: dummy", "    buffer_sise: 10"),
            &["bad.yml:14:5", "unknown key `buffer_sise`", "did you mean `buffer_size`"],
        ),
        (
            "wrong-type",
            &README_CONFIG.replace("    dummy: dummy", "    buffer_size: lots"),
            &["bad.yml:14:18", "expected a non-negative integer, found `lots`", "destination.config.buffer_size"],
        ),
        (
            "missing-key",
            &README_CONFIG.replace("  stream: creatures\n", ""),
            &["bad.yml:", "missing required key `stream`"],
        ),
        (
            "missing-section",
            &README_CONFIG[..README_CONFIG.find("destination:").unwrap()],
            &["missing required key `destination`"],
        ),
        (
            "unknown-source",
            &README_CONFIG.replace("name: dummy", "name: dumy"),
            &["bad.yml:4:9", "unknown source `dumy`", "did you mean `dummy`", "Available: dummy, generator"],
        ),
        (
            "unknown-destination",
            &README_CONFIG.replace("name: logger", "name: s3"),
            &["bad.yml:12:9", "unknown destination `s3`", "logger, file, null"],
        ),
        ("invalid-yaml", "name: x\nsource: [unclosed\n", &["bad.yml:", "invalid YAML"]),
        (
            "bad-enum",
            &README_CONFIG.replace("type: api_key", "type: apikey"),
            &["bad.yml:7:11", "did you mean `api_key`"],
        ),
        (
            "missing-env",
            &README_CONFIG.replace("dummy_key", "${BIZON_TEST_UNSET_VAR}"),
            &["bad.yml:9:14", "`BIZON_TEST_UNSET_VAR` is not set"],
        ),
        ("empty", "", &["the config is empty"]),
    ];
    for (label, text, expected) in cases {
        let s = Scratch::new(&format!("cfgerr-{label}"));
        let cfg = s.write("bad.yml", text);
        for verb in [&["run"][..], &["config", "validate"][..]] {
            let mut args = verb.to_vec();
            args.push(cfg.to_str().unwrap());
            let out = s.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{label} {verb:?}: exit code; stderr:\n{err}");
            for e in *expected {
                assert!(err.contains(e), "{label} {verb:?}: expected `{e}` in:\n{err}");
            }
            assert!(!err.contains("panicked"), "{label}: panic:\n{err}");
        }
        assert_eq!(s.files(), ["bad.yml"], "{label}: nothing may be written");
    }
    let s = Scratch::new("cfgerr-missing-file");
    let out = s.run(&["run", "does-not-exist.yml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read config file `does-not-exist.yml`"), "{}", stderr(&out));
    assert!(s.files().is_empty());
}

#[test]
fn usage_errors_exit_2_and_every_verb_has_help() {
    let s = Scratch::new("help");
    assert_eq!(s.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(s.run(&["run"]).status.code(), Some(2));
    for verb in [
        &["run"][..],
        &["config", "validate"],
        &["config", "show"],
        &["config", "schema"],
        &["source", "list"],
        &["stream", "list"],
        &["stream", "reset"],
        &["destination", "list"],
        &["job", "list"],
        &["job", "show"],
        &["secrets", "check"],
        &["state", "import"],
        &["completions"],
        &["manpage"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = s.run(&args);
        assert!(out.status.success(), "{verb:?} --help");
        assert!(stdout(&out).contains("Usage: bizon"), "{verb:?} --help:\n{}", stdout(&out));
    }
}

#[test]
fn list_verbs_show_connectors_streams_and_guarantees() {
    let s = Scratch::new("lists");
    let out = stdout(&s.run(&["source", "list"]));
    assert!(out.contains("dummy") && out.contains("creatures, plants") && out.contains("generator"), "{out}");
    let kafka = out.lines().find(|l| l.trim_start().starts_with("kafka")).unwrap_or_default();
    assert!(kafka.contains("full_refresh, incremental, stream"), "{out}");
    let out = stdout(&s.run(&["stream", "list", "dummy"]));
    assert!(out.contains("creatures") && out.contains("plants"), "{out}");
    let bad = s.run(&["stream", "list", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("unknown source `nope`") && stderr(&bad).contains("Available: dummy, generator"),
        "{}",
        stderr(&bad)
    );
    let out = stdout(&s.run(&["destination", "list"]));
    let file_line = out.lines().find(|l| l.trim_start().starts_with("file")).unwrap();
    assert!(file_line.contains("exactly-once"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("logger") && l.contains("none")), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("postgres") && l.contains("exactly-once")), "{out}");
}

#[test]
fn placeholders_resolve_and_config_show_masks_them() {
    let s = Scratch::new("env");
    s.write(".env", "# comment\nBIZON_ENV_TOKEN=from-dotenv-secret\nDEST_ID=routed\n");
    let text = README_CONFIG
        .replace("token: dummy_key", "token: BIZON_ENV_TOKEN\n      password: ${env://BIZON_TEST_PW:-hunter2-default}")
        .replace(
            "name: logger\n  config:\n    dummy: dummy",
            "name: file\n  config:\n    destination_id: ${DEST_ID}\n    buffer_size: BIZON_ENV_BUF",
        );
    let cfg = s.write("c.yml", &text);
    let out = s.cmd(&["config", "show", cfg.to_str().unwrap()]).env("BIZON_ENV_BUF", "7").output().unwrap();
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!shown.contains("from-dotenv-secret") && !shown.contains("hunter2"), "secret leaked:\n{shown}");
    assert!(shown.contains("\"token\": \"********\""), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["destination"]["config"]["buffer_size"], "********", "from the environment: masked");
    let out = s.cmd(&["run", cfg.to_str().unwrap()]).env("BIZON_ENV_BUF", "7").output().unwrap();
    ok(&out);
    assert_eq!(read_rows(&s.path("routed.json")).len(), 5, "destination_id came from .env");
    let out = s.cmd(&["secrets", "check", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "BIZON_ENV_BUF is unset here");
    assert!(
        stdout(&out).contains("destination.config.buffer_size") && stdout(&out).contains("FAILED"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("from-dotenv-secret"));
}

/// `config validate --skip-references` (bizon's flag, for CI without the secrets): references
/// stay unresolved, text fields take them as text, typed fields a stand-in; a field no stand-in
/// fits is still an error at its place.
#[test]
fn config_validate_skip_references_checks_a_config_without_its_secrets() {
    let s = Scratch::new("skipref");
    let text = "name: skipref\nsource:\n  name: generator\n  stream: records\n  total: ${TOTAL}\n\
                destination:\n  name: postgres\n  config:\n    host: ${PG_HOST}\n    port: env://PG_PORT\n    \
                database: test\n    username: BIZON_ENV_PG_USER\n    password: gsm://projects/p/secrets/pg/versions/3\n";
    let cfg = s.write("c.yml", text);
    let cfg = cfg.to_str().unwrap();
    let out = s.run(&["config", "validate", cfg]);
    assert_eq!(out.status.code(), Some(2), "resolved as a run would: {}", stderr(&out));
    assert!(stderr(&out).contains("`TOTAL` is not set"), "{}", stderr(&out));

    let out = s.run(&["config", "validate", cfg, "--skip-references"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("2 field(s) hold an unresolved reference"), "total and port: {}", stdout(&out));
    assert!(stdout(&out).contains("c.yml: valid"), "{}", stdout(&out));
    assert!(s.files().iter().all(|f| f == "c.yml"), "nothing written: {:?}", s.files());

    // a typo is still found with references unresolved
    let typo = s.write("typo.yml", &text.replace("database: test", "databse: test"));
    let out = s.run(&["config", "validate", typo.to_str().unwrap(), "--skip-references"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `database`"), "{}", stderr(&out));
    // a field no stand-in fits: named with its place
    let mode = s.write("mode.yml", &text.replace("  stream: records\n", "  stream: records\n  sync_mode: ${MODE}\n"));
    let out = s.run(&["config", "validate", mode.to_str().unwrap(), "--skip-references"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("mode.yml:5:") && err.contains("`${MODE}`") && err.contains("no stand-in"), "{err}");
}

#[test]
fn a_custom_source_config_validates_and_a_missing_file_is_a_config_error() {
    let s = Scratch::new("python");
    let text = README_CONFIG
        .replace("  stream: creatures\n", "  stream: creatures\n  source_file_path: my_source.py\n  my_own_key: 3\n");
    let cfg = s.write("c.yml", &text);
    s.write("my_source.py", "");
    let out = s.run(&["config", "validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("my_own_key"), "the custom source's keys are its own: {}", stderr(&out));
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress", "--custom-source", "missing.py"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("custom source `missing.py`: no such file"), "{}", stderr(&out));
}

#[test]
fn every_example_validates() {
    let s = Scratch::new("examples");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            // Every `${VAR}` an example needs without a default gets a value, as a user's shell would.
            let text = std::fs::read_to_string(&path).unwrap();
            let required = text
                .split("${")
                .skip(1)
                .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
                .filter(|name| !name.contains(":-"))
                .map(|name| (name.to_string(), "x"));
            let out = s
                .cmd(&["config", "validate", path.to_str().unwrap()])
                .env("BIZON_ENV_DUMMY_TOKEN", "t")
                .envs(required)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            n += 1;
        }
    }
    assert!(n >= 8, "examples found: {n}");
}

#[test]
fn progress_lines_without_a_terminal_and_a_bar_on_one() {
    let s = Scratch::new("progress");
    let text = format!(
        "name: progress\nsource:\n  name: generator\n  stream: records\n  total: 30000\n  page_size: 500\n  rate_limit: 20000\n\
         destination:\n  name: file\n  config:\n    path: {}\n",
        s.path("out.json").display()
    );
    let cfg = s.write("c.yml", &text);
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--progress-interval", "0.3"]));
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" progress ")).collect();
    assert!(lines.len() >= 2, "periodic progress lines expected:\n{err}");
    assert!(lines.iter().all(|l| l.contains("total=30000") && l.contains("percent=") && l.contains("eta_s=")), "{err}");
    assert!(err.contains("completed: 30000 records") && err.contains("records/s"), "final summary:\n{err}");

    // On a terminal (a pty from `script`): a bar with records, rate, % and ETA.
    if std::process::Command::new("script").arg("--version").output().is_ok() {
        let cmd = format!("{} run {} --reset", bin(), cfg.display());
        let out = std::process::Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .current_dir(s.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{screen}");
        assert!(screen.contains("/30000 records") && screen.contains("ETA"), "progress bar expected:\n{screen}");
        // the rate in whole records per second, never `998,541.4951/s`
        let rate = screen.split(" records/s").next().and_then(|b| b.rsplit(' ').next()).unwrap_or_default();
        assert!(!rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit()), "rate `{rate}` in:\n{screen}");
    }
}

/// Shell completions and the man page come from the CLI definition; a listing piped into a
/// reader that goes away (`| head`) ends quietly instead of panicking on the broken pipe.
#[test]
fn completions_man_page_and_a_closed_pipe() {
    let s = Scratch::new("completions");
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef bizon"), ("fish", "complete -c bizon")] {
        let out = stdout(&s.run(&["completions", shell]));
        assert!(out.contains(marker), "{shell}:\n{out}");
        for verb in ["run", "validate", "reset", "import", "skip-references", "from-bizon"] {
            assert!(out.contains(verb), "{shell} completion lacks `{verb}`");
        }
    }
    let bad = s.run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    let man = stdout(&s.run(&["manpage"]));
    assert!(man.starts_with(".ie") || man.contains(".TH bizon"), "{}", &man[..man.len().min(200)]);
    assert!(man.contains("config") && man.contains("stream") && man.contains("Exit codes"), "man page content");

    // `bizon config schema | head -c 10`: the reader closes after 10 bytes of ~140 kB
    let mut child = s
        .cmd(&["config", "schema"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn a_dropped_scratch_kills_the_runs_it_left_running() {
    // what keeps a test that fails half-way from leaving `bizon` processes behind
    let s = Scratch::new("guard");
    let cfg = generator_to_file(&s, "guard", 10_000_000, "  rate_limit: 1000\n", "");
    let child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let pid = child.id();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the run is going");
    drop(s);
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status:?}");
}

/// A "billion laughs" config: nine levels of aliases, each repeating the one before nine times.
fn alias_bomb() -> String {
    let mut text =
        String::from("name: bomb\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let mut prev = 'a';
    for level in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{level}: &{level} [{refs}]\n"));
        prev = level;
    }
    text.push_str("source:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n");
    text
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4, which also reports its peak memory
fn an_alias_bomb_config_fails_fast_with_exit_2_at_the_alias_in_bounded_memory() {
    let s = Scratch::new("alias-bomb");
    let cfg = s.write("bomb.yml", &alias_bomb());
    for verb in [&["config", "validate"][..], &["run"][..], &["config", "show"][..]] {
        let started = std::time::Instant::now();
        let child = std::process::Command::new(bin())
            .args(verb)
            .arg(&cfg)
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn bizon");
        let pid = child.id() as i32;
        let mut stderr_pipe = child.stderr.expect("stderr");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut err).expect("read stderr");
        let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
        // SAFETY: waits for our own child; `status` and `usage` are valid out-pointers.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(waited, pid, "wait4");
        let code = libc::WEXITSTATUS(status);
        let peak_mb = usage.ru_maxrss as f64 / 1024.0;
        // Safety bounds, not a benchmark: an unbounded expansion takes gigabytes and minutes.
        assert_eq!(code, 2, "{verb:?}: exit code; stderr:\n{err}");
        assert!(
            err.contains("bomb.yml:") && err.contains("alias"),
            "{verb:?}: a located error naming the alias:\n{err}"
        );
        assert!(peak_mb < 64.0, "{verb:?}: peak RSS {peak_mb:.1} MB");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{verb:?}: took {:?}", started.elapsed());
        eprintln!("{verb:?}: exit 2 in {:?}, peak RSS {peak_mb:.1} MB", started.elapsed());
    }
    assert_eq!(s.files(), ["bomb.yml"], "nothing may be written");
}
