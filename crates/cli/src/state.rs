//! `bizon state import`: a stream's incremental watermark from bizon's backend. bizon's next run
//! would read the records changed after its last successful job started (`last_run`); that
//! instant becomes this stream's watermark, recorded as a succeeded job with bizon's job id, so
//! `job list` shows where it came from and importing twice changes nothing.

use anyhow::anyhow;
use bizon_connectors::backends::bizon_state::{self, BizonBackend, BizonJob};
use bizon_core::config::{interp, yaml, SyncMode};
use bizon_core::{Job, JobStatus, Json};

use crate::args::{ConfigArgs, ImportArgs};
use crate::load::{env_lookup, load, open_backend, read_config};
use crate::{by_kind, failed, usage, Failure};

/// bizon's identity of the stream: (job name = `id` or `name`, source, stream).
fn bizon_stream(root: &yaml::Node) -> Result<(String, String, String), String> {
    let text = |n: Option<&yaml::Node>, key: &str| {
        n.and_then(yaml::Node::as_str)
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("the bizon config has no `{key}`"))
    };
    let name = text(root.get("id"), "id").or_else(|_| text(root.get("name"), "name"))?;
    let source = root.get("source");
    Ok((
        name,
        text(source.and_then(|s| s.get("name")), "source.name")?,
        text(source.and_then(|s| s.get("stream")), "source.stream")?,
    ))
}

fn describe(job: &BizonJob) -> String {
    let written =
        job.written.map(|(it, rows)| format!(", {rows} records written through iteration {it}")).unwrap_or_default();
    format!(
        "bizon job {} ({}, {}, started {}{written})",
        job.id,
        job.status,
        job.sync_mode,
        bizon_core::time::format_rfc3339(job.created_at)
    )
}

pub fn import(a: &ImportArgs) -> Result<(), Failure> {
    let cfg = load(&a.config)?;
    let key = cfg.stream_key();
    if cfg.source.sync_mode != SyncMode::Incremental {
        return Err(usage(anyhow!(
            "{}: `source.sync_mode` is `{}`: only an incremental stream has a watermark to import",
            a.config.config.display(),
            cfg.source.sync_mode.as_str()
        )));
    }
    // bizon's config: read as bizon does (its placeholders resolved with the same .env), only
    // the keys that locate its state; the rest may hold what this build does not run.
    let bizon_args = ConfigArgs {
        config: a.from_bizon.clone(),
        env_file: a.config.env_file.clone(),
        strict: false,
        custom_source: None,
    };
    let file = a.from_bizon.display().to_string();
    let text = read_config(&bizon_args)?;
    let env = env_lookup(&bizon_args)?;
    let mut root = yaml::parse(&text).map_err(|e| usage(anyhow!(e.render(&file))))?;
    let resolver =
        bizon_connectors::config::ConfigEnv::new(&root, &env).map_err(|e| usage(anyhow!(e.render(&file))))?;
    interp::resolve(&mut root, &resolver, "").map_err(|e| usage(anyhow!(e.render(&file))))?;
    let (name, source, stream) = bizon_stream(&root).map_err(|m| usage(anyhow!("{file}: {m}")))?;
    let backend = BizonBackend::from_config(&root).map_err(|m| usage(anyhow!("{file}: {m}")))?;
    let state = bizon_state::read(&backend, &name, &source, &stream).map_err(|e| by_kind(e.kind(), e))?;

    println!("bizon: stream `{stream}` of `{name}` (source `{source}`) in {}", backend.describe());
    let target = format!("stream `{}` of pipeline `{}`", key.stream, key.pipeline);
    for job in &state.unfinished {
        println!(
            "  {}: not imported: its position is bizon's own; the next run here starts from the watermark, so \
             records it wrote after that instant are read again",
            describe(job)
        );
    }
    let Some(last) = state.last_succeeded else {
        println!(
            "no successful bizon job for it: nothing to import (the first run here reads everything, as bizon's would)"
        );
        return Ok(());
    };
    let watermark = Json::String(bizon_core::time::format_rfc3339(last.created_at));
    println!("  {}: its start is bizon's next lower bound", describe(&last));
    if let Some(s) = &last.incremental_state {
        say!(
            "warning: bizon job {} kept an incremental_state ({}): a custom source's own state, which no source here \
             reads; not imported",
            last.id,
            bizon_core::redact::redact(&s.to_string())
        );
    }
    println!(
        "→ {target}: watermark {watermark} (the next incremental run reads records whose `{}` is after it)",
        cfg.source.cursor_field.as_deref().unwrap_or("cursor_field")
    );
    if a.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }

    let mut ours = open_backend(&cfg)?;
    let _lock = ours.lock_pipeline(&key).map_err(|e| by_kind(e.kind(), e))?;
    let jobs = ours.list_jobs(&key.pipeline, 1000).map_err(failed)?;
    if jobs.iter().any(|(j, _)| j.id == last.id && j.status == JobStatus::Succeeded) {
        println!("already imported (job {} is here): nothing to do", last.id);
        return Ok(());
    }
    let existing = match (ours.stream_watermark(&key).map_err(failed)?, ours.resumable_job(&key).map_err(failed)?) {
        (Some(w), _) => Some(format!("a watermark ({w})")),
        (None, Some(j)) => Some(format!("an unfinished job ({})", j.id)),
        (None, None) => None,
    };
    if let (Some(what), false) = (existing, a.force) {
        return Err(usage(anyhow!("{target} already has {what} here; --force replaces it with bizon's")));
    }
    if a.force {
        ours.reset_stream(&key).map_err(failed)?;
    }
    let now = bizon_core::time::now_micros();
    ours.create_job(&Job {
        id: last.id.clone(),
        key: key.clone(),
        sync_mode: SyncMode::Incremental,
        reset: false,
        status: JobStatus::Running,
        since: None,
        created_at: last.created_at,
        updated_at: now,
        pid: std::process::id(),
        total_records: None,
        error: None,
    })
    .map_err(failed)?;
    ours.complete_job(&last.id, Some(&watermark)).map_err(failed)?;
    println!("imported: {target} continues from bizon job {} ({})", last.id, cfg.engine.backend.spec.describe());
    Ok(())
}
