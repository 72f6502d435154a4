//! bizon-connectors: sources, destinations and backends, one folder each, and the config loader
//! that picks them by name. Heavy client libraries live only in this crate.

pub mod backends;
pub mod check;
pub mod config;
#[cfg(test)]
mod conformance;
pub mod descriptor;
pub mod destinations;
pub mod error;
#[cfg(feature = "bigquery")]
pub mod google;
#[cfg(feature = "http")]
pub mod http;
pub mod normalize;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod process;
pub mod pyproc;
pub mod queues;
pub mod raw_json;
pub mod registry;
pub mod sources;
pub mod sslmode;
pub mod transforms;

pub use config::{load, load_with, BizonConfig, LoadOptions};
pub use error::ConfigError;
