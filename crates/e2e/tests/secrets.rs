//! Secret hygiene: runs that fail while holding credentials of every kind (PostgreSQL, RabbitMQ,
//! Kafka SASL, schema registry, Slack webhook, OTLP headers) never print them — not in errors,
//! logs (text or JSON), `config show`, metrics nor alerts. Every test greps all the output.

mod common;

use std::net::TcpListener;

use common::*;

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SECRETS: [&str; 7] = [
    "pg-Secret-4711",
    "rabbit-Secret-0815",
    "sasl-Secret-2718",
    "registry-Secret-3141",
    "hooks-Secret-1618",
    "otlp-Secret-1414",
    "env-Secret-9999",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} printed the secret `{s}`:\n{text}");
    }
}

/// Run `args`, return stdout + stderr (whatever the exit status).
fn all_output(s: &Scratch, args: &[&str]) -> (Option<i32>, String) {
    let out = s.cmd(args).env("OTHER_SECRET", "env-Secret-9999").output().unwrap();
    (out.status.code(), stdout(&out) + &stderr(&out))
}

fn backend(s: &Scratch) -> String {
    format!("  backend:\n    type: sqlite\n    config:\n      database: {}\n", s.path("state.db").display())
}

#[test]
fn a_postgres_destination_that_cannot_connect_never_prints_its_password() {
    let s = Scratch::new("secret-pg");
    let port = closed_port();
    let text = format!(
        "name: secret_pg\nsource:\n  name: generator\n  stream: records\n  total: 10\ndestination:\n  name: postgres\n  config:\n    \
         host: 127.0.0.1\n    port: {port}\n    database: test\n    username: postgres\n    password: pg-Secret-4711\nengine:\n{}  \
         runner:\n    config:\n      max_retries: 0\nalerting:\n  type: slack\n  config:\n    webhook_url: http://127.0.0.1:{}/hooks-Secret-1618\n",
        backend(&s),
        closed_port()
    );
    let cfg = s.write("pipeline.yml", &text);
    let cfg = cfg.to_str().unwrap();
    for format in ["text", "json"] {
        let (code, out) =
            all_output(&s, &["run", cfg, "--no-progress", "--log-format", format, "--log-level", "debug"]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(&format!("127.0.0.1:{port}")) || out.contains(&port.to_string()),
            "the error names the address: {out}"
        );
        assert!(out.contains("cannot send the alert"), "the alert failed too (closed port): {out}");
        assert_clean(&format!("run ({format} logs)"), &out);
    }
    let (_, shown) = all_output(&s, &["config", "show", cfg]);
    assert!(shown.contains("********"), "{shown}");
    assert_clean("config show", &shown);
    let (_, jobs) = all_output(&s, &["job", "list", cfg]);
    assert_clean("job list", &jobs);
}

#[test]
fn a_rabbitmq_queue_refusing_the_password_never_prints_it() {
    let s = Scratch::new("secret-rabbit");
    let cfg = generator_to_file(&s, "secret_rabbit", 10, "", "");
    let queue = "  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        queue_name: bizon_secret_test\n        \
                 username: guest\n        password: rabbit-Secret-0815\n  runner:\n    config:\n      max_retries: 0\n";
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + queue).unwrap();
    let (code, out) = all_output(&s, &["run", cfg.to_str().unwrap(), "--no-progress", "--log-level", "debug"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.to_ascii_lowercase().contains("rabbitmq"), "{out}");
    assert_clean("rabbitmq run", &out);
    let (_, shown) = all_output(&s, &["config", "show", cfg.to_str().unwrap()]);
    assert_clean("config show", &shown);
}

#[test]
fn kafka_sasl_registry_and_otlp_credentials_never_appear_in_output_or_metrics() {
    let s = Scratch::new("secret-kafka");
    let (kafka, registry, otlp, metrics) = (closed_port(), closed_port(), closed_port(), closed_port());
    let text = format!(
        "name: secret_kafka\nsource:\n  name: kafka\n  stream: topic\n  sync_mode: full_refresh\n  topic: t\n  \
         bootstrap_servers: 127.0.0.1:{kafka}\n  consumer_timeout: 1\n  authentication:\n    type: basic\n    params:\n      \
         username: u\n      password: sasl-Secret-2718\n    schema_registry_url: http://127.0.0.1:{registry}\n    \
         schema_registry_username: u\n    schema_registry_password: registry-Secret-3141\n  consumer_config:\n    \
         security.protocol: SASL_PLAINTEXT\n    sasl.password: ${{OTHER_SECRET}}\ndestination:\n  name: file\n  config:\n    \
         path: out.json\nengine:\n{}  runner:\n    config:\n      max_retries: 0\nmonitoring:\n  type: otlp\n  config:\n    \
         endpoint: http://127.0.0.1:{otlp}\n    headers:\n      authorization: Bearer otlp-Secret-1414\n",
        backend(&s)
    );
    let cfg = s.write("pipeline.yml", &text);
    let (code, out) = all_output(&s, &["run", cfg.to_str().unwrap(), "--no-progress", "--log-level", "debug"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("kafka 127.0.0.1:{kafka}")), "{out}");
    assert_clean("kafka run", &out);
    let (_, shown) = all_output(&s, &["config", "show", cfg.to_str().unwrap()]);
    assert_clean("config show", &shown);
    // the same credentials with a Prometheus endpoint: the scrape holds none of them
    let prom = text.replace(
        &format!("  type: otlp\n  config:\n    endpoint: http://127.0.0.1:{otlp}\n    headers:\n      authorization: Bearer otlp-Secret-1414\n"),
        &format!("  type: prometheus\n  config:\n    address: 127.0.0.1:{metrics}\n    linger_seconds: 2\n"),
    );
    let cfg = s.write("prom.yml", &prom);
    let child = s
        .cmd(&["run", cfg.to_str().unwrap(), "--no-progress"])
        .env("OTHER_SECRET", "env-Secret-9999")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut scraped = String::new();
    wait_until("a scrape", std::time::Duration::from_secs(20), || {
        scraped = http_get(metrics, "/metrics").unwrap_or_default();
        scraped.contains("bizon_errors_total")
    });
    let out = child.wait_with_output().unwrap();
    assert_clean("the metrics", &scraped);
    assert_clean("the prometheus run", &String::from_utf8_lossy(&out.stderr));
}
