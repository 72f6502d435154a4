//! Metrics exporters (`monitoring:`) and alerts (`alerting:`) of a run. They read the engine's
//! [`Counters`] (lock-free atomics the pipeline updates) on their own threads, so the hot path
//! pays a few relaxed atomic adds per page, nothing per record.
//!
//! Metric names are `bizon_<noun>_<unit>`; labels `pipeline`, `source`, `stream`, `destination`
//! (Datadog: bizon's `pipeline_name`, `pipeline_source`, `pipeline_stream`, `pipeline_destination`
//! tags, plus the configured `tags`). Labels are bounded: the job id goes to logs and spans, never
//! to a metric label, so a series outlives its job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_connectors::config::BizonConfig;
use bizon_core::config::{MonitorDetails, MonitorType};
use bizon_core::ErrorKind;
use bizon_engine::progress::{Counters, Histogram};

mod datadog;
mod otlp;
mod prometheus;
mod slack;

use datadog::DogStatsd;
use slack::{watch_stuck, Alerter};

/// Why an exporter could not start: the run fails before it reads anything. Every one is the
/// user's to fix (an address, a variable, a URL): [`TelemetryError::kind`] is [`ErrorKind::Config`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("monitoring: `datadog_host_env_var` names `{var}`, which is not set")]
    AgentHostVarUnset { var: String },
    #[error("monitoring type datadog needs `datadog_agent_host` or `datadog_host_env_var`")]
    NoAgentHost,
    /// The agent's host name did not resolve.
    #[error("datadog agent {host}:{port}: {source}")]
    AgentUnresolved { host: String, port: u16, source: std::io::Error },
    #[error("datadog agent {host}:{port}: the host has no address")]
    AgentNoAddress { host: String, port: u16 },
    #[error("datadog: cannot open a UDP socket: {0}")]
    UdpSocket(#[source] std::io::Error),
    #[error("datadog agent {agent}: {source}")]
    AgentSink { agent: std::net::SocketAddr, source: cadence::MetricError },
    #[error("monitoring.config.endpoint `{endpoint}` must be an http:// or https:// URL")]
    OtlpEndpoint { endpoint: String },
    /// The Prometheus address is taken or not ours to bind.
    #[error("monitoring.config.address `{address}`: cannot listen: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("serving metrics on {local}: {source}")]
    Serve { local: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl TelemetryError {
    /// Always [`ErrorKind::Config`]: the monitoring section names something that is not there.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// Seconds between two pushes (Datadog, OTLP) when `interval_seconds` is not set.
const DEFAULT_INTERVAL_SECONDS: f64 = 10.0;
/// The shortest push interval accepted: a smaller `interval_seconds` is raised to it, so a typo
/// cannot turn an exporter into a busy loop.
const MIN_INTERVAL_SECONDS: f64 = 0.05;
/// How often a sleeping exporter or watcher looks at the stop flag: bounds how long `finish`
/// waits for it.
const STOP_CHECK: Duration = Duration::from_millis(50);

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
    /// A monotonic count since the process started.
    Counter(u64),
    Gauge(f64),
    Histogram(&'a Histogram),
}

pub struct Sample<'a> {
    pub name: &'static str,
    pub help: &'static str,
    pub value: Value<'a>,
    /// The `lane` label (tag, attribute) of a per-lane series.
    pub lane: Option<u64>,
}

/// Every metric of the run now. `started`: when the run started (rate, ETA).
pub fn samples(c: &Counters, started: Instant) -> Vec<Sample<'_>> {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = vec![
        Sample {
            name: "bizon_extracted_records_total",
            help: "Records read from the source",
            value: Value::Counter(n(&c.records_extracted)),
            lane: None,
        },
        Sample {
            name: "bizon_extracted_bytes_total",
            help: "Bytes of records read from the source",
            value: Value::Counter(n(&c.bytes_extracted)),
            lane: None,
        },
        Sample {
            name: "bizon_extracted_iterations_total",
            help: "Pages (iterations) read from the source",
            value: Value::Counter(n(&c.iterations_extracted)),
            lane: None,
        },
        Sample {
            name: "bizon_written_records_total",
            help: "Records handed to the destination",
            value: Value::Counter(n(&c.records_loaded)),
            lane: None,
        },
        Sample {
            name: "bizon_written_bytes_total",
            help: "Bytes of records handed to the destination",
            value: Value::Counter(n(&c.bytes_loaded)),
            lane: None,
        },
        Sample {
            name: "bizon_written_iterations_total",
            help: "Pages (iterations) handed to the destination",
            value: Value::Counter(n(&c.iterations_loaded)),
            lane: None,
        },
        Sample {
            name: "bizon_job_records",
            help: "Records of the job written so far, earlier runs included",
            value: Value::Gauge(c.done() as f64),
            lane: None,
        },
        Sample {
            name: "bizon_queue_messages",
            help: "Pages in the in-memory queue",
            value: Value::Gauge(n(&c.queue_messages) as f64),
            lane: None,
        },
        Sample {
            name: "bizon_queue_bytes",
            help: "Bytes in the in-memory queue",
            value: Value::Gauge(n(&c.queue_bytes) as f64),
            lane: None,
        },
        Sample {
            name: "bizon_buffer_bytes",
            help: "Bytes written since the last durable commit",
            value: Value::Gauge(n(&c.buffer_bytes) as f64),
            lane: None,
        },
        Sample {
            name: "bizon_retries_total",
            help: "Attempts restarted from the last commit after a transient error",
            value: Value::Counter(n(&c.retries)),
            lane: None,
        },
        Sample {
            name: "bizon_errors_total",
            help: "Errors (transient and fatal)",
            value: Value::Counter(n(&c.errors)),
            lane: None,
        },
        Sample {
            name: "bizon_dead_letter_records_total",
            help: "Records sent to the dead-letter target",
            value: Value::Counter(n(&c.dead_letters)),
            lane: None,
        },
        Sample {
            name: "bizon_latency_seconds",
            help: "Source extraction to durable commit, per page",
            value: Value::Histogram(&c.latency),
            lane: None,
        },
        Sample {
            name: "bizon_commit_duration_seconds",
            help: "Destination flush plus cursor commit",
            value: Value::Histogram(&c.commits),
            lane: None,
        },
    ];
    if c.lane_known.load(Ordering::Relaxed) {
        out.push(Sample {
            name: "bizon_lane_pages_waiting",
            help: "Pages waiting for this process on its lane: in the in-memory queue, or in the broker for a consumer",
            value: Value::Gauge(n(&c.lane_waiting) as f64),
            lane: Some(n(&c.lane)),
        });
    }
    if c.lanes_unclaimed_known.load(Ordering::Relaxed) {
        out.push(Sample {
            name: "bizon_lanes_unclaimed",
            help: "Unfinished lanes of the job that no consumer holds (consumers wanted)",
            value: Value::Gauge(n(&c.lanes_unclaimed) as f64),
            lane: None,
        });
    }
    if let Some(pct) = c.percent() {
        out.push(Sample {
            name: "bizon_completion_percent",
            help: "Records of the job written, in % of the total to read",
            value: Value::Gauge(pct),
            lane: None,
        });
        if let Some(eta) = c.eta_seconds(started.elapsed()) {
            out.push(Sample {
                name: "bizon_eta_seconds",
                help: "Estimated seconds to completion",
                value: Value::Gauge(eta),
                lane: None,
            });
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
    pub fn start(cfg: &BizonConfig, counters: Arc<Counters>) -> Result<Telemetry, TelemetryError> {
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
                    let endpoint = prometheus::Endpoint::bind(&details, &labels, counters.clone(), started)?;
                    t.linger = Duration::from_secs_f64(details.linger_seconds().max(0.0));
                    let s = stop.clone();
                    t.threads.push(spawn("bizon-prometheus", move || endpoint.serve(&s)));
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
        std::thread::park_timeout(STOP_CHECK.min(until - Instant::now()));
    }
    stop.load(Ordering::SeqCst)
}

trait DetailsExt {
    fn interval(&self) -> Duration;
    fn linger_seconds(&self) -> f64;
}

impl DetailsExt for MonitorDetails {
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS).max(MIN_INTERVAL_SECONDS))
    }
    fn linger_seconds(&self) -> f64 {
        self.linger_seconds.unwrap_or(prometheus::DEFAULT_LINGER_SECONDS)
    }
}
