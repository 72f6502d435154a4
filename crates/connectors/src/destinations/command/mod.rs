//! `command` destination: targets in any language. bizon starts the executable and writes
//! Singer messages to its stdin — a SCHEMA line, one RECORD line per record, a STATE line at
//! every commit — and reads its stdout for the target's acknowledgement: the same STATE echoed
//! back (Singer targets print a STATE's value once everything before it is durably written;
//! Airbyte destinations echo `{"type":"STATE","state":…}`). Only then does `flush` return, and
//! the engine commits the cursor.
//!
//! At-least-once: records written after the last acknowledged STATE are sent again on resume,
//! so a target that wrote some of them before a crash holds them twice (dedup by `record_id`).
//!
//! The target does not outlive bizon: a dropped destination (an error, a stopped run) kills it,
//! and when bizon itself is killed (`kill -9`) its end of the pipes closes, so the target reads
//! EOF on stdin (a well-behaved target writes what it holds and exits) and a write to its stdout
//! fails. A target that ignores EOF keeps running until it writes to stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bizon_core::config::yaml::{self, struct_fields, Node};
use bizon_core::config::StreamConfig;
use bizon_core::record::json_escape_into;
use bizon_core::time::Rfc3339Writer;
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Guarantee, Json, RecordBatch, Result,
};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec};
use crate::process::{exit_text, CommandLine, StderrTail};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandDestinationConfig {
    /// The target and its arguments (`[python3, target.py]`), or a shell line
    /// (`target-jsonl --config cfg.json`). It reads Singer messages on stdin and prints each
    /// STATE back once what came before it is durable.
    pub command: CommandLine,
    /// Seconds a commit waits for the target to echo its STATE before failing (a transient
    /// error: the run retries from the last commit).
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// Extra environment variables of the target.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_ack_timeout_secs() -> u64 {
    300
}

/// The `command` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "command",
    description:
        "any executable reading Singer SCHEMA / RECORD / STATE lines on stdin; a commit waits for its STATE echoed back",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::AtLeastOnce,
        transactional: false,
        typed_columns: false,
        lanes: false,
        dead_letters: false,
        network: false,
    },
    keys: struct_fields::<CommandDestinationConfig>,
    schema: <CommandDestinationConfig as schemars::JsonSchema>::json_schema,
    parse: parse_destination::<CommandDestinationConfig>,
};

impl DestinationSpec for CommandDestinationConfig {
    fn validate(&self, node: &Node) -> std::result::Result<(), yaml::Error> {
        let checked = self.command.validate().map_err(|e| e.to_string());
        let checked = checked.and_then(|()| match self.ack_timeout_secs {
            0 => Err("`ack_timeout_secs` must be at least 1".to_owned()),
            _ => Ok(()),
        });
        checked.map_err(|message| {
            let key = if message.contains("ack_timeout_secs") { "ack_timeout_secs" } else { "command" };
            yaml::Error::new(message, node.get(key).unwrap_or(node).mark, &format!("destination.config.{key}"))
        })
    }

    /// The program is there to start (it is not started: it would wait for records).
    fn check(&self, _destination_id: &str) -> bizon_core::Result<String> {
        crate::check::program(&self.command)
    }

    /// The stream's records go to the target as stream `destination_id`.
    fn build(&self, destination_id: &str, _typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        Box::new(CommandDestination::new(self.clone(), destination_id))
    }

    /// A `streams:` entry starts its own target, its records named after the entry.
    fn build_stream(
        &self,
        name: &str,
        _stream: &StreamConfig,
        _typed: Option<Vec<(String, String)>>,
    ) -> Box<dyn Destination> {
        Box::new(CommandDestination::new(self.clone(), name))
    }
}

/// Buffered bytes handed to the target's stdin in one write.
const STDIN_BUFFER: usize = 256 << 10;

/// A running target.
struct Target {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    /// STATE values the target printed, from the stdout reader; closed at EOF.
    acks: mpsc::Receiver<Json>,
    stderr: StderrTail,
}

impl Drop for Target {
    fn drop(&mut self) {
        // Killed first, so it cannot act on an EOF; the buffered bytes are dropped unsent
        // (flushing into a target that stopped reading would block).
        let _ = self.child.kill();
        if let Some(w) = self.stdin.take() {
            let _ = w.into_parts();
        }
        let _ = self.child.wait();
    }
}

pub struct CommandDestination {
    config: CommandDestinationConfig,
    stream: String,
    target: Option<Target>,
    /// Acknowledged commits (the token), continued from the resumed one.
    commits: u64,
    /// `{"type":"RECORD","stream":"<stream>","record":` — every RECORD line starts with it.
    head: Vec<u8>,
    line: Vec<u8>,
    ts: Rfc3339Writer,
}

impl CommandDestination {
    pub fn new(config: CommandDestinationConfig, stream: &str) -> Self {
        let mut head = b"{\"type\":\"RECORD\",\"stream\":\"".to_vec();
        json_escape_into(&mut head, stream.as_bytes());
        head.extend_from_slice(b"\",\"record\":");
        CommandDestination {
            config,
            stream: stream.to_owned(),
            target: None,
            commits: 0,
            head,
            line: Vec::with_capacity(1024),
            ts: Rfc3339Writer::default(),
        }
    }

    fn name(&self) -> String {
        format!("command destination `{}`", self.config.command.text())
    }

    fn start(&mut self) -> Result<Target> {
        let mut cmd = self.config.command.command();
        cmd.envs(&self.config.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::config(format!("cannot start the {}: {e}", self.name())))?;
        let stderr = StderrTail::start(&mut child);
        let stdout = child.stdout.take().ok_or_else(|| Error::internal("no target stdout"))?;
        let (tx, acks) = mpsc::channel();
        std::thread::Builder::new()
            .name("command-stdout".into())
            .spawn(move || read_acks(stdout, tx))
            .map_err(|e| Error::internal(format!("cannot start the target's stdout reader: {e}")))?;
        let stdin = child.stdin.take().map(|w| BufWriter::with_capacity(STDIN_BUFFER, w));
        Ok(Target { child, stdin, acks, stderr })
    }

    /// Send bytes to the target; a target that stopped reading is reported by its exit.
    fn send(&mut self, bytes: &[u8], flush: bool, doing: &str) -> Result<()> {
        let target = self.target.as_mut().ok_or_else(|| Error::internal("command destination: write before open"))?;
        let sent = match target.stdin.as_mut() {
            Some(w) => w.write_all(bytes).and_then(|()| if flush { w.flush() } else { Ok(()) }),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        sent.map_err(|e| self.died(doing, Some(&e)))
    }

    /// The error for a target that stopped: its exit status and last stderr line. Permanent.
    fn died(&mut self, doing: &str, io: Option<&std::io::Error>) -> Error {
        let name = self.name();
        let Some(mut target) = self.target.take() else {
            return Error::internal(format!("{name}: not started"));
        };
        if let Some(w) = target.stdin.take() {
            let _ = w.into_parts(); // EOF: a target still running may end by itself
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match target.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break None,
            }
        };
        let how = match (status, io) {
            (Some(s), _) => exit_text(&s),
            (None, Some(e)) => format!("stopped reading its input ({e})"),
            (None, None) => "closed its output".to_owned(),
        };
        let tail = target.stderr.last();
        let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
        Error::permanent(format!("{name} {how} {doing}{tail}"))
    }
}

/// Read the target's stdout: STATE values go to `acks`, LOG messages and other lines to the log.
fn read_acks(stdout: ChildStdout, acks: mpsc::Sender<Json>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_str::<Json>(text) else {
            tracing::info!(target: "bizon::command", "{text}");
            continue;
        };
        let state = match msg.get("type").and_then(Json::as_str) {
            // Singer: {"type":"STATE","value"}; Airbyte: {"type":"STATE","state":{"data"}} (or the state itself)
            Some("STATE") => msg
                .get("value")
                .or_else(|| msg.get("state").and_then(|s| s.get("data")))
                .or_else(|| msg.get("state"))
                .cloned(),
            Some("LOG") => {
                let log = msg.get("log").unwrap_or(&msg);
                let text = log.get("message").and_then(Json::as_str).unwrap_or_default();
                match log.get("level").and_then(Json::as_str).unwrap_or("INFO") {
                    "ERROR" | "FATAL" => tracing::error!(target: "bizon::command", "{text}"),
                    "WARN" | "WARNING" => tracing::warn!(target: "bizon::command", "{text}"),
                    _ => tracing::info!(target: "bizon::command", "{text}"),
                }
                None
            }
            Some(_) => {
                tracing::debug!(target: "bizon::command", "{text}");
                None
            }
            // Singer targets print the bare state value (`emit_state`)
            None => Some(msg),
        };
        if let Some(state) = state {
            if acks.send(state).is_err() {
                break;
            }
        }
    }
}

impl Destination for CommandDestination {
    fn open(&mut self, _ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.target = None; // a retry restarts the target: what it had not acknowledged is re-sent
        self.commits = resume.and_then(|t| t.get("commits")).and_then(Json::as_u64).unwrap_or(0);
        self.target = Some(self.start()?);
        let schema =
            json!({"type": "SCHEMA", "stream": self.stream, "schema": {"type": "object"}, "key_properties": []});
        let mut line = serde_json::to_vec(&schema).map_err(|e| Error::internal(e.to_string()))?;
        line.push(b'\n');
        self.send(&line, false, "at its start")?;
        tracing::info!(command = %self.config.command.text(), stream = %self.stream, commits = self.commits, "command destination started");
        Ok(json!({"commits": self.commits}))
    }

    fn write(&mut self, batch: &RecordBatch, _meta: &BatchMeta) -> Result<()> {
        let target = self.target.as_mut().ok_or_else(|| Error::internal("command destination: write before open"))?;
        let mut failed = None;
        if let Some(w) = target.stdin.as_mut() {
            for r in batch.iter() {
                let line = &mut self.line;
                line.clear();
                line.extend_from_slice(&self.head);
                line.extend_from_slice(if r.data.is_empty() { b"null" } else { r.data });
                line.extend_from_slice(b",\"record_id\":\"");
                json_escape_into(line, r.id.as_bytes());
                line.extend_from_slice(b"\",\"time_extracted\":\"");
                self.ts.write(line, r.timestamp);
                line.extend_from_slice(b"\"}\n");
                if let Err(e) = w.write_all(line) {
                    failed = Some(e);
                    break;
                }
            }
        } else {
            failed = Some(std::io::ErrorKind::BrokenPipe.into());
        }
        match failed {
            Some(e) => Err(self.died(&format!("before acknowledging commit {}", self.commits + 1), Some(&e))),
            None => Ok(()),
        }
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        let n = self.commits + 1;
        let value = json!({"bizon_commit": n});
        let doing = format!("before acknowledging commit {n}");
        self.send(format!("{{\"type\":\"STATE\",\"value\":{value}}}\n").as_bytes(), true, &doing)?;
        let deadline = Instant::now() + Duration::from_secs(self.config.ack_timeout_secs);
        loop {
            let target = self.target.as_mut().ok_or_else(|| Error::internal("command destination: not started"))?;
            match target.acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ack) if ack == value => break,
                Ok(other) => tracing::debug!(state = %other, "the target acknowledged another state"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Error::transient(format!(
                        "{} did not acknowledge commit {n} within {} s (ack_timeout_secs): it must print each STATE \
                         back once what came before it is durable",
                        self.name(),
                        self.config.ack_timeout_secs
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.died(&doing, None)),
            }
        }
        self.commits = n;
        Ok(json!({"commits": n}))
    }

    fn finalize(&mut self) -> Result<()> {
        let Some(target) = self.target.as_mut() else { return Ok(()) };
        // EOF: the target writes what it holds and exits
        let closed = target.stdin.take().map_or(Ok(()), |mut w| w.flush());
        if let Err(e) = closed {
            return Err(self.died("at the end of the job", Some(&e)));
        }
        let deadline = Instant::now() + Duration::from_secs(self.config.ack_timeout_secs);
        let status = loop {
            match target.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    return Err(Error::transient(format!(
                        "{} did not exit within {} s (ack_timeout_secs) after its input ended",
                        self.name(),
                        self.config.ack_timeout_secs
                    )));
                }
                Err(e) => return Err(Error::io(format!("waiting for the {}", self.name()), e)),
            }
        };
        let tail = target.stderr.clone();
        self.target = None;
        if status.success() {
            return Ok(());
        }
        let tail = tail.last();
        let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
        Err(Error::permanent(format!("{} {} at the end of the job{tail}", self.name(), exit_text(&status))))
    }
}

#[cfg(test)]
pub(crate) mod tests;
