//! Reading bizon 0.6.4's backend for `bizon state import`: its `stream_jobs` table (and
//! `destination_cursors` for how far an unfinished job got) in the SQLite file
//! (`<database>.sqlite3`) or the PostgreSQL database its config names. Read-only.
//!
//! bizon hands an incremental source the `created_at` of the stream's last successful job
//! (`engine/pipeline/producer.py`, `last_run`): records changed after it are read. That instant,
//! in UTC, is the watermark this backend's stream starts from.

use std::path::PathBuf;

use bizon_core::config::yaml::Node;
use bizon_core::{Error, Json, Result};

/// Where bizon kept its state, from the bizon config's `engine.backend`.
#[derive(Debug, Clone)]
pub enum BizonBackend {
    /// `type: sqlite`: `<database>.sqlite3`, relative to the directory bizon ran in.
    Sqlite(PathBuf),
    /// `type: postgres`: the tables are in the connection's search_path (bizon does not put them
    /// in `schema`).
    #[cfg(feature = "postgres")]
    Postgres(crate::pg::PgConnection),
}

impl BizonBackend {
    /// From a bizon config's resolved tree: `engine.backend`, or bizon's default (`sqlite`,
    /// database `bizon`) when there is none.
    pub fn from_config(root: &Node) -> std::result::Result<Self, String> {
        let Some(backend) = root.get("engine").and_then(|e| e.get("backend")) else {
            return Ok(BizonBackend::Sqlite(PathBuf::from("bizon.sqlite3")));
        };
        let kind = backend.get("type").and_then(Node::as_str).unwrap_or_default();
        let config = backend.get("config");
        let key = |name: &str| config.and_then(|c| c.get(name)).and_then(Node::as_str).map(str::to_owned);
        let need = |name: &str| key(name).ok_or_else(|| format!("bizon's `engine.backend.config.{name}` is missing"));
        match kind {
            "sqlite" => Ok(BizonBackend::Sqlite(PathBuf::from(format!("{}.sqlite3", need("database")?)))),
            #[cfg(feature = "postgres")]
            "postgres" => {
                let port = need("port")?;
                Ok(BizonBackend::Postgres(crate::pg::PgConnection {
                    host: need("host")?,
                    port: port.parse().map_err(|_| format!("bizon's `engine.backend.config.port` is not a port: `{port}`"))?,
                    database: need("database")?,
                    username: need("username")?,
                    password: key("password"),
                    schema: crate::pg::default_schema(),
                    sslmode: Default::default(),
                    sslrootcert: None,
                }))
            }
            "sqlite_in_memory" => {
                Err("bizon's backend is `sqlite_in_memory`: it kept nothing after its runs, so there is nothing to import".into())
            }
            other => Err(format!(
                "importing from bizon's `{other}` backend is not supported (sqlite{}); `job list` on bizon's side shows \
                 the state to carry over by hand",
                if cfg!(feature = "postgres") { " and postgres" } else { "" }
            )),
        }
    }

    /// Kind and location, never a password.
    pub fn describe(&self) -> String {
        match self {
            BizonBackend::Sqlite(p) => format!("sqlite {}", p.display()),
            #[cfg(feature = "postgres")]
            BizonBackend::Postgres(c) => format!("postgres {}:{}/{}", c.host, c.port, c.database),
        }
    }
}

/// One row of bizon's `stream_jobs`, with its destination progress.
#[derive(Debug, Clone, PartialEq)]
pub struct BizonJob {
    pub id: String,
    pub status: String,
    pub sync_mode: String,
    /// `created_at` as UTC microseconds (bizon writes UTC without an offset).
    pub created_at: i64,
    /// `incremental_state`: the `next_state` a source persisted (bizon's own sources set none).
    pub incremental_state: Option<Json>,
    /// The newest successful `destination_cursors` row: (to_source_iteration, rows_written).
    pub written: Option<(i64, i64)>,
}

/// What bizon's backend holds for one stream.
#[derive(Debug, Clone, Default)]
pub struct BizonState {
    /// The newest `succeeded` job: its `created_at` is the next run's lower bound.
    pub last_succeeded: Option<BizonJob>,
    /// `started` / `running` jobs (a run bizon would resume), newest first.
    pub unfinished: Vec<BizonJob>,
}

/// The columns read, in this order, by both readers.
const SELECT: &str = "SELECT j.id, j.status, j.sync_mode, CAST(j.created_at AS TEXT), j.incremental_state, \
     (SELECT d.to_source_iteration FROM destination_cursors d WHERE d.job_id = j.id AND d.success \
      ORDER BY d.to_source_iteration DESC LIMIT 1), \
     (SELECT CAST(SUM(d.rows_written) AS BIGINT) FROM destination_cursors d WHERE d.job_id = j.id AND d.success) \
     FROM stream_jobs j WHERE j.name = $1 AND j.source_name = $2 AND j.stream_name = $3 \
     AND j.status IN ('succeeded', 'started', 'running') ORDER BY j.created_at DESC";

type Row = (String, String, String, String, Option<String>, Option<i64>, Option<i64>);

fn job(r: Row) -> Result<BizonJob> {
    let (id, status, sync_mode, created, state, iteration, rows) = r;
    let created_at = bizon_core::time::parse_rfc3339(&created)
        .ok_or_else(|| Error::config(format!("bizon job {id}: `created_at` is not a timestamp: `{created}`")))?;
    let incremental_state = match state.as_deref().map(str::trim) {
        None | Some("") | Some("null") => None,
        Some(s) => Some(
            serde_json::from_str(s)
                .map_err(|e| Error::config(format!("bizon job {id}: `incremental_state` is not JSON ({e})")))?,
        ),
    };
    Ok(BizonJob { id, status, sync_mode, created_at, incremental_state, written: iteration.zip(rows) })
}

fn state(rows: Vec<Row>) -> Result<BizonState> {
    let mut out = BizonState::default();
    for r in rows {
        let j = job(r)?;
        if j.status == "succeeded" {
            if out.last_succeeded.is_none() {
                out.last_succeeded = Some(j);
            }
        } else {
            out.unfinished.push(j);
        }
    }
    Ok(out)
}

/// Read the stream's jobs (`name` is bizon's job name: its `id`, else `name`).
pub fn read(backend: &BizonBackend, name: &str, source: &str, stream: &str) -> Result<BizonState> {
    match backend {
        BizonBackend::Sqlite(path) => {
            if !path.is_file() {
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                return Err(Error::config(format!(
                    "bizon's sqlite backend `{}` does not exist (bizon writes `<database>.sqlite3` in the directory it \
                     runs in: run this from there)",
                    shown.display()
                )));
            }
            let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| Error::config(format!("opening bizon's backend {}: {e}", path.display())))?;
            let fail = |e: rusqlite::Error| {
                Error::config(format!("reading bizon's tables in {} (is it a bizon backend?): {e}", path.display()))
            };
            let sql = SELECT.replace('$', "?");
            let mut stmt = conn.prepare(&sql).map_err(fail)?;
            let rows = stmt
                .query_map([name, source, stream], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })
                .map_err(fail)?
                .collect::<rusqlite::Result<Vec<Row>>>()
                .map_err(fail)?;
            state(rows)
        }
        #[cfg(feature = "postgres")]
        BizonBackend::Postgres(c) => {
            let mut client = c.connect()?;
            let rows = client.query(SELECT, &[&name, &source, &stream]).map_err(|e| {
                Error::config(format!("reading bizon's tables (`stream_jobs`) in {}: {e}", backend.describe()))
            })?;
            state(
                rows.iter()
                    .map(|r| {
                        (
                            r.get(0),
                            r.get(1),
                            r.get(2),
                            r.get(3),
                            r.get(4),
                            r.get::<_, Option<i32>>(5).map(i64::from),
                            r.get(6),
                        )
                    })
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bizon's tables as SQLAlchemy creates them in SQLite (bizon 0.6.4, `engine/backend/models.py`).
    pub const BIZON_SQLITE_DDL: &str = "
CREATE TABLE stream_jobs (id VARCHAR(100) NOT NULL, name VARCHAR(100) NOT NULL, source_name VARCHAR(100) NOT NULL,
  stream_name VARCHAR(100) NOT NULL, sync_mode VARCHAR(100) NOT NULL, attempt INTEGER, total_records_to_fetch INTEGER,
  created_at DATETIME NOT NULL, updated_at DATETIME, incremental_state VARCHAR, status VARCHAR(100),
  error_message VARCHAR(255), PRIMARY KEY (id));
CREATE TABLE destination_cursors (id VARCHAR(100) NOT NULL, job_id VARCHAR(100), name VARCHAR(100) NOT NULL,
  source_name VARCHAR(100) NOT NULL, stream_name VARCHAR(100) NOT NULL, destination_name VARCHAR(100) NOT NULL,
  from_source_iteration INTEGER, to_source_iteration INTEGER, rows_written INTEGER, success BOOLEAN NOT NULL,
  attempt INTEGER, error_message VARCHAR(500), created_at DATETIME, updated_at DATETIME, pagination VARCHAR,
  PRIMARY KEY (id), FOREIGN KEY(job_id) REFERENCES stream_jobs (id));";

    #[test]
    fn reads_the_newest_succeeded_job_and_the_unfinished_ones() {
        let dir = scratch_dir();
        let path = dir.join("bizon.sqlite3");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(BIZON_SQLITE_DDL).unwrap();
        for (id, status, created, state) in [
            ("a1", "succeeded", "2026-11-01 10:00:00.000000", None),
            ("a2", "succeeded", "2026-11-02 10:00:00.250000", Some("{\"page\": 3}")),
            ("a3", "failed", "2026-11-03 10:00:00.000000", None),
            ("a4", "running", "2026-11-04 10:00:00.000000", None),
        ] {
            conn.execute(
                "INSERT INTO stream_jobs (id, name, source_name, stream_name, sync_mode, created_at, status, incremental_state) \
                 VALUES (?1, 'p', 'dummy', 'creatures', 'incremental', ?2, ?3, ?4)",
                rusqlite::params![id, created, status, state],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO stream_jobs (id, name, source_name, stream_name, sync_mode, created_at, status) \
             VALUES ('other', 'p', 'dummy', 'plants', 'incremental', '2026-11-05 00:00:00', 'succeeded')",
            [],
        )
        .unwrap();
        for (id, job, to, rows) in [("c1", "a4", 4, 40), ("c2", "a4", 9, 50)] {
            conn.execute(
                "INSERT INTO destination_cursors (id, job_id, name, source_name, stream_name, destination_name, \
                 from_source_iteration, to_source_iteration, rows_written, success) \
                 VALUES (?1, ?2, 'p', 'dummy', 'creatures', 'file', 0, ?3, ?4, 1)",
                rusqlite::params![id, job, to, rows],
            )
            .unwrap();
        }
        let s = read(&BizonBackend::Sqlite(path), "p", "dummy", "creatures").unwrap();
        let last = s.last_succeeded.unwrap();
        assert_eq!(last.id, "a2");
        assert_eq!(bizon_core::time::format_rfc3339(last.created_at), "2026-11-02T10:00:00.250000+00:00");
        assert_eq!(last.incremental_state, Some(serde_json::json!({"page": 3})));
        assert_eq!(s.unfinished.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["a4"]);
        assert_eq!(s.unfinished[0].written, Some((9, 90)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_file_and_an_in_memory_backend_are_named() {
        let e = read(&BizonBackend::Sqlite("/nonexistent/bizon.sqlite3".into()), "p", "s", "t").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/bizon.sqlite3` does not exist"), "{e}");
        let root = bizon_core::config::yaml::parse("engine:\n  backend:\n    type: sqlite_in_memory\n").unwrap();
        assert!(BizonBackend::from_config(&root).unwrap_err().contains("nothing to import"));
        let root = bizon_core::config::yaml::parse("name: x\n").unwrap();
        assert_eq!(BizonBackend::from_config(&root).unwrap().describe(), "sqlite bizon.sqlite3");
    }

    fn scratch_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bizon-state-{}-{}", std::process::id(), bizon_core::time::now_micros()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
