//! Environment placeholders, resolved on the node tree before typed deserialization:
//! - `BIZON_ENV_X` as a whole value: the value of the environment variable `BIZON_ENV_X`
//!   (bizon's legacy form);
//! - `env://X` as a whole value, or `${env://X}` / `${X}` / `${X:-default}` inside a string.
//!
//! Resolved nodes are flagged `from_env`, so `config show` masks them. A missing variable is an
//! error naming it and where it is used; the value itself never appears in a message.

use super::yaml::{Error, Node, Value};

/// Where variables come from: the process environment first, then a `.env` file.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
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
            Some((scheme, _)) => {
                return Err(format!(
                    "placeholder `${{{inner}}}` uses the `{scheme}://` scheme, which this build does not resolve; \
                     supported: `${{VAR}}`, `${{env://VAR}}`, `env://VAR`, `BIZON_ENV_*`"
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

/// Parse a `.env` file: `KEY=VALUE` lines, optional `export `, `#` comments, quoted values.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: expected KEY=VALUE", n + 1))?;
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1].to_owned()
        } else {
            v.split(" #").next().unwrap_or("").trim().to_owned()
        };
        vars.push((k.trim().to_owned(), v));
    }
    Ok(vars)
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
        assert!(resolve_str("${gsm://x}", &env).unwrap_err().contains("gsm://"));
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
}
