//! `job list` and `job show`: a pipeline's jobs from its backend, with progress computed from
//! what the backend committed.

use anyhow::anyhow;
use bizon_core::JobStatus;

use crate::args::ConfigArgs;
use crate::load::{load, open_backend};
use crate::{failed, Failure};

pub fn list(config: &ConfigArgs, limit: usize) -> Result<(), Failure> {
    let cfg = load(config)?;
    let mut backend = open_backend(&cfg)?;
    let jobs = backend.list_jobs(cfg.job_name(), limit).map_err(failed)?;
    if jobs.is_empty() {
        println!("no jobs for pipeline `{}`", cfg.job_name());
        return Ok(());
    }
    println!(
        "{:<36} {:<10} {:<13} {:<10} {:>10} {:>12} {:<26} {:>10} {:>6} {:>8}",
        "JOB", "STATUS", "MODE", "STREAM", "ITERATION", "RECORDS", "UPDATED", "RATE/S", "%", "ETA"
    );
    for (job, cursor) in jobs {
        let (it, recs) = cursor.as_ref().map(|c| (c.iteration, c.records_written)).unwrap_or((-1, 0));
        let total = job.total_records.map(|t| format!("/{t}")).unwrap_or_default();
        let p = progress(&job, recs);
        let dash = || "-".to_owned();
        println!(
            "{:<36} {:<10} {:<13} {:<10} {:>10} {:>12} {:<26} {:>10} {:>6} {:>8}",
            job.id,
            job.status.as_str(),
            format!("{}{}", job.sync_mode.as_str(), if job.reset { "*" } else { "" }),
            job.key.stream,
            it,
            format!("{recs}{total}"),
            bizon_core::time::format_rfc3339(job.updated_at),
            p.rate.map_or_else(dash, |r| format!("{r:.0}")),
            p.percent.map_or_else(dash, |v| format!("{v:.1}")),
            p.eta_s.filter(|_| job.status == JobStatus::Running).map_or_else(dash, |e| format!("{e:.0}s")),
        );
    }
    Ok(())
}

pub fn show(config: &ConfigArgs, job_id: &str) -> Result<(), Failure> {
    let cfg = load(config)?;
    let mut backend = open_backend(&cfg)?;
    let jobs = backend.list_jobs(cfg.job_name(), usize::MAX >> 1).map_err(failed)?;
    let (job, cursor) = jobs
        .into_iter()
        .find(|(j, _)| j.id == job_id)
        .ok_or_else(|| failed(anyhow!("no job `{job_id}` in pipeline `{}`", cfg.job_name())))?;
    let records = cursor.as_ref().map_or(0, |c| c.records_written);
    let p = progress(&job, records);
    let live = serde_json::json!({"records": records, "total": job.total_records, "percent": p.percent,
        "rate_per_s": p.rate, "eta_s": p.eta_s.filter(|_| job.status == JobStatus::Running)});
    let v = serde_json::json!({
        "id": job.id, "pipeline": job.key.pipeline, "source": job.key.source, "stream": job.key.stream,
        "sync_mode": job.sync_mode.as_str(), "reset": job.reset, "status": job.status.as_str(),
        "since": job.since, "pid": job.pid, "total_records": job.total_records, "error": job.error,
        "created_at": bizon_core::time::format_rfc3339(job.created_at),
        "updated_at": bizon_core::time::format_rfc3339(job.updated_at),
        "progress": live,
        "destination_cursor": cursor.map(|c| serde_json::json!({
            "iteration": c.iteration, "pagination": c.pagination, "token": c.token,
            "records_written": c.records_written, "bytes_written": c.bytes_written,
            "watermark": c.watermark, "done": c.done,
        })),
    });
    println!("{}", serde_json::to_string_pretty(&v).map_err(failed)?);
    Ok(())
}

/// A job's progress from what the backend holds: committed records over the time the job has
/// been committing (created → last update), % of the total and the time left at that rate.
struct Progress {
    rate: Option<f64>,
    percent: Option<f64>,
    eta_s: Option<f64>,
}

fn progress(job: &bizon_core::Job, records: u64) -> Progress {
    let secs = (job.updated_at - job.created_at) as f64 / 1e6;
    let rate = (secs > 0.0 && records > 0).then(|| records as f64 / secs);
    let total = job.total_records.filter(|t| *t > 0);
    let percent = total.map(|t| (records as f64 * 100.0 / t as f64).min(100.0));
    let eta_s = match (total, rate) {
        (Some(t), Some(r)) => Some((t.saturating_sub(records)) as f64 / r),
        _ => None,
    };
    Progress { rate, percent, eta_s }
}
