//! The `bizon` binary: parses the command line, loads the config, builds the connectors and
//! hands them to the engine. Exit codes: 0 success, 1 the run failed, 2 usage or config error.
//! One file per group of verbs; `load` reads configs for all of them.

/// Print one line to stderr in a single write. `eprintln!` writes each formatted piece on its own
/// (stderr is unbuffered), so processes sharing one stderr (the process runner's producer and
/// consumers) could cut into each other's lines; one write of up to 4 KiB to a pipe is atomic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }};
}

mod args;
mod catalog;
mod check;
mod jobs;
mod load;
mod result;
mod run;
mod secrets;
mod state;
mod supervise;
mod telemetry;

use std::process::ExitCode;

use bizon_core::ErrorKind;
use clap::Parser;

use args::{Cli, Command, ConfigCmd, DestinationCmd, JobCmd, SecretsCmd, SourceCmd, StateCmd, StreamCmd};

/// An error with its exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

/// A usage or config error: exit code 2.
pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: e.into() }
}

/// The run (or the command's work) failed: exit code 1.
pub fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: e.into() }
}

/// A typed error's exit code read from its kind: 2 for [`ErrorKind::Config`], else 1.
pub fn by_kind(kind: ErrorKind, e: impl Into<anyhow::Error>) -> Failure {
    match kind {
        ErrorKind::Config => usage(e),
        _ => failed(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // a listing piped into `head` ends quietly when the reader goes, as Unix tools do; a run
        // keeps ignoring SIGPIPE so a closed log reader never kills it mid-commit
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            say!("error: {}", bizon_core::redact::redact(&format!("{:#}", f.error)));
            ExitCode::from(f.code)
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Config(ConfigCmd::Validate(a)) => catalog::config_validate(&a),
        Command::Config(ConfigCmd::Show(a)) => catalog::config_show(&a),
        Command::Config(ConfigCmd::Schema) => catalog::config_schema(),
        Command::Source(SourceCmd::List) => {
            catalog::source_list();
            Ok(())
        }
        Command::Stream(StreamCmd::List { source, config, env_file }) => {
            catalog::stream_list(&source, config, env_file)
        }
        Command::Stream(StreamCmd::Reset(a)) => catalog::stream_reset(&a),
        Command::Destination(DestinationCmd::List) => {
            catalog::destination_list();
            Ok(())
        }
        Command::Job(JobCmd::List { config, limit }) => jobs::list(&config, limit),
        Command::Job(JobCmd::Show { config, job_id }) => jobs::show(&config, &job_id),
        Command::Check(a) => check::check(&a),
        Command::Secrets(SecretsCmd::Check(a)) => secrets::check(&a),
        Command::State(StateCmd::Import(a)) => state::import(&a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "bizon", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(failed)
        }
    }
}
