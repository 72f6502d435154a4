//! The `notion` streams. Every `get` sends at most one Notion request of the stream's main
//! walk (listing the pages to walk may take a few), and the pagination it returns says exactly
//! where the next one starts: a killed run resumes at the first uncommitted request.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{mpsc, Arc};

use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{markdown, NotionConfig, NOTION_VERSION, RATE_LIMIT, STREAMS};
use crate::http::stream::to_page;
use crate::http::{self, HttpClient, HttpSettings, Request};
use crate::sources::http_keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Users,
    Databases,
    DataSources,
    Pages,
    Blocks,
    BlocksMarkdown,
    AllPages,
    AllDatabases,
    AllDataSources,
    AllBlocksMarkdown,
}

impl Stream {
    fn parse(name: &str) -> Option<Stream> {
        Some(match name {
            "users" => Stream::Users,
            "databases" => Stream::Databases,
            "data_sources" => Stream::DataSources,
            "pages" => Stream::Pages,
            "blocks" => Stream::Blocks,
            "blocks_markdown" => Stream::BlocksMarkdown,
            "all_pages" => Stream::AllPages,
            "all_databases" => Stream::AllDatabases,
            "all_data_sources" => Stream::AllDataSources,
            "all_blocks_markdown" => Stream::AllBlocksMarkdown,
            _ => return None,
        })
    }

    fn markdown(self) -> bool {
        matches!(self, Stream::BlocksMarkdown | Stream::AllBlocksMarkdown)
    }
}

/// A Notion list answer: its results and the cursor of the next page (`None`: the last).
struct List {
    results: Vec<Json>,
    next: Option<String>,
}

/// A page (or database) whose blocks are walked, with bizon's lineage inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    id: String,
    #[serde(default)]
    db: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    source: Option<String>,
    /// The page's `last_edited_time` (the incremental watermark), when known.
    #[serde(default)]
    edited: Option<String>,
    /// A database given as an item (`all_blocks_markdown`): a refusal to list its children is
    /// not an error.
    #[serde(default)]
    database: bool,
}

/// One level of the walk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Frame {
    /// The children of `parent`: fetched and not yet written (`pending`), and the cursor of the
    /// next children page (`started` false: the first is still to fetch).
    Children {
        parent: String,
        depth: u32,
        source: Option<String>,
        next_order: u64,
        pending: VecDeque<Json>,
        cursor: Option<String>,
        started: bool,
    },
    /// An inline database met in `blocks`: its pages, each walked as a page of its own.
    Inline { id: String, depth: u32, pages: Option<VecDeque<String>> },
}

/// The walk of one item.
#[derive(Debug, Serialize, Deserialize)]
struct PageWalk {
    item: Item,
    /// bizon's `page_order`: the next block's position in reading order.
    order: u64,
    frames: Vec<Frame>,
}

/// The checkpointed state of the block streams.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Walk {
    loaded: bool,
    items: VecDeque<Item>,
    #[serde(default)]
    walking: Option<PageWalk>,
}

/// The checkpointed state of `pages`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PagesState {
    loaded: bool,
    /// Data sources still to query, `[data source id, database id]`.
    sources: VecDeque<(String, String)>,
    #[serde(default)]
    source_cursor: Option<String>,
    page_ids: VecDeque<String>,
}

/// What the walk reads below a block.
enum Below {
    Nothing,
    Children,
    Inline,
    TooDeep,
}

/// How far ahead of the walk a fetch may be and still be kept.
const PREFETCH_WINDOW: usize = 64;

/// A children page to fetch: the parent and the cursor (`None`: the first page).
type ChildrenKey = (String, Option<String>);

/// A children page fetched ahead of the walk, by a thread of its own.
type Prefetch = mpsc::Receiver<Result<Option<List>>>;

/// Notion's API: the source's client, root and page size (cloned into prefetch threads).
#[derive(Clone)]
struct Api {
    client: Arc<HttpClient>,
    base: String,
    page_size: u32,
}

/// The `notion` source.
pub struct NotionSource {
    api: Api,
    config: NotionConfig,
    stream: Stream,
    incremental: bool,
    /// Children pages being fetched ahead of the walk (at most `max_workers - 1`).
    prefetched: HashMap<ChildrenKey, Prefetch>,
}

impl NotionSource {
    pub fn new(config: &NotionConfig, common: &SourceCommon) -> Result<Self> {
        http_keys::check_stream("notion", STREAMS, common)?;
        let stream = Stream::parse(&common.stream).expect("checked above");
        let defaults = HttpSettings {
            rate_limit: Some(RATE_LIMIT),
            concurrency: config.max_workers as usize,
            ..HttpSettings::default()
        };
        let client = http::client_for(common, defaults)?;
        let needs_ids = matches!(
            stream,
            Stream::Databases | Stream::DataSources | Stream::Pages | Stream::Blocks | Stream::BlocksMarkdown
        );
        let ids = if matches!(stream, Stream::Databases | Stream::DataSources) {
            config.database_ids.is_empty()
        } else {
            config.database_ids.is_empty() && config.page_ids.is_empty()
        };
        if needs_ids && ids {
            warn!(
                stream = %common.stream,
                "no database_ids or page_ids are configured: the stream reads nothing (the all_* streams read everything shared with the integration)"
            );
        }
        for id in config.database_filters.keys() {
            if !config.database_ids.contains(id) {
                warn!(database = %id, "database_filters names a database that is not in database_ids: its filter is never used");
            }
        }
        if common.sync_mode == SyncMode::Incremental {
            if let Some(field) = common.cursor_field.as_deref().filter(|f| *f != "last_edited_time") {
                warn!(
                    cursor_field = field,
                    "notion reads incrementally on last_edited_time, whatever cursor_field says"
                );
            }
            if matches!(stream, Stream::Users | Stream::DataSources) {
                warn!(stream = %common.stream, "this stream has no edit time: an incremental run reads all of it");
            }
        }
        Ok(NotionSource {
            api: Api { client, base: config.base_url.trim_end_matches('/').to_owned(), page_size: config.page_size },
            config: config.clone(),
            stream,
            incremental: common.sync_mode == SyncMode::Incremental,
            prefetched: HashMap::new(),
        })
    }
}

impl Api {
    fn request(&self, req: Request) -> Request {
        req.header("Notion-Version", NOTION_VERSION)
    }

    /// GET `path`; `None` when Notion answers 404 (the object is gone or not shared).
    fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Json>> {
        let mut req = Request::get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(k, v);
        }
        let resp = self.client.send_accepting(&self.request(req), &[404])?;
        if resp.status == 404 {
            debug!(request = %resp.what, "404: not found or not shared with the integration");
            return Ok(None);
        }
        resp.json().map(Some)
    }

    fn post_json(&self, path: &str, body: Json) -> Result<Json> {
        let resp = self.client.send(&self.request(Request::post_json(format!("{}{path}", self.base), body)))?;
        resp.json()
    }

    fn list(&self, answer: Json, what: &str) -> Result<List> {
        let results = match answer.get("results") {
            Some(Json::Array(r)) => r.clone(),
            _ => return Err(Error::permanent(format!("{what}: the answer has no `results` list"))),
        };
        let more = answer.get("has_more").and_then(Json::as_bool).unwrap_or(false);
        let next = match (more, answer.get("next_cursor").and_then(Json::as_str)) {
            (false, _) => None,
            (true, Some(c)) => Some(c.to_owned()),
            (true, None) => {
                return Err(Error::permanent(format!("{what}: `has_more` is true without a `next_cursor`")));
            }
        };
        Ok(List { results, next })
    }

    fn page_size(&self) -> (&'static str, String) {
        ("page_size", self.page_size.to_string())
    }

    /// A database by id; a configured one that is missing is an error naming it.
    fn database(&self, id: &str) -> Result<Json> {
        self.get_json(&format!("/databases/{id}"), &[])?.ok_or_else(|| {
            Error::config(format!(
                "Notion database `{id}` was not found: check the id and that the database is shared with the integration"
            ))
        })
    }

    fn data_source_ids(database: &Json) -> Vec<String> {
        database
            .get("data_sources")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(|d| d.get("id").and_then(Json::as_str)).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// One page of a data source's query.
    fn query(&self, data_source: &str, cursor: Option<&str>, filter: Option<&Json>) -> Result<List> {
        let mut body = json!({ "page_size": self.page_size });
        if let Some(c) = cursor {
            body["start_cursor"] = json!(c);
        }
        if let Some(f) = filter {
            body["filter"] = f.clone();
        }
        let answer = self.post_json(&format!("/data_sources/{data_source}/query"), body)?;
        self.list(answer, &format!("querying data source {data_source}"))
    }

    /// Every page of a data source's query, in order.
    fn query_all(&self, data_source: &str, filter: Option<&Json>) -> Result<Vec<Json>> {
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let mut list = self.query(data_source, cursor.as_deref(), filter)?;
            pages.append(&mut list.results);
            cursor = list.next;
            if cursor.is_none() {
                return Ok(pages);
            }
        }
    }

    /// One page of the search API over one object type (`page` or `data_source`); `newest_first`
    /// sorts by `last_edited_time`, newest first.
    fn search(&self, object: &str, cursor: Option<&str>, newest_first: bool) -> Result<List> {
        let mut body = json!({
            "page_size": self.page_size,
            "filter": { "property": "object", "value": object },
        });
        if let Some(c) = cursor {
            body["start_cursor"] = json!(c);
        }
        if newest_first {
            body["sort"] = json!({ "direction": "descending", "timestamp": "last_edited_time" });
        }
        let answer = self.post_json("/search", body)?;
        let mut list = self.list(answer, "searching")?;
        list.results.retain(|r| r.get("object").and_then(Json::as_str) == Some(object));
        Ok(list)
    }

    /// The children page of a block (or page) after `cursor`; `None` on a 404.
    fn children(&self, parent: &str, cursor: Option<&str>) -> Result<Option<List>> {
        let mut query = vec![self.page_size()];
        if let Some(c) = cursor {
            query.push(("start_cursor", c.to_owned()));
        }
        match self.get_json(&format!("/blocks/{parent}/children"), &query)? {
            Some(answer) => self.list(answer, &format!("listing the children of {parent}")).map(Some),
            None => Ok(None),
        }
    }
}

impl NotionSource {
    /// The watermark of an incremental run (`None`: a full read).
    fn watermark<'a>(&self, ctx: &'a ReadContext) -> Option<&'a str> {
        (ctx.sync_mode == SyncMode::Incremental).then(|| ctx.watermark.as_ref().and_then(Json::as_str)).flatten()
    }

    /// The filter of a configured database's query: `database_filters` AND, incrementally,
    /// `last_edited_time` after the watermark.
    fn filter(&self, database: &str, watermark: Option<&str>) -> Option<Json> {
        let own = self.config.database_filters.get(database);
        let edited = watermark.map(|w| json!({ "timestamp": "last_edited_time", "last_edited_time": { "after": w } }));
        match (edited, own) {
            (Some(e), Some(f)) => Some(json!({ "and": [e, f] })),
            (Some(e), None) => Some(e),
            (None, f) => f.cloned(),
        }
    }

    // ---- streams ----

    fn users(&self, pagination: &Json) -> Result<Page> {
        let mut query = vec![self.api.page_size()];
        if let Some(c) = pagination.get("start_cursor").and_then(Json::as_str) {
            query.push(("start_cursor", c.to_owned()));
        }
        let answer = self.api.get_json("/users", &query)?.ok_or_else(|| Error::permanent("GET /users answered 404"))?;
        let list = self.api.list(answer, "listing users")?;
        Ok(to_page(with_ids(list.results, "user")?, next_cursor(list.next)))
    }

    /// `all_pages` / `all_data_sources`: the search API; incrementally newest first, stopping
    /// at the first object not edited after the watermark.
    fn searched(&self, object: &str, pagination: &Json, watermark: Option<&str>, incremental: bool) -> Result<Page> {
        let cursor = pagination.get("start_cursor").and_then(Json::as_str);
        let mut list = self.api.search(object, cursor, incremental)?;
        if let Some(w) = watermark {
            if let Some(stop) = list.results.iter().position(|r| edited(r).is_none_or(|e| e <= w)) {
                list.results.truncate(stop);
                list.next = None;
            }
        }
        let newest = list.results.iter().filter_map(edited).max().map(str::to_owned);
        let mut page = to_page(with_ids(list.results, object)?, next_cursor(list.next));
        page.cursor_max = incremental.then_some(newest).flatten().map(Json::String);
        Ok(page)
    }

    /// `databases` / `data_sources`: one configured database per call (bizon's `remaining_ids`).
    fn configured_databases(&self, pagination: &Json) -> Result<Page> {
        let mut remaining: VecDeque<String> = match pagination.get("remaining_ids") {
            Some(ids) => serde_json::from_value(ids.clone()).map_err(|e| bad_cursor(pagination, e))?,
            None => self.config.database_ids.iter().cloned().collect(),
        };
        let Some(id) = remaining.pop_front() else { return Ok(to_page(Vec::new(), json!({}))) };
        let database = self.api.database(&id)?;
        let records = if self.stream == Stream::Databases {
            with_ids(vec![database], "database")?
        } else {
            let title: String = database
                .get("title")
                .and_then(Json::as_array)
                .map(|t| t.iter().map(|p| p.get("plain_text").and_then(Json::as_str).unwrap_or_default()).collect())
                .unwrap_or_default();
            let sources = database.get("data_sources").and_then(Json::as_array).cloned().unwrap_or_default();
            let enriched = sources
                .into_iter()
                .map(|mut ds| {
                    if let Json::Object(m) = &mut ds {
                        m.insert("parent_database_id".into(), json!(id));
                        m.insert("parent_database_title".into(), json!(title));
                    }
                    ds
                })
                .collect();
            with_ids(enriched, "data source")?
        };
        let next = if remaining.is_empty() { json!({}) } else { json!({ "remaining_ids": remaining }) };
        Ok(to_page(records, next))
    }

    /// `all_databases` (and incremental `databases`): the databases of the data sources the
    /// search API returns (newest first and stopping at the watermark when incremental), one
    /// search page per call; a database met twice is read once.
    fn searched_databases(&self, pagination: &Json, watermark: Option<&str>, incremental: bool) -> Result<Page> {
        let cursor = pagination.get("start_cursor").and_then(Json::as_str);
        let mut seen: BTreeSet<String> = match pagination.get("seen") {
            Some(s) => serde_json::from_value(s.clone()).map_err(|e| bad_cursor(pagination, e))?,
            None => BTreeSet::new(),
        };
        let mut list = self.api.search("data_source", cursor, incremental)?;
        if let Some(w) = watermark {
            if let Some(stop) = list.results.iter().position(|r| edited(r).is_none_or(|e| e <= w)) {
                list.results.truncate(stop);
                list.next = None;
            }
        }
        let scoped = self.stream == Stream::Databases;
        let mut records = Vec::new();
        for ds in &list.results {
            let Some(db) = ds.pointer("/parent/database_id").and_then(Json::as_str) else { continue };
            if (scoped && !self.config.database_ids.iter().any(|d| d == db)) || !seen.insert(db.to_owned()) {
                continue;
            }
            match self.api.get_json(&format!("/databases/{db}"), &[])? {
                Some(d) => records.push(d),
                None => warn!(database = db, "a searched data source's database is not shared with the integration"),
            }
        }
        let newest = list.results.iter().filter_map(edited).max().map(str::to_owned);
        let next = match list.next {
            Some(c) => json!({ "start_cursor": c, "seen": seen }),
            None => json!({}),
        };
        let mut page = to_page(with_ids(records, "database")?, next);
        page.cursor_max = incremental.then_some(newest).flatten().map(Json::String);
        Ok(page)
    }

    /// `pages`: the configured databases' data sources, one query page per call, then the
    /// configured pages one per call.
    fn pages(&self, pagination: &Json, watermark: Option<&str>, incremental: bool) -> Result<Page> {
        let mut st: PagesState = if pagination.is_null() || pagination.as_object().is_some_and(|m| m.is_empty()) {
            PagesState::default()
        } else {
            serde_json::from_value(pagination.clone()).map_err(|e| bad_cursor(pagination, e))?
        };
        if !st.loaded {
            for db in &self.config.database_ids {
                for ds in Api::data_source_ids(&self.api.database(db)?) {
                    st.sources.push_back((ds, db.clone()));
                }
            }
            st.page_ids = self.config.page_ids.iter().cloned().collect();
            st.loaded = true;
        }
        let mut records = Vec::new();
        if let Some((ds, db)) = st.sources.front().cloned() {
            let list = self.api.query(&ds, st.source_cursor.as_deref(), self.filter(&db, watermark).as_ref())?;
            records = list.results;
            st.source_cursor = list.next;
            if st.source_cursor.is_none() {
                st.sources.pop_front();
            }
        } else if let Some(id) = st.page_ids.pop_front() {
            match self.api.get_json(&format!("/pages/{id}"), &[])? {
                Some(p) if watermark.is_none_or(|w| edited(&p).is_some_and(|e| e > w)) => records.push(p),
                Some(_) => {}
                None => warn!(page = %id, "configured page not found or not shared with the integration: skipped"),
            }
        }
        let newest = records.iter().filter_map(edited).max().map(str::to_owned);
        let next = if st.sources.is_empty() && st.page_ids.is_empty() { json!({}) } else { to_json(&st)? };
        let mut page = to_page(with_ids(records, "page")?, next);
        page.cursor_max = incremental.then_some(newest).flatten().map(Json::String);
        Ok(page)
    }

    /// The pages whose blocks a block stream walks.
    fn items(&self, watermark: Option<&str>) -> Result<VecDeque<Item>> {
        let mut items = VecDeque::new();
        let all = self.stream == Stream::AllBlocksMarkdown;
        if all {
            let mut seen = BTreeSet::new();
            let mut cursor = None;
            loop {
                let list = self.api.search("page", cursor.as_deref(), watermark.is_some())?;
                let mut stop = false;
                for p in &list.results {
                    let e = edited(p).map(str::to_owned);
                    if watermark.is_some_and(|w| e.as_deref().is_none_or(|e| e <= w)) {
                        stop = true;
                        break;
                    }
                    let id = object_id(p, "page")?;
                    if seen.insert(id.clone()) {
                        items.push_back(Item {
                            source: Some(id.clone()),
                            id,
                            db: None,
                            page: None,
                            edited: e,
                            database: false,
                        });
                    }
                }
                cursor = list.next;
                if stop || cursor.is_none() {
                    break;
                }
            }
            if watermark.is_some() {
                // An incremental run walks the pages edited since (bizon reads its configured
                // databases here, which `all_blocks_markdown` does not have).
                return Ok(items);
            }
            let mut cursor = None;
            loop {
                let list = self.api.search("data_source", cursor.as_deref(), false)?;
                for ds in &list.results {
                    let ds_id = object_id(ds, "data source")?;
                    let db = ds.pointer("/parent/database_id").and_then(Json::as_str).map(str::to_owned);
                    if let Some(db) = db.as_ref().filter(|d| seen.insert((*d).clone())) {
                        items.push_back(Item {
                            id: db.clone(),
                            db: Some(db.clone()),
                            page: None,
                            source: None,
                            edited: None,
                            database: true,
                        });
                    }
                    for p in self.api.query_all(&ds_id, None)? {
                        let id = object_id(&p, "page")?;
                        if seen.insert(id.clone()) {
                            let e = edited(&p).map(str::to_owned);
                            items.push_back(Item {
                                source: Some(id.clone()),
                                id,
                                db: db.clone(),
                                page: None,
                                edited: e,
                                database: false,
                            });
                        }
                    }
                }
                cursor = list.next;
                if cursor.is_none() {
                    break;
                }
            }
            return Ok(items);
        }
        // Configured pages first (bizon's order), then the configured databases' pages.
        let incremental = self.incremental;
        for id in &self.config.page_ids {
            let e = if incremental {
                match self.api.get_json(&format!("/pages/{id}"), &[])? {
                    Some(p) => edited(&p).map(str::to_owned),
                    None => {
                        warn!(page = %id, "configured page not found or not shared with the integration: skipped");
                        continue;
                    }
                }
            } else {
                None
            };
            if let (Some(w), Some(e)) = (watermark, e.as_deref()) {
                if e <= w {
                    continue;
                }
            }
            items.push_back(Item {
                id: id.clone(),
                db: None,
                page: Some(id.clone()),
                source: Some(id.clone()),
                edited: e,
                database: false,
            });
        }
        for db in &self.config.database_ids {
            let filter = self.filter(db, watermark);
            for ds in Api::data_source_ids(&self.api.database(db)?) {
                for p in self.api.query_all(&ds, filter.as_ref())? {
                    let id = object_id(&p, "page")?;
                    let e = edited(&p).map(str::to_owned);
                    items.push_back(Item {
                        source: Some(id.clone()),
                        id,
                        db: Some(db.clone()),
                        page: None,
                        edited: e,
                        database: false,
                    });
                }
            }
        }
        Ok(items)
    }
}

// ---- the block walk ----

impl NotionSource {
    /// One step of a block stream: list the pages to walk (first call), then walk them with at
    /// most one children request per call, writing blocks in reading order.
    fn blocks(&mut self, pagination: &Json, watermark: Option<&str>) -> Result<Page> {
        let mut walk: Walk = if pagination.is_null() || pagination.as_object().is_some_and(|m| m.is_empty()) {
            Walk::default()
        } else {
            serde_json::from_value(pagination.clone()).map_err(|e| bad_cursor(pagination, e))?
        };
        let mut records = Vec::new();
        let mut newest: Option<String> = None;
        if !walk.loaded {
            walk.items = self.items(watermark)?;
            walk.loaded = true;
            info!(pages = walk.items.len(), "notion: pages to walk");
            // The listing is a step of its own: its requests are checkpointed before the walk.
            return Ok(to_page(records, self.walk_next(&walk)?));
        }
        let mut fetched = false;
        loop {
            let Some(pw) = walk.walking.as_mut() else {
                let Some(item) = walk.items.pop_front() else { break };
                if let Some(e) = &item.edited {
                    if newest.as_ref().is_none_or(|n| e > n) {
                        newest = Some(e.clone());
                    }
                }
                let root = Frame::Children {
                    parent: item.id.clone(),
                    depth: 0,
                    source: item.source.clone(),
                    next_order: 0,
                    pending: VecDeque::new(),
                    cursor: None,
                    started: false,
                };
                walk.walking = Some(PageWalk { item, order: 0, frames: vec![root] });
                continue;
            };
            let top = pw.frames.len();
            let Some(frame) = pw.frames.last_mut() else {
                walk.walking = None;
                continue;
            };
            let mut push = None;
            match frame {
                Frame::Children { parent, depth, source, next_order, pending, cursor, started } => {
                    if let Some(mut block) = pending.pop_front() {
                        let id = object_id(&block, "block")?;
                        let kind = block.get("type").and_then(Json::as_str).unwrap_or_default().to_owned();
                        let has_children = block.get("has_children").and_then(Json::as_bool).unwrap_or(false);
                        if let Json::Object(m) = &mut block {
                            m.insert("parent_block_id".into(), json!(parent));
                            m.insert("parent_input_database_id".into(), json!(pw.item.db));
                            m.insert("parent_input_page_id".into(), json!(pw.item.page));
                            m.insert("source_page_id".into(), json!(source));
                            m.insert("depth".into(), json!(depth));
                            m.insert("block_order".into(), json!(next_order));
                            m.insert("page_order".into(), json!(pw.order));
                        }
                        *next_order += 1;
                        pw.order += 1;
                        let deeper = *depth + 1;
                        match self.below(&kind, has_children, *depth) {
                            Below::Inline => push = Some(Frame::Inline { id: id.clone(), depth: deeper, pages: None }),
                            Below::Children => {
                                push = Some(Frame::Children {
                                    parent: id.clone(),
                                    depth: deeper,
                                    source: source.clone(),
                                    next_order: 0,
                                    pending: VecDeque::new(),
                                    cursor: None,
                                    started: false,
                                })
                            }
                            Below::TooDeep => {
                                debug!(block = %id, depth = deeper, "max_recursion_depth reached: children not read")
                            }
                            Below::Nothing => {}
                        }
                        records.push((id, self.record(block, &kind)));
                    } else if !*started || cursor.is_some() {
                        if fetched {
                            break;
                        }
                        fetched = true;
                        match self.take_children(parent, cursor.as_deref()) {
                            Ok(Some(list)) => {
                                *pending = list.results.into();
                                *cursor = list.next;
                                *started = true;
                            }
                            Ok(None) => {
                                // Gone, not shared, or a synced copy whose original is not.
                                let what = if top == 1 && pw.item.database { "database" } else { "block" };
                                warn!(id = %parent, "notion: the children of this {what} are not found or not shared with the integration: skipped");
                                pw.frames.pop();
                            }
                            // A database given as an item may not list as a block.
                            Err(e) if top == 1 && pw.item.database => {
                                debug!(database = %parent, error = %e, "notion: a database has no blocks to list");
                                pw.frames.pop();
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        pw.frames.pop();
                    }
                }
                Frame::Inline { id, depth, pages } => match pages {
                    None => {
                        if fetched {
                            break;
                        }
                        fetched = true;
                        *pages = Some(self.inline_pages(id)?);
                    }
                    Some(list) => match list.pop_front() {
                        Some(page) => {
                            push = Some(Frame::Children {
                                parent: page.clone(),
                                depth: *depth,
                                source: Some(page),
                                next_order: 0,
                                pending: VecDeque::new(),
                                cursor: None,
                                started: false,
                            })
                        }
                        None => {
                            pw.frames.pop();
                        }
                    },
                },
            }
            if let Some(f) = push {
                pw.frames.push(f);
            }
        }
        self.prefetch(&walk);
        let mut page = to_page(records, self.walk_next(&walk)?);
        page.cursor_max = self.incremental.then_some(newest).flatten().map(Json::String);
        Ok(page)
    }

    /// What the walk reads below a block at `depth` (bizon's rules): its children unless it is
    /// a child page or database, an inline database's pages in `blocks`, nothing past
    /// `max_recursion_depth` or without `fetch_blocks_recursively`.
    fn below(&self, kind: &str, has_children: bool, depth: u32) -> Below {
        let within = depth + 1 < self.config.max_recursion_depth;
        if !self.config.fetch_blocks_recursively {
            Below::Nothing
        } else if kind == "child_database" && self.stream == Stream::Blocks {
            if within {
                Below::Inline
            } else {
                Below::TooDeep
            }
        } else if has_children && kind != "child_page" && kind != "child_database" {
            if within {
                Below::Children
            } else {
                Below::TooDeep
            }
        } else {
            Below::Nothing
        }
    }

    /// A children page: the one fetched ahead when there is one, else fetched now.
    fn take_children(&mut self, parent: &str, cursor: Option<&str>) -> Result<Option<List>> {
        let key = (parent.to_owned(), cursor.map(str::to_owned));
        match self.prefetched.remove(&key).map(|rx| rx.recv()) {
            Some(Ok(fetched)) => fetched,
            // The fetching thread ended without an answer: fetch here.
            Some(Err(_)) | None => self.api.children(parent, cursor),
        }
    }

    /// Start fetching the children pages the walk needs next while it writes what it has, up
    /// to `max_workers - 1` at once and within the source's rate limit (the threads share its
    /// client). Only the walk's state is checkpointed: a fetch ahead is lost with the process.
    fn prefetch(&mut self, walk: &Walk) {
        let room = (self.config.max_workers as usize).saturating_sub(1);
        if room == 0 {
            return;
        }
        let ahead = self.upcoming(walk, PREFETCH_WINDOW);
        // A fetch the walk will not need soon (it skipped it) gives its place back.
        self.prefetched.retain(|k, _| ahead.contains(k));
        for key in ahead {
            if self.prefetched.len() >= room {
                break;
            }
            if self.prefetched.contains_key(&key) {
                continue;
            }
            let (tx, rx) = mpsc::channel();
            let api = self.api.clone();
            let (parent, cursor) = key.clone();
            std::thread::spawn(move || {
                let _ = tx.send(api.children(&parent, cursor.as_deref()));
            });
            self.prefetched.insert(key, rx);
        }
    }

    /// The children pages the walk will fetch next, about in the order it will: the current
    /// level's blocks that have children, its next page, the levels above, then the next pages.
    fn upcoming(&self, walk: &Walk, n: usize) -> Vec<ChildrenKey> {
        let mut out = Vec::new();
        if let Some(pw) = &walk.walking {
            for frame in pw.frames.iter().rev() {
                let Frame::Children { parent, depth, pending, cursor, started, .. } = frame else { break };
                if !*started {
                    out.push((parent.clone(), None));
                }
                for b in pending {
                    let kind = b.get("type").and_then(Json::as_str).unwrap_or_default();
                    let has_children = b.get("has_children").and_then(Json::as_bool).unwrap_or(false);
                    if let (Below::Children, Some(id)) =
                        (self.below(kind, has_children, *depth), b.get("id").and_then(Json::as_str))
                    {
                        out.push((id.to_owned(), None));
                    }
                }
                if let Some(c) = cursor {
                    out.push((parent.clone(), Some(c.clone())));
                }
                if out.len() >= n {
                    break;
                }
            }
        }
        out.extend(walk.items.iter().take(n).map(|i| (i.id.clone(), None)));
        out.truncate(n);
        out
    }

    fn walk_next(&self, walk: &Walk) -> Result<Json> {
        if walk.walking.is_none() && walk.items.is_empty() {
            return Ok(json!({}));
        }
        to_json(walk)
    }

    /// A walked block as the stream's record: the block with its lineage, or bizon's markdown
    /// record around it.
    fn record(&self, block: Json, kind: &str) -> Json {
        if !self.stream.markdown() {
            return block;
        }
        let field = |k: &str| block.get(k).cloned().unwrap_or(Json::Null);
        json!({
            "block_id": field("id"),
            "block_type": kind,
            "markdown": markdown::block(&block),
            "source_page_id": field("source_page_id"),
            "parent_block_id": field("parent_block_id"),
            "parent_input_database_id": field("parent_input_database_id"),
            "parent_input_page_id": field("parent_input_page_id"),
            "depth": field("depth"),
            "block_order": field("block_order"),
            "page_order": field("page_order"),
            "block_raw": block,
        })
    }

    /// The pages of an inline database (no `database_filters`, as bizon); none when it is not
    /// shared with the integration.
    fn inline_pages(&self, id: &str) -> Result<VecDeque<String>> {
        let Some(db) = self.api.get_json(&format!("/databases/{id}"), &[])? else {
            warn!(database = %id, "notion: an inline database is not shared with the integration: its pages are skipped");
            return Ok(VecDeque::new());
        };
        let mut pages = VecDeque::new();
        for ds in Api::data_source_ids(&db) {
            for p in self.api.query_all(&ds, None)? {
                pages.push_back(object_id(&p, "page")?);
            }
        }
        Ok(pages)
    }
}

impl Source for NotionSource {
    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        let watermark = self.watermark(ctx);
        let inc = self.incremental;
        match self.stream {
            Stream::Users => self.users(pagination),
            Stream::AllPages => self.searched("page", pagination, watermark, inc),
            Stream::AllDataSources => self.searched("data_source", pagination, watermark, inc),
            Stream::Databases if watermark.is_some() => self.searched_databases(pagination, watermark, inc),
            Stream::Databases | Stream::DataSources => self.configured_databases(pagination),
            Stream::AllDatabases => self.searched_databases(pagination, watermark, inc),
            Stream::Pages => self.pages(pagination, watermark, inc),
            Stream::Blocks | Stream::BlocksMarkdown | Stream::AllBlocksMarkdown => self.blocks(pagination, watermark),
        }
    }
}

/// A Notion object's `last_edited_time`.
fn edited(object: &Json) -> Option<&str> {
    object.get("last_edited_time").and_then(Json::as_str)
}

fn object_id(object: &Json, what: &str) -> Result<String> {
    object
        .get("id")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::permanent(format!("Notion returned a {what} without an `id`: {object}")))
}

/// Records keyed by their Notion ids.
fn with_ids(objects: Vec<Json>, what: &str) -> Result<Vec<(String, Json)>> {
    objects.into_iter().map(|o| Ok((object_id(&o, what)?, o))).collect()
}

fn next_cursor(next: Option<String>) -> Json {
    next.map_or_else(|| json!({}), |c| json!({ "start_cursor": c }))
}

fn to_json<T: Serialize>(state: &T) -> Result<Json> {
    serde_json::to_value(state).map_err(|e| Error::permanent(format!("notion: cannot write the walk state: {e}")))
}

fn bad_cursor(pagination: &Json, e: serde_json::Error) -> Error {
    Error::permanent(format!(
        "notion: the stored pagination is not this stream's ({e}); reset the stream to start over: {pagination}"
    ))
}
