//! `gsheets` source: bizon's Google Sheets connector (stream `worksheet`), over the Sheets API v4.
//!
//! The first row of the worksheet is the header: its cells are the records' keys (with
//! `convert_column_names_to_sql_format`, bizon's conversion: `_` before every capital but the
//! first, lower case, spaces to `_`). Duplicate headers are an error naming them (bizon's check);
//! `column_names` keeps only those columns, each of which must be in the header. Values are what
//! gspread's `get_all_records` gives bizon: the formatted text of each cell, numbers as numbers
//! (`"12"` → 12, `"1.5"` → 1.5), empty cells `""`, a row shorter than the header padded with `""`;
//! an empty row between filled ones is a record of `""` values, as bizon's.
//!
//! Stronger than bizon's: the rows are read in pages of `rows_per_page` (a range `N:M` per
//! request) instead of the whole sheet at once, the next row is the checkpointed pagination, so a
//! killed run resumes at the first uncommitted page; record ids are the row numbers (stable
//! across runs; bizon mints a random uuid per run). Incremental (`cursor_field`: a column) keeps
//! the rows whose value is above the last run's watermark. Sheets' 429 (with `Retry-After`) and
//! 5xx are retried.

use std::sync::Arc;

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::{SourceCommon, SyncMode};
use bizon_core::record::cursor_cmp;
use bizon_core::{Error, Json, Page, ReadContext, Result, Source};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
use crate::google::{self, auth::Credentials};
use crate::http::client::{HttpClient, Request};
use crate::http::settings::HttpSettings;
use crate::http::stream::to_page;
use crate::sources::http_keys;

#[cfg(test)]
mod tests;

/// bizon's stream.
pub const STREAMS: &[&str] = &["worksheet"];

/// Google's Sheets API endpoint.
pub const BASE_URL: &str = "https://sheets.googleapis.com";

/// The scope gspread asks for with bizon (read-only Sheets and Drive).
const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";

fn yes() -> bool {
    true
}
fn rows_per_page() -> u32 {
    1000
}

/// `source:` keys of `gsheets` (beside the common ones).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GsheetsConfig {
    /// The spreadsheet's URL (`https://docs.google.com/spreadsheets/d/<id>/…`) or its id.
    pub spreadsheet_url: String,
    pub worksheet_name: String,
    /// A service-account key (its JSON or the path of its file); empty: Application Default
    /// Credentials.
    #[serde(default)]
    pub service_account_key: String,
    /// Only these columns (each must be in the header); empty: all.
    #[serde(default)]
    pub column_names: Vec<String>,
    #[serde(default = "yes")]
    pub convert_column_names_to_sql_format: bool,
    /// Rows per request (bizon reads the whole sheet in one).
    #[serde(default = "rows_per_page")]
    pub rows_per_page: u32,
    /// The Sheets API root (default Google's; tests override it).
    #[serde(default)]
    pub base_url: Option<String>,
}

impl SourceSpec for GsheetsConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        if spreadsheet_id(&self.spreadsheet_url).is_none() {
            return Err(ConfigError::Invalid {
                key: "spreadsheet_url",
                message: format!(
                    "`{}` is not a spreadsheet URL (https://docs.google.com/spreadsheets/d/<id>/…) or id",
                    self.spreadsheet_url
                ),
            });
        }
        if self.worksheet_name.trim().is_empty() {
            return Err(ConfigError::Empty { key: "worksheet_name" });
        }
        if !(1..=100_000).contains(&self.rows_per_page) {
            return Err(ConfigError::Invalid {
                key: "rows_per_page",
                message: format!("{} is not between 1 and 100,000", self.rows_per_page),
            });
        }
        Ok(())
    }

    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        crate::http::boxed(GsheetsSource::new(self, common))
    }
}

/// The spreadsheet id of a URL (or an id as it is).
pub fn spreadsheet_id(url: &str) -> Option<String> {
    let url = url.trim();
    let id = match url.split_once("/spreadsheets/d/") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or_default(),
        None if !url.contains('/') => url,
        None => return None,
    };
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')).then(|| id.to_owned())
}

/// bizon's SQL-style column name: `_` before every capital letter but the first character,
/// lower case, spaces to `_` (`"First Name"` → `"first__name"`, `"createdAt"` → `"created_at"`).
pub fn sql_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c);
    }
    out.to_lowercase().replace(' ', "_")
}

/// A cell as gspread's `numericise` makes it: an integer or a float when the text is one, else
/// the text.
pub fn numericise(text: &str) -> Json {
    let t = text.trim();
    if t.is_empty() || t.contains('_') {
        return Json::String(text.to_owned());
    }
    if let Ok(i) = t.strip_prefix('+').unwrap_or(t).parse::<i64>() {
        if t.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') {
            return json!(i);
        }
    }
    let numeric_text = t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() && numeric_text => json!(f),
        _ => Json::String(text.to_owned()),
    }
}

/// The worksheet stream.
pub struct GsheetsSource {
    client: HttpClient,
    base: String,
    id: String,
    worksheet: String,
    columns: Vec<String>,
    sql_names: bool,
    rows_per_page: u64,
    /// The header, read once per run.
    header: Option<Vec<(String, usize)>>,
}

impl GsheetsSource {
    pub fn new(config: &GsheetsConfig, common: &SourceCommon) -> Result<Self> {
        http_keys::check_stream("gsheets", STREAMS, common)?;
        let credentials = Credentials::from_config(Some(&config.service_account_key))?;
        Ok(GsheetsSource {
            client: google::auth::client(credentials, SCOPE, HttpSettings::default()),
            base: config.base_url.as_deref().unwrap_or(BASE_URL).trim_end_matches('/').to_owned(),
            id: spreadsheet_id(&config.spreadsheet_url)
                .ok_or_else(|| Error::config("source.spreadsheet_url is not a spreadsheet URL"))?,
            worksheet: config.worksheet_name.clone(),
            columns: config.column_names.clone(),
            sql_names: config.convert_column_names_to_sql_format,
            rows_per_page: u64::from(config.rows_per_page),
            header: None,
        })
    }

    /// `'Sheet name'!range`, quoted as A1 notation wants.
    fn a1(&self, range: &str) -> String {
        format!("'{}'!{range}", self.worksheet.replace('\'', "''"))
    }

    /// Rows of a range, as the API gives them (formatted text; trailing empty cells and rows
    /// left out).
    fn values(&self, range: &str) -> Result<Vec<Vec<String>>> {
        let url = format!("{}/v4/spreadsheets/{}/values/{}", self.base, self.id, google::path_segment(&self.a1(range)));
        let r = self.client.send_accepting(&Request::get(url).query("majorDimension", "ROWS"), &[400, 404])?;
        if r.status != 200 {
            let message = r
                .json()
                .ok()
                .and_then(|j| j.pointer("/error/message").and_then(Json::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("status {}", r.status));
            return Err(Error::config(format!(
                "spreadsheet {} worksheet `{}`: {message} (check source.spreadsheet_url and source.worksheet_name)",
                self.id, self.worksheet
            )));
        }
        let body = r.json()?;
        Ok(body
            .get("values")
            .and_then(Json::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row.as_array()
                            .map(|cells| {
                                cells.iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)).collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The worksheet's grid height (rows, empty ones included).
    fn row_count(&self) -> Result<u64> {
        let url = format!("{}/v4/spreadsheets/{}", self.base, self.id);
        let r = self.client.send(&Request::get(url).query("fields", "sheets.properties"))?;
        let body = r.json()?;
        let sheets = body.get("sheets").and_then(Json::as_array).cloned().unwrap_or_default();
        let titles: Vec<String> = sheets
            .iter()
            .filter_map(|s| s.pointer("/properties/title").and_then(Json::as_str).map(str::to_owned))
            .collect();
        let sheet = sheets
            .iter()
            .find(|s| s.pointer("/properties/title").and_then(Json::as_str) == Some(self.worksheet.as_str()))
            .ok_or_else(|| {
                Error::config(format!(
                    "spreadsheet {} has no worksheet `{}` (source.worksheet_name); it has: {}",
                    self.id,
                    self.worksheet,
                    titles.join(", ")
                ))
            })?;
        Ok(sheet.pointer("/properties/gridProperties/rowCount").and_then(Json::as_u64).unwrap_or(0))
    }

    /// The header row: the keys, and for each the index of its cell (only `column_names`' with
    /// them set).
    fn header(&self) -> Result<Vec<(String, usize)>> {
        let header = self.values("1:1")?.into_iter().next().unwrap_or_default();
        let names: &[String] = if self.columns.is_empty() { &header } else { &self.columns };
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for n in names {
            *seen.entry(n.as_str()).or_default() += 1;
        }
        let dups: Vec<&str> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
        if !dups.is_empty() {
            return Err(Error::config(format!(
                "worksheet `{}`: column names are not unique: {} (columns: {}); rename them in the sheet or pick \
                 some with source.column_names",
                self.worksheet,
                dups.join(", "),
                names.join(", ")
            )));
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let at = header.iter().position(|h| h == n).ok_or_else(|| {
                Error::config(format!(
                    "worksheet `{}`: column `{n}` (source.column_names) is not in the header: {}",
                    self.worksheet,
                    header.join(", ")
                ))
            })?;
            out.push((if self.sql_names { sql_name(n) } else { n.clone() }, at));
        }
        Ok(out)
    }
}

impl Source for GsheetsSource {
    fn get(&mut self, pagination: &Json, ctx: &ReadContext) -> Result<Page> {
        // The pagination: the next row to read and the grid height seen at the start.
        let (row, rows) =
            match (pagination.get("row").and_then(Json::as_u64), pagination.get("rows").and_then(Json::as_u64)) {
                (Some(r), Some(n)) => (r, n),
                _ => (2, self.row_count()?),
            };
        if self.header.is_none() {
            self.header = Some(self.header()?);
        }
        let header = self.header.as_deref().unwrap_or_default();
        let last = (row + self.rows_per_page - 1).min(rows.max(row));
        let values = if row <= rows { self.values(&format!("{row}:{last}"))? } else { Vec::new() };
        let cursor = ctx.cursor_field.as_deref().filter(|_| ctx.sync_mode == SyncMode::Incremental);
        let mut records = Vec::with_capacity(values.len());
        for (i, cells) in values.iter().enumerate() {
            let record: serde_json::Map<String, Json> = header
                .iter()
                .map(|(name, at)| (name.clone(), numericise(cells.get(*at).map_or("", String::as_str))))
                .collect();
            if let (Some(field), Some(w)) = (cursor, ctx.watermark.as_ref()) {
                match record.get(field) {
                    Some(v) if cursor_cmp(v, w) == std::cmp::Ordering::Greater => {}
                    Some(_) => continue,
                    None => {
                        return Err(Error::config(format!(
                            "cursor_field `{field}` is not a column of worksheet `{}` (columns: {})",
                            self.worksheet,
                            header.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                        )))
                    }
                }
            }
            records.push(((row + i as u64).to_string(), Json::Object(record)));
        }
        let next = if last >= rows { json!({}) } else { json!({"row": last + 1, "rows": rows}) };
        Ok(to_page(records, next))
    }
}

/// The `gsheets` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "gsheets",
    description: "Google Sheets worksheet (Sheets API v4): header row as keys, pages of rows, row numbers as ids",
    streams: STREAMS,
    modes: &[SyncMode::FullRefresh, SyncMode::Incremental],
    capabilities: SourceCapabilities { own_position: false, dead_letters: false, network: true },
    keys: struct_fields::<GsheetsConfig>,
    schema: <GsheetsConfig as schemars::JsonSchema>::json_schema,
    parse,
};

fn parse(node: &Node) -> std::result::Result<Arc<dyn SourceSpec>, yaml::Error> {
    parse_source::<GsheetsConfig>(node)
}
