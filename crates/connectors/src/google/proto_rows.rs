//! Rows as protobuf messages for the Storage Write API: the message's descriptor from a table's
//! columns (field `i + 1` is column `i`), and each value encoded to its column's wire type.
//!
//! Wire types, as Google's conversion table prefers them: INT64 `int64`, FLOAT64 `double`, BOOL
//! `bool`, BYTES `bytes` (a record's base64 text decoded here), TIMESTAMP `int64` microseconds
//! (a record's RFC 3339 text, or epoch seconds, converted here), DATE `int32` days since the
//! epoch; NUMERIC, BIGNUMERIC, DATETIME, TIME, JSON, GEOGRAPHY (WKT) and STRING as `string`.
//! RECORD columns are nested messages (`BizonRecord<field number>`, declared inside the message
//! that holds them, so the descriptor is self-contained). REPEATED columns are repeated fields. A
//! value its column cannot hold is refused here, before
//! anything is sent, with what was wrong: the caller names the record and the column.

use base64::Engine as _;
use bizon_core::Json;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::table::Column;
use crate::http::stream::kind_of;

/// How a column's values travel.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    Text,
    /// NUMERIC / BIGNUMERIC: text that must read as a number.
    Decimal,
    Bytes,
    Int64,
    Double,
    Bool,
    Micros,
    Days,
    /// RECORD: a nested message.
    Message,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    tag: u32,
    wire: Wire,
    repeated: bool,
    required: bool,
    /// JSON columns: objects and arrays are sent as their JSON text.
    json: bool,
    /// RECORD columns: the encoder of their own columns.
    nested: Option<RowEncoder>,
}

/// The encoder of one table's rows.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    fields: Vec<Field>,
}

/// Days from 0000-03-01 (proleptic Gregorian) to 1970-01-01, for [`days_from_civil`].
const UNIX_EPOCH_DAYS: i64 = 719_468;

/// Days since 1970-01-01 of a valid civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - UNIX_EPOCH_DAYS
}

/// `YYYY-MM-DD` as days since the epoch; impossible dates are `None`.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let len = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > len {
        return None;
    }
    i32::try_from(days_from_civil(y as i64, m, d)).ok()
}

fn put_len(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, tag: u32, v: u64) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(v, out);
}

impl RowEncoder {
    /// The encoder of rows of `columns`.
    pub fn new(columns: &[Column]) -> Self {
        let fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field {
                name: c.name.clone(),
                tag: i as u32 + 1,
                wire: match c.kind.as_str() {
                    "INT64" => Wire::Int64,
                    "FLOAT64" => Wire::Double,
                    "BOOL" => Wire::Bool,
                    "BYTES" => Wire::Bytes,
                    "TIMESTAMP" => Wire::Micros,
                    "DATE" => Wire::Days,
                    "NUMERIC" | "BIGNUMERIC" => Wire::Decimal,
                    "RECORD" => Wire::Message,
                    _ => Wire::Text,
                },
                repeated: c.mode == "REPEATED",
                required: c.mode == "REQUIRED",
                json: c.kind == "JSON",
                nested: (c.kind == "RECORD").then(|| RowEncoder::new(&c.fields)),
            })
            .collect();
        RowEncoder { fields }
    }

    /// The rows' message type (`proto2`, every field optional or repeated: BigQuery checks
    /// REQUIRED columns itself, and this encoder before it).
    pub fn descriptor(&self) -> DescriptorProto {
        self.message("BizonRow")
    }

    fn message(&self, name: &str) -> DescriptorProto {
        let record = |f: &Field| format!("BizonRecord{}", f.tag);
        DescriptorProto {
            name: Some(name.into()),
            field: self
                .fields
                .iter()
                .map(|f| FieldDescriptorProto {
                    name: Some(f.name.clone()),
                    number: Some(f.tag as i32),
                    label: Some(if f.repeated { Label::Repeated } else { Label::Optional } as i32),
                    r#type: Some(match f.wire {
                        Wire::Text | Wire::Decimal => Type::String,
                        Wire::Bytes => Type::Bytes,
                        Wire::Int64 | Wire::Micros => Type::Int64,
                        Wire::Double => Type::Double,
                        Wire::Bool => Type::Bool,
                        Wire::Days => Type::Int32,
                        Wire::Message => Type::Message,
                    } as i32),
                    // Relative to the message holding it: resolved in its scope.
                    type_name: f.nested.as_ref().map(|_| record(f)),
                    ..Default::default()
                })
                .collect(),
            nested_type: self.fields.iter().filter_map(|f| Some(f.nested.as_ref()?.message(&record(f)))).collect(),
            ..Default::default()
        }
    }

    /// The column names, field by field.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Text (or bytes) for field `i` as it is.
    pub fn put_text(&self, out: &mut Vec<u8>, i: usize, text: &[u8]) {
        put_len(out, self.fields[i].tag, text);
    }

    /// An integer for field `i` (INT64, or TIMESTAMP microseconds).
    pub fn put_int(&self, out: &mut Vec<u8>, i: usize, v: i64) {
        put_varint(out, self.fields[i].tag, v as u64);
    }

    /// A record's value (JSON) for field `i`; `Err` says why the column cannot hold it.
    pub fn put_json(&self, out: &mut Vec<u8>, i: usize, value: Option<&Json>) -> Result<(), String> {
        let f = &self.fields[i];
        match value {
            None | Some(Json::Null) if f.required => Err("the column is REQUIRED and the record has no value".into()),
            None | Some(Json::Null) => Ok(()),
            Some(Json::Array(items)) if f.repeated => {
                for v in items {
                    if v.is_null() {
                        return Err("a REPEATED column cannot hold a null element".into());
                    }
                    scalar(out, f, v)?;
                }
                Ok(())
            }
            Some(v) if f.repeated => Err(format!("a REPEATED column takes an array, not {}", kind_of(v))),
            Some(v) => scalar(out, f, v),
        }
    }
}

/// One value of field `f`.
fn scalar(out: &mut Vec<u8>, f: &Field, v: &Json) -> Result<(), String> {
    let refuse = |what: &str| Err(format!("{} is not {what}", short(v)));
    match f.wire {
        Wire::Text => match v {
            Json::String(s) => put_len(out, f.tag, s.as_bytes()),
            Json::Number(_) | Json::Bool(_) => put_len(out, f.tag, v.to_string().as_bytes()),
            _ if f.json => put_len(out, f.tag, v.to_string().as_bytes()),
            _ => return refuse("text"),
        },
        Wire::Message => {
            let (Json::Object(o), Some(nested)) = (v, f.nested.as_ref()) else { return refuse("an object (RECORD)") };
            let mut message = Vec::new();
            for (i, g) in nested.fields.iter().enumerate() {
                nested
                    .put_json(&mut message, i, o.get(&g.name))
                    .map_err(|why| format!("field `{}.{}`: {why}", f.name, g.name))?;
            }
            put_len(out, f.tag, &message);
        }
        Wire::Decimal => match v {
            Json::Number(n) => put_len(out, f.tag, n.to_string().as_bytes()),
            Json::String(s) if is_decimal(s) => put_len(out, f.tag, s.trim().as_bytes()),
            _ => return refuse("a decimal number"),
        },
        Wire::Bytes => match v {
            Json::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => put_len(out, f.tag, &b),
                Err(_) => return refuse("base64 (BYTES values are base64 text)"),
            },
            _ => return refuse("base64 text"),
        },
        Wire::Int64 => {
            let n = match v {
                Json::Number(n) => {
                    n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.2e18).map(|x| x as i64))
                }
                Json::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) => put_varint(out, f.tag, n as u64),
                None => return refuse("a 64-bit integer"),
            }
        }
        Wire::Double => {
            let x = match v {
                Json::Number(n) => n.as_f64(),
                Json::String(s) => match s.trim() {
                    "NaN" => Some(f64::NAN),
                    "Infinity" | "inf" => Some(f64::INFINITY),
                    "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
                    t => t.parse::<f64>().ok().filter(|x| x.is_finite()),
                },
                _ => None,
            };
            match x {
                Some(x) => {
                    encode_key(f.tag, WireType::SixtyFourBit, out);
                    out.extend_from_slice(&x.to_le_bytes());
                }
                None => return refuse("a number"),
            }
        }
        Wire::Bool => {
            let b = match v {
                Json::Bool(b) => Some(*b),
                Json::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
                Json::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            match b {
                Some(b) => put_varint(out, f.tag, b as u64),
                None => return refuse("a boolean"),
            }
        }
        Wire::Micros => {
            let micros = match v {
                // insertAll's reading of a number: seconds since the epoch.
                Json::Number(n) => n.as_f64().map(|s| (s * 1e6).round()).filter(|m| m.abs() < 9.2e18).map(|m| m as i64),
                Json::String(s) => {
                    let s = s.trim();
                    let s = s.strip_suffix(" UTC").unwrap_or(s);
                    bizon_core::time::parse_rfc3339(s).or_else(|| parse_date(s).map(|d| d as i64 * 86_400_000_000))
                }
                _ => None,
            };
            match micros {
                Some(m) => put_varint(out, f.tag, m as u64),
                None => return refuse("a timestamp (RFC 3339, `YYYY-MM-DD HH:MM:SS[.ffffff][ UTC]` or epoch seconds)"),
            }
        }
        Wire::Days => match v.as_str().map(str::trim).and_then(parse_date) {
            Some(d) => put_varint(out, f.tag, d as i64 as u64),
            None => return refuse("a date (YYYY-MM-DD)"),
        },
    }
    Ok(())
}

fn is_decimal(s: &str) -> bool {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.as_bytes()[0] != b'e'
        && t.parse::<f64>().is_ok_and(f64::is_finite)
}

/// A value for a message, cut to 60 characters.
fn short(v: &Json) -> String {
    let t = v.to_string();
    match t.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &t[..at]),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoder() -> RowEncoder {
        RowEncoder::new(&[
            Column::new("i", "INT64", "NULLABLE"),
            Column::new("ts", "TIMESTAMP", "REQUIRED"),
            Column::new("d", "DATE", "NULLABLE"),
            Column::new("tags", "STRING", "REPEATED"),
            Column::new("f", "FLOAT64", "NULLABLE"),
            Column::new("by", "BYTES", "NULLABLE"),
        ])
    }

    #[test]
    fn dates_count_days_from_the_epoch_and_impossible_ones_are_refused() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("0001-01-01"), Some(-719_162));
        assert_eq!(parse_date("9999-12-31"), Some(2_932_896));
        for bad in ["2023-02-29", "2024-13-01", "2024-00-10", "2024-1-01", "24-01-01", "2024-04-31", "abcd-ef-gh"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_encode_to_their_wire_types() {
        let e = encoder();
        let mut out = Vec::new();
        e.put_json(&mut out, 0, Some(&json!("-2"))).unwrap();
        assert_eq!(out, [0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        out.clear();
        e.put_json(&mut out, 1, Some(&json!("1970-01-01T00:00:01.5Z"))).unwrap();
        assert_eq!(out, [0x10, 0xe0, 0xc6, 0x5b]); // 1,500,000 µs
        out.clear();
        e.put_json(&mut out, 2, Some(&json!("1970-01-11"))).unwrap();
        assert_eq!(out, [0x18, 10]);
        out.clear();
        e.put_json(&mut out, 3, Some(&json!(["a", "bc"]))).unwrap();
        assert_eq!(out, [0x22, 1, b'a', 0x22, 2, b'b', b'c']);
        out.clear();
        e.put_json(&mut out, 4, Some(&json!(1.5))).unwrap();
        assert_eq!(out[0], 0x29);
        assert_eq!(f64::from_le_bytes(out[1..9].try_into().unwrap()), 1.5);
        out.clear();
        e.put_json(&mut out, 5, Some(&json!("aGk="))).unwrap();
        assert_eq!(out, [0x32, 2, b'h', b'i']);
        let d = e.descriptor();
        assert_eq!(d.field.len(), 6);
        assert_eq!(d.field[3].label, Some(Label::Repeated as i32));
        assert_eq!(d.field[2].r#type, Some(Type::Int32 as i32));
    }

    #[test]
    fn record_columns_are_nested_messages_declared_inside_their_parent() {
        let mut who = Column::new("who", "RECORD", "REPEATED");
        who.fields = vec![Column::new("n", "INT64", "NULLABLE"), Column::new("j", "JSON", "NULLABLE")];
        let e = RowEncoder::new(&[who]);
        let d = e.descriptor();
        assert_eq!(d.nested_type.len(), 1);
        assert_eq!(d.nested_type[0].name.as_deref(), Some("BizonRecord1"));
        assert_eq!(d.nested_type[0].field.len(), 2);
        assert_eq!(d.field[0].type_name.as_deref(), Some("BizonRecord1"));
        assert_eq!(d.field[0].r#type, Some(Type::Message as i32));
        let mut out = Vec::new();
        e.put_json(&mut out, 0, Some(&json!([{"n": 1, "j": {"a": 1}}, {"n": 2}]))).unwrap();
        let first = [0x08, 1, 0x12, 7, b'{', b'"', b'a', b'"', b':', b'1', b'}'];
        let mut want = vec![0x0a, first.len() as u8];
        want.extend(first);
        want.extend([0x0a, 2, 0x08, 2]);
        assert_eq!(out, want);
        let why = e.put_json(&mut Vec::new(), 0, Some(&json!([{"n": "x"}]))).unwrap_err();
        assert!(why.contains("field `who.n`") && why.contains("not a 64-bit integer"), "{why}");
        let why = e.put_json(&mut Vec::new(), 0, Some(&json!(["flat"]))).unwrap_err();
        assert!(why.contains("not an object (RECORD)"), "{why}");
    }

    #[test]
    fn values_a_column_cannot_hold_are_refused_saying_why() {
        let e = encoder();
        let mut out = Vec::new();
        let why = |i: usize, v: Option<Json>| e.clone().put_json(&mut Vec::new(), i, v.as_ref()).unwrap_err();
        assert!(why(0, Some(json!("twelve"))).contains("\"twelve\" is not a 64-bit integer"));
        assert!(why(0, Some(json!(1.5))).contains("not a 64-bit integer"));
        assert!(why(1, None).contains("REQUIRED"));
        assert!(why(1, Some(json!("yesterday"))).contains("not a timestamp"));
        assert!(why(2, Some(json!("2023-02-29"))).contains("not a date"));
        assert!(why(3, Some(json!("a"))).contains("takes an array"));
        assert!(why(3, Some(json!(["a", null]))).contains("null element"));
        assert!(why(5, Some(json!("not base64!"))).contains("base64"));
        assert!(e.put_json(&mut out, 0, None).is_ok() && out.is_empty(), "a missing NULLABLE value is no field");
    }
}
