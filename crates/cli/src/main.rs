//! The `bizon` binary: parses the command line, loads the config, builds the connectors and
//! hands them to the engine. Exit codes: 0 success, 1 the run failed, 2 usage or config error.

mod telemetry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bizon_connectors::config::{BackendKind, BizonConfig, BrokerSpec};
use bizon_connectors::registry::{DestinationKind, SourceKind};
use bizon_core::config::{masked_json, LogLevel, RunnerType};
use bizon_core::{Backend, JobStatus, StreamKey};
use bizon_engine::{Counters, Failpoints, Outcome, Pipeline, PipelineSpec, ProgressMode, Role, Runner};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bizon",
    version,
    about = "Extract and load data streams; resumes after any crash without losing a record.",
    long_about = "Extract and load data streams; resumes after any crash without losing a record.\n\n\
        Runs bizon YAML configs unchanged. Exit codes: 0 success, 1 the run failed, 2 usage or config error.",
    after_help = "Start with: bizon run examples/dummy_to_logger.yml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline from a YAML config (resumes its unfinished job, if any).
    Run(RunArgs),
    /// Check or print a config.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Available sources.
    #[command(subcommand)]
    Source(SourceCmd),
    /// Streams of a source; reset a stream's state.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Available destinations and their delivery guarantees.
    #[command(subcommand)]
    Destination(DestinationCmd),
    /// Jobs of a pipeline, with status, cursor and records.
    #[command(subcommand)]
    Job(JobCmd),
    /// Check that every environment placeholder of a config resolves.
    #[command(subcommand)]
    Secrets(SecretsCmd),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Path to the pipeline's YAML config.
    config: PathBuf,
    /// Load environment variables from this .env file (default: ./.env if present; variables
    /// already set in the environment win).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Override `engine.runner.type`: thread (producer and consumer threads), stream (one loop)
    /// or process (producer and consumer as two child processes; needs a broker queue).
    #[arg(long, value_enum)]
    runner: Option<RunnerArg>,
    /// Run one end of a broker queue (engine.queue rabbitmq): `producer` reads the source and
    /// publishes pages, `consumer` writes the producer's pages and completes the job. Start them
    /// on any hosts that reach the same broker and backend; one of each per pipeline.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Log level (overrides `engine.runner.log_level`; RUST_LOG also works).
    #[arg(long, value_enum, ignore_case = true)]
    log_level: Option<LogArg>,
    /// Log lines as text (default) or as one JSON object each (for log shippers), with the job,
    /// stream and iteration as fields.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Forget the stream's cursors and watermark: re-read everything and replace the target.
    #[arg(long)]
    reset: bool,
    /// No progress bar or progress lines (the final summary is still printed).
    #[arg(long)]
    no_progress: bool,
    /// Seconds between progress log lines when stderr is not a terminal.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    progress_interval: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RunnerArg {
    Thread,
    Stream,
    Process,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Producer,
    Consumer,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogArg {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Parse and validate a config without running anything.
    Validate(ConfigArgs),
    /// Print the resolved config as JSON, secrets masked.
    Show(ConfigArgs),
}

#[derive(Subcommand)]
enum SourceCmd {
    /// List the sources and their streams.
    List,
}

#[derive(Subcommand)]
enum StreamCmd {
    /// List the streams of a source (for `postgres`: the tables of the connection in --config).
    List {
        /// Source name (see `bizon source list`).
        source: String,
        /// A pipeline config whose `source` holds the connection (sources whose streams are tables).
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
    },
    /// Forget the stream's watermark and unfinished jobs: the next run re-reads everything.
    Reset(ConfigArgs),
}

#[derive(Subcommand)]
enum DestinationCmd {
    /// List the destinations with their delivery guarantee.
    List,
}

#[derive(Subcommand)]
enum JobCmd {
    /// The pipeline's jobs, newest first: status, iteration, records, cursor.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One job in full, as JSON.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// Job id (see `bizon job list`).
        job_id: String,
    },
}

#[derive(Subcommand)]
enum SecretsCmd {
    /// Resolve every `${VAR}`, `env://VAR` and `BIZON_ENV_*` placeholder and report which fail.
    Check(ConfigArgs),
}

/// An error with its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: e.into() }
}

fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: e.into() }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Config(ConfigCmd::Validate(a)) => {
            let cfg = load(&a)?;
            println!(
                "{}: valid (pipeline `{}`: {} / {} → {}, {})",
                a.config.display(),
                cfg.name,
                cfg.source_kind.name(),
                cfg.source.stream,
                cfg.destination.kind.name(),
                cfg.source.sync_mode.as_str()
            );
            Ok(())
        }
        Command::Config(ConfigCmd::Show(a)) => {
            let cfg = load(&a)?;
            let json = serde_json::to_string_pretty(&masked_json(&cfg.root)).map_err(failed)?;
            println!("{json}");
            Ok(())
        }
        Command::Source(SourceCmd::List) => {
            println!("Available sources:");
            for k in SourceKind::ALL {
                println!(
                    "  {:<10} streams: {:<20} modes: {:<34} {}",
                    k.name(),
                    k.streams().join(", "),
                    k.modes(),
                    k.description()
                );
            }
            Ok(())
        }
        Command::Stream(StreamCmd::List { source, config, env_file }) => {
            let kind = SourceKind::from_name(&source).ok_or_else(|| {
                usage(anyhow!("unknown source `{source}`; available: {}", SourceKind::names().join(", ")))
            })?;
            let modes = kind.modes();
            let streams: Vec<String> = if kind.streams().is_empty() {
                let Some(config) = config else {
                    return Err(usage(anyhow!(
                        "the streams of `{source}` are the tables of a connection: pass --config with a pipeline whose source holds it"
                    )));
                };
                let cfg = load(&ConfigArgs { config, env_file })?;
                match &cfg.source_config {
                    bizon_connectors::registry::SourceConfig::Postgres(c) => {
                        bizon_connectors::sources::postgres::list_tables(c).map_err(failed)?
                    }
                    _ => return Err(usage(anyhow!("the config's source is not `{source}`"))),
                }
            } else {
                kind.streams().iter().map(|s| s.to_string()).collect()
            };
            println!("Available streams for {source}:");
            for s in streams {
                println!("  {s:<12} ({modes})");
            }
            Ok(())
        }
        Command::Stream(StreamCmd::Reset(a)) => {
            let cfg = load(&a)?;
            let mut backend = open_backend(&cfg).map_err(failed)?;
            let key = stream_key(&cfg);
            let n = backend.reset_stream(&key).map_err(failed)?;
            println!(
                "stream `{}` of pipeline `{}` reset: watermark forgotten, {n} unfinished job(s) canceled; the next run re-reads everything",
                key.stream, key.pipeline
            );
            Ok(())
        }
        Command::Destination(DestinationCmd::List) => {
            println!("Available destinations:");
            for k in DestinationKind::ALL {
                println!("  {:<8} {:<22} {}", k.name(), k.guarantee().as_str(), k.description());
            }
            Ok(())
        }
        Command::Job(JobCmd::List { config, limit }) => {
            let cfg = load(&config)?;
            let mut backend = open_backend(&cfg).map_err(failed)?;
            let jobs = backend.list_jobs(&cfg.name, limit).map_err(failed)?;
            if jobs.is_empty() {
                println!("no jobs for pipeline `{}`", cfg.name);
                return Ok(());
            }
            println!(
                "{:<22} {:<10} {:<13} {:<10} {:>10} {:>12} {:<26} {:>10} {:>6} {:>8}",
                "JOB", "STATUS", "MODE", "STREAM", "ITERATION", "RECORDS", "UPDATED", "RATE/S", "%", "ETA"
            );
            for (job, cursor) in jobs {
                let (it, recs) = cursor.as_ref().map(|c| (c.iteration, c.records_written)).unwrap_or((-1, 0));
                let total = job.total_records.map(|t| format!("/{t}")).unwrap_or_default();
                let p = progress(&job, recs);
                let dash = || "-".to_owned();
                println!(
                    "{:<22} {:<10} {:<13} {:<10} {:>10} {:>12} {:<26} {:>10} {:>6} {:>8}",
                    job.id,
                    job.status.as_str(),
                    format!("{}{}", job.sync_mode.as_str(), if job.reset { "*" } else { "" }),
                    job.key.stream,
                    it,
                    format!("{recs}{total}"),
                    bizon_core::time::format_rfc3339(job.updated_at),
                    p.rate.map_or_else(dash, |r| format!("{r:.0}")),
                    p.percent.map_or_else(dash, |v| format!("{v:.1}")),
                    p.eta_s.filter(|_| job.status == JobStatus::Running).map_or_else(dash, |e| format!("{e:.0}s")),
                );
            }
            Ok(())
        }
        Command::Job(JobCmd::Show { config, job_id }) => {
            let cfg = load(&config)?;
            let mut backend = open_backend(&cfg).map_err(failed)?;
            let jobs = backend.list_jobs(&cfg.name, usize::MAX >> 1).map_err(failed)?;
            let (job, cursor) = jobs
                .into_iter()
                .find(|(j, _)| j.id == job_id)
                .ok_or_else(|| failed(anyhow!("no job `{job_id}` in pipeline `{}`", cfg.name)))?;
            let records = cursor.as_ref().map_or(0, |c| c.records_written);
            let p = progress(&job, records);
            let live = serde_json::json!({"records": records, "total": job.total_records, "percent": p.percent,
                "rate_per_s": p.rate, "eta_s": p.eta_s.filter(|_| job.status == JobStatus::Running)});
            let v = serde_json::json!({
                "id": job.id, "pipeline": job.key.pipeline, "source": job.key.source, "stream": job.key.stream,
                "sync_mode": job.sync_mode.as_str(), "reset": job.reset, "status": job.status.as_str(),
                "since": job.since, "pid": job.pid, "total_records": job.total_records, "error": job.error,
                "created_at": bizon_core::time::format_rfc3339(job.created_at),
                "updated_at": bizon_core::time::format_rfc3339(job.updated_at),
                "progress": live,
                "destination_cursor": cursor.map(|c| serde_json::json!({
                    "iteration": c.iteration, "pagination": c.pagination, "token": c.token,
                    "records_written": c.records_written, "bytes_written": c.bytes_written,
                    "watermark": c.watermark, "done": c.done,
                })),
            });
            println!("{}", serde_json::to_string_pretty(&v).map_err(failed)?);
            Ok(())
        }
        Command::Secrets(SecretsCmd::Check(a)) => secrets_check(&a),
    }
}

/// Variables: the process environment first, then the .env file.
fn env_lookup(args: &ConfigArgs) -> Result<impl Fn(&str) -> Option<String>, Failure> {
    let dotenv = match &args.env_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read env file `{}`", p.display()))
                .map_err(usage)?,
        ),
        None => std::fs::read_to_string(".env").ok(),
    };
    let vars = match dotenv {
        Some(text) => bizon_core::config::interp::parse_dotenv(&text)
            .map_err(|m| usage(anyhow!("{}: {m}", args.env_file.as_deref().unwrap_or(Path::new(".env")).display())))?,
        None => Vec::new(),
    };
    Ok(move |name: &str| {
        std::env::var(name).ok().or_else(|| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    })
}

fn read_config(args: &ConfigArgs) -> Result<String, Failure> {
    std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config file `{}`", args.config.display()))
        .map_err(usage)
}

fn load(args: &ConfigArgs) -> Result<BizonConfig, Failure> {
    let text = read_config(args)?;
    let env = env_lookup(args)?;
    bizon_connectors::load(&text, &env).map_err(|e| usage(anyhow!(e.render(&args.config.display().to_string()))))
}

fn stream_key(cfg: &BizonConfig) -> StreamKey {
    StreamKey { pipeline: cfg.name.clone(), source: cfg.source_kind.name().into(), stream: cfg.source.stream.clone() }
}

fn open_backend(cfg: &BizonConfig) -> bizon_core::Result<Box<dyn Backend>> {
    use bizon_connectors::backends::sqlite::SqliteBackend;
    Ok(match &cfg.engine.backend.kind {
        BackendKind::Sqlite(path) => Box::new(SqliteBackend::open(path.clone())?),
        BackendKind::SqliteInMemory => Box::new(SqliteBackend::in_memory()?),
        BackendKind::Postgres(conn, lease) => {
            Box::new(bizon_connectors::backends::postgres::PostgresBackend::open(conn.clone(), *lease)?)
        }
    })
}

/// A job's progress from what the backend holds: committed records over the time the job has
/// been committing (created → last update), % of the total and the time left at that rate.
struct Progress {
    rate: Option<f64>,
    percent: Option<f64>,
    eta_s: Option<f64>,
}

fn progress(job: &bizon_core::Job, records: u64) -> Progress {
    let secs = (job.updated_at - job.created_at) as f64 / 1e6;
    let rate = (secs > 0.0 && records > 0).then(|| records as f64 / secs);
    let total = job.total_records.filter(|t| *t > 0);
    let percent = total.map(|t| (records as f64 * 100.0 / t as f64).min(100.0));
    let eta_s = match (total, rate) {
        (Some(t), Some(r)) => Some((t.saturating_sub(records)) as f64 / r),
        _ => None,
    };
    Progress { rate, percent, eta_s }
}

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
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        // the job's span (job_id, stream) rides on every line of the run
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

fn run(args: RunArgs) -> Result<(), Failure> {
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
        RunnerType::Process => {
            let Some(broker) = &cfg.engine.queue.broker else {
                return Err(usage(anyhow!(
                    "runner `process` runs the producer and the consumer as separate processes, which talk through a broker: set engine.queue.type to rabbitmq or kafka (the in-memory queue lives inside one process)"
                )));
            };
            if matches!(cfg.engine.backend.kind, BackendKind::SqliteInMemory) {
                return Err(usage(anyhow!(
                    "runner `process` needs a backend both processes share: sqlite (a file) or postgres, not sqlite_in_memory"
                )));
            }
            return supervise(&args, broker);
        }
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
    let mut backend = open_backend(&cfg).map_err(failed)?;
    let mut source = cfg.source_config.build(&cfg.source, &cfg.stream_topics());
    let mut destination = cfg.build_destination().map_err(|e| usage(anyhow!(e)))?;
    let common = &cfg.destination.common;
    let runner_details = cfg.engine.runner.config.as_ref();
    let spec = PipelineSpec {
        key: stream_key(&cfg),
        sync_mode: cfg.source.sync_mode,
        cursor_field: cfg.source.cursor_field.clone(),
        max_iterations: cfg.source.max_iterations,
        force_ignore_checkpoint: cfg.source.force_ignore_checkpoint,
        reset: args.reset || cfg.source.reset,
        buffer_bytes: common.buffer_size << 20,
        flush_timeout: (common.buffer_flush_timeout > 0).then(|| Duration::from_secs(common.buffer_flush_timeout)),
        source_cursor_every: cfg.engine.backend.sync_cursor_in_db_every,
        runner,
        queue_max_bytes: cfg.engine.queue.max_bytes,
        queue_max_messages: cfg.engine.queue.max_messages,
        max_retries: runner_details.and_then(|d| d.max_retries).unwrap_or(10),
        retry_backoff: Duration::from_millis(runner_details.and_then(|d| d.retry_backoff_ms).unwrap_or(100)),
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
    };
    let counters = Arc::new(Counters::default());
    let telemetry = telemetry::Telemetry::start(&cfg, counters.clone()).map_err(|e| usage(anyhow!(e)))?;
    let pipeline = Pipeline {
        spec,
        source: source.as_mut(),
        destination: destination.as_mut(),
        backend: backend.as_mut(),
        broker: broker.as_deref(),
        stop,
        failpoints,
        counters: counters.clone(),
    };
    let summary = match pipeline.run() {
        Ok(s) => s,
        Err(e) => {
            telemetry.finish(telemetry::End::Failed(e.message()), &counters);
            return Err(failed(anyhow!("pipeline `{}` failed: {e}", cfg.name)));
        }
    };
    let status = match summary.outcome {
        Outcome::Completed => "completed",
        Outcome::Stopped => "stopped",
        Outcome::Published | Outcome::LaneDone => "running",
    };
    telemetry.finish(telemetry::End::Ok(status), &counters);
    let secs = summary.elapsed.as_secs_f64();
    let what = match summary.outcome {
        Outcome::Completed => "completed",
        Outcome::Stopped => "stopped (resumable: run the same command again)",
        Outcome::Published => "published (the consumer completes the job)",
        Outcome::LaneDone => "finished its lane (the last lane to finish completes the job)",
    };
    eprintln!(
        "bizon: job {} {what}: {} records, {:.1} MB in {:.2} s ({:.0} records/s){}{}",
        summary.job_id,
        summary.records,
        summary.bytes as f64 / 1e6,
        secs,
        summary.records as f64 / secs.max(1e-9),
        summary.resumed_after.map(|i| format!(", resumed after iteration {i}")).unwrap_or_default(),
        if summary.retries > 0 { format!(", {} retries", summary.retries) } else { String::new() },
    );
    Ok(())
}

/// The process runner: the producer and the consumer as two child processes of this binary
/// (`run --role …`), supervised. A child that fails or dies stops the other (SIGTERM: it commits
/// what it has) and fails the run; the next run resumes from the last commit.
fn supervise(args: &RunArgs, broker: &BrokerSpec) -> Result<(), Failure> {
    use std::os::unix::process::CommandExt;
    broker.build().and_then(|b| b.purge()).map_err(failed)?; // both ends restart from the last commit
    let exe = std::env::current_exe().map_err(|e| failed(anyhow!("cannot find the bizon executable: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let spawn = |role: &str| {
        let mut c = std::process::Command::new(&exe);
        c.arg("run").arg(&args.config.config).args(["--role", role, "--runner", "process", "--no-progress"]);
        if let Some(f) = &args.config.env_file {
            c.arg("--env-file").arg(f);
        }
        if let Some(l) = args.log_level {
            c.arg("--log-level").arg(l.to_possible_value().expect("no skipped variants").get_name());
        }
        if args.log_format == LogFormat::Json {
            c.args(["--log-format", "json"]);
        }
        if args.reset && role == "producer" {
            c.arg("--reset");
        }
        // SAFETY: prctl is async-signal-safe; a child outliving a killed supervisor is stopped.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        c.spawn().map_err(|e| failed(anyhow!("cannot start the {role} process: {e}")))
    };
    let mut children = vec![("producer", spawn("producer")?)];
    for _ in 0..broker.lanes() {
        children.push(("consumer", spawn("consumer")?));
    }
    let consumers: Vec<String> = children[1..].iter().map(|(_, c)| c.id().to_string()).collect();
    eprintln!(
        "bizon: process runner: producer pid {}, consumer pid {}",
        children[0].1.id(),
        consumers.join(", consumer pid ")
    );
    let term = |c: &std::process::Child| unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    };
    let mut failure: Option<String> = None;
    let mut signalled = false;
    while !children.is_empty() {
        if stop.load(Ordering::SeqCst) && !signalled {
            children.iter().for_each(|(_, c)| term(c));
            signalled = true;
        }
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (role, child) = children.remove(i);
                    if !status.success() && failure.is_none() {
                        let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                            (Some(code), _) => format!("exited with code {code}"),
                            (None, Some(sig)) => format!("was killed by signal {sig}"),
                            _ => format!("ended with {status}"),
                        };
                        failure = Some(format!("the {role} process (pid {}) {how}", child.id()));
                        children.iter().for_each(|(_, c)| term(c));
                    }
                }
                Ok(None) => i += 1,
                Err(e) => return Err(failed(anyhow!("waiting for the {} process: {e}", children[i].0))),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failure {
        Some(f) => Err(failed(anyhow!("{f}; the run stopped, the next run resumes from the last commit"))),
        None => Ok(()),
    }
}

fn secrets_check(args: &ConfigArgs) -> Result<(), Failure> {
    let text = read_config(args)?;
    let env = env_lookup(args)?;
    let root = bizon_core::config::yaml::parse(&text)
        .map_err(|e| usage(anyhow!(e.render(&args.config.display().to_string()))))?;
    let mut found = 0;
    let mut missing = 0;
    fn walk(n: &bizon_core::config::yaml::Node, path: String, out: &mut Vec<(String, String)>) {
        use bizon_core::config::yaml::Value;
        match &n.value {
            Value::Scalar { text, .. } => out.push((path, text.clone())),
            Value::Seq(items) => items.iter().enumerate().for_each(|(i, c)| walk(c, format!("{path}[{i}]"), out)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                let key = k.as_str().unwrap_or_default();
                walk(v, if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }, out)
            }),
            Value::Null => {}
        }
    }
    let mut scalars = Vec::new();
    walk(&root, String::new(), &mut scalars);
    for (path, text) in scalars {
        match bizon_core::config::interp::resolve_str(&text, &env) {
            Ok(None) => {}
            Ok(Some(_)) => {
                found += 1;
                println!("{path:<40} ok");
            }
            Err(m) => {
                found += 1;
                missing += 1;
                println!("{path:<40} FAILED: {m}");
            }
        }
    }
    if found == 0 {
        println!("no placeholders in {}", args.config.display());
    }
    if missing > 0 {
        return Err(usage(anyhow!("{missing} of {found} placeholder(s) did not resolve")));
    }
    Ok(())
}
