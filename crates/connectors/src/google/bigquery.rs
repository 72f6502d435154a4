//! A BigQuery REST (v2) client over the shared HTTP client: datasets, tables, `insertAll`,
//! queries and jobs. The base URL is Google's unless overridden (tests, proxies); the token comes
//! from [`super::auth`]. Errors name the table or the statement and carry BigQuery's message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::{Error, Json, Result};
use serde_json::json;

use super::auth::{Credentials, CLOUD_PLATFORM};
use super::upload::ResumableUpload;
use crate::http::client::{Body, HttpClient, Method, Request, Response};
use crate::http::settings::HttpSettings;

/// Google's BigQuery endpoint.
pub const API_URL: &str = "https://bigquery.googleapis.com";

/// `project.dataset.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl TableRef {
    pub fn new(project: &str, dataset: &str, table: &str) -> Self {
        TableRef { project: project.into(), dataset: dataset.into(), table: table.into() }
    }

    /// `table`, `dataset.table` or `project.dataset.table`; missing parts from the defaults.
    pub fn parse(id: &str, project: &str, dataset: &str) -> Result<Self> {
        let parts: Vec<&str> = id.split('.').collect();
        let r = match parts[..] {
            [t] => TableRef::new(project, dataset, t),
            [d, t] => TableRef::new(project, d, t),
            [p, d, t] => TableRef::new(p, d, t),
            _ => return Err(Error::config(format!("`{id}` is not a table id (`project.dataset.table`)"))),
        };
        if [&r.project, &r.dataset, &r.table].iter().any(|s| s.is_empty()) {
            return Err(Error::config(format!("`{id}` is not a table id (`project.dataset.table`)")));
        }
        Ok(r)
    }

    /// The same dataset, another table.
    pub fn sibling(&self, table: &str) -> Self {
        TableRef::new(&self.project, &self.dataset, table)
    }

    /// `` `project.dataset.table` `` for SQL.
    pub fn sql(&self) -> String {
        format!("`{}.{}.{}`", self.project, self.dataset, self.table)
    }

    fn json(&self) -> Json {
        json!({"projectId": self.project, "datasetId": self.dataset, "tableId": self.table})
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// A finished query: its column names and rows of cell values (strings, as the API gives them).
#[derive(Debug, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
    pub affected: Option<u64>,
}

impl QueryResult {
    /// The first cell of the first row as text.
    pub fn scalar(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_str()
    }
}

/// The client of one project.
pub struct BigQuery {
    http: Arc<HttpClient>,
    api: String,
    pub project: String,
    /// Job location (datasets outside the US need it for jobs.get).
    pub location: Option<String>,
}

impl std::fmt::Debug for BigQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuery").field("api", &self.api).field("project", &self.project).finish_non_exhaustive()
    }
}

impl BigQuery {
    pub fn new(credentials: Credentials, api_url: Option<&str>, project: &str) -> Self {
        let settings = HttpSettings {
            // Google's guidance: retry 429/5xx with backoff; queries and loads can take long.
            read_timeout: Duration::from_secs(300),
            max_retries: 8,
            backoff_factor: 1.0,
            max_backoff: Duration::from_secs(32),
            concurrency: 16,
            ..Default::default()
        };
        BigQuery {
            http: Arc::new(super::auth::client(credentials, CLOUD_PLATFORM, settings)),
            api: api_url.unwrap_or(API_URL).trim_end_matches('/').to_owned(),
            project: project.to_owned(),
            location: None,
        }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The client (auth included), shared with other Google APIs of the same credentials.
    pub fn shared_http(&self) -> Arc<HttpClient> {
        self.http.clone()
    }

    fn url(&self, project: &str, path: &str) -> String {
        format!("{}/bigquery/v2/projects/{project}/{path}", self.api)
    }

    fn table_url(&self, t: &TableRef, tail: &str) -> String {
        self.url(&t.project, &format!("datasets/{}/tables/{}{tail}", t.dataset, t.table))
    }

    fn send(&self, req: &Request, accept: &[u16]) -> Result<Response> {
        self.http.send_accepting(req, accept)
    }

    /// Whether the dataset exists.
    pub fn dataset_exists(&self, project: &str, dataset: &str) -> Result<bool> {
        let r = self.send(&Request::get(self.url(project, &format!("datasets/{dataset}"))), &[404])?;
        Ok(r.status != 404)
    }

    /// Create a dataset; one that already exists is fine.
    pub fn create_dataset(&self, project: &str, dataset: &str, location: Option<&str>) -> Result<()> {
        let mut body = json!({"datasetReference": {"projectId": project, "datasetId": dataset}});
        if let Some(l) = location {
            body["location"] = json!(l);
        }
        self.send(&Request::post_json(self.url(project, "datasets"), body), &[409])?;
        Ok(())
    }

    /// Delete a dataset and every table in it (tests); a missing one is fine.
    pub fn delete_dataset(&self, project: &str, dataset: &str) -> Result<()> {
        let req = Request { method: Method::Delete, ..Request::get(self.url(project, &format!("datasets/{dataset}"))) }
            .query("deleteContents", "true");
        self.send(&req, &[404])?;
        Ok(())
    }

    /// The table resource, `None` when it does not exist.
    pub fn get_table(&self, t: &TableRef) -> Result<Option<Json>> {
        let r = self.send(&Request::get(self.table_url(t, "")), &[404])?;
        if r.status == 404 {
            return Ok(None);
        }
        r.json().map(Some)
    }

    /// Create a table from `resource` (schema, partitioning, clustering); `false` when it
    /// already existed.
    pub fn create_table(&self, t: &TableRef, mut resource: Json) -> Result<bool> {
        resource["tableReference"] = t.json();
        let url = self.url(&t.project, &format!("datasets/{}/tables", t.dataset));
        let r = self.send(&Request::post_json(url, resource), &[409])?;
        Ok(r.status != 409)
    }

    /// Patch a table's resource (schema: the full new field list).
    pub fn patch_table(&self, t: &TableRef, patch: Json) -> Result<()> {
        let req =
            Request { method: Method::Patch, body: Some(Body::Json(patch)), ..Request::get(self.table_url(t, "")) };
        self.send(&req, &[])?;
        Ok(())
    }

    /// Delete a table; a missing one is fine. Returns whether it existed.
    pub fn delete_table(&self, t: &TableRef) -> Result<bool> {
        let req = Request { method: Method::Delete, ..Request::get(self.table_url(t, "")) };
        Ok(self.send(&req, &[404])?.status != 404)
    }

    /// `tabledata.insertAll` with a body already serialized; returns the answer (its
    /// `insertErrors`).
    pub fn insert_all(&self, t: &TableRef, body: Vec<u8>) -> Result<Json> {
        let req = Request {
            method: Method::Post,
            body: Some(Body::Raw { content_type: "application/json".into(), bytes: Arc::new(body) }),
            ..Request::get(self.table_url(t, "/insertAll"))
        };
        self.send(&req, &[])?.json()
    }

    /// Run a statement (standard SQL) and wait for it; a failed statement is an error naming it.
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        let mut body = json!({"query": sql, "useLegacySql": false, "timeoutMs": 60_000});
        if let Some(l) = &self.location {
            body["location"] = json!(l);
        }
        let r = self.send(&Request::post_json(self.url(&self.project, "queries"), body), &[])?.json()?;
        let failed = |r: &Json| {
            let errors = r.get("errors").or_else(|| r.pointer("/status/errorResult"));
            errors.filter(|e| !e.is_null() && e.as_array().is_none_or(|a| !a.is_empty())).map(|e| {
                Error::permanent(format!("BigQuery refused the statement `{}`: {}", short(sql), message_of(e)))
            })
        };
        if let Some(e) = failed(&r) {
            return Err(e);
        }
        let mut r = r;
        let started = Instant::now();
        // A query still running answers jobComplete=false: poll getQueryResults.
        while r.get("jobComplete") == Some(&Json::Bool(false)) {
            let job = r.pointer("/jobReference/jobId").and_then(Json::as_str).unwrap_or_default().to_owned();
            let mut req = Request::get(self.url(&self.project, &format!("queries/{job}"))).query("timeoutMs", 30_000);
            if let Some(l) = &self.location {
                req = req.query("location", l);
            }
            r = self.send(&req, &[])?.json()?;
            if let Some(e) = failed(&r) {
                return Err(e);
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err(Error::transient(format!("the statement `{}` ran for over an hour", short(sql))));
            }
        }
        let mut out = QueryResult {
            columns: r
                .pointer("/schema/fields")
                .and_then(Json::as_array)
                .map(|f| f.iter().filter_map(|c| c.get("name")?.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            affected: r.get("numDmlAffectedRows").and_then(|n| n.as_str()?.parse().ok()),
            rows: Vec::new(),
        };
        loop {
            for row in r.get("rows").and_then(Json::as_array).into_iter().flatten() {
                let cells = row.get("f").and_then(Json::as_array);
                out.rows.push(cells.into_iter().flatten().map(|c| c.get("v").cloned().unwrap_or(Json::Null)).collect());
            }
            let Some(token) = r.get("pageToken").and_then(Json::as_str).map(str::to_owned) else { break };
            let job = r.pointer("/jobReference/jobId").and_then(Json::as_str).unwrap_or_default().to_owned();
            r = self
                .send(&Request::get(self.url(&self.project, &format!("queries/{job}"))).query("pageToken", token), &[])?
                .json()?;
        }
        Ok(out)
    }

    /// A job by id, `None` when there is none.
    pub fn get_job(&self, job_id: &str) -> Result<Option<Json>> {
        let mut req = Request::get(self.url(&self.project, &format!("jobs/{job_id}")));
        if let Some(l) = &self.location {
            req = req.query("location", l);
        }
        let r = self.send(&req, &[404])?;
        if r.status == 404 {
            return Ok(None);
        }
        r.json().map(Some)
    }

    /// Wait for a job to be DONE; its error, if it failed, names `what`.
    pub fn wait_job(&self, mut job: Json, what: &str) -> Result<Json> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        while job.pointer("/status/state").and_then(Json::as_str) != Some("DONE") {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
            let id = job.pointer("/jobReference/jobId").and_then(Json::as_str).unwrap_or_default().to_owned();
            job = self.get_job(&id)?.ok_or_else(|| Error::transient(format!("{what}: job {id} disappeared")))?;
            if started.elapsed() > Duration::from_secs(6 * 3600) {
                return Err(Error::transient(format!("{what}: job {id} not done after 6 hours")));
            }
        }
        if let Some(e) = job.pointer("/status/errorResult").filter(|e| !e.is_null()) {
            return Err(Error::permanent(format!("{what} failed: {}", message_of(e))));
        }
        Ok(job)
    }

    /// Upload NDJSON rows into `t` with a load job (multipart upload) and wait for it: rows too
    /// large for `insertAll`.
    pub fn load_ndjson(&self, t: &TableRef, schema: &Json, rows: &[u8]) -> Result<Json> {
        let job = json!({"configuration": {"load": {
            "destinationTable": t.json(),
            "sourceFormat": "NEWLINE_DELIMITED_JSON",
            "schema": schema,
            "writeDisposition": "WRITE_APPEND",
            "createDisposition": "CREATE_NEVER",
        }}});
        let boundary = "bizon_rs_part_boundary_7f3c";
        let mut body = Vec::with_capacity(rows.len() + 1024);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(job.to_string().as_bytes());
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(rows);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = Request {
            method: Method::Post,
            url: format!("{}/upload/bigquery/v2/projects/{}/jobs", self.api, t.project),
            body: Some(Body::Raw {
                content_type: format!("multipart/related; boundary={boundary}"),
                bytes: Arc::new(body),
            }),
            ..Default::default()
        }
        .query("uploadType", "multipart");
        let job = self.send(&req, &[])?.json()?;
        self.wait_job(job, &format!("the load job into {t}"))
    }
}

impl BigQuery {
    /// Open a resumable upload to the upload host for a load job with id `job_id` (`load` is
    /// the job's `configuration.load`); the last chunk starts the job.
    pub fn start_load(&self, load: Json, job_id: &str, what: &str) -> Result<ResumableUpload> {
        let job = json!({"jobReference": self.job_reference(job_id), "configuration": {"load": load}});
        let req = Request::post_json(format!("{}/upload/bigquery/v2/projects/{}/jobs", self.api, self.project), job)
            .query("uploadType", "resumable");
        ResumableUpload::start(&self.http, &req, what)
    }

    /// The job the last chunk of a load upload answers, waited for until it is done; a job id
    /// BigQuery already ran (a request retried after its answer was lost: 409) is recognised
    /// and waited for instead of loading twice.
    pub fn finish_load(&self, u: &mut ResumableUpload, job_id: &str, bytes: Vec<u8>) -> Result<Json> {
        let r = u.send(bytes, true, &[409])?.ok_or_else(|| u.incomplete())?;
        self.job_answered(r, job_id, u.what())
    }

    /// Insert a load job of files already in Cloud Storage (`load` with its `sourceUris`) and
    /// wait for it. A job with this id that exists already (a retried request, a resumed run) is
    /// waited for instead of run again.
    pub fn load_uris(&self, load: Json, job_id: &str, what: &str) -> Result<Json> {
        if let Some(job) = self.get_job(job_id)? {
            tracing::info!(job = %job_id, "{what}: the job exists already: not loading again");
            return self.wait_job(job, what);
        }
        let job = json!({"jobReference": self.job_reference(job_id), "configuration": {"load": load}});
        let r = self.send(&Request::post_json(self.url(&self.project, "jobs"), job), &[409])?;
        self.job_answered(r, job_id, what)
    }

    fn job_reference(&self, job_id: &str) -> Json {
        let mut reference = json!({"projectId": self.project, "jobId": job_id});
        if let Some(l) = &self.location {
            reference["location"] = json!(l);
        }
        reference
    }

    fn job_answered(&self, r: Response, job_id: &str, what: &str) -> Result<Json> {
        if r.status == 409 {
            let job = self
                .get_job(job_id)?
                .ok_or_else(|| Error::transient(format!("{what}: job {job_id} is a duplicate but cannot be read")))?;
            tracing::info!(job = %job_id, "{what}: the job ran already (a retried request): not loading again");
            return self.wait_job(job, what);
        }
        self.wait_job(r.json()?, what)
    }
}

/// BigQuery's message(s) out of an `errors` list or an `errorResult`.
pub fn message_of(e: &Json) -> String {
    let one = |e: &Json| {
        let m = e.get("message").and_then(Json::as_str).unwrap_or("no message");
        match e.get("reason").and_then(Json::as_str) {
            Some(r) => format!("{r}: {m}"),
            None => m.to_owned(),
        }
    };
    match e {
        Json::Array(a) => a.iter().map(one).collect::<Vec<_>>().join("; "),
        other => one(other),
    }
}

/// A statement shortened for messages.
fn short(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

/// A string literal for SQL (`'…'`, quotes and backslashes escaped).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_take_their_missing_parts_from_the_defaults() {
        assert_eq!(TableRef::parse("t", "p", "d").unwrap(), TableRef::new("p", "d", "t"));
        assert_eq!(TableRef::parse("x.t", "p", "d").unwrap(), TableRef::new("p", "x", "t"));
        assert_eq!(TableRef::parse("q.x.t", "p", "d").unwrap().sql(), "`q.x.t`");
        assert!(TableRef::parse("a.b.c.d", "p", "d").unwrap_err().to_string().contains("a.b.c.d"));
        assert!(TableRef::parse("p..t", "p", "d").is_err());
        assert_eq!(sql_string("it's a \\ test"), r"'it\'s a \\ test'");
    }
}
