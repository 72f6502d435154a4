//! A Notion REST API stand-in (version 2025-09-03, the "data sources" API) for tests and
//! benchmarks: a generated workspace (users, databases and their data sources, pages in them,
//! standalone pages, block trees under the pages) served with Notion's documented shapes,
//! paging, filters, errors and rate limiting (429 with `Retry-After`). Not a server for real data.
//!
//! [`api`] is the request → answer function (no sockets); [`NotionHandler`] adds the checks
//! every request goes through (throttling, token, version) and the counters; [`FakeNotion`]
//! serves it on a local port.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use crate::http::{FakeApi, FakeRequest, FakeResponse};

pub const NOTION_VERSION: &str = "2025-09-03";
/// The integration token the server accepts (`Authorization: Bearer <TOKEN>`).
pub const TOKEN: &str = "secret_notion_test_token_0123456789";
/// One page's blocks, every block type: a tree, children in a non-API `children` key.
pub const BLOCK_TYPES_JSON: &str = include_str!("../fixtures/notion/block_types.json");
/// The id of the page whose blocks are [`BLOCK_TYPES_JSON`] (its top blocks' parent).
pub const BLOCK_TYPE_PAGE_ID: &str = "9ab10c00-0000-4000-8000-000000000001";

const MINUTE_MS: i64 = 60_000;
/// 2025-01-01T00:00:00.000Z
const BASE_MS: i64 = 1_735_689_600_000;
const DAY_MS: i64 = 86_400_000;
const USER: &str = "ac000000";
const BOT_ID: &str = "ac0b0700-0000-4000-8000-000000000001";
const DATABASE: &str = "db000000";
const DATA_SOURCE: &str = "d5000000";
const PAGE: &str = "9a000000";
const BLOCK: &str = "b0000000";
const INLINE_DATABASE_ID: &str = "db100000-0000-4000-8000-000000000000";
const INLINE_DATA_SOURCE_ID: &str = "d5100000-0000-4000-8000-000000000000";
/// The original of the synced copy whose children are not shared with the integration.
const UNSHARED_ORIGINAL_ID: &str = "b5000000-0000-4000-8000-000000000000";
const STATUS_PROPERTY_ID: &str = "St%3Au";
const PRIORITY_PROPERTY_ID: &str = "Pr%3D1";
/// Select options: name, id, color (pages cycle through them by index in their database).
const STATUSES: [(&str, &str, &str); 3] =
    [("Done", "opt-done", "green"), ("In progress", "opt-progress", "blue"), ("Todo", "opt-todo", "red")];
const NAMES: [&str; 4] = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson"];
const MAX_PAGE_SIZE: i64 = 100;

/// What [`Workspace::generate`] makes.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSpec {
    pub databases: usize,
    /// Pages per database (database 0's two data sources share them: the first half, then the rest).
    pub pages_per_database: usize,
    pub standalone_pages: usize,
    /// Person users (a bot user is always added).
    pub users: usize,
    /// Pages whose index (creation order, all pages) is a multiple of this get a 4-level block
    /// tree; the others a flat one (3 top blocks without children). 0: none deep.
    pub deep_every: usize,
    /// One extra standalone page ([`BLOCK_TYPE_PAGE_ID`]) whose blocks are [`BLOCK_TYPES_JSON`].
    pub with_block_type_page: bool,
}

/// Every object of a workspace, as the API answers them.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    users: Vec<Json>,
    /// Listed databases (`database_ids`), then inline ones.
    databases: Vec<Json>,
    listed_databases: usize,
    data_sources: Vec<Json>,
    /// Creation order.
    pages: Vec<Json>,
    page_at: HashMap<String, usize>,
    /// Data source id → indexes in `pages`, creation order.
    source_pages: HashMap<String, Vec<usize>>,
    blocks: HashMap<String, Json>,
    /// Page or block id → child block ids in order.
    children: HashMap<String, Vec<String>>,
    /// Blocks whose children answer 404 (a synced copy whose original is not shared).
    unshared: HashSet<String>,
    standalone: Vec<String>,
    block_type_page: Option<String>,
    inline_database: Option<String>,
    next_block: usize,
}

/// Creation time and author of generated blocks.
struct Stamp {
    time: String,
    author: String,
}

impl Workspace {
    /// Deterministic: the same spec gives the same ids, titles and times.
    pub fn generate(spec: &WorkspaceSpec) -> Workspace {
        let mut ws = Workspace::default();
        for i in 0..spec.users {
            let name = if i < NAMES.len() { NAMES[i].to_owned() } else { format!("{} {i}", NAMES[i % NAMES.len()]) };
            ws.users.push(json!({
                "object": "user", "id": uuid(USER, i), "type": "person", "name": name, "avatar_url": null,
                "person": {"email": format!("user{i}@example.com")},
            }));
        }
        ws.users.push(json!({
            "object": "user", "id": BOT_ID, "type": "bot", "name": "Bizon Integration", "avatar_url": null,
            "bot": {"owner": {"type": "workspace", "workspace": true}, "workspace_name": "Bizon Test Workspace"},
        }));
        let author = |i: usize| if spec.users == 0 { BOT_ID.to_owned() } else { uuid(USER, i % spec.users) };
        let deep = |index: usize| spec.deep_every > 0 && index.is_multiple_of(spec.deep_every);

        let mut index = 0;
        let mut source_seq = 0;
        let mut host = None;
        for k in 0..spec.databases {
            let db_id = uuid(DATABASE, k);
            let title = format!("Database {k}");
            let time = BASE_MS - DAY_MS + k as i64 * MINUTE_MS;
            let names: Vec<String> =
                if k == 0 { vec![title.clone(), format!("{title} archive")] } else { vec![title.clone()] };
            let mut sources = Vec::new();
            for name in names {
                let id = uuid(DATA_SOURCE, source_seq);
                source_seq += 1;
                let workspace = json!({"type": "workspace", "workspace": true});
                ws.data_sources.push(data_source_json(&id, &name, &db_id, workspace, false, time, &author(k)));
                ws.source_pages.insert(id.clone(), Vec::new());
                sources.push((id, name));
            }
            let parent = json!({"type": "workspace", "workspace": true});
            ws.databases.push(database_json(&db_id, &title, &sources, parent, false, time, &author(k)));
            let first = spec.pages_per_database.div_ceil(sources.len());
            for j in 0..spec.pages_per_database {
                let ds = &sources[if j < first { 0 } else { sources.len() - 1 }].0;
                let id = uuid(PAGE, index);
                let parent = json!({"type": "data_source_id", "data_source_id": ds, "database_id": db_id});
                ws.add_page(index, &id, parent, &format!("Task {k}-{j}"), Some(j), &author(index));
                ws.add_tree(&id, index, deep(index), &author(index));
                if k == 0 && j == 1 && spec.deep_every > 0 {
                    ws.add_special_blocks(&id, index, &author(index));
                    host = Some(id);
                }
                index += 1;
            }
        }
        ws.listed_databases = ws.databases.len();
        let workspace = json!({"type": "workspace", "workspace": true});
        for i in 0..spec.standalone_pages {
            let id = uuid(PAGE, index);
            ws.add_page(index, &id, workspace.clone(), &format!("Note {i}"), None, &author(index));
            ws.add_tree(&id, index, deep(index), &author(index));
            ws.standalone.push(id);
            index += 1;
        }
        if spec.with_block_type_page {
            ws.add_page(index, BLOCK_TYPE_PAGE_ID, workspace, "Every block type", None, &author(0));
            let blocks: Vec<Json> = serde_json::from_str(BLOCK_TYPES_JSON).expect("fixtures/notion/block_types.json");
            ws.insert_tree(blocks, BLOCK_TYPE_PAGE_ID, true);
            ws.standalone.push(BLOCK_TYPE_PAGE_ID.to_owned());
            ws.block_type_page = Some(BLOCK_TYPE_PAGE_ID.to_owned());
            index += 1;
        }
        if let Some(host) = host {
            // An inline database in page 1 of database 0 (its child_database block has its id).
            let time = BASE_MS - DAY_MS + spec.databases as i64 * MINUTE_MS;
            let title = "Inline tasks";
            let page_parent = json!({"type": "page_id", "page_id": host});
            let ds = data_source_json(
                INLINE_DATA_SOURCE_ID,
                title,
                INLINE_DATABASE_ID,
                page_parent.clone(),
                true,
                time,
                &author(0),
            );
            ws.data_sources.push(ds);
            ws.source_pages.insert(INLINE_DATA_SOURCE_ID.to_owned(), Vec::new());
            let sources = [(INLINE_DATA_SOURCE_ID.to_owned(), title.to_owned())];
            ws.databases.push(database_json(INLINE_DATABASE_ID, title, &sources, page_parent, true, time, &author(0)));
            ws.inline_database = Some(INLINE_DATABASE_ID.to_owned());
            for j in 0..2 {
                let id = uuid(PAGE, index);
                let parent = json!({"type": "data_source_id", "data_source_id": INLINE_DATA_SOURCE_ID, "database_id": INLINE_DATABASE_ID});
                ws.add_page(index, &id, parent, &format!("Inline task {j}"), Some(j), &author(index));
                ws.add_tree(&id, index, deep(index), &author(index));
                index += 1;
            }
        }
        ws
    }

    /// The databases shared at the workspace level (not the inline one).
    pub fn database_ids(&self) -> Vec<String> {
        self.databases[..self.listed_databases].iter().map(id_of).collect()
    }

    /// The data sources of [`Self::database_ids`], in database order (database 0 has two).
    pub fn data_source_ids(&self) -> Vec<String> {
        self.databases[..self.listed_databases]
            .iter()
            .flat_map(|db| db["data_sources"].as_array().into_iter().flatten().map(id_of))
            .collect()
    }

    /// The pages in a database's data sources, in query order (also for the inline database).
    pub fn database_page_ids(&self, database_id: &str) -> Vec<String> {
        let Some(db) = self.databases.iter().find(|d| d["id"] == database_id) else { return Vec::new() };
        db["data_sources"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|ds| self.source_pages.get(ds["id"].as_str().unwrap_or_default()).into_iter().flatten())
            .map(|&i| id_of(&self.pages[i]))
            .collect()
    }

    /// Pages whose parent is the workspace, the block-type page last when there is one.
    pub fn standalone_page_ids(&self) -> Vec<String> {
        self.standalone.clone()
    }

    /// Every page (database, standalone, block-type and inline-database pages), creation order.
    pub fn all_page_ids(&self) -> Vec<String> {
        self.pages.iter().map(id_of).collect()
    }

    /// Persons, then the bot.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(id_of).collect()
    }

    pub fn block_type_page_id(&self) -> Option<String> {
        self.block_type_page.clone()
    }

    /// The inline database in page 1 of database 0 (when `deep_every > 0`): not in
    /// [`Self::database_ids`]; found through its child_database block or search.
    pub fn inline_database_id(&self) -> Option<String> {
        self.inline_database.clone()
    }

    /// Block ids under a page in reading order (pre-order DFS), down to `max_depth` levels
    /// (depth 0 = the page's direct children; blocks at depth `max_depth` are included), not
    /// descending into child_page / child_database blocks.
    pub fn block_ids_preorder(&self, page_id: &str, max_depth: usize) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(page_id, 0, max_depth, &mut out);
        out
    }

    fn walk(&self, parent: &str, depth: usize, max_depth: usize, out: &mut Vec<String>) {
        for id in self.children.get(parent).into_iter().flatten() {
            out.push(id.clone());
            let kind = self.blocks[id]["type"].as_str().unwrap_or_default();
            if depth < max_depth && kind != "child_page" && kind != "child_database" {
                self.walk(id, depth + 1, max_depth, out);
            }
        }
    }

    /// Set a page's last_edited_time (and its first block's) to `at` (RFC 3339, ms, Z), as an
    /// edit would. Panics on an unknown page.
    pub fn edit_page(&mut self, page_id: &str, at: &str) {
        let i = *self.page_at.get(page_id).unwrap_or_else(|| panic!("no page {page_id}"));
        self.pages[i]["last_edited_time"] = json!(at);
        if let Some(first) = self.children.get(page_id).and_then(|c| c.first()) {
            if let Some(block) = self.blocks.get_mut(first) {
                block["last_edited_time"] = json!(at);
            }
        }
    }

    pub fn page(&self, id: &str) -> Option<&Json> {
        self.page_at.get(id).map(|&i| &self.pages[i])
    }

    pub fn block(&self, id: &str) -> Option<&Json> {
        self.blocks.get(id)
    }

    fn database(&self, id: &str) -> Option<&Json> {
        self.databases.iter().find(|d| d["id"] == id)
    }

    fn data_source(&self, id: &str) -> Option<&Json> {
        self.data_sources.iter().find(|d| d["id"] == id)
    }

    /// `row`: the page's index in its database (properties from the schema), or None for a
    /// page outside any database (its only property is `title`).
    fn add_page(&mut self, index: usize, id: &str, parent: Json, title: &str, row: Option<usize>, author: &str) {
        let created = BASE_MS + index as i64 * MINUTE_MS;
        let title_property = |id: &str| json!({"id": id, "type": "title", "title": [text(title)]});
        let properties = match row {
            Some(j) => {
                let (name, option, color) = STATUSES[j % STATUSES.len()];
                json!({
                    "Name": title_property("title"),
                    "Status": {"id": STATUS_PROPERTY_ID, "type": "select", "select": {"id": option, "name": name, "color": color}},
                    "Priority": {"id": PRIORITY_PROPERTY_ID, "type": "number", "number": (j % 5 + 1) as u64},
                })
            }
            None => json!({"title": title_property("title")}),
        };
        if let Some(ds) = parent["data_source_id"].as_str() {
            self.source_pages.entry(ds.to_owned()).or_default().push(self.pages.len());
        }
        self.page_at.insert(id.to_owned(), self.pages.len());
        self.pages.push(json!({
            "object": "page",
            "id": id,
            "created_time": format_ms(created),
            "last_edited_time": format_ms(created + 30_000),
            "created_by": user_ref(author),
            "last_edited_by": user_ref(author),
            "cover": null,
            "icon": null,
            "parent": parent,
            "archived": false,
            "in_trash": false,
            "is_locked": false,
            "properties": properties,
            "url": notion_url(title, id),
            "public_url": null,
        }));
    }

    /// A generated page body: deep (paragraph, toggle > bulleted > bulleted > paragraph,
    /// heading: 8 blocks, depths 0..=3) or flat (3 top blocks without children).
    fn add_tree(&mut self, page: &str, index: usize, deep: bool, author: &str) {
        let s = Stamp { time: format_ms(BASE_MS + index as i64 * MINUTE_MS), author: author.to_owned() };
        let rich = |t: String| json!({"rich_text": [text(&t)], "color": "default"});
        let heading = |t: String| json!({"rich_text": [text(&t)], "is_toggleable": false, "color": "default"});
        let top = (page, true);
        if !deep {
            self.add_block(top, None, "heading_2", heading(format!("Task page {index}")), false, &s);
            self.add_block(top, None, "paragraph", rich(format!("Body of page {index}.")), false, &s);
            let todo =
                json!({"rich_text": [text("Follow up")], "checked": index.is_multiple_of(2), "color": "default"});
            self.add_block(top, None, "to_do", todo, false, &s);
            return;
        }
        self.add_block(top, None, "paragraph", rich(format!("Introduction of page {index}.")), false, &s);
        let toggle = self.add_block(top, None, "toggle", rich("Details".into()), true, &s);
        let level1 = self.add_block((&toggle, false), None, "bulleted_list_item", rich("Level 1".into()), true, &s);
        let level2 = self.add_block((&level1, false), None, "bulleted_list_item", rich("Level 2".into()), true, &s);
        self.add_block((&level2, false), None, "paragraph", rich("Level 3, the deepest.".into()), false, &s);
        self.add_block((&level1, false), None, "paragraph", rich("Level 2 note.".into()), false, &s);
        self.add_block((&toggle, false), None, "paragraph", rich("Level 1 note.".into()), false, &s);
        self.add_block(top, None, "heading_3", heading("Summary".into()), false, &s);
    }

    /// Page 1 of database 0: a child_database block (the inline database) and a synced copy
    /// whose original is not shared with the integration (its children answer 404).
    fn add_special_blocks(&mut self, page: &str, index: usize, author: &str) {
        let s = Stamp { time: format_ms(BASE_MS + index as i64 * MINUTE_MS), author: author.to_owned() };
        let db = Some(INLINE_DATABASE_ID.to_owned());
        self.add_block((page, true), db, "child_database", json!({"title": "Inline tasks"}), false, &s);
        let synced = json!({"synced_from": {"type": "block_id", "block_id": UNSHARED_ORIGINAL_ID}});
        let id = self.add_block((page, true), None, "synced_block", synced, true, &s);
        self.unshared.insert(id);
    }

    /// `parent`: (id, is a page).
    fn add_block(
        &mut self,
        parent: (&str, bool),
        id: Option<String>,
        kind: &str,
        content: Json,
        has_children: bool,
        stamp: &Stamp,
    ) -> String {
        let id = id.unwrap_or_else(|| {
            self.next_block += 1;
            uuid(BLOCK, self.next_block)
        });
        let parent_json = if parent.1 {
            json!({"type": "page_id", "page_id": parent.0})
        } else {
            json!({"type": "block_id", "block_id": parent.0})
        };
        let mut block = json!({
            "object": "block",
            "id": id,
            "parent": parent_json,
            "created_time": stamp.time,
            "last_edited_time": stamp.time,
            "created_by": user_ref(&stamp.author),
            "last_edited_by": user_ref(&stamp.author),
            "has_children": has_children,
            "archived": false,
            "in_trash": false,
            "type": kind,
        });
        block[kind] = content;
        self.children.entry(parent.0.to_owned()).or_default().push(id.clone());
        self.blocks.insert(id.clone(), block);
        id
    }

    /// Fixture blocks: `children` taken out and served by the children endpoint.
    fn insert_tree(&mut self, blocks: Vec<Json>, parent: &str, is_page: bool) {
        for mut block in blocks {
            let kids = block.as_object_mut().and_then(|b| b.shift_remove("children"));
            let kids: Vec<Json> = kids.and_then(|k| serde_json::from_value(k).ok()).unwrap_or_default();
            block["parent"] = if is_page {
                json!({"type": "page_id", "page_id": parent})
            } else {
                json!({"type": "block_id", "block_id": parent})
            };
            let id = id_of(&block);
            self.children.entry(parent.to_owned()).or_default().push(id.clone());
            self.blocks.insert(id.clone(), block);
            self.insert_tree(kids, &id, false);
        }
    }
}

fn uuid(prefix: &str, n: usize) -> String {
    format!("{prefix}-0000-4000-8000-{n:012}")
}

fn id_of(v: &Json) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn user_ref(id: &str) -> Json {
    json!({"object": "user", "id": id})
}

/// A plain rich-text item.
fn text(s: &str) -> Json {
    json!({
        "type": "text",
        "text": {"content": s, "link": null},
        "annotations": {"bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false, "color": "default"},
        "plain_text": s,
        "href": null,
    })
}

fn notion_url(title: &str, id: &str) -> String {
    format!("https://www.notion.so/{}-{}", title.replace(' ', "-"), id.replace('-', ""))
}

fn schema() -> Json {
    let options: Vec<Json> = STATUSES
        .iter()
        .map(|(name, id, color)| json!({"id": id, "name": name, "color": color, "description": null}))
        .collect();
    json!({
        "Name": {"id": "title", "name": "Name", "type": "title", "title": {}},
        "Status": {"id": STATUS_PROPERTY_ID, "name": "Status", "type": "select", "select": {"options": options}},
        "Priority": {"id": PRIORITY_PROPERTY_ID, "name": "Priority", "type": "number", "number": {"format": "number"}},
    })
}

fn data_source_json(
    id: &str,
    name: &str,
    database: &str,
    database_parent: Json,
    inline: bool,
    time: i64,
    author: &str,
) -> Json {
    json!({
        "object": "data_source",
        "id": id,
        "created_time": format_ms(time),
        "last_edited_time": format_ms(time + 30_000),
        "created_by": user_ref(author),
        "last_edited_by": user_ref(author),
        "properties": schema(),
        "parent": {"type": "database_id", "database_id": database},
        "database_parent": database_parent,
        "archived": false,
        "in_trash": false,
        "is_inline": inline,
        "icon": null,
        "cover": null,
        "title": [text(name)],
        "description": [],
        "url": notion_url(name, id),
        "public_url": null,
    })
}

fn database_json(
    id: &str,
    title: &str,
    sources: &[(String, String)],
    parent: Json,
    inline: bool,
    time: i64,
    author: &str,
) -> Json {
    let sources: Vec<Json> = sources.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
    json!({
        "object": "database",
        "id": id,
        "title": [text(title)],
        "description": [],
        "parent": parent,
        "is_inline": inline,
        "in_trash": false,
        "is_locked": false,
        "created_time": format_ms(time),
        "last_edited_time": format_ms(time + 30_000),
        "created_by": user_ref(author),
        "last_edited_by": user_ref(author),
        "data_sources": sources,
        "icon": null,
        "cover": null,
        "url": notion_url(title, id),
        "public_url": null,
    })
}

// ---------------------------------------------------------------------------------------------
// Times: RFC 3339 with milliseconds and Z, as Notion writes them.

/// Milliseconds since the epoch → `2025-01-01T00:00:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time in range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// An RFC 3339 date-time (`2025-01-01T10:00:00.000Z`, any offset) or a date (`2025-01-01`) →
/// milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if s.len() != 10 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

// ---------------------------------------------------------------------------------------------
// The API.

/// An error answer: `{"object":"error","status","code","message"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError { status: 400, code: "validation_error", message: message.into() }
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "object_not_found",
        message: format!(
            "Could not find {what} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    }
}

/// Answer one authenticated, versioned request (no throttling, token or version checks: see
/// [`NotionHandler::handle`]). Paths start with `/v1/`.
pub fn api(ws: &Workspace, r: &FakeRequest) -> Result<Json, ApiError> {
    let bad_url = || ApiError { status: 404, code: "invalid_request_url", message: "Invalid request URL.".into() };
    let path = crate::http::decode(&r.path);
    let rest = path.strip_prefix("/v1/").ok_or_else(bad_url)?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", ["users"]) => {
            let (size, start) = query_paging(r, "/v1/users")?;
            let users: Vec<&Json> = ws.users.iter().collect();
            Ok(list(&users, size, start, "/v1/users", "user"))
        }
        ("GET", ["users", id]) => {
            let id = parse_id(id, "user_id")?;
            ws.users.iter().find(|u| u["id"] == id.as_str()).cloned().ok_or_else(|| not_found("user", &id))
        }
        ("GET", ["databases", id]) => {
            let id = parse_id(id, "database_id")?;
            ws.database(&id).cloned().ok_or_else(|| not_found("database", &id))
        }
        ("GET", ["data_sources", id]) => {
            let id = parse_id(id, "data_source_id")?;
            ws.data_source(&id).cloned().ok_or_else(|| not_found("data_source", &id))
        }
        ("POST", ["data_sources", id, "query"]) => {
            let id = parse_id(id, "data_source_id")?;
            query(ws, &id, &body(r)?)
        }
        ("GET", ["pages", id]) => {
            let id = parse_id(id, "page_id")?;
            ws.page(&id).cloned().ok_or_else(|| not_found("page", &id))
        }
        ("GET", ["blocks", id]) => {
            let id = parse_id(id, "block_id")?;
            ws.blocks.get(&id).cloned().ok_or_else(|| not_found("block", &id))
        }
        ("GET", ["blocks", id, "children"]) => {
            let id = parse_id(id, "block_id")?;
            if ws.unshared.contains(&id) || (!ws.blocks.contains_key(&id) && !ws.page_at.contains_key(&id)) {
                return Err(not_found("block", &id));
            }
            let at = format!("/v1/blocks/{id}/children");
            let (size, start) = query_paging(r, &at)?;
            let blocks: Vec<&Json> =
                ws.children.get(&id).into_iter().flatten().filter_map(|b| ws.blocks.get(b)).collect();
            Ok(list(&blocks, size, start, &at, "block"))
        }
        ("POST", ["search"]) => search(ws, &body(r)?),
        _ => Err(bad_url()),
    }
}

/// A path id, with or without dashes, as a dashed lowercase UUID.
fn parse_id(raw: &str, name: &str) -> Result<String, ApiError> {
    let lower = raw.to_ascii_lowercase();
    let hex = lower.replace('-', "");
    let dashed_ok = !lower.contains('-') || [8, 13, 18, 23].iter().all(|&i| lower.as_bytes().get(i) == Some(&b'-'));
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) || !dashed_ok || lower.len() > 36 {
        return Err(invalid(format!(
            "path failed validation: path.{name} should be a valid uuid, instead was `\"{raw}\"`."
        )));
    }
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

fn body(r: &FakeRequest) -> Result<Map<String, Json>, ApiError> {
    if r.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Json>(&r.body) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("body failed validation: body should be an object.")),
        Err(_) => Err(ApiError { status: 400, code: "invalid_json", message: "Error parsing JSON body.".into() }),
    }
}

/// `(page_size, offset)` from a GET's query string.
fn query_paging(r: &FakeRequest, path: &str) -> Result<(usize, usize), ApiError> {
    let size = match r.param("page_size") {
        None => None,
        Some(v) => Some(v.trim().parse::<i64>().map_err(|_| {
            invalid(format!("query failed validation: query.page_size should be a number, instead was `\"{v}\"`."))
        })?),
    };
    paging(size, r.param("start_cursor").filter(|c| !c.is_empty()), path, "query")
}

/// `(page_size, offset)` from a POST's body.
fn body_paging(b: &Map<String, Json>, path: &str) -> Result<(usize, usize), ApiError> {
    let size = match b.get("page_size") {
        None | Some(Json::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            invalid(format!("body failed validation: body.page_size should be a number, instead was `{v}`."))
        })?),
    };
    let cursor = match b.get("start_cursor") {
        None | Some(Json::Null) => None,
        Some(Json::String(c)) => Some(c.as_str()),
        Some(v) => {
            return Err(invalid(format!(
                "body failed validation: body.start_cursor should be a string, instead was `{v}`."
            )));
        }
    };
    paging(size, cursor, path, "body")
}

fn paging(size: Option<i64>, cursor: Option<&str>, path: &str, place: &str) -> Result<(usize, usize), ApiError> {
    let size = size.unwrap_or(MAX_PAGE_SIZE);
    if size > MAX_PAGE_SIZE {
        return Err(invalid(format!(
            "{place} failed validation: {place}.page_size should be less than or equal to `{MAX_PAGE_SIZE}`, instead was `{size}`."
        )));
    }
    if size < 1 {
        return Err(invalid(format!(
            "{place} failed validation: {place}.page_size should be greater than or equal to `1`, instead was `{size}`."
        )));
    }
    let start = match cursor {
        None => 0,
        Some(c) => {
            decode_cursor(c, path).ok_or_else(|| invalid(format!("The start_cursor provided is invalid: {c}")))?
        }
    };
    Ok((size as usize, start))
}

/// Cursors: base64url of `<path>#<offset>`; one made for another path is refused.
fn encode_cursor(path: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{path}#{offset}"))
}

fn decode_cursor(cursor: &str, path: &str) -> Option<usize> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (p, offset) = raw.rsplit_once('#')?;
    (p == path).then(|| offset.parse().ok())?
}

fn list(items: &[&Json], size: usize, start: usize, path: &str, kind: &str) -> Json {
    let start = start.min(items.len());
    let end = (start + size).min(items.len());
    let results: Vec<Json> = items[start..end].iter().map(|&v| v.clone()).collect();
    let has_more = end < items.len();
    let mut out = json!({
        "object": "list",
        "results": results,
        "next_cursor": if has_more { json!(encode_cursor(path, end)) } else { Json::Null },
        "has_more": has_more,
        "type": kind,
    });
    out[kind] = json!({});
    out
}

fn query(ws: &Workspace, id: &str, b: &Map<String, Json>) -> Result<Json, ApiError> {
    let ds = ws.data_source(id).ok_or_else(|| not_found("data_source", id))?;
    let schema = ds["properties"].as_object().cloned().unwrap_or_default();
    let filter = match b.get("filter") {
        None | Some(Json::Null) => None,
        Some(f) => Some(Filter::compile(f, &schema, "body.filter")?),
    };
    let sorts = match b.get("sorts") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(s)) => s.iter().map(|s| Sort::compile(s, &schema)).collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(invalid(format!("body failed validation: body.sorts should be an array, instead was `{v}`.")));
        }
    };
    let path = format!("/v1/data_sources/{id}/query");
    let (size, start) = body_paging(b, &path)?;
    let mut pages: Vec<&Json> = ws
        .source_pages
        .get(id)
        .into_iter()
        .flatten()
        .map(|&i| &ws.pages[i])
        .filter(|p| p["in_trash"] != true && filter.as_ref().is_none_or(|f| f.matches(p)))
        .collect();
    if !sorts.is_empty() {
        pages.sort_by(|a, b| {
            sorts.iter().map(|s| s.compare(a, b)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    Ok(list(&pages, size, start, &path, "page_or_data_source"))
}

fn search(ws: &Workspace, b: &Map<String, Json>) -> Result<Json, ApiError> {
    let text = match b.get("query") {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(q)) => q.trim().to_lowercase(),
        Some(v) => {
            return Err(invalid(format!("body failed validation: body.query should be a string, instead was `{v}`.")));
        }
    };
    let (want_pages, want_sources) = match b.get("filter") {
        None | Some(Json::Null) => (true, true),
        Some(f) if f["property"] == "object" && f["value"] == "page" => (true, false),
        Some(f) if f["property"] == "object" && f["value"] == "data_source" => (false, true),
        Some(f) => {
            return Err(invalid(format!(
                "body failed validation: body.filter should be `{{\"property\": \"object\", \"value\": \"page\" | \"data_source\"}}`, instead was `{f}`."
            )));
        }
    };
    let descending = match b.get("sort") {
        None | Some(Json::Null) => true,
        Some(s) if s["timestamp"] == "last_edited_time" && s["direction"] == "descending" => true,
        Some(s) if s["timestamp"] == "last_edited_time" && s["direction"] == "ascending" => false,
        Some(s) => {
            return Err(invalid(format!(
                "body failed validation: body.sort should be `{{\"timestamp\": \"last_edited_time\", \"direction\": \"ascending\" | \"descending\"}}`, instead was `{s}`."
            )));
        }
    };
    let (size, start) = body_paging(b, "/v1/search")?;
    let sources = ws.data_sources.iter().filter(|_| want_sources);
    let pages = ws.pages.iter().filter(|_| want_pages);
    let mut items: Vec<(i64, &Json)> = sources
        .chain(pages)
        .filter(|o| o["in_trash"] != true && (text.is_empty() || title_of(o).to_lowercase().contains(&text)))
        .map(|o| (o["last_edited_time"].as_str().and_then(parse_time).unwrap_or(0), o))
        .collect();
    // Stable: ties keep creation order (data sources, then pages).
    if descending {
        items.sort_by_key(|item| std::cmp::Reverse(item.0));
    } else {
        items.sort_by_key(|item| item.0);
    }
    let items: Vec<&Json> = items.into_iter().map(|(_, o)| o).collect();
    Ok(list(&items, size, start, "/v1/search", "page_or_data_source"))
}

/// A page's or data source's title, as plain text.
fn title_of(o: &Json) -> String {
    let items = if o["object"] == "page" {
        o["properties"].as_object().and_then(|p| p.values().find(|v| v["type"] == "title")).map(|t| &t["title"])
    } else {
        Some(&o["title"])
    };
    plain(items.unwrap_or(&Json::Null))
}

fn plain(rich: &Json) -> String {
    rich.as_array().into_iter().flatten().filter_map(|t| t["plain_text"].as_str()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Empty,
    NotEmpty,
}

/// A compiled data source query filter.
#[derive(Debug)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    /// `created_time` / `last_edited_time` against milliseconds.
    Time {
        field: String,
        op: Op,
        at: i64,
    },
    /// A property (by name) of type title, select or number.
    Property {
        name: String,
        kind: String,
        op: Op,
        value: Json,
    },
}

impl Filter {
    fn compile(f: &Json, schema: &Map<String, Json>, at: &str) -> Result<Filter, ApiError> {
        let bad = || invalid(format!("body failed validation: {at} is not a supported filter: `{f}`."));
        let obj = f.as_object().ok_or_else(bad)?;
        for key in ["and", "or"] {
            if let Some(list) = obj.get(key) {
                let list = list.as_array().filter(|_| obj.len() == 1).ok_or_else(bad)?;
                let parts = list
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Filter::compile(f, schema, &format!("{at}.{key}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if key == "and" { Filter::And(parts) } else { Filter::Or(parts) });
            }
        }
        if let Some(field) = obj.get("timestamp") {
            let field = field.as_str().filter(|f| *f == "created_time" || *f == "last_edited_time").ok_or_else(bad)?;
            let (key, value) = condition(obj.get(field).ok_or_else(bad)?, at)?;
            let op = match key {
                "equals" => Op::Eq,
                "after" => Op::Gt,
                "on_or_after" => Op::Ge,
                "before" => Op::Lt,
                "on_or_before" => Op::Le,
                _ => return Err(bad()),
            };
            let when = value.as_str().and_then(parse_time).ok_or_else(|| {
                invalid(format!(
                    "body failed validation: {at}.{field}.{key} should be an ISO 8601 date, instead was `{value}`."
                ))
            })?;
            return Ok(Filter::Time { field: field.to_owned(), op, at: when });
        }
        if let Some(property) = obj.get("property") {
            let property = property.as_str().ok_or_else(bad)?;
            let (name, def) = schema
                .iter()
                .find(|(name, def)| name.as_str() == property || def["id"] == property)
                .ok_or_else(|| invalid(format!("Could not find property with name or id: {property}")))?;
            let kind = def["type"].as_str().unwrap_or_default().to_owned();
            let Some(cond) = obj.get(&kind) else {
                let given = obj.keys().find(|k| *k != "property").cloned().unwrap_or_default();
                return Err(invalid(format!(
                    "body failed validation: {at}: property `{name}` is of type `{kind}`, filtered as `{given}`."
                )));
            };
            let (op, value) = condition(cond, at)?;
            let op = match (kind.as_str(), op) {
                (_, "equals") => Op::Eq,
                (_, "does_not_equal") => Op::Ne,
                (_, "is_empty") => Op::Empty,
                (_, "is_not_empty") => Op::NotEmpty,
                ("number", "greater_than") => Op::Gt,
                ("number", "greater_than_or_equal_to") => Op::Ge,
                ("number", "less_than") => Op::Lt,
                ("number", "less_than_or_equal_to") => Op::Le,
                ("title", "contains") => Op::Contains,
                ("title", "does_not_contain") => Op::NotContains,
                ("title", "starts_with") => Op::StartsWith,
                ("title", "ends_with") => Op::EndsWith,
                _ => return Err(bad()),
            };
            let typed = match op {
                Op::Empty | Op::NotEmpty => value == &json!(true),
                _ if kind == "number" => value.is_number(),
                _ => value.is_string(),
            };
            if !typed || !matches!(kind.as_str(), "title" | "select" | "number") {
                return Err(bad());
            }
            return Ok(Filter::Property { name: name.clone(), kind, op, value: value.clone() });
        }
        Err(bad())
    }

    fn matches(&self, page: &Json) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|f| f.matches(page)),
            Filter::Or(parts) => parts.iter().any(|f| f.matches(page)),
            Filter::Time { field, op, at } => {
                page[field.as_str()].as_str().and_then(parse_time).is_some_and(|t| compare(*op, t.cmp(at)))
            }
            Filter::Property { name, kind, op, value } => {
                let v = &page["properties"][name.as_str()];
                match kind.as_str() {
                    "number" => {
                        let n = v["number"].as_f64();
                        match op {
                            Op::Empty => n.is_none(),
                            Op::NotEmpty => n.is_some(),
                            Op::Ne => n.is_none_or(|n| Some(n) != value.as_f64()),
                            _ => n
                                .zip(value.as_f64())
                                .and_then(|(n, x)| n.partial_cmp(&x))
                                .is_some_and(|o| compare(*op, o)),
                        }
                    }
                    _ => {
                        let s = if kind == "select" {
                            v["select"]["name"].as_str().unwrap_or_default().to_owned()
                        } else {
                            plain(&v["title"])
                        };
                        let x = value.as_str().unwrap_or_default();
                        let (ls, lx) = (s.to_lowercase(), x.to_lowercase());
                        match op {
                            Op::Eq => s == x,
                            Op::Ne => s != x,
                            Op::Empty => s.is_empty(),
                            Op::NotEmpty => !s.is_empty(),
                            Op::Contains => ls.contains(&lx),
                            Op::NotContains => !ls.contains(&lx),
                            Op::StartsWith => ls.starts_with(&lx),
                            Op::EndsWith => ls.ends_with(&lx),
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

/// A condition object with exactly one key: (key, value).
fn condition<'a>(cond: &'a Json, at: &str) -> Result<(&'a str, &'a Json), ApiError> {
    match cond.as_object() {
        Some(c) if c.len() == 1 => Ok(c.iter().next().map(|(k, v)| (k.as_str(), v)).expect("one key")),
        _ => Err(invalid(format!(
            "body failed validation: {at} should have exactly one condition, instead was `{cond}`."
        ))),
    }
}

fn compare(op: Op, o: std::cmp::Ordering) -> bool {
    match op {
        Op::Eq => o.is_eq(),
        Op::Ne => o.is_ne(),
        Op::Gt => o.is_gt(),
        Op::Ge => o.is_ge(),
        Op::Lt => o.is_lt(),
        Op::Le => o.is_le(),
        _ => false,
    }
}

/// One entry of a query's `sorts`.
struct Sort {
    /// A timestamp name, or a property name.
    key: String,
    timestamp: bool,
    descending: bool,
}

impl Sort {
    fn compile(s: &Json, schema: &Map<String, Json>) -> Result<Sort, ApiError> {
        let bad = || invalid(format!("body failed validation: body.sorts has an invalid sort: `{s}`."));
        let descending = match s["direction"].as_str() {
            Some("ascending") => false,
            Some("descending") => true,
            _ => return Err(bad()),
        };
        if let Some(t) = s["timestamp"].as_str() {
            if t != "created_time" && t != "last_edited_time" {
                return Err(bad());
            }
            return Ok(Sort { key: t.to_owned(), timestamp: true, descending });
        }
        let property = s["property"].as_str().ok_or_else(bad)?;
        let (name, _) = schema
            .iter()
            .find(|(name, def)| name.as_str() == property || def["id"] == property)
            .ok_or_else(|| invalid(format!("Could not find sort property with name or id: {property}")))?;
        Ok(Sort { key: name.clone(), timestamp: false, descending })
    }

    /// Empty values last, whatever the direction.
    fn compare(&self, a: &Json, b: &Json) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        let (ka, kb) = (self.key_of(a), self.key_of(b));
        match (ka, kb) {
            (None, None) => Equal,
            (None, Some(_)) => Greater,
            (Some(_), None) => Less,
            (Some(x), Some(y)) => {
                let o = match (x, y) {
                    (SortKey::Num(x), SortKey::Num(y)) => x.partial_cmp(&y).unwrap_or(Equal),
                    (SortKey::Text(x), SortKey::Text(y)) => x.cmp(&y),
                    (SortKey::Num(_), SortKey::Text(_)) => Less,
                    (SortKey::Text(_), SortKey::Num(_)) => Greater,
                };
                if self.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        }
    }

    fn key_of(&self, page: &Json) -> Option<SortKey> {
        if self.timestamp {
            return page[self.key.as_str()].as_str().and_then(parse_time).map(|t| SortKey::Num(t as f64));
        }
        let v = &page["properties"][self.key.as_str()];
        match v["type"].as_str()? {
            "number" => v["number"].as_f64().map(SortKey::Num),
            "select" => v["select"]["name"].as_str().map(|s| SortKey::Text(s.to_owned())),
            "title" => Some(plain(&v["title"])).filter(|s| !s.is_empty()).map(SortKey::Text),
            _ => None,
        }
    }
}

enum SortKey {
    Num(f64),
    Text(String),
}

// ---------------------------------------------------------------------------------------------
// Serving.

/// Throttling and latency of a [`FakeNotion`].
#[derive(Debug, Clone)]
pub struct NotionOptions {
    /// Wait this long before every answer.
    pub latency: Option<Duration>,
    /// A token bucket: this many requests a second, bursts of 3; over it → 429.
    pub rate_per_second: Option<f64>,
    /// Every Nth request (counting all) is answered 429 regardless; 0 = never.
    pub throttle_every: u64,
    /// This share of requests, drawn at random (seeded by the request's number: the same
    /// requests each run), is answered 429 regardless; 0 = none.
    pub throttle_share: f64,
    /// The `Retry-After` of 429 answers.
    pub retry_after_seconds: u64,
}

impl Default for NotionOptions {
    fn default() -> Self {
        NotionOptions {
            latency: None,
            rate_per_second: None,
            throttle_every: 0,
            throttle_share: 0.0,
            retry_after_seconds: 1,
        }
    }
}

const BURST: f64 = 3.0;

/// The request → answer function of the stand-in with its checks, in order: throttling
/// (`throttle_every`, then the token bucket: 429 `rate_limited` with `Retry-After`), the token
/// (401 `unauthorized`), the `Notion-Version` header (400 `missing_version`), then [`api`].
pub struct NotionHandler {
    pub workspace: Arc<Mutex<Workspace>>,
    /// 429s sent.
    pub throttled: Arc<AtomicU64>,
    /// 2xx answers sent.
    pub served: Arc<AtomicU64>,
    options: NotionOptions,
    seen: AtomicU64,
    /// Tokens, last refill.
    bucket: Mutex<(f64, Instant)>,
}

impl NotionHandler {
    pub fn new(workspace: Workspace, options: NotionOptions) -> Self {
        NotionHandler {
            workspace: Arc::new(Mutex::new(workspace)),
            throttled: Arc::new(AtomicU64::new(0)),
            served: Arc::new(AtomicU64::new(0)),
            options,
            seen: AtomicU64::new(0),
            bucket: Mutex::new((BURST, Instant::now())),
        }
    }

    pub fn workspace(&self) -> MutexGuard<'_, Workspace> {
        self.workspace.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn handle(&self, r: &FakeRequest) -> FakeResponse {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        let request_id = format!("7e000000-0000-4000-8000-{n:012}");
        let response = if self.throttle(n) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            let e = ApiError {
                status: 429,
                code: "rate_limited",
                message: "You have been rate limited. Please try again in a few minutes.".into(),
            };
            error_response(&e, &request_id).header("Retry-After", &self.options.retry_after_seconds.to_string())
        } else {
            match self.check(r).and_then(|()| api(&self.workspace(), r)) {
                Ok(mut v) => {
                    if v["object"] == "list" {
                        v["request_id"] = json!(request_id);
                    }
                    self.served.fetch_add(1, Ordering::SeqCst);
                    FakeResponse::json(v)
                }
                Err(e) => error_response(&e, &request_id),
            }
        };
        match self.options.latency {
            Some(d) => response.delay(d),
            None => response,
        }
    }

    fn throttle(&self, n: u64) -> bool {
        if self.options.throttle_every > 0 && n.is_multiple_of(self.options.throttle_every) {
            return true;
        }
        if self.options.throttle_share > 0.0 {
            // splitmix64 of the request number: a uniform draw in [0, 1).
            let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            if ((x >> 11) as f64 / (1u64 << 53) as f64) < self.options.throttle_share {
                return true;
            }
        }
        let Some(rate) = self.options.rate_per_second.filter(|r| *r > 0.0) else { return false };
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(BURST);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            false
        } else {
            true
        }
    }

    fn check(&self, r: &FakeRequest) -> Result<(), ApiError> {
        if r.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Err(ApiError { status: 401, code: "unauthorized", message: "API token is invalid.".into() });
        }
        match r.header("notion-version") {
            Some(NOTION_VERSION) => Ok(()),
            None => Err(ApiError {
                status: 400,
                code: "missing_version",
                message: "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.".into(),
            }),
            Some(v) => Err(ApiError {
                status: 400,
                code: "missing_version",
                message: format!("Notion-Version header failed validation: this stand-in answers only `{NOTION_VERSION}`, instead was `{v}`."),
            }),
        }
    }
}

fn error_response(e: &ApiError, request_id: &str) -> FakeResponse {
    let body =
        json!({"object": "error", "status": e.status, "code": e.code, "message": e.message, "request_id": request_id});
    FakeResponse::status(e.status, &body.to_string())
}

/// The stand-in on a local port.
pub struct FakeNotion {
    pub api: FakeApi,
    pub workspace: Arc<Mutex<Workspace>>,
    /// 429s sent.
    pub throttled: Arc<AtomicU64>,
    /// 2xx answers sent.
    pub served: Arc<AtomicU64>,
}

impl FakeNotion {
    pub fn start(workspace: Workspace, options: NotionOptions) -> FakeNotion {
        let handler = Arc::new(NotionHandler::new(workspace, options));
        let (workspace, throttled, served) =
            (handler.workspace.clone(), handler.throttled.clone(), handler.served.clone());
        let api = FakeApi::start(move |r| handler.handle(r));
        FakeNotion { api, workspace, throttled, served }
    }

    /// The base URL including `/v1`: `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.api.url)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::http::parse_query;

    fn request(method: &str, target: &str, body: Json, auth: bool) -> FakeRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = vec![("Notion-Version".to_owned(), NOTION_VERSION.to_owned())];
        if auth {
            headers.push(("Authorization".into(), format!("Bearer {TOKEN}")));
        }
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        FakeRequest { method: method.into(), path: path.into(), query: parse_query(query), headers, body }
    }

    fn call(h: &NotionHandler, method: &str, target: &str, body: Json) -> (u16, Json) {
        let resp = h.handle(&request(method, target, body, true));
        (resp.status, serde_json::from_slice(&resp.body).unwrap())
    }

    fn spec() -> WorkspaceSpec {
        WorkspaceSpec {
            databases: 2,
            pages_per_database: 7,
            standalone_pages: 3,
            users: 2,
            deep_every: 2,
            with_block_type_page: true,
        }
    }

    fn ids(list: &Json) -> Vec<String> {
        list["results"].as_array().unwrap().iter().map(id_of).collect()
    }

    /// Every item of a list endpoint, following cursors.
    fn drain(h: &NotionHandler, method: &str, path: &str, size: usize, body: Json) -> (Vec<String>, usize) {
        let (mut out, mut cursor, mut calls) = (Vec::new(), None::<String>, 0);
        loop {
            let (status, v) = if method == "GET" {
                let c = cursor.as_ref().map(|c| format!("&start_cursor={c}")).unwrap_or_default();
                call(h, "GET", &format!("{path}?page_size={size}{c}"), Json::Null)
            } else {
                let mut b = body.clone();
                b["page_size"] = json!(size);
                if let Some(c) = &cursor {
                    b["start_cursor"] = json!(c);
                }
                call(h, "POST", path, b)
            };
            assert_eq!(status, 200, "{v}");
            calls += 1;
            assert!(v["results"].as_array().unwrap().len() <= size);
            out.extend(ids(&v));
            if v["has_more"] != true {
                assert!(v["next_cursor"].is_null());
                return (out, calls);
            }
            cursor = Some(v["next_cursor"].as_str().unwrap().to_owned());
        }
    }

    #[test]
    fn notion_children_paginate_in_order() {
        let h = NotionHandler::new(Workspace::generate(&spec()), NotionOptions::default());
        let page = h.workspace().block_type_page_id().unwrap();
        let fixture: Vec<Json> = serde_json::from_str(BLOCK_TYPES_JSON).unwrap();
        let top: Vec<String> = fixture.iter().map(id_of).collect();
        let (got, calls) = drain(&h, "GET", &format!("/v1/blocks/{page}/children"), 2, Json::Null);
        assert_eq!(got, top);
        assert_eq!(calls, top.len().div_ceil(2));
        // Children of a block; the "children" key is not served; ids without dashes work.
        let (status, v) = call(
            &h,
            "GET",
            &format!("/v1/blocks/{}/children", "b1000000-0000-4000-8000-000000000011".replace('-', "")),
            Json::Null,
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["type"], "block");
        assert_eq!(ids(&v), ["b1000000-0000-4000-8000-000000000012", "b1000000-0000-4000-8000-000000000013"]);
        assert!(v["results"].as_array().unwrap().iter().all(|b| b.get("children").is_none()));
        // A cursor is bound to its path; an unknown one is refused.
        let (_, first) = call(&h, "GET", &format!("/v1/blocks/{page}/children?page_size=2"), Json::Null);
        let cursor = first["next_cursor"].as_str().unwrap();
        let (status, v) = call(&h, "GET", &format!("/v1/users?start_cursor={cursor}"), Json::Null);
        assert_eq!((status, v["code"].as_str()), (400, Some("validation_error")));
        let (status, _) = call(&h, "GET", &format!("/v1/blocks/{page}/children?page_size=101"), Json::Null);
        assert_eq!(status, 400);
        // The synced copy whose original is not shared, and an unknown block.
        let ws = h.workspace().clone();
        let host = &ws.database_page_ids(&ws.database_ids()[0])[1];
        let synced =
            ws.block_ids_preorder(host, 0).into_iter().find(|b| ws.block(b).unwrap()["type"] == "synced_block");
        let (status, v) = call(&h, "GET", &format!("/v1/blocks/{}/children", synced.unwrap()), Json::Null);
        assert_eq!((status, v["code"].as_str()), (404, Some("object_not_found")));
        let (status, _) = call(&h, "GET", "/v1/blocks/b0000000-0000-4000-8000-999999999999/children", Json::Null);
        assert_eq!(status, 404);
        let (status, v) = call(&h, "GET", "/v1/nothing", Json::Null);
        assert_eq!((status, v["code"].as_str()), (404, Some("invalid_request_url")));
    }

    #[test]
    fn notion_query_filters_and_pages() {
        let h = NotionHandler::new(Workspace::generate(&spec()), NotionOptions::default());
        let ws = h.workspace().clone();
        let db0 = &ws.database_ids()[0];
        let sources = ws.data_source_ids();
        assert_eq!(sources.len(), 3, "database 0 has two data sources");
        let ds = &sources[0];
        let (all, _) = drain(&h, "POST", &format!("/v1/data_sources/{ds}/query"), 3, json!({}));
        assert_eq!(all.len(), 4, "the first half of 7");
        let (second, _) = drain(&h, "POST", &format!("/v1/data_sources/{}/query", sources[1]), 100, json!({}));
        assert_eq!([all.clone(), second].concat(), ws.database_page_ids(db0));
        let after = ws.page(&all[0]).unwrap()["last_edited_time"].as_str().unwrap().to_owned();
        let filter = json!({"filter": {"and": [
            {"timestamp": "last_edited_time", "last_edited_time": {"after": after}},
            {"property": "Status", "select": {"equals": "Done"}},
        ]}});
        let (got, _) = drain(&h, "POST", &format!("/v1/data_sources/{ds}/query"), 1, filter);
        // Pages 1..=3 are after page 0; of them only index 3 is "Done" (0 → Done, 3 → Done).
        assert_eq!(got, [all[3].clone()]);
        let or = json!({"filter": {"or": [
            {"property": "Priority", "number": {"greater_than": 3}},
            {"property": "Name", "title": {"contains": "0-1"}},
        ]}});
        let (got, _) = drain(&h, "POST", &format!("/v1/data_sources/{ds}/query"), 100, or);
        assert_eq!(got, [all[1].clone(), all[3].clone()], "priority 4 at index 3, title Task 0-1");
        for bad in [
            json!({"property": "Status", "number": {"equals": 1}}),
            json!({"nope": 1}),
            json!({"property": "Missing", "select": {"equals": "x"}}),
        ] {
            let (status, v) = call(&h, "POST", &format!("/v1/data_sources/{ds}/query"), json!({"filter": bad}));
            assert_eq!((status, v["code"].as_str()), (400, Some("validation_error")), "{bad}");
        }
        let sorted = json!({"sorts": [{"property": "Priority", "direction": "descending"}]});
        let (got, _) = drain(&h, "POST", &format!("/v1/data_sources/{ds}/query"), 100, sorted);
        assert_eq!(got, [all[3].clone(), all[2].clone(), all[1].clone(), all[0].clone()]);
        // Search: every page and data source, newest edit first; an edit moves a page to the front.
        let (found, _) = drain(&h, "POST", "/v1/search", 5, json!({}));
        assert_eq!(found.len(), ws.all_page_ids().len() + ws.data_sources.len());
        assert_eq!(found.last().unwrap(), &sources[1], "oldest; ties keep creation order");
        h.workspace().edit_page(&all[0], "2030-01-01T00:00:00.000Z");
        let (found, _) =
            drain(&h, "POST", "/v1/search", 100, json!({"filter": {"property": "object", "value": "page"}}));
        assert_eq!(found.len(), ws.all_page_ids().len());
        assert_eq!(found[0], all[0]);
        let (found, _) = drain(
            &h,
            "POST",
            "/v1/search",
            100,
            json!({"filter": {"property": "object", "value": "data_source"}, "sort": {"direction": "ascending", "timestamp": "last_edited_time"}}),
        );
        assert_eq!(found, [sources.clone(), vec![INLINE_DATA_SOURCE_ID.to_owned()]].concat());
        let (status, _) =
            call(&h, "POST", "/v1/search", json!({"filter": {"property": "object", "value": "database"}}));
        assert_eq!(status, 400);
    }

    #[test]
    fn notion_auth_version_and_throttling() {
        let h = NotionHandler::new(
            Workspace::generate(&spec()),
            NotionOptions { throttle_every: 3, retry_after_seconds: 7, ..Default::default() },
        );
        let resp = h.handle(&request("GET", "/v1/users", Json::Null, false));
        let v: Json = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!((resp.status, v["code"].as_str(), v["object"].as_str()), (401, Some("unauthorized"), Some("error")));
        let mut r = request("GET", "/v1/users", Json::Null, true);
        r.headers.retain(|(k, _)| k != "Notion-Version");
        let resp = h.handle(&r);
        assert_eq!(resp.status, 400);
        let resp = h.handle(&request("GET", "/v1/users", Json::Null, true));
        assert_eq!(resp.status, 429);
        assert!(resp.headers.contains(&("Retry-After".into(), "7".into())));
        let (status, v) = call(&h, "GET", "/v1/users?page_size=2", Json::Null);
        assert_eq!((status, v["results"].as_array().unwrap().len(), v["type"].as_str()), (200, 2, Some("user")));
        assert_eq!(h.throttled.load(Ordering::SeqCst), 1);
        assert_eq!(h.served.load(Ordering::SeqCst), 1);
        // The token bucket: a burst of 3, then 429.
        let h = NotionHandler::new(
            Workspace::generate(&spec()),
            NotionOptions { rate_per_second: Some(0.5), ..Default::default() },
        );
        let statuses: Vec<u16> =
            (0..5).map(|_| h.handle(&request("GET", "/v1/users", Json::Null, true)).status).collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
    }

    #[test]
    fn notion_deep_trees_and_the_inline_database() {
        let ws = Workspace::generate(&spec());
        assert_eq!(Workspace::generate(&spec()).all_page_ids(), ws.all_page_ids(), "deterministic");
        let deep = &ws.database_page_ids(&ws.database_ids()[0])[0];
        let all = ws.block_ids_preorder(deep, 3);
        assert_eq!(all.len(), 8);
        let depth = |id: &str| {
            let mut d = 0;
            let mut b = ws.block(id).unwrap();
            while let Some(p) = b["parent"]["block_id"].as_str() {
                d += 1;
                b = ws.block(p).unwrap();
            }
            d
        };
        assert_eq!(all.iter().map(|b| depth(b)).collect::<Vec<_>>(), [0, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(ws.block_ids_preorder(deep, 2).len(), 7);
        assert_eq!(ws.block_ids_preorder(deep, 0).len(), 3);
        let flat = &ws.database_page_ids(&ws.database_ids()[0])[3];
        assert_eq!(ws.block_ids_preorder(flat, 3).len(), 3);
        // Page 1 of database 0 holds the inline database (not listed) and the unshared synced copy.
        let host = &ws.database_page_ids(&ws.database_ids()[0])[1];
        let top = ws.block_ids_preorder(host, 3);
        assert_eq!(ws.block(&top[3]).unwrap()["type"], "child_database");
        assert_eq!(top[3], INLINE_DATABASE_ID);
        assert_eq!(ws.inline_database_id().as_deref(), Some(INLINE_DATABASE_ID));
        assert!(!ws.database_ids().contains(&top[3]));
        assert_eq!(ws.database_page_ids(INLINE_DATABASE_ID).len(), 2);
        assert_eq!(ws.all_page_ids().len(), 2 * 7 + 3 + 1 + 2);
        assert_eq!(ws.standalone_page_ids().len(), 4);
        assert_eq!(ws.user_ids().len(), 3);
        let page = ws.page(host).unwrap();
        assert_eq!(page["properties"]["Status"]["select"]["name"], "In progress");
        assert_eq!(page["created_time"], "2025-01-01T00:01:00.000Z");
        assert_eq!(page["last_edited_time"], "2025-01-01T00:01:30.000Z");
        assert_eq!(page["parent"]["type"], "data_source_id");
        let mut ws = ws;
        ws.edit_page(host, "2025-06-01T12:00:00.000Z");
        assert_eq!(ws.block(&top[0]).unwrap()["last_edited_time"], "2025-06-01T12:00:00.000Z");
        assert_eq!(parse_time("2025-01-01T01:00:00+01:00"), parse_time("2025-01-01"));
        assert_eq!(format_ms(parse_time("2024-02-29T23:59:59.5Z").unwrap()), "2024-02-29T23:59:59.500Z");
    }

    #[test]
    fn notion_block_type_fixture_has_every_type() {
        fn walk(blocks: &[Json], depth: usize, seen: &mut Vec<(String, usize)>) {
            for b in blocks {
                assert_eq!(b["object"], "block");
                let kind = b["type"].as_str().unwrap();
                assert!(b.get(kind).is_some(), "{kind} has its content");
                let kids = b.get("children").and_then(Json::as_array).cloned().unwrap_or_default();
                assert_eq!(b["has_children"], !kids.is_empty(), "{kind}");
                seen.push((kind.to_owned(), depth));
                walk(&kids, depth + 1, seen);
            }
        }
        let blocks: Vec<Json> = serde_json::from_str(BLOCK_TYPES_JSON).unwrap();
        let mut seen = Vec::new();
        walk(&blocks, 0, &mut seen);
        let types = "paragraph heading_1 heading_2 heading_3 bulleted_list_item numbered_list_item to_do toggle quote \
             callout code equation divider table table_row image file video pdf audio bookmark embed link_preview \
             child_page child_database link_to_page table_of_contents breadcrumb column_list column synced_block \
             template made_up_type unsupported";
        for t in types.split_whitespace() {
            assert!(seen.iter().any(|(k, _)| k == t), "no {t} block");
        }
        assert_eq!(seen.iter().map(|(_, d)| *d).max(), Some(3), "the tree reaches depth 4");
        let rich = &blocks[1]["paragraph"]["rich_text"];
        let has = |f: &dyn Fn(&Json) -> bool| rich.as_array().unwrap().iter().any(f);
        for a in ["bold", "italic", "strikethrough", "code"] {
            assert!(has(&|t| t["annotations"][a] == true), "{a}");
        }
        assert!(has(&|t| t["text"]["link"]["url"].is_string() && t["href"].is_string()));
        assert!(has(&|t| t["mention"]["type"] == "user"));
        assert!(has(&|t| t["mention"]["type"] == "page" && t["href"].is_string()));
        assert!(has(&|t| t["type"] == "equation"));
        // Served: the stand-in strips "children" and every block is reachable.
        let ws = Workspace::generate(&WorkspaceSpec { with_block_type_page: true, ..Default::default() });
        assert_eq!(ws.block_ids_preorder(BLOCK_TYPE_PAGE_ID, 10).len(), seen.len());
    }

    #[test]
    fn notion_serves_over_http() {
        let notion = FakeNotion::start(Workspace::generate(&spec()), NotionOptions::default());
        assert!(notion.url().ends_with("/v1"));
        let addr = notion.api.url.trim_start_matches("http://").to_owned();
        let get = |auth: &str| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(s, "GET /v1/users HTTP/1.1\r\nHost: x\r\n{auth}Notion-Version: {NOTION_VERSION}\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            // The server keeps the connection open: read until the body is complete.
            let mut buf = [0; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
                if let Some((head, body)) = out.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap();
                    if body.len() >= len || n == 0 {
                        return out;
                    }
                }
            }
        };
        assert!(get("").starts_with("HTTP/1.1 401"));
        let ok = get(&format!("Authorization: Bearer {TOKEN}\r\n"));
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("\"object\":\"list\""));
        assert_eq!(notion.served.load(Ordering::SeqCst), 1);
        assert_eq!(notion.api.hits("/v1/users"), 2);
    }
}
