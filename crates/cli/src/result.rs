//! `bizon run --result-json PATH`: the run's outcome as JSON, in bizon's layout (`status`,
//! `failure_class`, `job_id`, `records_written`, `started_at`, `duration_s`, `error`). The file says
//! `running` from the start, so a run killed from outside leaves that behind rather than an older
//! outcome; every write goes to `PATH.tmp` and is renamed over `PATH`, so a reader never sees a
//! half-written file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bizon_core::Json;
use bizon_engine::{Outcome, RunSummary};
use serde_json::json;

use crate::Failure;

pub struct ResultFile {
    path: PathBuf,
    started_at: String,
    started: Instant,
}

impl ResultFile {
    /// Write `running` to `path`; an unwritable path is a usage error before anything runs.
    pub fn start(path: &Path) -> Result<Self, Failure> {
        let file = ResultFile {
            path: path.to_owned(),
            started_at: bizon_core::time::format_rfc3339(bizon_core::time::now_micros()),
            started: Instant::now(),
        };
        file.write(file.body("running", None, None, None, None))
            .map_err(|e| crate::usage(anyhow::anyhow!("--result-json {}: {e}", path.display())))?;
        Ok(file)
    }

    /// Write the outcome; a failure to write it is logged, never changes the run's exit code.
    pub fn finish(&self, outcome: &Result<Option<RunSummary>, Failure>) {
        let body = match outcome {
            Ok(Some(s)) => match s.outcome {
                Outcome::Stopped => self.body(
                    "failure",
                    Some("killed"),
                    Some(&s.job_id),
                    Some(s.job_records),
                    Some("stopped by a signal; the job is resumable".into()),
                ),
                _ => self.body("success", None, Some(&s.job_id), Some(s.job_records), None),
            },
            // The process runner's supervisor: its children wrote the job.
            Ok(None) => self.body("success", None, None, None, None),
            Err(f) => {
                let class = if f.code == 2 { "config" } else { "unknown" };
                self.body("failure", Some(class), None, None, Some(format!("{:#}", f.error)))
            }
        };
        if let Err(e) = self.write(body) {
            say!("bizon: cannot write --result-json {}: {e}", self.path.display());
        }
    }

    fn body(
        &self,
        status: &str,
        failure_class: Option<&str>,
        job_id: Option<&str>,
        records_written: Option<u64>,
        error: Option<String>,
    ) -> Json {
        let running = status == "running";
        json!({
            "status": status,
            "failure_class": failure_class,
            "job_id": job_id,
            "producer": null,
            "consumer": null,
            "stream": null,
            "records_written": records_written,
            "started_at": self.started_at,
            "duration_s": (!running).then(|| (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            "error": error.map(|e| bizon_core::redact::redact(&e).into_owned()),
        })
    }

    fn write(&self, body: Json) -> std::io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let text = serde_json::to_string_pretty(&body).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}
