//! The PostgreSQL backend runs the backend conformance suite against the test server
//! (127.0.0.1:5432, trust auth, database `test`; override with BIZON_TEST_PG_HOST / _PORT /
//! _USER / _DB), each test in a schema of its own, dropped at the end.

use std::time::Duration;

use bizon_core::Backend;
use bizon_testkit::backend::run_suite;

use super::PostgresBackend;
use crate::pg::{PgConnection, SslMode};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A schema unique to the test (pid, time), dropped with everything in it on drop.
struct Schema(PgConnection);

impl Schema {
    fn new(label: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Schema(PgConnection {
            host: env("BIZON_TEST_PG_HOST", "127.0.0.1"),
            port: env("BIZON_TEST_PG_PORT", "5432").parse().expect("BIZON_TEST_PG_PORT"),
            database: env("BIZON_TEST_PG_DB", "test"),
            username: env("BIZON_TEST_PG_USER", "postgres"),
            password: None,
            schema: format!("bizon_t_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000),
            sslmode: SslMode::Disable,
            sslrootcert: None,
        })
    }

    fn backend(&self) -> Box<dyn Backend> {
        let b = PostgresBackend::open(self.0.clone(), Duration::from_secs(30));
        Box::new(b.expect("PostgreSQL must be running (scripts/test.sh starts it)"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.connect() {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", crate::pg::ident(&self.0.schema)));
        }
    }
}

#[test]
fn conformance() {
    let schema = Schema::new("backend_suite");
    run_suite(&|| schema.backend());
}

#[test]
fn racing_first_commits_of_a_chain_store_one() {
    use bizon_testkit::backend::{cursor, job};
    let schema = Schema::new("backend_race");
    let mut setup = schema.backend();
    setup.create_job(&job("race", "race", 1)).expect("create");
    let results: Vec<bool> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let mut b = schema.backend();
                s.spawn(move || b.commit_destination_cursor("race", None, &cursor(-1)).is_ok())
            })
            .collect();
        racers.into_iter().map(|h| h.join().expect("racer")).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "one start wins, the others are forks: {results:?}");
    assert_eq!(setup.destination_cursor("race").expect("read"), Some(cursor(-1)));
}
