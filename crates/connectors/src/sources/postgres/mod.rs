//! `postgres` source: a table (the stream name, `schema.table` or `table`) or a custom `query`,
//! read in keyset pages (`WHERE key > last ORDER BY key LIMIT batch_size`, never OFFSET), each row
//! turned into JSON by the server (`to_jsonb`). `incremental` filters on `cursor_field`; memory
//! holds one page.

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
    /// Column ordering the keyset pages; default: the table's single-column primary key.
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
    description: "a table or query, keyset-paged; streams are tables",
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

pub struct PostgresSource {
    config: PostgresSourceConfig,
    stream: String,
    client: Option<Client>,
    /// `FROM` clause: the quoted table or the parenthesized query.
    from: Option<String>,
    key: Option<String>,
}

impl PostgresSource {
    pub fn new(config: PostgresSourceConfig, stream: &str) -> Self {
        PostgresSource { config, stream: stream.to_owned(), client: None, from: None, key: None }
    }

    fn table(&self) -> (String, String) {
        match self.stream.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => (self.config.connection().schema, self.stream.clone()),
        }
    }

    fn fail(&mut self, what: &str, e: &postgres::Error) -> Error {
        if e.is_closed() || e.code().is_none() {
            self.client = None;
        }
        pg_error(&format!("postgres source `{}`: {what}", self.stream), e)
    }

    /// Connect (again) and resolve the FROM clause and the key column.
    fn prepare(&mut self) -> Result<()> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) && self.from.is_some() {
            return Ok(());
        }
        let mut client = self.config.connection().connect()?;
        client.batch_execute("SET TIME ZONE 'UTC'").map_err(|e| pg_error("postgres source: session setup", &e))?;
        let (from, key) = match &self.config.query {
            Some(q) => (format!("({q}) AS q"), self.config.primary_key.clone().unwrap_or_default()),
            None => {
                let (schema, table) = self.table();
                let exists: bool = client
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL",
                        &[&format!("{}.{}", ident(&schema), ident(&table))],
                    )
                    .map_err(|e| pg_error("postgres source: looking up the table", &e))?
                    .get(0);
                if !exists {
                    return Err(Error::config(format!(
                        "postgres source: table {schema}.{table} does not exist (streams are tables; `bizon stream list postgres --config ...` lists them)"
                    )));
                }
                let key = match &self.config.primary_key {
                    Some(k) => k.clone(),
                    None => {
                        let rows = client
                            .query(
                                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                                 AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
                                &[&format!("{}.{}", ident(&schema), ident(&table))],
                            )
                            .map_err(|e| pg_error("postgres source: reading the primary key", &e))?;
                        if rows.len() != 1 {
                            return Err(Error::config(format!(
                                "postgres source: table {schema}.{table} has no single-column primary key; set `primary_key` to a unique, ordered column"
                            )));
                        }
                        rows[0].get(0)
                    }
                };
                (format!("{}.{} AS q", ident(&schema), ident(&table)), key)
            }
        };
        self.client = Some(client);
        self.from = Some(from);
        self.key = Some(key);
        Ok(())
    }

    fn filter(&self, ctx: &ReadContext, after: Option<&Json>) -> String {
        let key = ident(self.key.as_deref().unwrap_or_default());
        let mut clauses = Vec::new();
        if let Some(a) = after {
            clauses.push(format!("q.{key} > {}", literal(a)));
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
        let sql =
            format!("SELECT count(*) FROM {} {}", self.from.as_deref().unwrap_or_default(), self.filter(ctx, None));
        let r = self.client.as_mut().map(|c| c.query_one(&sql, &[]));
        match r {
            Some(Ok(row)) => Ok(Some(row.get::<_, i64>(0) as u64)),
            Some(Err(e)) => Err(self.fail("counting rows", &e)),
            None => Ok(None),
        }
    }

    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        self.prepare()?;
        let after = pagination.get("after");
        let key = ident(self.key.as_deref().unwrap_or_default());
        let cursor_sel = match (&ctx.cursor_field, ctx.sync_mode) {
            (Some(f), SyncMode::Incremental) => format!("to_jsonb(q.{})::text", ident(f)),
            _ => "NULL::text".into(),
        };
        let sql = format!(
            "SELECT to_jsonb(q.*)::text, q.{key}::text, to_jsonb(q.{key})::text, {cursor_sel} FROM {} {} ORDER BY q.{key} LIMIT {}",
            self.from.as_deref().unwrap_or_default(),
            self.filter(ctx, after),
            self.config.batch_size
        );
        let extracted_at = now_micros();
        let r = self.client.as_mut().map(|c| c.query(&sql, &[]));
        let rows = match r {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => return Err(self.fail("reading a page", &e)),
            None => return Err(Error::internal("postgres source: no connection")),
        };
        let mut records = RecordBatch::with_capacity(rows.len(), rows.len() * 256);
        let mut last_key = None;
        let mut max_cursor: Option<Json> = None;
        for row in &rows {
            let data: &str = row.get(0);
            let id: Option<&str> = row.get(1);
            records.push(id.unwrap_or_default(), extracted_at, data.as_bytes());
            last_key = row.get::<_, Option<&str>>(2);
            if let Some(c) = row.get::<_, Option<&str>>(3) {
                max_cursor = cursor_max(max_cursor, serde_json::from_str(c).ok());
            }
        }
        let next = match last_key {
            Some(k) if rows.len() as u64 == self.config.batch_size => {
                json!({"after": serde_json::from_str::<Json>(k).map_err(|e| Error::internal(e.to_string()))?})
            }
            _ => json!({}),
        };
        Ok(Page { records, next, cursor_max: max_cursor, extracted_at })
    }
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
