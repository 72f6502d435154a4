//! A page's body read in one pass: the records under the selector stay JSON text (no tree is built
//! for them; they reach the page as the server wrote them, whitespace outside strings removed),
//! and the rest of the body becomes a tree for the paginator. Building a tree for every record and
//! writing it out again was most of a REST source's CPU per record.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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
    let path: Vec<String> = crate::raw_json::pointer_segments(pointer).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    let (rest, selected) = At { path: &path }.deserialize(&mut de)?;
    de.end()?;
    Ok(Split { rest, selected })
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
}
