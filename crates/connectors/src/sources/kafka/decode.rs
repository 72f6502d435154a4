//! Message values: JSON (bizon's `utf-8`), Avro in the schema-registry wire format (Confluent's
//! 4-byte schema id, or Apicurio's 8-byte global id after a zero 4-byte prefix, as bizon reads
//! them) with the schemas fetched once from the registry, and Debezium change events flattened
//! the way bizon's documented Debezium transform does.

use std::collections::HashMap;
use std::sync::Arc;

pub use apache_avro::Schema as AvroSchema;
use bizon_core::{ErrorKind, Json};
use serde_json::json;

/// Why a message value could not become a record. [`DecodeError::kind`] says who acts: a bad
/// message is [`ErrorKind::Permanent`] (skipped or dead-lettered by policy, else the run fails
/// naming it); a registry that cannot be asked is not the message's fault and must not divert
/// it: [`ErrorKind::Transient`] when it is down or overloaded (the attempt is retried from the
/// last commit), [`ErrorKind::Config`] when the config does not name a usable registry.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the value is not JSON: {0}")]
    ValueNotJson(#[source] serde_json::Error),
    /// A Debezium event's text that is not JSON.
    #[error(transparent)]
    EventNotJson(serde_json::Error),
    #[error("{len} bytes: too short for a schema-registry message (magic byte + schema id)")]
    TooShort { len: usize },
    #[error("unexpected magic byte {0}: not produced with a schema-registry serializer")]
    MagicByte(u8),
    #[error("too short for an Apicurio message (8-byte global id)")]
    TooShortForApicurio,
    #[error("Avro decoding: {0}")]
    Avro(#[source] apache_avro::Error),
    #[error("Avro decoding: {0} bytes left after the datum")]
    AvroTrailingBytes(usize),
    #[error("Avro value: {0}")]
    AvroValue(#[source] apache_avro::Error),
    #[error("a Debezium event must be an object with `op`, `before`, `after` and `source`")]
    DebeziumNotObject,
    #[error("the Debezium event has no `op`")]
    DebeziumNoOp,
    #[error("Debezium operation `{0}` carries no row")]
    DebeziumOperation(String),
    #[error("the Debezium `{op}` event has no `{side}` row")]
    DebeziumNoRow { op: String, side: &'static str },
    /// The message names a schema the registry does not have.
    #[error("schema id {id} not found in the registry ({url})")]
    SchemaNotFound { id: u64, url: String },
    #[error("schema id {id} is not a valid Avro schema: {source}")]
    InvalidSchema { id: u64, source: apache_avro::Error },
    /// No answer (connection refused, timeout) or a body cut short.
    #[error("schema registry {url}: {what}{source}")]
    RegistryUnreachable { url: String, what: &'static str, source: ureq::Error },
    #[error("schema registry {url} answered {status}")]
    RegistryStatus { url: String, status: u16 },
    /// An answer that is not a schema of the configured registry type.
    #[error("schema registry {url}: {message}")]
    RegistryAnswer { url: String, message: String },
    #[error("`message_encoding: avro` needs `authentication.schema_registry_url` (or use `message_encoding: utf-8`)")]
    NoRegistryUrl,
    #[error("unknown `schema_registry_type` `{0}` (apicurio or confluent)")]
    UnknownRegistryType(String),
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::RegistryUnreachable { .. } => ErrorKind::Transient,
            // overloaded or failing server, or a request timeout: worth another attempt
            DecodeError::RegistryStatus { status, .. } if *status >= 500 || matches!(status, 408 | 429) => {
                ErrorKind::Transient
            }
            // 401/403 (credentials), another 4xx, or not a registry at all: the config is wrong
            DecodeError::RegistryStatus { .. }
            | DecodeError::RegistryAnswer { .. }
            | DecodeError::NoRegistryUrl
            | DecodeError::UnknownRegistryType(_) => ErrorKind::Config,
            _ => ErrorKind::Permanent,
        }
    }
}

/// Which registry API serves the schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// `GET {url}/apis/registry/v2/ids/globalIds/{id}` returns the schema (bizon's default).
    Apicurio,
    /// `GET {url}/schemas/ids/{id}` returns `{"schema": "<schema JSON as a string>"}`.
    Confluent,
}

impl RegistryKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "apicurio" => Some(RegistryKind::Apicurio),
            "confluent" => Some(RegistryKind::Confluent),
            _ => None,
        }
    }
}

/// A parsed schema and its JSON text (kept in each record's `schema`, as bizon does).
pub struct CachedSchema {
    pub schema: apache_avro::Schema,
    pub json: Arc<str>,
}

/// Schema registry client with a per-id cache: one HTTP request per schema id per process.
pub struct Registry {
    url: String,
    kind: RegistryKind,
    auth: Option<String>,
    agent: ureq::Agent,
    cache: HashMap<u64, Arc<CachedSchema>>,
}

impl Registry {
    pub fn new(url: &str, kind: RegistryKind, username: Option<&str>, password: Option<&str>) -> Self {
        let auth = username.filter(|u| !u.is_empty()).map(|u| {
            use base64::Engine;
            let raw = format!("{u}:{}", password.unwrap_or_default());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        });
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Registry { url: url.trim_end_matches('/').to_owned(), kind, auth, agent, cache: HashMap::new() }
    }

    /// The schema with this id, from the cache or the registry. Errors name the URL and the
    /// status, never the credentials.
    pub fn schema(&mut self, id: u64) -> Result<Arc<CachedSchema>, DecodeError> {
        if let Some(s) = self.cache.get(&id) {
            return Ok(s.clone());
        }
        let url = match self.kind {
            RegistryKind::Apicurio => format!("{}/apis/registry/v2/ids/globalIds/{id}", self.url),
            RegistryKind::Confluent => format!("{}/schemas/ids/{id}", self.url),
        };
        let mut req = self.agent.get(&url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let unreachable = |what, source| DecodeError::RegistryUnreachable { url: url.clone(), what, source };
        let mut resp = req.call().map_err(|e| unreachable("", e))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(|e| unreachable("reading the body: ", e))?;
        if status == 404 {
            return Err(DecodeError::SchemaNotFound { id, url });
        }
        if status != 200 {
            return Err(DecodeError::RegistryStatus { url, status });
        }
        let text = match self.kind {
            RegistryKind::Apicurio => body,
            RegistryKind::Confluent => {
                let answer = |message: String| DecodeError::RegistryAnswer { url: url.clone(), message };
                let v: Json = serde_json::from_str(&body).map_err(|e| answer(e.to_string()))?;
                v.get("schema")
                    .and_then(Json::as_str)
                    .ok_or_else(|| answer("no `schema` in the answer".into()))?
                    .to_owned()
            }
        };
        let schema =
            apache_avro::Schema::parse_str(&text).map_err(|source| DecodeError::InvalidSchema { id, source })?;
        let cached = Arc::new(CachedSchema { schema, json: Arc::from(text.as_str()) });
        self.cache.insert(id, cached.clone());
        Ok(cached)
    }
}

/// The schema id and the Avro datum of a registry-framed message: magic byte 0, then a
/// big-endian 4-byte id; a zero 4-byte id means Apicurio's 8-byte global id (as bizon reads it).
pub fn split_framed(value: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    if value.len() < 5 {
        return Err(DecodeError::TooShort { len: value.len() });
    }
    if value[0] != 0 {
        return Err(DecodeError::MagicByte(value[0]));
    }
    let id = u32::from_be_bytes(value[1..5].try_into().expect("4 bytes"));
    if id != 0 {
        return Ok((u64::from(id), &value[5..]));
    }
    if value.len() < 9 {
        return Err(DecodeError::TooShortForApicurio);
    }
    Ok((u64::from_be_bytes(value[1..9].try_into().expect("8 bytes")), &value[9..]))
}

/// Decode an Avro datum to JSON (records as objects, unions as their value, bytes as strings).
pub fn avro_to_json(schema: &apache_avro::Schema, mut datum: &[u8]) -> Result<Json, DecodeError> {
    #[allow(deprecated)] // the replacement builder API is not in every 0.2x release
    let value = apache_avro::from_avro_datum(schema, &mut datum, None).map_err(DecodeError::Avro)?;
    if !datum.is_empty() {
        return Err(DecodeError::AvroTrailingBytes(datum.len()));
    }
    to_json(value)
}

fn to_json(v: apache_avro::types::Value) -> Result<Json, DecodeError> {
    use apache_avro::types::Value as V;
    Ok(match v {
        V::Null => Json::Null,
        V::Boolean(b) => Json::Bool(b),
        V::Int(i) | V::Date(i) | V::TimeMillis(i) => json!(i),
        V::Long(i) | V::TimeMicros(i) | V::TimestampMillis(i) | V::TimestampMicros(i) => json!(i),
        V::LocalTimestampMillis(i) | V::LocalTimestampMicros(i) => json!(i),
        V::TimestampNanos(i) | V::LocalTimestampNanos(i) => json!(i),
        V::Float(f) => json!(f),
        V::Double(f) => json!(f),
        V::String(s) | V::Enum(_, s) => Json::String(s),
        V::Uuid(u) => Json::String(u.to_string()),
        V::Bytes(b) | V::Fixed(_, b) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        V::Union(_, inner) => to_json(*inner)?,
        V::Array(items) => Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        V::Map(m) => {
            Json::Object(m.into_iter().map(|(k, v)| Ok((k, to_json(v)?))).collect::<Result<_, DecodeError>>()?)
        }
        V::Record(fields) => {
            Json::Object(fields.into_iter().map(|(k, v)| Ok((k, to_json(v)?))).collect::<Result<_, DecodeError>>()?)
        }
        other => Json::try_from(other).map_err(DecodeError::AvroValue)?,
    })
}

/// Where a Debezium event came from, for the flattened row's `__kafka_*` columns.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Flatten a Debezium change event as bizon's Debezium transform does: the row is `after` (or
/// `before` for a delete), plus `__operation`, `__deleted`, `__cluster` (`source.name` with `_`
/// → `-`), `__kafka_topic`, `__kafka_partition`, `__kafka_offset` and `__event_timestamp`
/// (`source.ts_ms` as `YYYY-MM-DD HH:MM:SS.ffffff`). A `{schema, payload}` JSON-converter
/// wrapper is unwrapped first.
pub fn debezium_flatten(event: Json, origin: &Origin<'_>) -> Result<Json, DecodeError> {
    let mut event = match event {
        Json::Object(mut m) if m.contains_key("payload") && m.contains_key("schema") => {
            m.remove("payload").unwrap_or(Json::Null)
        }
        e => e,
    };
    let Json::Object(env) = &mut event else {
        return Err(DecodeError::DebeziumNotObject);
    };
    let op = env.get("op").and_then(Json::as_str).ok_or(DecodeError::DebeziumNoOp)?.to_owned();
    let deleted = op == "d";
    let row = match op.as_str() {
        "c" | "r" | "u" => env.remove("after"),
        "d" => env.remove("before"),
        other => return Err(DecodeError::DebeziumOperation(other.to_owned())),
    };
    let Some(Json::Object(mut row)) = row else {
        let side = if deleted { "before" } else { "after" };
        return Err(DecodeError::DebeziumNoRow { op, side });
    };
    let source = env.get("source");
    let cluster = source.and_then(|s| s.get("name")).and_then(Json::as_str).map(|n| n.replace('_', "-"));
    let ts_ms = source.and_then(|s| s.get("ts_ms")).and_then(Json::as_i64);
    row.insert("__operation".into(), Json::String(op));
    row.insert("__deleted".into(), Json::Bool(deleted));
    row.insert("__cluster".into(), cluster.map_or(Json::Null, Json::String));
    row.insert("__kafka_topic".into(), json!(origin.topic));
    row.insert("__kafka_partition".into(), json!(origin.partition));
    row.insert("__kafka_offset".into(), json!(origin.offset));
    let ts = ts_ms.map(|ms| {
        // 2024-01-01T00:00:00.000000+00:00 → 2024-01-01 00:00:00.000000 (bizon's strftime format)
        let s = bizon_core::time::format_rfc3339(ms * 1000).replace('T', " ");
        Json::String(s.trim_end_matches("+00:00").to_owned())
    });
    row.insert("__event_timestamp".into(), ts.unwrap_or(Json::Null));
    Ok(Json::Object(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_message_is_permanent_a_registry_that_cannot_answer_is_not() {
        assert_eq!(split_framed(&[1, 0, 0, 0, 1]).unwrap_err().kind(), ErrorKind::Permanent);
        let not_found = DecodeError::SchemaNotFound { id: 9, url: "http://r".into() };
        assert_eq!(not_found.kind(), ErrorKind::Permanent);
        let status = |status| DecodeError::RegistryStatus { url: "http://r".into(), status }.kind();
        assert_eq!(
            [status(503), status(429), status(401)],
            [ErrorKind::Transient, ErrorKind::Transient, ErrorKind::Config]
        );
        assert_eq!(DecodeError::NoRegistryUrl.kind(), ErrorKind::Config);
        // nothing listens on the discard port: refused at once
        let mut registry = Registry::new("http://127.0.0.1:9", RegistryKind::Confluent, None, None);
        let Err(e) = registry.schema(1) else { panic!("no registry listens there") };
        assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
        assert!(e.to_string().starts_with("schema registry http://127.0.0.1:9/schemas/ids/1: "), "{e}");
    }

    #[test]
    fn framing_reads_confluent_and_apicurio_ids() {
        assert_eq!(split_framed(&[0, 0, 0, 1, 44, 9]).unwrap(), (300, &[9u8][..]));
        assert_eq!(split_framed(&[0, 0, 0, 0, 0, 0, 0, 0, 7, 1]).unwrap(), (7, &[1u8][..]));
        assert!(split_framed(&[1, 0, 0, 0, 1]).unwrap_err().to_string().contains("magic byte 1"));
        assert!(split_framed(&[0, 0]).unwrap_err().to_string().contains("too short"));
    }

    #[test]
    fn avro_datums_decode_to_json() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]},
                {"name":"tags","type":{"type":"array","items":"string"}}]}"#,
        )
        .unwrap();
        let mut rec = apache_avro::types::Record::new(&schema).unwrap();
        rec.put("id", 7i64);
        rec.put("name", apache_avro::types::Value::Union(1, Box::new("x".into())));
        rec.put("tags", apache_avro::types::Value::Array(vec!["a".into()]));
        #[allow(deprecated)]
        let bytes = apache_avro::to_avro_datum(&schema, rec).unwrap();
        assert_eq!(avro_to_json(&schema, &bytes).unwrap(), json!({"id": 7, "name": "x", "tags": ["a"]}));
        assert!(avro_to_json(&schema, &bytes[..1]).is_err());
    }

    #[test]
    fn debezium_events_flatten_like_bizons_transform() {
        let origin = Origin { topic: "cdc.users", partition: 2, offset: 41 };
        let update = json!({"op": "u", "before": {"id": 1, "v": "a"}, "after": {"id": 1, "v": "b"},
            "source": {"name": "main_db", "ts_ms": 1_700_000_000_123i64}});
        let row = debezium_flatten(update, &origin).unwrap();
        assert_eq!(row["v"], "b");
        assert_eq!(row["__deleted"], false);
        assert_eq!(row["__cluster"], "main-db");
        assert_eq!(row["__event_timestamp"], "2023-11-14 22:13:20.123000");
        assert_eq!((row["__kafka_partition"].clone(), row["__kafka_offset"].clone()), (json!(2), json!(41)));
        let delete = json!({"schema": {}, "payload": {"op": "d", "before": {"id": 1}, "after": null, "source": {}}});
        let row = debezium_flatten(delete, &origin).unwrap();
        assert_eq!(
            (row["id"].clone(), row["__deleted"].clone(), row["__operation"].clone()),
            (json!(1), json!(true), json!("d"))
        );
        assert!(debezium_flatten(json!({"op": "t", "source": {}}), &origin).unwrap_err().to_string().contains("`t`"));
        assert!(debezium_flatten(json!([1]), &origin).is_err());
    }
}
