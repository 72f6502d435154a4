//! The serde `Deserializer` over a [`Node`] tree: typed config sections are read from the tree,
//! every error located at the value that caused it.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{Error, Mark, Node, Value};

fn list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error { message: msg.to_string(), mark: None, path: String::new() }
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = crate::suggest::did_you_mean(field, expected.iter().copied());
        de::Error::custom(format!("unknown key `{field}`{hint} Valid keys: {}", list(expected)))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = crate::suggest::did_you_mean(variant, expected.iter().copied());
        de::Error::custom(format!("unknown value `{variant}`{hint} Allowed values: {}", list(expected)))
    }
    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing required key `{field}`"))
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
