//! Encoders and the field scanner of the PostgreSQL destination.

use super::*;

#[test]
fn fields_scanner_finds_raw_tokens() {
    let data = br#" { "a" : "x\"}y" , "b":[1,{"c":"]"}], "d": -1.5e3 ,"e":null,"f":{"g":{}} } "#;
    let f = Fields::parse_into(data, Vec::new()).unwrap();
    assert_eq!(f.get("a"), Some(r#""x\"}y""#));
    assert_eq!(f.get("b"), Some(r#"[1,{"c":"]"}]"#));
    assert_eq!(f.get("d"), Some("-1.5e3"));
    assert_eq!(f.get("e"), Some("null"));
    assert_eq!(f.get("f"), Some(r#"{"g":{}}"#));
    assert_eq!(f.get("zz"), None);
    assert!(Fields::parse_into(b"{}", Vec::new()).unwrap().get("a").is_none());
    for bad in [&b"[1]"[..], b"{\"a\" 1}", b"{\"a\":}", b"{\"a\":\"x", b"{\"a\":1"] {
        assert!(Fields::parse_into(bad, Vec::new()).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn binary_values_encode_each_kind() {
    let enc = |k, raw| {
        let mut out = Vec::new();
        push_binary_value(&mut out, k, raw).map(|_| out)
    };
    assert_eq!(enc(BinKind::Int8, "42").unwrap(), [&8i32.to_be_bytes()[..], &42i64.to_be_bytes()[..]].concat());
    assert_eq!(enc(BinKind::Int8, "\"7\"").unwrap()[4..], 7i64.to_be_bytes());
    assert_eq!(enc(BinKind::Float8, "1.5").unwrap()[4..], 1.5f64.to_be_bytes());
    assert_eq!(enc(BinKind::Bool, "true").unwrap(), [0, 0, 0, 1, 1]);
    assert_eq!(enc(BinKind::Text, r#""a\"b""#).unwrap(), [&3i32.to_be_bytes()[..], b"a\"b"].concat());
    assert_eq!(enc(BinKind::Jsonb, r#"{"k":1}"#).unwrap(), [&8i32.to_be_bytes()[..], b"\x01{\"k\":1}"].concat());
    assert_eq!(enc(BinKind::Timestamptz, r#""2000-01-01T00:00:01Z""#).unwrap()[4..], 1_000_000i64.to_be_bytes());
    assert_eq!(enc(BinKind::Date, r#""2000-01-03""#).unwrap()[4..], 2i32.to_be_bytes());
    assert!(enc(BinKind::Int8, "\"x\"").unwrap_err().contains("expected an integer"));
    assert!(enc(BinKind::Timestamptz, "\"soon\"").unwrap_err().contains("RFC 3339"));
}

#[test]
fn typed_text_rows_escape_and_convert_every_kind_of_value() {
    let mut b = RecordBatch::default();
    b.push("r\t1", 0, br#"{"a":"x\ty\\z\"q\nw","b":null,"c":{"k":[1,"\t"]},"d":1.5,"e":true}"#);
    let meta = BatchMeta { iteration: 2, extracted_at: 0, loaded_at: 0, job_hash: 0xab };
    let cols: Vec<(String, String)> =
        ["a", "b", "c", "d", "e", "missing"].iter().map(|c| (c.to_string(), "text".to_string())).collect();
    let mut out = Vec::new();
    encode_text_rows(&mut out, &b, 0..1, &meta, &cols).unwrap();
    let line = String::from_utf8(out).unwrap();
    let fields: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
    assert_eq!(fields[0], "x\\ty\\\\z\"q\\nw");
    assert_eq!(fields[1], "\\N");
    assert_eq!(fields[2], r#"{"k":[1,"\\t"]}"#);
    assert_eq!(&fields[3..6], ["1.5", "true", "\\N"]);
    assert_eq!(fields[6], "00000000000000ab0000000200000000");
    assert_eq!(fields[9], "r\\t1");
    let mut bad = RecordBatch::default();
    bad.push("x", 0, b"[1,2]");
    let e = encode_text_rows(&mut Vec::new(), &bad, 0..1, &meta, &cols).unwrap_err();
    assert!(e.message().contains("not a JSON object"), "{}", e.message());
}

#[test]
fn upserts_are_refused_on_lanes_before_the_server_is_touched() {
    // port 9: nothing listens, so a config error proves the refusal came first
    let config: PostgresConfig = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1", "port": 9, "database": "test", "username": "u", "primary_key": "id"
    }))
    .unwrap();
    let mut d = PostgresDestination::new(&config, "t", None);
    let ctx = DestinationContext { lane: Some((1, 2)), ..context("j~1", SyncMode::Incremental) };
    let e = d.open(&ctx, None).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Config, "{e}");
    assert!(e.message().contains("`primary_key`") && e.message().contains("2 lanes"), "{e}");
}

/// A job's context on one lane.
fn context(job_id: &str, sync_mode: SyncMode) -> DestinationContext {
    DestinationContext {
        pipeline: "p".into(),
        job_id: job_id.into(),
        source: "s".into(),
        stream: "r".into(),
        sync_mode,
        lane: None,
    }
}

/// The local server's `test` database, writing into `schema`.
fn local_config(schema: &str) -> PostgresConfig {
    serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1", "database": "test", "username": "postgres", "schema": schema
    }))
    .unwrap()
}

#[test]
fn runs_creating_the_same_tables_at_once_all_succeed() {
    // A killed run's server session goes on with its DDL until it next reads from the dead
    // client, so the next run can create the same table at the same moment: several fresh opens
    // of one table at once must all succeed (unserialized, one fails on the catalog's unique key).
    let schema = crate::conformance::pg::Schema::new("ddl_race");
    let config = local_config(&schema.0);
    for (round, mode) in [SyncMode::FullRefresh, SyncMode::Incremental].into_iter().cycle().take(8).enumerate() {
        let table = format!("t{round}");
        let start = std::sync::Barrier::new(4);
        let errors: Vec<String> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|k| {
                    let (config, table, start) = (&config, &table, &start);
                    s.spawn(move || {
                        let mut d = PostgresDestination::new(config, table, None);
                        let ctx = context(&format!("j{round}-{k}"), mode);
                        start.wait();
                        d.open(&ctx, None).err().map(|e| format!("run {k}: {e}"))
                    })
                })
                .collect();
            runs.into_iter().filter_map(|r| r.join().unwrap()).collect()
        });
        assert!(errors.is_empty(), "round {round} ({mode:?}): {errors:?}");
    }
}

#[test]
fn a_run_that_finds_its_job_published_meanwhile_does_not_publish_again() {
    // run 1 publishes after run 2's `open` read "not published"; run 2 then creates a new (empty)
    // staging table and finalizes: the published table must keep run 1's rows
    let schema = crate::conformance::pg::Schema::new("republish");
    let config = local_config(&schema.0);
    let ctx = context("j", SyncMode::FullRefresh);
    let mut one = PostgresDestination::new(&config, "t", None);
    one.open(&ctx, None).unwrap();
    let mut batch = RecordBatch::default();
    for i in 0..5 {
        batch.push(&i.to_string(), 1_600_000_000_000_000, br#"{"a":1}"#);
    }
    let meta = BatchMeta { iteration: 0, extracted_at: 1, loaded_at: 2, job_hash: 3 };
    one.write(&batch, &meta).unwrap();
    let mut cursor = bizon_testkit::destination::next_cursor(0, 5);
    cursor.done = true;
    let token = one.flush(&cursor).unwrap();
    let mut two = PostgresDestination::new(&config, "t", None);
    two.open(&ctx, Some(&token)).unwrap();
    one.finalize().unwrap();
    two.create_tables(false).unwrap(); // what run 2's open did after run 1's publish
    two.finalize().unwrap();
    let mut client = crate::conformance::pg::client();
    let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {}.t", schema.0), &[]).unwrap().get(0);
    assert_eq!(rows, 5, "the published table lost run 1's rows");
}
