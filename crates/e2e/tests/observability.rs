//! Metrics, alerts and logs of real runs, received over the real protocols on loopback: a
//! Prometheus scrape over HTTP, DogStatsD datagrams on a UDP socket, Slack webhook POSTs on a local
//! HTTP server, JSON log lines.

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of `metric` (with any labels) in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_metrics_are_scraped_during_the_run_and_completion_reaches_100() {
    let s = Scratch::new("prometheus");
    let port = free_port();
    let monitoring =
        format!("monitoring:\n  type: prometheus\n  config:\n    address: 127.0.0.1:{port}\n    linger_seconds: 3\n");
    let cfg =
        generator_to_file(&s, "prom", 300_000, "  page_size: 1000\n  rate_limit: 150000\n", "    buffer_size: 1\n");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &monitoring).unwrap();
    let mut child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let (mut written, mut last_body) = (Vec::new(), String::new());
    let (mut live, mut ready) = (None, None);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        // Kubernetes' probes on the same address
        if let (None, Some(r)) = (&live, http_get(port, "/healthz")) {
            live = Some(r);
        }
        if let Some(r) = http_get(port, "/readyz").filter(|r| r.starts_with("HTTP/1.1 200")) {
            ready.get_or_insert(r);
        }
        if let Some(body) = http_get(port, "/metrics") {
            if let Some(v) = metric(&body, "bizon_written_records_total") {
                written.push(v);
            }
            // the last page's counters are updated one after the other: a scrape may fall between
            let done = metric(&body, "bizon_completion_percent") == Some(100.0)
                && metric(&body, "bizon_latency_seconds_count").is_some_and(|n| n >= 300.0);
            last_body = body;
            if done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    let live = live.expect("/healthz answered");
    assert!(live.starts_with("HTTP/1.1 200") && live.ends_with("ok\n"), "{live}");
    let ready = ready.expect("/readyz turned 200 during the run");
    assert!(ready.contains("ready: job "), "{ready}");
    assert!(last_body.contains("bizon_lane_pages_waiting{") && last_body.contains(",lane=\"0\"}"), "{last_body}");
    let increasing = written.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(increasing >= 3, "the record counter grew across scrapes: {written:?}");
    assert!(written.windows(2).all(|w| w[1] >= w[0]), "a counter never decreases: {written:?}");
    assert_eq!(metric(&last_body, "bizon_completion_percent"), Some(100.0), "{last_body}");
    assert_eq!(metric(&last_body, "bizon_written_records_total"), Some(300_000.0));
    assert!(metric(&last_body, "bizon_commit_duration_seconds_count").unwrap() >= 1.0, "{last_body}");
    assert!(metric(&last_body, "bizon_latency_seconds_count").unwrap() >= 300.0, "one observation per page");
    assert!(last_body.contains("# TYPE bizon_latency_seconds histogram"));
    assert!(
        last_body.contains(
            r#"bizon_written_records_total{pipeline="prom",source="generator",stream="records",destination="file"} "#
        ),
        "{last_body}"
    );
    assert!(!last_body.contains("job="), "no job label: series stay bounded across jobs: {last_body}");
    assert!(http_get(port, "/metrics").is_none(), "the endpoint closes when the run is over");
}

/// Runs a generator → file pipeline named `name` with the Datadog exporter (and `tags`, YAML lines
/// under `tags:`) pointed at a UDP socket; the datagrams received, up to bizon's status counter.
fn dogstatsd_run(s: &Scratch, name: &str, total: u64, tags: &str) -> Vec<String> {
    let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
    agent.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = agent.local_addr().unwrap().port();
    let monitoring = format!(
        "monitoring:\n  type: datadog\n  config:\n    datadog_agent_host: 127.0.0.1\n    datadog_agent_port: {port}\n    \
         interval_seconds: 0.2\n    tags:\n{tags}"
    );
    let cfg = generator_to_file(s, name, total, "  rate_limit: 100000\n", "");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &monitoring).unwrap();
    let child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let mut lines = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(n) = agent.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            let end = line.starts_with("bizon_pipeline.status");
            lines.push(line);
            if end {
                break;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lines
}

#[test]
fn dogstatsd_lines_reach_a_udp_listener_with_names_types_and_tags() {
    let s = Scratch::new("dogstatsd");
    let lines = dogstatsd_run(&s, "dd", 100_000, "      team: data\n");
    let written: f64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("bizon_written_records_total:"))
        .map(|rest| {
            assert!(
                rest.ends_with("|c|#pipeline_name:dd,pipeline_source:generator,pipeline_stream:records,pipeline_destination:file,team:data"),
                "bizon's tags then the configured ones, no job id: {rest}"
            );
            rest.split('|').next().unwrap().parse::<f64>().unwrap()
        })
        .sum();
    assert_eq!(written, 100_000.0, "the counter's deltas add up to the records written");
    let synced: f64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("bizon_pipeline.records_synced:"))
        .map(|r| r.split('|').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(synced, 100_000.0, "bizon's own metric name too");
    assert!(lines.iter().any(|l| l.starts_with("bizon_completion_percent:") && l.contains("|g|#")), "gauges");
    assert!(lines.iter().any(|l| l.starts_with("bizon_latency_seconds.count:") && l.contains("|c|#")), "histograms");
    assert!(lines.iter().any(|l| l.starts_with("bizon_latency_seconds.sum:") && l.contains("|c|#")), "histogram sums");
    let status = lines.last().unwrap();
    assert!(
        status.starts_with("bizon_pipeline.status:1|c|#") && status.ends_with("pipeline_status:completed"),
        "{status}"
    );
    assert!(lines.iter().filter(|l| l.starts_with("bizon_written_records_total:")).count() >= 3, "periodic pushes");
}

#[test]
fn dogstatsd_tags_with_separator_characters_cannot_break_a_line() {
    let s = Scratch::new("dogstatsd-escape");
    let lines = dogstatsd_run(&s, "'dd,x|y#z:w'", 1000, "      'te|am': 'a,b#c'\n");
    assert!(lines.len() > 10, "{lines:?}");
    for line in &lines {
        // name:value|type|#tags — exactly three sections, tags split on `,`
        let sections: Vec<&str> = line.split('|').collect();
        assert_eq!(sections.len(), 3, "{line}");
        assert!(sections[0].split_once(':').is_some_and(|(_, v)| v.parse::<f64>().is_ok()), "{line}");
        let tags: Vec<&str> = sections[2].strip_prefix('#').expect("tags").split(',').collect();
        assert!(tags.starts_with(&["pipeline_name:dd_x_y_z:w", "pipeline_source:generator"]), "{line}");
        assert!(tags.contains(&"te_am:a_b_c"), "{line}");
    }
}

/// A stand-in for Slack's incoming webhook (a secret path), answering 200 `ok`.
fn webhook() -> (String, Requests) {
    let (url, requests) = serve_http(|_| ("200 OK", "text/plain", "ok".into()));
    (format!("{url}/services/T000/B000/s3cr3t-hook"), requests)
}

fn bodies(requests: &Requests) -> Vec<String> {
    requests.lock().unwrap().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

#[test]
fn a_failed_run_sends_a_slack_alert_with_the_job_and_error_but_no_secret() {
    let s = Scratch::new("slack-failure");
    let (url, requests) = webhook();
    let text = format!(
        "name: failing\nsource:\n  name: generator\n  stream: records\n  total: 1000\ndestination:\n  name: null\n  config:\n    \
         fail_rate: 1.0\nengine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n  runner:\n    config:\n      \
         max_retries: 0\nalerting:\n  type: slack\n  config:\n    webhook_url: {url}\n",
        s.path("state.db").display()
    );
    let cfg = s.write("pipeline.yml", &text);
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let job = err.split("job=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    let bodies = bodies(&requests);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let alert: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("*Sync*: `failing`") && text.contains("`generator` - `records`") && text.contains("`null`"),
        "{text}"
    );
    assert!(text.contains(&format!("*Job*: `{job}`")), "{text}");
    assert!(text.contains("The run failed") && text.contains("injected write failure"), "{text}");
    assert!(!text.contains("s3cr3t") && !err.contains("s3cr3t"), "the webhook URL is a secret");
}

#[test]
fn a_run_without_progress_sends_a_stuck_alert() {
    let s = Scratch::new("slack-stuck");
    let (url, requests) = webhook();
    let cfg = generator_to_file(&s, "stuck", 3, "  page_size: 1\n  rate_limit: 0.5\n", "");
    let alerting = format!("alerting:\n  type: slack\n  config:\n    webhook_url: {url}\n    stuck_after_seconds: 1\n");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &alerting).unwrap();
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let bodies = bodies(&requests);
    assert!(!bodies.is_empty(), "{err}");
    let text: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(text["text"].as_str().unwrap().contains("No progress for 1 s"), "{text}");
    assert!(text["text"].as_str().unwrap().contains("*Level:* `WARNING`"), "{text}");
}

#[test]
fn json_logs_carry_the_job_and_stream_on_every_line_of_the_run() {
    let s = Scratch::new("json-logs");
    let cfg = generator_to_file(&s, "jsonlogs", 5000, "", "");
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress", "--log-format", "json"]));
    let lines: Vec<serde_json::Value> =
        err.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let done = lines.iter().find(|l| l["fields"]["message"] == "job completed").expect("job completed line");
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["span"]["stream"], "records");
    assert_eq!(done["span"]["job_id"], done["fields"]["job"]);
    assert!(lines.len() >= 2 && lines.iter().all(|l| l["timestamp"].is_string()));
}

#[test]
fn an_otlp_receiver_gets_a_span_per_iteration_step_and_the_metrics() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use prost::Message;
    let s = Scratch::new("otlp");
    let (url, got) = serve_http(|_| ("200 OK", "application/x-protobuf", String::new()));
    let monitoring = format!(
        "monitoring:\n  type: otlp\n  config:\n    endpoint: {url}\n    interval_seconds: 0.3\n    headers:\n      x-api-key: k\n"
    );
    let cfg = generator_to_file(&s, "otlp", 50_000, "  page_size: 1000\n  rate_limit: 50000\n", "    buffer_size: 1\n");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &monitoring).unwrap();
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let got = got.lock().unwrap();
    assert!(
        got.iter().all(|r| r.header("content-type") == Some("application/x-protobuf")),
        "OTLP/HTTP bodies are protobuf"
    );
    let mut steps: std::collections::BTreeMap<String, std::collections::BTreeSet<i64>> = Default::default();
    let mut pipeline_attr = false;
    for r in got.iter().filter(|r| r.path == "/v1/traces") {
        let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("a trace export");
        for rs in &req.resource_spans {
            pipeline_attr |= rs.resource.as_ref().unwrap().attributes.iter().any(|a| a.key == "bizon.pipeline");
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let it = span.attributes.iter().find(|a| a.key == "bizon.iteration").unwrap();
                let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i)) =
                    it.value.as_ref().unwrap().value
                else {
                    panic!("iteration attribute")
                };
                assert_eq!(span.trace_id.len(), 16);
                assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
                steps.entry(span.name.clone()).or_default().insert(i);
            }
        }
    }
    assert!(pipeline_attr, "the resource names the pipeline");
    for step in ["extract", "enqueue", "write"] {
        assert_eq!(steps.get(step).map(|s| s.len()), Some(50), "{step}: one span per iteration ({steps:?})");
    }
    assert!(!steps.get("commit").is_none_or(|s| s.is_empty()), "commit spans");
    let metrics: Vec<ExportMetricsServiceRequest> = got
        .iter()
        .filter(|r| r.path == "/v1/metrics")
        .map(|r| ExportMetricsServiceRequest::decode(&r.body[..]).expect("a metrics export"))
        .collect();
    assert!(metrics.len() >= 2, "periodic and final pushes: {}", metrics.len());
    let last = metrics.last().unwrap();
    let all: Vec<_> = last.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).collect();
    let written = all.iter().find(|m| m.name == "bizon_written_records_total").expect("the records counter");
    let Some(metric::Data::Sum(sum)) = &written.data else { panic!("a sum") };
    assert!(sum.is_monotonic);
    assert!(sum.data_points[0].attributes.is_empty(), "no job attribute on a metric point");
    assert_eq!(sum.data_points[0].value, Some(number_data_point::Value::AsDouble(50_000.0)));
    assert!(all
        .iter()
        .any(|m| m.name == "bizon_latency_seconds" && matches!(m.data, Some(metric::Data::Histogram(_)))));
}

#[test]
fn job_list_and_show_give_a_running_jobs_rate_percent_and_eta_from_the_backend() {
    let s = Scratch::new("live-progress");
    let cfg =
        generator_to_file(&s, "live", 400_000, "  page_size: 1000\n  rate_limit: 100000\n", "    buffer_size: 1\n");
    let cfg = cfg.to_str().unwrap().to_owned();
    let child = s.spawn(&["run", &cfg, "--no-progress"]);
    let mut seen = None;
    wait_until("a running job with progress", Duration::from_secs(30), || {
        let out = stdout(&s.run(&["job", "list", &cfg]));
        let row: Vec<String> = out.lines().nth(1).unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        let ready = row.get(1).is_some_and(|st| st == "running") && row.get(9).is_some_and(|e| e.ends_with('s'));
        if ready {
            seen = Some(row);
        }
        ready
    });
    let row = seen.unwrap();
    let (rate, pct): (f64, f64) = (row[7].parse().unwrap(), row[8].parse().unwrap());
    assert!(rate > 10_000.0 && rate < 1_000_000.0, "records/s of a 100k/s source: {row:?}");
    assert!(pct > 0.0 && pct < 100.0, "{row:?}");
    let show: serde_json::Value = serde_json::from_str(&stdout(&s.run(&["job", "show", &cfg, &row[0]]))).unwrap();
    assert_eq!(show["progress"]["total"], 400_000);
    assert!(show["progress"]["percent"].as_f64().unwrap() > 0.0, "{show}");
    assert!(child.wait_with_output().unwrap().status.success());
    let out = stdout(&s.run(&["job", "list", &cfg]));
    let done: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((done[1], done[8], done[9]), ("succeeded", "100.0", "-"), "{out}");
}

/// The metric names and label names of every sample line in a Prometheus text body.
fn series(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut names, mut labels) = (BTreeSet::new(), BTreeSet::new());
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..end].to_owned());
        if let Some(inner) = line[end..].strip_prefix('{').and_then(|r| r.rsplit_once('}')).map(|(i, _)| i) {
            // label values are quoted and escaped; names are what precedes each `="`
            let mut rest = inner;
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').to_owned());
                let mut chars = rest[eq + 2..].char_indices();
                let mut close = rest.len() - eq - 2;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            close = i;
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &rest[eq + 2 + close + 1..];
            }
        }
    }
    (names, labels)
}

/// The PromQL of a dashboard: every panel target's `expr` and every templating query.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
    }
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str().or(var["definition"].as_str()) {
            if q.contains("bizon_") {
                out.push((format!("variable {}", var["name"]), q.to_owned()));
            }
        }
    }
    out
}

/// The identifiers of a PromQL expression that name bizon metrics, and the label names it uses in
/// matchers (`{name=~…}`) and groupings (`by (…)`, `label_values(…, name)`).
fn promql_names(expr: &str) -> (Vec<String>, Vec<String>) {
    let word = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let metrics = expr.match_indices("bizon_").map(|(at, _)| word(&expr[at..])).collect();
    let mut labels = Vec::new();
    for (at, _) in expr.match_indices('{') {
        let inner = &expr[at + 1..at + expr[at..].find('}').unwrap()];
        for matcher in inner.split(',').filter(|m| !m.trim().is_empty()) {
            labels.push(word(matcher.trim()));
        }
    }
    for (at, _) in expr.match_indices("by (") {
        let inner = &expr[at + 4..at + expr[at..].find(')').unwrap()];
        labels.extend(inner.split(',').map(|l| l.trim().to_owned()));
    }
    if let Some(rest) = expr.strip_prefix("label_values(") {
        labels.push(rest.trim_end_matches(')').rsplit(',').next().unwrap().trim().to_owned());
    }
    (metrics, labels)
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_and_labels_bizon_exports() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/bizon.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // What a run exports: the union of its scrapes (the ETA exists only while the job runs).
    let s = Scratch::new("grafana");
    let port = free_port();
    let monitoring =
        format!("monitoring:\n  type: prometheus\n  config:\n    address: 127.0.0.1:{port}\n    linger_seconds: 3\n");
    let cfg =
        generator_to_file(&s, "dash", 200_000, "  page_size: 1000\n  rate_limit: 100000\n", "    buffer_size: 1\n");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &monitoring).unwrap();
    let mut child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let (mut names, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(body) = http_get(port, "/metrics") {
            let (n, l) = series(&body);
            names.extend(n);
            labels.extend(l);
            if metric(&body, "bizon_completion_percent") == Some(100.0) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    assert!(names.contains("bizon_eta_seconds") && names.contains("bizon_lane_pages_waiting"), "{names:?}");

    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    let mut queried = BTreeSet::new();
    for (panel, expr) in &queries {
        let (metrics, used) = promql_names(expr);
        assert!(!metrics.is_empty(), "panel `{panel}` queries no bizon metric: {expr}");
        for m in metrics {
            assert!(names.contains(&m), "panel `{panel}` queries `{m}`, which bizon does not export ({names:?})");
            queried.insert(m);
        }
        for l in used {
            assert!(labels.contains(&l), "panel `{panel}` uses label `{l}`, which bizon does not export ({labels:?})");
        }
    }
    // the views the dashboard exists for, each over the metric that measures it
    for (title, metric) in [
        ("Records/s", "bizon_written_records_total"),
        ("Completion", "bizon_completion_percent"),
        ("ETA", "bizon_eta_seconds"),
        ("Commit latency", "bizon_commit_duration_seconds_bucket"),
        ("Retries", "bizon_retries_total"),
        ("Errors", "bizon_errors_total"),
        ("Dead letters", "bizon_dead_letter_records_total"),
        ("Pages waiting per lane", "bizon_lane_pages_waiting"),
    ] {
        assert!(
            queries.iter().any(|(p, e)| p == title && promql_names(e).0.iter().any(|m| m == metric)),
            "a `{title}` panel over {metric}: {queries:?}"
        );
    }
    assert!(queried.len() >= 12, "{queried:?}");
    // panel ids unique (Grafana keys its layout by them), every panel placed on the grid
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().expect("panel id")).collect();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");
    assert!(panels.iter().all(|p| p["gridPos"]["w"].as_u64().is_some_and(|w| (1..=24).contains(&w))));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
}
