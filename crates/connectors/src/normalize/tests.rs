//! The normalization stage: the casting table, the row's shape, refusals and where they go.

use super::*;
use bizon_core::ErrorKind;

/// Keeps what it is given, where the test can read it.
#[derive(Default, Clone)]
struct Capture {
    batches: Arc<std::sync::Mutex<Vec<RecordBatch>>>,
}

impl Destination for Capture {
    fn open(&mut self, _: &DestinationContext, _: Option<&Json>) -> Result<Json> {
        Ok(Json::Null)
    }
    fn write(&mut self, batch: &RecordBatch, _: &BatchMeta) -> Result<()> {
        self.batches.lock().unwrap().push(batch.clone());
        Ok(())
    }
    fn flush(&mut self, _: &DestinationCursor) -> Result<Json> {
        Ok(Json::Null)
    }
    fn finalize(&mut self) -> Result<()> {
        Ok(())
    }
}

fn meta() -> BatchMeta {
    BatchMeta { iteration: 0, extracted_at: 0, loaded_at: 0, job_hash: 0 }
}

/// The row of `data` for one column of `kind` (and `mode`), or the refusal's text.
fn one(kind: &str, mode: Option<&str>, data: &str) -> std::result::Result<String, String> {
    let schema = Schema::new([("v", kind, mode)]);
    let mut out = Vec::new();
    let mut fields = Vec::new();
    normalize_record(&mut out, &schema, data.as_bytes(), &mut fields).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

/// The value `v` becomes in a column of `kind`, or the refusal's text.
fn cast(kind: &str, v: &str) -> std::result::Result<String, String> {
    let row = one(kind, None, &format!("{{\"v\": {v}}}"))?;
    Ok(row.strip_prefix("{\"v\":").and_then(|r| r.strip_suffix('}')).unwrap().to_owned())
}

#[test]
fn each_type_casts_the_values_it_can_hold() {
    let good: &[(&str, &str, &str)] = &[
        ("STRING", r#""forty""#, r#""forty""#),
        ("STRING", r#""a\"b\n""#, r#""a\"b\n""#),
        ("STRING", "42", r#""42""#),
        ("STRING", "1.50", r#""1.50""#),
        ("STRING", "true", r#""true""#),
        ("STRING", r#"{"a": [1, "x"]}"#, r#""{\"a\": [1, \"x\"]}""#),
        ("STRING", "[1,2]", r#""[1,2]""#),
        ("INTEGER", "42", "42"),
        ("INT64", "-7", "-7"),
        ("INTEGER", "42.0", "42"),
        ("INTEGER", "1e3", "1000"),
        ("INTEGER", r#"" 12 ""#, "12"),
        ("INTEGER", r#""12.0""#, "12"),
        ("FLOAT", "1.50", "1.50"),
        ("FLOAT64", "3", "3"),
        ("FLOAT", r#""2.5""#, "2.5"),
        ("FLOAT", r#""NaN""#, r#""NaN""#),
        ("FLOAT", r#""-Infinity""#, r#""-Infinity""#),
        ("NUMERIC", "12345678901234567890.123456789", "12345678901234567890.123456789"),
        ("BIGNUMERIC", r#""3.14159265358979323846264""#, r#""3.14159265358979323846264""#),
        ("NUMERIC", r#""1_000""#, r#""1_000""#),
        ("NUMERIC", r#""0x1F""#, r#""0x1F""#),
        ("BOOLEAN", "true", "true"),
        ("BOOL", "false", "false"),
        ("BOOLEAN", r#""TRUE""#, "true"),
        ("BOOLEAN", r#""t""#, "true"),
        ("BOOLEAN", r#""no""#, "false"),
        ("BOOLEAN", r#"" off ""#, "false"),
        ("BOOLEAN", "1", "true"),
        ("BOOLEAN", "0", "false"),
        ("TIMESTAMP", r#""2024-01-02T03:04:05Z""#, r#""2024-01-02T03:04:05Z""#),
        ("TIMESTAMP", "1700000000", "1700000000"),
        ("DATETIME", r#""2024-01-02 03:04:05""#, r#""2024-01-02 03:04:05""#),
        ("DATE", r#""2024-01-02""#, r#""2024-01-02""#),
        ("TIME", r#""03:04:05""#, r#""03:04:05""#),
        ("JSON", r#"{"a": 1}"#, r#"{"a": 1}"#),
        ("RECORD", r#"{"a": {"b": null}}"#, r#"{"a": {"b": null}}"#),
        ("STRUCT", "[1]", "[1]"),
        ("GEOGRAPHY", r#""POINT(1 2)""#, r#""POINT(1 2)""#),
        ("uuid", r#""0c7e…""#, r#""0c7e…""#),
        ("INTEGER", "null", "null"),
    ];
    for (kind, v, want) in good {
        assert_eq!(cast(kind, v).as_deref(), Ok(*want), "{kind} of {v}");
    }
}

#[test]
fn each_type_refuses_what_no_destination_could_store() {
    let bad: &[(&str, &str)] = &[
        ("INTEGER", r#""forty""#),
        ("INTEGER", "4.5"),
        ("INTEGER", "true"),
        ("INTEGER", "[1]"),
        ("INTEGER", "1e30"),
        ("INTEGER", r#""NaN""#),
        ("FLOAT", r#""abc""#),
        ("FLOAT", "false"),
        ("FLOAT", r#"{"x": 1}"#),
        ("NUMERIC", r#""twelve""#),
        ("NUMERIC", "true"),
        ("BOOLEAN", r#""maybe""#),
        ("BOOLEAN", "2"),
        ("BOOLEAN", "1.0"),
        ("BOOLEAN", "{}"),
        ("TIMESTAMP", "true"),
        ("DATE", "{}"),
        ("TIME", "[]"),
    ];
    for (kind, v) in bad {
        let e = cast(kind, v).expect_err(&format!("{kind} of {v} is refused"));
        assert_eq!(e, format!("column `v` ({kind}) cannot hold {v}"));
    }
    let long = format!("\"{}\"", "x".repeat(100));
    let e = cast("INTEGER", &long).unwrap_err();
    assert!(e.ends_with(&format!("cannot hold \"{}…", "x".repeat(59))), "the value is cut short: {e}");
}

#[test]
fn a_required_column_refuses_a_missing_or_null_value() {
    assert_eq!(one("INTEGER", Some("REQUIRED"), "{}").unwrap_err(), "column `v` (INTEGER, REQUIRED) has no value");
    assert_eq!(
        one("STRING", Some("required"), r#"{"v": null}"#).unwrap_err(),
        "column `v` (STRING, REQUIRED) has no value"
    );
    assert_eq!(one("INTEGER", Some("NULLABLE"), "{}").unwrap(), r#"{"v":null}"#);
    assert_eq!(one("INTEGER", Some("REQUIRED"), r#"{"v": "3"}"#).unwrap(), r#"{"v":3}"#);
}

#[test]
fn repeated_columns_cast_each_element() {
    assert_eq!(one("INTEGER", Some("REPEATED"), r#"{"v": [1, "2", null]}"#).unwrap(), r#"{"v":[1,2,null]}"#);
    assert_eq!(
        one("INTEGER", Some("REPEATED"), r#"{"v": [1, "x"]}"#).unwrap_err(),
        r#"column `v` (INTEGER) cannot hold "x""#
    );
}

#[test]
fn rows_hold_the_schema_columns_in_schema_order_and_nothing_else() {
    let schema = Schema::new([("name", "STRING", None), ("id", "INTEGER", None), ("missing", "FLOAT", None)]);
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let data = br#"{"id": "7", "extra": {"dropped": true}, "name": "bizon", "other": 1}"#;
    normalize_record(&mut out, &schema, data, &mut fields).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"name":"bizon","id":7,"missing":null}"#);
    // keys with escapes and names that need them
    let schema = Schema::new([("a\"b", "STRING", None)]);
    let mut out = Vec::new();
    normalize_record(&mut out, &schema, br#"{"a\"b": 1}"#, &mut Vec::new()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"a\"b":"1"}"#);
    let e = normalize_record(&mut Vec::new(), &schema, b"[1]", &mut Vec::new()).unwrap_err();
    assert!(e.to_string().starts_with("not a JSON object, cannot unnest it"), "{e}");
}

fn batch(records: &[(u16, &str, &str)]) -> RecordBatch {
    let mut b = RecordBatch::default();
    for (route, id, data) in records {
        b.push_routed(*route, id, 5, |o| o.extend_from_slice(data.as_bytes()));
    }
    b
}

fn written(capture: &Capture) -> Vec<(u16, String, String)> {
    let batches = capture.batches.lock().unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.iter()
                .enumerate()
                .map(|(i, r)| (b.route(i), r.id.to_owned(), String::from_utf8(r.data.to_vec()).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn age_schema() -> Arc<Schema> {
    Arc::new(Schema::new([("id", "INTEGER", None), ("age", "INTEGER", None)]))
}

#[test]
fn a_refused_record_fails_the_write_naming_record_column_value_and_type() {
    let capture = Capture::default();
    let mut d = Unnested::new(Box::new(capture.clone()), Routes::Single(age_schema()), false);
    let input = batch(&[(0, "r1", r#"{"id": 1, "age": 3}"#), (0, "r7", r#"{"id": 7, "age": "forty"}"#)]);
    let e = d.write(&input, &meta()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains(r#"record `r7`: column `age` (INTEGER) cannot hold "forty""#), "{e}");
    assert!(written(&capture).is_empty(), "nothing of the page reached the destination");
    assert_eq!(d.take_dead_lettered(), 0);
}

#[test]
fn under_dead_letter_a_refused_record_goes_to_the_dead_letter_route_and_is_counted() {
    let capture = Capture::default();
    let mut d = Unnested::new(Box::new(capture.clone()), Routes::Single(age_schema()), true);
    let input = batch(&[
        (0, "r1", r#"{"id": 1, "age": 3, "x": 0}"#),
        (0, "r7", r#"{"id": 7, "age": "forty"}"#),
        (DEAD_LETTER, "bad", r#"{"undecodable": true}"#),
        (0, "r8", r#"{"age": 9, "id": "8"}"#),
    ]);
    d.write(&input, &meta()).unwrap();
    let out = written(&capture);
    assert_eq!(out[0], (0, "r1".into(), r#"{"id":1,"age":3}"#.into()));
    assert_eq!(out[1].0, DEAD_LETTER);
    let dead: Json = serde_json::from_str(&out[1].2).unwrap();
    assert_eq!(dead["source_record_id"], "r7");
    assert_eq!(dead["error"], r#"column `age` (INTEGER) cannot hold "forty""#);
    assert_eq!(dead["record"], serde_json::json!({"id": 7, "age": "forty"}), "the record as it arrived");
    assert_eq!(out[2], (DEAD_LETTER, "bad".into(), r#"{"undecodable": true}"#.into()), "other dead letters pass");
    assert_eq!(out[3], (0, "r8".into(), r#"{"id":8,"age":9}"#.into()));
    assert_eq!(d.take_dead_lettered(), 1);
    assert_eq!(d.take_dead_lettered(), 0, "counted once");
    // a payload that is not JSON at all stays readable in its dead-letter row
    d.write(&batch(&[(0, "raw", "not json")]), &meta()).unwrap();
    let dead: Json = serde_json::from_str(&written(&capture)[4].2).unwrap();
    assert_eq!(dead["record"], "not json");
    assert!(dead["error"].as_str().unwrap().starts_with("not a JSON object"), "{dead}");
}

#[test]
fn each_stream_route_follows_its_own_schema_or_passes_through() {
    let capture = Capture::default();
    let names = Arc::new(Schema::new([("name", "STRING", None)]));
    let routes = Routes::PerStream(vec![Some(age_schema()), None, Some(names)]);
    let mut d = Unnested::new(Box::new(capture.clone()), routes, false);
    let input = batch(&[
        (0, "a", r#"{"age": "5", "id": 1, "name": "x"}"#),
        (1, "b", r#"{"age": "five"}"#),
        (2, "c", r#"{"age": 5, "name": 12}"#),
    ]);
    d.write(&input, &meta()).unwrap();
    assert_eq!(
        written(&capture),
        vec![
            (0, "a".into(), r#"{"id":1,"age":5}"#.into()),
            (1, "b".into(), r#"{"age": "five"}"#.into()),
            (2, "c".into(), r#"{"name":"12"}"#.into()),
        ]
    );
    // route 0 without `streams:` only
    let capture = Capture::default();
    let mut d = Unnested::new(Box::new(capture.clone()), Routes::Single(age_schema()), false);
    d.write(&batch(&[(3, "z", r#"{"age": "five"}"#)]), &meta()).unwrap();
    assert_eq!(written(&capture)[0].2, r#"{"age": "five"}"#);
}

#[test]
fn schemas_come_from_record_schemas_and_stream_entries() {
    let s = Schema::of_json(&serde_json::json!([{"name": "a", "type": "INTEGER", "mode": "REQUIRED"}])).unwrap();
    assert!(s.columns[0].required && s.columns[0].cast == Cast::Integer);
    assert!(Schema::of_json(&serde_json::json!([{"name": "a"}])).is_none());
}
