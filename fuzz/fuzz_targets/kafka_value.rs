#![no_main]
//! The Kafka source's record decoders on arbitrary message values: the schema-registry framing,
//! Avro datums against a schema with every kind of type, and Debezium flattening — errors, never
//! panics.

use std::sync::OnceLock;

use bizon_connectors::sources::kafka::decode::{avro_to_json, debezium_flatten, split_framed, AvroSchema, Origin};
use libfuzzer_sys::fuzz_target;

const SCHEMA: &str = r#"{"type":"record","name":"r","fields":[
  {"name":"l","type":"long"},{"name":"s","type":["null","string"]},{"name":"d","type":"double"},
  {"name":"b","type":"bytes"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
  {"name":"a","type":{"type":"array","items":"int"}},{"name":"m","type":{"type":"map","values":"boolean"}},
  {"name":"f","type":{"type":"fixed","name":"F","size":4}}]}"#;

fn schema() -> &'static AvroSchema {
    static S: OnceLock<AvroSchema> = OnceLock::new();
    S.get_or_init(|| AvroSchema::parse_str(SCHEMA).expect("the fuzz schema parses"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok((_, datum)) = split_framed(data) {
        let _ = avro_to_json(schema(), datum);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = debezium_flatten(v, &Origin { topic: "t", partition: 0, offset: 0 });
    }
});
