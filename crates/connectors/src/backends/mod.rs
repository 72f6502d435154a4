//! Backends: where jobs, cursors and watermarks live.

#[cfg(feature = "bigquery")]
pub mod bigquery;
pub mod bizon_state;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// This host's name (lock holders are named by host and pid).
#[cfg(any(feature = "postgres", feature = "bigquery"))]
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// A held pipeline lock: a thread beats its heartbeat until the guard is dropped, then releases it.
#[cfg(any(feature = "postgres", feature = "bigquery"))]
struct LockGuard {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[cfg(any(feature = "postgres", feature = "bigquery"))]
impl LockGuard {
    /// Call `tick(false)` every `every` on a thread of its own, and `tick(true)` (release) once
    /// the guard is dropped.
    fn spawn(every: std::time::Duration, mut tick: impl FnMut(bool) + Send + 'static) -> bizon_core::Result<Self> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bizon-lock-heartbeat".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::park_timeout(every);
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    tick(false);
                }
                tick(true);
            })
            .map_err(|e| bizon_core::Error::internal(format!("cannot start the lock heartbeat: {e}")))?;
        Ok(LockGuard { stop, handle: Some(handle) })
    }
}

#[cfg(any(feature = "postgres", feature = "bigquery"))]
impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// A lock name is a pipeline, or `<pipeline>#<role>` for the producer and consumer lanes of a
/// broker queue: the pipeline its jobs are recorded under, and how to name the holder.
fn lock_subject(lock: &str) -> (&str, String) {
    match lock.split_once('#') {
        Some((pipeline, role)) => (pipeline, format!("the {} of pipeline `{pipeline}`", role.replace('-', " lane "))),
        None => (lock, format!("pipeline `{lock}`")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_subjects_name_roles_and_lanes() {
        assert_eq!(super::lock_subject("p"), ("p", "pipeline `p`".to_owned()));
        assert_eq!(super::lock_subject("p#producer"), ("p", "the producer of pipeline `p`".to_owned()));
        assert_eq!(super::lock_subject("p#consumer-1"), ("p", "the consumer lane 1 of pipeline `p`".to_owned()));
    }
}
