//! A page's body read in one pass: the records under the selector stay JSON text (no tree is built
//! for them; they reach the page as the server wrote them, whitespace outside strings removed),
//! and the rest of the body becomes a tree for the paginator. Building a tree for every record and
//! writing it out again was most of a REST source's CPU per record.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use bizon_core::Json;

/// A body split at a JSON pointer.
pub struct Split<'a> {
    /// The body with the value at the pointer replaced by `null`.
    pub rest: Json,
    /// The value at the pointer (`None`: nothing there).
    pub selected: Option<Selected<'a>>,
}

/// The value at the pointer: an array's items as text, anything else as a tree.
#[derive(Debug)]
pub enum Selected<'a> {
    Items(Vec<&'a RawValue>),
    Value(Json),
}

/// Split `body` at `pointer` (`/a/0/b`, RFC 6901). An empty pointer selects the whole body.
pub fn split<'a>(body: &'a [u8], pointer: &str) -> serde_json::Result<Split<'a>> {
    let path: Vec<String> = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    let (rest, selected) = At { path: &path }.deserialize(&mut de)?;
    de.end()?;
    Ok(Split { rest, selected })
}

/// The JSON text of a record's (a JSON object's) top-level field `name`, as the server wrote it;
/// `None`: not an object, or no such field.
pub fn field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    if !record.starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(record);
    Some(de.deserialize_map(FieldVisitor { name }).ok().flatten()?.get())
}

/// A value's JSON text as an id or URL part: a string's content, anything else as written,
/// compacted (a number keeps every digit: past 2^64 it is not rounded through a float).
pub fn text_of(raw: &str) -> String {
    if raw.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(raw) {
            return s;
        }
    }
    let mut text = String::with_capacity(raw.len());
    compact_into(&mut text, raw);
    text
}

/// Append `raw` (valid JSON) to `buf` without whitespace outside strings (serde_json's compact
/// form), copying the runs between such whitespace whole (they end at ASCII bytes: char boundaries).
pub fn compact_into(buf: &mut String, raw: &str) {
    let b = raw.as_bytes();
    let (mut i, mut run) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                // to the closing quote, stepping over escapes
                while let Some(k) = b.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
                    i += k + 1;
                    if b[i - 1] == b'"' {
                        break;
                    }
                    i += 1;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                buf.push_str(&raw[run..i]);
                i += 1;
                run = i;
            }
            _ => i += 1,
        }
    }
    buf.push_str(&raw[run..b.len().min(i)]);
}

/// Walks the remaining `path`; at its end keeps the value's text.
struct At<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = (Json, Option<Selected<'de>>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => Ok((Json::Null, Some(d.deserialize_any(Leaf)?))),
            Some((head, tail)) => d.deserialize_any(Walk { head, tail }),
        }
    }
}

/// The value at the pointer: an array's items kept as text, anything else built.
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Selected<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<&RawValue>()? {
            items.push(item);
        }
        Ok(Selected::Items(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map)).map(Selected::Value)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Selected::Value(Json::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Selected::Value(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Selected::Value(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Selected::Value(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Selected::Value(Json::String(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Selected::Value(Json::Null))
    }
}

/// One step of the walk: a mapping's key `head`, or an array's index `head`; anything else is
/// kept whole.
struct Walk<'p> {
    head: &'p str,
    tail: &'p [String],
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = (Json, Option<Selected<'de>>);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut out, mut found) = (serde_json::Map::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            let value = if found.is_none() && key == self.head {
                let (value, selected) = map.next_value_seed(At { path: self.tail })?;
                found = selected;
                value
            } else {
                map.next_value::<Json>()?
            };
            out.insert(key, value);
        }
        Ok((Json::Object(out), found))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let index = self.head.parse::<usize>().ok();
        let (mut out, mut found) = (Vec::new(), None);
        loop {
            let item = if Some(out.len()) == index {
                seq.next_element_seed(At { path: self.tail })?.map(|(value, selected)| {
                    found = selected;
                    value
                })
            } else {
                seq.next_element::<Json>()?
            };
            match item {
                Some(value) => out.push(value),
                None => return Ok((Json::Array(out), found)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok((Json::Bool(v), None))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok((v.into(), None))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok((v.into(), None))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok((serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number), None))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((Json::String(v.to_owned()), None))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((Json::Null, None))
    }
}

/// The value of the object's field `name`, the other fields skipped without building them.
struct FieldVisitor<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for FieldVisitor<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(wanted) = map.next_key_seed(KeyIs { name: self.name })? {
            if wanted && found.is_none() {
                found = Some(map.next_value::<&RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether a key is `name` (compared without allocating the key).
struct KeyIs<'n> {
    name: &'n str,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts<'a>(s: &Option<Selected<'a>>) -> Vec<&'a str> {
        match s {
            Some(Selected::Items(items)) => items.iter().map(|r| r.get()).collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    #[test]
    fn the_records_stay_text_and_the_rest_of_the_body_is_a_tree() {
        let body = br#"{"offset": 0, "results": [{"a": 1, "s": "x y"}, {"a": 2}], "next": {"cursor": "c2"}, "n": [1.5, null, true]}"#;
        let s = split(body, "/results").unwrap();
        assert_eq!(s.rest, json!({"offset": 0, "results": null, "next": {"cursor": "c2"}, "n": [1.5, null, true]}));
        assert_eq!(texts(&s.selected), [r#"{"a": 1, "s": "x y"}"#, r#"{"a": 2}"#]);
        let deep =
            split(br#"{"data": {"c": {"edges": [{"node": 1}], "pageInfo": {"hasNextPage": false}}}}"#, "/data/c/edges")
                .unwrap();
        assert_eq!(deep.rest["data"]["c"]["pageInfo"]["hasNextPage"], json!(false));
        assert_eq!(texts(&deep.selected), [r#"{"node": 1}"#]);
        let indexed = split(br#"{"pages": [{"r": [1]}, {"r": [2, 3]}]}"#, "/pages/1/r").unwrap();
        assert_eq!(texts(&indexed.selected), ["2", "3"]);
        assert_eq!(indexed.rest, json!({"pages": [{"r": [1]}, {"r": null}]}));
        let escaped = split(br#"{"a/b": {"~": [7]}}"#, "/a~1b/~0").unwrap();
        assert_eq!(texts(&escaped.selected), ["7"]);
    }

    #[test]
    fn a_missing_selector_selects_nothing_an_empty_one_the_whole_body_and_scalars_are_trees() {
        let s = split(br#"{"other": []}"#, "/results").unwrap();
        assert!(s.selected.is_none());
        assert_eq!(s.rest, json!({"other": []}));
        assert_eq!(texts(&split(b" [ {\"id\": 1} ] ", "").unwrap().selected), [r#"{"id": 1}"#]);
        let one = split(br#"{"r": {"id": 1, "x": [2]}}"#, "/r").unwrap().selected;
        assert!(matches!(one, Some(Selected::Value(v)) if v == json!({"id": 1, "x": [2]})));
        let scalar = split(br#"{"r": "text"}"#, "/r").unwrap().selected;
        assert!(matches!(scalar, Some(Selected::Value(v)) if v == json!("text")));
        assert!(split(br#"{"results": [1, }"#, "/results").is_err(), "malformed JSON is an error");
        assert!(split(br#"{"results": []} trailing"#, "/results").is_err(), "so is trailing text");
    }

    #[test]
    fn a_field_is_found_without_building_the_others_and_keeps_its_text() {
        let r = r#"{"x": {"deep": [1, 2]}, "id": "a\"b", "id2": 3, "o": {"k": [1, 2.50]}, "n": null}"#;
        let text = |name| field(r, name).map(text_of);
        assert_eq!(field(r, "id"), Some(r#""a\"b""#));
        assert_eq!(text("id").as_deref(), Some("a\"b"), "a string's content, unescaped");
        assert_eq!(text("id2").as_deref(), Some("3"));
        assert_eq!(text("o").as_deref(), Some(r#"{"k":[1,2.50]}"#), "other values as written, compacted");
        assert_eq!(field(r, "n"), Some("null"));
        assert_eq!(field(r, "missing"), None);
        assert_eq!(field("[1]", "id"), None);
        assert_eq!(field(r#"{"i\u0064": 5}"#, "id"), Some("5"), "an escaped key is compared decoded");
        // past u64 a float would round both to 1.2345678901234568e22: the ids must stay apart
        let (a, b) = (r#"{"id": 12345678901234567890123}"#, r#"{"id": 12345678901234567890124}"#);
        assert_eq!(field(a, "id").map(text_of).as_deref(), Some("12345678901234567890123"));
        assert_eq!(field(b, "id").map(text_of).as_deref(), Some("12345678901234567890124"));
    }

    #[test]
    fn compact_text_removes_whitespace_outside_strings_only() {
        let mut out = String::new();
        compact_into(&mut out, "{ \"a b\" :\n [1, \"x\\\" y\"],\t\"c\": \"\\\\\", \"d\" : \"é ü\" }");
        assert_eq!(out, r#"{"a b":[1,"x\" y"],"c":"\\","d":"é ü"}"#);
        let mut out = String::new();
        compact_into(&mut out, r#"{"already":"compact","n":[1,2]}"#);
        assert_eq!(out, r#"{"already":"compact","n":[1,2]}"#);
    }
}
