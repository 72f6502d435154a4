//! What the build offers and what a config says: `source list`, `destination list`,
//! `stream list`, `stream reset`, `config validate` and `config show`. Listings read the
//! registry's descriptors.

use std::path::PathBuf;

use anyhow::anyhow;
use bizon_connectors::registry;
use bizon_core::config::{masked_json, SyncMode};
use bizon_core::JobStatus;

use crate::args::{ConfigArgs, ResetArgs, ValidateArgs};
use crate::load::{load, load_with, open_backend};
use crate::{failed, usage, Failure};

pub fn config_validate(v: &ValidateArgs) -> Result<(), Failure> {
    let a = &v.config;
    let cfg = load_with(a, v.skip_references)?;
    if cfg.unchecked_references > 0 {
        println!(
            "{} field(s) hold an unresolved reference and were checked with a stand-in, not their value",
            cfg.unchecked_references
        );
    }
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

pub fn config_schema() -> Result<(), Failure> {
    let schema = bizon_connectors::config::schema::config_schema();
    println!("{}", serde_json::to_string_pretty(&schema).map_err(failed)?);
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
    // `unnest` is the engine's stage, not a capability: say so where the capabilities are listed
    println!(
        "Every destination takes `unnest` + `record_schemas` (rows flattened and cast to the column types before \
         it); \"typed columns\": it also creates its table's columns with those types."
    );
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
                "the streams of `{source}` come from its configuration (the tables of a connection, or the \
                 `streams` a `rest` source declares): pass --config with a pipeline using it"
            )));
        };
        let cfg = load(&ConfigArgs { config, env_file, strict: false, custom_source: None })?;
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

/// `stream reset`: bizon's deferred reset (a request the next run takes up), `--cancel` to
/// withdraw it, `--now` to also forget the state at once.
pub fn stream_reset(a: &ResetArgs) -> Result<(), Failure> {
    let cfg = load(&a.config)?;
    let mut key = cfg.stream_key();
    if let Some(stream) = &a.stream {
        cfg.source_kind.check_stream(stream).map_err(|m| usage(anyhow!("--stream: {m}")))?;
        key.stream = stream.clone();
    }
    let incremental = cfg.source.sync_mode == SyncMode::Incremental;
    if !incremental && !a.now {
        return Err(usage(anyhow!(
            "only incremental streams can be reset, but sync_mode is `{mode}`: a `{mode}` stream already rebuilds \
             its target on every run (`--now` cancels its unfinished jobs)",
            mode = cfg.source.sync_mode.as_str()
        )));
    }
    let mut backend = open_backend(&cfg)?;
    let label = format!("stream `{}` of pipeline `{}`", key.stream, key.pipeline);
    if cfg.engine.backend.spec.describe().starts_with("sqlite") {
        say!(
            "warning: the sqlite backend is a local file ({}): only runs using that file see this",
            cfg.engine.backend.spec.describe()
        );
    }
    if a.cancel {
        let n = backend.cancel_resets(&key).map_err(failed)?;
        if n == 0 {
            println!("no pending reset request for {label}");
        } else {
            println!("{label}: {n} pending reset request(s) canceled");
        }
        return Ok(());
    }
    if a.now {
        // not under a running job: taking the pipeline's lock names it if there is one
        let _lock = backend.lock_pipeline(&key).map_err(failed)?;
        let n = backend.reset_stream(&key).map_err(failed)?;
        println!("{label} reset now: watermark forgotten, {n} unfinished job(s) canceled");
        if !incremental {
            return Ok(());
        }
    }
    if !backend.pending_resets(&key).map_err(failed)?.is_empty() {
        println!("a reset is already pending for {label}: nothing to add");
        return Ok(());
    }
    let ran = backend
        .list_jobs(&key.pipeline, 1000)
        .map_err(failed)?
        .iter()
        .any(|(j, _)| j.key == key && j.status == JobStatus::Succeeded);
    if !ran && !a.now {
        say!(
            "warning: {label} has no successful run yet: check the stream name; a stream that never ran \
             already reads everything on its next run"
        );
    }
    backend.request_reset(&key, &bizon_engine::pipeline::new_job_id()).map_err(failed)?;
    println!(
        "reset requested for {label}: the next run re-reads the whole stream, replaces the target and \
         continues incrementally from there (`--cancel` withdraws the request)"
    );
    Ok(())
}

/// The README's connector table, from the registry: every connector of this build with its
/// modes or guarantee, capabilities and cargo feature. `BIZON_BLESS=1 cargo test -p bizon
/// readme` rewrites the README's copy; the test fails when they differ.
#[cfg(test)]
pub fn markdown_table() -> String {
    let feature = |f: Option<&str>| f.map_or("(always)".to_owned(), |f| format!("`{f}`"));
    let mut out = String::from("| kind | name | modes / guarantee | capabilities | feature | description |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for e in registry::SOURCES {
        let Some(d) = e.descriptor else { continue };
        let c = d.capabilities;
        let caps: Vec<&str> = [
            (c.own_position, "keeps its own position"),
            (c.dead_letters, "dead letters"),
            (c.network, "network"),
            (d.streams.is_empty(), "streams listed from the connection"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        out.push_str(&format!(
            "| source | `{}` | {} | {} | {} | {} |\n",
            d.name,
            d.modes_text(),
            or_dash(caps),
            feature(e.feature),
            d.description
        ));
    }
    for e in registry::DESTINATIONS {
        let Some(d) = e.descriptor else { continue };
        let c = d.capabilities;
        let caps: Vec<&str> = [
            (c.transactional, "transactional"),
            (c.typed_columns, "typed columns"),
            (c.lanes, "lanes"),
            (c.dead_letters, "dead letters"),
            (c.network, "network"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        out.push_str(&format!(
            "| destination | `{}` | {} | {} | {} | {} |\n",
            d.name,
            c.guarantee.as_str(),
            or_dash(caps),
            feature(e.feature),
            d.description
        ));
    }
    for e in registry::BACKENDS {
        let Some(d) = e.descriptor else { continue };
        out.push_str(&format!("| backend | `{}` | - | - | {} | {} |\n", d.name, feature(e.feature), d.description));
    }
    for e in registry::QUEUES {
        let Some(d) = e.descriptor else { continue };
        out.push_str(&format!("| queue | `{}` | - | lanes | {} | {} |\n", d.name, feature(e.feature), d.description));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The README's table between its markers is the registry's (with every feature on).
    #[test]
    fn readme_connector_table_is_the_registrys() {
        if !cfg!(all(feature = "kafka", feature = "rabbitmq", feature = "postgres")) {
            return; // the README describes the default build
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (begin, end) = ("<!-- connectors:begin (generated from the registry) -->\n", "<!-- connectors:end -->");
        let i = readme.find(begin).expect("README has the begin marker") + begin.len();
        let j = readme[i..].find(end).expect("README has the end marker") + i;
        let table = super::markdown_table();
        if readme[i..j] != table {
            if std::env::var_os("BIZON_BLESS").is_some() {
                std::fs::write(path, format!("{}{table}{}", &readme[..i], &readme[j..])).expect("write README");
                return;
            }
            panic!("README's connector table differs from the registry; rerun with BIZON_BLESS=1:\n{table}");
        }
    }
}
