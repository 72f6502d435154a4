//! `bizon secrets check`: which placeholders and secret references (`gsm://`) of a config
//! resolve, without printing a value.

use anyhow::anyhow;

use crate::args::ConfigArgs;
use crate::load::{env_lookup, read_config};
use crate::{usage, Failure};

pub fn check(args: &ConfigArgs) -> Result<(), Failure> {
    let text = read_config(args)?;
    let env = env_lookup(args)?;
    let root = bizon_core::config::yaml::parse(&text)
        .map_err(|e| usage(anyhow!(e.render(&args.config.display().to_string()))))?;
    let env = bizon_connectors::config::ConfigEnv::new(&root, &env)
        .map_err(|e| usage(anyhow!(e.render(&args.config.display().to_string()))))?;
    let mut found = 0;
    let mut missing = 0;
    fn walk(n: &bizon_core::config::yaml::Node, path: String, out: &mut Vec<(String, String)>) {
        use bizon_core::config::yaml::Value;
        match &n.value {
            Value::Scalar { text, .. } => out.push((path, text.clone())),
            Value::Seq(items) => items.iter().enumerate().for_each(|(i, c)| walk(c, format!("{path}[{i}]"), out)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                let key = k.as_str().unwrap_or_default();
                walk(v, if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }, out)
            }),
            Value::Null => {}
        }
    }
    let mut scalars = Vec::new();
    walk(&root, String::new(), &mut scalars);
    for (path, text) in scalars {
        match bizon_core::config::interp::resolve_str(&text, &env) {
            Ok(None) => {}
            Ok(Some(value)) => {
                found += 1;
                println!("{path:<40} ok ({} chars)", value.chars().count());
            }
            Err(m) => {
                found += 1;
                missing += 1;
                println!("{path:<40} FAILED: {}", bizon_core::redact::redact(&m));
            }
        }
    }
    if found == 0 {
        println!("no placeholders in {}", args.config.display());
    }
    if missing > 0 {
        return Err(usage(anyhow!("{missing} of {found} placeholder(s) did not resolve")));
    }
    Ok(())
}
