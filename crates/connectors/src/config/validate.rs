//! Cross-field rules of a parsed config, each reported at the key that breaks it. What a
//! connector can do comes from its descriptor's capabilities.

use bizon_core::config::yaml::{self, Node};
use bizon_core::config::{RunnerType, SyncMode};
use bizon_core::Json;

use super::{err, BizonConfig};
use crate::registry;

pub(super) fn validate(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    source_rules(cfg)?;
    streams_rules(cfg)?;
    transform_rules(cfg)?;
    destination_rules(cfg)?;
    engine_rules(cfg)?;
    shard_rules(cfg)
}

/// `lease_partitions: true` (a Kafka source read by several processes): each lane is written by
/// the process that leases it, through a backend they all share, without a queue between.
fn shard_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    let src = root.get("source").unwrap_or(root);
    let Some(at) = src.get("lease_partitions").filter(|n| n.as_str() == Some("true")) else { return Ok(()) };
    let path = "source.lease_partitions";
    if cfg.source.sync_mode == SyncMode::Incremental {
        return Err(err(
            "`lease_partitions` reads with `sync_mode: stream` or `full_refresh`; an incremental job's watermark spans \
             every partition (set `sync_mode: stream`: its positions are committed per partition)",
            at,
            path,
        ));
    }
    if !cfg.destination.kind.capabilities.lanes {
        let able: Vec<_> =
            registry::available(registry::DESTINATIONS).filter(|d| d.capabilities.lanes).map(|d| d.name).collect();
        return Err(err(
            format!(
                "`lease_partitions` writes each partition as a lane, which the `{}` destination does not support yet ({} do)",
                cfg.destination.kind.name,
                able.join(", ")
            ),
            at,
            path,
        ));
    }
    if !cfg.engine.backend.spec.shared() {
        return Err(err(
            format!(
                "`lease_partitions` leases partitions through a backend every process shares: sqlite (a file) or postgres, not {}",
                cfg.engine.backend.spec.describe()
            ),
            at,
            path,
        ));
    }
    if cfg.engine.queue.broker.is_some() || cfg.engine.runner.kind == RunnerType::Process {
        return Err(err(
            "`lease_partitions` runs every process as reader and writer of its partitions: use the thread or stream \
             runner without a queue (start more `bizon run` processes to scale out)",
            at,
            path,
        ));
    }
    Ok(())
}

/// Every transform has code: `python` (bizon's) or `jq`, not both.
fn transform_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let list = cfg.root.get("transforms").unwrap_or(&cfg.root);
    let items: &[Node] = match &list.value {
        yaml::Value::Seq(items) => items,
        _ => &[],
    };
    for (i, t) in cfg.transforms.iter().enumerate() {
        let at = items.get(i).unwrap_or(list);
        let code = |c: &Option<String>| c.as_deref().is_some_and(|p| !p.trim().is_empty());
        match (code(&t.python), code(&t.jq)) {
            (false, false) => {
                return Err(err(
                    format!(
                        "transform `{}` has no code: set `python` (its code sees the record as `data`) or `jq` (a jq program over the record)",
                        t.label
                    ),
                    at,
                    &format!("transforms[{i}]"),
                ))
            }
            (true, true) => {
                return Err(err(
                    format!("transform `{}` has both `python` and `jq`: give it one (two transforms run in order)", t.label),
                    at.get("jq").unwrap_or(at),
                    &format!("transforms[{i}].jq"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `jq` programs compile, or the error is placed at its line and column in the config `text`.
pub(super) fn jq_rules(cfg: &BizonConfig, text: &str) -> Result<(), yaml::Error> {
    let list = cfg.root.get("transforms").unwrap_or(&cfg.root);
    for (i, t) in cfg.transforms.iter().enumerate() {
        let Some(code) = t.jq.as_deref() else { continue };
        let node = match &list.value {
            yaml::Value::Seq(items) => items.get(i).and_then(|n| n.get("jq")).unwrap_or(list),
            _ => list,
        };
        let path = format!("transforms[{i}].jq");
        #[cfg(feature = "jq")]
        if let Err(e) = crate::transforms::jq::compile(code) {
            let (line, col) = crate::transforms::jq::place_in_file(text, node.mark, code, e.offset);
            return Err(yaml::Error::new(
                format!("transform `{}`: jq program does not compile: {}", t.label, e.message),
                yaml::Mark { line, col },
                &path,
            ));
        }
        #[cfg(not(feature = "jq"))]
        {
            let _ = (code, text);
            return Err(err(
                format!(
                    "transform `{}` is a jq program, and this build of bizon has no jq (cargo feature `jq`)",
                    t.label
                ),
                node,
                &path,
            ));
        }
    }
    Ok(())
}

fn source_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    let src = root.get("source").unwrap_or(root);
    let at = |key: &str| src.get(key).unwrap_or(src);
    let kind = cfg.source_kind;
    kind.check_stream(&cfg.source.stream).map_err(|m| err(m, at("stream"), "source.stream"))?;
    let mode = cfg.source.sync_mode;
    if mode == SyncMode::Incremental && cfg.source.cursor_field.is_none() && !kind.capabilities.own_position {
        return Err(err(
            "`sync_mode: incremental` needs `cursor_field` (the field whose max value is the watermark, e.g. updated_at)",
            at("sync_mode"),
            "source.sync_mode",
        ));
    }
    if !kind.supports(mode) && !cfg.filters_after_watermark() {
        let able: Vec<_> =
            registry::available(registry::SOURCES).filter(|d| d.supports(mode)).map(|d| d.name).collect();
        return Err(err(
            format!(
                "source `{}` cannot read with `sync_mode: {}`: it supports {} (sources with {}: {})",
                kind.name,
                mode.as_str(),
                kind.modes_text(),
                mode.as_str(),
                able.join(", ")
            ),
            at("sync_mode"),
            "source.sync_mode",
        ));
    }
    Ok(())
}

fn streams_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    if !cfg.streams.is_empty() && cfg.source.sync_mode != SyncMode::Stream {
        let n = root.get("streams").unwrap_or(root);
        return Err(err("`streams` routing requires `source.sync_mode: stream`", n, "streams"));
    }
    for (i, s) in cfg.streams.iter().enumerate() {
        let n = match root.get("streams").map(|l| &l.value) {
            Some(yaml::Value::Seq(items)) => items.get(i).unwrap_or(root),
            _ => root,
        };
        let path = format!("streams[{i}]");
        if s.source.get("topic").and_then(Json::as_str).is_none() {
            return Err(err(format!("stream `{}` needs `source.topic` (the Kafka topic it routes)", s.name), n, &path));
        }
        if s.destination.get("table_id").and_then(Json::as_str).is_none() {
            return Err(err(format!("stream `{}` needs `destination.table_id` (its table or file)", s.name), n, &path));
        }
    }
    Ok(())
}

fn destination_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    let dst = root.get("destination").and_then(|d| d.get("config")).unwrap_or(root);
    let common = &cfg.destination.common;
    if !common.unnest {
        return Ok(());
    }
    // every destination takes `unnest`: the normalization stage (crate::normalize) gives it
    // the typed rows.
    //
    // bizon fills `record_schemas` from the `streams:` entries' `record_schema`: their columns
    // are checked where the routes are built (stream_target).
    if cfg.streams.iter().any(|s| s.destination.get("record_schema").is_some()) {
        for s in &cfg.streams {
            if let Err(e) = super::stream_target(s, cfg.destination.config.as_ref()) {
                return Err(err(e.to_string(), root.get("streams").unwrap_or(root), "streams"));
            }
        }
        return Ok(());
    }
    if common.record_schemas.as_ref().is_none_or(Vec::is_empty) {
        return Err(err(
            "`unnest: true` needs at least one entry in `record_schemas`",
            dst.get("unnest").unwrap_or(dst),
            "destination.config.unnest",
        ));
    }
    let id = cfg.destination.destination_id(&cfg.source.stream);
    let schemas = dst.get("record_schemas").unwrap_or(dst);
    match cfg.destination.typed_columns(&cfg.source.stream) {
        None => Err(err(
            format!("`unnest: true` needs a `record_schemas` entry with `destination_id: {id}`"),
            schemas,
            "destination.config.record_schemas",
        )),
        Some(Err(e)) => Err(err(e.to_string(), schemas, "destination.config.record_schemas")),
        Some(Ok(_)) => Ok(()),
    }
}

fn engine_rules(cfg: &BizonConfig) -> Result<(), yaml::Error> {
    let root = &cfg.root;
    let engine = root.get("engine").unwrap_or(root);
    let lanes = cfg.engine.queue.broker.as_ref().map_or(1, |b| b.lanes());
    if lanes > 1 && !cfg.destination.kind.capabilities.lanes {
        let q = engine.get("queue").unwrap_or(root);
        let at = q.get("config").and_then(|c| c.get("lanes")).unwrap_or(q);
        let able: Vec<_> =
            registry::available(registry::DESTINATIONS).filter(|d| d.capabilities.lanes).map(|d| d.name).collect();
        return Err(err(
            format!(
                "`lanes: {lanes}` splits the job over several consumers, which the `{}` destination does not support yet \
                 ({} do)",
                cfg.destination.kind.name,
                able.join(", ")
            ),
            at,
            "engine.queue.config.lanes",
        ));
    }
    if cfg.engine.runner.kind == RunnerType::Process {
        let n: &Node = engine.get("runner").and_then(|r| r.get("type")).unwrap_or(engine);
        // with the in-memory queue it runs as `thread` (a warning from engine::parse)
        if cfg.engine.queue.broker.is_some() && !cfg.engine.backend.spec.shared() {
            return Err(err(
                format!(
                    "runner `process` needs a backend both processes share: sqlite (a file) or postgres, not {}",
                    cfg.engine.backend.spec.describe()
                ),
                n,
                "engine.runner.type",
            ));
        }
    }
    Ok(())
}
