//! `bizon config schema`: a JSON Schema (draft 2020-12) of the whole config, generated from the
//! config types. Every example config validates against it with an independent validator (boon),
//! configs the loader refuses are refused by it too, and the connector reference pages in
//! docs/connectors are the ones generated from it (`BIZON_BLESS=1` rewrites them).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The schema as the binary prints it.
fn printed_schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bizon")).args(["config", "schema"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("config schema prints JSON")
}

/// YAML as the JSON an editor's validator sees (placeholders unresolved, plain scalars typed).
fn yaml_json(text: &str) -> Value {
    use bizon_core::config::yaml::{parse, Node, Value as Y};
    fn walk(n: &Node) -> Value {
        match &n.value {
            Y::Null => Value::Null,
            Y::Scalar { text, plain } => match serde_json::from_str::<Value>(text) {
                Ok(v) if *plain && !v.is_string() && !v.is_object() && !v.is_array() => v,
                _ => Value::String(text.clone()),
            },
            Y::Seq(items) => Value::Array(items.iter().map(walk).collect()),
            Y::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.as_str().unwrap_or("null").to_owned(), walk(v))).collect())
            }
        }
    }
    walk(&parse(text).unwrap_or_else(|e| panic!("{}", e.render("config"))))
}

fn as_json(path: &Path) -> Value {
    yaml_json(&std::fs::read_to_string(path).unwrap())
}

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Self {
        let id = schema["$id"].as_str().expect("the schema has an $id").to_owned();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(&id, schema).unwrap();
        let index = compiler.compile(&id, &mut schemas).unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        Validator { schemas, index }
    }
    fn check(&self, v: &Value) -> Result<(), String> {
        self.schemas.validate(v, self.index).map_err(|e| format!("{e:#}"))
    }
}

fn all_connectors() -> bool {
    cfg!(all(feature = "kafka", feature = "rabbitmq", feature = "postgres", feature = "http", feature = "bigquery"))
}

#[test]
fn every_example_validates_against_the_printed_schema() {
    let schema = printed_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let v = Validator::new(schema);
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let config = as_json(&path);
        let uses = |kind: &str| config[kind]["name"].as_str().unwrap_or_default().to_owned();
        // an example of a connector this build left out is not in this build's schema
        let available = |list: &[&str], name: &str| list.contains(&name);
        let sources: Vec<&str> =
            bizon_connectors::registry::available(bizon_connectors::registry::SOURCES).map(|d| d.name).collect();
        let destinations: Vec<&str> =
            bizon_connectors::registry::available(bizon_connectors::registry::DESTINATIONS).map(|d| d.name).collect();
        let mut queues: Vec<&str> =
            bizon_connectors::registry::available(bizon_connectors::registry::QUEUES).map(|d| d.name).collect();
        queues.extend(["memory", "python_queue"]);
        let backends: Vec<&str> =
            bizon_connectors::registry::available(bizon_connectors::registry::BACKENDS).map(|d| d.name).collect();
        let engine = |part: &str, default: &str| config["engine"][part]["type"].as_str().unwrap_or(default).to_owned();
        if !available(&sources, &uses("source"))
            || !available(&destinations, &uses("destination"))
            || !available(&queues, &engine("queue", "memory"))
            || !available(&backends, &engine("backend", "sqlite"))
        {
            continue;
        }
        if let Err(e) = v.check(&config) {
            panic!("{} does not validate against `bizon config schema`:\n{e}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= if all_connectors() { 20 } else { 3 }, "only {checked} examples checked");
}

#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let v = Validator::new(printed_schema());
    let good =
        "name: p\nsource:\n  name: dummy\n  stream: creatures\n  sync_mode: incremental\n  cursor_field: updated_at\n\
                destination:\n  name: file\n  config:\n    path: out.json\n    buffer_size: 10\n";
    let json = yaml_json;
    v.check(&json(good)).unwrap();
    for (what, bad) in [
        ("a typo at the top level", good.replace("name: p\n", "name: p\nsourcee: 1\n")),
        ("a stream the source lacks", good.replace("stream: creatures", "stream: animals")),
        ("a sync mode the source lacks", good.replace("sync_mode: incremental", "sync_mode: streaming")),
        ("a destination key the connector lacks", good.replace("path: out.json", "path: out.json\n    colour: red")),
        ("a number that is text", good.replace("buffer_size: 10", "buffer_size: ten")),
        ("an unknown destination", good.replace("name: file", "name: fax")),
        ("no source", format!("name: p\n{}", &good[good.find("destination:").unwrap()..])),
    ] {
        assert!(v.check(&json(&bad)).is_err(), "the schema accepts {what}:\n{bad}");
    }
    // unknown top-level source keys are allowed, as bizon (and the loader) ignore them
    v.check(&json(&good.replace("  stream: creatures\n", "  stream: creatures\n  page_token: abc\n"))).unwrap();
}

/// docs/connectors/<kind>-<name>.md are the pages generated from the schema.
#[test]
fn connector_reference_pages_are_generated_from_the_schema() {
    if !all_connectors() {
        return; // the pages describe the default build
    }
    let pages = bizon_connectors::config::schema::reference_pages(&printed_schema());
    let connectors = bizon_connectors::registry::available(bizon_connectors::registry::SOURCES).count()
        + bizon_connectors::registry::available(bizon_connectors::registry::DESTINATIONS).count();
    assert_eq!(pages.len(), connectors, "a page per source and destination");
    let dir = root().join("docs/connectors");
    let bless = std::env::var_os("BIZON_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, text) in &pages {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(name.clone());
            }
        }
    }
    let expected: Vec<&String> = pages.iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&dir).into_iter().flatten() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" && !expected.contains(&&name) {
            stale.push(format!("{name} (no such connector)"));
        }
    }
    assert!(stale.is_empty(), "docs/connectors is out of date ({stale:?}); rerun with BIZON_BLESS=1");
    let file = std::fs::read_to_string(dir.join("destination-file.md")).unwrap();
    assert!(file.contains("| `path` |") && file.contains("| `format` |"), "{file}");
}
