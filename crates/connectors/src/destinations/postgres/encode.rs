//! Rows in PostgreSQL's COPY formats: bizon's layout in binary, typed columns in binary or text,
//! and the single-pass JSON field scanner they read records with. The hot path: no per-record
//! allocation.

use bizon_core::{BatchMeta, Error, RecordBatch, Rejected, Result};

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
pub(super) const PG_EPOCH_OFFSET: i64 = 946_684_800_000_000;
pub(super) const COPY_CHUNK: usize = 256 << 10;
pub(super) const COLUMNS: &str =
    "bizon_id, bizon_extracted_at, bizon_loaded_at, source_record_id, source_timestamp, source_data";
pub(super) const META_COLUMNS: &str =
    "bizon_id, bizon_extracted_at, bizon_loaded_at, source_record_id, source_timestamp";

pub(super) const META_DDL: &str = "bizon_id text NOT NULL, bizon_extracted_at timestamptz NOT NULL, \
    bizon_loaded_at timestamptz NOT NULL, source_record_id text NOT NULL, source_timestamp timestamptz NOT NULL";

/// `bizon_id` of the records of one batch: job digest and iteration fixed, index per record
/// (the same 32 hex digits the file destination writes).
pub(super) struct BizonId([u8; 32]);

impl BizonId {
    const HEX: &'static [u8; 16] = b"0123456789abcdef";

    pub(super) fn new(meta: &BatchMeta) -> Self {
        let mut id = [0u8; 32];
        for (k, slot) in id[..16].iter_mut().enumerate() {
            *slot = Self::HEX[((meta.job_hash >> ((15 - k) * 4)) & 15) as usize];
        }
        for (k, slot) in id[16..24].iter_mut().enumerate() {
            *slot = Self::HEX[((meta.iteration as u64 >> ((7 - k) * 4)) & 15) as usize];
        }
        BizonId(id)
    }

    pub(super) fn at(&mut self, index: usize) -> &[u8; 32] {
        for (k, slot) in self.0[24..].iter_mut().enumerate() {
            *slot = Self::HEX[((index as u64 >> ((7 - k) * 4)) & 15) as usize];
        }
        &self.0
    }
}

/// Binary COPY `timestamptz` field (length-prefixed).
pub(super) fn push_timestamp(out: &mut Vec<u8>, micros: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&(micros - PG_EPOCH_OFFSET).to_be_bytes());
}

/// bizon's metadata columns of record `i` in binary COPY format (`META_COLUMNS` order).
pub(super) fn push_binary_meta(
    out: &mut Vec<u8>,
    id: &mut BizonId,
    i: usize,
    r: &bizon_core::record::RecordRef<'_>,
    meta: &BatchMeta,
) {
    out.extend_from_slice(&32i32.to_be_bytes());
    out.extend_from_slice(id.at(i));
    push_timestamp(out, meta.extracted_at);
    push_timestamp(out, meta.loaded_at);
    out.extend_from_slice(&(r.id.len() as i32).to_be_bytes());
    out.extend_from_slice(r.id.as_bytes());
    push_timestamp(out, r.timestamp);
}

/// Append rows `range` of `batch` in PostgreSQL's binary COPY format.
pub(super) fn encode_rows(out: &mut Vec<u8>, batch: &RecordBatch, range: std::ops::Range<usize>, meta: &BatchMeta) {
    let mut id = BizonId::new(meta);
    for i in range {
        let r = batch.get(i);
        out.extend_from_slice(&6i16.to_be_bytes());
        push_binary_meta(out, &mut id, i, &r, meta);
        out.extend_from_slice(&(r.data.len() as i32 + 1).to_be_bytes());
        out.push(1); // jsonb format version
        out.extend_from_slice(r.data);
    }
}

/// How a typed column is encoded in binary COPY format (the types the server would parse
/// fastest); a table with any other type is loaded in text format instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinKind {
    Text,
    Int8,
    Float8,
    Bool,
    Timestamptz,
    Timestamp,
    Date,
    Jsonb,
}

impl BinKind {
    pub(super) fn of(pg_type: &str) -> Option<Self> {
        Some(match pg_type {
            "text" => BinKind::Text,
            "bigint" => BinKind::Int8,
            "double precision" => BinKind::Float8,
            "boolean" => BinKind::Bool,
            "timestamptz" => BinKind::Timestamptz,
            "timestamp" => BinKind::Timestamp,
            "date" => BinKind::Date,
            "jsonb" => BinKind::Jsonb,
            _ => return None,
        })
    }
}

/// Unescaped text of a raw JSON token: strings without their quotes, anything else as written.
pub(super) fn token_text(raw: &str) -> std::result::Result<std::borrow::Cow<'_, str>, String> {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if inner.contains('\\') {
            return serde_json::from_str::<String>(raw).map(std::borrow::Cow::Owned).map_err(|e| e.to_string());
        }
        return Ok(std::borrow::Cow::Borrowed(inner));
    }
    Ok(std::borrow::Cow::Borrowed(raw))
}

/// Append one typed value (length-prefixed) in binary COPY format.
///
/// The encoders' errors stay `String` on purpose (STYLE rule 5's exception for the hot path):
/// they run per value, they have one meaning (this record does not fit its column: a
/// rejection, dead-lettered or failing the write as `Permanent`), and their text goes as it is
/// into `Rejected::error` and the dead-letter row. An enum would only be formatted back into
/// that string, with a second match per value to say nothing more.
pub(super) fn push_binary_value(out: &mut Vec<u8>, kind: BinKind, raw: &str) -> std::result::Result<(), String> {
    let fixed = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    let text = token_text(raw)?;
    let bad = |what: &str| format!("expected {what}, found {raw:.60}");
    match kind {
        BinKind::Text => fixed(out, text.as_bytes()),
        BinKind::Jsonb => {
            out.extend_from_slice(&(raw.len() as i32 + 1).to_be_bytes());
            out.push(1);
            out.extend_from_slice(raw.as_bytes());
        }
        BinKind::Int8 => {
            let v: i64 = text.trim().parse().map_err(|_| bad("an integer"))?;
            fixed(out, &v.to_be_bytes());
        }
        BinKind::Float8 => {
            let v: f64 = text.trim().parse().map_err(|_| bad("a number"))?;
            fixed(out, &v.to_be_bytes());
        }
        BinKind::Bool => {
            let v = match text.as_ref() {
                "true" | "t" | "1" => 1u8,
                "false" | "f" | "0" => 0u8,
                _ => return Err(bad("true or false")),
            };
            fixed(out, &[v]);
        }
        BinKind::Timestamptz | BinKind::Timestamp => {
            let micros = bizon_core::time::parse_rfc3339(&text).ok_or_else(|| bad("an RFC 3339 timestamp"))?;
            fixed(out, &(micros - PG_EPOCH_OFFSET).to_be_bytes());
        }
        BinKind::Date => {
            let micros =
                bizon_core::time::parse_rfc3339(&format!("{}T00:00:00Z", text.trim())).ok_or_else(|| bad("a date"))?;
            let days = (micros - PG_EPOCH_OFFSET).div_euclid(86_400_000_000) as i32;
            fixed(out, &days.to_be_bytes());
        }
    }
    Ok(())
}

/// Rows in binary COPY format for typed columns (all of a [`BinKind`]), then bizon's metadata.
/// `rejected`: under a dead-letter policy, records a typed column cannot hold are left out and
/// collected there with their error instead of failing the batch.
pub(super) fn encode_typed_binary_rows(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    range: std::ops::Range<usize>,
    meta: &BatchMeta,
    cols: &[(String, BinKind)],
    mut rejected: Option<&mut Vec<Rejected>>,
) -> Result<()> {
    let mut id = BizonId::new(meta);
    let nfields = (cols.len() + 5) as i16;
    let mut spans = Vec::new();
    for i in range {
        let r = batch.get(i);
        let row_start = out.len();
        let encoded = (|| -> std::result::Result<(), String> {
            let fields = Fields::parse_into(r.data, std::mem::take(&mut spans))
                .map_err(|e| format!("not a JSON object, cannot unnest it: {e}"))?;
            out.extend_from_slice(&nfields.to_be_bytes());
            for (name, kind) in cols {
                match fields.get(name) {
                    None | Some("null") => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(raw) => push_binary_value(out, *kind, raw).map_err(|m| format!("column `{name}`: {m}"))?,
                }
            }
            spans = fields.into_spans();
            Ok(())
        })();
        match (encoded, rejected.as_deref_mut()) {
            (Ok(()), _) => push_binary_meta(out, &mut id, i, &r, meta),
            (Err(e), Some(rej)) => {
                out.truncate(row_start);
                rej.push(Rejected { id: r.id.to_owned(), timestamp: r.timestamp, data: r.data.to_vec(), error: e });
            }
            (Err(e), None) => return Err(Error::permanent(format!("record {}: {e}", r.id))),
        }
    }
    Ok(())
}

/// Append `s` in COPY text format (backslash, tab, newline and carriage return escaped).
pub(super) fn push_copy_text(out: &mut Vec<u8>, s: &[u8]) {
    // Most values need no escaping: one vectorizable scan, one copy.
    if !s.iter().any(|&b| b == b'\\' || b < 0x20) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// A record's top-level fields as raw JSON tokens (byte spans of the payload): a single pass
/// that allocates nothing per record and copies nothing. Values are checked by the server (and
/// strings with escapes unescaped by serde_json) when they are used.
pub(super) struct Fields<'a> {
    data: &'a [u8],
    /// (key start, key end, value start, value end), key without its quotes.
    spans: Vec<(usize, usize, usize, usize)>,
}

impl<'a> Fields<'a> {
    pub(super) fn parse_into(
        data: &'a [u8],
        spans: Vec<(usize, usize, usize, usize)>,
    ) -> std::result::Result<Self, String> {
        let mut f = Fields { data, spans };
        f.spans.clear();
        let n = data.len();
        let ws = |mut i: usize| {
            while i < n && data[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        // End of the string starting at the quote `i` (index after the closing quote).
        let string_end = |mut i: usize| -> std::result::Result<usize, String> {
            i += 1;
            while i < n {
                match data[i] {
                    b'\\' => i += 2,
                    b'"' => return Ok(i + 1),
                    _ => i += 1,
                }
            }
            Err("unterminated string".into())
        };
        let mut i = ws(0);
        if data.get(i) != Some(&b'{') {
            return Err("expected a JSON object".into());
        }
        i = ws(i + 1);
        if data.get(i) == Some(&b'}') {
            return Ok(f);
        }
        loop {
            if data.get(i) != Some(&b'"') {
                return Err(format!("expected a key at byte {i}"));
            }
            let key_end = string_end(i)?;
            let (ks, ke) = (i + 1, key_end - 1);
            i = ws(key_end);
            if data.get(i) != Some(&b':') {
                return Err(format!("expected `:` at byte {i}"));
            }
            let vs = ws(i + 1);
            let mut j = vs;
            let mut depth = 0usize;
            while j < n {
                match data[j] {
                    b'"' => {
                        j = string_end(j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b'}' if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let mut ve = j;
            while ve > vs && data[ve - 1].is_ascii_whitespace() {
                ve -= 1;
            }
            if ve == vs {
                return Err(format!("missing value at byte {vs}"));
            }
            f.spans.push((ks, ke, vs, ve));
            match data.get(j) {
                Some(b',') => i = ws(j + 1),
                Some(b'}') => return Ok(f),
                _ => return Err("unterminated object".into()),
            }
        }
    }

    /// Raw token of field `name` (keys compared as written, without unescaping).
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        let (_, _, vs, ve) = *self.spans.iter().find(|(ks, ke, _, _)| &self.data[*ks..*ke] == name.as_bytes())?;
        std::str::from_utf8(&self.data[vs..ve]).ok()
    }

    pub(super) fn into_spans(self) -> Vec<(usize, usize, usize, usize)> {
        self.spans
    }
}

/// Rows in COPY text format for typed columns: each record's JSON fields by name (`\N` when
/// absent or null; objects and arrays as JSON text), then bizon's metadata columns.
pub(super) fn encode_text_rows(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    range: std::ops::Range<usize>,
    meta: &BatchMeta,
    cols: &[(String, String)],
) -> Result<()> {
    use bizon_core::time::write_rfc3339;
    let mut id = BizonId::new(meta);
    let mut times = Vec::with_capacity(66);
    write_rfc3339(&mut times, meta.extracted_at);
    times.push(b'\t');
    write_rfc3339(&mut times, meta.loaded_at);
    let mut spans = Vec::new();
    for i in range {
        let r = batch.get(i);
        let fields = Fields::parse_into(r.data, std::mem::take(&mut spans))
            .map_err(|e| Error::permanent(format!("record {}: not a JSON object, cannot unnest it: {e}", r.id)))?;
        for (name, _) in cols {
            match fields.get(name) {
                None | Some("null") => out.extend_from_slice(b"\\N"),
                Some(raw) if raw.starts_with('"') => {
                    if raw.contains('\\') {
                        let v: String = serde_json::from_str(raw).map_err(|e| Error::permanent(e.to_string()))?;
                        push_copy_text(out, v.as_bytes());
                    } else {
                        push_copy_text(out, &raw.as_bytes()[1..raw.len() - 1]);
                    }
                }
                // numbers, true/false as written; objects and arrays as JSON text (jsonb columns)
                Some(raw) => push_copy_text(out, raw.as_bytes()),
            }
            out.push(b'\t');
        }
        spans = fields.into_spans();
        out.extend_from_slice(id.at(i));
        out.push(b'\t');
        out.extend_from_slice(&times);
        out.push(b'\t');
        push_copy_text(out, r.id.as_bytes());
        out.push(b'\t');
        write_rfc3339(out, r.timestamp);
        out.push(b'\n');
    }
    Ok(())
}
