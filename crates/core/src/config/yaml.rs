//! YAML → a [`Node`] tree that remembers where each value stood, and a serde `Deserializer` over
//! it. Every error it returns carries the line, column and config path of the offending value,
//! and unknown keys or enum values come with the closest valid one. Environment placeholders are
//! resolved on this tree (see `interp`) before typed deserialization, so a placeholder's value is
//! parsed as whatever the field needs (a port, a bool, a string).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column of a value in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// A scalar's text; `plain` scalars (unquoted) are typed by YAML's core schema in
    /// `deserialize_any`, quoted ones are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    /// The value came from the environment (a secret until proven otherwise): masked in output.
    pub from_env: bool,
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Self {
        Node { value, mark, from_env: false }
    }
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    /// Look up `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A config error with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub message: String,
    pub mark: Option<Mark>,
    /// Dotted config path (`source.sync_mode`, `engine.backend.config`), empty for the root.
    pub path: String,
}

impl Error {
    pub fn new(message: impl Into<String>, mark: Mark, path: &str) -> Self {
        Error { message: message.into(), mark: Some(mark), path: path.to_owned() }
    }
    /// Fill in place and path if the error does not have them yet (innermost wins).
    fn at(mut self, mark: Mark, path: &str) -> Self {
        if self.mark.is_none() {
            self.mark = Some(mark);
            self.path = path.to_owned();
        }
        self
    }
    /// Render as `file:line:column: message (at path)`.
    pub fn render(&self, file: &str) -> String {
        let place = match self.mark {
            Some(m) => format!("{file}:{}:{}", m.line, m.col),
            None => file.to_owned(),
        };
        if self.path.is_empty() {
            format!("{place}: {}", self.message)
        } else {
            format!("{place}: {} (at `{}`)", self.message, self.path)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("config"))
    }
}

impl std::error::Error for Error {}

fn list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error { message: msg.to_string(), mark: None, path: String::new() }
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = crate::suggest::closest(field, expected.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        de::Error::custom(format!("unknown key `{field}`{hint} Valid keys: {}", list(expected)))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = crate::suggest::closest(variant, expected.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        de::Error::custom(format!("unknown value `{variant}`{hint} Allowed values: {}", list(expected)))
    }
    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing required key `{field}`"))
    }
}

/// Parse YAML text into a node tree (first document only). An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, Error> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| {
        let m = e.marker();
        Error { message: format!("invalid YAML: {}", e.info()), mark: Some(mark(m)), path: String::new() }
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node::new(Value::Null, Mark { line: 1, col: 1 })))
}

fn mark(m: &Marker) -> Mark {
    Mark { line: m.line(), col: m.col() + 1 }
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<Error>,
}

impl Builder {
    fn insert(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node)
                }
            }
            Some((parent, pending, _)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => {
                        if let Some(k) = key.as_str() {
                            if entries.iter().any(|(e, _)| e.as_str() == Some(k)) && self.error.is_none() {
                                self.error = Some(Error::new(format!("duplicate key `{k}`"), key.mark, ""));
                            }
                        }
                        entries.push((key, node))
                    }
                },
                _ => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, m: Marker) {
        let at = mark(&m);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                let node = Node::new(value, at);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.insert(node);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Node::new(Value::Seq(vec![]), at), None, anchor)),
            Event::MappingStart(anchor, _) => self.stack.push((Node::new(Value::Map(vec![]), at), None, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _, anchor)) = self.stack.pop() {
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.insert(node);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node::new(Value::Null, at));
                self.insert(node);
            }
            _ => {}
        }
    }
}

/// Deserialize `T` from `node`. Keys listed in `skip` are passed over at the top level of this
/// node: they belong to another struct deserialized from the same mapping (a connector's own
/// keys beside the common ones).
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &Node, path: &str, skip: &[&str]) -> Result<T, Error> {
    T::deserialize(De { node, path: path.to_owned(), skip }).map_err(|e: Error| e.at(node.mark, path))
}

/// The field names a struct declares (what `deny_unknown_fields` accepts), read by a probe
/// deserialization that stops at `deserialize_struct`.
pub fn struct_fields<'de, T: de::Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(f)) => f,
        Ok(_) => &[],
    }
}

struct De<'a> {
    node: &'a Node,
    path: String,
    skip: &'a [&'a str],
}

impl<'a> De<'a> {
    fn child(&self, node: &'a Node, key: &str) -> De<'a> {
        let path = if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) };
        De { node, path, skip: &[] }
    }
    fn err(&self, msg: impl fmt::Display) -> Error {
        Error::new(msg.to_string(), self.node.mark, &self.path)
    }
    fn scalar(&self, expected: &str) -> Result<&'a str, Error> {
        match &self.node.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(self.err(format!("expected {expected}, found {}", self.node.kind_name()))),
        }
    }
    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, Error> {
        let s = self.scalar(expected)?;
        let s = s.trim();
        let cleaned = s.replace('_', "");
        cleaned.parse().map_err(|_| self.err(format!("expected {expected}, found `{s}`")))
    }
}

macro_rules! de_number {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let n: $ty = self.parse($what)?;
            v.$visit(n).map_err(|e: Error| e.at(self.node.mark, &self.path))
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for De<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.node.value {
            Value::Null => v.visit_unit(),
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => v.visit_bool(true),
                "false" | "False" | "FALSE" => v.visit_bool(false),
                t => {
                    if let Ok(i) = t.parse::<i64>() {
                        v.visit_i64(i)
                    } else if let Ok(u) = t.parse::<u64>() {
                        v.visit_u64(u)
                    } else if t.bytes().any(|b| b.is_ascii_digit()) && t.parse::<f64>().is_ok() {
                        v.visit_f64(t.parse::<f64>().unwrap_or_default())
                    } else {
                        v.visit_str(t)
                    }
                }
            },
            Value::Scalar { text, plain: false } => v.visit_str(text),
            Value::Seq(_) => return self.deserialize_seq(v),
            Value::Map(_) => return self.deserialize_map(v),
        };
        r.map_err(|e: Error| e.at(self.node.mark, &self.path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let b = match self.scalar("true or false")? {
            "true" | "True" | "TRUE" => true,
            "false" | "False" | "FALSE" => false,
            other => return Err(self.err(format!("expected true or false, found `{other}`"))),
        };
        v.visit_bool(b).map_err(|e: Error| e.at(self.node.mark, &self.path))
    }

    de_number! {
        deserialize_i8 visit_i8 i8, "an integer";
        deserialize_i16 visit_i16 i16, "an integer";
        deserialize_i32 visit_i32 i32, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u8 u8, "a non-negative integer";
        deserialize_u16 visit_u16 u16, "a non-negative integer (0-65535)";
        deserialize_u32 visit_u32 u32, "a non-negative integer";
        deserialize_u64 visit_u64 u64, "a non-negative integer";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let s = self.scalar("a string")?;
        v.visit_str(s).map_err(|e: Error| e.at(self.node.mark, &self.path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.node.value == Value::Null {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit().map_err(|e: Error| e.at(self.node.mark, &self.path))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.err(format!("expected a list, found {}", self.node.kind_name())));
        };
        let (mark, path) = (self.node.mark, self.path.clone());
        v.visit_seq(Seq { de: &self, items, i: 0 }).map_err(|e: Error| e.at(mark, &path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let entries = match &self.node.value {
            Value::Map(m) => m.as_slice(),
            // `key:` with nothing after it reads as an empty mapping, like bizon's pydantic.
            Value::Null => &[],
            _ => return Err(self.err(format!("expected a mapping, found {}", self.node.kind_name()))),
        };
        let (mark, path) = (self.node.mark, self.path.clone());
        v.visit_map(Map { de: &self, entries, i: 0, value: None }).map_err(|e: Error| e.at(mark, &path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path.clone());
        match &self.node.value {
            Value::Scalar { .. } => v.visit_enum(Enum { de: self, content: None }),
            Value::Map(m) if m.len() == 1 => {
                let (k, val) = (&m[0].0, &m[0].1);
                v.visit_enum(Enum { de: De { node: k, path: self.path.clone(), skip: &[] }, content: Some(val) })
            }
            _ => Err(self.err(format!("expected a value name, found {}", self.node.kind_name()))),
        }
        .map_err(|e: Error| e.at(mark, &path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u64(v)
    }
}

struct Seq<'s, 'a> {
    de: &'s De<'a>,
    items: &'a [Node],
    i: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, '_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some(node) = self.items.get(self.i) else { return Ok(None) };
        let child = De { node, path: format!("{}[{}]", self.de.path, self.i), skip: &[] };
        self.i += 1;
        let (mark, path) = (node.mark, child.path.clone());
        seed.deserialize(child).map(Some).map_err(|e: Error| e.at(mark, &path))
    }
}

struct Map<'s, 'a> {
    de: &'s De<'a>,
    entries: &'a [(Node, Node)],
    i: usize,
    value: Option<(&'a Node, String)>,
}

impl<'de> de::MapAccess<'de> for Map<'_, '_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        while let Some((k, v)) = self.entries.get(self.i) {
            self.i += 1;
            let name = match &k.value {
                Value::Scalar { text, .. } => text.clone(),
                Value::Null => "null".into(),
                _ => return Err(Error::new("keys must be plain names", k.mark, &self.de.path)),
            };
            if self.de.skip.contains(&name.as_str()) {
                continue;
            }
            let child = self.de.child(k, &name);
            let path = child.path.clone();
            self.value = Some((v, name));
            return seed
                .deserialize(De { node: k, path: path.clone(), skip: &[] })
                .map(Some)
                .map_err(|e: Error| e.at(k.mark, &path));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((node, name)) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let child = self.de.child(node, &name);
        let (mark, path) = (node.mark, child.path.clone());
        seed.deserialize(child).map_err(|e: Error| e.at(mark, &path))
    }
}

struct Enum<'a> {
    de: De<'a>,
    content: Option<&'a Node>,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = Error;
    type Variant = Variant<'a>;
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Variant<'a>), Error> {
        let (mark, path) = (self.de.node.mark, self.de.path.clone());
        let name = self.de.node.as_str().unwrap_or_default().to_owned();
        let v = seed.deserialize(name.as_str().into_deserializer()).map_err(|e: Error| e.at(mark, &path))?;
        Ok((v, Variant { content: self.content, path, mark }))
    }
}

struct Variant<'a> {
    content: Option<&'a Node>,
    path: String,
    mark: Mark,
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            None | Some(Node { value: Value::Null, .. }) => Ok(()),
            Some(n) => Err(Error::new("this value takes no options", n.mark, &self.path)),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.content {
            Some(node) => seed.deserialize(De { node, path: self.path, skip: &[] }),
            None => Err(Error::new("this value needs options", self.mark, &self.path)),
        }
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        match self.content {
            Some(node) => de::Deserializer::deserialize_seq(De { node, path: self.path, skip: &[] }, v),
            None => Err(Error::new("this value needs a list", self.mark, &self.path)),
        }
    }
    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], v: V) -> Result<V::Value, Error> {
        match self.content {
            Some(node) => de::Deserializer::deserialize_map(De { node, path: self.path, skip: &[] }, v),
            None => Err(Error::new("this value needs options", self.mark, &self.path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        enabled: bool,
        mode: Option<Mode>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        FullRefresh,
        Incremental,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        inner: Inner,
        tags: Vec<String>,
    }

    fn load<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, Error> {
        from_node(&parse(text)?, "", &[])
    }

    #[test]
    fn reads_typed_values() {
        let o: Outer = load("name: x\ninner:\n  port: '5432'\n  mode: incremental\ntags: [a, 1]\n").unwrap();
        assert_eq!(o.inner.port, 5432);
        assert_eq!(o.inner.mode, Some(Mode::Incremental));
        assert_eq!(o.tags, vec!["a", "1"]);
    }

    #[test]
    fn unknown_key_has_location_and_suggestion() {
        let e = load::<Outer>("name: x\ninner:\n  prot: 1\ntags: []\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 3, col: 3 }));
        assert_eq!(e.path, "inner.prot");
        assert!(e.message.contains("did you mean `port`"), "{}", e.message);
    }

    #[test]
    fn wrong_type_and_missing_key_are_located() {
        let e = load::<Outer>("name: x\ninner:\n  port: many\ntags: []\n").unwrap_err();
        assert_eq!((e.mark, e.path.as_str()), (Some(Mark { line: 3, col: 9 }), "inner.port"));
        assert!(e.message.contains("found `many`"));
        let e = load::<Outer>("name: x\ninner:\n  enabled: true\ntags: []\n").unwrap_err();
        assert!(e.message.contains("missing required key `port`"), "{}", e.message);
        assert_eq!(e.path, "inner");
        let e = load::<Outer>("name: x\ninner: {port: 1, mode: incremetal}\ntags: []\n").unwrap_err();
        assert!(e.message.contains("did you mean `incremental`"), "{}", e.message);
    }

    #[test]
    fn invalid_yaml_and_duplicates_are_reported() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert!(e.mark.is_some());
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"));
        assert_eq!(e.mark, Some(Mark { line: 2, col: 1 }));
    }

    #[test]
    fn probe_reads_struct_fields() {
        assert_eq!(struct_fields::<Inner>(), &["port", "enabled", "mode"]);
    }

    #[test]
    fn skip_passes_over_foreign_keys() {
        let node = parse("port: 1\nextra: yes\n").unwrap();
        let i: Inner = from_node(&node, "", &["extra"]).unwrap();
        assert_eq!(i.port, 1);
        assert!(from_node::<Inner>(&node, "", &[]).is_err());
    }

    #[test]
    fn anchors_and_json_values() {
        let node = parse("a: &x {k: [1, true, 'two', 1.5, null]}\nb: *x\n").unwrap();
        let v: serde_json::Value = from_node(&node, "", &[]).unwrap();
        assert_eq!(v["b"], serde_json::json!({"k": [1, true, "two", 1.5, null]}));
    }
}
