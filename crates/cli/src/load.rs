//! Reading a config for any verb: the file, the `.env` file, placeholders, the loader's located
//! errors (exit 2), and the backend it names.

use std::path::Path;

use anyhow::{anyhow, Context};
use bizon_connectors::config::BizonConfig;
use bizon_core::Backend;

use crate::args::ConfigArgs;
use crate::{failed, usage, Failure};

/// Variables: the process environment first, then the .env file.
pub fn env_lookup(args: &ConfigArgs) -> Result<impl Fn(&str) -> Option<String>, Failure> {
    let dotenv = match &args.env_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read env file `{}`", p.display()))
                .map_err(usage)?,
        ),
        None => std::fs::read_to_string(".env").ok(),
    };
    let vars = match dotenv {
        Some(text) => bizon_core::config::interp::parse_dotenv(&text)
            .map_err(|m| usage(anyhow!("{}: {m}", args.env_file.as_deref().unwrap_or(Path::new(".env")).display())))?,
        None => Vec::new(),
    };
    Ok(move |name: &str| {
        std::env::var(name).ok().or_else(|| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    })
}

pub fn read_config(args: &ConfigArgs) -> Result<String, Failure> {
    // Refuse a huge file before reading it (the YAML loader bounds what it parses, too).
    let limit = bizon_core::config::MAX_CONFIG_BYTES as u64;
    if let Ok(meta) = std::fs::metadata(&args.config) {
        if meta.is_file() && meta.len() > limit {
            return Err(usage(anyhow!(
                "{}: the config is {} bytes, over the limit of {limit} bytes",
                args.config.display(),
                meta.len()
            )));
        }
    }
    std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config file `{}`", args.config.display()))
        .map_err(usage)
}

pub fn load(args: &ConfigArgs) -> Result<BizonConfig, Failure> {
    load_with(args, false)
}

/// [`load`], leaving references unresolved when `skip_references` (`config validate`).
pub fn load_with(args: &ConfigArgs, skip_references: bool) -> Result<BizonConfig, Failure> {
    let text = read_config(args)?;
    let env = env_lookup(args)?;
    let file = args.config.display().to_string();
    let options = bizon_connectors::LoadOptions {
        strict: args.strict,
        skip_references,
        custom_source: args.custom_source.as_ref().map(|p| p.display().to_string()),
    };
    let cfg = bizon_connectors::load_with(&text, &env, options).map_err(|e| usage(anyhow!(e.render(&file))))?;
    for w in &cfg.warnings {
        say!("warning: {}", w.render(&file));
    }
    Ok(cfg)
}

/// Open the config's backend (a connect error is a failed run: exit 1).
pub fn open_backend(cfg: &BizonConfig) -> Result<Box<dyn Backend>, Failure> {
    cfg.engine.backend.spec.open().map_err(failed)
}
