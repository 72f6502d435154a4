//! `postgres` destination: binary `COPY` in bizon's row layout, exactly-once.
//!
//! Rows of a flush interval are copied inside one transaction; the flush inserts the cursor that
//! covers them into `<schema>.bizon_destination_commits` and commits: rows and cursor become
//! visible together or not at all. A crash before that commit loses nothing (the engine resumes
//! from the previous cursor); a crash after it but before the backend stored the cursor is
//! recovered by [`Destination::recover_cursor`].
//!
//! - `full_refresh`: rows go to `<table>__bizon_staging`; `finalize` drops the target and renames
//!   the staging table in one transaction: readers see the old rows or the new ones.
//! - `incremental` / `stream`: rows are appended to the target.

use std::io::Write;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::SyncMode;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Guarantee, Json, RecordBatch, Rejected,
    Result,
};
use postgres::Client;
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{
    parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec, TableSpec,
};
use crate::pg::{pg_error, qualified, PgConnection};

/// The destination's own keys; the table is `destination_id` (default: the stream name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    #[serde(default = "crate::pg::default_host")]
    pub host: String,
    #[serde(default = "crate::pg::default_port")]
    pub port: u16,
    pub database: String,
    #[serde(default = "crate::pg::default_user")]
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Schema of the target table (created when missing).
    #[serde(default = "crate::pg::default_schema")]
    pub schema: String,
    #[serde(default)]
    pub sslmode: crate::pg::SslMode,
    /// CA certificates (PEM) for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Upsert on these comma-separated columns instead of appending (beyond bizon): the newest
    /// row per key wins. Typed columns with `unnest`, else bizon's (e.g. `source_record_id`).
    #[serde(default)]
    pub primary_key: Option<String>,
    /// A record whose value its typed column cannot hold (`unnest`): fail the run (default) or
    /// write it with its error to the dead-letter file (`dead_letter_path`, default
    /// `<destination_id>_dead_letter.json`) and load the rest.
    #[serde(default)]
    pub on_error: bizon_core::config::OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

/// The `postgres` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "postgres",
    description: "binary COPY in bizon's row layout; cursor committed with the rows",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: true,
        typed_columns: true,
        lanes: false,
        dead_letters: true,
        network: true,
    },
    keys: struct_fields::<PostgresConfig>,
    parse: parse_destination::<PostgresConfig>,
};

impl DestinationSpec for PostgresConfig {
    fn validate(&self, node: &Node) -> std::result::Result<(), yaml::Error> {
        self.connection()
            .validate()
            .map_err(|m| yaml::Error::new(m, node.get("sslmode").unwrap_or(node).mark, "destination.config"))
    }

    fn build(&self, destination_id: &str, typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(PostgresDestination::new(self, destination_id, typed))
    }

    fn build_routed(&self, tables: Vec<TableSpec>) -> Option<Box<dyn Destination>> {
        Some(Box::new(PostgresDestination::routed(self, tables)))
    }

    fn column_type(&self, kind: &str) -> std::result::Result<String, String> {
        pg_type(kind)
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.on_error, &self.dead_letter_path, destination_id)
    }
}

impl PostgresConfig {
    pub fn connection(&self) -> PgConnection {
        PgConnection {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            schema: self.schema.clone(),
            sslmode: self.sslmode,
            sslrootcert: self.sslrootcert.clone(),
        }
    }

    pub fn primary_key(&self) -> Vec<String> {
        self.primary_key
            .as_deref()
            .map(|k| k.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// A typed column of `unnest: true`: PostgreSQL type of a bizon/BigQuery type name (or a
/// PostgreSQL type name as is).
pub fn pg_type(kind: &str) -> std::result::Result<String, String> {
    let t = match kind.to_ascii_uppercase().as_str() {
        "STRING" | "TEXT" => "text",
        "INTEGER" | "INT64" | "INT" | "BIGINT" => "bigint",
        "FLOAT" | "FLOAT64" | "DOUBLE" => "double precision",
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" => "numeric",
        "BOOLEAN" | "BOOL" => "boolean",
        "TIMESTAMP" | "TIMESTAMPTZ" => "timestamptz",
        "DATETIME" => "timestamp",
        "DATE" => "date",
        "TIME" => "time",
        "JSON" | "JSONB" | "RECORD" | "STRUCT" => "jsonb",
        "BYTES" => "bytea",
        _ if kind.chars().all(|c| c.is_ascii_alphanumeric() || " _(),[]".contains(c)) => return Ok(kind.to_owned()),
        _ => return Err(format!("unsupported column type `{kind}`")),
    };
    Ok(t.to_owned())
}

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET: i64 = 946_684_800_000_000;
const COPY_CHUNK: usize = 256 << 10;
const COLUMNS: &str = "bizon_id, bizon_extracted_at, bizon_loaded_at, source_record_id, source_timestamp, source_data";
const META_COLUMNS: &str = "bizon_id, bizon_extracted_at, bizon_loaded_at, source_record_id, source_timestamp";

pub struct PostgresDestination {
    conn: PgConnection,
    /// One table per route (`streams:` entry); one without routing.
    targets: Vec<Target>,
    /// The target the open COPY writes to.
    cur: usize,
    primary_key: Vec<String>,
    client: Option<Client>,
    mode: SyncMode,
    job_id: String,
    seq: u64,
    in_tx: bool,
    published: bool,
    /// The COPY of the current flush interval, when rows were written since the last flush.
    session: Option<CopySession>,
    /// `on_error: dead_letter`: records refused by the last write.
    rejected: Option<Vec<Rejected>>,
}

/// One table rows are routed to.
struct Target {
    table: String,
    /// `unnest: true`: (name, PostgreSQL type) of the record's columns.
    typed: Option<Vec<(String, String)>>,
    enc: Enc,
}

/// How rows are encoded for COPY. Typed columns without upsert go straight into the table, binary
/// when every column has a binary encoder here, else text (the server parses each value, like
/// `psql \copy`). Otherwise binary COPY of bizon's layout (into the load table for an upsert).
enum Enc {
    Bizon,
    TypedBinary(Vec<(String, BinKind)>),
    TypedText(Vec<(String, String)>),
}

const META_DDL: &str = "bizon_id text NOT NULL, bizon_extracted_at timestamptz NOT NULL, \
    bizon_loaded_at timestamptz NOT NULL, source_record_id text NOT NULL, source_timestamp timestamptz NOT NULL";

/// `bizon_id` of the records of one batch: job digest and iteration fixed, index per record
/// (the same 32 hex digits the file destination writes).
struct BizonId([u8; 32]);

impl BizonId {
    const HEX: &'static [u8; 16] = b"0123456789abcdef";

    fn new(meta: &BatchMeta) -> Self {
        let mut id = [0u8; 32];
        for (k, slot) in id[..16].iter_mut().enumerate() {
            *slot = Self::HEX[((meta.job_hash >> ((15 - k) * 4)) & 15) as usize];
        }
        for (k, slot) in id[16..24].iter_mut().enumerate() {
            *slot = Self::HEX[((meta.iteration as u64 >> ((7 - k) * 4)) & 15) as usize];
        }
        BizonId(id)
    }

    fn at(&mut self, index: usize) -> &[u8; 32] {
        for (k, slot) in self.0[24..].iter_mut().enumerate() {
            *slot = Self::HEX[((index as u64 >> ((7 - k) * 4)) & 15) as usize];
        }
        &self.0
    }
}

/// Binary COPY `timestamptz` field (length-prefixed).
fn push_timestamp(out: &mut Vec<u8>, micros: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&(micros - PG_EPOCH_OFFSET).to_be_bytes());
}

/// bizon's metadata columns of record `i` in binary COPY format (`META_COLUMNS` order).
fn push_binary_meta(
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
fn encode_rows(out: &mut Vec<u8>, batch: &RecordBatch, range: std::ops::Range<usize>, meta: &BatchMeta) {
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
enum BinKind {
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
    fn of(pg_type: &str) -> Option<Self> {
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
fn token_text(raw: &str) -> std::result::Result<std::borrow::Cow<'_, str>, String> {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if inner.contains('\\') {
            return serde_json::from_str::<String>(raw).map(std::borrow::Cow::Owned).map_err(|e| e.to_string());
        }
        return Ok(std::borrow::Cow::Borrowed(inner));
    }
    Ok(std::borrow::Cow::Borrowed(raw))
}

/// Append one typed value (length-prefixed) in binary COPY format.
fn push_binary_value(out: &mut Vec<u8>, kind: BinKind, raw: &str) -> std::result::Result<(), String> {
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
fn encode_typed_binary_rows(
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
fn push_copy_text(out: &mut Vec<u8>, s: &[u8]) {
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
struct Fields<'a> {
    data: &'a [u8],
    /// (key start, key end, value start, value end), key without its quotes.
    spans: Vec<(usize, usize, usize, usize)>,
}

impl<'a> Fields<'a> {
    fn parse_into(data: &'a [u8], spans: Vec<(usize, usize, usize, usize)>) -> std::result::Result<Self, String> {
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
    fn get(&self, name: &str) -> Option<&'a str> {
        let (_, _, vs, ve) = *self.spans.iter().find(|(ks, ke, _, _)| &self.data[*ks..*ke] == name.as_bytes())?;
        std::str::from_utf8(&self.data[vs..ve]).ok()
    }

    fn into_spans(self) -> Vec<(usize, usize, usize, usize)> {
        self.spans
    }
}

/// Rows in COPY text format for typed columns: each record's JSON fields by name (`\N` when
/// absent or null; objects and arrays as JSON text), then bizon's metadata columns.
fn encode_text_rows(
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

impl PostgresDestination {
    /// `typed`: the record columns of `unnest: true`.
    pub fn new(config: &PostgresConfig, table: &str, typed: Option<Vec<(String, String)>>) -> Self {
        Self::routed(config, vec![(table.to_owned(), typed)])
    }

    /// One table per route (`streams:` entry `i` = route `i`), all written in one transaction
    /// per flush with the cursor: exactly-once across the tables.
    pub fn routed(config: &PostgresConfig, tables: Vec<TableSpec>) -> Self {
        let primary_key = config.primary_key();
        let targets = tables
            .into_iter()
            .map(|(table, typed)| Target { enc: Self::encoding(&typed, &primary_key), table, typed })
            .collect();
        PostgresDestination {
            conn: config.connection(),
            targets,
            cur: 0,
            primary_key,
            client: None,
            mode: SyncMode::FullRefresh,
            job_id: String::new(),
            seq: 0,
            in_tx: false,
            published: false,
            session: None,
            rejected: (config.on_error == bizon_core::config::OnError::DeadLetter).then(Vec::new),
        }
    }

    fn encoding(typed: &Option<Vec<(String, String)>>, primary_key: &[String]) -> Enc {
        match typed.clone().filter(|_| primary_key.is_empty()) {
            None => Enc::Bizon,
            Some(cols) => {
                match cols.iter().map(|(n, t)| BinKind::of(t).map(|k| (n.clone(), k))).collect::<Option<Vec<_>>>() {
                    Some(kinds) => Enc::TypedBinary(kinds),
                    None => Enc::TypedText(cols),
                }
            }
        }
    }

    fn t(&self) -> &Target {
        &self.targets[self.cur]
    }

    /// Begin the flush interval's transaction and its COPY.
    fn start_copy(&mut self) -> Result<()> {
        if !self.in_tx {
            self.exec("beginning a transaction", "BEGIN")?;
            self.in_tx = true;
        }
        let staged = self.staged_insert();
        if staged {
            let temp = format!(
                "CREATE TEMP TABLE IF NOT EXISTS bizon_in ({META_DDL}, source_data jsonb NOT NULL, \
                 ord bigint GENERATED ALWAYS AS IDENTITY)"
            );
            self.exec("creating the load table", &temp)?;
        }
        let into = if staged { "bizon_in".to_owned() } else { self.write_table() };
        let names = |cols: Vec<&String>| cols.iter().map(|n| crate::pg::ident(n)).collect::<Vec<_>>().join(", ");
        let sql = match &self.t().enc {
            Enc::Bizon => format!("COPY {into} ({COLUMNS}) FROM STDIN (FORMAT binary)"),
            Enc::TypedBinary(c) => format!(
                "COPY {into} ({}, {META_COLUMNS}) FROM STDIN (FORMAT binary)",
                names(c.iter().map(|(n, _)| n).collect())
            ),
            Enc::TypedText(c) => {
                format!("COPY {into} ({}, {META_COLUMNS}) FROM STDIN", names(c.iter().map(|(n, _)| n).collect()))
            }
        };
        let binary = !matches!(self.t().enc, Enc::TypedText(_));
        let client = self.client.take().ok_or_else(|| Error::internal("postgres: no connection"))?;
        let session = CopySession::start(client, sql, binary)
            .map_err(|e| Error::internal(format!("postgres destination: starting the COPY thread: {e}")))?;
        self.session = Some(session);
        Ok(())
    }

    /// Finish the COPY of the flush interval (and move an upsert's rows into place).
    fn end_copy(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let (client, r) = session.end(false);
        self.client = Some(client);
        r.map_err(|e| self.fail("copying rows", &e))?;
        if self.staged_insert() {
            let sql = self.insert_from_temp();
            self.exec("inserting rows", &sql)?;
        }
        Ok(())
    }

    fn target(&self) -> String {
        qualified(&self.conn.schema, &self.t().table)
    }

    fn staging(&self) -> String {
        qualified(&self.conn.schema, &format!("{}__bizon_staging", self.t().table))
    }

    fn commits(&self) -> String {
        qualified(&self.conn.schema, "bizon_destination_commits")
    }

    fn write_table(&self) -> String {
        match self.mode {
            SyncMode::FullRefresh => self.staging(),
            _ => self.target(),
        }
    }

    fn client(&mut self) -> Result<&mut Client> {
        if self.session.is_some() {
            return Err(Error::internal("postgres destination: the connection is busy with a COPY"));
        }
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.in_tx = false;
            self.client = Some(self.conn.connect()?);
        }
        self.client.as_mut().ok_or_else(|| Error::internal("postgres: no connection"))
    }

    fn exec(&mut self, what: &str, sql: &str) -> Result<()> {
        let r = self.client()?.batch_execute(sql);
        r.map_err(|e| self.fail(what, &e))
    }

    /// Map an error and drop the connection: the transaction is gone, the next attempt reconnects.
    fn fail(&mut self, what: &str, e: &postgres::Error) -> Error {
        self.client = None;
        self.in_tx = false;
        pg_error(&format!("postgres destination {}: {what}", self.target()), e)
    }

    fn table_ddl(&self, name: &str) -> String {
        let cols = match &self.t().typed {
            Some(cols) => {
                let typed: Vec<String> = cols.iter().map(|(n, t)| format!("{} {t}", crate::pg::ident(n))).collect();
                format!("{}, {META_DDL}", typed.join(", "))
            }
            None => format!("{META_DDL}, source_data jsonb NOT NULL"),
        };
        let pk = if self.primary_key.is_empty() {
            String::new()
        } else {
            let k: Vec<String> = self.primary_key.iter().map(|c| crate::pg::ident(c)).collect();
            format!(", PRIMARY KEY ({})", k.join(", "))
        };
        format!("CREATE TABLE IF NOT EXISTS {name} ({cols}{pk})")
    }

    /// Upserts go through a temporary table (binary COPY of bizon's layout, then
    /// `INSERT … ON CONFLICT`); appends are copied straight into the write table.
    fn staged_insert(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Move the temporary table's rows into the write table, then empty it.
    fn insert_from_temp(&self) -> String {
        let table = self.write_table();
        let ident = crate::pg::ident;
        let (cols, select, from) = match &self.t().typed {
            Some(cols) => {
                let names: Vec<String> = cols.iter().map(|(n, _)| ident(n)).collect();
                let picked: Vec<String> = cols.iter().map(|(n, _)| format!("r.{}", ident(n))).collect();
                (
                    format!("{}, {META_COLUMNS}", names.join(", ")),
                    format!("{}, i.bizon_id, i.bizon_extracted_at, i.bizon_loaded_at, i.source_record_id, i.source_timestamp", picked.join(", ")),
                    format!("bizon_in i CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, i.source_data) r"),
                )
            }
            None => (COLUMNS.to_owned(), "i.bizon_id, i.bizon_extracted_at, i.bizon_loaded_at, i.source_record_id, i.source_timestamp, i.source_data".to_owned(), "bizon_in i".to_owned()),
        };
        let insert = if self.primary_key.is_empty() {
            format!("INSERT INTO {table} ({cols}) SELECT {select} FROM {from} ORDER BY i.ord")
        } else {
            let pick = |c: &String| match &self.t().typed {
                Some(_) => format!("r.{}", ident(c)),
                None => format!("i.{}", ident(c)),
            };
            let keys: Vec<String> = self.primary_key.iter().map(pick).collect();
            let conflict: Vec<String> = self.primary_key.iter().map(|c| ident(c)).collect();
            let updates: Vec<String> = cols
                .split(", ")
                .filter(|c| !conflict.contains(&c.to_string()))
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            format!(
                "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({k}) {select} FROM {from} ORDER BY {k}, i.ord DESC \
                 ON CONFLICT ({c}) DO UPDATE SET {u}",
                k = keys.join(", "),
                c = conflict.join(", "),
                u = updates.join(", ")
            )
        };
        format!("{insert}; TRUNCATE bizon_in")
    }

    fn ensure_commit_log(&mut self) -> Result<()> {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE IF NOT EXISTS {log} (job_id text NOT NULL, seq bigint NOT NULL, \
             cursor jsonb NOT NULL, published boolean NOT NULL DEFAULT false, committed_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (job_id, seq))",
            schema = crate::pg::ident(&self.conn.schema),
            log = self.commits()
        );
        self.exec("creating the commit log", &sql)
    }
}

impl Destination for PostgresDestination {
    fn recover_cursor(&mut self, ctx: &DestinationContext) -> Result<Option<DestinationCursor>> {
        self.ensure_commit_log()?;
        let sql = format!("SELECT cursor::text FROM {} WHERE job_id = $1 ORDER BY seq DESC LIMIT 1", self.commits());
        let row = self.client()?.query_opt(&sql, &[&ctx.job_id]);
        let row = row.map_err(|e| self.fail("reading the commit log", &e))?;
        row.map(|r| {
            let text: String = r.get(0);
            serde_json::from_str(&text)
                .map_err(|e| Error::internal(format!("postgres destination: bad cursor in the commit log: {e}")))
        })
        .transpose()
    }

    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.mode = ctx.sync_mode;
        self.job_id = ctx.job_id.clone();
        drop(self.session.take().map(|s| s.end(true)));
        self.client = None; // any transaction of an earlier attempt is rolled back
        self.ensure_commit_log()?;
        self.seq = resume.and_then(|t| t.get("seq")).and_then(Json::as_u64).unwrap_or(0);
        let sql = format!("SELECT coalesce(bool_or(published), false) FROM {} WHERE job_id = $1", self.commits());
        let job_id = self.job_id.clone();
        let r = self.client()?.query_one(&sql, &[&job_id]);
        self.published = r.map_err(|e| self.fail("reading the commit log", &e))?.get(0);
        if self.published {
            return Ok(json!({"seq": self.seq}));
        }
        for cur in 0..self.targets.len() {
            self.cur = cur;
            let table = self.write_table();
            let ddl = match (self.mode, resume) {
                (SyncMode::FullRefresh, None) => format!("DROP TABLE IF EXISTS {table}; {}", self.table_ddl(&table)),
                _ => self.table_ddl(&table),
            };
            self.exec("creating the table", &ddl)?;
            if self.mode != SyncMode::FullRefresh || resume.is_some() {
                // the target of an incremental run may predate bizon: check it has our columns
                let probe = match &self.t().typed {
                    Some(cols) => {
                        let names: Vec<String> = cols.iter().map(|(n, _)| crate::pg::ident(n)).collect();
                        format!("SELECT {}, {META_COLUMNS} FROM {table} LIMIT 0", names.join(", "))
                    }
                    None => format!("SELECT {COLUMNS} FROM {table} LIMIT 0"),
                };
                self.exec("checking the table's columns", &probe)?;
            }
        }
        self.cur = 0;
        Ok(json!({"seq": self.seq}))
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if self.published {
            return Err(Error::internal("postgres destination: write after the result was published"));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let Some(route) = batch.single_route() else {
            for (_, part) in batch.split_routes() {
                self.write(&part, meta)?;
            }
            return Ok(());
        };
        let route = usize::from(route);
        if route >= self.targets.len() {
            return Err(Error::internal(format!("postgres destination: no table for route {route}")));
        }
        if route != self.cur {
            // one COPY at a time per connection: finish this table's, the transaction goes on
            self.end_copy()?;
            self.cur = route;
        }
        if self.session.is_none() {
            self.start_copy()?;
        }
        let session = self.session.as_mut().expect("started above");
        let per_record = (batch.byte_len() / batch.len()).max(1) + 96;
        let step = (COPY_CHUNK / per_record).max(1);
        let mut from = 0;
        while from < batch.len() {
            let to = (from + step).min(batch.len());
            let mut buf = session.buffer();
            let encoded = match &self.targets[self.cur].enc {
                Enc::Bizon => {
                    encode_rows(&mut buf, batch, from..to, meta);
                    Ok(())
                }
                Enc::TypedBinary(cols) => {
                    encode_typed_binary_rows(&mut buf, batch, from..to, meta, cols, self.rejected.as_mut())
                }
                Enc::TypedText(cols) => encode_text_rows(&mut buf, batch, from..to, meta, cols),
            };
            if let Err(e) = encoded {
                // abort the COPY: the transaction is unusable, the engine retries from the last commit
                drop(self.session.take().map(|s| s.end(true)));
                self.client = None;
                self.in_tx = false;
                return Err(e);
            }
            if !session.send(buf) {
                let (client, r) = self.session.take().expect("started above").end(false);
                self.client = Some(client);
                r.map_err(|e| self.fail("copying rows", &e))?;
                return Err(Error::transient("postgres destination: the COPY stopped without an error"));
            }
            from = to;
        }
        Ok(())
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        if self.published {
            return Ok(next.token.clone());
        }
        self.end_copy()?;
        let seq = self.seq + 1;
        let mut cursor = next.clone();
        // the token is the caller's (a router keeps its other targets' tokens in it) plus our seq
        match &mut cursor.token {
            Json::Object(t) => {
                t.insert("seq".into(), json!(seq));
            }
            t => *t = json!({"seq": seq}),
        }
        let cursor_text = serde_json::to_string(&cursor).map_err(|e| Error::internal(e.to_string()))?;
        if !self.in_tx {
            self.exec("beginning a transaction", "BEGIN")?;
            self.in_tx = true;
        }
        let sql = format!("INSERT INTO {} (job_id, seq, cursor) VALUES ($1, $2, $3::text::jsonb)", self.commits());
        let job_id = self.job_id.clone();
        let r = self.client()?.execute(&sql, &[&job_id, &(seq as i64), &cursor_text]);
        r.map_err(|e| self.fail("recording the cursor", &e))?;
        self.exec("committing", "COMMIT")?;
        self.in_tx = false;
        self.seq = seq;
        Ok(cursor.token)
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        self.rejected.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn finalize(&mut self) -> Result<()> {
        if self.published {
            return Ok(());
        }
        if self.in_tx {
            return Err(Error::internal("postgres destination: finalize with uncommitted rows"));
        }
        let mark = format!(
            "UPDATE {} SET published = true WHERE job_id = '{}' AND seq = {}",
            self.commits(),
            self.job_id.replace('\'', "''"),
            self.seq
        );
        let sql = match self.mode {
            SyncMode::FullRefresh => {
                let mut swaps = String::new();
                for cur in 0..self.targets.len() {
                    self.cur = cur;
                    swaps.push_str(&format!(
                        "DROP TABLE IF EXISTS {target}; ALTER TABLE {staging} RENAME TO {name}; ",
                        target = self.target(),
                        staging = self.staging(),
                        name = crate::pg::ident(&self.t().table),
                    ));
                }
                format!("BEGIN; {swaps}{mark}; COMMIT")
            }
            _ => mark,
        };
        self.exec("publishing", &sql)?;
        self.published = true;
        Ok(())
    }
}

/// A message to the thread that runs a COPY.
enum Chunk {
    Data(Vec<u8>),
    /// Drop the COPY without finishing it: the server aborts it (and the transaction).
    Abort,
}

/// A `COPY … FROM STDIN` kept open across `write` calls until the flush. A thread owns the
/// connection while the COPY runs and sends the encoded chunks, so the consumer encodes the next
/// chunk while the server consumes the previous one, and one statement covers a flush interval
/// instead of one round trip per page.
struct CopySession {
    binary: bool,
    chunks: Option<std::sync::mpsc::SyncSender<Chunk>>,
    /// Sent buffers come back for reuse.
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<(Client, std::result::Result<(), postgres::Error>)>>,
}

impl CopySession {
    fn start(mut client: Client, sql: String, binary: bool) -> std::io::Result<Self> {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let (give_back, free) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("bizon-pg-copy".into()).spawn(move || {
            let result = (|| {
                let mut w = client.copy_in(&sql)?;
                for chunk in rx {
                    match chunk {
                        Chunk::Data(mut buf) => {
                            // a failed write means the server gave up: `finish` reports its error
                            if w.write_all(&buf).is_err() {
                                break;
                            }
                            buf.clear();
                            let _ = give_back.send(buf);
                        }
                        Chunk::Abort => return Ok(()),
                    }
                }
                w.finish().map(drop)
            })();
            (client, result)
        })?;
        let mut session = CopySession { binary, chunks: Some(chunks), free, thread: Some(thread) };
        if binary {
            let mut head = session.buffer();
            head.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            head.extend_from_slice(&0u32.to_be_bytes());
            head.extend_from_slice(&0u32.to_be_bytes());
            session.send(head);
        }
        Ok(session)
    }

    fn buffer(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_else(|_| Vec::with_capacity(COPY_CHUNK + (COPY_CHUNK >> 2)))
    }

    /// False when the COPY thread has stopped (the server rejected the data): `end` tells why.
    fn send(&mut self, buf: Vec<u8>) -> bool {
        self.chunks.as_ref().is_some_and(|c| c.send(Chunk::Data(buf)).is_ok())
    }

    /// Finish (or abort) the COPY and take the connection back.
    fn end(mut self, abort: bool) -> (Client, std::result::Result<(), postgres::Error>) {
        if let Some(chunks) = self.chunks.take() {
            if abort {
                let _ = chunks.send(Chunk::Abort);
            } else if self.binary {
                let _ = chunks.send(Chunk::Data((-1i16).to_be_bytes().to_vec()));
            }
        }
        let thread = self.thread.take().expect("a session ends once");
        thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for CopySession {
    fn drop(&mut self) {
        // dropped without `end` (an error elsewhere): abort, the connection goes with the thread
        if let Some(chunks) = self.chunks.take() {
            let _ = chunks.send(Chunk::Abort);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_scanner_finds_raw_tokens() {
        let data = br#" { "a" : "x\"}y" , "b":[1,{"c":"]"}], "d": -1.5e3 ,"e":null,"f":{"g":{}} } "#;
        let f = Fields::parse_into(data, Vec::new()).unwrap();
        assert_eq!(f.get("a"), Some(r#""x\"}y""#));
        assert_eq!(f.get("b"), Some(r#"[1,{"c":"]"}]"#));
        assert_eq!(f.get("d"), Some("-1.5e3"));
        assert_eq!(f.get("e"), Some("null"));
        assert_eq!(f.get("f"), Some(r#"{"g":{}}"#));
        assert_eq!(f.get("zz"), None);
        assert!(Fields::parse_into(b"{}", Vec::new()).unwrap().get("a").is_none());
        for bad in [&b"[1]"[..], b"{\"a\" 1}", b"{\"a\":}", b"{\"a\":\"x", b"{\"a\":1"] {
            assert!(Fields::parse_into(bad, Vec::new()).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn binary_values_encode_each_kind() {
        let enc = |k, raw| {
            let mut out = Vec::new();
            push_binary_value(&mut out, k, raw).map(|_| out)
        };
        assert_eq!(enc(BinKind::Int8, "42").unwrap(), [&8i32.to_be_bytes()[..], &42i64.to_be_bytes()[..]].concat());
        assert_eq!(enc(BinKind::Int8, "\"7\"").unwrap()[4..], 7i64.to_be_bytes());
        assert_eq!(enc(BinKind::Float8, "1.5").unwrap()[4..], 1.5f64.to_be_bytes());
        assert_eq!(enc(BinKind::Bool, "true").unwrap(), [0, 0, 0, 1, 1]);
        assert_eq!(enc(BinKind::Text, r#""a\"b""#).unwrap(), [&3i32.to_be_bytes()[..], b"a\"b"].concat());
        assert_eq!(enc(BinKind::Jsonb, r#"{"k":1}"#).unwrap(), [&8i32.to_be_bytes()[..], b"\x01{\"k\":1}"].concat());
        assert_eq!(enc(BinKind::Timestamptz, r#""2000-01-01T00:00:01Z""#).unwrap()[4..], 1_000_000i64.to_be_bytes());
        assert_eq!(enc(BinKind::Date, r#""2000-01-03""#).unwrap()[4..], 2i32.to_be_bytes());
        assert!(enc(BinKind::Int8, "\"x\"").unwrap_err().contains("expected an integer"));
        assert!(enc(BinKind::Timestamptz, "\"soon\"").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn typed_text_rows_escape_and_convert_every_kind_of_value() {
        let mut b = RecordBatch::default();
        b.push("r\t1", 0, br#"{"a":"x\ty\\z\"q\nw","b":null,"c":{"k":[1,"\t"]},"d":1.5,"e":true}"#);
        let meta = BatchMeta { iteration: 2, extracted_at: 0, loaded_at: 0, job_hash: 0xab };
        let cols: Vec<(String, String)> =
            ["a", "b", "c", "d", "e", "missing"].iter().map(|c| (c.to_string(), "text".to_string())).collect();
        let mut out = Vec::new();
        encode_text_rows(&mut out, &b, 0..1, &meta, &cols).unwrap();
        let line = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
        assert_eq!(fields[0], "x\\ty\\\\z\"q\\nw");
        assert_eq!(fields[1], "\\N");
        assert_eq!(fields[2], r#"{"k":[1,"\\t"]}"#);
        assert_eq!(&fields[3..6], ["1.5", "true", "\\N"]);
        assert_eq!(fields[6], "00000000000000ab0000000200000000");
        assert_eq!(fields[9], "r\\t1");
        let mut bad = RecordBatch::default();
        bad.push("x", 0, b"[1,2]");
        let e = encode_text_rows(&mut Vec::new(), &bad, 0..1, &meta, &cols).unwrap_err();
        assert!(e.message().contains("not a JSON object"), "{}", e.message());
    }
}
