//! The HTTP policy of one source, from `source.http` (bizon's keys and defaults) and the
//! connector's own defaults.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bizon_core::config::{HttpConfig, HttpTimeout};

/// bizon's `status_forcelist` default.
pub const RETRY_STATUSES: &[u16] = &[429, 500, 502, 503, 504, 520, 522, 524];

/// The resolved policy.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: u32,
    pub backoff_factor: f64,
    /// Cap of one wait (backoff or `Retry-After`).
    pub max_backoff: Duration,
    pub retry_statuses: Vec<u16>,
    pub rate_limit: Option<f64>,
    pub concurrency: usize,
    pub max_response_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_retries: 10,
            backoff_factor: 2.0,
            max_backoff: Duration::from_secs(120),
            retry_statuses: RETRY_STATUSES.to_vec(),
            rate_limit: None,
            concurrency: 1,
            max_response_bytes: 256 << 20,
        }
    }
}

impl HttpSettings {
    /// `source.http` over `defaults` (a connector may set its own, e.g. a rate limit).
    pub fn from_config(config: Option<&HttpConfig>, defaults: HttpSettings) -> Self {
        let mut s = defaults;
        let Some(c) = config else { return s };
        match c.timeout {
            Some(HttpTimeout::Both(t)) => {
                s.connect_timeout = secs(t);
                s.read_timeout = secs(t);
            }
            Some(HttpTimeout::Pair(c, r)) => {
                s.connect_timeout = secs(c);
                s.read_timeout = secs(r);
            }
            None => {}
        }
        if let Some(r) = &c.retries {
            s.max_retries = r.total.unwrap_or(s.max_retries);
            s.backoff_factor = r.backoff_factor.unwrap_or(s.backoff_factor);
            if let Some(l) = &r.status_forcelist {
                s.retry_statuses = l.clone();
            }
            if let Some(m) = r.retry_after_max {
                s.max_backoff = secs(m);
            }
        }
        s.rate_limit = c.rate_limit.or(s.rate_limit);
        s.concurrency = c.concurrency.unwrap_or(s.concurrency).max(1);
        if let Some(mb) = c.max_response_mb {
            s.max_response_bytes = mb.max(1) << 20;
        }
        s
    }

    /// The wait before retry `attempt` (0-based): factor × 2^attempt, capped, with ±25 % jitter
    /// so a fleet of clients does not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff_factor * 2f64.powi(attempt.min(30) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        secs(capped * (0.75 + 0.5 * jitter()))
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 0.0 })
}

/// A number in [0, 1) that differs between calls and threads (no cryptographic use).
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let s = HttpSettings { backoff_factor: 1.0, max_backoff: Duration::from_secs(10), ..Default::default() };
        for attempt in 0..4 {
            let base = 2f64.powi(attempt as i32);
            let d = s.backoff(attempt).as_secs_f64();
            assert!(d >= base * 0.75 && d <= base * 1.25, "attempt {attempt}: {d}");
        }
        assert!(s.backoff(20).as_secs_f64() <= 12.5);
    }
}
