//! What the build offers and what a config says: `source list`, `destination list`,
//! `stream list`, `stream reset`, `config validate` and `config show`. Listings read the
//! registry's descriptors.

use std::path::PathBuf;

use anyhow::anyhow;
use bizon_connectors::registry;
use bizon_core::config::masked_json;

use crate::args::ConfigArgs;
use crate::load::{load, open_backend};
use crate::{failed, usage, Failure};

pub fn config_validate(a: &ConfigArgs) -> Result<(), Failure> {
    let cfg = load(a)?;
    println!(
        "{}: valid (pipeline `{}`: {} / {} → {}, {})",
        a.config.display(),
        cfg.name,
        cfg.source_kind.name,
        cfg.source.stream,
        cfg.destination.kind.name,
        cfg.source.sync_mode.as_str()
    );
    Ok(())
}

pub fn config_show(a: &ConfigArgs) -> Result<(), Failure> {
    let cfg = load(a)?;
    let json = serde_json::to_string_pretty(&masked_json(&cfg.root)).map_err(failed)?;
    println!("{json}");
    Ok(())
}

/// A list of names, or `-`.
fn or_dash(names: Vec<&str>) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

/// The features this build left out, for the listings' footers.
fn left_out<D>(list: &'static [registry::Entry<D>]) -> Vec<String> {
    list.iter()
        .filter(|e| e.descriptor.is_none())
        .map(|e| format!("{} (feature `{}`)", e.name, e.feature.unwrap_or("default")))
        .collect()
}

pub fn source_list() {
    println!("Available sources:");
    for d in registry::available(registry::SOURCES) {
        let streams = if d.streams.is_empty() { "(tables)".to_owned() } else { d.streams.join(", ") };
        let mut notes = Vec::new();
        if d.capabilities.dead_letters {
            notes.push("dead letters");
        }
        if !d.capabilities.network {
            notes.push("offline");
        }
        println!(
            "  {:<10} streams: {:<20} modes: {:<34} {}{}",
            d.name,
            streams,
            d.modes_text(),
            d.description,
            if notes.is_empty() { String::new() } else { format!(" [{}]", notes.join(", ")) }
        );
    }
    let out = left_out(registry::SOURCES);
    if !out.is_empty() {
        println!("Not in this build: {}", out.join(", "));
    }
}

pub fn destination_list() {
    println!("Available destinations:");
    for d in registry::available(registry::DESTINATIONS) {
        let c = d.capabilities;
        let mut can = Vec::new();
        if c.transactional {
            can.push("transactional");
        }
        if c.typed_columns {
            can.push("typed columns");
        }
        if c.lanes {
            can.push("lanes");
        }
        if c.dead_letters {
            can.push("dead letters");
        }
        println!("  {:<8} {:<22} {} [{}]", d.name, c.guarantee.as_str(), d.description, or_dash(can));
    }
    let out = left_out(registry::DESTINATIONS);
    if !out.is_empty() {
        println!("Not in this build: {}", out.join(", "));
    }
}

pub fn stream_list(source: &str, config: Option<PathBuf>, env_file: Option<PathBuf>) -> Result<(), Failure> {
    let kind = registry::find(registry::SOURCES, registry::PLANNED_SOURCES, source)
        .map_err(|m| usage(anyhow!(registry::missing_message("source", source, registry::SOURCES, &m))))?;
    let modes = kind.modes_text();
    let streams: Vec<String> = if kind.streams.is_empty() {
        let Some(config) = config else {
            return Err(usage(anyhow!(
                "the streams of `{source}` are the tables of a connection: pass --config with a pipeline whose source holds it"
            )));
        };
        let cfg = load(&ConfigArgs { config, env_file })?;
        if cfg.source_kind.name != source {
            return Err(usage(anyhow!("the config's source is `{}`, not `{source}`", cfg.source_kind.name)));
        }
        cfg.source_config.list_streams().map_err(failed)?
    } else {
        kind.streams.iter().map(|s| s.to_string()).collect()
    };
    println!("Available streams for {source}:");
    for s in streams {
        println!("  {s:<12} ({modes})");
    }
    Ok(())
}

pub fn stream_reset(a: &ConfigArgs) -> Result<(), Failure> {
    let cfg = load(a)?;
    let mut backend = open_backend(&cfg)?;
    let key = cfg.stream_key();
    let n = backend.reset_stream(&key).map_err(failed)?;
    println!(
        "stream `{}` of pipeline `{}` reset: watermark forgotten, {n} unfinished job(s) canceled; the next run re-reads everything",
        key.stream, key.pipeline
    );
    Ok(())
}
