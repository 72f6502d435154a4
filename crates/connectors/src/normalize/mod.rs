//! `unnest: true` + `record_schemas` — the normalization stage between the transforms and the
//! destination (DESIGN.md §2): [`Unnested`] wraps the run's (routed) destination and rewrites
//! each record of a route that has a schema into a flat JSON object holding exactly the
//! schema's columns, in schema order, each value cast to its column's type. Every destination
//! then gets the same typed rows: the file destination writes them as its lines, PostgreSQL and
//! BigQuery map them onto their typed columns, the logger logs them.
//!
//! The casts accept everything the typed destinations store (PostgreSQL's binary and text COPY,
//! BigQuery's value checks), so the stage never refuses a record they would have loaded; what no
//! destination could store (`"forty"` for an INTEGER, an object for a BOOLEAN) is refused here,
//! naming the record, the column and the value, before any destination sees it. Under the
//! destination's `on_error: dead_letter` such a record goes to the dead-letter file instead.
//!
//! Each payload is parsed once (serde_json, values kept as their raw tokens so numbers keep the
//! digits they were written with) and the row is written straight into the outgoing page.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use bizon_core::config::ColumnConfig;
use bizon_core::record::{json_escape_into, DEAD_LETTER};
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

/// What a column's declared type casts values to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cast {
    /// STRING: strings as they are; numbers and booleans as their text; objects and arrays as
    /// their JSON text.
    Text,
    /// INTEGER: integers, floats without a fraction, integer strings.
    Integer,
    /// FLOAT: numbers as written, numeric strings as numbers (NaN/Infinity strings kept).
    Float,
    /// NUMERIC: numbers as written, numeric strings kept as strings (no digit is lost).
    Numeric,
    /// BOOLEAN: booleans, 0/1, and the strings PostgreSQL reads as booleans.
    Boolean,
    /// TIMESTAMP, DATETIME, DATE, TIME: strings and numbers as they are (the destination parses
    /// them); booleans, objects and arrays refused.
    Temporal,
    /// JSON, RECORD, BYTES, GEOGRAPHY, a destination's own type: kept as it is.
    Keep,
}

impl Cast {
    fn of(kind: &str) -> Self {
        match kind.trim().to_ascii_uppercase().as_str() {
            "STRING" | "TEXT" => Cast::Text,
            "INTEGER" | "INT64" | "INT" | "BIGINT" => Cast::Integer,
            "FLOAT" | "FLOAT64" | "DOUBLE" => Cast::Float,
            "NUMERIC" | "BIGNUMERIC" | "DECIMAL" => Cast::Numeric,
            "BOOLEAN" | "BOOL" => Cast::Boolean,
            "TIMESTAMP" | "TIMESTAMPTZ" | "DATETIME" | "DATE" | "TIME" => Cast::Temporal,
            _ => Cast::Keep,
        }
    }
}

/// One column of a schema.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// `"name":`, escaped once.
    key: Vec<u8>,
    /// The declared type, as written (for messages).
    kind: String,
    cast: Cast,
    required: bool,
    repeated: bool,
}

/// The columns of one route's records, in output order.
#[derive(Debug, Clone)]
pub struct Schema {
    columns: Vec<Column>,
}

impl Schema {
    /// Columns as (name, type, mode).
    pub fn new<'a>(columns: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>) -> Self {
        let columns = columns
            .into_iter()
            .map(|(name, kind, mode)| {
                let mut key = vec![b'"'];
                json_escape_into(&mut key, name.as_bytes());
                key.extend_from_slice(b"\":");
                let mode = mode.unwrap_or("NULLABLE").trim();
                Column {
                    name: name.to_owned(),
                    key,
                    kind: kind.to_owned(),
                    cast: Cast::of(kind),
                    required: mode.eq_ignore_ascii_case("REQUIRED"),
                    repeated: mode.eq_ignore_ascii_case("REPEATED"),
                }
            })
            .collect();
        Schema { columns }
    }

    /// A `record_schemas` entry's columns.
    pub fn of_columns(columns: &[ColumnConfig]) -> Self {
        Self::new(columns.iter().map(|c| (c.name.as_str(), c.kind.as_str(), c.mode.as_deref())))
    }

    /// A `streams:` entry's `destination.record_schema` (a list of `{name, type, mode}`);
    /// `None` when it is not one (validation reports it).
    pub fn of_json(columns: &Json) -> Option<Self> {
        let cols = columns.as_array()?;
        let mut out = Vec::with_capacity(cols.len());
        for c in cols {
            out.push((c.get("name")?.as_str()?, c.get("type")?.as_str()?, c.get("mode").and_then(Json::as_str)));
        }
        Some(Self::new(out))
    }
}

/// Which schema each route's records follow.
#[derive(Debug, Clone)]
pub enum Routes {
    /// No `streams:`: every record (route 0) follows the destination's `record_schemas` entry.
    Single(Arc<Schema>),
    /// `streams:` entry `i` is route `i`: its `record_schema`, or `None` (records pass as they are).
    PerStream(Vec<Option<Arc<Schema>>>),
}

impl Routes {
    fn schema(&self, route: u16) -> Option<&Schema> {
        match self {
            _ if route == DEAD_LETTER => None,
            Routes::Single(s) => (route == 0).then_some(s.as_ref()),
            Routes::PerStream(v) => v.get(usize::from(route)).and_then(Option::as_deref),
        }
    }
}

/// Why a record cannot take its schema's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAnObject(String),
    Missing { column: String, kind: String },
    Cannot { column: String, kind: String, value: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAnObject(e) => write!(f, "not a JSON object, cannot unnest it: {e}"),
            Refusal::Missing { column, kind } => {
                write!(f, "column `{column}` ({kind}, REQUIRED) has no value")
            }
            Refusal::Cannot { column, kind, value } => write!(f, "column `{column}` ({kind}) cannot hold {value}"),
        }
    }
}

/// A raw token cut to 60 characters for a message.
fn short(raw: &str) -> String {
    match raw.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &raw[..at]),
        None => raw.to_owned(),
    }
}

/// A record's top-level fields: key, raw value token.
type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Deserializes a JSON object's fields into a reused vector (no map, values unparsed).
struct FieldsSeed<'v, 'a>(&'v mut Fields<'a>);

struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let v: &'de RawValue = map.next_value()?;
            self.0.push((k, v));
        }
        Ok(())
    }
}

/// Parse `data`'s top-level fields into `fields` (cleared first).
fn parse_fields<'a>(data: &'a [u8], fields: &mut Fields<'a>) -> std::result::Result<(), String> {
    fields.clear();
    let mut de = serde_json::Deserializer::from_slice(data);
    FieldsSeed(fields).deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// The text of a string token (unescaped only when it has escapes).
fn string_text(raw: &str) -> Cow<'_, str> {
    let inner = &raw[1..raw.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).map(Cow::Owned).unwrap_or(Cow::Borrowed(inner))
    } else {
        Cow::Borrowed(inner)
    }
}

/// An integer from a float that has no fraction and fits in 64 bits.
fn whole(x: f64) -> Option<i64> {
    (x.is_finite() && x.fract() == 0.0 && x.abs() < 9.2e18).then_some(x as i64)
}

/// PostgreSQL's `boolin` (case-insensitive, trimmed): unique prefixes of true/false/yes/no,
/// on/off, 1/0 — a superset of what the binary COPY and BigQuery accept.
fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| t.len() >= min && word.starts_with(t.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || t == "on" || t == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// A string a NUMERIC column takes: a decimal (NaN/Infinity too), with `_` between digits or as
/// a 0x/0o/0b integer (PostgreSQL 16 reads those).
fn numeric_text(s: &str) -> bool {
    let t = s.trim();
    if t.parse::<f64>().is_ok() {
        return true;
    }
    let plain: String = t.chars().filter(|c| *c != '_').collect();
    if !plain.is_empty() && plain.len() < t.len() && plain.parse::<f64>().is_ok() {
        return true;
    }
    let digits = plain.strip_prefix(['-', '+']).unwrap_or(&plain).to_ascii_lowercase();
    [("0x", 16), ("0o", 8), ("0b", 2)].iter().any(|(p, radix)| {
        digits.strip_prefix(p).is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_digit(*radix)))
    })
}

/// Append `raw` (one JSON token, not null) cast for a column of `cast`; `false` when the
/// column cannot hold it (`out` may then hold part of it: the caller drops the row).
fn cast_value(out: &mut Vec<u8>, cast: Cast, raw: &str) -> bool {
    let first = raw.as_bytes().first().copied().unwrap_or(b'n');
    let is_string = first == b'"';
    let is_bool = first == b't' || first == b'f';
    let is_nested = first == b'{' || first == b'[';
    let is_number = !is_string && !is_bool && !is_nested;
    match cast {
        Cast::Keep => out.extend_from_slice(raw.as_bytes()),
        Cast::Text => {
            if is_string {
                out.extend_from_slice(raw.as_bytes());
            } else {
                out.push(b'"');
                json_escape_into(out, raw.as_bytes());
                out.push(b'"');
            }
        }
        Cast::Integer => {
            let n = if is_number {
                raw.parse::<i64>().ok().or_else(|| raw.parse::<f64>().ok().and_then(whole))
            } else if is_string {
                let text = string_text(raw);
                let t = text.trim();
                t.parse::<i64>().ok().or_else(|| t.parse::<f64>().ok().and_then(whole))
            } else {
                None
            };
            match n {
                Some(n) => {
                    let _ = write!(out, "{n}");
                }
                None => return false,
            }
        }
        Cast::Float => {
            if is_number {
                out.extend_from_slice(raw.as_bytes());
            } else if is_string {
                match string_text(raw).trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => {
                        let _ = serde_json::to_writer(&mut *out, &x);
                    }
                    // NaN, Infinity: no JSON number holds them; the destinations read the text
                    Ok(_) => out.extend_from_slice(raw.as_bytes()),
                    Err(_) => return false,
                }
            } else {
                return false;
            }
        }
        Cast::Numeric => {
            if is_number || (is_string && numeric_text(&string_text(raw))) {
                out.extend_from_slice(raw.as_bytes());
            } else {
                return false;
            }
        }
        Cast::Boolean => {
            let b = if is_bool {
                Some(first == b't')
            } else if is_string {
                parse_bool(&string_text(raw))
            } else {
                match raw {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                }
            };
            match b {
                Some(true) => out.extend_from_slice(b"true"),
                Some(false) => out.extend_from_slice(b"false"),
                None => return false,
            }
        }
        Cast::Temporal => {
            if is_string || is_number {
                out.extend_from_slice(raw.as_bytes());
            } else {
                return false;
            }
        }
    }
    true
}

/// Append the row of the record whose fields are `fields` for `schema` to `out`.
fn write_row(
    out: &mut Vec<u8>,
    schema: &Schema,
    fields: &[(Cow<'_, str>, &RawValue)],
) -> std::result::Result<(), Refusal> {
    out.push(b'{');
    // records mostly list their keys in schema order: look from where the last one was found
    let mut hint = 0;
    for (k, col) in schema.columns.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&col.key);
        let found = (hint..fields.len())
            .chain(0..hint.min(fields.len()))
            .find(|&j| fields[j].0 == col.name.as_str())
            .map(|j| {
                hint = j + 1;
                fields[j].1.get()
            });
        let raw = match found {
            Some(raw) if raw != "null" => raw,
            _ if col.required => return Err(Refusal::Missing { column: col.name.clone(), kind: col.kind.clone() }),
            _ => {
                out.extend_from_slice(b"null");
                continue;
            }
        };
        let refuse =
            |value: &str| Refusal::Cannot { column: col.name.clone(), kind: col.kind.clone(), value: short(value) };
        if col.repeated && raw.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(raw).map_err(|_| refuse(raw))?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let item = item.get();
                if item == "null" {
                    out.extend_from_slice(b"null");
                } else if !cast_value(out, col.cast, item) {
                    return Err(refuse(item));
                }
            }
            out.push(b']');
        } else if !cast_value(out, col.cast, raw) {
            return Err(refuse(raw));
        }
    }
    out.push(b'}');
    Ok(())
}

/// The row of one record (`data`) for `schema`, appended to `out`; `fields` is scratch space.
pub fn normalize_record<'a>(
    out: &mut Vec<u8>,
    schema: &Schema,
    data: &'a [u8],
    fields: &mut Fields<'a>,
) -> std::result::Result<(), Refusal> {
    parse_fields(data, fields).map_err(Refusal::NotAnObject)?;
    write_row(out, schema, fields)
}

/// `{"source_record_id", "error", "record"}`: the dead-letter row of a record the stage
/// refused (the record as it arrived; as a string when it is not JSON).
fn dead_letter_row(out: &mut Vec<u8>, id: &str, error: &str, record: &[u8]) {
    out.extend_from_slice(b"{\"source_record_id\":\"");
    json_escape_into(out, id.as_bytes());
    out.extend_from_slice(b"\",\"stage\":\"unnest\",\"error\":\"");
    json_escape_into(out, error.as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    if serde_json::from_slice::<serde::de::IgnoredAny>(record).is_ok() {
        out.extend_from_slice(record);
    } else {
        out.push(b'"');
        json_escape_into(out, String::from_utf8_lossy(record).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// The run's destination behind the normalization stage.
pub struct Unnested {
    inner: Box<dyn Destination>,
    routes: Routes,
    /// The destination's `on_error: dead_letter`: refused records go to the dead-letter route.
    dead_letter: bool,
    /// Records refused into the dead-letter route since the last `take_dead_lettered`.
    diverted: u64,
}

impl Unnested {
    pub fn new(inner: Box<dyn Destination>, routes: Routes, dead_letter: bool) -> Self {
        Unnested { inner, routes, dead_letter, diverted: 0 }
    }

    /// The page with every record of a route that has a schema rewritten to its row.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut out = RecordBatch::with_capacity(batch.len(), batch.byte_len());
        let mut fields: Fields<'_> = Vec::new();
        let mut row = Vec::with_capacity(256);
        for (i, r) in batch.iter().enumerate() {
            let route = batch.route(i);
            let Some(schema) = self.routes.schema(route) else {
                out.push_routed(route, r.id, r.timestamp, |o| o.extend_from_slice(r.data));
                continue;
            };
            row.clear();
            match normalize_record(&mut row, schema, r.data, &mut fields) {
                Ok(()) => out.push_routed(route, r.id, r.timestamp, |o| o.extend_from_slice(&row)),
                Err(e) if self.dead_letter => {
                    let error = e.to_string();
                    tracing::warn!(record = %r.id, error = %error, "record sent to the dead-letter file");
                    out.push_routed(DEAD_LETTER, r.id, r.timestamp, |o| dead_letter_row(o, r.id, &error, r.data));
                    self.diverted += 1;
                }
                Err(e) => {
                    return Err(Error::permanent(format!(
                        "unnest: record `{}`: {e} (the destination's `on_error: dead_letter` diverts such records)",
                        r.id
                    )))
                }
            }
        }
        Ok(out)
    }
}

impl Destination for Unnested {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.inner.open(ctx, resume)
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        let out = self.apply(batch)?;
        self.inner.write(&out, meta)
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        self.inner.flush(next)
    }

    fn finalize(&mut self) -> Result<()> {
        self.inner.finalize()
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.inner.take_rejected()
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.diverted) + self.inner.take_dead_lettered()
    }

    fn recover_cursor(&mut self, ctx: &DestinationContext) -> Result<Option<DestinationCursor>> {
        self.inner.recover_cursor(ctx)
    }
}

#[cfg(test)]
mod tests;
