//! BigQuery's Storage Write API over gRPC (`google.cloud.bigquery.storage.v1.BigQueryWrite`):
//! write streams, appends with offsets, finalize and batch commit.
//!
//! The messages are declared here with prost's derive: only the fields this client reads or
//! writes, with the field numbers of googleapis' `storage.proto`, `stream.proto`,
//! `protobuf.proto` and `google/rpc/status.proto` (unknown fields of answers are skipped).
//!
//! An append carries the offset of its first row, so the API refuses a repeated append as
//! `ALREADY_EXISTS` instead of writing it twice: a request re-sent after a lost answer, or by a
//! resumed writer, lands once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bizon_core::{Error, Result};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::bigquery::TableRef;
use crate::http::HttpClient;

/// Google's Storage Write endpoint.
pub const ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

const SERVICE: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/";

/// The deadline of one `AppendRows` call (every request of a stream's share of a page): sent to
/// the server as `grpc-timeout`, so the call of a writer that died mid-send is cancelled there
/// (bqemulator keeps such a call's handler waiting for requests otherwise, and a few killed writers
/// exhaust its handlers), and enforced here, so a server that stops answering interrupts the call
/// (its rest is sent again) instead of hanging the run.
const APPEND_DEADLINE: Duration = Duration::from_secs(60);

/// The messages (googleapis field numbers).
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateWriteStreamRequest {
        #[prost(string, tag = "1")]
        pub parent: String,
        #[prost(message, optional, tag = "2")]
        pub write_stream: Option<WriteStream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteStream {
        #[prost(string, tag = "1")]
        pub name: String,
        /// `WriteStream.Type`: [`COMMITTED`] or [`PENDING`].
        #[prost(int32, tag = "2")]
        pub r#type: i32,
    }

    pub const COMMITTED: i32 = 1;
    pub const PENDING: i32 = 2;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Int64Value {
        #[prost(int64, tag = "1")]
        pub value: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppendRowsRequest {
        #[prost(string, tag = "1")]
        pub write_stream: String,
        #[prost(message, optional, tag = "2")]
        pub offset: Option<Int64Value>,
        /// The `rows` oneof: `proto_rows` or `arrow_rows`.
        #[prost(message, optional, tag = "4")]
        pub proto_rows: Option<ProtoData>,
        #[prost(message, optional, tag = "5")]
        pub arrow_rows: Option<ArrowData>,
        #[prost(string, tag = "6")]
        pub trace_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoData {
        #[prost(message, optional, tag = "1")]
        pub writer_schema: Option<ProtoSchema>,
        #[prost(message, optional, tag = "2")]
        pub rows: Option<ProtoRows>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrowData {
        #[prost(message, optional, tag = "1")]
        pub writer_schema: Option<ArrowSchema>,
        #[prost(message, optional, tag = "2")]
        pub rows: Option<ArrowRecordBatch>,
    }

    /// An Arrow IPC stream holding only the schema.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrowSchema {
        #[prost(bytes = "bytes", tag = "1")]
        pub serialized_schema: prost::bytes::Bytes,
    }

    /// One Arrow IPC record batch message (no schema).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrowRecordBatch {
        #[prost(bytes = "bytes", tag = "1")]
        pub serialized_record_batch: prost::bytes::Bytes,
        #[prost(int64, tag = "2")]
        pub row_count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoSchema {
        #[prost(message, optional, tag = "1")]
        pub proto_descriptor: Option<prost_types::DescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoRows {
        #[prost(bytes = "bytes", repeated, tag = "1")]
        pub serialized_rows: Vec<prost::bytes::Bytes>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppendRowsResponse {
        /// The `response` oneof: `append_result` or `error`.
        #[prost(message, optional, tag = "1")]
        pub append_result: Option<AppendResult>,
        #[prost(message, optional, tag = "2")]
        pub error: Option<Status>,
        #[prost(message, repeated, tag = "4")]
        pub row_errors: Vec<RowError>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppendResult {
        #[prost(message, optional, tag = "1")]
        pub offset: Option<Int64Value>,
    }

    /// `google.rpc.Status` (details skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RowError {
        #[prost(int64, tag = "1")]
        pub index: i64,
        #[prost(int32, tag = "2")]
        pub code: i32,
        #[prost(string, tag = "3")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FinalizeWriteStreamRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FinalizeWriteStreamResponse {
        #[prost(int64, tag = "1")]
        pub row_count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BatchCommitWriteStreamsRequest {
        #[prost(string, tag = "1")]
        pub parent: String,
        #[prost(string, repeated, tag = "2")]
        pub write_streams: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BatchCommitWriteStreamsResponse {
        #[prost(message, optional, tag = "1")]
        pub commit_time: Option<prost_types::Timestamp>,
        #[prost(message, repeated, tag = "2")]
        pub stream_errors: Vec<StorageError>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StorageError {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub entity: String,
        #[prost(string, tag = "3")]
        pub error_message: String,
    }
}

/// One append request's rows, and the offset of the first.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub offset: i64,
    pub rows: Rows,
}

/// Rows of a request: serialized protobuf messages, or one Arrow IPC record batch.
#[derive(Debug, Clone)]
pub enum Rows {
    Proto(Vec<prost::bytes::Bytes>),
    Arrow { batch: prost::bytes::Bytes, count: usize },
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Proto(r) => r.len(),
            Rows::Arrow { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows' schema, sent with a stream's first request.
#[derive(Debug, Clone)]
pub enum Schema {
    Proto(Box<prost_types::DescriptorProto>),
    /// An Arrow IPC stream holding only the schema.
    Arrow(prost::bytes::Bytes),
}

/// How the appends of one stream ended.
#[derive(Debug)]
pub enum Appended {
    /// Every chunk landed; `duplicates` of them were refused as already written.
    All { duplicates: usize },
    /// The first `done` chunks landed; chunk `done` was refused for these rows (index within the
    /// chunk, and why): none of its rows were written.
    RowErrors { done: usize, rows: Vec<(usize, String)> },
    /// The first `done` chunks landed; the rest failed for a reason worth a retry.
    Interrupted { done: usize, why: String },
    /// The first `done` chunks landed; chunk `done` was refused whole, for good (a schema the
    /// table does not take, a stream that is gone, …).
    Failed { done: usize, why: String },
}

/// A client of the Storage Write API for one table's writer.
pub struct StorageWrite {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    /// Issues the bearer tokens (the BigQuery REST client's, same credentials).
    http: Arc<HttpClient>,
    endpoint: String,
}

impl std::fmt::Debug for StorageWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageWrite").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// A gRPC status as a bizon error: unavailable, aborted, deadline, internal and exhaustion are
/// worth a retry; the rest are permanent.
fn grpc_error(what: &str, s: &tonic::Status) -> Error {
    let text = format!("{what}: {:?}: {}", s.code(), s.message());
    if transient(s.code()) {
        Error::transient(text)
    } else {
        Error::permanent(text)
    }
}

fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Unknown
    )
}

/// The requests of one `AppendRows` call, as the stream tonic sends.
struct Requests(std::vec::IntoIter<pb::AppendRowsRequest>);

impl futures_core::Stream for Requests {
    type Item = pb::AppendRowsRequest;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next())
    }
}

impl StorageWrite {
    /// A client of `endpoint` (default Google's; `http://` for a local emulator, no TLS).
    pub fn connect(endpoint: Option<&str>, http: Arc<HttpClient>) -> Result<Self> {
        let endpoint = endpoint.unwrap_or(ENDPOINT).trim_end_matches('/').to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bizon-storage-write")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("storage write runtime: {e}")))?;
        let bad = |e: &dyn std::fmt::Display| Error::config(format!("storage_write_url `{endpoint}`: {e}"));
        let mut ep = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| bad(&e))?
            .connect_timeout(Duration::from_secs(30))
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .user_agent(concat!("bizon-rs/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| bad(&e))?;
        if endpoint.starts_with("https://") {
            ep = ep.tls_config(ClientTlsConfig::new().with_webpki_roots()).map_err(|e| bad(&e))?;
        }
        let channel = {
            let _guard = rt.enter();
            ep.connect_lazy()
        };
        Ok(StorageWrite { rt, channel, http, endpoint })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The call's metadata: the bearer token and the routing header Google's front end wants.
    fn metadata(&self, routing: &str) -> Result<MetadataMap> {
        let mut m = MetadataMap::new();
        for (k, v) in self.http.auth_headers()? {
            if k.eq_ignore_ascii_case("authorization") {
                let v = MetadataValue::try_from(v.as_str())
                    .map_err(|_| Error::config("an access token that is not a valid header value"))?;
                m.insert("authorization", v);
            }
        }
        if let Ok(v) = MetadataValue::try_from(routing) {
            m.insert("x-goog-request-params", v);
        }
        Ok(m)
    }

    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// Call a unary method.
    fn unary<Q, A>(&self, method: &str, routing: &str, request: Q) -> Result<A>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let metadata = self.metadata(routing)?;
        let path = http::uri::PathAndQuery::try_from(format!("{SERVICE}{method}"))
            .map_err(|e| Error::internal(format!("{method}: {e}")))?;
        let mut grpc = self.grpc();
        self.rt.block_on(async move {
            grpc.ready().await.map_err(|e| Error::transient(format!("BigQuery Storage Write {method}: {e}")))?;
            let mut req = tonic::Request::new(request);
            *req.metadata_mut() = metadata;
            req.set_timeout(Duration::from_secs(120));
            let codec = tonic_prost::ProstCodec::<Q, A>::default();
            grpc.unary(req, path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| grpc_error(&format!("BigQuery Storage Write {method}"), &s))
        })
    }

    /// A new write stream on `table`: COMMITTED (rows visible when appended) or PENDING (visible
    /// when committed).
    pub fn create_stream(&self, table: &TableRef, kind: i32) -> Result<String> {
        let parent = table_path(table);
        let answer: pb::WriteStream = self.unary(
            "CreateWriteStream",
            &format!("parent={parent}"),
            pb::CreateWriteStreamRequest {
                parent: parent.clone(),
                write_stream: Some(pb::WriteStream { name: String::new(), r#type: kind }),
            },
        )?;
        if answer.name.is_empty() {
            return Err(Error::permanent(format!("CreateWriteStream on {parent}: the answer names no stream")));
        }
        Ok(answer.name)
    }

    /// Append `chunks` to `stream` over one bidirectional call, several in flight; the first
    /// carries the rows' schema. Several streams' appends run at once, one call each.
    pub fn append(&self, jobs: Vec<(String, Schema, Vec<Chunk>)>) -> Result<Vec<Appended>> {
        let mut calls = Vec::with_capacity(jobs.len());
        for (stream, schema, chunks) in jobs {
            let metadata = self.metadata(&format!("write_stream={stream}"))?;
            calls.push((stream, schema, chunks, metadata));
        }
        let path = http::uri::PathAndQuery::from_static("/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows");
        let grpc = self.grpc();
        self.rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, (stream, schema, chunks, metadata)) in calls.into_iter().enumerate() {
                let grpc = grpc.clone();
                let path = path.clone();
                set.spawn(async move {
                    let call = append_one(grpc, path, stream, schema, chunks, metadata);
                    // A call past its deadline counts as interrupted before any answer: what
                    // landed is refused as ALREADY_EXISTS when it is sent again.
                    let outcome = tokio::time::timeout(APPEND_DEADLINE + Duration::from_secs(5), call).await.unwrap_or(
                        Appended::Interrupted { done: 0, why: format!("no answer within {APPEND_DEADLINE:?}") },
                    );
                    (i, outcome)
                });
            }
            let mut out: Vec<Option<Appended>> = (0..set.len()).map(|_| None).collect();
            while let Some(joined) = set.join_next().await {
                let (i, appended) = joined.map_err(|e| Error::internal(format!("an append task failed: {e}")))?;
                out[i] = Some(appended);
            }
            Ok(out.into_iter().map(|a| a.expect("every task answered")).collect())
        })
    }

    /// Finalize `stream` (no more appends); returns its row count.
    pub fn finalize(&self, stream: &str) -> Result<i64> {
        let answer: pb::FinalizeWriteStreamResponse = self.unary(
            "FinalizeWriteStream",
            &format!("name={stream}"),
            pb::FinalizeWriteStreamRequest { name: stream.to_owned() },
        )?;
        Ok(answer.row_count)
    }

    /// Commit finalized PENDING streams of `table` atomically: all their rows become visible at
    /// once. A stream committed already (a retried commit) is not an error.
    pub fn batch_commit(&self, table: &TableRef, streams: Vec<String>) -> Result<()> {
        let parent = table_path(table);
        let answer: pb::BatchCommitWriteStreamsResponse = self.unary(
            "BatchCommitWriteStreams",
            &format!("parent={parent}"),
            pb::BatchCommitWriteStreamsRequest { parent: parent.clone(), write_streams: streams },
        )?;
        // StorageErrorCode 2 = STREAM_ALREADY_COMMITTED.
        let errors: Vec<String> = answer
            .stream_errors
            .iter()
            .filter(|e| e.code != 2)
            .map(|e| format!("{} (code {}): {}", e.entity, e.code, e.error_message))
            .collect();
        if !errors.is_empty() || (answer.commit_time.is_none() && answer.stream_errors.is_empty()) {
            return Err(Error::permanent(format!(
                "BatchCommitWriteStreams on {parent} committed nothing: {}",
                if errors.is_empty() { "no commit time in the answer".to_owned() } else { errors.join("; ") }
            )));
        }
        Ok(())
    }
}

/// `projects/P/datasets/D/tables/T`.
pub fn table_path(t: &TableRef) -> String {
    format!("projects/{}/datasets/{}/tables/{}", t.project, t.dataset, t.table)
}

/// One stream's appends (see [`StorageWrite::append`]).
async fn append_one(
    mut grpc: tonic::client::Grpc<Channel>,
    path: http::uri::PathAndQuery,
    stream: String,
    schema: Schema,
    chunks: Vec<Chunk>,
    metadata: MetadataMap,
) -> Appended {
    let n = chunks.len();
    let requests: Vec<pb::AppendRowsRequest> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let first = i == 0;
            let (proto_rows, arrow_rows) = match (c.rows, &schema) {
                (Rows::Proto(rows), Schema::Proto(d)) => (
                    Some(pb::ProtoData {
                        writer_schema: first.then(|| pb::ProtoSchema { proto_descriptor: Some((**d).clone()) }),
                        rows: Some(pb::ProtoRows { serialized_rows: rows }),
                    }),
                    None,
                ),
                (Rows::Arrow { batch, count }, Schema::Arrow(s)) => (
                    None,
                    Some(pb::ArrowData {
                        writer_schema: first.then(|| pb::ArrowSchema { serialized_schema: s.clone() }),
                        rows: Some(pb::ArrowRecordBatch { serialized_record_batch: batch, row_count: count as i64 }),
                    }),
                ),
                _ => (None, None),
            };
            pb::AppendRowsRequest {
                // Every request names the stream (the API needs it only in the first; bqemulator in each).
                write_stream: stream.clone(),
                offset: Some(pb::Int64Value { value: c.offset }),
                proto_rows,
                arrow_rows,
                trace_id: if first { concat!("bizon-rs/", env!("CARGO_PKG_VERSION")).into() } else { String::new() },
            }
        })
        .collect();
    let interrupted = |done: usize, why: String| Appended::Interrupted { done, why };
    if let Err(e) = grpc.ready().await {
        return interrupted(0, format!("connecting: {e}"));
    }
    let mut req = tonic::Request::new(Requests(requests.into_iter()));
    *req.metadata_mut() = metadata;
    req.set_timeout(APPEND_DEADLINE);
    let codec = tonic_prost::ProstCodec::<pb::AppendRowsRequest, pb::AppendRowsResponse>::default();
    let mut answers = match grpc.streaming(req, path, codec).await {
        Ok(r) => r.into_inner(),
        Err(s) if transient(s.code()) => return interrupted(0, format!("{:?}: {}", s.code(), s.message())),
        Err(s) => return Appended::Failed { done: 0, why: format!("{:?}: {}", s.code(), s.message()) },
    };
    let mut duplicates = 0;
    for done in 0..n {
        let answer = match answers.message().await {
            Ok(Some(a)) => a,
            Ok(None) => return interrupted(done, "the stream of answers ended early".into()),
            // An offset written already can also come back as the call's status.
            Err(s) if s.code() == Code::AlreadyExists => {
                duplicates += 1;
                return match done + 1 == n {
                    true => Appended::All { duplicates },
                    false => interrupted(done + 1, format!("{:?}: {}", s.code(), s.message())),
                };
            }
            Err(s) if transient(s.code()) => return interrupted(done, format!("{:?}: {}", s.code(), s.message())),
            Err(s) => return Appended::Failed { done, why: format!("{:?}: {}", s.code(), s.message()) },
        };
        if !answer.row_errors.is_empty() {
            let rows = answer.row_errors.iter().map(|e| (e.index.max(0) as usize, e.message.clone())).collect();
            return Appended::RowErrors { done, rows };
        }
        if let Some(e) = answer.error {
            match Code::from_i32(e.code) {
                Code::AlreadyExists => duplicates += 1,
                c if transient(c) => return interrupted(done, format!("{c:?}: {}", e.message)),
                c => return Appended::Failed { done, why: format!("{c:?}: {}", e.message) },
            }
        }
    }
    Appended::All { duplicates }
}
