//! Every source runs the source conformance suite.

use bizon_core::config::SyncMode;
use bizon_core::{ReadContext, Source};
use bizon_testkit::source::run_suite;
use serde_json::json;

use super::dummy::{DummyConfig, DummySource};
use super::generator::{GeneratorConfig, GeneratorSource};

fn generator(total: u64, page_size: u64) -> GeneratorConfig {
    GeneratorConfig { total, page_size, record_size: 120, seed: 3, start_timestamp: None, step_ms: 1, rate_limit: None }
}

#[test]
fn dummy_conformance() {
    for stream in super::dummy::STREAMS {
        run_suite(
            &|| Box::new(DummySource::new(stream, DummyConfig::default())) as Box<dyn Source>,
            &ReadContext::default(),
            5,
        );
    }
}

#[test]
fn generator_conformance() {
    run_suite(&|| Box::new(GeneratorSource::new(generator(95, 10))), &ReadContext::default(), 95);
    run_suite(&|| Box::new(GeneratorSource::new(generator(1, 10))), &ReadContext::default(), 1);
}

#[test]
fn generator_incremental_conformance() {
    let ctx = ReadContext {
        sync_mode: SyncMode::Incremental,
        watermark: Some(json!("2024-01-01T00:00:00.019000+00:00")),
        cursor_field: Some("updated_at".into()),
    };
    run_suite(&|| Box::new(GeneratorSource::new(generator(95, 10))), &ctx, 75);
}
