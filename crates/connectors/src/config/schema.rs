//! The JSON Schema of a whole pipeline config (`bizon config schema`), generated from the config
//! types themselves (schemars, from their serde attributes and doc comments) and the registry's
//! descriptors: every connector of this build, its keys, types, defaults and descriptions. A
//! `source` section is its connector's keys plus the common ones (unknown keys allowed, as bizon
//! ignores them there); `destination.config` likewise with the common destination keys.

use bizon_core::config::{
    AlertingConfig, DestinationCommon, MonitoringConfig, RunnerConfig, SecretsConfig, SourceCommon, StreamConfig,
    SyncMode, TransformConfig,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::descriptor::BackendFields;
use crate::registry;

/// Where the schema says it lives (its `$id`); editors key their caches by it.
const SCHEMA_ID: &str = "https://github.com/bizon-data/bizon-rs/schema/config.json";

/// The properties and required keys of an object schema, with `allOf` parts (serde's
/// `flatten`) merged in.
fn object_parts(schema: &Value, props: &mut Map<String, Value>, required: &mut Vec<Value>) {
    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            props.insert(k.clone(), v.clone());
        }
    }
    if let Some(r) = schema.get("required").and_then(Value::as_array) {
        for k in r {
            if !required.contains(k) {
                required.push(k.clone());
            }
        }
    }
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        object_parts(part, props, required);
    }
}

/// One object schema with the keys of all `parts`; `open`: other keys allowed.
fn merged(title: &str, description: &str, parts: &[Schema], open: bool) -> Map<String, Value> {
    let (mut props, mut required) = (Map::new(), Vec::new());
    for p in parts {
        object_parts(p.as_value(), &mut props, &mut required);
    }
    let mut out = Map::new();
    out.insert("title".into(), json!(title));
    out.insert("description".into(), json!(description));
    out.insert("type".into(), json!("object"));
    out.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    out.insert("additionalProperties".into(), json!(open));
    out
}

fn sources(g: &mut SchemaGenerator) -> Vec<Value> {
    let common = SourceCommon::json_schema(g);
    registry::available(registry::SOURCES)
        .map(|d| {
            let mut s = merged(&format!("source `{}`", d.name), d.description, &[common.clone(), (d.schema)(g)], true);
            let props = s["properties"].as_object_mut().expect("an object schema");
            props.insert("name".into(), json!({"const": d.name, "description": d.description}));
            if !d.streams.is_empty() {
                props.insert("stream".into(), json!({"enum": d.streams, "description": "The stream to read."}));
            }
            let mut modes: Vec<&str> = d.modes.iter().map(|m| m.as_str()).collect();
            // the engine filters by the watermark for a source that cannot (`filters_after_watermark`)
            if d.supports(SyncMode::FullRefresh) && !d.supports(SyncMode::Incremental) {
                modes.push(SyncMode::Incremental.as_str());
            }
            props.insert("sync_mode".into(), json!({"enum": modes, "default": "full_refresh"}));
            Value::Object(s)
        })
        .collect()
}

fn destinations(g: &mut SchemaGenerator) -> Vec<Value> {
    let common = DestinationCommon::json_schema(g);
    registry::available(registry::DESTINATIONS)
        .map(|d| {
            let config = merged(
                &format!("destination `{}` config", d.name),
                d.description,
                &[common.clone(), (d.schema)(g)],
                false,
            );
            // YAML's `name: null` is the `null` destination
            let name = if d.name == "null" { json!({"enum": ["null", null]}) } else { json!({"const": d.name}) };
            json!({
                "title": format!("destination `{}`", d.name),
                "description": d.description,
                "type": "object",
                "properties": {
                    "name": name,
                    "alias": {"type": ["string", "null"], "description": "bizon's alias of the destination."},
                    "config": config,
                    "buffer_size": {"description": "bizon's dead key: no effect (the buffer is `config.buffer_size`)."}
                },
                "required": ["name"],
                "additionalProperties": false
            })
        })
        .collect()
}

fn engine(g: &mut SchemaGenerator) -> Value {
    let fields = BackendFields::json_schema(g);
    let backend_names: Vec<&str> = registry::available(registry::BACKENDS).map(|d| d.name).collect();
    let mut backend =
        merged("engine.backend", "Where jobs, cursors and watermarks live.", std::slice::from_ref(&fields), false);
    let props = backend["properties"].as_object_mut().expect("an object schema");
    props.insert("type".into(), json!({"enum": backend_names, "default": "sqlite"}));
    props.insert("config".into(), fields.to_value());
    backend.insert("required".into(), json!(["type"]));

    let mut queues = vec![json!({
        "type": "object",
        "properties": {
            "type": {"enum": super::engine::MEMORY_QUEUES, "description": "The in-memory queue (bizon's python_queue)."},
            "config": super::engine::memory_queue_schema(g).to_value()
        },
        "required": ["type"],
        "additionalProperties": false
    })];
    for d in registry::available(registry::QUEUES) {
        queues.push(json!({
            "type": "object",
            "description": d.description,
            "properties": {"type": {"const": d.name}, "config": (d.schema)(g).to_value()},
            "required": ["type", "config"],
            "additionalProperties": false
        }));
    }
    json!({
        "type": "object",
        "description": "Backend, queue and runner (default: sqlite in ./bizon.db, the in-memory queue, the thread runner).",
        "properties": {
            "backend": backend,
            "queue": {"oneOf": queues},
            "runner": RunnerConfig::json_schema(g).to_value()
        },
        "additionalProperties": false
    })
}

/// The schema of a pipeline config, for this build's connectors.
pub fn config_schema() -> Value {
    let mut g = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let sources = sources(&mut g);
    let destinations = destinations(&mut g);
    let engine = engine(&mut g);
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "bizon pipeline config",
        "description": "A bizon-rs pipeline: bizon's YAML, unchanged. Placeholders (${VAR}, env://VAR, BIZON_ENV_*, gsm://…) are resolved before these types apply.",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "The pipeline's name."},
            "id": {"type": "string", "minLength": 1, "maxLength": super::MAX_ID_CHARS,
                   "description": "bizon's job name: keys jobs and watermarks instead of `name`."},
            "source": {"oneOf": sources},
            "destination": {"oneOf": destinations},
            "engine": engine,
            "transforms": {"type": "array", "items": TransformConfig::json_schema(&mut g).to_value()},
            "streams": {"type": "array", "items": StreamConfig::json_schema(&mut g).to_value()},
            "monitoring": MonitoringConfig::json_schema(&mut g).to_value(),
            "alerting": AlertingConfig::json_schema(&mut g).to_value(),
            "secrets": SecretsConfig::json_schema(&mut g).to_value()
        },
        "required": ["name", "source", "destination"],
        "additionalProperties": false
    });
    root["$defs"] = Value::Object(g.take_definitions(true));
    root
}

/// One reference page per connector (`docs/connectors/<kind>-<name>.md`): its keys with type,
/// default and description, from the same schema. Returns (file name, markdown).
pub fn reference_pages(schema: &Value) -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let defs = schema.get("$defs").cloned().unwrap_or_default();
    for s in schema["properties"]["source"]["oneOf"].as_array().into_iter().flatten() {
        let name = s["properties"]["name"]["const"].as_str().unwrap_or_default();
        pages.push((format!("source-{name}.md"), page(&format!("Source `{name}`"), s, &defs, "source")));
    }
    for d in schema["properties"]["destination"]["oneOf"].as_array().into_iter().flatten() {
        let name = d["title"].as_str().unwrap_or_default().trim_start_matches("destination ").trim_matches('`');
        pages.push((
            format!("destination-{name}.md"),
            page(&format!("Destination `{name}`"), &d["properties"]["config"], &defs, "destination.config"),
        ));
    }
    pages
}

/// A property's type in words: `string`, `integer or null`, `one of: a, b`, a definition's name.
fn type_text(p: &Value, defs: &Value) -> String {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let def = &defs[name];
        if def.get("properties").is_some() || def.get("type").and_then(Value::as_str) == Some("object") {
            return format!("`{name}` (object)");
        }
        return type_text(def, defs);
    }
    if let Some(e) = p.get("enum").and_then(Value::as_array) {
        return format!(
            "one of: {}",
            e.iter().map(|v| format!("`{}`", v.as_str().unwrap_or("null"))).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(c) = p.get("const") {
        return format!("`{}`", c.as_str().unwrap_or_default());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = p.get(key).and_then(Value::as_array) {
            return alts.iter().map(|a| type_text(a, defs)).collect::<Vec<_>>().join(" or ");
        }
    }
    match p.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("list of {}", p.get("items").map(|i| type_text(i, defs)).unwrap_or_else(|| "values".into()))
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ => "any".into(),
    }
}

fn page(title: &str, schema: &Value, defs: &Value, at: &str) -> String {
    let mut out = format!(
        "# {title}\n\n<!-- generated by `BIZON_BLESS=1 cargo test -p bizon --test schema` from the config types; do not edit -->\n\n{}\n\n",
        schema["description"].as_str().unwrap_or_default()
    );
    out.push_str(&format!(
        "Keys under `{at}`:\n\n| key | type | default | required | description |\n|---|---|---|---|---|\n"
    ));
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut props: Vec<(&String, &Value)> = schema["properties"].as_object().into_iter().flatten().collect();
    props.sort_by_key(|(k, _)| *k);
    for (k, p) in props {
        let default = p.get("default").map(|d| format!("`{d}`")).unwrap_or_default();
        let description = p["description"].as_str().unwrap_or_default().replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!(
            "| `{k}` | {} | {default} | {} | {description} |\n",
            type_text(p, defs).replace('|', "\\|"),
            if required.contains(&k.as_str()) { "yes" } else { "" }
        ));
    }
    out
}
