//! The BigQuery backend runs the backend conformance suite against the local BigQuery emulator
//! (`scripts/bqemulator.sh`), in a dataset of its own, with a local token endpoint.

use std::time::Duration;

use bizon_core::config::yaml;
use bizon_core::{Backend, ErrorKind};
use bizon_testkit::backend::{job, key, run_suite};

use super::BigQueryBackend;
use crate::google::auth::Credentials;
use crate::google::bigquery::BigQuery;
use crate::google::testing::{emulator, Dataset, TokenServer};

fn backend(tokens: &TokenServer, dataset: &str, create: bool) -> bizon_core::Result<BigQueryBackend> {
    let bq = BigQuery::new(Credentials::from_config(Some(&tokens.key))?, Some(&emulator()), "p");
    BigQueryBackend::open(bq, dataset, create, Some("US"), Duration::from_secs(30))
}

#[test]
fn conformance() {
    let tokens = TokenServer::start("state@p.iam.gserviceaccount.com", 3600, false);
    let ds = Dataset::new("bqb", &tokens);
    run_suite(&|| Box::new(backend(&tokens, &ds.name, false).expect("open")) as Box<dyn Backend>);
}

#[test]
fn a_missing_dataset_is_created_only_with_create_schema() {
    let tokens = TokenServer::start("state@p.iam.gserviceaccount.com", 3600, false);
    let ds = Dataset::new("bqb_missing", &tokens);
    let name = format!("{}_new", ds.name);
    let e = backend(&tokens, &name, false).err().expect("a missing dataset without create_schema");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains(&format!("p.{name}")) && e.message().contains("create_schema: true"), "{e}");
    let mut b = backend(&tokens, &name, true).expect("created");
    b.create_job(&job("j", "created", 1)).expect("a job in the new dataset");
    assert!(ds.bq.dataset_exists("p", &name).unwrap());
    ds.bq.delete_dataset("p", &name).unwrap();
}

#[test]
fn a_lock_left_by_a_killed_process_of_this_host_is_taken_over_at_once() {
    let tokens = TokenServer::start("state@p.iam.gserviceaccount.com", 3600, false);
    let ds = Dataset::new("bqb_dead", &tokens);
    let mut b = backend(&tokens, &ds.name, false).unwrap();
    // A holder with a fresh heartbeat whose process is gone (a pid that cannot exist).
    let host = super::hostname();
    ds.rows(&format!(
        "INSERT INTO `{{ds}}.bizon_locks` (pipeline, fence, holder, pid, host, heartbeat_at, released) \
         VALUES ('dead', 4, 'gone', 2147483647, '{host}', CURRENT_TIMESTAMP(), FALSE)"
    ));
    let _guard = b.lock_pipeline(&key("dead")).expect("taken over");
    assert_eq!(ds.rows("SELECT fence FROM `{ds}.bizon_locks` WHERE pipeline = 'dead'")[0][0], "5");
    // A live holder of another host is not.
    ds.rows(
        "INSERT INTO `{ds}.bizon_locks` (pipeline, fence, holder, pid, host, heartbeat_at, released) \
         VALUES ('alive', 1, 'other', 1, 'another-host', CURRENT_TIMESTAMP(), FALSE)",
    );
    let e = b.lock_pipeline(&key("alive")).err().expect("held by a live holder");
    assert!(e.message().contains("already running") && e.message().contains("pid 1 on another-host"), "{e}");
}

#[test]
fn the_descriptor_takes_bizons_keys_and_refuses_a_bad_location() {
    let parse = |text: &str| {
        let node = yaml::parse(text).unwrap();
        let fields: crate::descriptor::BackendFields =
            bizon_core::config::yaml::from_node(&node, "engine.backend.config", &[]).unwrap();
        (super::DESCRIPTOR.parse)(&fields, &node)
    };
    let spec =
        parse("database: proj\nschema: state\ncreate_schema: true\nschema_location: EU\nservice_account_key: ''\n")
            .unwrap();
    assert_eq!(spec.describe(), "bigquery proj.state");
    assert!(spec.shared());
    let e = parse("database: proj\nschema: state\nschema_location: 'eu west'\n").unwrap_err();
    assert!(e.message.contains("eu west") && e.path.contains("schema_location"), "{}", e.message);
    let e = parse("schema: state\n").unwrap_err();
    assert!(e.message.contains("`database`"), "{}", e.message);
}
