//! The supervised Python worker that runs bizon's inline transforms: one long-lived process per
//! consumer, fed whole pages over its stdin and answering on its stdout (protocol in
//! `worker.py`). Its stderr (what the transforms print, a traceback) goes to the run's log, and
//! its last line names the cause when the worker dies.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use bizon_core::record::DEAD_LETTER;
use bizon_core::{Error, RecordBatch, Result};
use serde_json::json;

use bizon_core::config::TransformConfig;

/// The worker's program, run with `python -c`.
const WORKER: &str = include_str!("worker.py");

/// The interpreter when `BIZON_PYTHON` is not set: the `python3` on PATH (a virtualenv's, when
/// it is active), so the transforms import what the user installed there.
pub const DEFAULT_PYTHON: &str = "python3";

/// The interpreter the workers run: `BIZON_PYTHON`, else `python3` on PATH.
pub fn interpreter() -> String {
    std::env::var("BIZON_PYTHON").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT_PYTHON.into())
}

/// One record's answer.
pub enum Answer<'a> {
    /// The transformed record: bizon's `json.dumps(data)`, byte for byte.
    Record(&'a [u8]),
    /// The transform at this index (`None`: serializing the result) raised; the exception's last line.
    Failed(Option<usize>, String),
    /// A record a source sent to the dead-letter file: not transformed.
    Untouched,
}

pub struct PythonWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The last line the worker wrote to stderr.
    stderr_tail: Arc<Mutex<String>>,
    interpreter: String,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl PythonWorker {
    /// Start the worker and compile every transform in it (a syntax error is a config error).
    pub fn start(interpreter: &str, transforms: &[TransformConfig]) -> Result<Self> {
        let mut child = Command::new(interpreter)
            .args(["-c", WORKER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::config(format!(
                    "cannot start the Python interpreter `{interpreter}` for `transforms`: {e} \
                     (install Python 3, or set BIZON_PYTHON to the interpreter of your virtualenv)"
                ))
            })?;
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            std::thread::Builder::new()
                .name("python-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(err).lines() {
                        let Ok(line) = line else { break };
                        tracing::info!(target: "bizon::python", "{line}");
                        if !line.trim().is_empty() {
                            *tail.lock().unwrap_or_else(|p| p.into_inner()) = line;
                        }
                    }
                })
                .map_err(|e| Error::internal(format!("cannot start the Python stderr reader: {e}")))?;
        }
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| Error::internal("no worker stdout"))?);
        let mut worker = PythonWorker {
            child,
            stdin,
            stdout,
            stderr_tail,
            interpreter: interpreter.to_owned(),
            request: Vec::new(),
            reply: Vec::new(),
        };
        let setup = json!({"transforms": transforms.iter().map(|t| json!({
            "label": t.label, "python": t.python.as_deref().unwrap_or("")
        })).collect::<Vec<_>>()});
        let mut line = setup.to_string().into_bytes();
        line.push(b'\n');
        worker.send(&line)?;
        let mut head = Vec::new();
        worker.read_line(&mut head)?;
        if head == b"ok" {
            return Ok(worker);
        }
        match parse_failure(&head) {
            Some((Some(i), msg)) => {
                let label = transforms.get(i).map_or("?", |t| t.label.as_str());
                Err(Error::config(format!("transform `{label}` does not compile: {msg}")))
            }
            _ => Err(worker.died(&format!("answered {:?} to its setup", String::from_utf8_lossy(&head)))),
        }
    }

    /// Run the transforms over every record of `batch` but the dead letters; `answer(i, …)` is
    /// called for each record, in order.
    pub fn page(&mut self, batch: &RecordBatch, mut answer: impl FnMut(usize, Answer<'_>) -> Result<()>) -> Result<()> {
        let mut body = std::mem::take(&mut self.request);
        body.clear();
        body.push(b'[');
        let mut sent = 0usize;
        for (i, r) in batch.iter().enumerate() {
            if batch.route(i) == DEAD_LETTER {
                continue;
            }
            if sent > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r.data);
            sent += 1;
        }
        body.push(b']');
        let result = self.exchange(&body, sent);
        self.request = body;
        result?;
        let reply = std::mem::take(&mut self.reply);
        let mut lines = reply.split(|b| *b == b'\n');
        let mut outcome = Ok(());
        for i in 0..batch.len() {
            let line = if batch.route(i) == DEAD_LETTER { None } else { Some(lines.next().unwrap_or_default()) };
            let a = match line {
                None => Answer::Untouched,
                Some(line) if !line.starts_with(b"!") => Answer::Record(line),
                Some(line) => {
                    let (index, msg) = parse_failure(line).unwrap_or((None, "unreadable worker answer".into()));
                    Answer::Failed(index, msg)
                }
            };
            if let Err(e) = answer(i, a) {
                outcome = Err(e);
                break;
            }
        }
        self.reply = reply;
        outcome
    }

    /// Send a page of `sent` records and read the reply into `self.reply`.
    fn exchange(&mut self, body: &[u8], sent: usize) -> Result<()> {
        self.send(format!("{}\n", body.len()).as_bytes())?;
        self.send(body)?;
        let mut head = Vec::new();
        self.read_line(&mut head)?;
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.split(' ').map(str::parse::<usize>);
        let (Some(Ok(lines)), Some(Ok(bytes))) = (parts.next(), parts.next()) else {
            return Err(self.died(&format!("answered {text:?} to a page")));
        };
        if lines != sent {
            return Err(self.died(&format!("answered {lines} records to a page of {sent}")));
        }
        self.reply.clear();
        self.reply.resize(bytes, 0);
        let mut reply = std::mem::take(&mut self.reply);
        let read = self.stdout.read_exact(&mut reply);
        self.reply = reply;
        read.map_err(|e| self.died(&format!("stopped mid-answer ({e})")))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let written = match self.stdin.as_mut() {
            Some(w) => w.write_all(bytes).and_then(|_| w.flush()),
            None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        };
        written.map_err(|e| self.died(&format!("stopped reading ({e})")))
    }

    fn read_line(&mut self, into: &mut Vec<u8>) -> Result<()> {
        match self.stdout.read_until(b'\n', into) {
            Ok(n) if n > 0 && into.ends_with(b"\n") => {
                into.pop();
                Ok(())
            }
            Ok(_) => Err(self.died("closed its output")),
            Err(e) => Err(self.died(&format!("cannot be read ({e})"))),
        }
    }

    /// The error for a worker that stopped answering: its exit status and last stderr line.
    fn died(&mut self, what: &str) -> Error {
        self.stdin = None;
        let mut status = None;
        for _ in 0..50 {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        // the stderr reader may still be draining the worker's last words
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tail = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let status = status.map_or_else(|| "still running".to_owned(), |s| s.to_string());
        let tail = if tail.is_empty() { String::new() } else { format!("; its last stderr line: {tail}") };
        Error::permanent(format!("the Python transform worker (`{}`) {what}: {status}{tail}", self.interpreter))
    }
}

impl Drop for PythonWorker {
    fn drop(&mut self) {
        self.stdin = None; // EOF: the worker returns
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `!["compile", i, msg]` or `![i, msg]` (i = -1: serializing the result).
fn parse_failure(line: &[u8]) -> Option<(Option<usize>, String)> {
    let v: serde_json::Value = serde_json::from_slice(line.strip_prefix(b"!")?).ok()?;
    let items = v.as_array()?;
    let items = if items.first().is_some_and(|s| s.as_str() == Some("compile")) { &items[1..] } else { &items[..] };
    let index = items.first()?.as_i64()?;
    let msg = items.get(1)?.as_str()?.to_owned();
    Some((usize::try_from(index).ok(), msg))
}
