#![no_main]
//! The config loader on arbitrary text: an error with a location, never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let no_env = |_: &str| None;
        let _ = bizon_connectors::config::load(text, &no_env);
    }
});
