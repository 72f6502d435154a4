#![no_main]
//! The `.env` parser on arbitrary bytes: pairs, or an error that names a line, never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(message) = bizon_core::config::interp::parse_dotenv(&text) {
        assert!(message.starts_with("line "), "{message}");
    }
});
