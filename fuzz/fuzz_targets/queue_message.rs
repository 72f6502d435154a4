#![no_main]
//! A page read off a broker queue (bytes from outside the process): decoded and checked, never a
//! panic; what decodes re-encodes to the same page.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = bizon_core::wire::decode(data) {
        let again = bizon_core::wire::encode(&m.job_id, m.iteration, m.page.as_ref());
        let back = bizon_core::wire::decode(&again).expect("a decoded page re-encodes");
        assert_eq!(back.page.map(|p| p.records.len()), m.page.map(|p| p.records.len()));
    }
});
