//! DogStatsD (`monitoring.type: datadog`): UDP datagrams to the Datadog agent every interval and
//! at the end of the run, sent through `cadence`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Instant;

use bizon_core::config::MonitorDetails;
use bizon_engine::progress::Counters;
use cadence::ext::{MetricValue, ToCounterValue};
use cadence::{Counted, Gauged, MetricResult, StatsdClient, UdpMetricSink};

use super::{samples, Labels, TelemetryError, Value};

/// The agent's DogStatsD port when `datadog_agent_port` is not set (the agent's default).
const DEFAULT_AGENT_PORT: u16 = cadence::DEFAULT_PORT;
/// bizon's own counter of records written, kept so bizon's Datadog dashboards keep working.
const RECORDS_SYNCED: &str = "bizon_pipeline.records_synced";
/// bizon's own end-of-run counter, tagged `pipeline_status`.
const STATUS: &str = "bizon_pipeline.status";

/// DogStatsD over UDP, one datagram per metric: counters as deltas since the last push (`|c`),
/// gauges (`|g`), histograms as their `.count` and `.sum` deltas (`|c`); bizon's
/// `bizon_pipeline.records_synced` and, at the end, `bizon_pipeline.status` too. Tags: bizon's
/// `pipeline_name`, `pipeline_source`, `pipeline_stream`, `pipeline_destination`, then the
/// configured `tags` (no job id: series stay bounded).
pub struct DogStatsd {
    client: StatsdClient,
    /// The value of each counter (and histogram count) at the last push.
    last_counts: BTreeMap<&'static str, u64>,
    /// The sum of each histogram at the last push.
    last_sums: BTreeMap<&'static str, f64>,
}

/// A fractional counter increment (a histogram's sum of seconds): cadence's counters take
/// integers, DogStatsD takes any number.
struct FloatCount(f64);

impl ToCounterValue for FloatCount {
    fn try_to_value(self) -> MetricResult<MetricValue> {
        Ok(MetricValue::Float(self.0))
    }
}

/// A tag key or value as a DogStatsD line can carry it: `|` separates the line's sections, `#`
/// opens the tags and `,` separates them, so each of those (and any control character, which would
/// end the datagram's line) becomes `_`, as the agent's own tag normalization does. A key also
/// loses `:`; a value keeps it (the agent splits a tag at its first `:`).
fn tag_part(s: &str, is_key: bool) -> String {
    s.chars()
        .map(|c| match c {
            ',' | '|' | '#' => '_',
            ':' if is_key => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The agent's address: the host from `datadog_host_env_var` (when that variable is set) or
/// `datadog_agent_host`, and the port.
fn agent_address(d: &MonitorDetails) -> Result<SocketAddr, TelemetryError> {
    let host = match (&d.datadog_host_env_var, &d.datadog_agent_host) {
        (Some(var), _) if std::env::var(var).is_ok_and(|v| !v.is_empty()) => std::env::var(var).unwrap_or_default(),
        (_, Some(h)) => h.clone(),
        (Some(var), None) => return Err(TelemetryError::AgentHostVarUnset { var: var.clone() }),
        (None, None) => return Err(TelemetryError::NoAgentHost),
    };
    let port = d.datadog_agent_port.unwrap_or(DEFAULT_AGENT_PORT);
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|source| TelemetryError::AgentUnresolved { host: host.clone(), port, source })?
        .next()
        .ok_or(TelemetryError::AgentNoAddress { host, port })
}

impl DogStatsd {
    pub fn new(d: &MonitorDetails, labels: &Labels) -> Result<Self, TelemetryError> {
        let agent = agent_address(d)?;
        // an ephemeral port of the agent address's family
        let local: SocketAddr = if agent.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(local).map_err(TelemetryError::UdpSocket)?;
        let sink = UdpMetricSink::from(agent, socket).map_err(|source| TelemetryError::AgentSink { agent, source })?;
        let tags = [
            ("pipeline_name", &labels.pipeline),
            ("pipeline_source", &labels.source),
            ("pipeline_stream", &labels.stream),
            ("pipeline_destination", &labels.destination),
        ]
        .into_iter()
        .chain(d.tags.iter().flatten().map(|(k, v)| (k.as_str(), v)));
        let client = tags
            .fold(StatsdClient::builder("", sink), |b, (k, v)| b.with_tag(tag_part(k, true), tag_part(v, false)))
            .with_error_handler(|e| tracing::debug!(error = %e, "a DogStatsD datagram was not sent"))
            .build();
        Ok(DogStatsd { client, last_counts: BTreeMap::new(), last_sums: BTreeMap::new() })
    }

    fn count_delta(&mut self, key: &'static str, now: u64) -> u64 {
        now.saturating_sub(self.last_counts.insert(key, now).unwrap_or(0))
    }

    fn sum_delta(&mut self, key: &'static str, now: f64) -> f64 {
        now - self.last_sums.insert(key, now).unwrap_or(0.0)
    }

    /// One push: every metric now; with `status` (the run is over), bizon's status counter too.
    pub fn push(&mut self, c: &Counters, started: Instant, status: Option<&str>) {
        for s in samples(c, started) {
            match s.value {
                Value::Counter(v) => {
                    let d = self.count_delta(s.name, v);
                    self.client.count_with_tags(s.name, d).send();
                    if s.name == "bizon_written_records_total" {
                        self.client.count_with_tags(RECORDS_SYNCED, d).send();
                    }
                }
                Value::Gauge(v) => match s.lane {
                    Some(lane) => self.client.gauge_with_tags(s.name, v).with_tag("lane", &lane.to_string()).send(),
                    None => self.client.gauge_with_tags(s.name, v).send(),
                },
                Value::Histogram(h) => {
                    let count = self.count_delta(s.name, h.count());
                    let sum = self.sum_delta(s.name, h.sum_seconds());
                    self.client.count_with_tags(&format!("{}.count", s.name), count).send();
                    self.client.count_with_tags(&format!("{}.sum", s.name), FloatCount(sum)).send();
                }
            }
        }
        if let Some(status) = status {
            self.client.count_with_tags(STATUS, 1u64).with_tag("pipeline_status", &tag_part(status, false)).send();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tag_part;

    #[test]
    fn separators_in_tags_become_underscores_and_a_value_keeps_its_colons() {
        assert_eq!(tag_part("a,b|c#d:e\nf", false), "a_b_c_d:e_f");
        assert_eq!(tag_part("team:x", true), "team_x");
        assert_eq!(tag_part("plain-name_1.2/3", false), "plain-name_1.2/3");
    }
}
