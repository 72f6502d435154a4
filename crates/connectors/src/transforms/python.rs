//! The Python worker that runs bizon's inline transforms: one long-lived, supervised process
//! ([`PyProcess`]) per consumer, fed whole pages over its stdin and answering on its stdout
//! (protocol in `worker.py`).

use bizon_core::record::DEAD_LETTER;
use bizon_core::{Error, RecordBatch, Result};
use serde_json::json;

use bizon_core::config::TransformConfig;

use crate::pyproc::PyProcess;

/// The worker's program, run with `python -c`.
const WORKER: &str = include_str!("worker.py");

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
    process: PyProcess,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl PythonWorker {
    /// Start the worker and compile every transform in it (a syntax error is a config error).
    pub fn start(interpreter: &str, transforms: &[TransformConfig]) -> Result<Self> {
        let process = PyProcess::spawn(interpreter, WORKER, &[], "the Python transform worker")?;
        let mut worker = PythonWorker { process, request: Vec::new(), reply: Vec::new() };
        let setup = json!({"transforms": transforms.iter().map(|t| json!({
            "label": t.label, "python": t.python.as_deref().unwrap_or("")
        })).collect::<Vec<_>>()});
        let mut line = setup.to_string().into_bytes();
        line.push(b'\n');
        worker.process.send(&line)?;
        let mut head = Vec::new();
        worker.process.read_line(&mut head)?;
        if head == b"ok" {
            return Ok(worker);
        }
        match parse_failure(&head) {
            Some((Some(i), msg)) => {
                let label = transforms.get(i).map_or("?", |t| t.label.as_str());
                Err(Error::config(format!("transform `{label}` does not compile: {msg}")))
            }
            _ => Err(worker.process.died(&format!("answered {:?} to its setup", String::from_utf8_lossy(&head)))),
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
        let p = &mut self.process;
        p.send(format!("{}\n", body.len()).as_bytes())?;
        p.send(body)?;
        let mut head = Vec::new();
        p.read_line(&mut head)?;
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.split(' ').map(str::parse::<usize>);
        let (Some(Ok(lines)), Some(Ok(bytes))) = (parts.next(), parts.next()) else {
            return Err(p.died(&format!("answered {text:?} to a page")));
        };
        if lines != sent {
            return Err(p.died(&format!("answered {lines} records to a page of {sent}")));
        }
        p.read_exact(bytes, &mut self.reply)
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
