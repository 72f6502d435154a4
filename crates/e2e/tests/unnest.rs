//! `unnest: true` + `record_schemas` through the real binary: the engine's normalization stage
//! gives the file destination bizon's unnested rows (typed, in schema order) and PostgreSQL its
//! typed columns from the same config shape; a value no column type can hold fails the run
//! naming the record, the column, the value and the type.

mod common;
use common::*;

use serde_json::Value;

/// The `record_schemas` of the tests: `id` as text (the stage casts the number), `age` an
/// integer, a column no record has, and no `payload` (dropped).
const SCHEMA: &str =
    "    unnest: true\n    record_schemas:\n      - destination_id: records\n        record_schema:\n          \
                      - {name: name, type: STRING, mode: REQUIRED}\n          - {name: id, type: STRING}\n          \
                      - {name: updated_at, type: TIMESTAMP}\n          - {name: missing, type: FLOAT}\n";

#[test]
fn unnest_to_a_file_writes_each_record_as_its_typed_row_in_schema_order() {
    let s = Scratch::new("unnest-file");
    let total = 1000;
    let cfg = generator_to_file(&s, "unnestfile", total, "  page_size: 128\n", SCHEMA);
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    assert_eq!(summary_records(&err), total, "{err}");
    let text = std::fs::read_to_string(s.path("out.json")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, total);
    for (i, line) in lines.iter().enumerate() {
        let row: Value = serde_json::from_str(line).unwrap();
        let ts = row["updated_at"].as_str().expect("updated_at as the source wrote it");
        assert!(ts.starts_with("2024-01-01T00:00:") && ts.ends_with("+00:00"), "{line}");
        // exactly the schema's columns, in its order, typed: no bizon layout, no `payload`
        assert_eq!(*line, format!(r#"{{"name":"record-{i}","id":"{i}","updated_at":"{ts}","missing":null}}"#));
    }
}

#[test]
fn a_value_its_column_cannot_hold_fails_the_file_run_naming_record_column_value_and_type() {
    let s = Scratch::new("unnest-file-bad");
    let bad =
        "    unnest: true\n    record_schemas:\n      - destination_id: records\n        record_schema:\n          \
               - {name: id, type: INTEGER}\n          - {name: name, type: INTEGER}\n";
    let cfg = generator_to_file(&s, "unnestbad", 50, "  page_size: 10\n", bad);
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"record `0`: column `name` (INTEGER) cannot hold "record-0""#), "{err}");
    assert!(!s.path("out.json").exists(), "nothing published: {:?}", s.files());
}

fn pg_dest(schema: &Schema, extra: &str) -> String {
    format!(
        "destination:\n  name: postgres\n  config:\n    host: {}\n    port: {}\n    database: {}\n    username: {}\n    \
         schema: {}\n    destination_id: records\n{extra}",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user(),
        schema.0
    )
}

#[test]
fn the_same_unnest_config_gives_postgres_its_typed_columns() {
    let s = Scratch::new("unnest-pg");
    let schema = Schema::new("unnestst");
    let text = format!(
        "name: unnestpg\nsource:\n  name: generator\n  stream: records\n  total: 300\n  page_size: 64\n{}\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        pg_dest(&schema, SCHEMA),
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text);
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let c = &mut client();
    let types: Vec<(String, String)> = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'records' AND column_name IN ('name', 'id', 'updated_at', 'missing') \
             ORDER BY ordinal_position",
            &[&schema.0],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want =
        [("name", "text"), ("id", "text"), ("updated_at", "timestamp with time zone"), ("missing", "double precision")];
    assert_eq!(types, want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec());
    let rows = c
        .query(
            &format!(
                "SELECT name, id, missing IS NULL, source_record_id FROM \"{}\".records WHERE id IN ('0', '7', '299') ORDER BY length(id), id",
                schema.0
            ),
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, bool, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got,
        vec![
            ("record-0".into(), "0".into(), true, "0".into()),
            ("record-7".into(), "7".into(), true, "7".into()),
            ("record-299".into(), "299".into(), true, "299".into()),
        ]
    );
    let n: i64 = c.query_one(&format!("SELECT count(DISTINCT id) FROM \"{}\".records", schema.0), &[]).unwrap().get(0);
    assert_eq!(n, 300);
    // the timestamps went through as the source wrote them (one per millisecond)
    let spread: f64 = c
        .query_one(
            &format!(
                "SELECT extract(epoch FROM max(updated_at) - min(updated_at))::float8 FROM \"{}\".records",
                schema.0
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(spread > 0.0, "{spread}");
}
