//! `command` source: connectors in any language. An executable prints JSON lines on stdout —
//! RECORD, STATE and LOG messages in the Singer or the Airbyte protocol's shape — and, on resume,
//! gets its last committed STATE back (`--state FILE`, and `BIZON_STATE`), as Singer taps and
//! Airbyte sources do.
//!
//! A page ends at each STATE message (or after `page_size` records); its pagination is
//! `{"state": <last STATE>, "after": <records read since it>}`, so a resumed run restarts the
//! command from the last committed STATE and skips the records of it already committed.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{OnError, SourceCommon, SyncMode};
use bizon_core::record::DEAD_LETTER;
use bizon_core::time::now_micros;
use bizon_core::{Error, Json, Page, ReadContext, RecordBatch, Result, Source};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::descriptor::{parse_source, SourceCapabilities, SourceDescriptor, SourceSpec};
use crate::error::ConfigError;
pub use crate::process::CommandLine;
use crate::process::StderrTail;
use crate::raw_json;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSourceConfig {
    /// The executable and its arguments (`[python3, tap.py]`), or a shell line (`./tap.sh | jq -c .`).
    pub command: CommandLine,
    /// The argument that hands the command its last committed STATE, as a file path (Singer's
    /// and Airbyte's `--state`). The environment has it too: `BIZON_STATE` (the JSON) and
    /// `BIZON_STATE_FILE` (the path); a shell line gets only those.
    #[serde(default = "default_state_arg")]
    pub state_arg: String,
    /// The record field (or JSON pointer, `/a/b`) that is the record's id; default: its
    /// position in the read (`<n>`).
    #[serde(default)]
    pub primary_key: Option<String>,
    /// A page ends after this many records even without a STATE message.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// A line that is not a protocol message: fail the run (default), or write it to the
    /// dead-letter file and go on.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub dead_letter_path: Option<String>,
}

fn default_state_arg() -> String {
    "--state".into()
}

fn default_page_size() -> usize {
    1000
}

/// The `command` source in the registry.
pub const DESCRIPTOR: SourceDescriptor = SourceDescriptor {
    name: "command",
    description: "any executable printing Singer / Airbyte RECORD, STATE and LOG lines; resumed from its last STATE",
    streams: &[],
    modes: &[SyncMode::FullRefresh],
    capabilities: SourceCapabilities { own_position: false, dead_letters: true, network: false },
    keys: struct_fields::<CommandSourceConfig>,
    schema: <CommandSourceConfig as schemars::JsonSchema>::json_schema,
    parse: parse_source::<CommandSourceConfig>,
};

impl SourceSpec for CommandSourceConfig {
    fn build(&self, common: &SourceCommon, _routes: &[String]) -> Box<dyn Source> {
        Box::new(CommandSource { config: self.clone(), stream: common.stream.clone(), run: None })
    }

    fn dead_letter_path(&self, destination_id: &str) -> Option<String> {
        crate::config::dead_letter_file(self.on_error, &self.dead_letter_path, destination_id)
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.page_size == 0 {
            return Err(ConfigError::AtLeastOne { key: "page_size" });
        }
        self.command.validate()
    }
}

/// One started command: its output, and where the read stands.
struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
    stderr_tail: StderrTail,
    /// The last STATE seen, and the records read after it.
    state: Json,
    after: u64,
    /// Records read in all (the default record id).
    position: u64,
    /// The state handed to the command, removed when it is done.
    _state_file: Option<StateFile>,
}

struct StateFile(std::path::PathBuf);

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct CommandSource {
    config: CommandSourceConfig,
    stream: String,
    run: Option<Running>,
}

impl CommandSource {
    fn describe(&self) -> String {
        format!("command `{}`", self.config.command.text())
    }

    /// Start the command from `pagination` (the last committed STATE, records to skip after it).
    fn start(&mut self, pagination: &Json) -> Result<()> {
        let state = pagination.get("state").cloned().unwrap_or(Json::Null);
        let skip = pagination.get("after").and_then(Json::as_u64).unwrap_or(0);
        let position = pagination.get("position").and_then(Json::as_u64).unwrap_or(0);
        let mut cmd = self.config.command.command();
        let mut state_file = None;
        if !state.is_null() {
            static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let file =
                StateFile(std::env::temp_dir().join(format!("bizon-command-state-{}-{n}.json", std::process::id())));
            std::fs::write(&file.0, state.to_string()).map_err(|e| Error::io("the command's state file", e))?;
            // a shell line gets it from the environment only (an argument would land on its last command)
            if let CommandLine::Argv(_) = &self.config.command {
                cmd.arg(&self.config.state_arg).arg(&file.0);
            }
            cmd.env("BIZON_STATE", state.to_string()).env("BIZON_STATE_FILE", &file.0);
            state_file = Some(file);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::config(format!("cannot start the {}: {e}", self.describe())))?;
        let stderr_tail = StderrTail::start(&mut child);
        let out = BufReader::new(child.stdout.take().ok_or_else(|| Error::internal("no command stdout"))?);
        tracing::info!(command = %self.describe(), resumed = !state.is_null(), skip, "command started");
        self.run = Some(Running { child, out, stderr_tail, state, after: 0, position, _state_file: state_file });
        // records of the last committed STATE already written: read and dropped
        let mut skipped = 0;
        while skipped < skip {
            match self.next_message()? {
                Message::Record(stream, ..) if stream.as_deref().is_none_or(|s| s == self.stream) => skipped += 1,
                Message::End => break,
                _ => {}
            }
        }
        if let Some(r) = self.run.as_mut() {
            r.after = skipped;
            r.position = position;
        }
        Ok(())
    }

    /// The next protocol message on the command's stdout.
    fn next_message(&mut self) -> Result<Message> {
        let run = self.run.as_mut().expect("started");
        let mut line = String::new();
        loop {
            line.clear();
            let n = run.out.read_line(&mut line).map_err(|e| Error::io("the command's output", e))?;
            if n == 0 {
                return self.ended();
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        let text = line.trim_end();
        // The record stays the text the command wrote (compacted): a number keeps every digit
        // (past 2^64 a tree would round it through a float) and no tree is built per record.
        let Ok(msg) = serde_json::from_str::<Line>(text) else {
            return Ok(Message::Bad(text.to_owned(), "not JSON".into()));
        };
        let kind = msg.kind.as_ref().and_then(Json::as_str).unwrap_or_default();
        let stream_of = |v: &Option<Json>| v.as_ref().and_then(Json::as_str).map(str::to_owned);
        let compact = |raw: &RawValue| raw_json::compact(raw.get());
        Ok(match kind {
            // Singer: {"type":"RECORD","stream","record"}; Airbyte: {"type":"RECORD","record":{"stream","data","emitted_at"}}
            "RECORD" => match msg.record {
                Some(r) if msg.stream.is_none() && r.get().starts_with('{') => {
                    match serde_json::from_str::<AirbyteRecord>(r.get()) {
                        Ok(AirbyteRecord { stream, data: Some(data), emitted_at }) => Message::Record(
                            stream_of(&stream),
                            compact(data),
                            emitted_at.as_ref().and_then(Json::as_i64).map(|ms| ms * 1000),
                        ),
                        _ => Message::Record(None, compact(r), None),
                    }
                }
                Some(r) => Message::Record(stream_of(&msg.stream), compact(r), None),
                None => Message::Bad(text.to_owned(), "a RECORD without `record`".into()),
            },
            // Singer: {"type":"STATE","value"}; Airbyte: {"type":"STATE","state":{"data"|…}}
            "STATE" => match msg.value.or(msg.state) {
                Some(v) => Message::State(v),
                None => Message::Bad(text.to_owned(), "a STATE without `value` or `state`".into()),
            },
            "LOG" => {
                let (level, message) = match &msg.log {
                    Some(log) => (log.get("level").cloned(), log.get("message").cloned()),
                    None => (msg.level, msg.message),
                };
                let text = message.as_ref().and_then(Json::as_str).unwrap_or_default();
                match level.as_ref().and_then(Json::as_str).unwrap_or("INFO") {
                    "ERROR" | "FATAL" => tracing::error!(target: "bizon::command", "{text}"),
                    "WARN" | "WARNING" => tracing::warn!(target: "bizon::command", "{text}"),
                    _ => tracing::info!(target: "bizon::command", "{text}"),
                }
                Message::Other
            }
            // SCHEMA, ACTIVATE_VERSION, TRACE, CATALOG, SPEC…: nothing to load
            "SCHEMA" | "ACTIVATE_VERSION" | "TRACE" | "CATALOG" | "SPEC" | "CONNECTION_STATUS" => Message::Other,
            _ => Message::Bad(text.to_owned(), "not a RECORD, STATE or LOG message".into()),
        })
    }

    /// The command closed its output: done if it exited 0.
    fn ended(&mut self) -> Result<Message> {
        let run = self.run.as_mut().expect("started");
        let status = run.child.wait().map_err(|e| Error::io("the command", e))?;
        if status.success() {
            return Ok(Message::End);
        }
        let tail = run.stderr_tail.last();
        let code = status.code().map_or_else(|| status.to_string(), |c| format!("exit code {c}"));
        let last = if tail.is_empty() { String::new() } else { format!("; its last stderr line: {tail}") };
        Err(Error::permanent(format!("the {} failed: {code}{last}", self.describe())))
    }
}

/// A protocol line: the fields any message type reads; the record stays text.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: Option<Json>,
    stream: Option<Json>,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    value: Option<Json>,
    state: Option<Json>,
    log: Option<Json>,
    level: Option<Json>,
    message: Option<Json>,
}

/// An Airbyte record message's `record`.
#[derive(Deserialize)]
struct AirbyteRecord<'a> {
    stream: Option<Json>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    emitted_at: Option<Json>,
}

enum Message {
    /// Stream, record (compact JSON text), emitted_at (µs).
    Record(Option<String>, String, Option<i64>),
    State(Json),
    Bad(String, String),
    Other,
    End,
}

impl Source for CommandSource {
    fn get(&mut self, pagination: &Json, _ctx: &ReadContext) -> Result<Page> {
        if self.run.is_none() {
            self.start(pagination)?;
        }
        let extracted_at = now_micros();
        let mut records = RecordBatch::with_capacity(self.config.page_size.min(4096), 0);
        let mut done = false;
        while records.len() < self.config.page_size {
            match self.next_message()? {
                Message::Record(stream, data, emitted) => {
                    if stream.as_deref().is_some_and(|s| s != self.stream) {
                        continue; // another stream of a multi-stream tap
                    }
                    let run = self.run.as_mut().expect("started");
                    let id = match self.config.primary_key.as_deref() {
                        Some(k) if k.starts_with('/') => raw_json::pointer(&data, k),
                        Some(k) => raw_json::field(&data, k),
                        None => None,
                    }
                    .map_or_else(|| run.position.to_string(), raw_json::text_of);
                    run.position += 1;
                    run.after += 1;
                    records.push(&id, emitted.unwrap_or(extracted_at), data.as_bytes());
                }
                Message::State(state) => {
                    let run = self.run.as_mut().expect("started");
                    run.state = state;
                    run.after = 0;
                    break;
                }
                Message::Bad(line, why) => {
                    if self.config.on_error == OnError::Fail {
                        return Err(Error::permanent(format!(
                            "the {} printed a line that is {why}: {line:.200} (set `on_error: dead_letter` to divert such lines)",
                            self.describe()
                        )));
                    }
                    tracing::warn!(error = %why, "command output line sent to the dead-letter file");
                    let row = json!({"line": line, "error": why});
                    let run = self.run.as_mut().expect("started");
                    records.push_routed(DEAD_LETTER, &format!("line-{}", run.position), extracted_at, |o| {
                        let _ = serde_json::to_writer(&mut *o, &row);
                    });
                }
                Message::Other => {}
                Message::End => {
                    done = true;
                    break;
                }
            }
        }
        let run = self.run.as_ref().expect("started");
        let next =
            if done { json!({}) } else { json!({"state": run.state, "after": run.after, "position": run.position}) };
        Ok(Page { records, next, cursor_max: None, extracted_at })
    }
}

#[cfg(test)]
pub(crate) mod tests;
