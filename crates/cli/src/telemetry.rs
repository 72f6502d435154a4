//! Metrics exporters (`monitoring:`) and alerts (`alerting:`) of a run. They read the engine's
//! [`Counters`] (lock-free atomics the pipeline updates) on their own threads, so the hot path
//! pays a few relaxed atomic adds per page, nothing per record.
//!
//! Metric names are `bizon_<noun>_<unit>`; labels `pipeline`, `source`, `stream`, `destination`,
//! `job` (Datadog: bizon's `pipeline_name`, `pipeline_source`, `pipeline_stream`,
//! `pipeline_destination` tags, plus `job` and the configured `tags`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_connectors::config::BizonConfig;
use bizon_core::config::{AlertingConfig, MonitorDetails, MonitorType};
use bizon_engine::progress::{Counters, Histogram, BUCKETS};

mod otlp;

/// What a run is: the label values of its metrics.
#[derive(Clone)]
pub struct Labels {
    pub pipeline: String,
    pub source: String,
    pub stream: String,
    pub destination: String,
}

impl Labels {
    pub fn of(cfg: &BizonConfig) -> Self {
        Labels {
            pipeline: cfg.name.clone(),
            source: cfg.source_kind.name.to_owned(),
            stream: cfg.source.stream.clone(),
            destination: cfg.destination.kind.name.to_owned(),
        }
    }
}

pub enum Value<'a> {
    Counter(f64),
    Gauge(f64),
    Histogram(&'a Histogram),
}

pub struct Sample<'a> {
    pub name: &'static str,
    pub help: &'static str,
    pub value: Value<'a>,
}

/// Every metric of the run now. `started`: when the run started (rate, ETA).
pub fn samples(c: &Counters, started: Instant) -> Vec<Sample<'_>> {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut out = vec![
        Sample {
            name: "bizon_extracted_records_total",
            help: "Records read from the source",
            value: Value::Counter(n(&c.records_extracted)),
        },
        Sample {
            name: "bizon_extracted_bytes_total",
            help: "Bytes of records read from the source",
            value: Value::Counter(n(&c.bytes_extracted)),
        },
        Sample {
            name: "bizon_extracted_iterations_total",
            help: "Pages (iterations) read from the source",
            value: Value::Counter(n(&c.iterations_extracted)),
        },
        Sample {
            name: "bizon_written_records_total",
            help: "Records handed to the destination",
            value: Value::Counter(n(&c.records_loaded)),
        },
        Sample {
            name: "bizon_written_bytes_total",
            help: "Bytes of records handed to the destination",
            value: Value::Counter(n(&c.bytes_loaded)),
        },
        Sample {
            name: "bizon_written_iterations_total",
            help: "Pages (iterations) handed to the destination",
            value: Value::Counter(n(&c.iterations_loaded)),
        },
        Sample {
            name: "bizon_job_records",
            help: "Records of the job written so far, earlier runs included",
            value: Value::Gauge(c.done() as f64),
        },
        Sample {
            name: "bizon_queue_messages",
            help: "Pages in the in-memory queue",
            value: Value::Gauge(n(&c.queue_messages)),
        },
        Sample {
            name: "bizon_queue_bytes",
            help: "Bytes in the in-memory queue",
            value: Value::Gauge(n(&c.queue_bytes)),
        },
        Sample {
            name: "bizon_buffer_bytes",
            help: "Bytes written since the last durable commit",
            value: Value::Gauge(n(&c.buffer_bytes)),
        },
        Sample {
            name: "bizon_retries_total",
            help: "Attempts restarted from the last commit after a transient error",
            value: Value::Counter(n(&c.retries)),
        },
        Sample {
            name: "bizon_errors_total",
            help: "Errors (transient and fatal)",
            value: Value::Counter(n(&c.errors)),
        },
        Sample {
            name: "bizon_dead_letter_records_total",
            help: "Records sent to the dead-letter target",
            value: Value::Counter(n(&c.dead_letters)),
        },
        Sample {
            name: "bizon_latency_seconds",
            help: "Source extraction to durable commit, per page",
            value: Value::Histogram(&c.latency),
        },
        Sample {
            name: "bizon_commit_duration_seconds",
            help: "Destination flush plus cursor commit",
            value: Value::Histogram(&c.commits),
        },
    ];
    if let Some(pct) = c.percent() {
        out.push(Sample {
            name: "bizon_completion_percent",
            help: "Records of the job written, in % of the total to read",
            value: Value::Gauge(pct),
        });
        if let Some(eta) = c.eta_seconds(started.elapsed()) {
            out.push(Sample {
                name: "bizon_eta_seconds",
                help: "Estimated seconds to completion",
                value: Value::Gauge(eta),
            });
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text exposition format (0.0.4).
pub fn prometheus_text(c: &Counters, labels: &Labels, started: Instant) -> String {
    let job = c.job();
    let base = format!(
        "pipeline=\"{}\",source=\"{}\",stream=\"{}\",destination=\"{}\",job=\"{}\"",
        escape_label(&labels.pipeline),
        escape_label(&labels.source),
        escape_label(&labels.stream),
        escape_label(&labels.destination),
        escape_label(&job)
    );
    let mut out = String::with_capacity(4096);
    for s in samples(c, started) {
        let kind = match s.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
        };
        out.push_str(&format!("# HELP {} {}\n# TYPE {} {kind}\n", s.name, s.help, s.name));
        match s.value {
            Value::Counter(v) | Value::Gauge(v) => out.push_str(&format!("{}{{{base}}} {v}\n", s.name)),
            Value::Histogram(h) => {
                let cumulative = h.cumulative();
                for (i, count) in cumulative.iter().enumerate() {
                    let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
                    out.push_str(&format!("{}_bucket{{{base},le=\"{le}\"}} {count}\n", s.name));
                }
                out.push_str(&format!("{}_sum{{{base}}} {}\n", s.name, h.sum_seconds()));
                out.push_str(&format!("{}_count{{{base}}} {}\n", s.name, h.count()));
            }
        }
    }
    out
}

/// A push at the end of the run, given its status (`completed`, `stopped`, `failed`, …).
type FinalPush = Box<dyn FnOnce(&str) + Send>;

/// Running exporters and alert watchers; `finish` does the final push and stops them.
pub struct Telemetry {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    finals: Vec<FinalPush>,
    /// How long the Prometheus endpoint keeps serving after the run.
    linger: Duration,
    alert: Option<Alerter>,
}

/// How the run ended, for the final push and alerts.
pub enum End<'a> {
    Ok(&'a str),
    Failed(&'a str),
}

impl Telemetry {
    pub fn start(cfg: &BizonConfig, counters: Arc<Counters>) -> Result<Telemetry, String> {
        let labels = Labels::of(cfg);
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Telemetry {
            stop: stop.clone(),
            threads: Vec::new(),
            finals: Vec::new(),
            linger: Duration::ZERO,
            alert: None,
        };
        if let Some(m) = &cfg.monitoring {
            let details = m.config.clone().unwrap_or_default();
            match m.kind {
                MonitorType::Prometheus => {
                    let address = details.address.clone().unwrap_or_else(|| "127.0.0.1:9464".into());
                    let listener = TcpListener::bind(&address)
                        .map_err(|e| format!("monitoring.config.address `{address}`: cannot listen: {e}"))?;
                    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(address), "serving metrics on /metrics");
                    t.linger = Duration::from_secs_f64(details.linger_seconds().max(0.0));
                    let (c, l, s) = (counters.clone(), labels.clone(), stop.clone());
                    t.threads.push(spawn("bizon-prometheus", move || serve_prometheus(listener, &c, &l, started, &s)));
                }
                MonitorType::Datadog => {
                    let statsd = DogStatsd::new(&details, &labels)?;
                    let statsd = Arc::new(std::sync::Mutex::new(statsd));
                    let (c, s, d) = (counters.clone(), stop.clone(), statsd.clone());
                    let every = details.interval();
                    t.threads.push(spawn("bizon-dogstatsd", move || {
                        while !sleep_or_stop(&s, every) {
                            d.lock().unwrap_or_else(|p| p.into_inner()).push(&c, started, None);
                        }
                    }));
                    let c = counters.clone();
                    t.finals.push(Box::new(move |status| {
                        statsd.lock().unwrap_or_else(|p| p.into_inner()).push(&c, started, Some(status));
                    }));
                }
                MonitorType::Otlp => {
                    let exporter = Arc::new(otlp::Exporter::new(&details, &labels, counters.clone())?);
                    let (s, e) = (stop.clone(), exporter.clone());
                    let every = details.interval();
                    t.threads.push(spawn("bizon-otlp", move || {
                        while !sleep_or_stop(&s, every) {
                            e.push_spans();
                            e.push_metrics(started);
                        }
                    }));
                    bizon_engine::spans::install(exporter.clone());
                    t.finals.push(Box::new(move |_| {
                        exporter.push_spans();
                        exporter.push_metrics(started);
                    }));
                }
            }
        }
        if let Some(a) = &cfg.alerting {
            let alerter = Alerter::new(a, &labels);
            if let Some(after) = alerter.stuck_after {
                let (c, s, al) = (counters.clone(), stop.clone(), alerter.clone());
                t.threads.push(spawn("bizon-stuck-watch", move || watch_stuck(&c, &s, &al, after)));
            }
            t.alert = Some(alerter);
        }
        Ok(t)
    }

    /// Final pushes, the failure alert, then stop the exporters (the Prometheus endpoint serves
    /// `linger` seconds more so a last scrape sees the final values).
    pub fn finish(mut self, end: End<'_>, counters: &Counters) {
        let status = match end {
            End::Ok(s) => s,
            End::Failed(_) => "failed",
        };
        for f in self.finals.drain(..) {
            f(status);
        }
        if let (End::Failed(error), Some(a)) = (&end, &self.alert) {
            a.failure(&counters.job(), error);
        }
        if !self.linger.is_zero() {
            std::thread::sleep(self.linger);
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("spawning a telemetry thread")
}

/// Sleep `d` in short steps; true when asked to stop.
fn sleep_or_stop(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::park_timeout(Duration::from_millis(50).min(until - Instant::now()));
    }
    stop.load(Ordering::SeqCst)
}

trait DetailsExt {
    fn interval(&self) -> Duration;
    fn linger_seconds(&self) -> f64;
}

impl DetailsExt for MonitorDetails {
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_seconds.unwrap_or(10.0).max(0.05))
    }
    fn linger_seconds(&self) -> f64 {
        self.linger_seconds.unwrap_or(0.0)
    }
}

fn serve_prometheus(listener: TcpListener, c: &Counters, labels: &Labels, started: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = std::io::BufReader::new(&stream);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" || h == "\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body, kind) = if path == "/metrics" || path.starts_with("/metrics?") {
                    ("200 OK", prometheus_text(c, labels, started), "text/plain; version=0.0.4; charset=utf-8")
                } else {
                    ("404 Not Found", "metrics are on /metrics\n".to_owned(), "text/plain")
                };
                let mut w = &stream;
                let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::park_timeout(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// DogStatsD over UDP: counters as deltas since the last push (`|c`), gauges (`|g`), histograms as
/// their `.count` and `.sum` deltas; bizon's `bizon_pipeline.records_synced` and, at the end,
/// `bizon_pipeline.status` too, so bizon's Datadog dashboards keep working.
struct DogStatsd {
    socket: UdpSocket,
    tags: String,
    last: BTreeMap<String, f64>,
}

impl DogStatsd {
    fn new(d: &MonitorDetails, labels: &Labels) -> Result<Self, String> {
        let host = match (&d.datadog_host_env_var, &d.datadog_agent_host) {
            (Some(var), _) if std::env::var(var).is_ok_and(|v| !v.is_empty()) => std::env::var(var).unwrap_or_default(),
            (_, Some(h)) => h.clone(),
            (Some(var), None) => {
                return Err(format!("monitoring: `datadog_host_env_var` names `{var}`, which is not set"))
            }
            (None, None) => {
                return Err("monitoring type datadog needs `datadog_agent_host` or `datadog_host_env_var`".into())
            }
        };
        let port = d.datadog_agent_port.unwrap_or(8125);
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket.connect((host.as_str(), port)).map_err(|e| format!("datadog agent {host}:{port}: {e}"))?;
        let mut tags = vec![
            format!("pipeline_name:{}", labels.pipeline),
            format!("pipeline_source:{}", labels.source),
            format!("pipeline_stream:{}", labels.stream),
            format!("pipeline_destination:{}", labels.destination),
        ];
        tags.extend(d.tags.iter().flatten().map(|(k, v)| format!("{k}:{v}")));
        Ok(DogStatsd { socket, tags: tags.join(","), last: BTreeMap::new() })
    }

    fn delta(&mut self, key: &str, now: f64) -> f64 {
        let prev = self.last.insert(key.to_owned(), now).unwrap_or(0.0);
        now - prev
    }

    fn push(&mut self, c: &Counters, started: Instant, status: Option<&str>) {
        let tags = format!("{},job:{}", self.tags, c.job());
        let mut lines = Vec::new();
        for s in samples(c, started) {
            match s.value {
                Value::Counter(v) => {
                    let d = self.delta(s.name, v);
                    lines.push(format!("{}:{d}|c|#{tags}", s.name));
                    if s.name == "bizon_written_records_total" {
                        lines.push(format!("bizon_pipeline.records_synced:{d}|c|#{tags}"));
                    }
                }
                Value::Gauge(v) => lines.push(format!("{}:{v}|g|#{tags}", s.name)),
                Value::Histogram(h) => {
                    let (count, sum) = (
                        self.delta(&format!("{}.count", s.name), h.count() as f64),
                        self.delta(&format!("{}.sum", s.name), h.sum_seconds()),
                    );
                    lines.push(format!("{}.count:{count}|c|#{tags}", s.name));
                    lines.push(format!("{}.sum:{sum}|c|#{tags}", s.name));
                }
            }
        }
        if let Some(status) = status {
            lines.push(format!("bizon_pipeline.status:1|c|#{tags},pipeline_status:{status}"));
        }
        // one datagram per line keeps each under any MTU
        for l in lines {
            let _ = self.socket.send(l.as_bytes());
        }
    }
}

/// Slack incoming-webhook alerts: the run failed, or a running job stopped making progress.
#[derive(Clone)]
struct Alerter {
    url: String,
    labels: Labels,
    on_failure: bool,
    stuck_after: Option<Duration>,
}

impl Alerter {
    fn new(a: &AlertingConfig, labels: &Labels) -> Self {
        let levels: Vec<String> = a.log_levels.clone().unwrap_or_else(|| vec!["ERROR".into()]);
        let on_failure = levels
            .iter()
            .any(|l| matches!(l.to_ascii_uppercase().as_str(), "ERROR" | "CRITICAL" | "WARNING" | "INFO" | "DEBUG"));
        let stuck = a.config.stuck_after_seconds.unwrap_or(900);
        Alerter {
            url: a.config.webhook_url.clone(),
            labels: labels.clone(),
            on_failure,
            stuck_after: (stuck > 0).then(|| Duration::from_secs(stuck)),
        }
    }

    fn post(&self, level: &str, job: &str, message: &str) {
        let l = &self.labels;
        let text = format!(
            ":rotating_light: *Bizon Pipeline Alert* :rotating_light:\n\n*Sync*: `{}`\n*Source*: `{}` - `{}`\n*Destination*: `{}`\n*Job*: `{job}`\n*Level:* `{level}`\n\n*Message:*\n```{message}```\nSee `bizon job show {job}` for the job's cursor and history.",
            l.pipeline, l.source, l.stream, l.destination
        );
        let body = serde_json::json!({ "text": text }).to_string();
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
        match agent.post(&self.url).header("Content-Type", "application/json").send(body.as_bytes()) {
            Ok(r) if r.status().is_success() => tracing::info!(level, "alert sent to Slack"),
            // the webhook URL is a secret: never in a message
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "the Slack webhook refused the alert"),
            Err(e) => tracing::warn!(error = %redact(&e.to_string(), &self.url), "cannot send the alert to Slack"),
        }
    }

    fn failure(&self, job: &str, error: &str) {
        if self.on_failure {
            self.post("ERROR", job, &format!("The run failed: {error}"));
        }
    }
}

fn redact(s: &str, secret: &str) -> String {
    s.replace(secret, "<webhook url>")
}

fn watch_stuck(c: &Counters, stop: &AtomicBool, a: &Alerter, after: Duration) {
    let mut alerted = false;
    while !sleep_or_stop(stop, Duration::from_millis(200)) {
        let last = c.last_progress_micros.load(Ordering::Relaxed) as i64;
        if last == 0 {
            continue;
        }
        let idle = Duration::from_micros((bizon_core::time::now_micros() - last).max(0) as u64);
        if idle >= after && !alerted {
            a.post(
                "WARNING",
                &c.job(),
                &format!("No progress for {} s: no record written and no commit.", idle.as_secs()),
            );
            alerted = true;
        } else if idle < after {
            alerted = false;
        }
    }
}
