//! How a page travels through an external queue (RabbitMQ, Kafka): one message per page, the
//! batch's columns copied as they are (no per-record encoding), with the job and iteration it
//! belongs to so a consumer can drop what it already committed.
//!
//! Layout (integers little-endian): `BZQ1`, kind (0 page, 1 end of stream), job id (u16 length +
//! UTF-8), iteration (i64), extracted_at (i64), pagination JSON and cursor_max JSON (u32 length +
//! bytes, length 0 = none), record count n (u32), n payload end offsets (u32), n id end offsets
//! (u32), n timestamps (i64), ids (u32 length + bytes), payloads (u32 length + bytes), routes
//! (u32 count, 0 or n, + that many u16).

use crate::{ErrorKind, Json, Page, RecordBatch};

const MAGIC: &[u8; 4] = b"BZQ1";

/// Why a queue message (or the batch columns it carries) could not be decoded. The bytes come
/// from outside the process, so every variant is a corrupt or foreign message: retrying the same
/// message cannot help ([`WireError::kind`] is always [`ErrorKind::Permanent`]).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a bizon queue message (bad magic)")]
    BadMagic,
    #[error("truncated: {expected} bytes expected, {left} left")]
    Truncated { expected: usize, left: usize },
    #[error("job id is not UTF-8")]
    JobIdNotUtf8,
    #[error("bad JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    #[error("record count overflows")]
    RecordCountOverflows,
    #[error("route count overflows")]
    RouteCountOverflows,
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A batch column whose length does not match the record count.
    #[error("{records} records but {routes} routes")]
    RouteColumn { records: usize, routes: usize },
    #[error("{records} timestamps but {payloads} payloads and {ids} ids")]
    ColumnLengths { records: usize, payloads: usize, ids: usize },
    /// End offsets (`what`: `payload` or `id`) that go backwards or past the column's bytes.
    #[error("{what} offsets out of order or past the {len} bytes")]
    OffsetsOutOfOrder { what: &'static str, len: usize },
    #[error("{what} offsets end at {end}, not at the {len} bytes")]
    OffsetsShort { what: &'static str, end: u32, len: usize },
    #[error("a record id is not UTF-8: {0}")]
    IdNotUtf8(#[source] std::str::Utf8Error),
}

impl WireError {
    /// Always [`ErrorKind::Permanent`]: a corrupt message stays corrupt on redelivery.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Permanent
    }
}

impl From<WireError> for crate::Error {
    fn from(e: WireError) -> Self {
        crate::Error::new(e.kind(), e.to_string())
    }
}

/// One message on an external queue.
#[derive(Debug)]
pub struct QueueMessage {
    pub job_id: String,
    pub iteration: i64,
    /// `None`: the producer stopped at `max_iterations` (the end of the stream without a last page).
    pub page: Option<Page>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encode a page (or, with `None`, the end-of-stream marker) of `job_id`.
pub fn encode(job_id: &str, iteration: i64, page: Option<&Page>) -> Vec<u8> {
    let size = page.map_or(0, |p| p.records.byte_len() + p.records.len() * 8) + 128;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    out.push(u8::from(page.is_none()));
    out.extend_from_slice(&(job_id.len() as u16).to_le_bytes());
    out.extend_from_slice(job_id.as_bytes());
    out.extend_from_slice(&iteration.to_le_bytes());
    let Some(page) = page else { return out };
    out.extend_from_slice(&page.extracted_at.to_le_bytes());
    put_bytes(&mut out, &serde_json::to_vec(&page.next).unwrap_or_default());
    let cursor_max = page.cursor_max.as_ref().map(|c| serde_json::to_vec(c).unwrap_or_default());
    put_bytes(&mut out, cursor_max.as_deref().unwrap_or_default());
    let c = page.records.columns();
    out.extend_from_slice(&(c.timestamps.len() as u32).to_le_bytes());
    for e in c.data_ends.iter().chain(c.id_ends) {
        out.extend_from_slice(&e.to_le_bytes());
    }
    for t in c.timestamps {
        out.extend_from_slice(&t.to_le_bytes());
    }
    put_bytes(&mut out, c.ids);
    put_bytes(&mut out, c.data);
    out.extend_from_slice(&(c.routes.len() as u32).to_le_bytes());
    for r in c.routes {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { expected: n, left: self.buf.len() });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn json(&mut self) -> Result<Option<Json>, WireError> {
        let b = self.bytes()?;
        if b.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(b).map(Some).map_err(WireError::BadJson)
    }
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, WireError> {
        let b = self.take(n.checked_mul(4).ok_or(WireError::RecordCountOverflows)?)?;
        Ok(b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
}

/// Decode a message; every length and offset is checked (the bytes come from outside).
pub fn decode(buf: &[u8]) -> Result<QueueMessage, WireError> {
    let mut r = Reader { buf };
    if r.take(4)? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let end = r.take(1)?[0];
    let n = r.u16()? as usize;
    let job_id = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| WireError::JobIdNotUtf8)?;
    let iteration = r.i64()?;
    if end == 1 {
        return Ok(QueueMessage { job_id, iteration, page: None });
    }
    let extracted_at = r.i64()?;
    let next = r.json()?.unwrap_or(Json::Null);
    let cursor_max = r.json()?;
    let n = r.u32()? as usize;
    let data_ends = r.u32s(n)?;
    let id_ends = r.u32s(n)?;
    let ts = r.take(n.checked_mul(8).ok_or(WireError::RecordCountOverflows)?)?;
    let timestamps = ts.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let ids = r.bytes()?.to_vec();
    let data = r.bytes()?.to_vec();
    let nroutes = r.u32()? as usize;
    let routes = r.take(nroutes.checked_mul(2).ok_or(WireError::RouteCountOverflows)?)?;
    let routes = routes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    if !r.buf.is_empty() {
        return Err(WireError::TrailingBytes(r.buf.len()));
    }
    let records = RecordBatch::from_columns(data, data_ends, ids, id_ends, timestamps, routes)?;
    Ok(QueueMessage { job_id, iteration, page: Some(Page { records, next, cursor_max, extracted_at }) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page() -> Page {
        let mut records = RecordBatch::with_capacity(3, 64);
        records.push("a", 1, br#"{"id":1}"#);
        records.push("", -5, b"{}");
        records.push("été", i64::MAX, br#"{"s":"\u00e9"}"#);
        records.push_routed(crate::record::DEAD_LETTER, "bad", 0, |b| b.extend_from_slice(b"null"));
        Page { records, next: json!({"cursor": "x"}), cursor_max: Some(json!(42)), extracted_at: 1_700_000_000 }
    }

    #[test]
    fn a_page_round_trips() {
        let p = page();
        let m = decode(&encode("job-1", 7, Some(&p))).unwrap();
        assert_eq!((m.job_id.as_str(), m.iteration), ("job-1", 7));
        let q = m.page.unwrap();
        assert_eq!((q.next, q.cursor_max, q.extracted_at), (p.next, p.cursor_max, p.extracted_at));
        assert_eq!((q.records.route(2), q.records.route(3)), (0, crate::record::DEAD_LETTER));
        let got: Vec<_> = q.records.iter().map(|r| (r.id.to_owned(), r.timestamp, r.data.to_vec())).collect();
        let want: Vec<_> = p.records.iter().map(|r| (r.id.to_owned(), r.timestamp, r.data.to_vec())).collect();
        assert_eq!(got, want);
        let end = decode(&encode("job-1", 9, None)).unwrap();
        assert!(end.page.is_none() && end.iteration == 9);
    }

    #[test]
    fn corrupt_messages_are_errors_never_panics() {
        let good = encode("job", 1, Some(&page()));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        let e = decode(&bad).unwrap_err();
        assert!(matches!(e, WireError::BadMagic) && e.to_string().contains("magic"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Permanent);
        // flip every byte in turn: decode may succeed (a changed timestamp) but must not panic
        for i in 0..good.len() {
            let mut m = good.clone();
            m[i] ^= 0xff;
            let _ = decode(&m);
        }
        let mut extra = good;
        extra.push(0);
        let e = decode(&extra).unwrap_err();
        assert!(matches!(e, WireError::TrailingBytes(1)) && e.to_string().contains("trailing"), "{e}");
    }
}
