//! The two throttles every HTTP connector shares: a request rate (requests per second, spaced
//! evenly) and a concurrency limit (requests in flight). Both are per source, across the threads
//! that fetch pages or children at once.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Spaces request starts `1 / rate` apart; `None` = unlimited.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(requests_per_second: Option<f64>) -> Self {
        let interval = requests_per_second.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
        RateLimiter { interval, next: Mutex::new(Instant::now()) }
    }

    /// Block until this caller may start a request.
    pub fn acquire(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }
}

/// A counting semaphore: at most `max` holders at once.
#[derive(Debug)]
pub struct Permits {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// Held while a request is in flight; released on drop.
pub struct Permit<'a>(&'a Permits);

impl Permits {
    pub fn new(max: usize) -> Self {
        Permits { max: max.max(1), used: Mutex::new(0), freed: Condvar::new() }
    }

    pub fn acquire(&self) -> Permit<'_> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(Some(50.0));
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire();
        }
        // 6 starts at 20 ms spacing: the last one 100 ms after the first.
        assert!(start.elapsed() >= Duration::from_millis(95), "{:?}", start.elapsed());
        let unlimited = RateLimiter::new(None);
        let start = Instant::now();
        for _ in 0..1000 {
            unlimited.acquire();
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn permits_bound_concurrency() {
        let permits = Permits::new(3);
        let inside = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    let _p = permits.acquire();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
