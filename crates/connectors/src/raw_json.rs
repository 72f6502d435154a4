//! JSON values kept as the text their producer wrote: a record's field or the value at a JSON
//! pointer found without building a tree, an id's text (a number keeps every digit: past 2^64 it
//! is not rounded through a float), and text compacted without re-serializing it. Shared by the
//! sources that pass records through as text (REST, command).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

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
    compact(raw)
}

/// `raw` (valid JSON) without whitespace outside strings, as a new string ([`compact_into`]).
pub fn compact(raw: &str) -> String {
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

/// The JSON text of the value at `pointer` (RFC 6901: `/a/0/b`) in `value`, as written;
/// `None`: nothing there. Only the objects and arrays on the path are scanned.
pub fn pointer<'a>(value: &'a str, pointer: &str) -> Option<&'a str> {
    let mut at = value.trim();
    for segment in pointer_segments(pointer) {
        at = if at.starts_with('{') {
            field(at, &segment)?
        } else if at.starts_with('[') {
            let index: usize = segment.parse().ok()?;
            serde_json::from_str::<Vec<&RawValue>>(at).ok()?.get(index)?.get()
        } else {
            return None;
        };
    }
    Some(at)
}

/// A JSON pointer's reference tokens, unescaped (`/a~1b/~0` → `a/b`, `~`); none for `""`.
pub fn pointer_segments(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~"))
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

    #[test]
    fn a_pointer_walks_objects_and_arrays_and_keeps_the_text() {
        let r = r#" {"a": {"b/c": [10, {"id": 12345678901234567890123}], "~": 1.50}, "n": null} "#;
        assert_eq!(pointer(r, "/a/b~1c/1/id"), Some("12345678901234567890123"));
        assert_eq!(pointer(r, "/a/b~1c/0"), Some("10"));
        assert_eq!(pointer(r, "/a/~0"), Some("1.50"));
        assert_eq!(pointer(r, "/n"), Some("null"));
        assert_eq!(pointer(r, "").map(str::len), Some(r.trim().len()), "an empty pointer is the whole value");
        assert_eq!(pointer(r, "/a/b~1c/2"), None);
        assert_eq!(pointer(r, "/a/b~1c/x"), None);
        assert_eq!(pointer(r, "/n/deeper"), None);
        assert_eq!(pointer(r, "/missing"), None);
    }
}
