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
            url: format!("{}/storage/v1/b/{bucket}/o/{}", self.api, super::path_segment(name)),
            ..Default::default()
        };
        self.http.send_accepting(&req, &[404])?;
        Ok(())
    }
}
