//! YAML → a [`Node`] tree that remembers where each value stood, and a serde `Deserializer` over
//! it. Every error it returns carries the line, column and config path of the offending value,
//! and unknown keys or enum values come with the closest valid one. Environment placeholders are
//! resolved on this tree (see `interp`) before typed deserialization, so a placeholder's value is
//! parsed as whatever the field needs (a port, a bool, a string).
//!
//! Configs may come from anyone: text size, nesting depth and alias expansion are bounded
//! ([`MAX_CONFIG_BYTES`], [`MAX_DEPTH`], [`MAX_ALIAS_NODES`]), so a hostile file fails fast with
//! a located error instead of exhausting memory or the stack.

mod de;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

pub use de::{from_node, struct_fields};
pub use parse::{parse, MAX_ALIAS_NODES, MAX_CONFIG_BYTES, MAX_DEPTH};

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
