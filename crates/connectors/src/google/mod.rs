//! Google Cloud: credentials and tokens ([`auth`]), the BigQuery REST client ([`bigquery`]),
//! what the BigQuery destinations share about tables ([`table`]) and staged, exactly-once
//! publication ([`staging`]), Cloud Storage uploads ([`storage`], [`upload`]), the Storage Write
//! API over gRPC ([`storage_write`]) and its protobuf rows ([`proto_rows`]), `gsm://` secrets
//! ([`secrets`]).

pub mod arrow_rows;
pub mod auth;
pub mod bigquery;
pub mod proto_rows;
pub mod secrets;
pub mod staging;
pub mod storage;
pub mod storage_write;
pub mod table;
#[cfg(test)]
pub mod testing;
pub mod upload;

/// Text as one URL path segment: everything but RFC 3986's unreserved characters percent-encoded
/// (a Cloud Storage object name with its `/`, a Sheets range `'Sheet 1'!2:5`).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_escape_all_but_unreserved_characters() {
        assert_eq!(super::path_segment("src/stream/a b.parquet"), "src%2Fstream%2Fa%20b.parquet");
        assert_eq!(super::path_segment("'Sheet 1'!2:5"), "%27Sheet%201%27%212%3A5");
    }
}
