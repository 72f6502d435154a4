//! YAML text → [`Node`] tree: the event-driven parser driver and the hostile-input limits it
//! enforces while it builds the tree.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Error, Mark, Node, Value};

/// Largest config text accepted, in bytes (4 MiB). Real configs are a few KiB; a file near this
/// size is a mistake or an attack, refused before the parser reads it. The CLI can check a file's
/// size against it before reading the file.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting of lists and mappings, aliases expanded (real configs stay under 10 levels).
/// Placeholder resolution, masking, deserialization and dropping the tree each recurse once per
/// level: the bound keeps them far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 64;

/// Most nodes that aliases may add to the tree, all aliases together: each alias costs the size
/// of the value it copies. Nine levels of nine aliases ("billion laughs") would copy 9⁹ nodes and
/// gigabytes; 100 000 nodes (some 10 MB of tree) is far above what a hand-written config reuses. The
/// alias that would cross it is refused before anything is copied. A fixed number rather than a
/// multiple of the document's size, so that padding a file does not raise it. Anchors cost
/// nothing: an alias copies its value from where it stands in the tree.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Parse YAML text into a node tree (first document only). An empty document is `Null`.
/// Refuses text over [`MAX_CONFIG_BYTES`], nesting over [`MAX_DEPTH`] and alias expansion over
/// [`MAX_ALIAS_NODES`], each with the place that crossed the limit.
pub fn parse(text: &str) -> Result<Node, Error> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(Error {
            message: format!("the config is {} bytes, over the limit of {MAX_CONFIG_BYTES} bytes (4 MiB)", text.len()),
            mark: None,
            path: String::new(),
        });
    }
    let mut b = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    // Events are pulled one at a time (not `Parser::load`, which recurses per nesting level and
    // cannot be stopped): the first limit crossed ends the parse.
    loop {
        let (ev, m) = parser.next_token().map_err(|e| Error {
            message: format!("invalid YAML: {}", e.info()),
            mark: Some(mark(e.marker())),
            path: String::new(),
        })?;
        match ev {
            Event::DocumentEnd | Event::StreamEnd => break,
            ev => b.on_event(ev, &m)?,
        }
    }
    if let Some(e) = b.duplicate {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node::new(Value::Null, Mark { line: 1, col: 1 })))
}

fn mark(m: &Marker) -> Mark {
    Mark { line: m.line(), col: m.col() + 1 }
}

/// A finished value with its size.
struct Built {
    node: Node,
    /// Nodes in the tree, this one included.
    size: usize,
    /// Levels of lists and mappings, this one included (0 for a scalar).
    height: usize,
}

/// Where an anchored value stands and what copying it costs. The tree only grows by appending,
/// so a path of child positions from the root stays valid for the rest of the parse.
struct Anchor {
    /// Child position at each level (see [`Open::next_pos`]); empty for the root.
    path: Vec<usize>,
    size: usize,
    height: usize,
}

/// A list or mapping still being read.
struct Open {
    built: Built,
    /// A mapping's key still waiting for its value.
    key: Option<Node>,
    anchor: usize,
    /// A mapping's keys so far: the duplicate check stays linear in the number of keys.
    keys: HashSet<String>,
}

impl Open {
    /// Position of the next finished child: its index in a list; in a mapping 2 × entry for a
    /// key, 2 × entry + 1 for a value.
    fn next_pos(&self) -> usize {
        match &self.built.node.value {
            Value::Seq(items) => items.len(),
            Value::Map(entries) => 2 * entries.len() + usize::from(self.key.is_some()),
            _ => 0,
        }
    }

    /// The finished child at `pos`, including a mapping's pending key.
    fn child(&self, pos: usize) -> Option<&Node> {
        match &self.built.node.value {
            Value::Map(entries) if pos == 2 * entries.len() => self.key.as_ref(),
            _ => child(&self.built.node, pos),
        }
    }
}

/// The child of a finished list or mapping at `pos` (see [`Open::next_pos`]).
fn child(node: &Node, pos: usize) -> Option<&Node> {
    match &node.value {
        Value::Seq(items) => items.get(pos),
        Value::Map(entries) => entries.get(pos / 2).map(|(k, v)| if pos.is_multiple_of(2) { k } else { v }),
        _ => None,
    }
}

struct Builder<'t> {
    text: &'t str,
    stack: Vec<Open>,
    anchors: HashMap<usize, Anchor>,
    root: Option<Node>,
    /// Nodes added by aliases so far (see [`MAX_ALIAS_NODES`]).
    copied: usize,
    /// The first duplicate key: reported after the parse, so invalid YAML is reported first.
    duplicate: Option<Error>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Builder { text, stack: Vec::new(), anchors: HashMap::new(), root: None, copied: 0, duplicate: None }
    }

    fn on_event(&mut self, ev: Event, m: &Marker) -> Result<(), Error> {
        let at = mark(m);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.finish(Built { node: Node::new(value, at), size: 1, height: 0 }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.open(Value::Seq(vec![]), anchor, at)?,
            Event::MappingStart(anchor, _) => self.open(Value::Map(vec![]), anchor, at)?,
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    self.finish(open.built, open.anchor);
                }
            }
            Event::Alias(id) => {
                let built = self.alias(id, at)?;
                self.insert(built);
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, value: Value, anchor: usize, at: Mark) -> Result<(), Error> {
        if self.stack.len() >= MAX_DEPTH {
            let message = format!("lists and mappings nest deeper than the limit of {MAX_DEPTH} levels");
            return Err(Error::new(message, at, ""));
        }
        let built = Built { node: Node::new(value, at), size: 1, height: 1 };
        self.stack.push(Open { built, key: None, anchor, keys: HashSet::new() });
        Ok(())
    }

    /// A value is complete: note where it stands if anchored, then put it in its parent.
    fn finish(&mut self, built: Built, anchor: usize) {
        if anchor > 0 {
            let path = self.stack.iter().map(Open::next_pos).collect();
            self.anchors.insert(anchor, Anchor { path, size: built.size, height: built.height });
        }
        self.insert(built);
    }

    /// A copy of the value anchored as `id`, if it fits the limits where the alias stands.
    fn alias(&mut self, id: usize, at: Mark) -> Result<Built, Error> {
        let Some(a) = self.anchors.get(&id) else {
            return Ok(Built { node: Node::new(Value::Null, at), size: 1, height: 0 });
        };
        let (size, height) = (a.size, a.height);
        if self.stack.len() + height > MAX_DEPTH {
            let alias = self.alias_name(at);
            let message = format!("alias {alias} nests lists and mappings deeper than the limit of {MAX_DEPTH} levels");
            return Err(Error::new(message, at, ""));
        }
        if self.copied + size > MAX_ALIAS_NODES {
            let alias = self.alias_name(at);
            let message = format!(
                "alias {alias} would add {size} nodes to the {} already added by aliases, past the limit of \
                 {MAX_ALIAS_NODES} (aliases of aliases multiply: an alias bomb?)",
                self.copied
            );
            return Err(Error::new(message, at, ""));
        }
        let node = self.anchored(&a.path).cloned().unwrap_or(Node::new(Value::Null, at));
        self.copied += size;
        Ok(Built { node, size, height })
    }

    /// The finished value at `path`: down the open lists and mappings while the path runs
    /// through them, then down finished values.
    fn anchored(&self, path: &[usize]) -> Option<&Node> {
        let mut done: Option<&Node> = None;
        for (depth, &pos) in path.iter().enumerate() {
            done = match done {
                Some(node) => Some(child(node, pos)?),
                // Still open at `depth`: the path goes on into the next open frame.
                None => {
                    let frame = self.stack.get(depth)?;
                    (pos < frame.next_pos()).then(|| frame.child(pos)).flatten()
                }
            };
        }
        if path.is_empty() {
            self.root.as_ref()
        } else {
            done
        }
    }

    fn insert(&mut self, child: Built) {
        let Some(open) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(child.node)
            }
            return;
        };
        let parent = &mut open.built;
        parent.size += child.size;
        parent.height = parent.height.max(child.height + 1);
        match &mut parent.node.value {
            Value::Seq(items) => items.push(child.node),
            Value::Map(entries) => match open.key.take() {
                None => open.key = Some(child.node),
                Some(key) => {
                    if let Some(k) = key.as_str() {
                        if !open.keys.insert(k.to_owned()) && self.duplicate.is_none() {
                            self.duplicate = Some(Error::new(format!("duplicate key `{k}`"), key.mark, ""));
                        }
                    }
                    entries.push((key, child.node))
                }
            },
            _ => {}
        }
    }

    /// `*name` as written at `at`, for messages (the parser passes aliases by number).
    fn alias_name(&self, at: Mark) -> String {
        let line = self.text.lines().nth(at.line.saturating_sub(1)).unwrap_or_default();
        let name: String = line
            .chars()
            .skip(at.col.saturating_sub(1))
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .collect();
        if name.len() > 1 && name.starts_with('*') {
            format!("`{name}`")
        } else {
            "here".to_owned()
        }
    }
}
