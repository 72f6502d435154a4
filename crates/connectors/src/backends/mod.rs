//! Backends: where jobs, cursors and watermarks live.

pub mod postgres;
pub mod sqlite;
