//! OTLP over HTTP with protobuf bodies (`POST {endpoint}/v1/metrics`, `/v1/traces`), the
//! collector's default receiver (port 4318). The message types come from `opentelemetry-proto`;
//! the requests are plain blocking HTTP (ureq), no SDK or async runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bizon_core::config::MonitorDetails;
use bizon_engine::progress::{Counters, BUCKETS};
use bizon_engine::spans::{SpanRecord, SpanSink};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::{samples, Labels, TelemetryError, Value};

/// The collector's base URL when `monitoring.config.endpoint` is not set: a local collector's
/// OTLP/HTTP receiver on its default port.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
/// How long one export request may take, connection included, before it is given up (the next
/// push sends the cumulative values again; spans of a failed request are lost).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Spans kept between pushes at most (memory stays bounded); beyond, new ones are counted as
/// dropped and reported.
const MAX_SPANS: usize = 20_000;
/// Spans per export request.
const SPANS_PER_REQUEST: usize = 2_000;

pub struct Exporter {
    endpoint: String,
    headers: Vec<(String, String)>,
    resource: Resource,
    counters: Arc<Counters>,
    agent: ureq::Agent,
    spans: Mutex<Vec<SpanRecord>>,
    dropped: AtomicU64,
    started_nanos: u64,
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    (bizon_core::time::now_micros().max(0) as u64) * 1000
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for b in *p {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl Exporter {
    pub fn new(d: &MonitorDetails, labels: &Labels, counters: Arc<Counters>) -> Result<Self, TelemetryError> {
        let endpoint = d.endpoint.clone().unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(TelemetryError::OtlpEndpoint { endpoint });
        }
        let mut attributes = vec![
            kv("service.name", "bizon"),
            kv("bizon.pipeline", &labels.pipeline),
            kv("bizon.source", &labels.source),
            kv("bizon.stream", &labels.stream),
            kv("bizon.destination", &labels.destination),
        ];
        attributes.extend(d.tags.iter().flatten().map(|(k, v)| kv(k, v)));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(EXPORT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Exporter {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            headers: d.headers.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
            resource: Resource { attributes, ..Default::default() },
            counters,
            agent,
            spans: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            started_nanos: now_nanos(),
        })
    }

    fn post(&self, path: &str, body: Vec<u8>) {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self.agent.post(&url).header("Content-Type", "application/x-protobuf");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send(&body[..]) {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(url = %url, status = r.status().as_u16(), "the OTLP collector refused the export"),
            Err(e) => tracing::warn!(url = %url, error = %e, "cannot export to the OTLP collector"),
        }
    }

    /// Every metric now, cumulative since the run started. The points carry no attributes but a
    /// per-lane series' `lane`: the resource names the pipeline, and the job id (unbounded) stays
    /// on the spans.
    pub fn push_metrics(&self, started: Instant) {
        let c = &self.counters;
        let (start, now) = (self.started_nanos, now_nanos());
        let point = |v: f64| NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let metrics = samples(c, started)
            .into_iter()
            .map(|s| {
                let data = match s.value {
                    Value::Counter(v) => metric::Data::Sum(Sum {
                        data_points: vec![point(v as f64)],
                        aggregation_temporality: cumulative,
                        is_monotonic: true,
                    }),
                    Value::Gauge(v) => {
                        let mut p = point(v);
                        p.attributes.extend(s.lane.map(|l| kv("lane", l.to_string())));
                        metric::Data::Gauge(Gauge { data_points: vec![p] })
                    }
                    Value::Histogram(h) => {
                        let cumulative_counts = h.cumulative();
                        let mut prev = 0;
                        let bucket_counts = cumulative_counts
                            .iter()
                            .map(|c| {
                                let n = c - prev;
                                prev = *c;
                                n
                            })
                            .collect();
                        metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count: h.count(),
                                sum: Some(h.sum_seconds()),
                                bucket_counts,
                                explicit_bounds: BUCKETS.to_vec(),
                                ..Default::default()
                            }],
                            aggregation_temporality: cumulative,
                        })
                    }
                };
                Metric {
                    name: s.name.to_owned(),
                    description: s.help.to_owned(),
                    data: Some(data),
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: "bizon".into(), ..Default::default() }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.post("/v1/metrics", request.encode_to_vec());
    }

    /// The spans recorded since the last push: one trace per iteration, a span per step.
    pub fn push_spans(&self) {
        let batch = std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "spans dropped: more than {MAX_SPANS} between two OTLP pushes");
        }
        if batch.is_empty() {
            return;
        }
        let job = self.counters.job();
        for chunk in batch.chunks(SPANS_PER_REQUEST) {
            self.export_spans(&job, chunk);
        }
    }

    fn export_spans(&self, job: &str, batch: &[SpanRecord]) {
        let spans = batch
            .iter()
            .map(|s| {
                let it = s.iteration.to_le_bytes();
                let trace =
                    [fnv(&[job.as_bytes(), &it]).to_be_bytes(), fnv(&[&it, job.as_bytes()]).to_be_bytes()].concat();
                Span {
                    trace_id: trace,
                    span_id: fnv(&[job.as_bytes(), &it, s.name.as_bytes()]).to_be_bytes().to_vec(),
                    name: s.name.to_owned(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: (s.start_micros.max(0) as u64) * 1000,
                    end_time_unix_nano: (s.end_micros.max(0) as u64) * 1000,
                    attributes: vec![
                        kv("bizon.job_id", job),
                        kv_int("bizon.iteration", s.iteration),
                        kv_int("bizon.records", s.records as i64),
                    ],
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "bizon".into(), ..Default::default() }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.post("/v1/traces", request.encode_to_vec());
    }
}

impl SpanSink for Exporter {
    fn record(&self, span: SpanRecord) {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() < MAX_SPANS {
            spans.push(span);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
