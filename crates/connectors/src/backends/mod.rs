//! Backends: where jobs, cursors and watermarks live.

pub mod sqlite;
