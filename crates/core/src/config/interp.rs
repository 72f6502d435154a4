//! Environment placeholders, resolved on the node tree before typed deserialization:
//! - `BIZON_ENV_X` as a whole value: the value of the environment variable `BIZON_ENV_X`
//!   (bizon's legacy form);
//! - `env://X` as a whole value, or `${env://X}` / `${X}` / `${X:-default}` inside a string;
//! - `gsm://SECRET` (Google Secret Manager, bizon's forms: `ID`, `ID/versions/N`,
//!   `projects/P/secrets/ID/versions/N`) as a whole value or `${gsm://SECRET}` inside a string,
//!   through [`Env::reference`] (the connectors' Secret Manager client); without one, an error
//!   naming the reference, so a secret's address is never used as its value.
//!
//! Resolved nodes are flagged `from_env`, so `config show` masks them. A missing variable is an
//! error naming it and where it is used; the value itself never appears in a message.

use std::cell::Cell;
use std::io::{self, Read};

use super::yaml::{Error, Mark, Node, Value};

/// Where variables come from: the process environment first, then a `.env` file.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// The value of a `scheme://path` secret reference (`gsm`): `None` when this build cannot
    /// resolve the scheme, else the value or why not (naming the reference, never a value).
    fn reference(&self, _scheme: &str, _path: &str) -> Option<Result<String, String>> {
        None
    }
}

/// The value of a secret reference, or an error naming it.
fn secret(env: &dyn Env, scheme: &str, path: &str) -> Result<String, String> {
    env.reference(scheme, path).unwrap_or_else(|| {
        Err(format!(
            "`{scheme}://{path}` is a Google Secret Manager reference, which this build cannot resolve (it needs the \
             `bigquery` cargo feature, which brings Google auth)"
        ))
    })
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Resolve every placeholder in `node`, in place.
pub fn resolve(node: &mut Node, env: &dyn Env, path: &str) -> Result<(), Error> {
    match &mut node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, env, &format!("{path}[{i}]"))?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let key = k.as_str().unwrap_or_default();
                let child = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
                resolve(v, env, &child)?;
            }
        }
        Value::Scalar { text, plain } => {
            if let Some(resolved) = resolve_str(text, env).map_err(|m| Error::new(m, node.mark, path))? {
                *text = resolved;
                // The value is typed by the field it lands in, like an unquoted scalar.
                *plain = true;
                node.from_env = true;
            }
        }
        Value::Null => {}
    }
    Ok(())
}

/// Whether `s` holds a placeholder or a secret reference: what [`resolve_str`] would replace
/// (asked with no variables, it answers `Ok(None)` only for plain text).
pub fn holds_reference(s: &str) -> bool {
    !matches!(resolve_str(s, &|_: &str| None::<String>), Ok(None))
}

/// Leave every placeholder unresolved (`config validate --skip-references`): flag the scalars
/// holding one as from the environment (masked) and return where they are.
pub fn mark_references(node: &mut Node, out: &mut Vec<Mark>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| mark_references(n, out)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| mark_references(v, out)),
        Value::Scalar { text, .. } if holds_reference(text) => {
            node.from_env = true;
            out.push(node.mark);
        }
        Value::Scalar { .. } | Value::Null => {}
    }
}

/// Put `text` (a plain scalar, typed by the field it lands in) in place of the scalar at `mark`.
pub fn replace_at(node: &mut Node, mark: Mark, text: &str) -> bool {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().any(|n| replace_at(n, mark, text)),
        Value::Map(entries) => entries.iter_mut().any(|(_, v)| replace_at(v, mark, text)),
        Value::Scalar { text: t, plain } if node.mark == mark => {
            *t = text.to_owned();
            *plain = true;
            true
        }
        Value::Scalar { .. } | Value::Null => false,
    }
}

/// The resolved string, or `None` when `s` holds no placeholder.
pub fn resolve_str(s: &str, env: &dyn Env) -> Result<Option<String>, String> {
    let lookup = |name: &str| env.var(name).ok_or_else(|| format!("environment variable `{name}` is not set"));
    let trimmed = s.trim();
    if trimmed.starts_with("BIZON_ENV_") && !trimmed.contains(char::is_whitespace) {
        return lookup(trimmed).map(Some);
    }
    if let Some(name) = trimmed.strip_prefix("env://") {
        return lookup(name.trim()).map(Some);
    }
    if let Some(path) = trimmed.strip_prefix("gsm://") {
        return secret(env, "gsm", path.trim()).map(Some);
    }
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed placeholder `{}`", &rest[start..]))?;
        let inner = after[..end].trim();
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (inner, None),
        };
        let name = match name.split_once("://") {
            Some(("env", n)) => n.trim(),
            Some(("gsm", path)) => {
                out.push_str(&secret(env, "gsm", path.trim())?);
                rest = &after[end + 1..];
                continue;
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "placeholder `${{{inner}}}` uses the `{scheme}://` scheme, which this build does not resolve; \
                     supported: `${{VAR}}`, `${{env://VAR}}`, `${{gsm://SECRET}}`, `env://VAR`, `gsm://SECRET`, \
                     `BIZON_ENV_*`"
                ))
            }
            None => name,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("malformed placeholder `${{{inner}}}`: expected `${{VAR}}` or `${{env://VAR}}`"));
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Parse a `.env` file (with dotenvy; the process environment is read for `$VAR`, never
/// written): `KEY=VALUE` lines, optional `export `, `#` comments (after a space when they follow
/// a value), values in single quotes (literal) or double quotes (escapes `\n`, `\\`, `\"`, `\'`,
/// `\$`; may span lines), and `${VAR}` in unquoted and double-quoted values, taken from the
/// process environment or an earlier line (an unset one is empty; unbraced `$VAR` ends at the
/// first character that is not a letter or digit, so `$MY_VAR` reads `$MY`). Pairs come in file
/// order. An error names the line where the entry starts, never its text: `.env` files hold
/// secrets.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let handed = Cell::new(0);
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(LineByLine { rest: text.as_bytes(), handed: &handed }) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(e) => {
                // dotenvy has read exactly the bytes handed to it: its last line is the entry's.
                let read = &text.as_bytes()[..handed.get()];
                let last = read.iter().filter(|&&b| b == b'\n').count() + usize::from(!read.ends_with(b"\n"));
                let spanned = match &e {
                    dotenvy::Error::LineParse(entry, _) => entry.trim_end_matches(['\r', '\n']).matches('\n').count(),
                    _ => 0,
                };
                let first = last.saturating_sub(spanned).max(1);
                let entry: Vec<&str> = text.lines().skip(first - 1).take(spanned + 1).collect();
                return Err(format!("line {first}: {}", dotenv_problem(&entry.join("\n"))));
            }
        }
    }
    Ok(vars)
}

/// What is wrong with a `.env` entry dotenvy refused (it does not say).
fn dotenv_problem(entry: &str) -> &'static str {
    let entry = entry.trim_start();
    let entry = match entry.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => entry,
    };
    let key_end = entry.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(entry.len());
    if !entry.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        || !entry[key_end..].trim_start().starts_with('=')
    {
        return "expected KEY=VALUE (or `export KEY=VALUE`); a key is letters, digits, `_` and `.`, not starting with \
                a digit";
    }
    "cannot read the value: quote a value that holds spaces, close every quote, and use only the \
     escapes `\\n`, `\\\\`, `\\\"`, `\\'` and `\\$`"
}

/// Hands text to dotenvy one line per read at most, so that the bytes handed out end where its
/// parser stands: its `BufReader` only asks for more when it needs the next line.
struct LineByLine<'a> {
    rest: &'a [u8],
    handed: &'a Cell<usize>,
}

impl Read for LineByLine<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let line = self.rest.iter().position(|&b| b == b'\n').map_or(self.rest.len(), |i| i + 1);
        let n = line.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        self.handed.set(self.handed.get() + n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    fn env(name: &str) -> Option<String> {
        match name {
            "BIZON_ENV_PORT" => Some("5433".into()),
            "PW" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    #[test]
    fn resolves_all_forms() {
        assert_eq!(resolve_str("BIZON_ENV_PORT", &env).unwrap().as_deref(), Some("5433"));
        assert_eq!(resolve_str("env://PW", &env).unwrap().as_deref(), Some("s3cr3t"));
        assert_eq!(resolve_str("pg://u:${PW}@h/${env://PW}", &env).unwrap().as_deref(), Some("pg://u:s3cr3t@h/s3cr3t"));
        assert_eq!(resolve_str("${NOPE:-dflt}", &env).unwrap().as_deref(), Some("dflt"));
        assert_eq!(resolve_str("plain", &env).unwrap(), None);
        assert!(resolve_str("${NOPE}", &env).unwrap_err().contains("`NOPE` is not set"));
        assert!(resolve_str("${gsm://x}", &env).unwrap_err().contains("gsm://x"));
        // A whole-value reference never passes through as a literal (it would be sent as a password).
        let e = resolve_str("gsm://projects/p/secrets/db/versions/2", &env).unwrap_err();
        assert!(e.contains("`gsm://projects/p/secrets/db/versions/2`") && e.contains("cannot resolve"), "{e}");
        // Other URIs are values, not references.
        assert_eq!(resolve_str("postgresql://u@h/db", &env).unwrap(), None);
        assert!(resolve_str("${oops", &env).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn resolved_nodes_are_typed_and_flagged() {
        let mut n = parse("port: BIZON_ENV_PORT\nname: fixed\n").unwrap();
        resolve(&mut n, &env, "").unwrap();
        let port = n.get("port").unwrap();
        assert!(port.from_env);
        let v: u16 = crate::config::yaml::from_node(port, "port", &[]).unwrap();
        assert_eq!(v, 5433);
        assert!(!n.get("name").unwrap().from_env);
        let mut n = parse("a:\n  b: ${MISSING}\n").unwrap();
        let e = resolve(&mut n, &env, "").unwrap_err();
        assert_eq!(e.path, "a.b");
    }

    #[test]
    fn dotenv_lines() {
        let v = parse_dotenv("# c\nexport A=1\nB=\"two words\"\nC=x # note\n").unwrap();
        assert_eq!(v, vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "x".into())]);
        assert!(parse_dotenv("nonsense").is_err());
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_dotenv(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn dotenv_quotes_escapes_comments_and_export() {
        let text = "\u{feff}# leading comment\n\
                    \n\
                    export  EXPORTED=yes\n\
                    export='not a prefix'\n\
                    SINGLE='lit $BIZON_DOTENV_NOPE \\n # kept'\n\
                    DOUBLE=\"a \\\"q\\\" \\\\ \\$ b\\nc\"\n\
                    HASH=x#y\n\
                    SPACED = v   # trailing comment\n\
                    EMPTY=\n\
                    MULTI=\"line 1\n\
                    line 2\"\n\
                    dotted.key_2=ok\r\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("EXPORTED", "yes"),
                pair("export", "not a prefix"),
                pair("SINGLE", "lit $BIZON_DOTENV_NOPE \\n # kept"),
                pair("DOUBLE", "a \"q\" \\ $ b\nc"),
                pair("HASH", "x#y"),
                pair("SPACED", "v"),
                pair("EMPTY", ""),
                pair("MULTI", "line 1\nline 2"),
                pair("dotted.key_2", "ok"),
            ]
        );
    }

    #[test]
    fn dotenv_substitutes_earlier_lines_outside_single_quotes() {
        let text = "BIZON_DOTENV_A=1\nB=${BIZON_DOTENV_A}2\nC=\"${BIZON_DOTENV_A}-3\"\nD='${BIZON_DOTENV_A}'\n\
                    BIZONDOTENVB=4\nE=$BIZONDOTENVB.5\nF=${BIZON_DOTENV_UNSET}6\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("BIZON_DOTENV_A", "1"),
                pair("B", "12"),
                pair("C", "1-3"),
                pair("D", "${BIZON_DOTENV_A}"),
                pair("BIZONDOTENVB", "4"),
                pair("E", "4.5"),
                pair("F", "6"),
            ]
        );
        // dotenvy 0.15 ends an unbraced name at the first `_`: `$BIZONDOTENVQ_A` reads
        // `$BIZONDOTENVQ` (unset).
        assert_eq!(pairs("BIZONDOTENVQ_A=1\nG=$BIZONDOTENVQ_A\n")[1], pair("G", "_A"));
    }

    #[test]
    fn dotenv_errors_name_the_line_not_the_secret() {
        let err = |text: &str| parse_dotenv(text).unwrap_err();
        let e = err("A=1\n# c\n\nnonsense\nB=2\n");
        assert!(e.starts_with("line 4: expected KEY=VALUE"), "{e}");
        assert!(err("1A=x").starts_with("line 1: expected KEY=VALUE"));
        assert!(err("A-B=x\n").starts_with("line 1: expected KEY=VALUE"));
        let e = err("A=1\nPASSWORD=hunter2 hunter3\n");
        assert!(e.starts_with("line 2: cannot read the value"), "{e}");
        assert!(!e.contains("hunter"), "{e}");
        assert!(err("A=1\nB=\"\\d\"\n").starts_with("line 2: cannot read the value"));
        // An unclosed quote runs to the end of the file: the error names where it opened.
        let e = err("A=1\nB=\"open\nC=2\nD=3\n");
        assert!(e.starts_with("line 2: cannot read the value"), "{e}");
        let e = err("A=1\nB='open");
        assert!(e.starts_with("line 2: cannot read the value"), "{e}");
        // A bad entry after a quoted value over several lines.
        let e = err("A=\"x\ny\"\nB=1\n!\n");
        assert!(e.starts_with("line 4: expected"), "{e}");
    }
}
