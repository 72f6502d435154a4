//! Every key bizon 0.6.4 accepts loads here (issue 20). The fixtures are written from bizon's
//! pydantic models (`common/models.py::BizonConfig`, `source/config.py::SourceConfig` with
//! `APIConfig`, `HttpConfig`, `HttpRetryConfig` and the auth params, `destination/config.py`'s
//! common details and columns, the BigQuery destinations' `config.py`, `engine/config.py` with the
//! backend, queue and runner configs, `monitoring/config.py`, `alerting/models.py`,
//! `engine/resolvers/config.py`, the connectors' own config classes), one fixture per set of
//! connectors; Python transforms and custom sources are the transforms issue's.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn warnings(c: &BizonConfig) -> Vec<String> {
    c.warnings.iter().map(|w| w.render("f.yml")).collect()
}

/// Top level, `source` (dummy, with every common key and nested model), `logger`, the SQLite
/// backend, the Python queue, the thread runner, monitoring, alerting, secrets.
const LOGGER: &str = r#"
name: full_logger
id: full-logger-id
source:
  name: dummy
  stream: creatures
  sync_mode: full_refresh
  cursor_field: updated_at
  force_ignore_checkpoint: false
  reset: false
  authentication:
    type: api_key
    params:
      token: dummy_key
      auth_method: Bearer
      auth_header: Authorization
  max_iterations: 3
  api_config:
    retry_limit: 10
  http:
    timeout: 10
    retries:
      total: 5
      backoff_factor: 2
      status_forcelist: [429, 500, 502, 503, 504, 520, 522, 524]
      allowed_methods: [GET, POST]
      retry_after_max: 120
    raise_for_status: true
  init_pipeline: true
  sleep: 0
destination:
  name: logger
  alias: logger
  config:
    buffer_size: 0
    buffer_flush_timeout: 600
    max_concurrent_threads: 10
    unnest: false
    destination_id: creatures
    record_schemas:
      - destination_id: creatures
        record_schema:
          - name: id
            type: string
            description: the id
    dummy: bizon
engine:
  backend:
    type: sqlite
    config:
      database: bizon
      schema: NOT_USED_IN_SQLITE
      syncCursorInDBEvery: 10
      echoEngine: false
  queue:
    type: python_queue
    config:
      max_nb_messages: 1000000
      max_bytes: 3000000
      queue:
        max_size: 0
      consumer:
        poll_interval: 1
  runner:
    type: thread
    config:
      max_workers: 2
      consumer_start_delay: 2
      is_alive_check_interval: 2
    log_level: INFO
monitoring:
  type: datadog
  enable_tracing: false
  config:
    enable_tracing: false
    datadog_agent_host: localhost
    datadog_host_env_var: DD_AGENT_HOST
    datadog_agent_port: 8125
    tags:
      team: data
alerting:
  type: slack
  log_levels: [ERROR, WARNING]
  config:
    webhook_url: https://hooks.slack.com/services/T/B/x
secrets:
  gsm:
    project_id: my-project
"#;

#[test]
fn every_key_of_bizons_top_level_source_logger_engine_and_telemetry_models_loads() {
    let c = load(LOGGER, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));
    // `id` keys the state (bizon's job_name), `max_bytes` bounds the queue.
    assert_eq!(c.job_name(), "full-logger-id");
    assert_eq!(c.stream_key().pipeline, "full-logger-id");
    assert_eq!(c.engine.queue.max_bytes, 3_000_000);
    let c = load(&LOGGER.replace("id: full-logger-id\n", ""), &no_env).unwrap();
    assert_eq!(c.stream_key().pipeline, "full_logger");
    let file =
        LOGGER.replace("  name: logger\n  alias: logger\n", "  name: file\n").replace("dummy: bizon", "format: json");
    let c = load(&file, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
    assert_eq!(c.destination.kind.name, "file");
    let e = load(&LOGGER.replace("id: full-logger-id", &format!("id: {}", "x".repeat(101))), &no_env).unwrap_err();
    assert!(e.message.contains("`id` must be 1 to 100 characters"), "{}", e.message);
}

#[test]
fn unknown_source_keys_are_ignored_with_a_warning_and_typos_stay_errors() {
    let text = LOGGER.replace("  sleep: 0\n", "  sleep: 0\n  page_token_from_last_year: abc\n");
    let c = load(&text, &no_env).unwrap();
    assert_eq!(
        warnings(&c),
        ["f.yml:31:3: unknown key `page_token_from_last_year` for source `dummy`: ignored, as bizon does \
          (at `source.page_token_from_last_year`)"]
    );
    let e = load_with(&text, &no_env, LoadOptions { strict: true, ..Default::default() }).unwrap_err();
    assert_eq!(e.mark, Some(Mark { line: 31, col: 3 }));
    assert!(e.message.ends_with("ignored, as bizon does (an error with --strict)"), "{}", e.message);
    // Within a typo of a known key: still an error naming the key meant.
    let e = load(&LOGGER.replace("  max_iterations: 3", "  max_iteration: 3"), &no_env).unwrap_err();
    assert!(e.message.contains("unknown key `max_iteration`; did you mean `max_iterations`?"), "{}", e.message);
    // Nested in `source` (bizon's sub-models ignore unknown keys): a warning at the key, the
    // key dropped; a typo there stays an error; --strict makes the rest errors too.
    let nested = LOGGER
        .replace("    raise_for_status: true\n", "    raise_for_status: true\n    pool_connections: 4\n")
        .replace("      retry_after_max: 120\n", "      retry_after_max: 120\n      jitter_mode: full\n");
    let c = load(&nested, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
    assert_eq!(
        warnings(&c),
        [
            "f.yml:28:7: unknown key `jitter_mode` in `source.http.retries`: ignored, as bizon does \
             (at `source.http.retries.jitter_mode`)",
            "f.yml:30:5: unknown key `pool_connections` in `source.http`: ignored, as bizon does \
             (at `source.http.pool_connections`)"
        ]
    );
    let e = load_with(&nested, &no_env, LoadOptions { strict: true, ..Default::default() }).unwrap_err();
    assert!(e.message.ends_with("(an error with --strict)") && e.path.starts_with("source.http"), "{e:?}");
    let e =
        load(&LOGGER.replace("    timeout: 10\n", "    timeout: 10\n    raise_for_stat: true\n"), &no_env).unwrap_err();
    assert!(e.message.contains("did you mean `raise_for_status`?"), "{}", e.message);
    // Outside `source`, an unknown key is an error (bizon forbids them there too).
    let e = load(&LOGGER.replace("  alias: logger", "  alias: logger\n  colour: red"), &no_env).unwrap_err();
    assert!(e.message.contains("unknown key `colour`"), "{}", e.message);
}

/// `bigquery` with every key (and `destination.buffer_size`, bizon's dead key), columns with
/// mode, description and default_value_expression, the BigQuery backend, RabbitMQ, the process
/// runner.
#[cfg(all(feature = "bigquery", feature = "rabbitmq"))]
const BIGQUERY: &str = r#"
name: full_bq
source:
  name: dummy
  stream: creatures
  authentication:
    type: oauth
    params:
      token_refresh_endpoint: https://example.com/token
      client_id: a
      client_secret: b
      refresh_token: r
      scopes: [read]
      access_token_name: access_token
      expires_in_name: expires_in
      grant_type: refresh_token
      response_field_path: data
      expiry_skew_seconds: 5
destination:
  name: bigquery
  buffer_size: 400
  config:
    project_id: p
    dataset_id: d
    dataset_location: US
    create_dataset: false
    gcs_buffer_bucket: b
    gcs_buffer_format: parquet
    time_partitioning:
      type: DAY
      field: _bizon_loaded_at
    enforce_partitioning: false
    async_load: false
    load_files_per_job: 10
    load_max_in_flight_jobs: 3
    table_prefix: _bizon_
    authentication:
      service_account_key: ""
    buffer_size: 50
    buffer_flush_timeout: 600
    max_concurrent_threads: 10
    unnest: true
    destination_id: creatures
    record_schemas:
      - destination_id: creatures
        clustering_keys: [id]
        record_schema:
          - name: id
            type: STRING
            mode: REQUIRED
            description: the id
          - name: loaded
            type: TIMESTAMP
            mode: NULLABLE
            default_value_expression: CURRENT_TIMESTAMP()
engine:
  backend:
    type: bigquery
    config:
      database: p
      schema: d
      syncCursorInDBEvery: 10
      echoEngine: false
      service_account_key: ""
      create_schema: false
      schema_location: US
  queue:
    type: rabbitmq
    config:
      max_nb_messages: 1000
      queue:
        host: localhost
        port: 5672
        queue_name: bizon
        exchange: ""
      consumer:
        poll_interval: 1
  runner:
    type: process
    config:
      max_workers: 2
      consumer_start_delay: 2
      is_alive_check_interval: 2
    log_level: DEBUG
"#;

#[cfg(all(feature = "bigquery", feature = "rabbitmq"))]
#[test]
fn every_key_of_bizons_bigquery_models_loads_and_the_dead_buffer_size_warns() {
    let c = load(BIGQUERY, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
    assert_eq!(
        warnings(&c),
        ["f.yml:21:3: `destination.buffer_size` has no effect (in bizon neither): the buffer is \
          `destination.config.buffer_size` (at `destination.buffer_size`)"]
    );
    let schema = &c.destination.common.record_schemas.as_ref().unwrap()[0].record_schema;
    let columns = crate::google::table::typed_columns(schema).unwrap();
    assert_eq!(columns[1].resource()["defaultValueExpression"], "CURRENT_TIMESTAMP()");
    assert!(columns[0].resource().get("defaultValueExpression").is_none());
    assert!(load_with(BIGQUERY, &no_env, LoadOptions { strict: true, ..Default::default() }).is_err());
}

/// The Kafka source with every key, `bigquery_streaming_v2` unnested from the `streams:`
/// entries' record_schema (bizon fills record_schemas from them), PostgreSQL backend, the Kafka
/// queue (its `max_bytes` has no effect on a broker), the stream runner.
#[cfg(all(feature = "bigquery", feature = "kafka", feature = "postgres"))]
const KAFKA: &str = r#"
name: full_kafka
source:
  name: kafka
  stream: topic
  sync_mode: stream
  bootstrap_servers: localhost:9092
  group_id: bizon
  skip_message_empty_value: true
  skip_message_invalid_keys: false
  skip_message_on_decode_error: false
  batch_size: 100
  consumer_timeout: 10
  consumer_config:
    auto.offset.reset: earliest
  message_encoding: utf-8
  authentication:
    type: basic
    params:
      username: u
      password: p
    schema_registry_type: apicurio
    schema_registry_url: ""
    schema_registry_username: ""
    schema_registry_password: ""
destination:
  name: bigquery_streaming_v2
  config:
    project_id: p
    dataset_id: d
    dataset_location: US
    time_partitioning:
      type: DAY
      field: _bizon_loaded_at
    enforce_partitioning: false
    authentication:
      service_account_key: ""
    bq_max_rows_per_request: 5000
    table_prefix: _bizon_
    unnest: true
streams:
  - name: s1
    source:
      topic: t1
    destination:
      table_id: p.d.t1
      clustering_keys: [id]
      record_schema:
        - name: id
          type: STRING
          mode: REQUIRED
          description: x
          default_value_expression: GENERATE_UUID()
engine:
  backend:
    type: postgres
    config:
      database: test
      schema: public
      host: localhost
      port: 5432
      username: postgres
      password: x
      syncCursorInDBEvery: 10
  queue:
    type: kafka
    config:
      max_nb_messages: 1000
      max_bytes: 1000000
      queue:
        bootstrap_server: localhost:9092
        topic: bizon
      consumer:
        group_id: bizon
        auto_offset_reset: earliest
        enable_auto_commit: true
        consumer_timeout_ms: 1000
  runner:
    type: stream
    log_level: INFO
"#;

#[cfg(all(feature = "bigquery", feature = "kafka", feature = "postgres"))]
#[test]
fn every_key_of_bizons_kafka_and_streaming_models_loads_with_streams_schemas() {
    let c = load(KAFKA, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
    assert_eq!(
        warnings(&c),
        ["f.yml:69:7: `max_bytes` has no effect on the `kafka` queue: the broker holds the messages \
          (at `engine.queue.config.max_bytes`)"]
    );
    // A column type the destination cannot hold is still refused, at `streams`.
    let e = load(
        &KAFKA.replace("type: STRING\n          mode: REQUIRED", "type: VARCHAR\n          mode: REQUIRED"),
        &no_env,
    )
    .unwrap_err();
    assert!(e.path == "streams" && e.message.contains("`VARCHAR`"), "{e:?}");
}

/// bizon's `logger_incremental.example.yml` and `file_incremental.example.yml` as shipped.
const BIZON_INCREMENTAL_EXAMPLES: [&str; 2] = [
    "name: dummy to logger (incremental)\n\nsource:\n  name: dummy\n  stream: creatures\n  sync_mode: incremental\n  \
     cursor_field: updated_at  # Field to filter records by timestamp\n  authentication:\n    type: api_key\n    \
     params:\n      token: dummy_key\n\ndestination:\n  name: logger\n  config:\n    dummy: dummy\n",
    "name: dummy to file (incremental)\nsource:\n  name: dummy\n  stream: creatures\n  sync_mode: incremental\n  \
     cursor_field: updated_at  # Field to filter records by timestamp\n  authentication:\n    type: api_key\n    \
     params:\n      token: dummy_key\ndestination:\n  name: file\n  config:\n    format: json\n",
];

#[test]
fn bizons_incremental_examples_load_and_the_engine_filters_for_sources_that_cannot() {
    for text in BIZON_INCREMENTAL_EXAMPLES {
        let c = load(text, &no_env).unwrap_or_else(|e| panic!("{}", e.render("f.yml")));
        assert!(c.filters_after_watermark());
        let w = warnings(&c);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(
                "source `dummy` cannot filter by `updated_at` itself: every incremental run reads everything \
                 and keeps the records whose `updated_at` is above the last run's watermark (at `source.sync_mode`)"
            ),
            "{w:?}"
        );
    }
    // A source that filters by itself: no warning, no engine filter.
    let generator = "name: g\nsource:\n  name: generator\n  stream: records\n  sync_mode: incremental\n  \
                     cursor_field: updated_at\ndestination:\n  name: logger\n";
    let c = load(generator, &no_env).unwrap();
    assert!(!c.filters_after_watermark() && c.warnings.is_empty(), "{:?}", warnings(&c));
    // Without cursor_field there is nothing to filter by: still an error.
    let e = load(&BIZON_INCREMENTAL_EXAMPLES[0].replace("  cursor_field: updated_at", "  #"), &no_env).unwrap_err();
    assert!(e.message.contains("needs `cursor_field`"), "{}", e.message);
}
