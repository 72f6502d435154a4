//! The postgres backend's tables: creating the schema and migrating it, under an advisory lock
//! so that runs starting together migrate once.

use bizon_core::{Error, Result};

use super::PostgresBackend;
use crate::pg::ident;

const SCHEMA_VERSION: i32 = 1;

impl PostgresBackend {
    pub(super) fn migrate(&mut self) -> Result<()> {
        let s = ident(&self.conn.schema);
        let sql = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtextextended('bizon-migrate:' || {lit}, 0));
             CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {ver} (version integer NOT NULL);
             COMMIT;",
            lit = literal(&self.conn.schema),
            ver = self.t("bizon_schema_version"),
        );
        let r = self.client()?.batch_execute(&sql);
        r.map_err(|e| self.err("creating the schema", &e))?;
        let sql = format!("SELECT coalesce(max(version), 0) FROM {}", self.t("bizon_schema_version"));
        let r = self.client()?.query_one(&sql, &[]);
        let version: i32 = r.map_err(|e| self.err("reading the schema version", &e))?.get(0);
        if version > SCHEMA_VERSION {
            return Err(Error::config(format!(
                "postgres backend: schema version {version} is newer than this bizon ({SCHEMA_VERSION}); upgrade bizon"
            )));
        }
        if version < 1 {
            let m1 = format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtextextended('bizon-migrate:' || {lit}, 0));
                 CREATE TABLE IF NOT EXISTS {jobs} (id text PRIMARY KEY, pipeline text NOT NULL, source text NOT NULL,
                   stream text NOT NULL, sync_mode text NOT NULL, reset boolean NOT NULL DEFAULT false, status text NOT NULL,
                   since text, created_at bigint NOT NULL, updated_at bigint NOT NULL, pid integer NOT NULL,
                   total_records bigint, error text);
                 CREATE INDEX IF NOT EXISTS bizon_jobs_by_stream ON {jobs} (pipeline, source, stream, status);
                 CREATE TABLE IF NOT EXISTS {dc} (job_id text PRIMARY KEY, iteration bigint NOT NULL, pagination text NOT NULL,
                   token text NOT NULL, records_written bigint NOT NULL, bytes_written bigint NOT NULL, watermark text,
                   done boolean NOT NULL, updated_at bigint NOT NULL);
                 CREATE TABLE IF NOT EXISTS {sc} (job_id text PRIMARY KEY, iteration bigint NOT NULL, pagination text NOT NULL,
                   updated_at bigint NOT NULL);
                 CREATE TABLE IF NOT EXISTS {streams} (pipeline text NOT NULL, source text NOT NULL, stream text NOT NULL,
                   watermark text, last_job_id text, updated_at bigint NOT NULL, PRIMARY KEY (pipeline, source, stream));
                 CREATE TABLE IF NOT EXISTS {locks} (pipeline text PRIMARY KEY, fence bigint NOT NULL, pid integer NOT NULL,
                   host text NOT NULL, run_tag text NOT NULL, heartbeat_at timestamptz NOT NULL);
                 INSERT INTO {ver} SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {ver} WHERE version >= 1);
                 COMMIT;",
                lit = literal(&self.conn.schema),
                jobs = self.t("bizon_jobs"),
                dc = self.t("bizon_destination_cursors"),
                sc = self.t("bizon_source_cursors"),
                streams = self.t("bizon_streams"),
                locks = self.t("bizon_locks"),
                ver = self.t("bizon_schema_version"),
            );
            let r = self.client()?.batch_execute(&m1);
            r.map_err(|e| self.err("migrating to schema version 1", &e))?;
        }
        Ok(())
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
