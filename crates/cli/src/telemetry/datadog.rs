//! DogStatsD (`monitoring.type: datadog`): UDP datagrams to the Datadog agent every interval and
//! at the end of the run.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Instant;

use bizon_core::config::MonitorDetails;
use bizon_engine::progress::Counters;

use super::{samples, Labels, Value};

/// DogStatsD over UDP: counters as deltas since the last push (`|c`), gauges (`|g`), histograms as
/// their `.count` and `.sum` deltas; bizon's `bizon_pipeline.records_synced` and, at the end,
/// `bizon_pipeline.status` too, so bizon's Datadog dashboards keep working.
pub struct DogStatsd {
    socket: UdpSocket,
    tags: String,
    last: BTreeMap<String, f64>,
}

impl DogStatsd {
    pub fn new(d: &MonitorDetails, labels: &Labels) -> Result<Self, String> {
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

    pub fn push(&mut self, c: &Counters, started: Instant, status: Option<&str>) {
        let tags = format!("{},job:{}", self.tags, c.job());
        let mut lines = Vec::new();
        for s in samples(c, started) {
            match s.value {
                Value::Counter(v) => {
                    let d = self.delta(s.name, v as f64);
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
