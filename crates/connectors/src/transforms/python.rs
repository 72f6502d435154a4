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
    /// Records in the last request.
    sent: usize,
    reply: Vec<u8>,
}

impl PythonWorker {
    /// Start the worker and compile every transform in it (a syntax error is a config error).
    pub fn start(interpreter: &str, transforms: &[TransformConfig]) -> Result<Self> {
        let process = PyProcess::spawn(interpreter, WORKER, &[], "the Python transform worker")?;
        let mut worker = PythonWorker { process, request: Vec::new(), sent: 0, reply: Vec::new() };
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

    /// Send records `range` of `batch`, but the dead letters, as one request.
    fn send(&mut self, batch: &RecordBatch, range: std::ops::Range<usize>) -> Result<()> {
        let mut body = std::mem::take(&mut self.request);
        body.clear();
        body.push(b'[');
        let mut sent = 0usize;
        for i in range.filter(|i| batch.route(*i) != DEAD_LETTER) {
            if sent > 0 {
                body.push(b',');
            }
            body.extend_from_slice(batch.get(i).data);
            sent += 1;
        }
        body.push(b']');
        self.sent = sent;
        let p = &mut self.process;
        let result = p.send(format!("{}\n", body.len()).as_bytes()).and_then(|_| p.send(&body));
        self.request = body;
        result
    }

    /// Read the reply to the last `send` into `self.reply`.
    fn receive(&mut self) -> Result<()> {
        let p = &mut self.process;
        let mut head = Vec::new();
        p.read_line(&mut head)?;
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.split(' ').map(str::parse::<usize>);
        let (Some(Ok(lines)), Some(Ok(bytes))) = (parts.next(), parts.next()) else {
            return Err(p.died(&format!("answered {text:?} to a page")));
        };
        if lines != self.sent {
            return Err(p.died(&format!("answered {lines} records to a page of {}", self.sent)));
        }
        p.read_exact(bytes, &mut self.reply)
    }
}

/// Pages shorter than this go to one worker (splitting them costs more than it saves).
const MIN_SHARE: usize = 256;

/// The workers of one consumer: each page is split between them, so the transforms use as many
/// cores as there are workers (`BIZON_PYTHON_WORKERS`, default: the cores, at most 4).
pub struct WorkerPool {
    workers: Vec<PythonWorker>,
}

/// How many workers a consumer starts.
pub fn pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    std::env::var("BIZON_PYTHON_WORKERS").ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(cores)
}

impl WorkerPool {
    pub fn start(interpreter: &str, transforms: &[TransformConfig], size: usize) -> Result<Self> {
        let workers = (0..size.max(1)).map(|_| PythonWorker::start(interpreter, transforms)).collect::<Result<_>>()?;
        Ok(WorkerPool { workers })
    }

    /// Run the transforms over every record of `batch` but the dead letters; `answer(i, …)` is
    /// called for each record, in order.
    pub fn page(&mut self, batch: &RecordBatch, mut answer: impl FnMut(usize, Answer<'_>) -> Result<()>) -> Result<()> {
        let n = batch.len();
        let k = self.workers.len().min(n.div_ceil(MIN_SHARE)).max(1);
        let share = n.div_ceil(k).max(1);
        let range = |w: usize| (w * share).min(n)..((w + 1) * share).min(n);
        // every worker gets its share before any reply is read: they run at once
        for (w, worker) in self.workers[..k].iter_mut().enumerate() {
            worker.send(batch, range(w))?;
        }
        for worker in &mut self.workers[..k] {
            worker.receive()?;
        }
        for (w, worker) in self.workers[..k].iter().enumerate() {
            let mut lines = worker.reply.split(|b| *b == b'\n');
            for i in range(w) {
                let line = if batch.route(i) == DEAD_LETTER { None } else { Some(lines.next().unwrap_or_default()) };
                let a = match line {
                    None => Answer::Untouched,
                    Some(line) if !line.starts_with(b"!") => Answer::Record(line),
                    Some(line) => {
                        let (index, msg) = parse_failure(line).unwrap_or((None, "unreadable worker answer".into()));
                        Answer::Failed(index, msg)
                    }
                };
                answer(i, a)?;
            }
        }
        Ok(())
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
