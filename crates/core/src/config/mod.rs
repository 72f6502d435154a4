//! Config primitives shared by every connector: bizon's keys, names and defaults.
//! Connector-specific structs live with their connectors; the top-level loader that picks them
//! by name lives in `bizon-connectors`.

pub mod interp;
pub mod yaml;

pub use yaml::MAX_CONFIG_BYTES;

use serde::Deserialize;

use crate::Json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Re-read everything into a staging target, swap it in atomically at the end.
    #[default]
    FullRefresh,
    /// Append only records whose `cursor_field` is newer than the stored watermark.
    Incremental,
    /// Continuous (Kafka etc.).
    Stream,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
            SyncMode::Stream => "stream",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "full_refresh" => SyncMode::FullRefresh,
            "incremental" => SyncMode::Incremental,
            "stream" => SyncMode::Stream,
            _ => return None,
        })
    }
}

/// What a record that cannot be decoded or loaded does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the run, naming the record and the error (default).
    #[default]
    Fail,
    /// Write the record with its error to the dead-letter file and go on.
    DeadLetter,
}

/// `init_pipeline` when not set: on.
fn default_init_pipeline() -> bool {
    true
}

/// Keys every source accepts (bizon's `SourceConfig`), beside the connector's own.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// Connector name (`bizon source list`).
    pub name: String,
    /// Stream of that source (`bizon stream list <source>`).
    pub stream: String,
    #[serde(default)]
    pub sync_mode: SyncMode,
    /// Field whose max value written is the incremental watermark.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Start from iteration 0 even if an unfinished job could be resumed.
    #[serde(default)]
    pub force_ignore_checkpoint: bool,
    /// Re-read the whole (incremental) stream and replace the target.
    #[serde(default)]
    pub reset: bool,
    #[serde(default)]
    pub authentication: Option<AuthConfig>,
    /// Stop after this many iterations (pages).
    #[serde(default)]
    pub max_iterations: Option<u64>,
    #[serde(default)]
    pub api_config: Option<ApiConfig>,
    /// bizon test knob; accepted for compatibility.
    #[serde(default = "default_init_pipeline")]
    pub init_pipeline: bool,
    /// bizon's custom Python source: the file holding its AbstractSource subclass (as
    /// `--custom-source`), run in a Python worker with bizon's API shipped alongside.
    #[serde(default)]
    pub source_file_path: Option<String>,
    /// HTTP policy of HTTP sources (bizon's `source.http`, plus rate and concurrency limits).
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

/// `source.http`: bizon's `HttpConfig` keys (timeout, retries, raise_for_status) and bizon-rs's
/// throttles. HTTP sources use these defaults when the section is absent.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds: one number for both, or `[connect, read]` (default `[10, 60]`).
    #[serde(default)]
    pub timeout: Option<HttpTimeout>,
    #[serde(default)]
    pub retries: Option<HttpRetryConfig>,
    /// bizon's switch to hand non-2xx answers to the source: accepted; connectors here decide
    /// per status (a non-2xx answer they do not expect is an error).
    #[serde(default)]
    pub raise_for_status: Option<bool>,
    /// Requests per second, across every thread of the source (default: unlimited).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Pages (offset / page-number paging) or children fetched at once (default 1).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Refuse a response body larger than this many MB (default 256).
    #[serde(default)]
    pub max_response_mb: Option<u64>,
}

/// `source.http.timeout`: one number of seconds, or `[connect, read]`.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HttpTimeout {
    Both(f64),
    Pair(f64, f64),
}

/// `source.http.retries` (bizon's `HttpRetryConfig`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRetryConfig {
    /// Retries across all causes (default 10).
    #[serde(default)]
    pub total: Option<u32>,
    /// Backoff base in seconds: waits of factor × 2^n, with jitter (default 2).
    #[serde(default)]
    pub backoff_factor: Option<f64>,
    /// Statuses retried, with or without a `Retry-After` (default 429, 500, 502, 503, 504, 520,
    /// 522, 524).
    #[serde(default)]
    pub status_forcelist: Option<Vec<u16>>,
    /// Methods that may be retried (default GET, POST).
    #[serde(default)]
    pub allowed_methods: Option<Vec<String>>,
    /// Upper bound in seconds on a `Retry-After` wait (default 120).
    #[serde(default)]
    pub retry_after_max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(rename = "type")]
    pub kind: AuthType,
    #[serde(default)]
    pub params: Option<Json>,
    /// Kafka source (bizon's `KafkaAuthConfig`): `apicurio` or `confluent` (default
    /// [`DEFAULT_SCHEMA_REGISTRY_TYPE`]).
    #[serde(default)]
    pub schema_registry_type: Option<String>,
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    #[serde(default)]
    pub schema_registry_username: Option<String>,
    #[serde(default)]
    pub schema_registry_password: Option<String>,
}

/// The schema registry's API when `schema_registry_type` is not set.
pub const DEFAULT_SCHEMA_REGISTRY_TYPE: &str = "apicurio";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth,
    ApiKey,
    Bearer,
    Basic,
    Cookies,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub retry_limit: Option<u32>,
}

/// `buffer_size` when not set: flush after 50 MB.
fn default_buffer_size() -> u64 {
    50
}
/// `buffer_flush_timeout` when not set: flush at least every 10 minutes.
fn default_flush_timeout() -> u64 {
    600
}
/// `max_concurrent_threads` when not set.
fn default_threads() -> u32 {
    10
}

/// Keys every destination's `config:` accepts (bizon's `AbstractDestinationDetailsConfig`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationCommon {
    /// Flush (make durable and commit the cursor) after this many MB; 0 = after every page.
    #[serde(default = "default_buffer_size")]
    pub buffer_size: u64,
    /// Flush at least every this many seconds; 0 = no time-based flush.
    #[serde(default = "default_flush_timeout")]
    pub buffer_flush_timeout: u64,
    #[serde(default = "default_threads")]
    pub max_concurrent_threads: u32,
    #[serde(default)]
    pub record_schemas: Option<Vec<RecordSchemaConfig>>,
    #[serde(default)]
    pub unnest: bool,
    #[serde(default)]
    pub authentication: Option<Json>,
    /// Names the output (table, file) of this destination.
    #[serde(default)]
    pub destination_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSchemaConfig {
    pub destination_id: String,
    pub record_schema: Vec<ColumnConfig>,
    #[serde(default)]
    pub clustering_keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// A SQL expression the destination fills the column with when a row has no value for it
    /// (BigQuery's `defaultValueExpression`, e.g. `CURRENT_TIMESTAMP()`).
    #[serde(default)]
    pub default_value_expression: Option<String>,
    /// A RECORD (STRUCT) column's own columns, nested as deep as needed (BigQuery destinations;
    /// an addition: bizon's record_schemas accept RECORD but cannot say what it holds).
    #[serde(default)]
    pub fields: Option<Vec<ColumnConfig>>,
}

/// A transform: bizon's inline Python (`python` runs with the record's payload as the dict `data`,
/// to mutate or re-assign, in a Python worker process) or a jq program (`jq`, in-process); in
/// the consumer, in order, before the row layout.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Names the transform in logs and errors.
    pub label: String,
    /// Python code (dedented, run as bizon runs it: `exec(code, {}, {"data": record})`).
    #[serde(default)]
    pub python: Option<String>,
    /// A jq program (an addition: bizon has Python only), run in-process on the record's payload
    /// as `.`: its one output replaces the record, no output drops it, `route("stream")` sends it
    /// to a `streams:` entry; `sha256` and `rename(from; to)` are there beside jq's own filters.
    #[serde(default)]
    pub jq: Option<String>,
    /// A record this transform raises on: fail the run (default), or write it with the exception
    /// to the dead-letter file and go on (an addition: bizon always fails).
    #[serde(default)]
    pub on_error: OnError,
}

/// bizon's `streams:` routing entry (used by the Kafka source).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    pub source: Json,
    pub destination: Json,
}

/// bizon's `monitoring:` (Datadog), plus `prometheus` and `otlp` exporters.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    #[serde(rename = "type")]
    pub kind: MonitorType,
    #[serde(default)]
    pub config: Option<MonitorDetails>,
    #[serde(default)]
    pub enable_tracing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MonitorType {
    /// DogStatsD over UDP to the agent (bizon's).
    Datadog,
    /// An HTTP `/metrics` endpoint in the Prometheus text format.
    Prometheus,
    /// OTLP over HTTP (protobuf) to a collector: metrics and one span per iteration step.
    Otlp,
}

/// The keys of every exporter (each checks that it got its own).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorDetails {
    /// Datadog: the agent's host (or the env var holding it, as on Kubernetes) and port (default
    /// [`DEFAULT_DATADOG_AGENT_PORT`]).
    #[serde(default)]
    pub datadog_agent_host: Option<String>,
    #[serde(default)]
    pub datadog_host_env_var: Option<String>,
    #[serde(default)]
    pub datadog_agent_port: Option<u16>,
    /// Extra tags / labels on every metric (Datadog, OTLP resource attributes).
    #[serde(default)]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub enable_tracing: bool,
    /// Prometheus: `host:port` to serve `/metrics` on (default [`DEFAULT_PROMETHEUS_ADDRESS`]).
    #[serde(default)]
    pub address: Option<String>,
    /// OTLP: the collector's base URL (default [`DEFAULT_OTLP_ENDPOINT`]); `/v1/metrics` and
    /// `/v1/traces` are appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// OTLP: extra HTTP headers (e.g. an API key).
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Prometheus: seconds the endpoint keeps serving after the run ends, so a last scrape sees
    /// the final values (default [`DEFAULT_LINGER_SECONDS`]).
    #[serde(default)]
    pub linger_seconds: Option<f64>,
    /// Seconds between pushes (Datadog, OTLP; default [`DEFAULT_INTERVAL_SECONDS`]). A final push
    /// happens at the end.
    #[serde(default)]
    pub interval_seconds: Option<f64>,
}

/// The DogStatsD agent's port when `datadog_agent_port` is not set (the agent's default).
pub const DEFAULT_DATADOG_AGENT_PORT: u16 = 8125;
/// Where the Prometheus `/metrics` endpoint listens when `address` is not set: loopback only, on
/// the OpenTelemetry Prometheus exporter's usual port.
pub const DEFAULT_PROMETHEUS_ADDRESS: &str = "127.0.0.1:9464";
/// The OTLP collector when `endpoint` is not set: a local collector's default OTLP/HTTP receiver.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://127.0.0.1:4318";
/// Seconds the Prometheus endpoint lingers after the run when `linger_seconds` is not set: none.
pub const DEFAULT_LINGER_SECONDS: f64 = 0.0;
/// Seconds between metric pushes when `interval_seconds` is not set.
pub const DEFAULT_INTERVAL_SECONDS: f64 = 10.0;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(rename = "type")]
    pub kind: AlertMethod,
    /// Levels that alert (default [`DEFAULT_ALERT_LOG_LEVELS`], as in bizon): ERROR/CRITICAL
    /// alert on failure, WARNING also on a stuck run.
    #[serde(default)]
    pub log_levels: Option<Vec<String>>,
    pub config: SlackConfig,
}

/// Levels that alert when `log_levels` is not set: failures only (bizon's default).
pub const DEFAULT_ALERT_LOG_LEVELS: &[&str] = &["ERROR"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertMethod {
    Slack,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub webhook_url: String,
    /// Alert when a running job makes no progress (no record written, no commit) for this many
    /// seconds (default [`DEFAULT_STUCK_AFTER_SECONDS`]; 0 = never).
    #[serde(default)]
    pub stuck_after_seconds: Option<u64>,
}

/// Seconds without progress before a stuck-run alert when `stuck_after_seconds` is not set (15
/// minutes).
pub const DEFAULT_STUCK_AFTER_SECONDS: u64 = 900;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    #[serde(default)]
    pub gsm: Option<GsmSettings>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GsmSettings {
    /// The project of `gsm://ID` references (else GOOGLE_CLOUD_PROJECT, else the credentials').
    #[serde(default)]
    pub project_id: Option<String>,
    /// Secret Manager's base URL (default Google's; tests override it).
    #[serde(default)]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunnerType {
    /// Producer and consumer on two threads (default).
    #[default]
    Thread,
    /// Producer and consumer as separate processes (needs a broker queue).
    Process,
    /// One synchronous loop: read a page, write it, commit.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum LogLevel {
    #[serde(alias = "trace")]
    TRACE,
    #[serde(alias = "debug")]
    DEBUG,
    #[serde(alias = "info")]
    INFO,
    #[serde(alias = "warning", alias = "WARN", alias = "warn")]
    WARNING,
    #[serde(alias = "error")]
    ERROR,
    #[serde(alias = "critical")]
    CRITICAL,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    #[serde(rename = "type", default)]
    pub kind: RunnerType,
    #[serde(default)]
    pub config: Option<RunnerDetails>,
    #[serde(default)]
    pub log_level: Option<LogLevel>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerDetails {
    #[serde(default)]
    pub max_workers: Option<u32>,
    #[serde(default)]
    pub consumer_start_delay: Option<u64>,
    #[serde(default)]
    pub is_alive_check_interval: Option<u64>,
    /// Transient failures in a row (no commit in between) before the run fails (default
    /// [`DEFAULT_MAX_RETRIES`]).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First retry delay in milliseconds, doubled per retry up to [`MAX_RETRY_BACKOFF_MS`]
    /// (default [`DEFAULT_RETRY_BACKOFF_MS`]).
    #[serde(default)]
    pub retry_backoff_ms: Option<u64>,
}

/// Transient failures in a row before a run fails when `max_retries` is not set.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// First retry delay in milliseconds when `retry_backoff_ms` is not set.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 100;
/// The longest retry delay, in milliseconds: doubling stops here (5 s).
pub const MAX_RETRY_BACKOFF_MS: u64 = 5_000;

/// Mask everything that may be a secret: values that came from the environment and values of
/// keys that name credentials.
pub fn masked_json(node: &yaml::Node) -> Json {
    fn secret_key(k: &str) -> bool {
        let k = k.to_ascii_lowercase();
        // `headers` (OTLP) carry API keys and bearer tokens: every value under it is masked
        [
            "password",
            "secret",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "credential",
            "private_key",
            "service_account_key",
            "dsn",
            "webhook",
            "authorization",
            "headers",
            "cookie",
            "session",
            "csrf",
            "cf_bm",
        ]
        .iter()
        .any(|s| k.contains(s))
            // names and addresses of secrets are not secrets (`access_token_name`,
            // `token_refresh_endpoint`, `secret_path`), but a webhook's URL is its secret
            && (k.contains("webhook") || !["_name", "_endpoint", "_url", "_path"].iter().any(|suffix| k.ends_with(suffix)))
    }
    fn walk(n: &yaml::Node, secret: bool) -> Json {
        use yaml::Value;
        if (secret || n.from_env) && !matches!(n.value, Value::Map(_) | Value::Seq(_) | Value::Null) {
            return Json::String("********".into());
        }
        match &n.value {
            Value::Null => Json::Null,
            Value::Scalar { text, plain } => {
                if *plain {
                    if let Ok(v) = serde_json::from_str::<Json>(text) {
                        if !v.is_string() && !v.is_object() && !v.is_array() {
                            return v;
                        }
                    }
                }
                Json::String(text.clone())
            }
            Value::Seq(items) => Json::Array(items.iter().map(|i| walk(i, secret)).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = k.as_str().unwrap_or("null").to_owned();
                        let s = secret || secret_key(&key);
                        (key, walk(v, s))
                    })
                    .collect(),
            ),
        }
    }
    walk(node, false)
}
