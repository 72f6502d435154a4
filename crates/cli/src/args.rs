//! The command line: verbs, their arguments and `--help` texts.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Seconds between progress log lines when `--progress-interval` is not given.
pub const DEFAULT_PROGRESS_INTERVAL_SECS: f64 = 10.0;
/// Jobs `bizon job list` shows when `--limit` is not given.
pub const DEFAULT_JOB_LIST_LIMIT: usize = 20;

#[derive(Parser)]
#[command(
    name = "bizon",
    version,
    about = "Extract and load data streams; resumes after any crash without losing a record.",
    long_about = "Extract and load data streams; resumes after any crash without losing a record.\n\n\
        Runs bizon YAML configs unchanged. Exit codes: 0 success, 1 the run failed, 2 usage or config error.",
    after_help = "Start with: bizon run examples/dummy_to_logger.yml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Connect to the source, destination, backend and queue of a config without moving data:
    /// one line per component (ok, or the error and how to fix it); exit 1 on any error.
    Check(CheckArgs),
    /// Check that every environment placeholder of a config resolves.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Carry state over from bizon (Python).
    #[command(subcommand)]
    State(StateCmd),
    /// Print a shell completion script: `bizon completions bash > /etc/bash_completion.d/bizon`,
    /// `bizon completions zsh > "${fpath[1]}/_bizon"`, `bizon completions fish >
    /// ~/.config/fish/completions/bizon.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `bizon manpage > /usr/local/share/man/man1/bizon.1`.
    Manpage,
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Path to the pipeline's YAML config.
    pub config: PathBuf,
    /// Load environment variables from this .env file (default: ./.env if present; variables
    /// already set in the environment win).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Treat every config warning as an error: source keys the connector does not declare
    /// (otherwise ignored, as bizon does) and keys that have no effect here.
    #[arg(long)]
    pub strict: bool,
    /// A custom bizon source: the Python file holding its AbstractSource subclass (sets
    /// `source.source_file_path`, as bizon's flag does). It runs in a Python worker: `python3`,
    /// or the interpreter BIZON_PYTHON names.
    #[arg(long, value_name = "FILE.py")]
    pub custom_source: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds each component may take to answer (the source reads its first page, which it
    /// then drops).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Override `engine.runner.type`: thread (producer and consumer threads), stream (one loop)
    /// or process (producer and consumer as two child processes over a broker queue; with the
    /// in-memory queue it runs as thread).
    #[arg(long, value_enum)]
    pub runner: Option<RunnerArg>,
    /// Run one end of a broker queue (engine.queue rabbitmq): `producer` reads the source and
    /// publishes pages, `consumer` writes the producer's pages and completes the job. Start them
    /// on any hosts that reach the same broker and backend; one of each per pipeline.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Log level (overrides `engine.runner.log_level`; RUST_LOG also works).
    #[arg(long, value_enum, ignore_case = true)]
    pub log_level: Option<LogArg>,
    /// Log lines as text (default) or as one JSON object each (for log shippers), with the job,
    /// stream and iteration as fields.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Forget the stream's cursors and watermark: re-read everything and replace the target.
    #[arg(long)]
    pub reset: bool,
    /// No progress bar or progress lines (the final summary is still printed).
    #[arg(long)]
    pub no_progress: bool,
    /// Write the run's outcome as JSON to this file (bizon's layout: status running / success /
    /// failure, failure_class, job_id, records_written, started_at, duration_s, error). It reads
    /// `running` until the run ends, so a run killed from outside leaves that behind.
    #[arg(long, value_name = "FILE")]
    pub result_json: Option<PathBuf>,
    /// Seconds between progress log lines when stderr is not a terminal.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PROGRESS_INTERVAL_SECS)]
    pub progress_interval: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RunnerArg {
    Thread,
    Stream,
    Process,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Producer,
    Consumer,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogArg {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Parse and validate a config without running anything (placeholders and secret
    /// references are resolved as a run would, unless --skip-references).
    Validate(ValidateArgs),
    /// Print the resolved config as JSON, secrets masked.
    Show(ConfigArgs),
    /// Print the JSON Schema of a pipeline config (every connector of this build: keys, types,
    /// defaults, descriptions), for editors: e.g. `# yaml-language-server: $schema=bizon.json`.
    Schema,
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Do not resolve `${VAR}`, `env://`, `BIZON_ENV_*` or `gsm://` references: check them as
    /// literal text, and a field that cannot hold text (a port, a flag) with a stand-in of its
    /// type. For CI without access to the secrets.
    #[arg(long)]
    pub skip_references: bool,
}

#[derive(Subcommand)]
pub enum SourceCmd {
    /// List the sources and their streams.
    List,
}

#[derive(Subcommand)]
pub enum StreamCmd {
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
    /// Request a reset of an incremental stream: its next run re-reads everything, replaces
    /// the target and continues incrementally from there (bizon's deferred reset; scheduled runs
    /// pick it up with no change to their command line). `--now` also resets the state at once.
    Reset(ResetArgs),
}

#[derive(clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Reset this stream instead of the config's `source.stream` (for configs templated across
    /// streams).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Withdraw the stream's pending reset requests instead of adding one.
    #[arg(long, conflicts_with = "now")]
    pub cancel: bool,
    /// Also reset at once: forget the watermark and cancel the stream's unfinished jobs now (any
    /// sync mode; a running job must be stopped first). An incremental stream's next run still
    /// replaces the target.
    #[arg(long)]
    pub now: bool,
}

#[derive(Subcommand)]
pub enum DestinationCmd {
    /// List the destinations with their delivery guarantee.
    List,
}

#[derive(Subcommand)]
pub enum JobCmd {
    /// The pipeline's jobs, newest first: status, iteration, records, cursor.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = DEFAULT_JOB_LIST_LIMIT)]
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
pub enum StateCmd {
    /// Import a stream's incremental watermark from bizon's backend (its SQLite file or
    /// PostgreSQL tables: stream_jobs, destination_cursors), so the next incremental run here
    /// reads only what changed after bizon's last successful run.
    Import(ImportArgs),
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// This pipeline's config: the stream and backend to import into.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The bizon config that ran the stream: its `engine.backend` (default: sqlite
    /// `bizon.sqlite3` in the working directory, as bizon's), `id` or `name`, `source.name` and
    /// `source.stream` say where to read. Often the same file as CONFIG.
    #[arg(long, value_name = "BIZON_CONFIG")]
    pub from_bizon: PathBuf,
    /// Print what would be imported; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a watermark or unfinished job this stream already has here.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Resolve every `${VAR}`, `env://VAR` and `BIZON_ENV_*` placeholder and report which fail.
    Check(ConfigArgs),
}
