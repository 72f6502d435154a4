#![no_main]
//! The PostgreSQL destination's field scanner against serde_json: on any input it returns spans or
//! an error, never panics; on every JSON object serde_json accepts (keys unique and without
//! escapes) it finds every key, and each raw value token parses to serde_json's value.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scanned = bizon_connectors::destinations::postgres::scan_fields(data);
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let fields = scanned.unwrap_or_else(|e| panic!("serde_json accepts it, the scanner says: {e}"));
    if fields.len() != map.len() || fields.iter().any(|(k, _)| k.contains(&b'\\')) {
        return; // duplicate keys (serde_json keeps the last) or escaped keys (compared raw)
    }
    for (key, raw) in &fields {
        let key = std::str::from_utf8(key).expect("serde_json accepted the key");
        let parsed: serde_json::Value = serde_json::from_slice(raw)
            .unwrap_or_else(|e| panic!("value of `{key}` is not one JSON token: {e}"));
        assert_eq!(Some(&parsed), map.get(key), "value of `{key}`");
    }
});
