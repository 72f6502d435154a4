//! End-to-end against the real PostgreSQL server (127.0.0.1:5432, trust auth, database `test`;
//! override with BIZON_TEST_PG_HOST / _PORT / _USER / _DB). Each test works in its own schema and
//! drops it at the end.

mod common;

use std::time::Duration;

use common::*;

fn dest_config(schema: &Schema, extra: &str) -> String {
    format!(
        "destination:\n  name: postgres\n  config:\n    host: {}\n    port: {}\n    database: {}\n    username: {}\n    \
         password: \"p@ss:w/rd with spaces\"\n    schema: {}\n    destination_id: records\n{extra}",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user(),
        schema.0
    )
}

fn gen_to_pg(s: &Scratch, schema: &Schema, name: &str, total: u64, source_extra: &str, dest_extra: &str) -> String {
    let text = format!(
        "name: {name}\nsource:\n  name: generator\n  stream: records\n  total: {total}\n{source_extra}{}\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        dest_config(schema, dest_extra),
        s.path("state.db").display()
    );
    s.write("pipeline.yml", &text).to_str().unwrap().to_owned()
}

#[test]
fn dummy_rows_land_in_bizons_layout_with_jsonb_data() {
    let s = Scratch::new("pg-dummy");
    let schema = Schema::new("dummy");
    let text = format!("name: pg-dummy\nsource:\n  name: dummy\n  stream: creatures\n{}", dest_config(&schema, ""));
    let cfg = s.write("c.yml", &text);
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let rows = client()
        .query(
            &format!(
                "SELECT source_record_id, source_data->>'name', length(bizon_id), bizon_loaded_at >= bizon_extracted_at \
                 FROM \"{}\".records ORDER BY bizon_id",
                schema.0
            ),
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, i32, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let names: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(names, ["bizon", "croco", "froggy", "turtle", "poulpo"]);
    assert!(got.iter().all(|g| g.2 == 32 && g.3));
    assert_eq!(got[0].0, "9898");
    assert!(client()
        .query_opt(
            &format!(
                "SELECT 1 FROM pg_tables WHERE schemaname = '{}' AND tablename = 'records__bizon_staging'",
                schema.0
            ),
            &[]
        )
        .unwrap()
        .is_none());
}

#[test]
fn kill_9_at_five_seeded_moments_exactly_once_in_postgres() {
    let s = Scratch::new("pg-kill");
    let schema = Schema::new("kill");
    let cfg = gen_to_pg(&s, &schema, "pgkill", 1_000_000, "  page_size: 5000\n", "    buffer_size: 2\n");
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0xC0FF_EE05, 5, 100, 700);
    assert!(interrupted >= 3, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    assert_eq!(schema.count("records"), (1_000_000, 1_000_000));
}

#[test]
fn crash_between_the_destination_commit_and_the_backend_commit_is_recovered() {
    let s = Scratch::new("pg-recover");
    let schema = Schema::new("recover");
    let cfg = gen_to_pg(&s, &schema, "pgrecover", 20_000, "  page_size: 1000\n", "    buffer_size: 0\n");
    // Abort right after the destination committed rows + cursor, before the backend stored it.
    let out = s
        .cmd(&["run", &cfg, "--no-progress"])
        .env("BIZON_FAILPOINTS", "before_commit=abort@0.3")
        .env("BIZON_FAILPOINTS_SEED", "3")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint must abort");
    let logs = run_until_done(&s, &cfg, 1);
    assert!(logs[0].contains("the destination holds a newer commit"), "{}", logs[0]);
    assert_eq!(schema.count("records"), (20_000, 20_000));
}

#[test]
fn full_refresh_readers_see_old_or_new_row_counts_only() {
    let s = Scratch::new("pg-visibility");
    let schema = Schema::new("vis");
    let cfg = gen_to_pg(&s, &schema, "pgvis", 20_000, "  page_size: 500\n", "");
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_eq!(schema.count("records").0, 20_000);

    let slow = "  page_size: 500\n  rate_limit: 40000\n";
    let cfg = gen_to_pg(&s, &schema, "pgvis", 30_000, slow, "    buffer_size: 0\n");
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    let reader = client();
    let mut reader = reader;
    let mut polls = 0;
    while child.try_wait().unwrap().is_none() {
        let n: i64 = reader.query_one(&format!("SELECT count(*) FROM \"{}\".records", schema.0), &[]).unwrap().get(0);
        assert!(n == 20_000 || n == 30_000, "a reader saw {n} rows");
        polls += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(polls > 5, "the run was too fast to observe ({polls} polls)");
    assert_eq!(schema.count("records"), (30_000, 30_000));

    let cfg = gen_to_pg(&s, &schema, "pgvis", 40_000, slow, "    buffer_size: 0\n");
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    wait_until("staging rows", Duration::from_secs(30), || schema.try_count("records__bizon_staging").unwrap_or(0) > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(schema.count("records").0, 30_000, "a killed full refresh leaves the previous table");
    run_until_done(&s, &cfg, 1);
    assert_eq!(schema.count("records"), (40_000, 40_000));
}

#[test]
fn incremental_appends_exactly_once_across_a_kill() {
    let s = Scratch::new("pg-inc");
    let schema = Schema::new("inc");
    let inc = "  sync_mode: incremental\n  cursor_field: updated_at\n  page_size: 500\n  rate_limit: 100000\n";
    let cfg = gen_to_pg(&s, &schema, "pginc", 20_000, inc, "    buffer_size: 0\n");
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    let cfg = gen_to_pg(&s, &schema, "pginc", 100_000, inc, "    buffer_size: 0\n");
    kill_mid_run(&s, &cfg, 400);
    run_until_done(&s, &cfg, 1);
    assert_eq!(schema.count("records"), (100_000, 100_000));
}

#[test]
fn connection_errors_are_clear_and_never_print_the_password() {
    let s = Scratch::new("pg-errors");
    let schema = Schema::new("err");
    let base = format!("name: pgerr\nsource:\n  name: dummy\n  stream: creatures\n{}", dest_config(&schema, ""));
    let missing_db = s.write("db.yml", &base.replace(&format!("database: {}", pg_db()), "database: bizon_no_such_db"));
    let out = s.run(&["run", missing_db.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bizon_no_such_db") && err.contains("does not exist"), "{err}");
    assert!(!err.contains("p@ss:w/rd"), "password leaked:\n{err}");

    let bad_host = s.write("host.yml", &base.replace(&format!("host: {}", pg_host()), "host: no-such-host.invalid"));
    let out = s.run(&["run", bad_host.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
    assert!(!err.contains("p@ss:w/rd"), "password leaked:\n{err}");

    let tls = s
        .write("tls.yml", &base.replace("destination_id: records", "destination_id: records\n    sslrootcert: /x.pem"));
    let out = s.run(&["config", "validate", tls.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`sslrootcert` is only used with `sslmode: verify-ca` or `verify-full`"),
        "{}",
        stderr(&out)
    );
}

fn backend_config(schema: &Schema, lease: u64) -> String {
    format!(
        "engine:\n  backend:\n    type: postgres\n    config:\n      host: {}\n      port: {}\n      database: {}\n      \
         username: {}\n      password: \"p@ss:w/rd with spaces\"\n      schema: {}\n      syncCursorInDBEvery: 2\n      \
         lease_seconds: {lease}\n",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user(),
        schema.0
    )
}

/// generator → postgres with the postgres backend in the same schema.
fn all_pg(s: &Scratch, schema: &Schema, name: &str, total: u64, source_extra: &str, lease: u64) -> String {
    let text = format!(
        "name: {name}\nsource:\n  name: generator\n  stream: records\n  total: {total}\n{source_extra}{}{}",
        dest_config(schema, "    buffer_size: 0\n"),
        backend_config(schema, lease)
    );
    s.write("pipeline.yml", &text).to_str().unwrap().to_owned()
}

#[test]
fn postgres_backend_resumes_after_kill_9_exactly_once() {
    let s = Scratch::new("pgb-kill");
    let schema = Schema::new("bkill");
    let cfg = all_pg(&s, &schema, "pgbkill", 200_000, "  page_size: 2000\n  rate_limit: 150000\n", 30);
    let mut rng = Rng(0xBAC0_0001);
    for _ in 0..3 {
        let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
        std::thread::sleep(Duration::from_millis(150 + rng.below(350)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let logs = run_until_done(&s, &cfg, 2);
    assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    assert_eq!(schema.count("records"), (200_000, 200_000));
    let jobs = stdout(&s.run(&["job", "list", &cfg]));
    assert!(jobs.contains("succeeded") && jobs.contains("200000/200000"), "{jobs}");
    let (state,): (i64,) = {
        let r = client().query_one(&format!("SELECT count(*) FROM \"{}\".bizon_jobs", schema.0), &[]).unwrap();
        (r.get(0),)
    };
    assert_eq!(state, 1, "one job, resumed across the kills");
}

#[test]
fn postgres_backend_refuses_a_second_run_and_fences_a_paused_one() {
    let s = Scratch::new("pgb-fence");
    let schema = Schema::new("fence");
    let slow = all_pg(&s, &schema, "pgfence", 40_000, "  page_size: 500\n  rate_limit: 8000\n", 2);
    let first = s.spawn(&["run", &slow, "--no-progress"]);
    wait_until("rows in staging", Duration::from_secs(30), || {
        schema.try_count("records__bizon_staging").unwrap_or(0) > 0
    });

    // While the first run is alive and heart-beating, a second one is refused.
    let second = s.run(&["run", &slow, "--no-progress"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("already running: job ") && err.contains(&format!("(pid {} on ", first.id())), "{err}");

    // Pause the first run; after its lease (2 s) a new run takes over and completes.
    unsafe {
        libc::kill(first.id() as i32, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_millis(2600));
    let fast = all_pg(&s, &schema, "pgfence", 40_000, "  page_size: 500\n", 2);
    let out = s.run(&["run", &fast, "--no-progress"]);
    let err = ok(&out);
    assert!(err.contains("taking over") && err.contains("resumed after iteration"), "{err}");
    assert_eq!(schema.count("records"), (40_000, 40_000));

    // The stale run wakes up: it must not commit anything.
    unsafe {
        libc::kill(first.id() as i32, libc::SIGCONT);
    }
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the fenced run fails:\n{err}");
    assert!(err.contains("fenced"), "{err}");
    assert_eq!(schema.count("records"), (40_000, 40_000), "nothing written by the stale run");
    let jobs = stdout(&s.run(&["job", "list", &fast]));
    assert!(jobs.contains("succeeded"), "the stale run must not mark the job failed:\n{jobs}");
}

fn source_config(schema: &Schema, stream: &str, extra: &str) -> String {
    format!(
        "source:\n  name: postgres\n  stream: {stream}\n  host: {}\n  port: {}\n  database: {}\n  username: {}\n  schema: {}\n{extra}",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user(),
        schema.0
    )
}

/// A source table `src` with `n` rows: id, name, updated_at (one second apart from 2024-01-01).
fn create_source_table(schema: &Schema, n: i64) {
    client()
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\"; CREATE TABLE \"{s}\".src (id bigint PRIMARY KEY, name text NOT NULL, \
             updated_at timestamptz NOT NULL); INSERT INTO \"{s}\".src SELECT g, 'row-' || g, \
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series(1, {n}) g",
            s = schema.0
        ))
        .unwrap();
}

#[test]
fn postgres_to_postgres_kill_9_exactly_once() {
    let s = Scratch::new("pg2pg-kill");
    let schema = Schema::new("p2p");
    create_source_table(&schema, 1_000_000);
    let text = format!(
        "name: pg2pg\n{}{}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        source_config(&schema, "src", "  batch_size: 5000\n"),
        dest_config(&schema, "    buffer_size: 2\n"),
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text).to_str().unwrap().to_owned();
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0x9292_0005, 5, 150, 700);
    assert!(interrupted >= 3, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        run_until_done(&s, &cfg, 3);
    }
    assert_eq!(schema.count("records"), (1_000_000, 1_000_000));
    let row = client()
        .query_one(
            &format!("SELECT source_data->>'name', source_data->>'updated_at' FROM \"{}\".records WHERE source_record_id = '42'", schema.0),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "row-42");
    assert_eq!(row.get::<_, String>(1), "2024-01-01T00:00:42+00:00");
}

/// The issue-23 case: a table in bizon's own row layout (what our destination creates: no primary
/// key) copied with `primary_key: bizon_id`, which has no index. It is read in block ranges (a
/// warning says why and how to page by key) and a kill -9 mid-read resumes at the saved block.
#[test]
fn a_keyless_table_in_bizons_layout_is_copied_in_block_ranges_exactly_once_across_kills() {
    let s = Scratch::new("pg2pg-blocks");
    let schema = Schema::new("p2pblk");
    client()
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".src (bizon_id text NOT NULL, bizon_extracted_at timestamp NOT NULL, \
             bizon_loaded_at timestamp NOT NULL, source_record_id text NOT NULL, source_timestamp timestamp NOT NULL, \
             source_data jsonb NOT NULL); INSERT INTO \"{s}\".src SELECT 'b-' || g, now(), now(), g::text, now(), \
             jsonb_build_object('g', g) FROM generate_series(1, 600000) g; ANALYZE \"{s}\".src",
            s = schema.0
        ))
        .unwrap();
    let text = format!(
        "name: pg2pgblk\n{}{}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        source_config(&schema, "src", "  primary_key: bizon_id\n  batch_size: 5000\n"),
        dest_config(&schema, "    buffer_size: 2\n"),
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text).to_str().unwrap().to_owned();
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0x2323_0000, 4, 150, 600);
    assert!(interrupted >= 3, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        run_until_done(&s, &cfg, 3);
    }
    assert_eq!(schema.count("records"), (600_000, 600_000));
    let row = client()
        .query_one(
            &format!(
                "SELECT source_data->'source_data'->>'g' FROM \"{}\".records WHERE source_record_id = 'b-4242'",
                schema.0
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "4242");
    // A second full refresh replaces the table with the same rows; its log says why it reads blocks.
    let log = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(log.contains("no btree index leads with the primary_key column"), "{log}");
    assert_eq!(schema.count("records"), (600_000, 600_000));
}

#[test]
fn postgres_source_incremental_reads_only_newer_rows() {
    let s = Scratch::new("pgsrc-inc");
    let schema = Schema::new("srcinc");
    create_source_table(&schema, 1000);
    let text = format!(
        "name: pgsrcinc\n{}{}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        source_config(&schema, "src", "  sync_mode: incremental\n  cursor_field: updated_at\n  batch_size: 300\n"),
        dest_config(&schema, ""),
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text).to_str().unwrap().to_owned();
    assert!(ok(&s.run(&["run", &cfg, "--no-progress"])).contains("completed: 1000 records"));
    client()
        .batch_execute(&format!(
            "INSERT INTO \"{s}\".src SELECT g, 'new-' || g, timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second' \
             FROM generate_series(1001, 1250) g; UPDATE \"{s}\".src SET updated_at = '2026-01-01', name = 'touched' WHERE id = 7",
            s = schema.0
        ))
        .unwrap();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 251 records"), "250 new rows + 1 updated:\n{err}");
    let (rows, distinct) = schema.count("records");
    assert_eq!((rows, distinct), (1251, 1250), "the updated row is appended again (append-only incremental)");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 0 records"), "{err}");
}

#[test]
fn postgres_source_query_and_stream_list() {
    let s = Scratch::new("pgsrc-query");
    let schema = Schema::new("srcq");
    create_source_table(&schema, 500);
    let query = format!(
        "  query: SELECT id, upper(name) AS name FROM {}.src WHERE id % 2 = 0\n  primary_key: id\n  batch_size: 64\n",
        schema.0
    );
    let text = format!(
        "name: pgsrcq\n{}{}engine:\n  backend:\n    type: sqlite_in_memory\n",
        source_config(&schema, "evens", &query),
        dest_config(&schema, "")
    );
    let cfg = s.write("c.yml", &text).to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_eq!(schema.count("records"), (250, 250));
    let name: String = client()
        .query_one(
            &format!("SELECT source_data->>'name' FROM \"{}\".records WHERE source_record_id = '10'", schema.0),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(name, "ROW-10");

    let out = s.run(&["stream", "list", "postgres", "--config", &cfg]);
    assert!(stdout(&out).contains(&format!("{}.src", schema.0)), "{}{}", stdout(&out), stderr(&out));
    let out = s.run(&["stream", "list", "postgres"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --config"), "{}", stderr(&out));

    let missing = s.write(
        "m.yml",
        &text
            .replace("stream: evens", "stream: nope")
            .replace("  query:", "  #query:")
            .replace("  primary_key: id\n", ""),
    );
    let out = s.run(&["run", missing.to_str().unwrap(), "--no-progress"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Needs the `bizon_pw_test` role with password authentication that scripts/test.sh sets up.
#[test]
fn password_with_special_characters_works_and_a_wrong_one_is_a_clear_error() {
    let s = Scratch::new("pg-password");
    let schema = Schema::new("pw");
    let text = format!(
        "name: pgpw\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: postgres\n  config:\n    host: {}\n    \
         port: {}\n    database: {}\n    username: bizon_pw_test\n    password: ${{BIZON_TEST_PG_PASSWORD}}\n    schema: {}\n\
         engine:\n  backend:\n    type: sqlite_in_memory\n",
        pg_host(),
        pg_port(),
        pg_db(),
        schema.0
    );
    let cfg = s.write("c.yml", &text);
    let cfg = cfg.to_str().unwrap();
    let out =
        s.cmd(&["run", cfg, "--no-progress"]).env("BIZON_TEST_PG_PASSWORD", "p@ss:w/rd with spaces").output().unwrap();
    ok(&out);
    assert_eq!(schema.count("creatures"), (5, 5));

    let out =
        s.cmd(&["run", cfg, "--no-progress"]).env("BIZON_TEST_PG_PASSWORD", "wr0ng p@ss:word/x").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("password authentication failed for user \"bizon_pw_test\""), "{err}");
    assert!(!err.contains("wr0ng") && !err.contains("p@ss"), "a password leaked:\n{err}");
    assert!(!err.contains("retries"), "authentication errors are not retried:\n{err}");
    let shown =
        stdout(&s.cmd(&["config", "show", cfg]).env("BIZON_TEST_PG_PASSWORD", "wr0ng p@ss:word/x").output().unwrap());
    assert!(!shown.contains("wr0ng") && shown.contains("********"), "{shown}");
}

#[test]
fn unnest_writes_typed_columns_from_record_schemas() {
    let s = Scratch::new("pg-unnest");
    let schema = Schema::new("unnest");
    let extra = "    unnest: true\n    record_schemas:\n      - destination_id: records\n        record_schema:\n          \
                 - {name: id, type: INTEGER}\n          - {name: name, type: STRING}\n          - {name: age, type: INTEGER}\n";
    let text = format!("name: pgunnest\nsource:\n  name: dummy\n  stream: creatures\n{}", dest_config(&schema, extra));
    let cfg = s.write("c.yml", &text);
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    let row = client()
        .query_one(
            &format!(
                "SELECT sum(age)::bigint, count(*), pg_typeof(min(id))::text, max(name) FROM \"{}\".records",
                schema.0
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 26 + 23 + 26 + 23 + 26);
    assert_eq!(row.get::<_, i64>(1), 5);
    assert_eq!(row.get::<_, String>(2), "bigint");
    assert_eq!(row.get::<_, String>(3), "turtle");
    let no_schema = s.write(
        "bad.yml",
        &text.replace("destination_id: records\n        record_schema", "destination_id: other\n        record_schema"),
    );
    let out = s.run(&["config", "validate", no_schema.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs a `record_schemas` entry with `destination_id: records`"), "{}", stderr(&out));
}

#[test]
fn upsert_on_primary_key_keeps_one_row_per_key_with_the_newest_values() {
    let s = Scratch::new("pg-upsert");
    let schema = Schema::new("upsert");
    create_source_table(&schema, 1000);
    let text = format!(
        "name: pgupsert\n{}{}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        source_config(&schema, "src", "  sync_mode: incremental\n  cursor_field: updated_at\n  batch_size: 300\n"),
        dest_config(&schema, "    primary_key: source_record_id\n"),
        s.path("state.db").display()
    );
    let cfg = s.write("c.yml", &text).to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    client()
        .batch_execute(&format!(
            "UPDATE \"{s}\".src SET updated_at = '2026-01-01', name = 'touched' WHERE id IN (7, 8, 9); \
             INSERT INTO \"{s}\".src VALUES (1001, 'new', '2026-01-02')",
            s = schema.0
        ))
        .unwrap();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 4 records"), "{err}");
    assert_eq!(schema.count("records"), (1001, 1001), "updated rows replace their previous version");
    let name: String = client()
        .query_one(
            &format!("SELECT source_data->>'name' FROM \"{}\".records WHERE source_record_id = '8'", schema.0),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(name, "touched");
}

/// sslmode with the server's own certificate (Debian's snakeoil, CN and SAN `localhost`).
#[test]
fn tls_modes_verify_what_they_promise() {
    let mut c = client();
    let on: String = c.query_one("SHOW ssl", &[]).unwrap().get(0);
    let cert: String = c.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
    if on != "on" || !std::path::Path::new(&cert).exists() {
        eprintln!("skipped: the server has no TLS certificate readable here");
        return;
    }
    let s = Scratch::new("pg-tls");
    let schema = Schema::new("tls");
    let run = |host: &str, tls: &str| {
        let text = format!(
            "name: pgtls\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: postgres\n  config:\n    host: {host}\n    \
             port: {}\n    database: {}\n    username: {}\n    schema: {}\n{tls}engine:\n  backend:\n    type: sqlite_in_memory\n",
            pg_port(),
            pg_db(),
            pg_user(),
            schema.0
        );
        let cfg = s.write("c.yml", &text);
        s.run(&["run", cfg.to_str().unwrap(), "--no-progress"])
    };
    ok(&run("127.0.0.1", "    sslmode: require\n"));
    ok(&run("127.0.0.1", &format!("    sslmode: verify-ca\n    sslrootcert: {cert}\n")));
    ok(&run("localhost", &format!("    sslmode: verify-full\n    sslrootcert: {cert}\n")));
    let out = run("127.0.0.1", &format!("    sslmode: verify-full\n    sslrootcert: {cert}\n"));
    assert_eq!(out.status.code(), Some(1), "the certificate does not name 127.0.0.1");
    assert!(stderr(&out).contains("certificate") && stderr(&out).contains("verify-full"), "{}", stderr(&out));
    let out = run("127.0.0.1", "    sslmode: verify-ca\n");
    assert_eq!(out.status.code(), Some(1), "a self-signed certificate is not in the system roots");
    assert!(stderr(&out).contains("UnknownIssuer") || stderr(&out).contains("certificate"), "{}", stderr(&out));
    assert_eq!(schema.count("creatures").0, 5);
}

/// bizon 0.6.4's `stream_jobs` and `destination_cursors` as SQLAlchemy creates them
/// (`engine/backend/models.py`); `{ts}` is `DATETIME` in SQLite, `TIMESTAMP WITHOUT TIME ZONE`
/// in PostgreSQL.
fn bizon_tables(ts: &str) -> String {
    format!(
        "CREATE TABLE stream_jobs (id VARCHAR(100) NOT NULL, name VARCHAR(100) NOT NULL, source_name VARCHAR(100) NOT NULL, \
         stream_name VARCHAR(100) NOT NULL, sync_mode VARCHAR(100) NOT NULL, attempt INTEGER, total_records_to_fetch INTEGER, \
         created_at {ts} NOT NULL, updated_at {ts}, incremental_state VARCHAR, status VARCHAR(100), \
         error_message VARCHAR(255), PRIMARY KEY (id)); \
         CREATE TABLE destination_cursors (id VARCHAR(100) NOT NULL, job_id VARCHAR(100) REFERENCES stream_jobs (id), \
         name VARCHAR(100) NOT NULL, source_name VARCHAR(100) NOT NULL, stream_name VARCHAR(100) NOT NULL, \
         destination_name VARCHAR(100) NOT NULL, from_source_iteration INTEGER, to_source_iteration INTEGER, \
         rows_written INTEGER, success BOOLEAN NOT NULL, attempt INTEGER, error_message VARCHAR(500), created_at {ts}, \
         updated_at {ts}, pagination VARCHAR, PRIMARY KEY (id));"
    )
}

/// Rows a bizon 0.6.4 run leaves for pipeline `name`, stream `src`: succeeded jobs started at
/// `succeeded` (seconds after 2024-01-01), a failed and a running job after them (with the
/// running one's destination cursor), and another stream's newer job. Ids start with `tag`.
fn bizon_rows(name: &str, tag: &str, succeeded: &[u32]) -> String {
    let at = |secs: u32| format!("2024-01-01 00:{:02}:{:02}.000000", secs / 60, secs % 60);
    let mut sql = String::new();
    let mut job = |id: &str, stream: &str, status: &str, secs: u32| {
        sql.push_str(&format!(
            "INSERT INTO stream_jobs (id, name, source_name, stream_name, sync_mode, attempt, total_records_to_fetch, \
             created_at, updated_at, incremental_state, status, error_message) VALUES ('{tag}{id}', '{name}', 'postgres', \
             '{stream}', 'incremental', 0, NULL, '{}', '{}', NULL, '{status}', NULL);",
            at(secs),
            at(secs + 1)
        ))
    };
    for (i, secs) in succeeded.iter().enumerate() {
        job(&format!("succeeded{i}"), "src", "succeeded", *secs);
    }
    let last = succeeded.iter().max().copied().unwrap_or(0);
    job("failed", "src", "failed", last + 30);
    job("running", "src", "running", last + 40);
    job("other", "other", "succeeded", last + 50);
    sql.push_str(&format!(
        "INSERT INTO destination_cursors (id, job_id, name, source_name, stream_name, destination_name, \
         from_source_iteration, to_source_iteration, rows_written, success, attempt) VALUES \
         ('{tag}c', '{tag}running', '{name}', 'postgres', 'src', 'file', 0, 3, 70, true, 0);"
    ));
    sql
}

/// The config for `bizon state import` tests: PostgreSQL source (incremental on updated_at) →
/// PostgreSQL, our sqlite backend; and bizon's config of the same pipeline with its `backend`.
fn import_configs(s: &Scratch, schema: &Schema, name: &str, bizon_backend: &str) -> (String, String) {
    let body = format!(
        "name: {name}\n{}{}",
        source_config(schema, "src", "  sync_mode: incremental\n  cursor_field: updated_at\n  batch_size: 300\n"),
        dest_config(schema, ""),
    );
    let ours = format!(
        "{body}engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        s.path("state.db").display()
    );
    let bizon = format!("{body}engine:\n  backend:\n{bizon_backend}");
    (s.write("c.yml", &ours).to_str().unwrap().to_owned(), s.write("bizon.yml", &bizon).to_str().unwrap().to_owned())
}

/// `bizon state import` from a bizon 0.6.4 SQLite backend: the newest successful job's start is
/// the watermark, so the next incremental run reads only rows changed after it; importing twice
/// changes nothing; an existing watermark needs --force.
#[test]
fn state_import_from_a_bizon_sqlite_backend_continues_after_bizons_watermark() {
    let s = Scratch::new("import-sqlite");
    let schema = Schema::new("impsq");
    create_source_table(&schema, 1000);
    let bizon_db = s.path("bizon_state");
    let conn = rusqlite::Connection::open(format!("{}.sqlite3", bizon_db.display())).unwrap();
    conn.execute_batch(&bizon_tables("DATETIME")).unwrap();
    conn.execute_batch(&bizon_rows("impsq", "a-", &[300, 600])).unwrap();
    let backend =
        format!("    type: sqlite\n    config:\n      database: {}\n      schema: NOT_USED\n", bizon_db.display());
    let (cfg, bizon_cfg) = import_configs(&s, &schema, "impsq", &backend);

    let out = ok_stdout(&s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg, "--dry-run"]));
    assert!(out.contains("watermark \"2024-01-01T00:10:00.000000+00:00\"") && out.contains("dry run"), "{out}");
    assert!(out.contains("bizon job a-running (running") && out.contains("70 records"), "{out}");
    assert!(stdout(&s.run(&["job", "list", &cfg])).contains("no jobs"), "a dry run writes nothing");

    let out = ok_stdout(&s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg]));
    assert!(out.contains("imported: stream `src` of pipeline `impsq`"), "{out}");
    assert!(stdout(&s.run(&["job", "list", &cfg])).contains("a-succeeded1 "), "bizon's job id");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 400 records"), "rows after 00:10:00 only:\n{err}");
    let min: i64 = client()
        .query_one(&format!("SELECT min(source_record_id::bigint) FROM \"{}\".records", schema.0), &[])
        .unwrap()
        .get(0);
    assert_eq!((schema.count("records"), min), ((400, 400), 601));
    let out = ok_stdout(&s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg]));
    assert!(out.contains("already imported"), "{out}");

    // bizon ran again meanwhile: its newer watermark replaces ours only with --force
    conn.execute_batch(&bizon_rows("impsq", "b-", &[900])).unwrap();
    let refused = s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("already has a watermark") && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    ok_stdout(&s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg, "--force"]));
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 100 records"), "rows after 00:15:00:\n{err}");
}

/// The same from a bizon backend in PostgreSQL (bizon's tables in the connection's search_path,
/// here a database of the test's own).
#[test]
fn state_import_from_a_bizon_postgres_backend_continues_after_bizons_watermark() {
    let s = Scratch::new("import-pg");
    let schema = Schema::new("imppg");
    create_source_table(&schema, 1000);
    let db = format!("bizon_t_import_{}_{}", std::process::id(), bizon_core::time::now_micros() % 1_000_000_000);
    client().batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    struct DropDb(String);
    impl Drop for DropDb {
        fn drop(&mut self) {
            let _ = client().batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
    let _drop = DropDb(db.clone());
    let cfg = format!("host={} port={} user={} dbname={db}", pg_host(), pg_port(), pg_user());
    let mut bizon_pg = postgres::Client::connect(&cfg, postgres::NoTls).unwrap();
    bizon_pg.batch_execute(&bizon_tables("TIMESTAMP WITHOUT TIME ZONE")).unwrap();
    bizon_pg.batch_execute(&bizon_rows("imppg", "", &[120, 750])).unwrap();
    let backend = format!(
        "    type: postgres\n    config:\n      host: {}\n      port: {}\n      database: {db}\n      username: {}\n      \
         password: unused\n      schema: public\n      syncCursorInDBEvery: 2\n",
        pg_host(),
        pg_port(),
        pg_user()
    );
    let (cfg, bizon_cfg) = import_configs(&s, &schema, "imppg", &backend);
    let out = ok_stdout(&s.run(&["state", "import", &cfg, "--from-bizon", &bizon_cfg]));
    assert!(out.contains("watermark \"2024-01-01T00:12:30.000000+00:00\"") && out.contains("imported"), "{out}");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 250 records"), "rows after 00:12:30 only:\n{err}");
    assert_eq!(schema.count("records"), (250, 250));
}
