//! `jq:` transforms — the native transform language for new pipelines: jq, as the jaq crates
//! implement it, compiled once (at `config validate`, and once per consumer) and run in-process,
//! each page split over the cores. A program sees the record's payload as `.`: its one output
//! replaces the payload, no output drops the record (`select`), more than one is an error.
//! Beside jq's own filters (map, select, `tostring`/`tonumber`, `del`, `with_entries`, …):
//! `route("stream")` sends the record to a `streams:` entry, `sha256` hashes a value (a string's
//! UTF-8 bytes, anything else its compact JSON), `rename(from; to)` renames a key.

use std::borrow::Cow;
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
    /// When every program is made of field-level steps only: those steps, run without jaq on
    /// the records they give the same bytes for (see [`FieldPlan`]).
    plan: Option<FieldPlan>,
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
        let plan = FieldPlan::of(transforms.iter().map(|t| t.jq.as_deref().unwrap_or_default()));
        Ok(JqStage { transforms, programs, plan, streams: Arc::new(streams), threads: thread_count() })
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
        if let Some(plan) = &self.plan {
            let start = out.len();
            if plan.run(data, out) {
                return Fate::Out { end: out.len(), route };
            }
            out.truncate(start);
        }
        self.interpret(data, route, out)
    }

    /// One record through jaq.
    fn interpret(&self, data: &[u8], route: u16, out: &mut Vec<u8>) -> Fate {
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

/// One field-level step of a program.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.k |= ascii_upcase` / `ascii_downcase`
    Case(String, bool),
    /// `.k |= sha256`
    Sha256(String),
    /// `.k = "text"` or an integer: the value's JSON
    Set(String, Vec<u8>),
    /// `del(.k)`
    Del(String),
    /// `rename("a"; "b")`
    Rename(String, String),
}

/// The common shape of a transform — a pipeline of `.k |= ascii_upcase`, `.k = "const"`,
/// `del(.k)`, `rename(..)`, `.k |= sha256` on top-level keys — run straight on the record's
/// bytes: no value tree, untouched values copied as they came. It is taken only for records it
/// gives jaq's bytes for (an object whose text jaq would write back unchanged: no escapes, no
/// whitespace inside values, no `-0`, no duplicate key; the keys a step reads present and
/// strings); any other record, and every other program, goes through jaq.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPlan(Vec<Step>);

impl FieldPlan {
    /// The plan of these programs run in order, if each is made of such steps only.
    pub fn of<'a>(programs: impl Iterator<Item = &'a str>) -> Option<FieldPlan> {
        use jaq_core::load::parse::Term;
        let mut steps = Vec::new();
        for code in programs {
            let term: Term<&str> = load::parse(code, |p| p.term())?;
            flatten(&term, &mut steps)?;
        }
        Some(FieldPlan(steps))
    }

    /// Run the plan on one record, appending its output; `false` (and `out` to be truncated)
    /// when the record must go through jaq.
    fn run(&self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(mut fields) = top_level(data) else { return false };
        for i in 1..fields.len() {
            if fields[..i].iter().any(|(k, _)| *k == fields[i].0) {
                return false;
            }
        }
        let find = |fields: &[Field<'_>], k: &str| fields.iter().position(|(f, _)| *f == k);
        for step in &self.0 {
            match step {
                Step::Case(k, upper) => {
                    let Some(i) = find(&fields, k) else { return false };
                    let v = fields[i].1.to_mut();
                    if v.first() != Some(&b'"') {
                        return false;
                    }
                    if *upper {
                        v.make_ascii_uppercase()
                    } else {
                        v.make_ascii_lowercase()
                    }
                }
                Step::Sha256(k) => {
                    use sha2::Digest as _;
                    let Some(i) = find(&fields, k) else { return false };
                    let v = &fields[i].1;
                    if v.len() < 2 || v[0] != b'"' {
                        return false;
                    }
                    let digest = sha2::Sha256::digest(&v[1..v.len() - 1]);
                    let mut hex = Vec::with_capacity(66);
                    hex.push(b'"');
                    hex.extend(digest.iter().flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]));
                    hex.push(b'"');
                    fields[i].1 = Cow::Owned(hex);
                }
                Step::Set(k, v) => set(&mut fields, k, Cow::Owned(v.clone())),
                Step::Del(k) => {
                    if let Some(i) = find(&fields, k) {
                        fields.swap_remove(i); // as jaq's index map does
                    }
                }
                Step::Rename(from, to) => {
                    if let Some(i) = find(&fields, from) {
                        let v = fields[i].1.clone();
                        set(&mut fields, to, v);
                        if let Some(i) = find(&fields, from) {
                            fields.swap_remove(i);
                        }
                    }
                }
            }
        }
        out.push(b'{');
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // a key holds no escape and no control character (checked when read)
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v);
        }
        out.push(b'}');
        true
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A top-level key and its value's JSON text.
type Field<'a> = (&'a str, Cow<'a, [u8]>);

/// `.k = v`: in place when `k` is there, else last.
fn set<'a>(fields: &mut Vec<Field<'a>>, k: &'a str, v: Cow<'a, [u8]>) {
    match fields.iter().position(|(f, _)| *f == k) {
        Some(i) => fields[i].1 = v,
        None => fields.push((k, v)),
    }
}

/// The top-level keys and values' text of a record jaq writes back as the same bytes: an
/// object, valid UTF-8, no escape and no control character anywhere (so a string ends at its
/// next quote), no whitespace inside a value, no `-0` (jaq writes `0`). `None` for any other.
fn top_level(data: &[u8]) -> Option<Vec<Field<'_>>> {
    // one pass the compiler vectorizes: no escape, no control character (raw line breaks too,
    // which compact records do not have)
    if data.iter().fold(false, |bad, &c| bad | (c < 0x20) | (c == b'\\')) {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let b = text.as_bytes();
    let ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')) {
            *i += 1;
        }
    };
    // the end (exclusive) of the string opening at `i`
    let string_end = |i: usize| memchr::memchr(b'"', &b[i + 1..]).map(|p| i + p + 2);
    let mut fields = Vec::with_capacity(16);
    let mut i = 0;
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let end = string_end(i)?;
            let key = &text[i + 1..end - 1];
            i = end;
            ws(&mut i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            ws(&mut i);
            let start = i;
            match b.get(i)? {
                b'"' => i = string_end(i)?,
                b'{' | b'[' => {
                    let mut depth = 0usize;
                    loop {
                        match b.get(i)? {
                            b'"' => {
                                i = string_end(i)?;
                                continue;
                            }
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => {
                                depth -= 1;
                                if depth == 0 {
                                    i += 1;
                                    break;
                                }
                            }
                            b' ' | b'\n' | b'\r' | b'\t' => return None,
                            b'-' if b.get(i + 1) == Some(&b'0')
                                && !matches!(b.get(i + 2), Some(b'.' | b'e' | b'E')) =>
                            {
                                return None
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    // nested values are rare in flat records: checked in full
                    serde_json::from_slice::<serde::de::IgnoredAny>(&b[start..i]).ok()?;
                }
                _ => {
                    while b.get(i).is_some_and(|c| !matches!(c, b',' | b'}' | b' ' | b'\n' | b'\r' | b'\t')) {
                        i += 1;
                    }
                    if !scalar(&text[start..i]) {
                        return None;
                    }
                }
            }
            fields.push((key, Cow::Borrowed(&b[start..i])));
            ws(&mut i);
            match b.get(i)? {
                b',' => {
                    i += 1;
                    ws(&mut i);
                }
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    ws(&mut i);
    (i == b.len()).then_some(fields)
}

/// `true`, `false`, `null` or a JSON number other than `-0`.
fn scalar(s: &str) -> bool {
    if matches!(s, "true" | "false" | "null") {
        return true;
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    let integral = i == b.len();
    if integral && s == "-0" {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// The steps of one term, if it is a pipeline of field-level steps.
fn flatten(term: &jaq_core::load::parse::Term<&str>, steps: &mut Vec<Step>) -> Option<()> {
    use jaq_core::load::parse::{BinaryOp, Term};
    match term {
        Term::BinOp(l, BinaryOp::Pipe(None), r) => {
            flatten(l, steps)?;
            flatten(r, steps)
        }
        Term::BinOp(l, BinaryOp::Update, r) => {
            let k = key(l)?;
            let step = match &**r {
                Term::Call("ascii_upcase", a) if a.is_empty() => Step::Case(k, true),
                Term::Call("ascii_downcase", a) if a.is_empty() => Step::Case(k, false),
                Term::Call("sha256", a) if a.is_empty() => Step::Sha256(k),
                _ => return None,
            };
            steps.push(step);
            Some(())
        }
        Term::BinOp(l, BinaryOp::Assign, r) => {
            let k = key(l)?;
            let v = match &**r {
                Term::Str(None, _) => {
                    let s = string(r)?;
                    let mut v = Vec::new();
                    write_str(&mut v, s.as_bytes());
                    v
                }
                // integers only: jaq keeps other numbers' text in ways not worth copying here
                Term::Num(n)
                    if !n.is_empty()
                        && n.len() < 16
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && (n.len() == 1 || !n.starts_with('0')) =>
                {
                    n.as_bytes().to_vec()
                }
                _ => return None,
            };
            steps.push(Step::Set(k, v));
            Some(())
        }
        Term::Call("del", a) if a.len() == 1 => {
            steps.push(Step::Del(key(&a[0])?));
            Some(())
        }
        Term::Call("rename", a) if a.len() == 2 => {
            steps.push(Step::Rename(string(&a[0])?, string(&a[1])?));
            Some(())
        }
        _ => None,
    }
}

/// `.k` or `."k"` / `.["k"]`: the key.
fn key(term: &jaq_core::load::parse::Term<&str>) -> Option<String> {
    use jaq_core::load::parse::Term;
    use jaq_core::path::{Opt, Part};
    match term {
        Term::Path(head, path) if matches!(**head, Term::Id) && path.0.len() == 1 => match &path.0[0] {
            (Part::Index(k), Opt::Essential) => string(k),
            _ => None,
        },
        _ => None,
    }
}

/// A string literal without escapes or interpolation.
fn string(term: &jaq_core::load::parse::Term<&str>) -> Option<String> {
    use jaq_core::load::lex::StrPart;
    use jaq_core::load::parse::Term;
    match term {
        Term::Str(None, parts) => match &parts[..] {
            [StrPart::Str(s)] if !s.contains('\\') => Some((*s).to_owned()),
            [] => Some(String::new()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn stage(code: &str) -> JqStage {
        let t = TransformConfig { label: "t".into(), python: None, jq: Some(code.into()), on_error: OnError::Fail };
        JqStage::new(vec![t], vec![]).unwrap()
    }

    #[test]
    fn field_level_programs_are_planned_and_others_are_not() {
        let plan = |c: &str| FieldPlan::of([c].into_iter());
        assert_eq!(
            plan(r#".name |= ascii_upcase | .origin = "bench""#),
            Some(FieldPlan(vec![Step::Case("name".into(), true), Step::Set("origin".into(), br#""bench""#.to_vec())]))
        );
        assert!(plan(r#"del(.a) | rename("b"; "c") | .d |= sha256 | .e = 42 | ."f g" |= ascii_downcase"#).is_some());
        for other in [
            ".",
            ".a.b = 1",
            ".a = 1.5",
            ".a = -1",
            ".a = \"x\\n\"",
            "select(.a)",
            ".a |= tostring",
            "del(.a, .b)",
            ".a = .b",
            ".[\"a\"]? = 1",
        ] {
            assert_eq!(plan(other), None, "{other}");
        }
    }

    /// The plan's bytes are jaq's, record by record; where it cannot promise that, jaq runs.
    #[test]
    fn the_plan_writes_what_jaq_writes() {
        let programs = [
            r#".name |= ascii_upcase | .origin = "bench""#,
            r#"del(.id) | .name |= ascii_downcase"#,
            r#"rename("name"; "n") | .x = 0 | del(.tags)"#,
            r#"rename("name"; "name")"#,
            r#"rename("name"; "id") | .id |= sha256"#,
            r#".name = "é ✓" | .tags = 7 | del(.missing)"#,
        ];
        let records = [
            r#"{"id":1,"name":"Bob é","tags":["a",{"b":null}],"n":1.50,"big":123456789012345678901234567890}"#,
            r#"{"name":"x","id":-0}"#,
            r#"{"name":"x","v":[1, 2]}"#,
            r#"{"name":"a\nb","id":2}"#,
            r#"{"name":"\u00e9","id":3}"#,
            r#"{"name":"x","name":"y"}"#,
            r#"{"name":5}"#,
            r#"{"id":4}"#,
            r#"{ "name" : "spaced" , "id" : -0.5 }"#,
            r#"[1,2]"#,
            r#"{}"#,
            r#"{"name":"x","a":-0.0,"b":1e-3,"c":true,"d":null,"e":[],"f":{},"g":-12}"#,
            r#"{"name":"x","bad":01}"#,
            r#"{"name":"x","bad":[1,,2]}"#,
            r#"{"name":"x"} trailing"#,
            "{\"name\":\"x\",\"v\":{\"a\":\"b c\",\"d\":[{}]}}",
            " {\"name\" :\"x\"} ",
            " \t{\"name\":\"x\"}\n",
        ];
        let mut planned = 0;
        for code in programs {
            let stage = stage(code);
            let plan = stage.plan.clone().unwrap_or_else(|| panic!("{code} is planned"));
            for r in records {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                let interpreted = stage.interpret(r.as_bytes(), 0, &mut slow);
                if plan.run(r.as_bytes(), &mut fast) {
                    planned += 1;
                    assert!(matches!(interpreted, Fate::Out { .. }), "{code} on {r}: jaq failed, the plan did not");
                    assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow), "{code} on {r}");
                }
                // and through the stage's own choice: always jaq's bytes or jaq's error
                let mut chosen = Vec::new();
                match (stage.record(r.as_bytes(), 0, &mut chosen), interpreted) {
                    (Fate::Out { .. }, Fate::Out { .. }) => assert_eq!(chosen, slow, "{code} on {r}"),
                    (Fate::Failed(_, a), Fate::Failed(_, b)) => assert_eq!(a, b),
                    _ => panic!("{code} on {r}: the stage and jaq disagree"),
                }
            }
        }
        assert!(planned >= 15, "the plan ran on the plain records ({planned})");
    }
}
