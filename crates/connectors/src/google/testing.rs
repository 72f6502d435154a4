//! Test support: the local BigQuery emulator (`scripts/bqemulator.sh`, started on first use), a
//! local token endpoint that checks the JWT's signature (testkit's), and datasets removed after the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub use bizon_testkit::google::TokenServer;

use super::auth::Credentials;
use super::bigquery::BigQuery;

/// The emulator's REST URL (`BQEMU_URL`, else the one `scripts/bqemulator.sh` starts).
pub fn emulator() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("BQEMU_URL") {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/bqemulator.sh");
        let out = std::process::Command::new(script).output().expect("scripts/bqemulator.sh runs");
        assert!(
            out.status.success(),
            "the BigQuery emulator did not start (scripts/bqemulator.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_owned()
    })
    .clone()
}

/// A dataset of its own in the emulator, deleted (with its tables) on drop.
pub struct Dataset {
    pub name: String,
    pub bq: BigQuery,
}

impl Dataset {
    pub fn new(label: &str, tokens: &TokenServer) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{label}_{}_{}_{}",
            std::process::id(),
            bizon_core::time::now_micros() % 1_000_000_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let credentials = Credentials::from_config(Some(&tokens.key)).expect("test key");
        let bq = BigQuery::new(credentials, Some(&emulator()), "p");
        bq.create_dataset("p", &name, Some("US")).expect("create dataset");
        Dataset { name, bq }
    }

    /// Rows of a query, each cell as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let sql = sql.replace("{ds}", &format!("p.{}", self.name));
        self.bq
            .query(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)).collect())
            .collect()
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        let _ = self.bq.delete_dataset("p", &self.name);
    }
}
