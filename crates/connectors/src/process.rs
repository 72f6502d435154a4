//! What the `command` source and the `command` destination share: the configured command line
//! (argv or a shell line), the thread that keeps its stderr's last line for error messages,
//! and the wording of an exit status.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::error::ConfigError;

/// The executable: a list (program and arguments) or one string run by `sh -c`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CommandLine {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandLine {
    /// The process to spawn (stdio not set yet).
    pub fn command(&self) -> Command {
        match self {
            CommandLine::Argv(v) => {
                let mut c = Command::new(&v[0]);
                c.args(&v[1..]);
                c
            }
            CommandLine::Shell(s) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(s);
                c
            }
        }
    }

    /// The command as the user wrote it, for messages: `python3 target.py`.
    pub fn text(&self) -> String {
        match self {
            CommandLine::Argv(v) => v.join(" "),
            CommandLine::Shell(s) => s.clone(),
        }
    }

    /// A command with a program to run (pure: whether it exists is found when it starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            CommandLine::Argv(v) if v.is_empty() || v[0].trim().is_empty() => {
                Err(ConfigError::Empty { key: "command" })
            }
            CommandLine::Shell(s) if s.trim().is_empty() => Err(ConfigError::Empty { key: "command" }),
            _ => Ok(()),
        }
    }
}

/// The last non-blank line a child wrote to stderr; every line goes to the log (`bizon::command`).
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<String>>);

impl StderrTail {
    /// Take the child's stderr (piped) and read it on a thread until it closes.
    pub fn start(child: &mut Child) -> Self {
        let tail = StderrTail::default();
        if let Some(err) = child.stderr.take() {
            let keep = tail.clone();
            let spawned = std::thread::Builder::new().name("command-stderr".into()).spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(target: "bizon::command", "{line}");
                    if !line.trim().is_empty() {
                        *keep.0.lock().unwrap_or_else(|p| p.into_inner()) = line;
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the command's stderr reader: its errors will not be shown");
            }
        }
        tail
    }

    /// The last line, after a moment for the reader to drain the process's last words.
    pub fn last(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(50));
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `exited with code 3`, `was killed by signal 9`.
pub fn exit_text(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({status})"),
    }
}
