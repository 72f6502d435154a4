//! `periscope` charts: the dashboard ids come first (`/login_state/dashboards`); each page reads
//! the widgets of ten of them, fetched concurrently, each in windows of 50 fluid rows
//! (`minimum_dashboard_fluid_row` 0, 50, … until a window has no `Widget`). Widgets of
//! `database_id` are kept, each with `raw_text`: the text of its `TextBox` (`content_id`) as
//! bizon extracts it. The pagination is bizon's `{"dashboard_ids": [the ids not read yet]}`.
//!
//! bizon's bugs fixed here: no dashboards returned a tuple (a crash), and a failing window was
//! retried up to 1000 times without a pause (any exception, even a missing `Widget`); here the
//! client's bounded retries apply and then the read fails with the request named.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde_json::json;
use tracing::{debug, warn};

use crate::http::stream::{fetch, to_page};
use crate::http::{Endpoint, HttpClient, Request};

/// Charts as (id, record).
type Records = Vec<(String, Json)>;

/// Dashboards per page (bizon's `BATCH_SIZE`).
pub const BATCH: usize = 10;
/// Rows per window of `remaining_widgets`.
const WINDOW: u64 = 50;
/// Windows read per dashboard at most (bizon's `MAXIMUM_ITERATION`).
const MAX_WINDOWS: u64 = 1000;

pub struct ChartsSource {
    client: Arc<HttpClient>,
    dashboards: Endpoint,
    /// `{base}/welcome/remaining_widgets`
    widgets_url: String,
    client_site_id: i64,
    database_id: String,
}

impl ChartsSource {
    pub fn new(
        client: Arc<HttpClient>,
        dashboards: Endpoint,
        widgets_url: String,
        client_site_id: i64,
        database_id: i64,
    ) -> Self {
        ChartsSource { client, dashboards, widgets_url, client_site_id, database_id: database_id.to_string() }
    }

    /// The charts of one dashboard, window by window.
    fn charts_of(&self, dashboard: &str) -> Result<Records> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for k in 0..MAX_WINDOWS {
            let req = Request::get(&self.widgets_url)
                .query("current_dashboard", dashboard)
                .query("minimum_dashboard_fluid_row", k * WINDOW)
                .query("fluid_column_for_last_widget_in_row", 0)
                .query("client_site_id", self.client_site_id);
            let mut body = self.client.send(&req)?.json()?;
            let widgets = match body.get_mut("Widget").map(Json::take) {
                Some(Json::Array(a)) => a,
                _ => Vec::new(),
            };
            if widgets.is_empty() {
                debug!(dashboard, windows = k, charts = out.len(), "dashboard read");
                return Ok(out);
            }
            let textboxes = match body.get("TextBox") {
                Some(Json::Array(a)) => a.as_slice(),
                _ => &[],
            };
            for mut chart in widgets {
                if text(chart.get("database_id")) != self.database_id {
                    continue;
                }
                let key = chart.get("id").cloned().unwrap_or(Json::Null).to_string();
                if !seen.insert(key) {
                    continue;
                }
                let raw_text = match chart.get("content_id").filter(|c| truthy(c)) {
                    None => Json::Null,
                    Some(content) => match textboxes.iter().find(|t| t.get("id") == Some(content)) {
                        Some(tb) => Json::String(textbox_text(tb)),
                        None => {
                            warn!(dashboard, chart = %text(chart.get("id")), content_id = %content, "text box of a chart not found");
                            Json::Null
                        }
                    },
                };
                if let Json::Object(m) = &mut chart {
                    m.insert("raw_text".into(), raw_text);
                }
                let id = match chart.get("id") {
                    Some(v) if !v.is_null() => text(Some(v)),
                    _ => format!("{dashboard}_{}", out.len()),
                };
                out.push((id, chart));
            }
        }
        Err(Error::permanent(format!(
            "periscope: dashboard `{dashboard}` still had widgets after {MAX_WINDOWS} windows of {WINDOW} rows"
        )))
    }

    /// The charts of a batch of dashboards, `concurrency` at a time, in the batch's order.
    fn batch(&self, ids: &[String]) -> Result<Records> {
        let slots: Vec<Mutex<Option<Result<Records>>>> = ids.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = self.client.settings().concurrency.min(ids.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    let r = self.charts_of(id);
                    let failed = r.is_err();
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    if failed {
                        // Stop taking new dashboards: the page fails anyway.
                        next.store(ids.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let mut records = Vec::new();
        for slot in slots {
            // Slots left empty come after a failed one (workers stop taking dashboards).
            if let Some(r) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
                records.extend(r?);
            }
        }
        Ok(records)
    }
}

impl Source for ChartsSource {
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        let ids: Vec<String> = match pagination.get("dashboard_ids") {
            Some(Json::Array(a)) => a.iter().map(|v| text(Some(v))).collect(),
            Some(other) => {
                return Err(Error::internal(format!(
                    "periscope: unexpected `dashboard_ids` in the pagination: {other}"
                )))
            }
            None => {
                let dashboards = fetch(&self.client, &self.dashboards, &Json::Null, None, &[])?;
                dashboards.records.into_iter().map(|(id, _)| id).collect()
            }
        };
        if ids.is_empty() {
            warn!("periscope: no dashboard found");
            return Ok(to_page(Vec::new(), json!({})));
        }
        let (batch, rest) = ids.split_at(ids.len().min(BATCH));
        let records = self.batch(batch)?;
        let next = if rest.is_empty() { json!({}) } else { json!({ "dashboard_ids": rest }) };
        Ok(to_page(records, next))
    }
}

/// Python's `str()` of a JSON value as bizon compares ids: strings as they are, numbers as
/// written, `null` as `None`.
fn text(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => "None".into(),
        Some(Json::Bool(b)) => if *b { "True" } else { "False" }.into(),
        Some(other) => other.to_string(),
    }
}

/// Python truthiness.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(m) => !m.is_empty(),
    }
}

/// The text of a text box as bizon's `_extract_raw_text_from_textbox` gives it: the Slate
/// document's text leaves (BOM removed, trimmed) and links as `[text](url)`, joined by spaces.
pub fn textbox_text(textbox: &Json) -> String {
    let Some(data) = textbox.get("text_data").filter(|d| truthy(d)) else { return String::new() };
    let mut parts = Vec::new();
    if let Some(Json::Array(nodes)) = data.pointer("/document/nodes") {
        walk(nodes, &mut parts);
    }
    parts.join(" ")
}

fn clean(leaf: &Json) -> String {
    leaf.get("text").and_then(Json::as_str).unwrap_or("").replace('\u{feff}', "").trim().to_owned()
}

fn leaves(node: &Json) -> &[Json] {
    match node.get("leaves") {
        Some(Json::Array(a)) => a,
        _ => &[],
    }
}

fn walk(nodes: &[Json], parts: &mut Vec<String>) {
    for node in nodes {
        let url = node.get("data").and_then(|d| d.get("url"));
        if node.get("object").and_then(Json::as_str) == Some("text") {
            parts.extend(leaves(node).iter().map(clean));
        } else if let (Some("link"), Some(url)) = (node.get("type").and_then(Json::as_str), url) {
            // bizon assumes one text node in a link.
            let first = node.pointer("/nodes/0").unwrap_or(&Json::Null);
            let label: String = leaves(first).iter().map(clean).collect();
            parts.push(format!("[{label}]({})", text(Some(url))));
        } else if let Some(Json::Array(children)) = node.get("nodes") {
            walk(children, parts);
        }
    }
}
