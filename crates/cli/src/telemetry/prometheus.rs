//! The Prometheus endpoint (`monitoring.type: prometheus`): `GET /metrics` in the text
//! exposition format (0.0.4). A `prometheus-client` collector reads the engine's counters at each
//! scrape (the pipeline never touches the registry), and `tiny_http` serves it. The same address
//! answers Kubernetes' probes: `GET /healthz` (200 while the process serves) and `GET /readyz`
//! (200 once the run has its job, 503 before: config loaded, backend reached, lock taken).

use std::borrow::Cow;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::config::MonitorDetails;
use bizon_engine::progress::{Counters, Histogram, BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tiny_http::{Header, Response, Server};

use super::{samples, Labels, TelemetryError, Value};

/// Where `/metrics` is served when `monitoring.config.address` is not set: loopback only, on the
/// port the OpenTelemetry Prometheus exporter uses.
const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";
/// Seconds the endpoint keeps serving after the run when `linger_seconds` is not set: none.
pub const DEFAULT_LINGER_SECONDS: f64 = 0.0;
/// How often the serving thread looks at the stop flag while no request comes.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The run's metrics, read from the engine's lock-free counters at each scrape.
struct RunCollector {
    counters: Arc<Counters>,
    started: Instant,
}

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCollector").finish_non_exhaustive()
    }
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for s in samples(&self.counters, self.started) {
            match s.value {
                Value::Counter(v) => {
                    // the encoder appends `_total` to a counter's name
                    let name = s.name.strip_suffix("_total").unwrap_or(s.name);
                    let counter = ConstCounter::new(v);
                    counter.encode(encoder.encode_descriptor(name, s.help, None, MetricType::Counter)?)?;
                }
                Value::Gauge(v) => {
                    let gauge = ConstGauge::new(v);
                    let mut metric = encoder.encode_descriptor(s.name, s.help, None, MetricType::Gauge)?;
                    match s.lane {
                        Some(lane) => gauge.encode(metric.encode_family(&[("lane", lane.to_string())])?)?,
                        None => gauge.encode(metric)?,
                    }
                }
                Value::Histogram(h) => {
                    let (buckets, count) = buckets(h);
                    encoder
                        .encode_descriptor(s.name, s.help, None, MetricType::Histogram)?
                        .encode_histogram::<NoLabelSet>(h.sum_seconds(), count, &buckets, None)?;
                }
            }
        }
        Ok(())
    }
}

/// Per-bucket counts (upper bound, observations in that bucket; the last bound is +Inf) and the
/// total, from one snapshot so `_count` always equals the `+Inf` bucket.
fn buckets(h: &Histogram) -> (Vec<(f64, u64)>, u64) {
    let mut prev = 0;
    let buckets = BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(h.cumulative())
        .map(|(bound, cumulative)| {
            let n = cumulative - prev;
            prev = cumulative;
            (bound, n)
        })
        .collect();
    (buckets, prev)
}

/// The run's registry: every metric labelled `pipeline`, `source`, `stream`, `destination` (bounded
/// values; the job id stays in logs and spans, never in a label).
fn registry(labels: &Labels, counters: Arc<Counters>, started: Instant) -> Registry {
    let constant = [
        ("pipeline", &labels.pipeline),
        ("source", &labels.source),
        ("stream", &labels.stream),
        ("destination", &labels.destination),
    ]
    .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v.clone())));
    let mut registry = Registry::with_labels(constant.into_iter());
    registry.register_collector(Box::new(RunCollector { counters, started }));
    registry
}

/// The text exposition of every metric now.
pub fn text(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// A bound `/metrics` endpoint, not yet serving.
pub struct Endpoint {
    server: Server,
    registry: Registry,
    counters: Arc<Counters>,
}

impl Endpoint {
    /// Listens on `monitoring.config.address` now, so a taken port fails the run at start.
    pub fn bind(
        d: &MonitorDetails,
        labels: &Labels,
        counters: Arc<Counters>,
        started: Instant,
    ) -> Result<Self, TelemetryError> {
        let address = d.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
        let listener = TcpListener::bind(address)
            .map_err(|source| TelemetryError::Listen { address: address.to_owned(), source })?;
        let local = listener.local_addr().map_or_else(|_| address.to_owned(), |a| a.to_string());
        let server = Server::from_listener(listener, None)
            .map_err(|source| TelemetryError::Serve { local: local.clone(), source })?;
        tracing::info!(address = %local, "serving metrics on /metrics");
        Ok(Endpoint { server, registry: registry(labels, counters.clone(), started), counters })
    }

    /// Answers scrapes until `stop`; the listener closes when this returns.
    pub fn serve(self, stop: &AtomicBool) {
        let content_type = Header::from_bytes("Content-Type", prometheus_text::CONTENT_TYPE).ok();
        while !stop.load(Ordering::SeqCst) {
            let request = match self.server.recv_timeout(STOP_POLL) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics endpoint: a connection failed");
                    continue;
                }
            };
            let path = request.url().split('?').next().unwrap_or_default();
            let response = match path {
                "/metrics" => match text(&self.registry) {
                    Ok(body) => {
                        let r = Response::from_string(body);
                        match &content_type {
                            Some(h) => r.with_header(h.clone()),
                            None => r,
                        }
                    }
                    Err(_) => Response::from_string("cannot encode the metrics\n").with_status_code(500),
                },
                "/healthz" => Response::from_string("ok\n"),
                "/readyz" if self.counters.job().is_empty() => {
                    Response::from_string("starting: no job yet\n").with_status_code(503)
                }
                "/readyz" => Response::from_string(format!("ready: job {}\n", self.counters.job())),
                _ => Response::from_string("metrics are on /metrics, probes on /healthz and /readyz\n")
                    .with_status_code(404),
            };
            let _ = request.respond(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_keeps_bizons_names_types_and_labels_and_escapes_label_values() {
        let counters = Arc::new(Counters::default());
        counters.records_loaded.store(42, Ordering::Relaxed);
        counters.latency.observe(0.003);
        counters.latency.observe(2.0);
        counters.lane.store(3, Ordering::Relaxed);
        counters.lane_waiting.store(7, Ordering::Relaxed);
        counters.lane_known.store(true, Ordering::Relaxed);
        let labels = Labels {
            pipeline: "a \"quoted\"\\name\n".into(),
            source: "generator".into(),
            stream: "records".into(),
            destination: "file".into(),
        };
        let body = text(&registry(&labels, counters, Instant::now())).unwrap();
        let base = r#"pipeline="a \"quoted\"\\name\n",source="generator",stream="records",destination="file""#;
        assert!(body.contains("# TYPE bizon_written_records_total counter\n"), "{body}");
        assert!(body.contains(&format!("bizon_written_records_total{{{base}}} 42\n")), "{body}");
        assert!(body.contains("# TYPE bizon_latency_seconds histogram\n"), "{body}");
        assert!(body.contains(&format!("bizon_latency_seconds_bucket{{{base},le=\"0.005\"}} 1\n")), "{body}");
        assert!(body.contains(&format!("bizon_latency_seconds_bucket{{{base},le=\"+Inf\"}} 2\n")), "{body}");
        assert!(body.contains(&format!("bizon_latency_seconds_count{{{base}}} 2\n")), "{body}");
        assert!(body.contains("# TYPE bizon_queue_bytes gauge\n"), "{body}");
        assert!(!body.contains("job="), "no job label: {body}");
        assert!(body.contains("# TYPE bizon_lane_pages_waiting gauge\n"), "{body}");
        assert!(body.contains(&format!("bizon_lane_pages_waiting{{{base},lane=\"3\"}} 7.0\n")), "{body}");
    }
}
