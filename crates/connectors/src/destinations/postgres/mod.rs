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
//! - Broker lanes (several consumers): each lane commits its own cursor chain into the same
//!   tables (`<job>~<lane>` in the commit log). A full refresh's staging table is created once per
//!   job (a marker row `<job>` in the commit log, taken under an advisory lock) and swapped in
//!   once, by the `finalize` that finds every lane's last commit `done`; the others return at once.
//!   Upserts (`primary_key`) are refused on lanes: lanes commit independently, so an older version
//!   of a record could overwrite a newer one.

mod config;
mod copy;
mod encode;

use bizon_core::config::SyncMode;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Rejected, Result,
};
use postgres::Client;
use serde_json::json;

pub use config::{pg_type, PostgresConfig, DESCRIPTOR};
use copy::CopySession;
use encode::*;

use crate::descriptor::TableSpec;
use crate::pg::{pg_error, qualified, PgConnection, Prepared};

pub struct PostgresDestination {
    conn: PgConnection,
    /// One table per route (`streams:` entry); one without routing.
    targets: Vec<Target>,
    /// The target the open COPY writes to.
    cur: usize,
    primary_key: Vec<String>,
    client: Option<Client>,
    /// Statements prepared on `client`: a flush's COPY and commit-log row skip the parse round trip.
    prepared: Prepared,
    mode: SyncMode,
    job_id: String,
    seq: u64,
    in_tx: bool,
    published: bool,
    /// The COPY of the current flush interval, when rows were written since the last flush.
    session: Option<CopySession>,
    /// `on_error: dead_letter`: records refused by the last write.
    rejected: Option<Vec<Rejected>>,
    /// Broker lanes: (the job's id, its marker in the commit log; lanes). `None` with one lane.
    lanes: Option<(String, usize)>,
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
            prepared: Prepared::default(),
            mode: SyncMode::FullRefresh,
            job_id: String::new(),
            seq: 0,
            in_tx: false,
            published: false,
            session: None,
            rejected: (config.on_error == bizon_core::config::OnError::DeadLetter).then(Vec::new),
            lanes: None,
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
        let copy = self.statement("preparing the COPY", &sql)?;
        let client = self.client.take().ok_or_else(|| Error::internal("postgres: no connection"))?;
        let session = CopySession::start(client, copy, binary)
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
            self.prepared.clear();
            self.client = Some(self.conn.connect()?);
        }
        self.client.as_mut().ok_or_else(|| Error::internal("postgres: no connection"))
    }

    /// `sql` prepared on the connection (once per connection).
    fn statement(&mut self, what: &str, sql: &str) -> Result<postgres::Statement> {
        self.client()?;
        let Some(client) = self.client.as_mut() else { return Err(Error::internal("postgres: no connection")) };
        let r = self.prepared.get(client, sql);
        r.map_err(|e| self.fail(what, &e))
    }

    fn exec(&mut self, what: &str, sql: &str) -> Result<()> {
        let r = self.client()?.batch_execute(sql);
        r.map_err(|e| self.fail(what, &e))
    }

    /// Map an error and drop the connection: the transaction is gone, the next attempt reconnects.
    fn fail(&mut self, what: &str, e: &postgres::Error) -> Error {
        self.client = None;
        self.prepared.clear();
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

    /// The commit log (and the schema). Rolls back whatever an earlier attempt left uncommitted
    /// first. Serialized under the schema's DDL lock: consumers of several lanes start together, and
    /// concurrent `CREATE … IF NOT EXISTS` of one name can fail.
    fn ensure_commit_log(&mut self) -> Result<()> {
        drop(self.session.take().map(|s| s.end(true)));
        if self.in_tx {
            self.client = None;
            self.in_tx = false;
        }
        let sql = format!(
            "BEGIN; {lock}; CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE IF NOT EXISTS {log} (job_id text NOT NULL, \
             seq bigint NOT NULL, cursor jsonb NOT NULL, published boolean NOT NULL DEFAULT false, \
             committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, seq)); COMMIT",
            lock = self.ddl_lock(),
            schema = crate::pg::ident(&self.conn.schema),
            log = self.commits()
        );
        self.exec("creating the commit log", &sql)
    }

    /// A transaction-scoped advisory lock over the destination's DDL and lane bookkeeping in its
    /// schema (released at COMMIT or ROLLBACK).
    fn ddl_lock(&self) -> String {
        let key = format!("bizon-destination:{}", self.conn.schema).replace('\'', "''");
        format!("SELECT pg_advisory_xact_lock(hashtextextended('{key}', 0))")
    }

    /// Begin a transaction that holds the DDL lock (end it with [`Self::commit_tx`]).
    fn begin_locked(&mut self) -> Result<()> {
        self.exec("locking the tables", &format!("BEGIN; {}", self.ddl_lock()))?;
        self.in_tx = true;
        Ok(())
    }

    fn commit_tx(&mut self) -> Result<()> {
        self.exec("committing", "COMMIT")?;
        self.in_tx = false;
        Ok(())
    }

    /// Whether the commit log marks job `job` (or `lanes_job`, the job of its lanes) published.
    fn read_published(&mut self, job: &str, lanes_job: &str) -> Result<bool> {
        let sql = format!(
            "SELECT coalesce(bool_or(published), false) FROM {} WHERE job_id = $1 OR job_id = $2",
            self.commits()
        );
        let r = self.client()?.query_one(&sql, &[&job, &lanes_job]);
        Ok(r.map_err(|e| self.fail("reading the commit log", &e))?.get(0))
    }

    /// The job's lane chains in the commit log.
    fn lane_ids(&self) -> Vec<String> {
        self.lanes.as_ref().map_or_else(Vec::new, |(job, n)| (0..*n).map(|k| format!("{job}~{k}")).collect())
    }

    /// Lanes: create the tables once per job under the DDL lock (a full refresh's staging table is
    /// replaced only by the first lane to open, which leaves the job's marker row).
    fn open_lanes(&mut self, job: String, lanes: usize) -> Result<()> {
        self.begin_locked()?;
        let sql = format!("SELECT count(*) FROM {} WHERE job_id = $1", self.commits());
        let r = self.client()?.query_one(&sql, &[&job]);
        let first = r.map_err(|e| self.fail("reading the commit log", &e))?.get::<_, i64>(0) == 0;
        self.create_tables(first)?;
        let marker = format!(
            "INSERT INTO {} (job_id, seq, cursor) VALUES ($1, 0, $2::text::jsonb) ON CONFLICT DO NOTHING",
            self.commits()
        );
        let lanes_json = json!({ "lanes": lanes }).to_string();
        let r = self.client()?.execute(&marker, &[&job, &lanes_json]);
        r.map_err(|e| self.fail("recording the job's lanes", &e))?;
        self.commit_tx()
    }

    /// Lanes: publish when every lane's last commit is `done` (under the DDL lock, so two lanes
    /// finishing together publish once); else nothing, the last lane to finish publishes.
    fn finalize_lanes(&mut self, publish: &str) -> Result<bool> {
        let (job, lanes) = self.lanes.clone().ok_or_else(|| Error::internal("postgres destination: no lanes"))?;
        self.begin_locked()?;
        let sql = format!(
            "SELECT (SELECT coalesce(bool_or(published), false) FROM {log} WHERE job_id = $1), \
             (SELECT count(*) FROM (SELECT DISTINCT ON (job_id) cursor FROM {log} WHERE job_id = ANY($2) \
              ORDER BY job_id, seq DESC) last WHERE (cursor->>'done')::boolean)",
            log = self.commits()
        );
        let ids = self.lane_ids();
        let r = self.client()?.query_one(&sql, &[&job, &ids]);
        let row = r.map_err(|e| self.fail("reading the lanes' commits", &e))?;
        let (published, done): (bool, i64) = (row.get(0), row.get(1));
        if published || done < lanes as i64 {
            self.commit_tx()?;
            tracing::info!(
                lanes,
                lanes_done = done,
                published,
                "lane committed; the last lane to finish publishes the tables"
            );
            return Ok(published);
        }
        let mark =
            format!("UPDATE {} SET published = true WHERE job_id = '{}'", self.commits(), job.replace('\'', "''"));
        self.exec("publishing", &format!("{publish}{mark}; COMMIT"))?;
        self.in_tx = false;
        Ok(true)
    }

    /// Create every target's write table; `fresh` (a new job) replaces a full refresh's staging
    /// table. Callers hold the DDL lock ([`Self::begin_locked`]). A table that already holds rows (incremental, or a resumed staging table) must have
    /// our columns: it may predate bizon.
    fn create_tables(&mut self, fresh: bool) -> Result<()> {
        for cur in 0..self.targets.len() {
            self.cur = cur;
            let table = self.write_table();
            let ddl = match (self.mode, fresh) {
                (SyncMode::FullRefresh, true) => format!("DROP TABLE IF EXISTS {table}; {}", self.table_ddl(&table)),
                _ => self.table_ddl(&table),
            };
            self.exec("creating the table", &ddl)?;
            if self.mode != SyncMode::FullRefresh || !fresh {
                let probe = self.probe(&table);
                self.exec("checking the table's columns", &probe)?;
            }
        }
        self.cur = 0;
        Ok(())
    }

    /// A query that fails unless `table` has the columns this destination writes.
    fn probe(&self, table: &str) -> String {
        match &self.t().typed {
            Some(cols) => {
                let names: Vec<String> = cols.iter().map(|(n, _)| crate::pg::ident(n)).collect();
                format!("SELECT {}, {META_COLUMNS} FROM {table} LIMIT 0", names.join(", "))
            }
            None => format!("SELECT {COLUMNS} FROM {table} LIMIT 0"),
        }
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
        self.lanes = match ctx.lane {
            Some((_, lanes)) if lanes > 1 => {
                let job = ctx.lane_job().map_err(|e| e.context("postgres destination"))?;
                if !self.primary_key.is_empty() {
                    return Err(Error::config(format!(
                        "postgres destination: `primary_key` (upserts) does not run on {lanes} lanes: lanes commit \
                         independently, so an older version of a record could overwrite a newer one; use one lane"
                    )));
                }
                Some((job.to_owned(), lanes))
            }
            _ => None,
        };
        self.ensure_commit_log()?;
        self.seq = resume.and_then(|t| t.get("seq")).and_then(Json::as_u64).unwrap_or(0);
        // with lanes the job is published as a whole: its marker row carries the flag
        let job_id = self.job_id.clone();
        let job = self.lanes.as_ref().map_or_else(|| job_id.clone(), |(j, _)| j.clone());
        self.published = self.read_published(&job_id, &job)?;
        if self.published {
            return Ok(json!({"seq": self.seq}));
        }
        if let Some((job, lanes)) = self.lanes.clone() {
            self.open_lanes(job, lanes)?;
            return Ok(json!({"seq": self.seq}));
        }
        // under the DDL lock: a killed run's server session may still be running this same DDL
        // (the server notices a dead client only when it next reads from it), and two
        // unserialized `CREATE TABLE IF NOT EXISTS` of one name fail one of them with a
        // duplicate-key error on the catalog
        self.begin_locked()?;
        self.create_tables(resume.is_none())?;
        self.commit_tx()?;
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
        let record = self.statement("recording the cursor", &sql)?;
        let job_id = self.job_id.clone();
        let r = self.client()?.execute(&record, &[&job_id, &(seq as i64), &cursor_text]);
        r.map_err(|e| self.fail("recording the cursor", &e))?;
        self.commit_tx()?;
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
        let mut swaps = String::new();
        if self.mode == SyncMode::FullRefresh {
            for cur in 0..self.targets.len() {
                self.cur = cur;
                swaps.push_str(&format!(
                    "DROP TABLE IF EXISTS {target}; ALTER TABLE {staging} RENAME TO {name}; ",
                    target = self.target(),
                    staging = self.staging(),
                    name = crate::pg::ident(&self.t().table),
                ));
            }
        }
        if self.lanes.is_some() {
            self.published = self.finalize_lanes(&swaps)?;
            return Ok(());
        }
        if self.mode != SyncMode::FullRefresh {
            self.exec("publishing", &mark)?;
            self.published = true;
            return Ok(());
        }
        // The swap under the DDL lock, after reading again whether the job is published: a killed
        // run's session may have published it after this run's `open` looked (its empty staging
        // table, created since, must not replace the published table).
        self.begin_locked()?;
        let job_id = self.job_id.clone();
        if self.read_published(&job_id, &job_id)? {
            tracing::warn!(job = %job_id, "the job was published by an earlier run meanwhile: not publishing again");
            self.commit_tx()?;
        } else {
            self.exec("publishing", &format!("{swaps}{mark}; COMMIT"))?;
            self.in_tx = false;
        }
        self.published = true;
        Ok(())
    }
}

/// A top-level field: raw key bytes (without quotes) and raw value token.
pub type RawField<'a> = (&'a [u8], &'a [u8]);

/// The top-level fields of a record as the encoders see them: (raw key bytes without quotes, raw
/// value token) — the single-pass scanner the typed-column encoders use. Exposed for the fuzz
/// target that compares it with serde_json; not an API.
#[doc(hidden)]
pub fn scan_fields(data: &[u8]) -> std::result::Result<Vec<RawField<'_>>, String> {
    let spans = Fields::parse_into(data, Vec::new())?.into_spans();
    Ok(spans.into_iter().map(|(ks, ke, vs, ve)| (&data[ks..ke], &data[vs..ve])).collect())
}

#[cfg(test)]
mod tests;
