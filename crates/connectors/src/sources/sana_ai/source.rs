//! The report job of `sana_ai`: submit, poll (bounded), download the CSV, page through its
//! rows. The pagination `{"job_id", "row"}` is the resume point: a fresh instance given it asks
//! for that job again (a new download link), skips `row` rows and goes on; a job Sana no longer
//! knows (404/410) is submitted again.
//!
//! The CSV link: bizon sends the bearer token to it (one session for everything). A pre-signed
//! object-store link rejects a second credential, and a token must not travel to a host it was
//! not issued for, so the token goes with the link only when the link is on Sana's side: the
//! API's host, or another host of its parent domain (`files.sana.ai` for `acme.sana.ai`);
//! elsewhere the link is fetched without auth, its signature masked in messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde_json::json;
use tracing::{info, warn};

use super::csv::CsvRows;
use super::SanaConfig;
use crate::http::auth::Auth;
use crate::http::stream::to_page;
use crate::http::{AuthSpec, HttpClient, HttpSettings, Request, Response};

/// Job states that mean "not finished yet"; `successful` is done; anything else failed.
const WAITING: &[&str] = &["pending", "queued", "running", "processing", "in_progress", "created", "started"];

/// A downloaded report being read.
struct Report {
    job_id: String,
    header: Vec<String>,
    rows: CsvRows,
    /// Index of the next row `rows` returns.
    row: u64,
    /// The next row, read ahead to know whether a page is the last.
    ahead: Option<Vec<String>>,
}

pub struct SanaSource {
    client: Arc<HttpClient>,
    /// The same policy without auth: links on hosts the token is not for.
    anonymous: HttpClient,
    config: SanaConfig,
    base: String,
    report: Option<Report>,
}

impl SanaSource {
    pub fn new(client: Arc<HttpClient>, settings: HttpSettings, config: SanaConfig) -> Self {
        let base = config.base();
        let anonymous = HttpClient::new(settings, Auth::new(AuthSpec::None));
        SanaSource { client, anonymous, config, base, report: None }
    }

    /// `POST {base}/reports/query` → `data.jobId`.
    fn submit(&self) -> Result<String> {
        let req = Request::post_json(
            format!("{}/reports/query", self.base),
            json!({"query": self.config.query, "format": "csv"}),
        );
        let resp = self.client.send(&req)?;
        let body = resp.json()?;
        let id = match body.pointer("/data/jobId") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err(self.unexpected(&resp, "no `data.jobId`")),
        };
        info!(job_id = %id, "sana report job submitted");
        Ok(id)
    }

    /// `GET {base}/reports/jobs/{id}`: its `data`, or `None` when Sana no longer has the job.
    fn job(&self, job_id: &str) -> Result<Option<Json>> {
        let req = Request::get(format!("{}/reports/jobs/{job_id}", self.base));
        let resp = self.client.send_accepting(&req, &[404, 410])?;
        if resp.status == 404 || resp.status == 410 {
            return Ok(None);
        }
        let mut body = resp.json()?;
        match body.get_mut("data").map(Json::take) {
            Some(d @ Json::Object(_)) => Ok(Some(d)),
            _ => Err(self.unexpected(&resp, "no `data` object")),
        }
    }

    /// Poll until `successful` (→ the CSV link), a failed state, or `max_wait_seconds`.
    /// `Ok(None)`: the job is gone.
    fn wait(&self, job_id: &str) -> Result<Option<String>> {
        let started = Instant::now();
        let max_wait = Duration::from_secs_f64(self.config.max_wait_seconds);
        let interval = Duration::from_secs_f64(self.config.poll_interval_seconds);
        loop {
            let Some(data) = self.job(job_id)? else { return Ok(None) };
            let status = data.get("status").and_then(Json::as_str).unwrap_or("").to_owned();
            if status == "successful" {
                return match data.pointer("/link/url").and_then(Json::as_str) {
                    Some(url) if !url.is_empty() => Ok(Some(url.to_owned())),
                    _ => Err(Error::permanent(format!(
                        "sana_ai: report job `{job_id}` is successful but has no `data.link.url`"
                    ))),
                };
            }
            if !WAITING.contains(&status.to_ascii_lowercase().as_str()) {
                let why = ["error", "message", "reason"]
                    .iter()
                    .find_map(|k| data.get(*k).filter(|v| !v.is_null()))
                    .map(|v| {
                        format!(": {}", self.client.redact(&v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    })
                    .unwrap_or_default();
                let status = if status.is_empty() { "(none)".to_owned() } else { status };
                return Err(Error::permanent(format!(
                    "sana_ai: report job `{job_id}` ended with status `{status}`{why}"
                )));
            }
            let elapsed = started.elapsed();
            if elapsed >= max_wait {
                return Err(Error::transient(format!(
                    "sana_ai: report job `{job_id}` is still `{status}` after {:.1} s (max_wait_seconds: {}); \
                     raise max_wait_seconds for slow reports",
                    elapsed.as_secs_f64(),
                    self.config.max_wait_seconds
                )));
            }
            info!(job_id, status = %status, "sana report job not finished; polling again");
            std::thread::sleep(interval.min(max_wait - elapsed));
        }
    }

    /// Download the CSV at `link` (auth only on Sana's hosts, see the module doc).
    fn download(&self, job_id: &str, link: &str) -> Result<Vec<u8>> {
        let url = if link.starts_with('/') { format!("{}{link}", origin(&self.base)) } else { link.to_owned() };
        let client = if token_may_go_to(&self.base, &url) { &*self.client } else { &self.anonymous };
        // A pre-signed link's query string is a credential.
        if let Some((_, query)) = url.split_once('?') {
            client.redactor().add(query);
        }
        let resp = client
            .send(&Request::get(url))
            .map_err(|e| e.context(format!("sana_ai: downloading the CSV of report job `{job_id}`")))?;
        Ok(resp.body)
    }

    /// The report of `job_id` from its first row: wait for it, download it, read the header.
    /// A job that is gone is submitted again (the report then has a new job id).
    fn open(&self, job_id: String) -> Result<Report> {
        let (job_id, link) = match self.wait(&job_id)? {
            Some(link) => (job_id, link),
            None => {
                warn!(job_id = %job_id, "sana report job is gone; submitting the query again");
                let fresh = self.submit()?;
                match self.wait(&fresh)? {
                    Some(link) => (fresh, link),
                    None => {
                        return Err(Error::transient(format!(
                            "sana_ai: report job `{fresh}` was not found right after it was submitted"
                        )))
                    }
                }
            }
        };
        let mut rows = CsvRows::new(self.download(&job_id, &link)?);
        let header = rows.next_record().map_err(|e| csv_error(&job_id, e))?.unwrap_or_default();
        let mut report = Report { job_id, header, rows, row: 0, ahead: None };
        report.ahead = report.rows.next_record().map_err(|e| csv_error(&report.job_id, e))?;
        Ok(report)
    }

    fn unexpected(&self, resp: &Response, what: &str) -> Error {
        let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned();
        Error::permanent(format!(
            "{}: unexpected answer, {what}; body starts with {:?}",
            resp.what,
            self.client.redact(&body)
        ))
    }
}

impl Report {
    /// The next row as a record (header → value), advancing.
    fn next(&mut self) -> Result<Option<(String, Json)>> {
        let Some(fields) = self.ahead.take() else { return Ok(None) };
        self.ahead = self.rows.next_record().map_err(|e| csv_error(&self.job_id, e))?;
        let id = self.row.to_string();
        self.row += 1;
        Ok(Some((id, row_record(&self.header, fields))))
    }

    /// Skip to row `row` (a resumed read).
    fn skip_to(&mut self, row: u64) -> Result<()> {
        while self.row < row && self.ahead.is_some() {
            self.next()?;
        }
        if self.row < row {
            warn!(job_id = %self.job_id, rows = self.row, resume_row = row, "the report has fewer rows than the resume point");
        }
        Ok(())
    }
}

/// One CSV row as bizon's `csv.DictReader` gives it: header → value; a short row has `null` for
/// the missing columns; the values of a long row beyond the header go under `null` (DictReader's
/// `None` key, as `json.dumps` writes it).
fn row_record(header: &[String], fields: Vec<String>) -> Json {
    let mut m = serde_json::Map::with_capacity(header.len());
    let mut fields = fields.into_iter();
    for name in header {
        m.insert(name.clone(), fields.next().map_or(Json::Null, Json::String));
    }
    let extra: Vec<Json> = fields.map(Json::String).collect();
    if !extra.is_empty() {
        m.insert("null".into(), Json::Array(extra));
    }
    Json::Object(m)
}

fn csv_error(job_id: &str, e: String) -> Error {
    Error::permanent(format!("sana_ai: the report of job `{job_id}`: {e}"))
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// The host of a URL (no port, lowercase).
fn host(url: &str) -> String {
    let o = origin(url);
    let h = o.find("://").map_or(o, |i| &o[i + 3..]);
    let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
    let h = match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => h,
    };
    h.to_ascii_lowercase()
}

/// Whether the API's token may be sent to `link`: same host as the API, or a host under the
/// API host's parent domain (`*.sana.ai` for `acme.sana.ai`; not for IP addresses or
/// two-label hosts, whose parent is a public suffix).
fn token_may_go_to(base: &str, link: &str) -> bool {
    let (api, target) = (host(base), host(link));
    if api == target {
        return true;
    }
    let is_ip = api.chars().all(|c| c.is_ascii_digit() || c == '.') || api.contains(':');
    if is_ip || api.matches('.').count() < 2 {
        return false;
    }
    let parent = &api[api.find('.').map_or(0, |i| i + 1)..];
    target.ends_with(&format!(".{parent}"))
}

impl Source for SanaSource {
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        let resume = match pagination {
            Json::Null => None,
            Json::Object(m) if m.is_empty() => None,
            Json::Object(m) => match (m.get("job_id").and_then(Json::as_str), m.get("row").and_then(Json::as_u64)) {
                (Some(job), Some(row)) => Some((job.to_owned(), row)),
                _ => {
                    return Err(Error::internal(format!(
                        "sana_ai: unexpected pagination {pagination}: expected {{\"job_id\", \"row\"}}"
                    )))
                }
            },
            other => return Err(Error::internal(format!("sana_ai: unexpected pagination {other}"))),
        };
        let current = self.report.as_ref().is_some_and(|r| resume.as_ref() == Some(&(r.job_id.clone(), r.row)));
        if !current {
            self.report = None;
            let report = match resume {
                None => self.open(self.submit()?)?,
                Some((job_id, row)) => {
                    info!(job_id = %job_id, row, "resuming the sana report");
                    let mut r = self.open(job_id)?;
                    r.skip_to(row)?;
                    r
                }
            };
            self.report = Some(report);
        }
        let Some(report) = self.report.as_mut() else { return Err(Error::internal("sana_ai: no report open")) };
        let mut records = Vec::with_capacity(self.config.rows_per_page.min(5000));
        while records.len() < self.config.rows_per_page {
            match report.next()? {
                Some(r) => records.push(r),
                None => break,
            }
        }
        let next = if report.ahead.is_some() { json!({"job_id": report.job_id, "row": report.row}) } else { json!({}) };
        if report.ahead.is_none() {
            self.report = None;
        }
        Ok(to_page(records, next))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_token_goes_only_to_sanas_hosts() {
        let base = "https://acme.sana.ai/api/v1";
        assert!(token_may_go_to(base, "https://acme.sana.ai/files/r.csv"));
        assert!(token_may_go_to(base, "https://files.sana.ai/r.csv?sig=1"));
        assert!(!token_may_go_to(base, "https://sana-reports.s3.eu-west-1.amazonaws.com/r.csv?X-Amz-Signature=ab"));
        assert!(!token_may_go_to(base, "https://evil-sana.ai/r.csv"));
        assert!(token_may_go_to("http://127.0.0.1:8080/api", "http://127.0.0.1:8080/r.csv"));
        assert!(!token_may_go_to("http://127.0.0.1:8080/api", "http://localhost:8080/r.csv"));
        assert!(!token_may_go_to("https://sana.ai/api", "https://x.ai/r.csv"));
    }

    #[test]
    fn rows_as_dictreader_gives_them() {
        let h: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(row_record(&h, vec!["1".into(), "2".into()]), json!({"a": "1", "b": "2"}));
        assert_eq!(row_record(&h, vec!["1".into()]), json!({"a": "1", "b": null}));
        assert_eq!(
            row_record(&h, vec!["1".into(), "2".into(), "3".into()]),
            json!({"a": "1", "b": "2", "null": ["3"]})
        );
    }
}
