//! Notion blocks as Markdown, one block at a time (the `blocks_markdown` streams' `markdown`).
//!
//! bizon's rendering for every type bizon renders (so records compare equal after a move), with
//! these differences, each documented in docs/connectors/source-notion.md:
//! - a type bizon does not know renders as an HTML comment naming it
//!   (`<!-- unsupported Notion block type: x -->`, bizon: `[Unsupported block type: x]`), and
//!   never fails the run;
//! - `audio` renders as `[Audio](url)` (bizon: unsupported);
//! - `child_page` / `child_database` are links to the page (`[Page: Title](https://www.notion.so/<id>)`;
//!   bizon writes `[Page: Title]` with no target);
//! - an inline equation in rich text is wrapped in `$…$` (bizon writes its bare expression).

use serde_json::Value as Json;

/// Where a child page or database lives on notion.so (its id without dashes).
const NOTION_WEB: &str = "https://www.notion.so/";

fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key).and_then(Json::as_str).unwrap_or_default()
}

fn items<'a>(v: &'a Json, key: &str) -> &'a [Json] {
    v.get(key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice)
}

/// A rich-text array as Markdown: each item's `plain_text` with its annotations (code, bold,
/// italic, strikethrough, in that order, as bizon) and its link (`href`: links and mentions).
pub fn rich_text(array: &[Json]) -> String {
    let mut out = String::new();
    for item in array {
        let mut text = s(item, "plain_text").to_owned();
        if s(item, "type") == "equation" {
            text = format!("${text}$");
        }
        let on = |a: &str| item.pointer(&format!("/annotations/{a}")).and_then(Json::as_bool).unwrap_or(false);
        if on("code") {
            text = format!("`{text}`");
        }
        if on("bold") {
            text = format!("**{text}**");
        }
        if on("italic") {
            text = format!("*{text}*");
        }
        if on("strikethrough") {
            text = format!("~~{text}~~");
        }
        if let Some(href) = item.get("href").and_then(Json::as_str).filter(|h| !h.is_empty()) {
            text = format!("[{text}]({href})");
        }
        out.push_str(&text);
    }
    out
}

/// The URL of a file object (`external.url` or `file.url`).
fn file_url(content: &Json) -> &str {
    content
        .pointer("/external/url")
        .and_then(Json::as_str)
        .filter(|u| !u.is_empty())
        .or_else(|| content.pointer("/file/url").and_then(Json::as_str))
        .unwrap_or_default()
}

/// One block as Markdown (its children are records of their own).
pub fn block(block: &Json) -> String {
    let kind = s(block, "type");
    let empty = Json::Null;
    let content = block.get(kind).filter(|c| !c.is_null()).unwrap_or(&empty);
    let text = |key: &str| rich_text(items(content, key));
    match kind {
        "paragraph" => text("rich_text"),
        "heading_1" => format!("# {}", text("rich_text")),
        "heading_2" => format!("## {}", text("rich_text")),
        "heading_3" => format!("### {}", text("rich_text")),
        "bulleted_list_item" => format!("- {}", text("rich_text")),
        "numbered_list_item" => format!("1. {}", text("rich_text")),
        "to_do" => {
            let checked = content.get("checked").and_then(Json::as_bool).unwrap_or(false);
            format!("- [{}] {}", if checked { "x" } else { " " }, text("rich_text"))
        }
        "quote" => format!("> {}", text("rich_text")),
        "callout" => {
            let emoji = content.pointer("/icon/emoji").and_then(Json::as_str).unwrap_or("💡");
            format!("> {emoji} {}", text("rich_text"))
        }
        "code" => format!("```{}\n{}\n```", s(content, "language"), text("rich_text")),
        "equation" => format!("$$ {} $$", s(content, "expression")),
        "divider" => "---".into(),
        "toggle" => format!("<details><summary>{}</summary></details>", text("rich_text")),
        "image" => format!("![{}]({})", text("caption"), file_url(content)),
        "video" => format!("[Video]({})", file_url(content)),
        "audio" => format!("[Audio]({})", file_url(content)),
        "pdf" => format!("[PDF]({})", file_url(content)),
        "file" => {
            let caption = text("caption");
            format!("[{}]({})", if caption.is_empty() { "File" } else { &caption }, file_url(content))
        }
        "bookmark" => {
            let url = s(content, "url");
            let caption = text("caption");
            format!("[{}]({url})", if caption.is_empty() { url } else { &caption })
        }
        "embed" => format!("[Embed]({})", s(content, "url")),
        "link_preview" => format!("[Link Preview]({})", s(content, "url")),
        "table" => "[Table - see child blocks for rows]".into(),
        "table_row" => {
            let cells: Vec<String> = items(content, "cells")
                .iter()
                .map(|c| rich_text(c.as_array().map_or(&[][..], Vec::as_slice)))
                .collect();
            format!("| {} |", cells.join(" | "))
        }
        "child_page" | "child_database" => {
            let label = if kind == "child_page" { "Page" } else { "Database" };
            let title = content.get("title").and_then(Json::as_str).unwrap_or("Untitled");
            format!("[{label}: {title}]({NOTION_WEB}{})", s(block, "id").replace('-', ""))
        }
        "link_to_page" => {
            let id = content
                .get("page_id")
                .or_else(|| content.get("database_id"))
                .and_then(Json::as_str)
                .unwrap_or_default();
            format!("[Link to page: {id}]")
        }
        "table_of_contents" => "[Table of Contents]".into(),
        "breadcrumb" => "[Breadcrumb]".into(),
        "synced_block" => "[Synced Block]".into(),
        "template" => "[Template]".into(),
        "column_list" | "column" => String::new(),
        other => format!("<!-- unsupported Notion block type: {} -->", other.replace("--", "- -")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(text: &str, annotations: Json, href: Option<&str>) -> Json {
        json!({"type": "text", "plain_text": text, "annotations": annotations, "href": href})
    }

    #[test]
    fn annotations_nest_as_bizons_and_links_wrap_them() {
        let a = json!({"bold": true, "italic": true, "strikethrough": true, "code": true});
        assert_eq!(rich_text(&[rt("x", a, Some("https://e.x"))]), "[~~***`x`***~~](https://e.x)");
        let mention = json!({"type": "mention", "plain_text": "@Ada", "href": null, "annotations": {}});
        let eq = json!({"type": "equation", "plain_text": "e=mc^2", "annotations": {}});
        assert_eq!(rich_text(&[mention, rt(" & ", json!({}), None), eq]), "@Ada & $e=mc^2$");
    }

    #[test]
    fn an_unknown_or_empty_block_never_fails() {
        assert_eq!(block(&json!({"type": "made_up"})), "<!-- unsupported Notion block type: made_up -->");
        assert_eq!(block(&json!({"type": "paragraph", "paragraph": null})), "");
        assert_eq!(block(&json!({})), "<!-- unsupported Notion block type:  -->");
        assert_eq!(block(&json!({"type": "a--b"})), "<!-- unsupported Notion block type: a- -b -->");
    }
}
