//! `bizon run`: logging, the runner and role, signals, the pipeline and its summary line.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bizon_core::config::{LogLevel, RunnerType, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BACKOFF_MS};
use bizon_engine::{
    run_sharded, Counters, Failpoints, Outcome, Pipeline, PipelineSpec, ProgressMode, Role, RunSummary, Runner,
    ShardParts,
};

use crate::args::{LogArg, LogFormat, RoleArg, RunArgs, RunnerArg};
use crate::load::{load, open_backend};
use crate::telemetry;
use crate::{by_kind, failed, usage, Failure};

fn init_logging(level: Option<LogArg>, cfg_level: Option<LogLevel>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let name = match (level, cfg_level) {
        (Some(l), _) => match l {
            LogArg::Trace => "trace",
            LogArg::Debug => "debug",
            LogArg::Info => "info",
            LogArg::Warning => "warn",
            LogArg::Error | LogArg::Critical => "error",
        },
        (None, Some(l)) => match l {
            LogLevel::TRACE => "trace",
            LogLevel::DEBUG => "debug",
            LogLevel::INFO => "info",
            LogLevel::WARNING => "warn",
            LogLevel::ERROR | LogLevel::CRITICAL => "error",
        },
        (None, None) => "info",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if level.is_none() && !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(name),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()))
        .with_target(false);
    let _ = match format {
        // the job's span (job_id, stream) rides on every line of the run
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

/// A log line with the values of resolved secret references masked (each event is one write).
struct Redacting<W: std::io::Write>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(bizon_core::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let result = args.result_json.as_deref().map(crate::result::ResultFile::start).transpose()?;
    let outcome = execute(&args);
    if let Some(r) = &result {
        r.finish(&outcome);
    }
    outcome.map(|_| ())
}

/// The run; its summary (`None` from the process runner's supervisor, whose children ran it).
fn execute(args: &RunArgs) -> Result<Option<RunSummary>, Failure> {
    let cfg = load(&args.config)?;
    init_logging(args.log_level, cfg.engine.runner.log_level, args.log_format);
    let runner = match args.runner.map(|r| match r {
        RunnerArg::Thread => RunnerType::Thread,
        RunnerArg::Stream => RunnerType::Stream,
        RunnerArg::Process => RunnerType::Process,
    }) {
        Some(r) => r,
        None => cfg.engine.runner.kind,
    };
    if args.role.is_some() && cfg.engine.queue.broker.is_none() {
        return Err(usage(anyhow!(
            "--role needs a broker queue between the processes: set engine.queue.type to rabbitmq or kafka (the in-memory queue lives inside one process)"
        )));
    }
    let runner = match runner {
        RunnerType::Thread => Runner::Thread,
        RunnerType::Stream if args.role.is_some() => {
            return Err(usage(anyhow!("--role needs the thread or process runner, not `stream`")))
        }
        RunnerType::Stream => Runner::Stream,
        RunnerType::Process if args.role.is_some() => Runner::Thread,
        RunnerType::Process => match &cfg.engine.queue.broker {
            None => {
                tracing::warn!("{}", bizon_connectors::config::PROCESS_IN_MEMORY);
                Runner::Thread
            }
            Some(broker) => {
                if !cfg.engine.backend.spec.shared() {
                    return Err(usage(anyhow!(
                        "runner `process` needs a backend both processes share: sqlite (a file) or postgres, not {}",
                        cfg.engine.backend.spec.describe()
                    )));
                }
                return crate::supervise::supervise(args, broker.as_ref()).map(|()| None);
            }
        },
    };
    let failpoints = Arc::new(Failpoints::from_env().map_err(usage)?);

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once (130); the first asks for a clean stop.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }

    let broker = match (&cfg.engine.queue.broker, runner) {
        (Some(b), Runner::Thread) => Some(b.build().map_err(failed)?),
        (Some(_), Runner::Stream) => {
            tracing::warn!("runner `stream` reads and writes in one loop: the configured queue is not used");
            None
        }
        (None, _) => None,
    };
    let mut backend = open_backend(&cfg)?;
    let mut source = cfg.build_source();
    let mut destination = cfg.build_destination().map_err(|e| by_kind(e.kind(), e))?;
    let common = &cfg.destination.common;
    let runner_details = cfg.engine.runner.config.as_ref();
    let spec = PipelineSpec {
        key: cfg.stream_key(),
        sync_mode: cfg.source.sync_mode,
        cursor_field: cfg.source.cursor_field.clone(),
        filter_after_watermark: cfg.filters_after_watermark(),
        max_iterations: cfg.source.max_iterations,
        force_ignore_checkpoint: cfg.source.force_ignore_checkpoint,
        reset: args.reset || cfg.source.reset,
        buffer_bytes: common.buffer_size << 20,
        flush_timeout: (common.buffer_flush_timeout > 0).then(|| Duration::from_secs(common.buffer_flush_timeout)),
        source_cursor_every: cfg.engine.backend.sync_cursor_in_db_every,
        runner,
        queue_max_bytes: cfg.engine.queue.max_bytes,
        queue_max_messages: cfg.engine.queue.max_messages,
        max_retries: runner_details.and_then(|d| d.max_retries).unwrap_or(DEFAULT_MAX_RETRIES),
        retry_backoff: Duration::from_millis(
            runner_details.and_then(|d| d.retry_backoff_ms).unwrap_or(DEFAULT_RETRY_BACKOFF_MS),
        ),
        progress: if args.no_progress {
            ProgressMode::Off
        } else {
            ProgressMode::Auto { interval: Duration::from_secs_f64(args.progress_interval.max(0.05)) }
        },
        role: match args.role {
            None => Role::Both,
            Some(RoleArg::Producer) => Role::Producer,
            Some(RoleArg::Consumer) => Role::Consumer,
        },
        shard: None,
    };
    let counters = Arc::new(Counters::default());
    let telemetry = telemetry::Telemetry::start(&cfg, counters.clone()).map_err(|e| by_kind(e.kind(), e))?;
    let shards = source.shards().map_err(|e| by_kind(e.kind(), e))?;
    let run = match shards {
        // several processes over one source: each leases its share of the shards (the config
        // rules checked the destination, the backend and the queue)
        Some(lanes) => {
            let make = || -> bizon_core::Result<ShardParts> {
                Ok(ShardParts {
                    source: cfg.build_source(),
                    destination: cfg.build_destination()?,
                    backend: cfg.engine.backend.spec.open()?,
                })
            };
            run_sharded(spec, lanes, backend.as_mut(), &make, stop, failpoints, counters.clone())
        }
        None => Pipeline {
            spec,
            source: source.as_mut(),
            destination: destination.as_mut(),
            backend: backend.as_mut(),
            broker: broker.as_deref(),
            stop,
            failpoints,
            counters: counters.clone(),
        }
        .run(),
    };
    let summary = match run {
        Ok(s) => s,
        Err(e) => {
            telemetry.finish(telemetry::End::Failed(e.message()), &counters);
            return Err(failed(anyhow!("pipeline `{}` failed: {e}", cfg.name)));
        }
    };
    let status = match summary.outcome {
        Outcome::Completed => "completed",
        Outcome::Stopped => "stopped",
        Outcome::Published | Outcome::LaneDone | Outcome::LaneHandedOver => "running",
    };
    telemetry.finish(telemetry::End::Ok(status), &counters);
    let secs = summary.elapsed.as_secs_f64();
    let what = match summary.outcome {
        Outcome::Completed => "completed",
        Outcome::Stopped => "stopped (resumable: run the same command again)",
        Outcome::Published => "published (the consumer completes the job)",
        Outcome::LaneDone => "finished its lane (the last lane to finish completes the job)",
        Outcome::LaneHandedOver => "stopped after handing its lane over (resumable: run the same command again)",
    };
    say!(
        "bizon: job {} {what}: {} records, {:.1} MB of record payload in {:.2} s ({:.0} records/s){}{}",
        summary.job_id,
        summary.records,
        summary.bytes as f64 / 1e6,
        secs,
        summary.records as f64 / secs.max(1e-9),
        summary.resumed_after.map(|i| format!(", resumed after iteration {i}")).unwrap_or_default(),
        if summary.retries > 0 { format!(", {} retries", summary.retries) } else { String::new() },
    );
    Ok(Some(summary))
}
