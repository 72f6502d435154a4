//! `jq:` transforms — the native transform language for new pipelines: jq, as the jaq crates
//! implement it, compiled once (at `config validate`, and once per consumer) and run in-process,
//! each page split over the cores. A program sees the record's payload as `.`: its one output
//! replaces the payload, no output drops the record (`select`), more than one is an error.
//! Beside jq's own filters (map, select, `tostring`/`tonumber`, `del`, `with_entries`, …):
//! `route("stream")` sends the record to a `streams:` entry, `sha256` hashes a value (a string's
//! UTF-8 bytes, anything else its compact JSON), `rename(from; to)` renames a key.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::Arc;

use bizon_core::config::{OnError, TransformConfig};
use bizon_core::record::{json_escape_into, DEAD_LETTER};
use bizon_core::{Error, RecordBatch, Result};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{bome, v, Fun};
use jaq_core::{data::JustLut, Compiler, Ctx, DataT, Native, RunPtr, ValT, Vars};
use jaq_json::{Num, Val};

type D = JustLut<Val>;
type Program = jaq_core::Filter<D>;

/// Definitions added to jq's standard library.
const DEFS: &str = r#"def rename($from; $to): if has($from) then .[$to] = .[$from] | del(.[$from]) else . end;"#;

/// Pages smaller than this run on one thread.
const MIN_SHARE: usize = 256;

thread_local! {
    /// The stream the record being run asked for with `route(...)`.
    static ROUTE: RefCell<Option<Val>> = const { RefCell::new(None) };
}

/// A program that does not compile: where (a byte offset in its code) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

/// Our native filters: `route($stream)` and `sha256`.
fn natives<D: DataT>() -> impl Iterator<Item = Fun<D>>
where
    for<'a> D::V<'a>: ValT + Into<Val> + From<Val>,
{
    let route: RunPtr<D> = |mut cv| {
        let stream = cv.0.pop_var();
        ROUTE.with(|r| *r.borrow_mut() = Some(stream.into()));
        bome(Ok(cv.1))
    };
    let sha256: RunPtr<D> = |cv| {
        use sha2::Digest as _;
        let v: Val = cv.1.into();
        let digest = match &v {
            Val::TStr(s) | Val::BStr(s) => sha2::Sha256::digest(&s[..]),
            other => {
                let mut json = Vec::new();
                let _ = write_val(&mut json, other);
                sha2::Sha256::digest(&json)
            }
        };
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        bome(Ok(Val::utf8_str(hex.into_bytes()).into()))
    };
    [("route", v(1), Native::new(route)), ("sha256", v(0), Native::new(sha256))].into_iter()
}

/// Compile one program with jq's standard library and ours.
pub fn compile(code: &str) -> std::result::Result<Arc<Program>, CompileError> {
    let ours = load::parse(DEFS, |p| p.defs()).expect("our jq definitions parse");
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).chain(ours);
    let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs()).chain(natives());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    // where a part (a slice of the code) starts; one from elsewhere is placed at the start
    let at = |part: &str| {
        let (p, c) = (part.as_ptr() as usize, code.as_ptr() as usize);
        if p >= c && p <= c + code.len() {
            p - c
        } else {
            0
        }
    };
    let modules = loader.load(&arena, File { code, path: () }).map_err(|errors| {
        let Some((_, e)) = errors.into_iter().next() else {
            return CompileError { offset: 0, message: "does not load".into() };
        };
        match e {
            load::Error::Lex(v) if !v.is_empty() => match &v[0] {
                // placed at the delimiter left open, not at the end where it was missed
                (load::lex::Expect::Delim(open), _) => {
                    CompileError { offset: at(open), message: format!("`{open}` is never closed") }
                }
                (expect, part) => CompileError { offset: at(part), message: format!("expected {}", expect.as_str()) },
            },
            load::Error::Parse(v) if !v.is_empty() => {
                let (expect, part) = &v[0];
                let found = if part.is_empty() { "the end".to_owned() } else { format!("`{}`", first_token(part)) };
                CompileError { offset: at(part), message: format!("expected {}, found {found}", expect.as_str()) }
            }
            load::Error::Io(v) if !v.is_empty() => {
                CompileError { offset: at(v[0].0), message: format!("cannot load: {}", v[0].1) }
            }
            _ => CompileError { offset: 0, message: "does not parse".into() },
        }
    })?;
    let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
        let e = errors.into_iter().flat_map(|(_, e)| e).next();
        match e {
            Some((name, undefined)) => {
                let arity = match undefined {
                    jaq_core::compile::Undefined::Filter(n) => format!("/{n}"),
                    _ => String::new(),
                };
                CompileError { offset: at(name), message: format!("undefined {} `{name}{arity}`", undefined.as_str()) }
            }
            None => CompileError { offset: 0, message: "does not compile".into() },
        }
    })?;
    Ok(Arc::new(filter))
}

/// The first token of the rest of a program, for "found `…`".
fn first_token(rest: &str) -> &str {
    let rest = rest.trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| i > 0 && (c.is_whitespace() || "()[]{}|,;:".contains(c)))
        .map_or(rest.len(), |(i, _)| i);
    &rest[..end.min(40)]
}

/// What became of one record.
enum Fate {
    /// Its new payload ends at this offset of the chunk's buffer; its route.
    Out { end: usize, route: u16 },
    /// No output: filtered out.
    Dropped,
    /// A dead letter from upstream: passed on as it came.
    Untouched,
    /// The transform at this index failed; why.
    Failed(usize, String),
}

/// One thread's share of a page.
#[derive(Default)]
struct Chunk {
    out: Vec<u8>,
    fates: Vec<Fate>,
}

/// Consecutive `jq` transforms of a pipeline, run on every core.
pub struct JqStage {
    transforms: Vec<TransformConfig>,
    programs: Vec<Arc<Program>>,
    /// `streams:` names, by route.
    streams: Arc<Vec<String>>,
    threads: usize,
}

/// Threads a stage splits a page over: `BIZON_TRANSFORM_THREADS`, default the cores (at most 4).
pub fn thread_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    std::env::var("BIZON_TRANSFORM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(cores)
}

impl JqStage {
    /// Compile the programs (config validation has already placed any error in the file).
    pub fn new(transforms: Vec<TransformConfig>, streams: Vec<String>) -> Result<Self> {
        let programs = transforms
            .iter()
            .map(|t| {
                compile(t.jq.as_deref().unwrap_or_default())
                    .map_err(|e| Error::config(format!("transform `{}` does not compile: {}", t.label, e.message)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JqStage { transforms, programs, streams: Arc::new(streams), threads: thread_count() })
    }

    /// The page after the programs, and how many records went to the dead-letter file.
    pub fn apply(&self, batch: &RecordBatch) -> Result<(RecordBatch, u64)> {
        let n = batch.len();
        let k = self.threads.min(n.div_ceil(MIN_SHARE)).max(1);
        let share = n.div_ceil(k).max(1);
        let range = |w: usize| (w * share).min(n)..((w + 1) * share).min(n);
        let chunks: Vec<Chunk> = if k == 1 {
            vec![self.run(batch, range(0))]
        } else {
            std::thread::scope(|s| {
                let others: Vec<_> = (1..k).map(|w| s.spawn(move || self.run(batch, range(w)))).collect();
                let mut chunks = vec![self.run(batch, range(0))];
                chunks.extend(others.into_iter().map(|h| h.join().unwrap_or_default()));
                chunks
            })
        };
        let mut out = RecordBatch::with_capacity(n, batch.byte_len() + batch.byte_len() / 4);
        let mut diverted = 0u64;
        for (w, chunk) in chunks.iter().enumerate() {
            if chunk.fates.len() != range(w).len() {
                return Err(Error::internal("a jq transform thread panicked"));
            }
            let mut start = 0;
            for (i, fate) in range(w).zip(&chunk.fates) {
                let r = batch.get(i);
                match fate {
                    Fate::Out { end, route } => {
                        out.push_routed(*route, r.id, r.timestamp, |o| o.extend_from_slice(&chunk.out[start..*end]));
                        start = *end;
                    }
                    Fate::Dropped => {}
                    Fate::Untouched => out.push_routed(DEAD_LETTER, r.id, r.timestamp, |o| o.extend_from_slice(r.data)),
                    Fate::Failed(t, msg) => {
                        let label = &self.transforms[*t].label;
                        if self.transforms[*t].on_error == OnError::Fail {
                            return Err(Error::permanent(format!(
                                "transform `{label}` failed on record `{}`: {msg} (set `on_error: dead_letter` on the transform to divert such records)",
                                r.id
                            )));
                        }
                        tracing::warn!(record = %r.id, transform = %label, error = %msg, "record sent to the dead-letter file");
                        out.push_routed(DEAD_LETTER, r.id, r.timestamp, |o| {
                            super::dead_letter_row(o, r.id, label, msg, r.data)
                        });
                        diverted += 1;
                    }
                }
            }
        }
        Ok((out, diverted))
    }

    /// Run the programs over records `range` of `batch`.
    fn run(&self, batch: &RecordBatch, range: std::ops::Range<usize>) -> Chunk {
        let mut chunk = Chunk { out: Vec::with_capacity(range.len() * 256), fates: Vec::with_capacity(range.len()) };
        for i in range {
            let fate = if batch.route(i) == DEAD_LETTER {
                Fate::Untouched
            } else {
                self.record(batch.get(i).data, batch.route(i), &mut chunk.out)
            };
            chunk.fates.push(fate);
        }
        chunk
    }

    /// One record through every program, its output appended to `out`.
    fn record(&self, data: &[u8], route: u16, out: &mut Vec<u8>) -> Fate {
        let mut value = match jaq_json::read::parse_single(data) {
            Ok(v) => v,
            Err(e) => return Fate::Failed(0, format!("the record is not JSON: {e}")),
        };
        let mut route = route;
        for (t, program) in self.programs.iter().enumerate() {
            ROUTE.with(|r| *r.borrow_mut() = None);
            let ctx = Ctx::<D>::new(&program.lut, Vars::new([]));
            let mut outputs = program.id.run((ctx, value)).map(jaq_core::unwrap_valr);
            value = match (outputs.next(), outputs.next()) {
                (None, _) => return Fate::Dropped,
                (Some(Err(e)), _) => return Fate::Failed(t, error_text(&e)),
                (Some(Ok(v)), None) => v,
                (Some(Ok(_)), Some(_)) => {
                    return Fate::Failed(
                        t,
                        format!(
                            "the program gave {} outputs; a transform gives one (wrap several in `[...]`)",
                            2 + outputs.count()
                        ),
                    )
                }
            };
            if let Some(stream) = ROUTE.with(|r| r.borrow_mut().take()) {
                match self.route_of(&stream) {
                    Ok(r) => route = r,
                    Err(msg) => return Fate::Failed(t, msg),
                }
            }
        }
        let start = out.len();
        match write_val(out, &value) {
            Ok(()) => Fate::Out { end: out.len(), route },
            Err(msg) => {
                out.truncate(start);
                Fate::Failed(self.programs.len() - 1, msg)
            }
        }
    }

    /// The route of a `streams:` entry named by `route(...)`.
    fn route_of(&self, stream: &Val) -> std::result::Result<u16, String> {
        let name = match stream {
            Val::TStr(s) => String::from_utf8_lossy(s).into_owned(),
            other => return Err(format!("route() takes a stream name, got {other}")),
        };
        match self.streams.iter().position(|s| *s == name) {
            Some(i) => Ok(i as u16),
            None if self.streams.is_empty() => {
                Err(format!("route(\"{name}\"): the config has no `streams:` to route to"))
            }
            None => Err(format!("route(\"{name}\"): no such stream (streams: {})", self.streams.join(", "))),
        }
    }
}

/// An error a program raised, as its text (`error("…")` gives the string itself).
fn error_text(e: &jaq_core::Error<Val>) -> String {
    let s = e.to_string();
    match serde_json::from_str::<String>(&s) {
        Ok(text) => text,
        Err(_) => s,
    }
}

/// Compact JSON of a value, as serde_json writes it; NaN and infinities are refused.
fn write_val(out: &mut Vec<u8>, v: &Val) -> std::result::Result<(), String> {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(Num::Float(f)) if !f.is_finite() => return Err(format!("{f} cannot be written as JSON")),
        Val::Num(n) => {
            let _ = write!(out, "{n}");
        }
        Val::TStr(s) | Val::BStr(s) => write_str(out, s),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_val(out, item)?;
            }
            out.push(b']');
        }
        Val::Obj(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Val::TStr(s) | Val::BStr(s) => write_str(out, s),
                    other => return Err(format!("an object key must be a string, not {other}")),
                }
                out.push(b':');
                write_val(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    match std::str::from_utf8(s) {
        Ok(_) => json_escape_into(out, s),
        Err(_) => json_escape_into(out, String::from_utf8_lossy(s).as_bytes()),
    }
    out.push(b'"');
}

/// Where a compile error's byte `offset` in a transform's code lies in the config file: the
/// code's scalar starts at `mark` (the 1-based line and column of its first character, or of
/// its opening quote) in `text`.
pub fn place_in_file(text: &str, mark: bizon_core::config::yaml::Mark, code: &str, offset: usize) -> (usize, usize) {
    let before = &code[..offset.min(code.len())];
    let k = before.matches('\n').count();
    let c = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
    let Some(line) = text.lines().nth(mark.line.saturating_sub(1)) else { return (mark.line, mark.col) };
    let lead: String = line.chars().take(mark.col.saturating_sub(1)).collect();
    match line.chars().nth(mark.col.saturating_sub(1)) {
        // quoted: past the quote (escapes aside)
        Some('"' | '\'') if k == 0 => (mark.line, mark.col + 1 + c),
        // a block scalar (`|`) starts its own line, and its lines keep that indentation
        _ if lead.trim().is_empty() => (mark.line + k, mark.col + c),
        _ if k == 0 => (mark.line, mark.col + c),
        _ => (mark.line + k, c + 1),
    }
}
