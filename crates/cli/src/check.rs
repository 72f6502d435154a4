//! `bizon check CONFIG`: reach every component of a pipeline without moving data. The source
//! reads its first page and drops it; the destination, queue and backend are connected to and
//! looked at (nothing is written, published or consumed); a Prometheus address is bound and
//! released. One line per component, ok or the error with its fix; exit 1 when any failed.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bizon_connectors::config::BizonConfig;
use bizon_core::config::MonitorType;
use bizon_core::{Json, ReadContext};

use crate::args::CheckArgs;
use crate::load::load;
use crate::{failed, Failure};

/// One component's verdict: ok with what was found, or the error.
struct Line {
    component: &'static str,
    what: String,
    /// Where its keys are in the config, for the fix.
    section: &'static str,
    result: Result<String, String>,
}

pub fn check(args: &CheckArgs) -> Result<(), Failure> {
    let cfg = load(&args.config)?;
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let mut lines = Vec::new();

    let c = cfg.clone();
    lines.push(Line {
        component: "source",
        what: format!("{} stream `{}`", cfg.source_kind.name, cfg.source.stream),
        section: "source",
        result: within(timeout, move || first_page(&c)),
    });
    if !cfg.transforms.is_empty() {
        let c = cfg.clone();
        lines.push(Line {
            component: "transforms",
            what: format!("{} step(s)", cfg.transforms.len()),
            section: "transforms",
            result: within(timeout, move || {
                c.build_destination().map(|_| String::from("compiled and started")).map_err(|e| e.to_string())
            }),
        });
    }
    let (c, id) = (cfg.clone(), cfg.destination.destination_id(&cfg.source.stream));
    lines.push(Line {
        component: "destination",
        what: format!("{} `{id}`", cfg.destination.kind.name),
        section: "destination.config",
        result: within(timeout, move || c.destination.config.check(&id).map_err(|e| e.to_string())),
    });
    let (spec, key) = (cfg.engine.backend.spec.clone(), cfg.stream_key());
    lines.push(Line {
        component: "backend",
        what: spec.describe(),
        section: "engine.backend",
        result: within(timeout, move || spec.check(&key).map_err(|e| e.to_string())),
    });
    lines.push(match cfg.engine.queue.broker.clone() {
        Some(broker) => Line {
            component: "queue",
            what: format!("{} lane(s)", broker.lanes()),
            section: "engine.queue",
            result: within(timeout, move || broker.check().map_err(|e| e.to_string())),
        },
        None => Line {
            component: "queue",
            what: String::from("memory"),
            section: "engine.queue",
            result: Ok(String::from("in the process; nothing to connect to")),
        },
    });
    if let Some(line) = monitoring(&cfg) {
        lines.push(line);
    }

    let width = lines.iter().map(|l| l.what.len()).max().unwrap_or(0);
    let mut errors = 0;
    for l in &lines {
        let verdict = match &l.result {
            Ok(found) => format!("ok: {found}"),
            Err(e) => {
                errors += 1;
                format!("error: {e} — fix: {}", fix(l.section, e))
            }
        };
        println!("{:<11} {:<width$}  {}", l.component, l.what, bizon_core::redact::redact(&verdict));
    }
    match errors {
        0 => Ok(()),
        n => Err(failed(anyhow!("{n} of {} components failed the check", lines.len()))),
    }
}

/// The first page of the stream, read as a run reads it and dropped.
fn first_page(cfg: &BizonConfig) -> Result<String, String> {
    let mut source = cfg.build_source();
    let ctx =
        ReadContext { sync_mode: cfg.source.sync_mode, watermark: None, cursor_field: cfg.source.cursor_field.clone() };
    let started = Instant::now();
    let page = source.get(&Json::Null, &ctx).map_err(|e| e.to_string())?;
    let more = match &page.next {
        Json::Null => "; the stream has no more pages",
        Json::Object(m) if m.is_empty() => "; the stream has no more pages",
        _ => "",
    };
    Ok(format!(
        "read the first page: {} record(s) in {} ms{more} (dropped)",
        page.records.len(),
        started.elapsed().as_millis()
    ))
}

/// A Prometheus endpoint's address is free to bind (the others push, and are reached at run time).
fn monitoring(cfg: &BizonConfig) -> Option<Line> {
    let m = cfg.monitoring.as_ref()?;
    if !matches!(m.kind, MonitorType::Prometheus) {
        return None;
    }
    let address = m.config.as_ref().and_then(|d| d.address.clone()).unwrap_or_else(|| "127.0.0.1:9464".into());
    let result = std::net::TcpListener::bind(&address)
        .map(|_| format!("{address} can be listened on"))
        .map_err(|e| format!("cannot listen on {address}: {e}"));
    Some(Line {
        component: "monitoring",
        what: String::from("prometheus"),
        section: "monitoring.config.address",
        result,
    })
}

/// `f` on its own thread, given `timeout` to answer (a component that hangs is an error; its
/// thread is left behind, and ends with the process).
fn within(timeout: Duration, f: impl FnOnce() -> Result<String, String> + Send + 'static) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(format!("no answer within {:.0} s (--timeout raises the limit)", timeout.as_secs_f64()))
    })
}

/// What to do about an error, read from its message.
fn fix(section: &str, error: &str) -> String {
    let e = error.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if any(&["grant ", "create_dataset", "add partitions", "--timeout"]) {
        String::from("as the message says")
    } else if any(&["lookup address", "name or service not known", "failed to resolve", "dns"]) {
        format!("check the host name under `{section}`")
    } else if any(&["refused", "cannot connect", "no answer", "timed out", "unreachable", "cannot reach"]) {
        format!("start the service, or correct the host and port under `{section}`")
    } else if any(&[
        "password",
        "authentication",
        "401",
        "403",
        "unauthorized",
        "forbidden",
        "access_refused",
        "invalid_grant",
        "credentials",
    ]) {
        format!("check the credentials under `{section}` (or the variable or secret they come from)")
    } else if any(&["does not exist", "not found", "404", "no such file"]) {
        format!("create it, or correct the name under `{section}`")
    } else if any(&["not an executable"]) {
        format!("install the program, or give its full path under `{section}`")
    } else if any(&["permission denied", "read-only", "not a directory"]) {
        format!("choose a path this user can write under `{section}`")
    } else {
        format!("see the error; `bizon config show` prints the resolved `{section}`")
    }
}

#[cfg(test)]
mod tests {
    use super::fix;

    #[test]
    fn fixes_name_the_section_and_the_likely_cause() {
        assert_eq!(
            fix("engine.queue", "rabbitmq 127.0.0.1:1 queue `q`: cannot connect: Connection refused (os error 111)"),
            "start the service, or correct the host and port under `engine.queue`"
        );
        assert!(fix("destination.config", "password authentication failed for user \"x\"").contains("credentials"));
        assert!(fix("source", "HTTP 404 Not Found").starts_with("create it"));
        assert!(fix("destination.config", "`nope` is not an executable file on PATH").starts_with("install"));
        assert_eq!(
            fix("x", "who may not create tables in schema `s` (GRANT CREATE ON SCHEMA s TO u)"),
            "as the message says"
        );
    }
}
