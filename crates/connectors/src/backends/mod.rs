//! Backends: where jobs, cursors and watermarks live.

#[cfg(feature = "bigquery")]
pub mod bigquery;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

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
