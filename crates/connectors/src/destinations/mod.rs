//! Destinations and the row layout they share with bizon.

#[cfg(feature = "bigquery")]
pub mod bigquery;
#[cfg(feature = "bigquery")]
pub mod bigquery_streaming;
#[cfg(feature = "bigquery")]
pub mod bigquery_streaming_v2;
pub mod command;
pub mod file;
pub mod logger;
pub mod null;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod router;

use bizon_core::record::json_escape_into;
use bizon_core::time::{write_rfc3339, Rfc3339Writer};
use bizon_core::{BatchMeta, RecordBatch};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// bizon's raw row layout, in column order (DESIGN §4).
pub const BIZON_COLUMNS: [&str; 6] =
    ["bizon_id", "bizon_extracted_at", "bizon_loaded_at", "source_record_id", "source_timestamp", "source_data"];

fn push_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (k * 4)) & 15) as usize]);
    }
}

/// The first 24 hex digits of a page's `bizon_id`s (job digest, iteration); the record's index
/// in the page ([`push_hex`], 8 digits) completes each.
fn bizon_id_head(meta: &BatchMeta) -> Vec<u8> {
    let mut head = Vec::with_capacity(32);
    push_hex(&mut head, meta.job_hash, 16);
    push_hex(&mut head, meta.iteration as u64, 8);
    head
}

/// Append one NDJSON line per record in bizon's row layout:
/// `bizon_id, bizon_extracted_at, bizon_loaded_at, source_record_id, source_timestamp,
/// source_data` (the record as a JSON string, like bizon's file destination writes it).
///
/// `bizon_id` is 32 hex digits: job digest, iteration, index in the page — unique per job and
/// identical when a page is re-delivered, so downstream dedup by `bizon_id` is exact.
pub fn write_rows(out: &mut Vec<u8>, batch: &RecordBatch, range: std::ops::Range<usize>, meta: &BatchMeta) {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"{\"bizon_id\":\"");
    head.extend_from_slice(&bizon_id_head(meta));
    let id_at = head.len();
    let mut times = Vec::with_capacity(96);
    times.extend_from_slice(b"\",\"bizon_extracted_at\":\"");
    write_rfc3339(&mut times, meta.extracted_at);
    times.extend_from_slice(b"\",\"bizon_loaded_at\":\"");
    write_rfc3339(&mut times, meta.loaded_at);
    times.extend_from_slice(b"\",\"source_record_id\":\"");
    let mut ts = Rfc3339Writer::default();
    for i in range {
        let r = batch.get(i);
        out.extend_from_slice(&head[..id_at]);
        push_hex(out, i as u64, 8);
        out.extend_from_slice(&times);
        json_escape_into(out, r.id.as_bytes());
        out.extend_from_slice(b"\",\"source_timestamp\":\"");
        ts.write(out, r.timestamp);
        out.extend_from_slice(b"\",\"source_data\":\"");
        json_escape_into(out, r.data);
        out.extend_from_slice(b"\"}\n");
    }
}

#[cfg(test)]
mod row_tests {
    use super::*;

    #[test]
    fn rows_are_bizon_layout() {
        let mut b = RecordBatch::default();
        b.push("9898", 0, br#"{"id":9898,"name":"bizon","age":26}"#);
        b.push("98", 0, br#"{"id":98,"name":"froggy","age":26}"#);
        let meta = BatchMeta { iteration: 3, extracted_at: 1_000_000, loaded_at: 2_000_000, job_hash: 0xabc };
        let mut out = vec![];
        write_rows(&mut out, &b, 0..b.len(), &meta);
        let lines: Vec<serde_json::Value> =
            out.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        let keys: Vec<_> = lines[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, BIZON_COLUMNS);
        assert_eq!(lines[0]["bizon_id"], "0000000000000abc0000000300000000");
        assert_eq!(lines[1]["bizon_id"], "0000000000000abc0000000300000001");
        assert_eq!(lines[0]["bizon_extracted_at"], "1970-01-01T00:00:01.000000+00:00");
        assert_eq!(lines[1]["source_record_id"], "98");
        assert_eq!(lines[0]["source_data"], r#"{"id":9898,"name":"bizon","age":26}"#);
    }
}
