//! bizon-testkit (dev-only): the conformance suites every connector and backend runs from its
//! tests, and fixtures for end-to-end tests (unique temp dirs, NDJSON readers, exactly-once checks).

pub mod backend;
pub mod destination;
pub mod fixtures;
pub mod source;
