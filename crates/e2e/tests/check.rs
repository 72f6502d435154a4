//! `bizon check CONFIG` against the real services: every component reached and nothing created
//! (no table, schema, queue or state file); unreachable ones named with their fix, exit 1, and
//! no password in the output.

mod common;

use common::*;

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("bizon_check_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The line `bizon check` printed for `component`.
fn line<'a>(out: &'a str, component: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(component))
        .unwrap_or_else(|| panic!("no `{component}` line in:\n{out}"))
}

#[test]
fn every_component_is_reached_and_nothing_is_created() {
    let s = Scratch::new("check-ok");
    let (schema, queue, port) = (unique("schema"), unique("queue"), free_port());
    let cfg = s.write(
        "pipeline.yml",
        &format!(
            "name: checked\nsource:\n  name: generator\n  stream: records\n  total: 5000\n  page_size: 500\n\
             destination:\n  name: postgres\n  config:\n    host: {host}\n    port: {pgport}\n    database: {db}\n    \
             username: {user}\n    schema: {schema}\nengine:\n  backend:\n    type: sqlite\n    database: {state}\n  \
             queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        \
             queue_name: {queue}\nmonitoring:\n  type: prometheus\n  config:\n    address: 127.0.0.1:{port}\n",
            host = pg_host(),
            pgport = pg_port(),
            db = pg_db(),
            user = pg_user(),
            state = s.path("state/bizon.db").display(),
        ),
    );
    let out = s.run(&["check", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(line(&text, "source").contains("ok: read the first page: 500 record(s)"), "{text}");
    let dest = line(&text, "destination");
    assert!(dest.contains("ok: connected to") && dest.contains(&format!("schema `{schema}` is missing")), "{text}");
    assert!(line(&text, "backend").contains("ok: ") && line(&text, "backend").contains("the first run creates it"));
    let q = line(&text, "queue");
    assert!(q.contains(&format!("`{queue}` is missing and is created by the run")), "{q}");
    assert!(line(&text, "monitoring").contains(&format!("ok: 127.0.0.1:{port} can be listened on")), "{text}");
    // a check leaves no trace
    let mut pg = client();
    let schemas = pg.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema]).unwrap();
    assert!(schemas.is_empty(), "the check created schema {schema}");
    assert!(!s.path("state").exists(), "the check created the state directory");
    let listed = std::process::Command::new("rabbitmqctl").args(["list_queues", "-q", "name"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&queue), "the check declared a queue");
}

#[test]
fn unreachable_components_are_named_with_their_fix_and_exit_1_without_the_password() {
    let s = Scratch::new("check-bad");
    let blocker = s.write("blocker", "a file where a directory should be");
    let cfg = s.write(
        "pipeline.yml",
        &format!(
            "name: broken\nsource:\n  name: postgres\n  stream: public.nothing\n  host: 127.0.0.1\n  port: 1\n  \
             database: test\n  username: postgres\n  password: s3cr3t-pw\ndestination:\n  name: file\n  config:\n    \
             path: {}/out.json\nengine:\n  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        \
             port: 1\n        password: rabbit-s3cr3t\n        queue_name: q\n",
            blocker.display()
        ),
    );
    let out = s.run(&["check", cfg.to_str().unwrap(), "--timeout", "20"]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    let source = line(&text, "source");
    assert!(source.contains("error: ") && source.contains("127.0.0.1:1"), "{source}");
    assert!(source.contains("fix: start the service, or correct the host and port under `source`"), "{source}");
    let dest = line(&text, "destination");
    assert!(dest.contains("is not a directory") && dest.contains("fix: choose a path"), "{dest}");
    let queue = line(&text, "queue");
    assert!(queue.contains("error: ") && queue.contains("under `engine.queue`"), "{queue}");
    assert!(line(&text, "backend").contains("ok: "), "{text}");
    assert!(err.contains("3 of 4 components failed the check"), "{err}");
    for secret in ["s3cr3t-pw", "rabbit-s3cr3t"] {
        assert!(!text.contains(secret) && !err.contains(secret), "{secret} printed:\n{text}{err}");
    }
}

#[test]
fn the_command_destination_s_program_must_exist() {
    let s = Scratch::new("check-cmd");
    let cfg = s.write(
        "pipeline.yml",
        "name: cmd\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: command\n  config:\n    \
         command: [no-such-target-bizon, --flag]\n",
    );
    let out = s.run(&["check", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let dest = line(&text, "destination");
    assert!(dest.contains("`no-such-target-bizon` is not an executable file on PATH"), "{dest}");
    assert!(dest.contains("fix: install the program"), "{dest}");
    assert!(line(&text, "source").contains("ok: read the first page"), "{text}");
}
