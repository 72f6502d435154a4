//! Custom Python sources, unchanged: `bizon run CONFIG --custom-source FILE.py` or
//! `source.source_file_path`. The file's `AbstractSource` subclass for the stream runs in a
//! supervised Python worker ([`PyProcess`], protocol in `source_worker.py`); its imports of
//! `bizon.source…` resolve to the stand-in package shipped here (`shim/`, written to a cache
//! directory on first use), whether or not bizon is installed in that Python. Its pagination dict
//! is the resumable cursor: a killed run resumes at the last committed page.

use std::path::PathBuf;
use std::sync::Arc;

use bizon_core::config::yaml::{self, from_node, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::time::now_micros;
use bizon_core::{Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use serde_json::json;

use crate::descriptor::{SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::pyproc::{interpreter, PyProcess};

const WORKER: &str = include_str!("source_worker.py");

/// The stand-in `bizon` package: (path under the package root, content).
pub const SHIM: &[(&str, &str)] = &[
    ("bizon/__init__.py", include_str!("shim/bizon/__init__.py")),
    ("bizon/source/__init__.py", include_str!("shim/bizon/source/__init__.py")),
    ("bizon/source/callback.py", include_str!("shim/bizon/source/callback.py")),
    ("bizon/source/config.py", include_str!("shim/bizon/source/config.py")),
    ("bizon/source/models.py", include_str!("shim/bizon/source/models.py")),
    ("bizon/source/session.py", include_str!("shim/bizon/source/session.py")),
    ("bizon/source/source.py", include_str!("shim/bizon/source/source.py")),
    ("bizon/source/auth/__init__.py", include_str!("shim/bizon/source/auth/__init__.py")),
    ("bizon/source/auth/builder.py", include_str!("shim/bizon/source/auth/builder.py")),
    ("bizon/source/auth/config.py", include_str!("shim/bizon/source/auth/config.py")),
    ("bizon/source/auth/authenticators/__init__.py", include_str!("shim/bizon/source/auth/authenticators/__init__.py")),
    (
        "bizon/source/auth/authenticators/abstract_oauth.py",
        include_str!("shim/bizon/source/auth/authenticators/abstract_oauth.py"),
    ),
    (
        "bizon/source/auth/authenticators/abstract_token.py",
        include_str!("shim/bizon/source/auth/authenticators/abstract_token.py"),
    ),
    ("bizon/source/auth/authenticators/basic.py", include_str!("shim/bizon/source/auth/authenticators/basic.py")),
    ("bizon/source/auth/authenticators/cookies.py", include_str!("shim/bizon/source/auth/authenticators/cookies.py")),
    ("bizon/source/auth/authenticators/oauth.py", include_str!("shim/bizon/source/auth/authenticators/oauth.py")),
    ("bizon/source/auth/authenticators/token.py", include_str!("shim/bizon/source/auth/authenticators/token.py")),
];

/// The parsed `source:` of a custom source: the file, and the whole mapping for its config class.
#[derive(Debug, Clone)]
pub struct PythonSourceSpec {
    pub file: String,
    pub config: Json,
}

/// Custom sources in listings; picked by `source_file_path`, not by name.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "python",
    description: "a custom bizon source class in a Python file (`--custom-source FILE.py` / `source_file_path`)",
    streams: &[],
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: || &["source_file_path"],
    schema: |_| schemars::json_schema!({"type": "object"}),
    parse,
};

fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    let config: Json = from_node(node, "source", &[])?;
    let file = config.get("source_file_path").and_then(Json::as_str).unwrap_or_default().to_owned();
    let at = node.get("source_file_path").unwrap_or(node);
    if file.trim().is_empty() {
        return Err(yaml::Error::new("`source_file_path` must name a Python file", at.mark, "source.source_file_path"));
    }
    if !std::path::Path::new(&file).is_file() {
        let msg = format!("custom source `{file}`: no such file (a relative path starts in the current directory)");
        return Err(yaml::Error::new(msg, at.mark, "source.source_file_path"));
    }
    Ok(Arc::new(PythonSourceSpec { file, config }))
}

impl SourceSpec for PythonSourceSpec {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        Box::new(PythonSource { spec: self.clone(), stream: common.stream.clone(), worker: None })
    }
}

pub struct PythonSource {
    spec: PythonSourceSpec,
    stream: String,
    worker: Option<(PyProcess, String)>,
}

impl PythonSource {
    fn describe(&self, class: &str) -> String {
        if class.is_empty() {
            format!("custom source `{}`", self.spec.file)
        } else {
            format!("custom source `{}` ({class})", self.spec.file)
        }
    }

    /// The worker, started and its class loaded on first use.
    fn worker(&mut self) -> Result<&mut (PyProcess, String)> {
        if self.worker.is_none() {
            let file = &self.spec.file;
            if !std::path::Path::new(file).is_file() {
                return Err(Error::config(format!("custom source `{file}`: no such file")));
            }
            let shim = shim_dir()?;
            let mut p = PyProcess::spawn(&interpreter(), WORKER, &[], "the custom Python source's worker")?;
            let setup = json!({"shim": shim, "file": file, "stream": self.stream, "config": self.spec.config});
            p.send(format!("{setup}\n").as_bytes())?;
            let mut line = Vec::new();
            p.read_line(&mut line)?;
            let class = match line.strip_prefix(b"!") {
                // a source that cannot load (syntax error, missing stream, bad config) is the config's fault
                Some(e) => return Err(Error::config(self.failure(e, "").message().to_owned())),
                None => serde_json::from_slice::<Json>(&line)
                    .ok()
                    .and_then(|j| j.get("class").and_then(Json::as_str).map(str::to_owned))
                    .ok_or_else(|| p.died("answered no class to its setup"))?,
            };
            tracing::info!(file = %file, class = %class, stream = %self.stream, "custom Python source loaded");
            self.worker = Some((p, class));
        }
        Ok(self.worker.as_mut().expect("started above"))
    }

    /// An error the worker reported: `{"stage", "error", "where", "transient"}`.
    fn failure(&self, raw: &[u8], class: &str) -> Error {
        let e: Json = serde_json::from_slice(raw).unwrap_or(Json::Null);
        let text = |k: &str| e.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
        let place = match text("where") {
            w if w.is_empty() => String::new(),
            w => format!(" at {w}"),
        };
        let msg = format!("{} failed in {}{place}: {}", self.describe(class), text("stage"), text("error"));
        if e.get("transient").and_then(Json::as_bool) == Some(true) {
            Error::transient(msg)
        } else {
            Error::permanent(msg)
        }
    }

    /// Send `req`; the reply's first line, or the error it reports.
    fn request(&mut self, req: &Json) -> Result<(Vec<u8>, String)> {
        let (p, class) = self.worker()?;
        let class = class.clone();
        p.send(format!("{req}\n").as_bytes())?;
        let mut line = Vec::new();
        p.read_line(&mut line)?;
        if let Some(e) = line.strip_prefix(b"!") {
            return Err(self.failure(e, &class));
        }
        Ok((line, class))
    }
}

impl Source for PythonSource {
    fn total_records(&mut self, _ctx: &ReadContext) -> Result<Option<u64>> {
        let (line, _) = self.request(&json!({"op": "total"}))?;
        let reply: Json = serde_json::from_slice(&line).unwrap_or(Json::Null);
        Ok(reply.get("total").and_then(Json::as_u64))
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        // bizon's incremental call: the records after the last run (here: the watermark)
        let state = match (ctx.sync_mode, &ctx.watermark) {
            (SyncMode::Incremental, Some(w)) => {
                json!({"last_run": w, "cursor_field": ctx.cursor_field, "state": {}})
            }
            _ => Json::Null,
        };
        let extracted_at = now_micros();
        let (line, class) = self.request(&json!({"op": "get", "pagination": pagination, "state": state}))?;
        let head: Json = serde_json::from_slice(&line).map_err(|e| {
            Error::internal(format!(
                "{}: unreadable answer {:?}: {e}",
                self.describe(&class),
                String::from_utf8_lossy(&line)
            ))
        })?;
        let n = head.get("n").and_then(Json::as_u64).unwrap_or(0) as usize;
        let bytes = head.get("bytes").and_then(Json::as_u64).unwrap_or(0) as usize;
        let mut body = Vec::new();
        self.worker()?.0.read_exact(bytes, &mut body)?;
        let mut records = RecordBatch::with_capacity(n, bytes);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, |b| *b == b'\t');
            let (Some(id), Some(ts), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Error::internal(format!(
                    "{}: a record line without its three fields",
                    self.describe(&class)
                )));
            };
            let id: String = serde_json::from_slice(id).unwrap_or_default();
            let ts = std::str::from_utf8(ts).ok().and_then(|t| t.parse().ok()).unwrap_or(extracted_at);
            records.push(&id, ts, data);
        }
        if records.len() != n {
            return Err(Error::internal(format!(
                "{}: {} records arrived, {n} announced",
                self.describe(&class),
                records.len()
            )));
        }
        let next = head.get("next").cloned().unwrap_or(Json::Null);
        Ok(Page { records, next, cursor_max: None, extracted_at })
    }
}

/// The stand-in package on disk (written once per content: the directory name carries its digest).
fn shim_dir() -> Result<PathBuf> {
    let digest = SHIM.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, (p, c)| {
        p.bytes().chain(c.bytes()).fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    });
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("bizon-rs");
    let dir = base.join(format!("python-{digest:016x}"));
    if dir.join("bizon/__init__.py").is_file() {
        return Ok(dir);
    }
    let io = |what: &str, e: std::io::Error| {
        Error::config(format!("cannot write the bizon stand-in package to {what}: {e}"))
    };
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = base.join(format!("python-{digest:016x}.{}.{n}", std::process::id()));
    for (path, content) in SHIM {
        let file = staging.join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(&staging))
            .map_err(|e| io(&staging.display().to_string(), e))?;
        std::fs::write(&file, content).map_err(|e| io(&file.display().to_string(), e))?;
    }
    // another run may have written it meanwhile: theirs is the same bytes
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
