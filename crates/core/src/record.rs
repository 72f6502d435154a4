//! Records as bytes: a [`RecordBatch`] keeps every record's JSON payload in one buffer and every
//! id in another, so a page of N records costs a handful of allocations, not N objects. Batches
//! (one per source page) are what crosses threads and queues.

use crate::wire::WireError;
use crate::Json;

/// One page of records, columnar: ids, source timestamps and JSON payloads.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    data: Vec<u8>,
    data_ends: Vec<u32>,
    ids: Vec<u8>,
    id_ends: Vec<u32>,
    timestamps: Vec<i64>,
    /// Per-record route (the `streams:` entry, or [`DEAD_LETTER`]); empty = every record on route 0.
    routes: Vec<u16>,
}

/// The route of a record that failed to decode: it goes to the dead-letter target.
pub const DEAD_LETTER: u16 = u16::MAX;

/// A batch's columns: payloads and their end offsets, ids and their end offsets, timestamps.
pub struct Columns<'a> {
    pub data: &'a [u8],
    pub data_ends: &'a [u32],
    pub ids: &'a [u8],
    pub id_ends: &'a [u32],
    pub timestamps: &'a [i64],
    /// Empty when every record is on route 0.
    pub routes: &'a [u16],
}

/// A borrowed view of one record in a batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// The record's id in the source (bizon's `source_record_id`).
    pub id: &'a str,
    /// Source timestamp, µs since the epoch (bizon's `source_timestamp`).
    pub timestamp: i64,
    /// The record as one JSON document (bizon's `source_data`).
    pub data: &'a [u8],
}

impl RecordBatch {
    pub fn with_capacity(records: usize, data_bytes: usize) -> Self {
        RecordBatch {
            data: Vec::with_capacity(data_bytes),
            data_ends: Vec::with_capacity(records),
            ids: Vec::with_capacity(records * 8),
            id_ends: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
            routes: Vec::new(),
        }
    }

    /// Append a record on `route` (a `streams:` entry or [`DEAD_LETTER`]).
    pub fn push_routed(&mut self, route: u16, id: &str, timestamp: i64, write_data: impl FnOnce(&mut Vec<u8>)) {
        if route != 0 || !self.routes.is_empty() {
            self.routes.resize(self.len(), 0); // the records before were all on route 0
            self.routes.push(route);
        }
        self.push_with(id, timestamp, write_data);
    }

    /// The route of record `i`.
    pub fn route(&self, i: usize) -> u16 {
        self.routes.get(i).copied().unwrap_or(0)
    }

    /// True when some record is on a route other than 0.
    pub fn is_routed(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The records of each route, in order of first appearance (one batch when unrouted).
    pub fn split_routes(&self) -> Vec<(u16, RecordBatch)> {
        let mut out: Vec<(u16, RecordBatch)> = Vec::new();
        for (i, r) in self.iter().enumerate() {
            let route = self.route(i);
            let at = match out.iter().position(|(k, _)| *k == route) {
                Some(at) => at,
                None => {
                    out.push((route, RecordBatch::with_capacity(self.len(), 0)));
                    out.len() - 1
                }
            };
            out[at].1.push_routed(route, r.id, r.timestamp, |o| o.extend_from_slice(r.data));
        }
        out
    }

    /// The route every record is on, or `None` when they differ (or the batch is empty).
    pub fn single_route(&self) -> Option<u16> {
        let first = if self.is_empty() { return None } else { self.route(0) };
        self.routes.iter().all(|r| *r == first).then_some(first)
    }

    /// Append a record whose JSON payload is written by `write_data` into the shared buffer.
    /// The payload must be one valid JSON document.
    pub fn push_with(&mut self, id: &str, timestamp: i64, write_data: impl FnOnce(&mut Vec<u8>)) {
        self.ids.extend_from_slice(id.as_bytes());
        self.id_ends.push(self.ids.len() as u32);
        self.timestamps.push(timestamp);
        write_data(&mut self.data);
        self.data_ends.push(self.data.len() as u32);
    }

    /// Append a record from an already serialized JSON payload.
    pub fn push(&mut self, id: &str, timestamp: i64, data: &[u8]) {
        self.push_with(id, timestamp, |buf| buf.extend_from_slice(data));
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Bytes of payload and ids held: what the queue and buffers account for.
    pub fn byte_len(&self) -> usize {
        self.data.len() + self.ids.len() + self.timestamps.len() * 16
    }

    pub fn get(&self, i: usize) -> RecordRef<'_> {
        let span = |ends: &[u32], i: usize| {
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            start..ends[i] as usize
        };
        let id = &self.ids[span(&self.id_ends, i)];
        RecordRef {
            // SAFETY: `ids` only ever grows by whole `&str`s (`push_with`) and `id_ends` marks
            // their boundaries, so every span is valid UTF-8.
            id: unsafe { std::str::from_utf8_unchecked(id) },
            timestamp: self.timestamps[i],
            data: &self.data[span(&self.data_ends, i)],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// The columns, for encoding the batch on a queue.
    pub fn columns(&self) -> Columns<'_> {
        Columns {
            data: &self.data,
            data_ends: &self.data_ends,
            ids: &self.ids,
            id_ends: &self.id_ends,
            timestamps: &self.timestamps,
            routes: &self.routes,
        }
    }

    /// Rebuild a batch from columns read off a queue, checking every invariant `get` relies on
    /// (the bytes come from outside the process).
    pub fn from_columns(
        data: Vec<u8>,
        data_ends: Vec<u32>,
        ids: Vec<u8>,
        id_ends: Vec<u32>,
        timestamps: Vec<i64>,
        routes: Vec<u16>,
    ) -> Result<Self, WireError> {
        let n = timestamps.len();
        if !routes.is_empty() && routes.len() != n {
            return Err(WireError::RouteColumn { records: n, routes: routes.len() });
        }
        if data_ends.len() != n || id_ends.len() != n {
            return Err(WireError::ColumnLengths { records: n, payloads: data_ends.len(), ids: id_ends.len() });
        }
        let check_ends = |what: &'static str, ends: &[u32], len: usize| {
            let mut prev = 0u32;
            for &e in ends {
                if e < prev || e as usize > len {
                    return Err(WireError::OffsetsOutOfOrder { what, len });
                }
                prev = e;
            }
            if prev as usize != len {
                return Err(WireError::OffsetsShort { what, end: prev, len });
            }
            Ok(())
        };
        check_ends("payload", &data_ends, data.len())?;
        check_ends("id", &id_ends, ids.len())?;
        let mut start = 0;
        for &end in &id_ends {
            std::str::from_utf8(&ids[start..end as usize]).map_err(WireError::IdNotUtf8)?;
            start = end as usize;
        }
        Ok(RecordBatch { data, data_ends, ids, id_ends, timestamps, routes })
    }
}

/// What one call to a source returns: one iteration's records and the pagination after it.
#[derive(Debug, Default)]
pub struct Page {
    pub records: RecordBatch,
    /// Pagination to pass to the next call; `Null` or `{}` means the stream is exhausted
    /// (bizon's empty `next_pagination`).
    pub next: Json,
    /// Largest `cursor_field` value in this page, when the source knows it cheaply; otherwise
    /// the engine extracts it from the payloads in incremental mode.
    pub cursor_max: Option<Json>,
    /// Microseconds since the epoch when the page was extracted (bizon_extracted_at).
    pub extracted_at: i64,
}

impl Page {
    pub fn is_last(&self) -> bool {
        pagination_done(&self.next)
    }
}

/// True when a pagination value means "no more pages".
pub fn pagination_done(p: &Json) -> bool {
    match p {
        Json::Null => true,
        Json::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Order two cursor values: numbers numerically, everything else by its string form
/// (ISO-8601 timestamps in one format order correctly as strings).
pub fn cursor_cmp(a: &Json, b: &Json) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => {
            let s = |v: &Json| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            s(a).cmp(&s(b))
        }
    }
}

/// The larger of two optional cursor values. Two objects are vectors of independent cursors
/// (e.g. Kafka offsets per topic and partition): they merge key by key.
pub fn cursor_max(a: Option<Json>, b: Option<Json>) -> Option<Json> {
    match (a, b) {
        (Some(Json::Object(mut x)), Some(Json::Object(y))) => {
            for (k, v) in y {
                let merged = cursor_max(x.remove(&k), Some(v));
                x.insert(k, merged.unwrap_or(Json::Null));
            }
            Some(Json::Object(x))
        }
        (Some(x), Some(y)) => Some(if cursor_cmp(&x, &y).is_ge() { x } else { y }),
        (x, None) => x,
        (None, y) => y,
    }
}

const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Mask of the bytes of `w` that are `"`, `\\` or a control character (< 0x20): the lowest set
/// bit marks the first such byte exactly (higher bits may be borrow artefacts).
#[inline]
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (below_space | quote | backslash) & HIGH
}

/// Append `s` to `out` as the inside of a JSON string (no surrounding quotes).
/// Input is UTF-8 bytes; only `"`, `\` and control characters are escaped (the same bytes
/// serde_json produces). This is the hot loop of every NDJSON row: words of 8 bytes are copied
/// unconditionally and the output pointer only advances past the clean prefix, so a clean run
/// costs one load, one store and a mask per 8 bytes.
pub fn json_escape_into(out: &mut Vec<u8>, s: &[u8]) {
    // Room for every byte doubled (`\"`, `\\`, `\n`…) plus one word of overshoot. A control
    // character without a short escape needs 6 bytes: the safe path below takes over then.
    out.reserve(s.len() * 2 + 8);
    let base_len = out.len();
    let mut i = 0;
    let mut written = 0;
    {
        let dst = out.spare_capacity_mut();
        while let Some(word) = s.get(i..i + 8) {
            let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
            // written <= 2 * i, so written + 8 <= 2 * s.len() + 8 fits the reservation.
            let room = &mut dst[written..written + 8];
            // SAFETY: `room` is 8 bytes of spare capacity (bounds checked by the slice above);
            // an unaligned store of one u64 writes exactly those bytes.
            unsafe { room.as_mut_ptr().cast::<u64>().write_unaligned(w.to_le()) };
            let m = escape_mask(w);
            if m == 0 {
                i += 8;
                written += 8;
                continue;
            }
            let k = (m.trailing_zeros() / 8) as usize;
            i += k;
            written += k;
            match ESCAPE[s[i] as usize] {
                b'u' => break,
                e => {
                    dst[written].write(b'\\');
                    dst[written + 1].write(e);
                    written += 2;
                    i += 1;
                }
            }
        }
    }
    // SAFETY: the first `written` spare bytes were initialized by the loop above.
    unsafe { out.set_len(base_len + written) };
    let mut start = i;
    for (k, &b) in s.iter().enumerate().skip(i) {
        if ESCAPE[b as usize] != 0 {
            push_escaped(out, &s[start..k], b);
            start = k + 1;
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// Append the clean run `before`, then the escape sequence of `b`.
#[inline]
fn push_escaped(out: &mut Vec<u8>, before: &[u8], b: u8) {
    out.extend_from_slice(before);
    match ESCAPE[b as usize] {
        b'u' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_records() {
        let mut b = RecordBatch::default();
        b.push("1", 10, br#"{"a":1}"#);
        b.push_with("22", 20, |buf| buf.extend_from_slice(b"[]"));
        assert_eq!(b.len(), 2);
        let r: Vec<_> = b.iter().map(|r| (r.id, r.timestamp, r.data.to_vec())).collect();
        assert_eq!(r[0], ("1", 10, br#"{"a":1}"#.to_vec()));
        assert_eq!(r[1], ("22", 20, b"[]".to_vec()));
    }

    #[test]
    fn routes_split_a_batch_in_order_of_first_appearance() {
        let mut b = RecordBatch::default();
        b.push("a", 1, b"1");
        b.push_routed(2, "b", 2, |o| o.extend_from_slice(b"2"));
        b.push_routed(0, "c", 3, |o| o.extend_from_slice(b"3"));
        b.push_routed(DEAD_LETTER, "d", 4, |o| o.extend_from_slice(b"4"));
        assert_eq!((b.route(0), b.route(1), b.route(3)), (0, 2, DEAD_LETTER));
        let parts: Vec<(u16, Vec<String>)> =
            b.split_routes().iter().map(|(k, p)| (*k, p.iter().map(|r| r.id.to_owned()).collect())).collect();
        let want = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parts, vec![(0, want(&["a", "c"])), (2, want(&["b"])), (DEAD_LETTER, want(&["d"]))]);
        let mut plain = RecordBatch::default();
        plain.push("x", 0, b"0");
        assert!(!plain.is_routed() && plain.split_routes().len() == 1 && plain.single_route() == Some(0));
        assert_eq!(b.single_route(), None);
        assert_eq!(b.split_routes()[1].1.single_route(), Some(2));
    }

    #[test]
    fn object_cursors_merge_key_by_key() {
        let a = serde_json::json!({"t": {"0": 5, "1": 9}});
        let b = serde_json::json!({"t": {"0": 7, "2": 1}, "u": {"0": 3}});
        let m = cursor_max(Some(a), Some(b)).unwrap();
        assert_eq!(m, serde_json::json!({"t": {"0": 7, "1": 9, "2": 1}, "u": {"0": 3}}));
        assert_eq!(cursor_max(Some(serde_json::json!(3)), Some(serde_json::json!(10))), Some(serde_json::json!(10)));
    }

    #[test]
    fn escape_matches_serde_json() {
        let samples = [
            "quote\" back\\slash \n\t\u{1} é 🦬".to_string(),
            "a long clean run of text without anything to escape at all, 64+ bytes".to_string(),
            (0u8..128).map(char::from).collect::<String>(),
            "\"\"\"\"\"\"\"\"\"".to_string(),
            String::new(),
            "x\u{1f}".to_string(),
        ];
        for s in samples {
            let mut out = vec![b'"'];
            json_escape_into(&mut out, s.as_bytes());
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
            assert_eq!(out, serde_json::to_string(&s).unwrap().into_bytes(), "same bytes as serde_json for {s:?}");
        }
    }

    #[test]
    fn escape_matches_serde_json_on_random_inputs() {
        let alphabet: Vec<char> = "ab \"\\\n\t\u{1}\u{1f}é🦬{}:,0".chars().collect();
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 70) as usize;
            let text: String =
                (0..len).map(|k| alphabet[((state >> (k % 50)) as usize + k * 7) % alphabet.len()]).collect();
            let mut out = b"prefix".to_vec();
            json_escape_into(&mut out, text.as_bytes());
            let expected = serde_json::to_string(&text).unwrap();
            assert_eq!(&out[6..], &expected.as_bytes()[1..expected.len() - 1], "input {text:?}");
        }
    }

    #[test]
    fn cursor_order_is_numeric_or_lexicographic() {
        use serde_json::json;
        assert!(cursor_cmp(&json!(10), &json!(9)).is_gt());
        assert!(cursor_cmp(&json!("2024-01-02"), &json!("2024-01-01")).is_gt());
        assert_eq!(cursor_max(Some(json!(1)), Some(json!(3))), Some(json!(3)));
        assert!(pagination_done(&json!({})));
        assert!(!pagination_done(&json!({"cursor": "x"})));
    }
}
