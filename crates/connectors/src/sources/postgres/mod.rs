//! `postgres` source: a table (the stream name, `schema.table` or `table`) or a custom `query`,
//! each row turned into JSON by the server (`row_to_json`: the columns in table order, and a third
//! cheaper than `to_jsonb`, which sorts the keys). `incremental` filters on `cursor_field`;
//! memory holds one page. Two ways to page, both linear in the table's size:
//!
//! * **keyset** (`WHERE key > last ORDER BY key LIMIT batch_size`, never OFFSET) on an indexed key:
//!   the table's single-column primary key, or a configured `primary_key` that leads a btree index,
//!   and always for a `query`;
//! * **block ranges** for a table without such a key (bizon's own row layout has none): pages of
//!   physical blocks (`ctid >= '(b,0)' AND ctid < '(b+n,0)'`, a TID range scan on PostgreSQL 14+),
//!   the next block is the cursor, and the span adapts so a page holds about `batch_size` rows.
//!   One `REPEATABLE READ` snapshot per run: rows written while the table is read are not seen.
//!   Keyset pages over an unindexed column would sort the whole table for every page.

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::record::cursor_max;
use bizon_core::time::now_micros;
use bizon_core::{Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use postgres::Client;
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
use crate::pg::{ident, pg_error, PgConnection};

/// Rows per page when `batch_size` is not set: large enough that a page's round trip is small
/// next to its rows, small enough to keep a page's memory in the megabytes.
fn default_batch() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    pub database: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Schema of an unqualified stream table (default `public`).
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub sslmode: Option<crate::pg::SslMode>,
    /// CA certificates (PEM) for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Read this query's rows instead of the table named by `stream` (needs `primary_key`).
    #[serde(default)]
    pub query: Option<String>,
    /// Unique column that orders the keyset pages and gives each record its id; default: the
    /// table's single-column primary key. A column no btree index leads is read in block ranges
    /// instead (with a warning): keyset pages over it would sort the table for every page.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Rows per page (iteration).
    #[serde(default = "default_batch")]
    pub batch_size: u64,
}

impl PostgresSourceConfig {
    pub fn connection(&self) -> PgConnection {
        PgConnection {
            host: self.host.clone().unwrap_or_else(crate::pg::default_host),
            port: self.port.unwrap_or_else(crate::pg::default_port),
            database: self.database.clone(),
            username: self.username.clone().unwrap_or_else(crate::pg::default_user),
            password: self.password.clone(),
            schema: self.schema.clone().unwrap_or_else(crate::pg::default_schema),
            sslmode: self.sslmode.unwrap_or_default(),
            sslrootcert: self.sslrootcert.clone(),
        }
    }
}

/// The `postgres` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "postgres",
    description: "a table or query, keyset-paged on an indexed key, else in block ranges; streams are tables",
    streams: &[],
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<PostgresSourceConfig>,
    schema: <PostgresSourceConfig as schemars::JsonSchema>::json_schema,
    parse: parse_source::<PostgresSourceConfig>,
};

impl SourceSpec for PostgresSourceConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        Box::new(PostgresSource::new(self.clone(), &common.stream))
    }

    fn list_streams(&self) -> Result<Vec<String>> {
        list_tables(self)
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        self.connection().validate()?;
        if self.query.is_some() && self.primary_key.is_none() {
            return Err(ConfigError::QueryWithoutPrimaryKey);
        }
        if self.batch_size == 0 {
            return Err(ConfigError::AtLeastOne { key: "batch_size" });
        }
        Ok(())
    }
}

/// SQL literal of a JSON scalar (numbers bare, everything else a quoted string that the
/// server coerces to the column's type).
fn literal(v: &Json) -> String {
    match v {
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// How the pages of a run are cut (chosen when the source connects).
#[derive(Debug, Clone, PartialEq)]
enum Paging {
    /// `WHERE key > last ORDER BY key LIMIT batch_size`: the key is unique and indexed.
    Keyset { key: String },
    /// Physical block ranges of a table read in one snapshot; `id` is the column giving the record
    /// ids (a configured `primary_key` without an index), else the row's `ctid`.
    Blocks {
        id: Option<String>,
        /// Blocks of the table when the snapshot was taken: the read ends there.
        end: u64,
        /// First span (blocks per page), from the table's statistics.
        span: u64,
    },
}

/// Blocks per page are at most this many times those of the previous page (and at least a
/// quarter): a span estimated from a run of sparse blocks cannot make one page hold the table.
const SPAN_STEP: u64 = 4;

/// The span of the next page: the one that would have held `batch_size` rows at this page's
/// density, within [span / SPAN_STEP, span × SPAN_STEP].
fn next_span(span: u64, rows: u64, batch: u64) -> u64 {
    let wanted = span.saturating_mul(batch).checked_div(rows).unwrap_or(span.saturating_mul(SPAN_STEP));
    wanted.clamp((span / SPAN_STEP).max(1), span.saturating_mul(SPAN_STEP))
}

pub struct PostgresSource {
    config: PostgresSourceConfig,
    stream: String,
    client: Option<Client>,
    /// `FROM` clause: the quoted table or the parenthesized query.
    from: Option<String>,
    paging: Option<Paging>,
    /// Records and payload bytes of the last page: the next page's batch is allocated once.
    last_size: (usize, usize),
}

impl PostgresSource {
    pub fn new(config: PostgresSourceConfig, stream: &str) -> Self {
        PostgresSource {
            config,
            stream: stream.to_owned(),
            client: None,
            from: None,
            paging: None,
            last_size: (1024, 1 << 18),
        }
    }

    fn table(&self) -> (String, String) {
        match self.stream.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => (self.config.connection().schema, self.stream.clone()),
        }
    }

    fn fail(&mut self, what: &str, e: &postgres::Error) -> Error {
        // A block-range read's snapshot transaction is aborted by any error: start over.
        if e.is_closed() || e.code().is_none() || matches!(self.paging, Some(Paging::Blocks { .. })) {
            self.client = None;
        }
        pg_error(&format!("postgres source `{}`: {what}", self.stream), e)
    }

    /// Connect (again) and resolve the FROM clause and the paging (a block-range read opens its
    /// snapshot here).
    fn prepare(&mut self) -> Result<()> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) && self.from.is_some() {
            return Ok(());
        }
        let mut client = self.config.connection().connect()?;
        client.batch_execute("SET TIME ZONE 'UTC'").map_err(|e| pg_error("postgres source: session setup", &e))?;
        let (from, paging) = match &self.config.query {
            Some(q) => {
                (format!("({q}) AS q"), Paging::Keyset { key: self.config.primary_key.clone().unwrap_or_default() })
            }
            None => {
                let (schema, table) = self.table();
                let qualified = format!("{}.{}", ident(&schema), ident(&table));
                let paging = table_paging(&mut client, &qualified, &schema, &table, &self.config)?;
                (format!("{qualified} AS q"), paging)
            }
        };
        self.client = Some(client);
        self.from = Some(from);
        self.paging = Some(paging);
        Ok(())
    }

    /// `WHERE` clause of a page: rows after `after` (keyset) or in blocks `[from, to)`, and above the
    /// watermark in incremental mode.
    fn filter(&self, ctx: &ReadContext, after: Option<&Json>, blocks: Option<(u64, u64)>) -> String {
        let mut clauses = Vec::new();
        if let (Some(a), Some(Paging::Keyset { key })) = (after, &self.paging) {
            clauses.push(format!("q.{} > {}", ident(key), literal(a)));
        }
        if let Some((from, to)) = blocks {
            clauses.push(format!("q.ctid >= '({from},0)'::tid AND q.ctid < '({to},0)'::tid"));
        }
        if let (SyncMode::Incremental, Some(field), Some(w)) = (ctx.sync_mode, &ctx.cursor_field, &ctx.watermark) {
            clauses.push(format!("q.{} > {}", ident(field), literal(w)));
        }
        if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        }
    }
}

impl Source for PostgresSource {
    fn total_records(&mut self, ctx: &ReadContext) -> Result<Option<u64>> {
        self.prepare()?;
        let sql = format!(
            "SELECT count(*) FROM {} {}",
            self.from.as_deref().unwrap_or_default(),
            self.filter(ctx, None, None)
        );
        let r = self.client.as_mut().map(|c| c.query_one(&sql, &[]));
        match r {
            Some(Ok(row)) => Ok(Some(row.get::<_, i64>(0) as u64)),
            Some(Err(e)) => Err(self.fail("counting rows", &e)),
            None => Ok(None),
        }
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        self.prepare()?;
        // A position saved by the other kind of paging (the key gained or lost its index since):
        // reading from the start would duplicate what was written, so stop and say so.
        let saved = match (&self.paging, pagination.get("after"), pagination.get("block")) {
            (Some(Paging::Blocks { .. }), Some(after), _) => Some(format!("after key {after}")),
            (Some(Paging::Keyset { .. }), _, Some(block)) => Some(format!("at block {block}")),
            _ => None,
        };
        if let Some(saved) = saved {
            return Err(Error::config(format!(
                "postgres source `{}`: the job's saved position ({saved}) comes from the other paging (keyset \
                 on an indexed key, or block ranges without one): the key's index was created or dropped since; \
                 restore it to resume, or re-read the stream (`bizon run --reset`)",
                self.stream
            )));
        }
        match self.paging.clone() {
            Some(Paging::Blocks { id, end, span }) => self.get_blocks(pagination, ctx, id.as_deref(), end, span),
            Some(Paging::Keyset { key }) => self.get_keyset(pagination, ctx, &key),
            None => Err(Error::internal("postgres source: no paging")),
        }
    }
}

impl PostgresSource {
    /// The selected columns: the row as JSON, the record id, then the incremental cursor.
    fn select(&self, ctx: &ReadContext, id: &str) -> String {
        let cursor_sel = match (&ctx.cursor_field, ctx.sync_mode) {
            (Some(f), SyncMode::Incremental) => format!("to_jsonb(q.{})::text", ident(f)),
            _ => "NULL::text".into(),
        };
        format!("SELECT row_to_json(q.*)::text, {id}::text, {cursor_sel}")
    }

    /// Run a page's query and turn its rows into a page (its `next` left empty for the caller,
    /// the largest cursor value set), with the last row's column `extra` when asked.
    fn fetch(&mut self, sql: &str, extra: Option<usize>) -> Result<(Page, Option<String>)> {
        use postgres::fallible_iterator::FallibleIterator;
        let extracted_at = now_micros();
        let mut records = RecordBatch::with_capacity(self.last_size.0, self.last_size.1 + self.last_size.1 / 8);
        let mut max_cursor: Option<Json> = None;
        // Rows are streamed into the batch as they arrive: the page is held once, not twice.
        let read = |c: &mut Client| -> std::result::Result<Option<String>, postgres::Error> {
            let mut rows = c.query_raw(sql, std::iter::empty::<&str>())?;
            let mut last_row = None;
            while let Some(row) = rows.next()? {
                let data: &str = row.try_get(0)?;
                let id: Option<&str> = row.try_get(1)?;
                records.push(id.unwrap_or_default(), extracted_at, data.as_bytes());
                if let Some(c) = row.try_get::<_, Option<&str>>(2)? {
                    max_cursor = cursor_max(max_cursor.take(), serde_json::from_str(c).ok());
                }
                last_row = Some(row);
            }
            match (extra, last_row) {
                (Some(i), Some(row)) => row.try_get(i),
                _ => Ok(None),
            }
        };
        let last = match self.client.as_mut().map(read) {
            Some(Ok(last)) => last,
            Some(Err(e)) => return Err(self.fail("reading a page", &e)),
            None => return Err(Error::internal("postgres source: no connection")),
        };
        if !records.is_empty() {
            self.last_size = (records.len(), records.byte_len());
        }
        Ok((Page { records, next: json!({}), cursor_max: max_cursor, extracted_at }, last))
    }

    fn get_keyset(&mut self, pagination: &Json, ctx: &ReadContext, key: &str) -> Result<Page> {
        let after = pagination.get("after");
        let k = ident(key);
        let sql = format!(
            "{}, to_jsonb(q.{k})::text FROM {} {} ORDER BY q.{k} LIMIT {}",
            self.select(ctx, &format!("q.{k}")),
            self.from.as_deref().unwrap_or_default(),
            self.filter(ctx, after, None),
            self.config.batch_size
        );
        let (mut page, last_key) = self.fetch(&sql, Some(3))?;
        if let Some(k) = last_key.filter(|_| page.records.len() as u64 == self.config.batch_size) {
            page.next = json!({"after": serde_json::from_str::<Json>(&k).map_err(|e| Error::internal(e.to_string()))?});
        }
        Ok(page)
    }

    /// The query of the rows in blocks `[from, to)`; `id` as in [`Paging::Blocks`].
    fn blocks_sql(&self, ctx: &ReadContext, id: Option<&str>, from: u64, to: u64) -> String {
        let id = id.map_or_else(|| "q.ctid".to_owned(), |c| format!("q.{}", ident(c)));
        format!(
            "{} FROM {} {}",
            self.select(ctx, &id),
            self.from.as_deref().unwrap_or_default(),
            self.filter(ctx, None, Some((from, to)))
        )
    }

    /// The page of blocks `[block, block + span)` (`{"block", "span"}` in the pagination), skipping
    /// ranges with no rows; the span of the next page adapts to this one's rows per block.
    fn get_blocks(
        &mut self,
        pagination: &Json,
        ctx: &ReadContext,
        id: Option<&str>,
        end: u64,
        span: u64,
    ) -> Result<Page> {
        let mut block = pagination.get("block").and_then(Json::as_u64).unwrap_or(0);
        let mut span = pagination.get("span").and_then(Json::as_u64).unwrap_or(span).max(1);
        loop {
            if block >= end {
                return Ok(Page { extracted_at: now_micros(), ..Page::default() });
            }
            let to = block.saturating_add(span).min(end);
            let sql = self.blocks_sql(ctx, id, block, to);
            let (mut page, _) = self.fetch(&sql, None)?;
            let rows = page.records.len() as u64;
            let next_span = next_span(span, rows, self.config.batch_size);
            if to < end {
                page.next = json!({"block": to, "span": next_span});
            }
            if rows > 0 || to >= end {
                return Ok(page);
            }
            (block, span) = (to, next_span);
        }
    }
}

/// How to page `qualified` (the quoted `schema.table`): keyset on the configured key when a btree
/// index leads with it or on the single-column primary key; block ranges otherwise, in a
/// `REPEATABLE READ` snapshot opened on `client` for the rest of the run.
fn table_paging(
    client: &mut Client,
    qualified: &str,
    schema: &str,
    table: &str,
    config: &PostgresSourceConfig,
) -> Result<Paging> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .map_err(|e| pg_error("postgres source: looking up the table", &e))?
        .get(0);
    if !exists {
        return Err(Error::config(format!(
            "postgres source: table {schema}.{table} does not exist (streams are tables; `bizon stream list postgres --config ...` lists them)"
        )));
    }
    let id = match &config.primary_key {
        Some(k) => {
            let indexed: Option<bool> = client
                .query_opt(
                    "SELECT (SELECT bool_or(i.indkey[0] = a.attnum AND i.indpred IS NULL AND am.amname = 'btree') \
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
                     WHERE i.indrelid = a.attrelid) FROM pg_attribute a \
                     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                    &[&qualified, k],
                )
                .map_err(|e| pg_error("postgres source: looking up the primary_key column", &e))?
                .ok_or_else(|| {
                    Error::config(format!(
                        "postgres source: table {schema}.{table} has no column `{k}` (set in `primary_key`)"
                    ))
                })?
                .get(0);
            if indexed == Some(true) {
                return Ok(Paging::Keyset { key: k.clone() });
            }
            tracing::warn!(
                table = %format!("{schema}.{table}"),
                column = %k,
                "no btree index leads with the primary_key column: reading the table in block ranges \
                 (keyset pages over an unindexed column would sort the table for every page); \
                 `CREATE INDEX ON {schema}.{table} ({k})` pages it by key"
            );
            Some(k.clone())
        }
        None => {
            let rows = client
                .query(
                    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                     AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
                    &[&qualified],
                )
                .map_err(|e| pg_error("postgres source: reading the primary key", &e))?;
            if rows.len() == 1 {
                return Ok(Paging::Keyset { key: rows[0].get(0) });
            }
            tracing::info!(
                table = %format!("{schema}.{table}"),
                "no single-column primary key: reading the table in block ranges, record ids are row ctids \
                 (set `primary_key` to a unique column for stable ids)"
            );
            None
        }
    };
    // The snapshot is taken by the first statement of the transaction: the size read after it
    // covers every row the snapshot sees.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| pg_error("postgres source: opening the snapshot", &e))?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, \
             pg_relation_size(c.oid) / current_setting('block_size')::bigint, c.reltuples::float8, c.relpages::bigint \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&qualified],
        )
        .map_err(|e| pg_error("postgres source: reading the table's size", &e))?;
    let (version, end, tuples, pages): (i32, i64, f64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if version < 140_000 {
        tracing::warn!(
            server_version_num = version,
            "PostgreSQL before 14 has no TID range scan: every block-range page scans the table; \
             set `primary_key` to an indexed unique column"
        );
    }
    // Rows per block from the statistics (never analysed: reltuples < 0 or relpages 0): start at
    // one block per 100 rows and let the spans adapt.
    let per_block = if tuples > 0.0 && pages > 0 { (tuples / pages as f64).max(1.0) } else { 100.0 };
    let span = ((config.batch_size as f64 / per_block).round() as u64).max(1);
    Ok(Paging::Blocks { id, end: end.max(0) as u64, span })
}

/// Tables of the connection's schemas (for `bizon stream list postgres --config`).
pub fn list_tables(config: &PostgresSourceConfig) -> Result<Vec<String>> {
    let mut client = config.connection().connect()?;
    let rows = client
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .map_err(|e| pg_error("postgres source: listing tables", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests;
