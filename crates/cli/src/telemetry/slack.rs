//! Slack alerts (`alerting.type: slack`): a failed run, a job that stopped making progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bizon_core::config::AlertingConfig;
use bizon_engine::progress::Counters;

use super::{sleep_or_stop, Labels};

/// The log levels that alert when `alerting.log_levels` is not set (bizon's default).
const DEFAULT_LOG_LEVELS: [&str; 1] = ["ERROR"];
/// Seconds without a record written or a commit before the stuck-run alert, when
/// `stuck_after_seconds` is not set (0 turns the watch off).
const DEFAULT_STUCK_AFTER_SECONDS: u64 = 900;
/// How often the stuck-run watcher looks at the last progress time.
const STUCK_CHECK: Duration = Duration::from_millis(200);
/// How long one webhook POST may take, connection included, before the alert is given up.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack incoming-webhook alerts: the run failed, or a running job stopped making progress.
#[derive(Clone)]
pub struct Alerter {
    url: String,
    labels: Labels,
    on_failure: bool,
    pub stuck_after: Option<Duration>,
}

impl Alerter {
    pub fn new(a: &AlertingConfig, labels: &Labels) -> Self {
        let levels: Vec<String> = a.log_levels.clone().unwrap_or_else(|| DEFAULT_LOG_LEVELS.map(String::from).to_vec());
        let on_failure = levels
            .iter()
            .any(|l| matches!(l.to_ascii_uppercase().as_str(), "ERROR" | "CRITICAL" | "WARNING" | "INFO" | "DEBUG"));
        let stuck = a.config.stuck_after_seconds.unwrap_or(DEFAULT_STUCK_AFTER_SECONDS);
        Alerter {
            url: a.config.webhook_url.clone(),
            labels: labels.clone(),
            on_failure,
            stuck_after: (stuck > 0).then(|| Duration::from_secs(stuck)),
        }
    }

    fn post(&self, level: &str, job: &str, message: &str) {
        let l = &self.labels;
        let text = format!(
            ":rotating_light: *Bizon Pipeline Alert* :rotating_light:\n\n*Sync*: `{}`\n*Source*: `{}` - `{}`\n*Destination*: `{}`\n*Job*: `{job}`\n*Level:* `{level}`\n\n*Message:*\n```{message}```\nSee `bizon job show {job}` for the job's cursor and history.",
            l.pipeline, l.source, l.stream, l.destination
        );
        let body = serde_json::json!({ "text": text }).to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(WEBHOOK_TIMEOUT)).build().into();
        match agent.post(&self.url).header("Content-Type", "application/json").send(body.as_bytes()) {
            Ok(r) if r.status().is_success() => tracing::info!(level, "alert sent to Slack"),
            // the webhook URL is a secret: never in a message
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "the Slack webhook refused the alert"),
            Err(e) => tracing::warn!(error = %redact(&e.to_string(), &self.url), "cannot send the alert to Slack"),
        }
    }

    pub fn failure(&self, job: &str, error: &str) {
        if self.on_failure {
            self.post("ERROR", job, &format!("The run failed: {error}"));
        }
    }
}

fn redact(s: &str, secret: &str) -> String {
    s.replace(secret, "<webhook url>")
}

pub fn watch_stuck(c: &Counters, stop: &AtomicBool, a: &Alerter, after: Duration) {
    let mut alerted = false;
    while !sleep_or_stop(stop, STUCK_CHECK) {
        let last = c.last_progress_micros.load(Ordering::Relaxed) as i64;
        if last == 0 {
            continue;
        }
        let idle = Duration::from_micros((bizon_core::time::now_micros() - last).max(0) as u64);
        if idle >= after && !alerted {
            a.post(
                "WARNING",
                &c.job(),
                &format!("No progress for {} s: no record written and no commit.", idle.as_secs()),
            );
            alerted = true;
        } else if idle < after {
            alerted = false;
        }
    }
}
