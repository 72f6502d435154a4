//! bizon-testkit (dev-only): the conformance suites every connector and backend runs from its
//! tests, fixtures for end-to-end tests (unique temp dirs, NDJSON readers, exactly-once checks),
//! and in-memory stand-ins for engine tests: a broker with lanes and redelivery, a backend, a
//! fault-injecting backend wrapper, a numbered source and an exactly-once destination.

pub mod backend;
pub mod broker;
pub mod destination;
pub mod fakes;
pub mod faulty;
pub mod fixtures;
pub mod google;
pub mod http;
pub mod memory;
pub mod notion;
pub mod source;
