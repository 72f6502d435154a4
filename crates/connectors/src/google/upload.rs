//! Google's resumable uploads (BigQuery's upload host, Cloud Storage's JSON API): a session URL
//! from the first request, then the data in chunks (multiples of 256 KiB, `Content-Range`
//! `bytes a-b/*`, answered 308) as it is produced, and a last chunk with the total size, answered
//! with the resource (a job, an object).

use std::sync::Arc;

use bizon_core::{Error, Result};

use crate::http::client::{Body, HttpClient, Method, Request, Response};

/// Chunks other than the last are multiples of this (Google's rule).
pub const UPLOAD_UNIT: usize = 256 << 10;

/// An upload in progress, on the client that opened it.
pub struct ResumableUpload {
    http: Arc<HttpClient>,
    url: String,
    sent: u64,
    /// Requests that carried data.
    chunks: u32,
    what: String,
}

impl ResumableUpload {
    /// Open the session with `req` (its answer's `Location` is the session URL).
    pub fn start(http: &Arc<HttpClient>, req: &Request, what: &str) -> Result<Self> {
        let r = http.send(req)?;
        let url = r
            .header("location")
            .ok_or_else(|| Error::transient(format!("{what}: the upload answered without a session URL")))?
            .to_owned();
        Ok(ResumableUpload { http: http.clone(), url, sent: 0, chunks: 0, what: what.to_owned() })
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Requests that carried data so far.
    pub fn chunks(&self) -> u32 {
        self.chunks
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Send the next chunk (a multiple of [`UPLOAD_UNIT`] unless `last`). `None` while the
    /// upload goes on; the last chunk's answer (a 2xx or one of `accept`).
    pub fn send(&mut self, bytes: Vec<u8>, last: bool, accept: &[u16]) -> Result<Option<Response>> {
        let end = self.sent + bytes.len() as u64;
        let range = match (last, bytes.is_empty()) {
            (false, true) => return Ok(None),
            (false, false) => format!("bytes {}-{}/*", self.sent, end - 1),
            (true, true) => format!("bytes */{end}"),
            (true, false) => format!("bytes {}-{}/{end}", self.sent, end - 1),
        };
        let req = Request {
            method: Method::Put,
            url: self.url.clone(),
            body: Some(Body::Raw { content_type: "application/octet-stream".into(), bytes: Arc::new(bytes) }),
            ..Default::default()
        }
        .header("Content-Range", range);
        let mut statuses = vec![308];
        statuses.extend_from_slice(accept);
        let r = self.http.send_accepting(&req, &statuses)?;
        self.chunks += u32::from(end > self.sent);
        self.sent = end;
        match r.status {
            308 if !last => Ok(None),
            308 => Err(self.incomplete()),
            _ => Ok(Some(r)),
        }
    }

    /// The upload wants more than the bytes sent.
    pub fn incomplete(&self) -> Error {
        Error::transient(format!("{}: the upload endpoint wants more than the {} bytes sent", self.what, self.sent))
    }
}
