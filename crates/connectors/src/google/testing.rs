//! Test support: the local BigQuery emulator (`scripts/bqemulator.sh`, started on first use), a
//! local token endpoint that checks the JWT's signature (testkit's), and datasets removed after the test.

use std::sync::atomic::{AtomicU64, Ordering};

pub use bizon_testkit::google::{emulator, TokenServer};

use super::auth::Credentials;
use super::bigquery::BigQuery;

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
