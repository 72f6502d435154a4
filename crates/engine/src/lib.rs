//! bizon-engine: runs a pipeline. Depends on `bizon-core` only; connectors are handed in as
//! trait objects by the CLI.

pub mod failpoints;
pub mod pipeline;
pub mod progress;
pub mod queue;
pub mod spans;

pub use failpoints::Failpoints;
pub use pipeline::{run_sharded, Outcome, Pipeline, PipelineSpec, Role, RunSummary, Runner, Shard, ShardParts};
pub use progress::{Counters, ProgressMode};
