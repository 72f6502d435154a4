//! What the staged BigQuery destinations (`bigquery`, `bigquery_streaming`) share: where rows go,
//! and their exactly-once publication.
//!
//! Full refresh and incremental runs write into a staging table (`<table>_temp` /
//! `<table>_incremental`, bizon's names) whose rows also carry the attempt that wrote them and
//! their iteration. Each flush's commit token lists, per attempt, the iterations the engine
//! committed; `finalize` publishes only those rows, one per `bizon_id` (a write that reached
//! BigQuery twice counts once): full refresh replaces the table in one statement (`CREATE OR
//! REPLACE TABLE … AS SELECT`, readers see the old table or the new one), incremental appends them
//! in a transaction that also records the job in the dataset's `_bizon_published` table, so a
//! resumed run whose staging table survived a crash appends nothing twice (typed `unnest` tables
//! included, which have no `_bizon_id`). Rows of an attempt that crashed before its commit are
//! never published. Stream mode (no end, no finalize) writes the table itself.
//!
//! On lanes (several consumers of one job) each lane stages into its own table (`<staging>_lane<k>`,
//! so a lane starting fresh drops only its own) and commits its own ranges; the lane that finds
//! every lane done publishes them all in one statement from every lane's last token
//! ([`Staged::finalize_lanes`]), then drops the lanes' tables.

use bizon_core::config::SyncMode;
use bizon_core::time::now_micros;
use bizon_core::{DestinationContext, DestinationCursor, Error, Json, Result};
use serde_json::json;
use tracing::info;

use super::auth::Credentials;
use super::bigquery::{sql_string, BigQuery, TableRef};
use super::table::{default_table, effective_partitioning, ensure_table, schema_resource, Column, TimePartitioning};

/// The dataset's table of incremental publications in progress (table, job).
const PUBLISHED: &str = "_bizon_published";

/// Staging-only columns: which attempt wrote a row, and its iteration.
pub const ATTEMPT: &str = "_bizon_attempt";
pub const ITERATION: &str = "_bizon_iteration";

/// Where a destination's config says rows go.
pub struct TableSpec<'a> {
    /// The destination's name, for messages.
    pub what: &'static str,
    /// `authentication.service_account_key` (empty: Application Default Credentials).
    pub key: &'a str,
    pub api_url: Option<&'a str>,
    pub project_id: &'a str,
    pub dataset_id: &'a str,
    pub dataset_location: Option<&'a str>,
    /// Create a missing dataset (else a missing dataset is a config error).
    pub create_dataset: bool,
    pub table_prefix: &'a str,
    /// `destination_id` as written in the config.
    pub destination_id: Option<&'a str>,
    pub time_partitioning: Option<&'a TimePartitioning>,
    pub partition_field_written: bool,
    /// The `record_schemas` columns and clustering keys with `unnest`.
    pub typed: Option<(Vec<Column>, Option<Vec<String>>)>,
    pub unnest: bool,
    /// Columns of bizon's layout (without `unnest`).
    pub layout: Vec<Column>,
}

/// An open staged destination.
pub struct Staged {
    pub bq: BigQuery,
    pub main: TableRef,
    /// The staging table rows go to (`None`: stream mode writes `main`).
    pub staging: Option<TableRef>,
    /// Full refresh (replace the table) rather than incremental (append).
    pub full_refresh: bool,
    /// Published already (the staging table was gone when a resumed job opened).
    pub published: bool,
    /// Columns of the published table.
    pub columns: Vec<Column>,
    /// Columns of the table rows are written to (staging: plus the attempt and iteration, and
    /// `_bizon_id` with `unnest`).
    pub written: Vec<Column>,
    clustering: Option<Vec<String>>,
    /// Partitioning of the published table when it is created.
    partitioning: Option<TimePartitioning>,
    /// This process's attempt (rows it stages carry it).
    pub attempt: String,
    /// Committed (attempt, after iteration, up to iteration) ranges, oldest first.
    ranges: Vec<(String, i64, i64)>,
    /// The last iteration committed before this attempt.
    base: i64,
    /// The engine's job id (the publication marker of an incremental job; a lane's job's id).
    job_id: String,
    /// `(lane, lanes)` when consumers split the job over lanes: each lane stages into its own
    /// table (`<staging>_lane<k>`) and the job is published once, by [`Staged::finalize_lanes`].
    lane: Option<(usize, usize)>,
    /// The staging table's name without the lane suffix.
    staging_base: Option<TableRef>,
}

impl Staged {
    /// Resolve the tables, create what is missing and read the resume token; returns the
    /// destination and the token of its starting state.
    pub fn open(spec: &TableSpec, ctx: &DestinationContext, resume: Option<&Json>) -> Result<(Staged, Json)> {
        let credentials = Credentials::from_config(Some(spec.key))?;
        let mut bq = BigQuery::new(credentials, spec.api_url, spec.project_id);
        bq.location = spec.dataset_location.map(str::to_owned);
        let main = match spec.destination_id {
            Some(id) => TableRef::parse(id, spec.project_id, spec.dataset_id)?,
            None => {
                // A missing dataset holds no legacy table either: it is created below.
                let base = format!("{}_{}", ctx.source, ctx.stream);
                default_table(&bq, spec.project_id, spec.dataset_id, spec.table_prefix, &base)?
            }
        };
        if !bq.dataset_exists(&main.project, &main.dataset)? {
            if !spec.create_dataset {
                return Err(Error::config(format!(
                    "{}: the dataset {}.{} does not exist; create it, or set `create_dataset: true`",
                    spec.what, main.project, main.dataset
                )));
            }
            info!(dataset = %format!("{}.{}", main.project, main.dataset), "creating the dataset");
            bq.create_dataset(&main.project, &main.dataset, spec.dataset_location)?;
        }
        let (columns, clustering) = match &spec.typed {
            Some((cols, clustering)) => (cols.clone(), clustering.clone()),
            None if spec.unnest => {
                return Err(Error::config(format!(
                    "{}: `unnest: true` but no record_schemas entry names this destination",
                    spec.what
                )))
            }
            None => (spec.layout.clone(), None),
        };
        let partitioning = effective_partitioning(
            spec.time_partitioning,
            spec.partition_field_written,
            &columns,
            bq.get_table(&main)?.is_some(),
            &main,
        )?;
        let staging_base = match ctx.sync_mode {
            SyncMode::Stream => None,
            SyncMode::FullRefresh => Some(main.sibling(&format!("{}_temp", main.table))),
            SyncMode::Incremental => Some(main.sibling(&format!("{}_incremental", main.table))),
        };
        let staging = match (&staging_base, ctx.lane) {
            (Some(base), Some((k, _))) => Some(lane_table(base, k)),
            (base, _) => base.clone(),
        };
        // on lanes the job it publishes is the one every lane shares
        let job_id = ctx.lane_job()?.to_owned();
        let mut staged = Staged {
            bq,
            main,
            staging: None,
            full_refresh: ctx.sync_mode == SyncMode::FullRefresh,
            published: false,
            written: columns.clone(),
            columns,
            clustering,
            partitioning,
            attempt: format!("{:x}-{:x}", now_micros(), std::process::id()),
            ranges: Vec::new(),
            base: -1,
            job_id,
            lane: ctx.lane,
            staging_base,
        };
        let Some(s) = staging else {
            ensure_table(
                &staged.bq,
                &staged.main,
                &staged.columns,
                staged.partitioning.as_ref(),
                staged.clustering.as_deref(),
            )?;
            info!(table = %staged.main, "{} opened (stream mode: rows go to the table)", spec.what);
            return Ok((staged, json!({})));
        };
        if spec.unnest {
            staged.written.push(Column::new("_bizon_id", "STRING", "NULLABLE"));
        }
        staged.written.push(Column::new(ATTEMPT, "STRING", "NULLABLE"));
        staged.written.push(Column::new(ITERATION, "INT64", "NULLABLE"));
        match resume {
            None => {
                // A new job: whatever an abandoned job left there is not ours.
                if staged.bq.delete_table(&s)? {
                    info!(table = %s, "dropped a staging table left by an earlier job");
                }
                ensure_table(&staged.bq, &s, &staged.written, None, None)?;
            }
            Some(token) => {
                staged.ranges = ranges_of(token);
                staged.base = staged.ranges.iter().map(|r| r.2).max().unwrap_or(-1);
                // Finalize drops the staging table: gone means published.
                staged.published = staged.bq.get_table(&s)?.is_none();
                if !staged.published {
                    ensure_table(&staged.bq, &s, &staged.written, None, None)?;
                }
            }
        }
        info!(table = %staged.main, staging = %s, published = staged.published, "{} opened", spec.what);
        staged.staging = Some(s);
        let token = staged.token();
        Ok((staged, token))
    }

    /// The table rows are written to.
    pub fn target(&self) -> &TableRef {
        self.staging.as_ref().unwrap_or(&self.main)
    }

    /// The schema resource of the table rows are written to.
    pub fn written_schema(&self) -> Json {
        schema_resource(&self.written)
    }

    fn token(&self) -> Json {
        json!({
            "ranges": self.ranges.iter().map(|(a, f, t)| json!([a, f, t])).collect::<Vec<_>>(),
        })
    }

    /// The commit token once every row written up to `next` is in the staging table.
    pub fn flush(&mut self, next: &DestinationCursor) -> Json {
        if self.staging.is_none() {
            return json!({});
        }
        self.ranges.retain(|(a, _, _)| *a != self.attempt);
        if next.iteration > self.base {
            self.ranges.push((self.attempt.clone(), self.base, next.iteration));
        }
        self.token()
    }

    /// Publish the committed staged rows once and drop the staging table. On lanes this waits:
    /// the lane that finds every lane done publishes them all ([`Staged::finalize_lanes`]).
    pub fn finalize(&mut self) -> Result<()> {
        let Some(staging) = self.staging.clone() else { return Ok(()) };
        if self.published || self.lane.is_some() {
            return Ok(());
        }
        self.publish()?;
        self.bq.delete_table(&staging)?;
        self.published_done()
    }

    /// Publish every lane's committed staged rows once (`tokens`: each lane's last commit token,
    /// in lane order) and drop the lanes' staging tables. Idempotent: the tables are dropped only
    /// after the publication, so one of them gone means published.
    pub fn finalize_lanes(&mut self, tokens: &[Json]) -> Result<()> {
        let (Some(base), Some((_, lanes))) = (self.staging_base.clone(), self.lane) else { return Ok(()) };
        if tokens.len() != lanes {
            return Err(Error::internal(format!("{lanes} lanes but {} lane tokens", tokens.len())));
        }
        let tables: Vec<TableRef> = (0..lanes).map(|k| lane_table(&base, k)).collect();
        let mut present = Vec::with_capacity(lanes);
        for t in &tables {
            present.push(self.bq.get_table(t)?.is_some());
        }
        if present.iter().all(|p| *p) {
            let sources: Vec<String> = tables
                .iter()
                .zip(tokens)
                .map(|(t, token)| format!("SELECT * FROM {} WHERE {}", t.sql(), committed_sql(&ranges_of(token))))
                .collect();
            self.publish_from(&format!("({})", sources.join(" UNION ALL ")), "TRUE")?;
        }
        for (t, p) in tables.iter().zip(present) {
            if p {
                self.bq.delete_table(t)?;
            }
        }
        self.published_done()
    }

    /// After a publication: its incremental marker is dropped, and the job is published.
    fn published_done(&mut self) -> Result<()> {
        if !self.full_refresh {
            // The marker only guarded a publication whose staging table might survive a crash.
            let marker = self.main.sibling(PUBLISHED);
            self.bq.query(&format!(
                "DELETE FROM {} WHERE table_name = {} AND job_id = {}",
                marker.sql(),
                sql_string(&self.main.table),
                sql_string(&self.job_id)
            ))?;
        }
        info!(table = %self.main, "published");
        self.published = true;
        Ok(())
    }

    /// Publish the committed staged rows, once: full refresh replaces the table in one
    /// statement (doing it again gives the same table); incremental appends them in a transaction
    /// that also records the job in the dataset's `_bizon_published` marker, so a run resumed
    /// after a crash between this and the staging table's drop appends nothing twice.
    pub(crate) fn publish(&self) -> Result<()> {
        let Some(staging) = &self.staging else { return Ok(()) };
        self.publish_from(&staging.sql(), &self.committed())
    }

    /// [`Staged::publish`] of the rows of `from` (a table or a subquery) that `committed` selects.
    fn publish_from(&self, staging: &str, committed: &str) -> Result<()> {
        let cols = self.columns.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ");
        let partitioning = self.partitioning.as_ref();
        let clustering = self.clustering.as_deref().filter(|c| !c.is_empty());
        let one_per_id = format!("QUALIFY ROW_NUMBER() OVER (PARTITION BY _bizon_id ORDER BY {ITERATION}) = 1");
        if self.full_refresh {
            let mut sql = format!("CREATE OR REPLACE TABLE {}", self.main.sql());
            if let Some(p) = partitioning {
                sql.push(' ');
                sql.push_str(&p.sql(&self.columns));
            }
            if let Some(c) = clustering {
                sql.push_str(&format!(
                    " CLUSTER BY {}",
                    c.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            sql.push_str(&format!(" AS SELECT {cols} FROM {staging} WHERE {committed} {one_per_id}"));
            self.bq.query(&sql)?;
            return Ok(());
        }
        ensure_table(&self.bq, &self.main, &self.columns, partitioning, clustering)?;
        let marker = self.main.sibling(PUBLISHED);
        self.bq.query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name STRING NOT NULL, job_id STRING NOT NULL, published_at TIMESTAMP)",
            marker.sql()
        ))?;
        let not_yet = format!(
            "NOT EXISTS (SELECT 1 FROM {} WHERE table_name = {} AND job_id = {})",
            marker.sql(),
            sql_string(&self.main.table),
            sql_string(&self.job_id)
        );
        self.bq.query(&format!(
            "BEGIN TRANSACTION; \
             INSERT INTO {main} ({cols}) SELECT {cols} FROM {staging} WHERE ({committed}) AND {not_yet} {one_per_id}; \
             INSERT INTO {marker} (table_name, job_id, published_at) SELECT {table}, {job}, CURRENT_TIMESTAMP() \
               FROM UNNEST([1]) WHERE {not_yet}; \
             COMMIT TRANSACTION;",
            main = self.main.sql(),
            marker = marker.sql(),
            table = sql_string(&self.main.table),
            job = sql_string(&self.job_id),
        ))?;
        info!(table = %self.main, "incremental rows published");
        Ok(())
    }

    /// The `WHERE` condition selecting the committed rows of the staging table.
    fn committed(&self) -> String {
        committed_sql(&self.ranges)
    }
}

/// Lane `k`'s staging table.
fn lane_table(base: &TableRef, k: usize) -> TableRef {
    base.sibling(&format!("{}_lane{k}", base.table))
}

/// The committed (attempt, after iteration, up to iteration) ranges of a commit token.
fn ranges_of(token: &Json) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for r in token.get("ranges").and_then(Json::as_array).into_iter().flatten() {
        if let (Some(a), Some(f), Some(t)) = (r[0].as_str(), r[1].as_i64(), r[2].as_i64()) {
            out.push((a.to_owned(), f, t));
        }
    }
    out
}

/// The `WHERE` condition selecting the rows of committed `ranges`.
fn committed_sql(ranges: &[(String, i64, i64)]) -> String {
    if ranges.is_empty() {
        return "FALSE".into();
    }
    ranges
        .iter()
        .map(|(a, from, to)| {
            format!("({ATTEMPT} = {} AND {ITERATION} > {from} AND {ITERATION} <= {to})", sql_string(a))
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}
