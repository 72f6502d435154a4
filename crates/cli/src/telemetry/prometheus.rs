//! The Prometheus endpoint (`monitoring.type: prometheus`): `GET /metrics` in the text
//! exposition format (0.0.4), read from the engine's counters at each scrape.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bizon_engine::progress::{Counters, BUCKETS};

use super::{samples, Labels, Value};

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

pub fn serve_prometheus(listener: TcpListener, c: &Counters, labels: &Labels, started: Instant, stop: &AtomicBool) {
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
