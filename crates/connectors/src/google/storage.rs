//! Cloud Storage's JSON API, the little the `bigquery` destination needs: upload an object
//! (resumable, in chunks) and delete it. The base URL is Google's unless overridden (tests).

use std::sync::Arc;

use bizon_core::Result;

use super::upload::ResumableUpload;
use crate::http::client::{HttpClient, Method, Request};

/// Google's Cloud Storage endpoint.
pub const API_URL: &str = "https://storage.googleapis.com";

pub struct Storage {
    http: Arc<HttpClient>,
    api: String,
}

impl Storage {
    /// A client on `http` (Google auth included), at `api_url` or Google's endpoint.
    pub fn new(http: Arc<HttpClient>, api_url: Option<&str>) -> Self {
        Storage { http, api: api_url.unwrap_or(API_URL).trim_end_matches('/').to_owned() }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Start uploading `gs://bucket/name`.
    pub fn start_upload(&self, bucket: &str, name: &str) -> Result<ResumableUpload> {
        let req = Request::post_json(
            format!("{}/upload/storage/v1/b/{bucket}/o", self.api),
            serde_json::json!({"name": name, "contentType": "application/octet-stream"}),
        )
        .query("uploadType", "resumable")
        .query("name", name);
        ResumableUpload::start(&self.http, &req, &format!("uploading gs://{bucket}/{name}"))
    }

    /// Delete `gs://bucket/name`; a missing object is fine.
    pub fn delete(&self, bucket: &str, name: &str) -> Result<()> {
        let req = Request {
            method: Method::Delete,
            url: format!("{}/storage/v1/b/{bucket}/o/{}", self.api, encode(name)),
            ..Default::default()
        };
        self.http.send_accepting(&req, &[404])?;
        Ok(())
    }
}

/// An object name as one URL path segment (`/` and everything but unreserved characters escaped).
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
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
    fn object_names_are_one_path_segment() {
        assert_eq!(super::encode("src/stream/a b.parquet"), "src%2Fstream%2Fa%20b.parquet");
    }
}
