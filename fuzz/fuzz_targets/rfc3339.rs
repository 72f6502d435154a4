#![no_main]
//! RFC 3339 parsing on arbitrary text: a timestamp that parses is written back (plainly and by
//! the cached writer) as text that parses to the same instant, never a panic.

use bizon_core::time::{format_rfc3339, parse_rfc3339, Rfc3339Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(micros) = parse_rfc3339(text) else { return };
    let written = format_rfc3339(micros);
    assert_eq!(parse_rfc3339(&written), Some(micros), "{text:?} was written as {written}");
    let mut cached = Vec::new();
    Rfc3339Writer::default().write(&mut cached, micros);
    assert_eq!(cached, written.as_bytes());
});
