//! The top-level config loader: bizon's YAML → [`BizonConfig`], in two pure steps (STYLE rule 2):
//! parse (YAML, placeholders, typed sections; errors with file:line:column) then validate
//! (cross-field rules, in `validate`). Connectors are picked from the registry by name; their
//! own keys are parsed by their descriptors. Nothing here opens a file other than the config or
//! touches the network.

mod engine;
pub mod schema;
mod validate;

use std::sync::Arc;

use bizon_core::config::interp::{self, Env};
use bizon_core::config::yaml::{self, from_node, Mark, Node};
use bizon_core::config::{
    AlertingConfig, DestinationCommon, MonitoringConfig, OnError, SecretsConfig, SourceCommon, StreamConfig,
    TransformConfig,
};
use bizon_core::Json;

pub use engine::{
    BackendSection, EngineSpec, QueueSpec, DEFAULT_QUEUE_MB, DEFAULT_SYNC_CURSOR_EVERY, PROCESS_IN_MEMORY,
};

use crate::descriptor::{DestinationDescriptor, DestinationSpec, SourceDescriptor, SourceSpec, TableSpec};
use crate::error::ConfigError;
use crate::registry;

pub const TOP_LEVEL_KEYS: &[&str] =
    &["name", "id", "source", "destination", "engine", "transforms", "streams", "monitoring", "alerting", "secrets"];

/// The keys of `destination:` itself (connector options go under `config`; bizon's
/// `destination.buffer_size` is accepted with a warning: it has no effect in bizon either).
const DESTINATION_KEYS: &[&str] = &["name", "alias", "config", "buffer_size"];

/// Most characters of `id` (bizon's limit).
const MAX_ID_CHARS: usize = 100;

/// How a config is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Every warning is an error (bizon's `config validate --strict`): unknown source keys, keys
    /// that have no effect here.
    pub strict: bool,
    /// Leave `${VAR}`, `env://`, `BIZON_ENV_*` and `gsm://` references unresolved and check
    /// them as literal text (bizon's `config validate --skip-references`, for CI without the
    /// secrets); a field that cannot hold the text is checked with a stand-in of its type.
    pub skip_references: bool,
    /// bizon's `run --custom-source FILE.py`: sets `source.source_file_path`.
    pub custom_source: Option<String>,
}

/// What `--skip-references` tries in place of a reference a field refused as text: a number, a
/// boolean, a URL. A field none of them fits is reported.
const REFERENCE_STAND_INS: &[&str] = &["1", "true", "https://reference.invalid/"];

#[derive(Debug, Clone)]
pub struct BizonConfig {
    pub name: String,
    /// bizon's `id`: what jobs and watermarks are keyed by instead of `name` (see [`Self::job_name`]).
    pub id: Option<String>,
    pub source_kind: &'static SourceDescriptor,
    pub source: SourceCommon,
    pub source_config: Arc<dyn SourceSpec>,
    pub destination: DestinationSection,
    pub engine: EngineSpec,
    pub transforms: Vec<TransformConfig>,
    pub streams: Vec<StreamConfig>,
    pub monitoring: Option<MonitoringConfig>,
    pub alerting: Option<AlertingConfig>,
    pub secrets: Option<SecretsConfig>,
    /// The resolved tree, for `config show` (masked there).
    pub root: Node,
    /// What was accepted but is ignored (unknown source keys, keys with no effect here), located:
    /// the CLI prints them; with [`LoadOptions::strict`] the first one is the load's error.
    pub warnings: Vec<yaml::Error>,
    /// With [`LoadOptions::skip_references`]: fields holding an unresolved reference that were
    /// checked with a stand-in of their type instead of their text.
    pub unchecked_references: usize,
}

impl BizonConfig {
    /// The topics of the `streams:` entries, in order (entry `i` is route `i`).
    pub fn stream_topics(&self) -> Vec<String> {
        self.streams.iter().filter_map(|s| s.source.get("topic").and_then(Json::as_str).map(str::to_owned)).collect()
    }

    /// The pipeline name jobs and watermarks are kept under: `id` when set, else `name` (bizon's
    /// `job_name`; changing it starts the stream from scratch).
    pub fn job_name(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    /// An incremental run of a source that cannot filter by `cursor_field` itself: it reads
    /// everything and the engine keeps the records above the watermark.
    pub fn filters_after_watermark(&self) -> bool {
        filters_after_watermark(self.source_kind, &self.source)
    }

    /// The identity jobs and watermarks are keyed by.
    pub fn stream_key(&self) -> bizon_core::StreamKey {
        // a custom source (picked by `source_file_path`) is known by its own name, as in bizon
        let custom = self.source.source_file_path.is_some();
        bizon_core::StreamKey {
            pipeline: self.job_name().to_owned(),
            source: if custom { self.source.name.clone() } else { self.source_kind.name.into() },
            stream: self.source.stream.clone(),
        }
    }

    /// The source of the run.
    pub fn build_source(&self) -> Box<dyn bizon_core::Source> {
        self.source_config.build(&self.source, &self.stream_topics())
    }

    /// The destination of the run: the configured one, or a router over one target per
    /// `streams:` entry and the dead-letter file; behind the `transforms` when there are some.
    pub fn build_destination(&self) -> Result<Box<dyn bizon_core::Destination>, ConfigError> {
        let mut destination = self.build_routed_destination()?;
        if let Some(routes) = self.unnest_routes() {
            // the destination's own policy for a value its column cannot hold
            let id = self.destination.destination_id(&self.source.stream);
            let dead_letter = self.destination.config.dead_letter_path(&id).is_some();
            destination = Box::new(crate::normalize::Unnested::new(destination, routes, dead_letter));
        }
        if self.transforms.is_empty() {
            return Ok(destination);
        }
        let interpreter = crate::pyproc::interpreter();
        let streams = self.streams.iter().map(|s| s.name.clone()).collect();
        crate::transforms::Transformed::new(destination, self.transforms.clone(), interpreter, streams)
            .map(|t| Box::new(t) as Box<dyn bizon_core::Destination>)
            .map_err(|e| ConfigError::Invalid { key: "transforms", message: e.message().to_owned() })
    }

    /// With `unnest: true`, the schema of each route for the normalization stage: the
    /// destination's `record_schemas` entry, or with `streams:` each entry's `record_schema`.
    pub fn unnest_routes(&self) -> Option<crate::normalize::Routes> {
        use crate::normalize::{Routes, Schema};
        let spec = &self.destination;
        if !spec.common.unnest {
            return None;
        }
        if !self.streams.is_empty() {
            let schemas = self
                .streams
                .iter()
                .map(|s| s.destination.get("record_schema").and_then(Schema::of_json).map(Arc::new))
                .collect();
            return Some(Routes::PerStream(schemas));
        }
        let id = spec.destination_id(&self.source.stream);
        let entry = spec.common.record_schemas.as_ref()?.iter().find(|s| s.destination_id == id)?;
        Some(Routes::Single(Arc::new(Schema::of_columns(&entry.record_schema))))
    }

    fn build_routed_destination(&self) -> Result<Box<dyn bizon_core::Destination>, ConfigError> {
        use crate::destinations::router::{Part, Router, Takes};
        let spec = &self.destination;
        let id = spec.destination_id(&self.source.stream);
        let typed = spec.typed_columns(&self.source.stream).transpose()?;
        // records a transform fails on under `on_error: dead_letter` go where the connectors' go
        let transforms_on_error = if self.transforms.iter().any(|t| t.on_error == OnError::DeadLetter) {
            OnError::DeadLetter
        } else {
            OnError::Fail
        };
        let dead_letter = self
            .source_config
            .dead_letter_path(&id)
            .or_else(|| spec.config.dead_letter_path(&id))
            .or_else(|| dead_letter_file(transforms_on_error, &None, &id));
        if self.streams.is_empty() && dead_letter.is_none() {
            return Ok(spec.config.build(&id, typed));
        }
        let transactional = spec.kind.capabilities.transactional;
        let mut parts = Vec::new();
        if self.streams.is_empty() {
            parts.push(Part {
                name: id.clone(),
                takes: Takes::Route(0),
                destination: spec.config.build(&id, typed),
                transactional,
            });
        } else {
            let targets =
                self.streams.iter().map(|s| stream_target(s, spec.config.as_ref())).collect::<Result<Vec<_>, _>>()?;
            let names: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
            let targets_typed: Vec<_> = targets.iter().map(|(_, t)| t.clone()).collect();
            match spec.config.build_routed(targets) {
                Some(destination) => parts.push(Part {
                    name: "tables".into(),
                    takes: Takes::AllButDeadLetters,
                    destination,
                    transactional,
                }),
                None => {
                    for (i, name) in names.into_iter().enumerate() {
                        // a stream with a `record_schema` gets the normalized rows under `unnest`
                        let typed = targets_typed[i].clone().filter(|_| spec.common.unnest);
                        let destination = spec.config.build_stream(&name, &self.streams[i], typed);
                        parts.push(Part { name, takes: Takes::Route(i as u16), destination, transactional: false });
                    }
                }
            }
        }
        if let Some(path) = dead_letter {
            let c = crate::destinations::file::FileConfig { path: Some(path.clone()), ..Default::default() };
            parts.push(Part {
                name: format!("dead letters ({path})"),
                takes: Takes::Route(bizon_core::record::DEAD_LETTER),
                destination: Box::new(crate::destinations::file::FileDestination::new(&c, &path)),
                transactional: false,
            });
        }
        Ok(Box::new(Router::new(parts)?))
    }
}

/// Where `on_error: dead_letter` writes: the configured path, else `<destination_id>_dead_letter.json`.
pub fn dead_letter_file(on_error: OnError, path: &Option<String>, destination_id: &str) -> Option<String> {
    (on_error == OnError::DeadLetter)
        .then(|| path.clone().unwrap_or_else(|| format!("{destination_id}_dead_letter.json")))
}

/// A `streams:` entry's target: the last part of `table_id` (bizon writes `project.dataset.table`)
/// and, with a `record_schema`, its typed columns in the destination's types.
fn stream_target(s: &StreamConfig, dst: &dyn DestinationSpec) -> Result<TableSpec, ConfigError> {
    let table_id = s.destination.get("table_id").and_then(Json::as_str).unwrap_or(&s.name);
    let table = table_id.rsplit('.').next().unwrap_or(table_id).to_owned();
    let typed = match s.destination.get("record_schema").and_then(Json::as_array) {
        None => None,
        Some(cols) => Some(
            cols.iter()
                .map(|c| {
                    let name = c.get("name").and_then(Json::as_str);
                    let kind = c.get("type").and_then(Json::as_str);
                    match (name, kind) {
                        (Some(n), Some(k)) => dst.column_type(k).map(|t| (n.to_owned(), t)),
                        _ => Err(ConfigError::IncompleteColumn { stream: s.name.clone() }),
                    }
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
        ),
    };
    Ok((table, typed))
}

/// `destination:` parsed: the connector, its alias, bizon's common keys and its own.
#[derive(Debug, Clone)]
pub struct DestinationSection {
    pub kind: &'static DestinationDescriptor,
    pub alias: Option<String>,
    pub common: DestinationCommon,
    pub config: Arc<dyn DestinationSpec>,
}

impl DestinationSection {
    /// What names the output: `destination_id`, else the stream name.
    pub fn destination_id(&self, stream: &str) -> String {
        self.common.destination_id.clone().unwrap_or_else(|| stream.to_owned())
    }

    /// With `unnest: true`: the (name, destination type) columns of this destination's
    /// `record_schemas` entry; `None` when there is no entry for it.
    pub fn typed_columns(&self, stream: &str) -> Option<Result<Vec<(String, String)>, ConfigError>> {
        if !self.common.unnest {
            return None;
        }
        let id = self.destination_id(stream);
        let schema = self.common.record_schemas.as_ref()?.iter().find(|s| s.destination_id == id)?;
        Some(
            schema
                .record_schema
                .iter()
                .map(|c| self.config.column_type(&c.kind).map(|t| (c.name.clone(), t)))
                .collect::<Result<Vec<_>, ConfigError>>()
                .map_err(|e| ConfigError::RecordSchemas { destination_id: id, source: Box::new(e) }),
        )
    }
}

fn err(msg: impl Into<String>, node: &Node, path: &str) -> yaml::Error {
    yaml::Error::new(msg, node.mark, path)
}

/// A connector name looked up in a registry list, or the located error saying why not.
fn lookup<D>(
    what: &str,
    list: &'static [registry::Entry<D>],
    planned: &[&str],
    name: &str,
    node: &Node,
    path: &str,
) -> Result<&'static D, yaml::Error> {
    registry::find(list, planned, name).map_err(|m| err(registry::missing_message(what, name, list, &m), node, path))
}

/// Report the first key of `node` that is not in `allowed`, with the closest one.
fn known_keys(node: &Node, allowed: &[&str], path: &str, advice: &str) -> Result<(), yaml::Error> {
    for (k, _) in node.entries() {
        let key = k.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            let hint = bizon_core::suggest::did_you_mean(key, allowed.iter().copied());
            let at = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
            return Err(err(format!("unknown key `{key}`{hint} Valid keys: {}{advice}", allowed.join(", ")), k, &at));
        }
    }
    Ok(())
}

fn filters_after_watermark(kind: &SourceDescriptor, source: &SourceCommon) -> bool {
    use bizon_core::config::SyncMode;
    source.sync_mode == SyncMode::Incremental
        && source.cursor_field.is_some()
        && !kind.supports(SyncMode::Incremental)
        && kind.supports(SyncMode::FullRefresh)
}

/// `source` with `source_file_path` set to `file` (`--custom-source`).
fn with_source_file(src: &Node, file: &str) -> Node {
    let mut out = src.clone();
    if let yaml::Value::Map(entries) = &mut out.value {
        entries.retain(|(k, _)| k.as_str() != Some("source_file_path"));
        let scalar = |t: &str| Node::new(yaml::Value::Scalar { text: t.to_owned(), plain: false }, src.mark);
        entries.push((scalar("source_file_path"), scalar(file)));
    }
    out
}

/// The keys of `source` that bizon's `SourceConfig` declares (a custom source's own go to its class).
fn only_common_keys(src: &Node) -> Node {
    let common = yaml::struct_fields::<SourceCommon>();
    let mut out = src.clone();
    if let yaml::Value::Map(entries) = &mut out.value {
        entries.retain(|(k, _)| k.as_str().is_some_and(|k| common.contains(&k)));
    }
    out
}

/// `source:` without the keys neither bizon's common source keys nor the connector declare, each
/// noted in `warnings` (bizon's behaviour: a warning, the key ignored). A key within a typo of a
/// known one stays, so the parse reports it with the suggestion.
fn ignore_unknown_source_keys(src: &Node, kind: &SourceDescriptor, warnings: &mut Vec<yaml::Error>) -> Node {
    let common = yaml::struct_fields::<SourceCommon>();
    let own = (kind.keys)();
    let known = || common.iter().chain(own.iter()).copied();
    let mut kept = src.clone();
    if let yaml::Value::Map(entries) = &mut kept.value {
        entries.retain(|(k, _)| {
            let key = k.as_str().unwrap_or_default();
            if known().any(|c| c == key) || bizon_core::suggest::closest(key, known()).is_some() {
                return true;
            }
            warnings.push(err(
                format!("unknown key `{key}` for source `{}`: ignored, as bizon does", kind.name),
                k,
                &format!("source.{key}"),
            ));
            false
        });
    }
    kept
}

/// Variables from `env`, and the config's secret references (`gsm://`, with the config's
/// `secrets.gsm` settings) resolved on first use.
pub struct ConfigEnv<'a> {
    env: &'a dyn Env,
    #[cfg(feature = "bigquery")]
    gsm: crate::google::secrets::GsmResolver,
}

impl<'a> ConfigEnv<'a> {
    /// For the config `root` (not yet resolved: `secrets.gsm` may use `${VAR}` itself).
    pub fn new(root: &yaml::Node, env: &'a dyn Env) -> Result<Self, yaml::Error> {
        let setting = |key: &str| -> Result<Option<String>, yaml::Error> {
            let Some(n) = root.get("secrets").and_then(|s| s.get("gsm")).and_then(|g| g.get(key)) else {
                return Ok(None);
            };
            let Some(text) = n.as_str() else { return Ok(None) };
            let path = format!("secrets.gsm.{key}");
            match interp::resolve_str(text, env).map_err(|m| yaml::Error::new(m, n.mark, &path))? {
                Some(v) => Ok(Some(v)),
                None => Ok(Some(text.to_owned())),
            }
        };
        let project = setting("project_id")?.or_else(|| env.var("GOOGLE_CLOUD_PROJECT"));
        let api_url = setting("api_url")?;
        #[cfg(not(feature = "bigquery"))]
        let _ = (project, api_url);
        Ok(ConfigEnv {
            env,
            #[cfg(feature = "bigquery")]
            gsm: crate::google::secrets::GsmResolver::new(project, api_url.as_deref()),
        })
    }
}

impl Env for ConfigEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name)
    }

    fn reference(&self, scheme: &str, path: &str) -> Option<Result<String, String>> {
        match scheme {
            #[cfg(feature = "bigquery")]
            "gsm" => Some(self.gsm.resolve(path)),
            _ => self.env.reference(scheme, path),
        }
    }
}

/// Parse and validate a config text. `env` resolves placeholders.
pub fn load(text: &str, env: &dyn Env) -> Result<BizonConfig, yaml::Error> {
    load_with(text, env, LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(text: &str, env: &dyn Env, options: LoadOptions) -> Result<BizonConfig, yaml::Error> {
    let mut root = yaml::parse(text)?;
    let mut references = Vec::new();
    if options.skip_references {
        interp::mark_references(&mut root, &mut references);
    }
    // per reference a field refused: the error its own text got, and the stand-ins tried
    let mut tried: Vec<(Mark, yaml::Error, usize)> = Vec::new();
    // unknown keys nested in `source` (bizon's models ignore them), dropped from the tree
    let mut ignored: Vec<yaml::Error> = Vec::new();
    loop {
        let e = match load_root(root.clone(), env, &options) {
            Ok(mut cfg) => {
                validate::jq_rules(&cfg, text)?;
                cfg.unchecked_references = tried.len();
                ignored.append(&mut cfg.warnings);
                cfg.warnings = ignored;
                return Ok(cfg);
            }
            Err(e) => e,
        };
        if let Some(warning) = ignorable_source_key(&e) {
            if options.strict {
                let mut e = e;
                e.message.push_str(" (an error with --strict)");
                return Err(e);
            }
            if !remove_key_at(&mut root, warning.mark.unwrap_or_default()) {
                return Err(e);
            }
            ignored.push(warning);
            continue;
        }
        let Some(mark) = e.mark.filter(|m| references.contains(m)) else { return Err(e) };
        let next = match tried.iter_mut().find(|(m, ..)| *m == mark) {
            Some((_, _, n)) => {
                *n += 1;
                *n
            }
            None => {
                tried.push((mark, e, 0));
                0
            }
        };
        let Some(stand_in) = REFERENCE_STAND_INS.get(next) else {
            let (_, mut first, _) = tried.into_iter().find(|(m, ..)| *m == mark).expect("tried above");
            first.message.push_str(" (an unresolved reference, and no stand-in of a number, a boolean or a URL fits)");
            return Err(first);
        };
        interp::replace_at(&mut root, mark, stand_in);
    }
}

/// An unknown key somewhere inside `source` (`source.http.x`, `source.authentication.x`): bizon's
/// source models ignore such keys, so it becomes a warning, unless it is a typo of a known key
/// (the error suggests it).
fn ignorable_source_key(e: &yaml::Error) -> Option<yaml::Error> {
    // serde's refusal of an undeclared key (a typo of a known one carries a suggestion)
    if !e.path.starts_with("source.") || !e.message.contains(" Valid keys: ") || e.message.contains("did you mean") {
        return None;
    }
    let key = e.message.strip_prefix("unknown key `")?.split('`').next()?;
    let mut w = e.clone();
    w.message = format!("unknown key `{key}` in `{}`: ignored, as bizon does", e.path.rsplit_once('.')?.0);
    Some(w)
}

/// Drop the map entry whose key is at `mark`.
fn remove_key_at(node: &mut Node, mark: Mark) -> bool {
    match &mut node.value {
        yaml::Value::Map(entries) => {
            if let Some(i) = entries.iter().position(|(k, _)| k.mark == mark) {
                entries.remove(i);
                return true;
            }
            entries.iter_mut().any(|(_, v)| remove_key_at(v, mark))
        }
        yaml::Value::Seq(items) => items.iter_mut().any(|v| remove_key_at(v, mark)),
        _ => false,
    }
}

fn load_root(mut root: yaml::Node, env: &dyn Env, options: &LoadOptions) -> Result<BizonConfig, yaml::Error> {
    let top = Mark { line: 1, col: 1 };
    match &root.value {
        yaml::Value::Map(_) => {}
        yaml::Value::Null => {
            return Err(yaml::Error::new(
                "the config is empty: expected a mapping with `name`, `source` and `destination`",
                top,
                "",
            ))
        }
        _ => return Err(err(format!("expected a mapping at the top level, found {}", root.kind_name()), &root, "")),
    }
    if !options.skip_references {
        let env = ConfigEnv::new(&root, env)?;
        interp::resolve(&mut root, &env, "")?;
    }
    known_keys(&root, TOP_LEVEL_KEYS, "", "")?;
    let required = |key: &str| {
        root.get(key)
            .filter(|n| n.value != yaml::Value::Null)
            .ok_or_else(|| yaml::Error::new(format!("missing required key `{key}`"), root.mark, ""))
    };
    let name: String = from_node(required("name")?, "name", &[])?;
    if name.trim().is_empty() {
        return Err(err("`name` must not be empty", required("name")?, "name"));
    }
    let id = match root.get("id").filter(|n| n.value != yaml::Value::Null) {
        None => None,
        Some(n) => {
            let id: String = from_node(n, "id", &[])?;
            if id.trim().is_empty() || id.chars().count() > MAX_ID_CHARS {
                return Err(err(format!("`id` must be 1 to {MAX_ID_CHARS} characters, not {:?}", id), n, "id"));
            }
            Some(id)
        }
    };
    let mut warnings = Vec::new();

    // source: common keys + the connector's own, picked by `name`.
    let src = required("source")?;
    if !matches!(src.value, yaml::Value::Map(_)) {
        return Err(err(format!("expected a mapping, found {}", src.kind_name()), src, "source"));
    }
    let src_name_node = src.get("name").ok_or_else(|| err("missing required key `name`", src, "source"))?;
    let src_name: String = from_node(src_name_node, "source.name", &[])?;
    let with_file;
    let src = match &options.custom_source {
        Some(file) => {
            with_file = with_source_file(src, file);
            &with_file
        }
        None => src,
    };
    // a custom Python source: its class takes every key of the mapping (bizon's discovery)
    let custom = src.get("source_file_path").is_some_and(|n| n.value != yaml::Value::Null);
    let source_kind = if custom {
        &crate::sources::python::DESCRIPTOR
    } else {
        lookup("source", registry::SOURCES, registry::PLANNED_SOURCES, &src_name, src_name_node, "source.name")?
    };
    let src = &if custom { src.clone() } else { ignore_unknown_source_keys(src, source_kind, &mut warnings) };
    let source_config = (source_kind.parse)(src)?;
    let source: SourceCommon = if custom {
        from_node(&only_common_keys(src), "source", &[])?
    } else {
        from_node(src, "source", (source_kind.keys)())?
    };
    if filters_after_watermark(source_kind, &source) {
        let field = source.cursor_field.as_deref().unwrap_or_default();
        warnings.push(err(
            format!(
                "source `{}` cannot filter by `{field}` itself: every incremental run reads everything and keeps \
                 the records whose `{field}` is above the last run's watermark",
                source_kind.name
            ),
            src.get("sync_mode").unwrap_or(src),
            "source.sync_mode",
        ));
    }

    // destination: { name, alias?, config }.
    let dst = required("destination")?;
    known_keys(dst, DESTINATION_KEYS, "destination", " (connector options go under `config`)")?;
    if let Some((k, _)) = dst.entries().iter().find(|(k, _)| k.as_str() == Some("buffer_size")) {
        warnings.push(err(
            "`destination.buffer_size` has no effect (in bizon neither): the buffer is `destination.config.buffer_size`",
            k,
            "destination.buffer_size",
        ));
    }
    let dst_name_node = dst.get("name").ok_or_else(|| err("missing required key `name`", dst, "destination"))?;
    // `name: null` parses as YAML's null: read it as the `null` destination it names.
    let dst_name: String = match dst_name_node.value {
        yaml::Value::Null => "null".into(),
        _ => from_node(dst_name_node, "destination.name", &[])?,
    };
    let kind = lookup(
        "destination",
        registry::DESTINATIONS,
        registry::PLANNED_DESTINATIONS,
        &dst_name,
        dst_name_node,
        "destination.name",
    )?;
    let alias: Option<String> = match dst.get("alias") {
        Some(n) => from_node(n, "destination.alias", &[])?,
        None => None,
    };
    let empty = Node::new(yaml::Value::Null, dst.mark);
    let dst_cfg = dst.get("config").unwrap_or(&empty);
    let config = (kind.parse)(dst_cfg)?;
    let common: DestinationCommon = from_node(dst_cfg, "destination.config", (kind.keys)())?;
    let destination = DestinationSection { kind, alias, common, config };

    let engine = engine::parse(root.get("engine"), &mut warnings)?;
    let opt = |key: &str| root.get(key).filter(|n| n.value != yaml::Value::Null);
    let transforms: Vec<TransformConfig> =
        opt("transforms").map(|n| from_node(n, "transforms", &[])).transpose()?.unwrap_or_default();
    let streams: Vec<StreamConfig> =
        opt("streams").map(|n| from_node(n, "streams", &[])).transpose()?.unwrap_or_default();
    let monitoring = opt("monitoring").map(|n| from_node(n, "monitoring", &[])).transpose()?;
    let alerting = opt("alerting").map(|n| from_node(n, "alerting", &[])).transpose()?;
    let secrets = opt("secrets").map(|n| from_node(n, "secrets", &[])).transpose()?;

    if options.strict {
        if let Some(w) = warnings.first() {
            let mut e = w.clone();
            e.message.push_str(" (an error with --strict)");
            return Err(e);
        }
    }
    let cfg = BizonConfig {
        name,
        id,
        source_kind,
        source,
        source_config,
        destination,
        engine,
        transforms,
        streams,
        monitoring,
        alerting,
        secrets,
        root,
        warnings,
        unchecked_references: 0,
    };
    validate::validate(&cfg)?;
    Ok(cfg)
}

#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod tests;
