//! One HTTP stream read page by page: an [`Endpoint`] (request, record selector, primary key,
//! paginator, incremental parameter), optionally the child of a parent endpoint whose records
//! fill placeholders in its URL. Offset and page-number streams fetch up to `concurrency` pages
//! at once and hand them to the engine in order; a child stream fetches the children of a
//! parent page concurrently. Every page's pagination is its resume point.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bizon_core::time::now_micros;
use bizon_core::{Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use serde_json::json;

use serde_json::value::RawValue;

use super::body::{self, Selected};
use super::client::{Body, HttpClient, Method, Request, Response};
use super::paginate::{done, set_query, Paginator};
use crate::raw_json;

/// Where the watermark goes in each request of an incremental stream.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalParam {
    /// Query parameter (or body key with `in_body`) that carries the watermark.
    pub param: String,
    pub in_body: bool,
    /// Value sent on a first run (no watermark yet); absent = parameter not sent.
    pub initial: Option<String>,
}

/// One request template and how to read its answer.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: Method,
    /// Absolute URL; `{name}` placeholders are filled from the parent record (child streams).
    pub url: String,
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Json>,
    /// JSON pointer to the records (`/results`); `None`: the body itself (an array, or one
    /// record).
    pub records: Option<String>,
    /// JSON pointer (or top-level field name) of the record id; `None`: the position in the
    /// stream.
    pub primary_key: Option<String>,
    pub paginator: Paginator,
    pub incremental: Option<IncrementalParam>,
}

impl Endpoint {
    pub fn get(url: impl Into<String>) -> Self {
        Endpoint {
            method: Method::Get,
            url: url.into(),
            params: Vec::new(),
            headers: Vec::new(),
            body: None,
            records: None,
            primary_key: None,
            paginator: Paginator::Single,
            incremental: None,
        }
    }

    /// The request of the page at `state`, placeholders filled from `vars`.
    pub fn request(&self, state: &Json, watermark: Option<&Json>, vars: &[(String, String)]) -> Result<Request> {
        let fill = |s: &str| {
            let mut s = s.to_owned();
            for (k, v) in vars {
                s = s.replace(&format!("{{{k}}}"), v);
            }
            s
        };
        let mut req = Request {
            method: self.method,
            url: fill(&self.url),
            query: self.params.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
            headers: self.headers.clone(),
            body: self.body.clone().map(Body::Json),
        };
        if let Some(inc) = &self.incremental {
            let value = match watermark {
                Some(Json::String(s)) => Some(s.clone()),
                Some(j) if !j.is_null() => Some(j.to_string()),
                _ => inc.initial.clone(),
            };
            if let Some(v) = value {
                if inc.in_body {
                    match &mut req.body {
                        Some(Body::Json(Json::Object(m))) => {
                            m.insert(inc.param.clone(), Json::String(v));
                        }
                        None => req.body = Some(Body::Json(json!({ inc.param.clone(): v }))),
                        _ => {
                            return Err(Error::config("an incremental parameter in the body needs a JSON mapping body"))
                        }
                    }
                } else {
                    set_query(&mut req, &inc.param, v);
                }
            }
        }
        self.paginator.apply(state, &mut req)?;
        Ok(req)
    }

    /// A page's body read once: the body (for the paginator, the records' array left out) and
    /// the records as JSON text, none of them built as a tree. `one` holds the text of a page
    /// that is a single record (an object at the selector).
    pub fn read<'a>(
        &self,
        resp: &'a Response,
        one: &'a mut Option<Box<RawValue>>,
    ) -> Result<(Json, Vec<&'a RawValue>)> {
        let split = body::split(&resp.body, self.records.as_deref().unwrap_or("")).map_err(|e| resp.malformed(&e))?;
        let mut rest = split.rest;
        let records = match split.selected {
            Some(Selected::Items(items)) => items,
            None | Some(Selected::Value(Json::Null)) => Vec::new(),
            Some(Selected::Value(record @ Json::Object(_))) => {
                let text = serde_json::value::to_raw_value(&record).map_err(|e| resp.malformed(&e))?;
                if self.records.is_none() {
                    // The body is the one record: the paginator sees it whole.
                    rest = record;
                }
                vec![&**one.insert(text)]
            }
            Some(Selected::Value(other)) => {
                return Err(Error::permanent(format!(
                    "{}: expected records at `{}`, found {}",
                    resp.what,
                    self.records.as_deref().unwrap_or("/"),
                    kind_of(&other)
                )))
            }
        };
        Ok((rest, records))
    }

    /// The id of a record: its primary key as text.
    pub fn id_of(&self, record: &RawValue) -> Option<String> {
        let pk = self.primary_key.as_deref()?;
        let raw =
            if pk.starts_with('/') { raw_json::pointer(record.get(), pk) } else { raw_json::field(record.get(), pk) };
        raw.filter(|raw| *raw != "null").map(raw_json::text_of)
    }
}

/// What kind of JSON value `j` is, for messages ("a string", "an object", …).
pub(crate) fn kind_of(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Records as (id, data as compact JSON text).
pub type Records = Vec<(String, String)>;

/// A fetched page: its records and the position after it.
#[derive(Debug)]
pub struct Fetched {
    pub records: Records,
    pub next: Json,
}

/// Fetch the page of `endpoint` at `state` (`position` numbers records without a primary key).
pub fn fetch(
    client: &HttpClient,
    endpoint: &Endpoint,
    state: &Json,
    watermark: Option<&Json>,
    vars: &[(String, String)],
) -> Result<Fetched> {
    let req = endpoint.request(state, watermark, vars)?;
    let resp = client.send(&req)?;
    let mut one = None;
    let (body, raw) = endpoint.read(&resp, &mut one)?;
    let next = endpoint.paginator.next(state, &resp, &body, raw.len());
    let base = position(state);
    let records = raw
        .into_iter()
        .enumerate()
        .map(|(i, r)| (endpoint.id_of(r).unwrap_or_else(|| format!("{base}_{i}")), raw_json::compact(r.get())))
        .collect();
    Ok(Fetched { records, next })
}

/// A short text naming a page's position (ids of records without a primary key).
fn position(state: &Json) -> String {
    match state {
        Json::Null => "0".into(),
        Json::Object(m) => {
            m.values().next().map_or_else(|| "0".into(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        }
        other => other.to_string(),
    }
}

/// A child stream: for each record of the parent, the `vars` (placeholder, JSON pointer into
/// the parent record) fill the child's URL; each child record gains `_parent` with those values.
#[derive(Debug, Clone)]
pub struct ParentLink {
    pub parent: Endpoint,
    pub vars: Vec<(String, String)>,
}

/// A page being fetched on a background thread, with the position it was asked at.
struct InFlight {
    state: Json,
    result: mpsc::Receiver<Result<Fetched>>,
}

impl InFlight {
    /// Start fetching `endpoint` at `state` on a thread of its own.
    fn start(client: &Arc<HttpClient>, endpoint: &Arc<Endpoint>, state: Json, watermark: Option<Json>) -> Self {
        let (tx, result) = mpsc::sync_channel(1);
        let (client, endpoint, at) = (client.clone(), endpoint.clone(), state.clone());
        std::thread::spawn(move || {
            // The receiver is gone when the engine moved elsewhere (a resume): nothing to do.
            let _ = tx.send(fetch(&client, &endpoint, &at, watermark.as_ref(), &[]));
        });
        InFlight { state, result }
    }

    fn wait(self) -> Result<Fetched> {
        self.result.recv().unwrap_or_else(|_| Err(Error::internal("a page fetch thread ended without an answer")))
    }
}

/// A [`Source`] reading one [`Endpoint`] (or a child of one).
pub struct HttpStream {
    client: Arc<HttpClient>,
    endpoint: Arc<Endpoint>,
    parent: Option<ParentLink>,
    /// Numbered pages requested ahead, in page order (a sliding window of `concurrency`).
    ahead: VecDeque<InFlight>,
    /// The next parent page, requested while the children of the current one are fetched.
    next_parent: Option<InFlight>,
}

impl HttpStream {
    pub fn new(client: Arc<HttpClient>, endpoint: Endpoint, parent: Option<ParentLink>) -> Self {
        HttpStream { client, endpoint: Arc::new(endpoint), parent, ahead: VecDeque::new(), next_parent: None }
    }

    fn concurrency(&self) -> usize {
        self.client.settings().concurrency
    }

    /// The page at `state` of a plain stream. Numbered pages are requested `concurrency` at a
    /// time in a sliding window: when the engine takes page k, page k + concurrency is asked
    /// for, so requests overlap each other and the engine's work. Up to `concurrency - 1`
    /// requests past the last page are wasted (their answers are dropped).
    fn plain(&mut self, state: &Json, watermark: Option<&Json>) -> Result<Fetched> {
        let state = if state.is_null() { self.endpoint.paginator.first() } else { state.clone() };
        let n = self.concurrency();
        if n <= 1 || !self.endpoint.paginator.numbered() {
            return fetch(&self.client, &self.endpoint, &state, watermark, &[]);
        }
        if self.ahead.front().is_none_or(|f| f.state != state) {
            // A first call, a resume, or a page that ended early: start the window here.
            self.ahead.clear();
            self.ahead.push_back(InFlight::start(&self.client, &self.endpoint, state, watermark.cloned()));
        }
        self.top_up(n + 1, watermark);
        let page = self.ahead.pop_front().map_or_else(|| Err(Error::internal("no page in flight")), InFlight::wait);
        match &page {
            Ok(p) if bizon_core::record::pagination_done(&p.next) => self.ahead.clear(),
            Ok(_) => self.top_up(n, watermark),
            Err(_) => self.ahead.clear(),
        }
        page
    }

    /// Request the pages after the last one in flight until `n` are.
    fn top_up(&mut self, n: usize, watermark: Option<&Json>) {
        while self.ahead.len() < n {
            let Some(next) = self.ahead.back().and_then(|last| self.endpoint.paginator.ahead(&last.state, 1)) else {
                break;
            };
            self.ahead.push_back(InFlight::start(&self.client, &self.endpoint, next, watermark.cloned()));
        }
    }

    /// A page of a child stream: every child of one parent page, children fetched concurrently.
    fn children(&mut self, link: &ParentLink, state: &Json, watermark: Option<&Json>) -> Result<Fetched> {
        let parent_state = state.get("parent").cloned().unwrap_or(Json::Null);
        let parents = match self.next_parent.take() {
            Some(f) if f.state == parent_state => f.wait()?,
            _ => fetch(&self.client, &link.parent, &parent_state, None, &[])?,
        };
        if !bizon_core::record::pagination_done(&parents.next) {
            // The next parent page is asked for while this page's children are fetched.
            let parent = Arc::new(link.parent.clone());
            self.next_parent = Some(InFlight::start(&self.client, &parent, parents.next.clone(), None));
        }
        // a parent field's text as the server wrote it (a number keeps every digit), by name or
        // by JSON pointer
        let vars_of = |p: &str| -> Vec<(String, String)> {
            link.vars
                .iter()
                .map(|(name, ptr)| {
                    let raw = if ptr.starts_with('/') { raw_json::pointer(p, ptr) } else { raw_json::field(p, ptr) };
                    (name.clone(), raw.map(raw_json::text_of).unwrap_or_default())
                })
                .collect()
        };
        let jobs: Vec<Vec<(String, String)>> = parents.records.iter().map(|(_, p)| vars_of(p)).collect();
        let results: Vec<Mutex<Option<Result<Records>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let next_job = AtomicUsize::new(0);
        let (client, endpoint) = (&*self.client, &self.endpoint);
        let workers = self.concurrency().min(jobs.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next_job.fetch_add(1, Ordering::Relaxed);
                    let Some(vars) = jobs.get(i) else { break };
                    let r = read_all(client, endpoint, watermark, vars);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        let mut records = Vec::new();
        for (slot, vars) in results.into_iter().zip(&jobs) {
            let children = slot.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| Ok(Vec::new()))?;
            let parent: serde_json::Map<String, Json> =
                vars.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect();
            let parent = Json::Object(parent).to_string();
            for (id, child) in children {
                records.push((id, with_parent(child, &parent)));
            }
        }
        let next = if parents.next.as_object().is_some_and(|m| !m.is_empty()) {
            json!({ "parent": parents.next })
        } else {
            done()
        };
        Ok(Fetched { records, next })
    }
}

/// A child record (compact JSON text) with `"_parent": parent` added last when it is an object
/// (replacing a `_parent` the record already has).
fn with_parent(mut child: String, parent: &str) -> String {
    if child.contains("\"_parent\"") {
        // Rare: the text may hold the key (or only the word): replace it in the tree.
        if let (Ok(Json::Object(mut m)), Ok(p)) = (serde_json::from_str(&child), serde_json::from_str(parent)) {
            m.insert("_parent".into(), p);
            return Json::Object(m).to_string();
        }
    }
    if child.starts_with('{') && child.ends_with('}') {
        child.pop();
        if child.len() > 1 {
            child.push(',');
        }
        child.push_str("\"_parent\":");
        child.push_str(parent);
        child.push('}');
    }
    child
}

/// Every page of `endpoint` for one parent.
fn read_all(
    client: &HttpClient,
    endpoint: &Endpoint,
    watermark: Option<&Json>,
    vars: &[(String, String)],
) -> Result<Records> {
    let mut out = Vec::new();
    let mut state = Json::Null;
    loop {
        let page = fetch(client, endpoint, &state, watermark, vars)?;
        let prefix = vars.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("_");
        out.extend(page.records.into_iter().map(|(id, r)| {
            if endpoint.primary_key.is_some() {
                (id, r)
            } else {
                (format!("{prefix}_{id}"), r)
            }
        }));
        if bizon_core::record::pagination_done(&page.next) {
            return Ok(out);
        }
        state = page.next;
    }
}

/// A page for the engine from fetched records (their compact JSON text).
pub fn text_page(records: Records, next: Json) -> Page {
    let now = now_micros();
    let mut batch = RecordBatch::with_capacity(records.len(), records.iter().map(|(_, r)| r.len()).sum());
    for (id, r) in &records {
        batch.push(id, now, r.as_bytes());
    }
    Page { records: batch, next, cursor_max: None, extracted_at: now }
}

/// A page for the engine from records a connector built.
pub fn to_page(records: Vec<(String, Json)>, next: Json) -> Page {
    let now = now_micros();
    let mut batch = RecordBatch::with_capacity(records.len(), 256 * records.len());
    for (id, r) in &records {
        batch.push_with(id, now, |buf| {
            // Writing a Json into a Vec cannot fail.
            let _ = serde_json::to_writer(buf, r);
        });
    }
    Page { records: batch, next, cursor_max: None, extracted_at: now }
}

impl Source for HttpStream {
    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let watermark = ctx.watermark.as_ref();
        let fetched = match self.parent.clone() {
            Some(link) => self.children(&link, pagination, watermark)?,
            None => self.plain(pagination, watermark)?,
        };
        Ok(text_page(fetched.records, fetched.next))
    }
}

#[cfg(test)]
mod tests {
    use super::with_parent;

    #[test]
    fn a_child_gains_its_parent_last_and_an_own_parent_key_is_replaced() {
        let p = r#"{"id":"7"}"#;
        assert_eq!(with_parent(r#"{"a":1}"#.into(), p), r#"{"a":1,"_parent":{"id":"7"}}"#);
        assert_eq!(with_parent("{}".into(), p), r#"{"_parent":{"id":"7"}}"#);
        assert_eq!(with_parent("[1]".into(), p), "[1]");
        let replaced: serde_json::Value =
            serde_json::from_str(&with_parent(r#"{"_parent":"x","b":"\"_parent\""}"#.into(), p)).unwrap();
        assert_eq!(replaced, serde_json::json!({"b": "\"_parent\"", "_parent": {"id": "7"}}));
        let text = with_parent(r#"{"_parent":1,"c":2}"#.into(), p);
        assert_eq!(text.matches("_parent").count(), 1, "{text}");
    }
}
