//! bizon-core: the vocabulary every other crate speaks.
//!
//! Records travel as [`RecordBatch`]es (bytes, not objects) from a [`Source`] through the engine's
//! queue to a [`Destination`]; progress is kept by a [`Backend`] as chained destination cursors.
//! Nothing here does I/O, so it builds fast and is easy to test.

pub mod config;
pub mod error;
pub mod record;
pub mod redact;
pub mod suggest;
pub mod time;
pub mod traits;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
pub use record::{Page, RecordBatch};
pub use traits::*;

/// Pagination state, cursors and commit tokens are plain JSON so every backend can store them.
pub type Json = serde_json::Value;
