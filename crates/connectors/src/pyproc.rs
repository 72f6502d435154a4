//! A supervised Python process speaking a line-and-bytes protocol over its stdin and stdout:
//! the worker of bizon's inline transforms and of custom Python sources. Its stderr (what user
//! code prints, a traceback) goes to the run's log, and its last line names the cause when the
//! process dies. Ctrl-C is the run's to handle: the scripts ignore SIGINT and end on a closed
//! stdin, so a killed run never leaves a worker behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use bizon_core::{Error, Result};

/// The interpreter when `BIZON_PYTHON` is not set: the `python3` on PATH (a virtualenv's, when
/// it is active), so user code imports what the user installed there.
pub const DEFAULT_PYTHON: &str = "python3";

/// The interpreter the workers run: `BIZON_PYTHON`, else `python3` on PATH.
pub fn interpreter() -> String {
    std::env::var("BIZON_PYTHON").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT_PYTHON.into())
}

pub struct PyProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The last line the process wrote to stderr.
    stderr_tail: Arc<Mutex<String>>,
    interpreter: String,
    /// What the process is, in errors: "the Python transform worker".
    what: &'static str,
}

impl PyProcess {
    /// Run `script` (`python -c`) with `args`; `what` names it in errors.
    pub fn spawn(interpreter: &str, script: &str, args: &[&str], what: &'static str) -> Result<Self> {
        let mut child = Command::new(interpreter)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::config(format!(
                    "cannot start the Python interpreter `{interpreter}` for {what}: {e} \
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
        Ok(PyProcess { child, stdin, stdout, stderr_tail, interpreter: interpreter.to_owned(), what })
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let written = match self.stdin.as_mut() {
            Some(w) => w.write_all(bytes).and_then(|_| w.flush()),
            None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        };
        written.map_err(|e| self.died(&format!("stopped reading ({e})")))
    }

    /// One line of the reply, without its "\n".
    pub fn read_line(&mut self, into: &mut Vec<u8>) -> Result<()> {
        into.clear();
        match self.stdout.read_until(b'\n', into) {
            Ok(n) if n > 0 && into.ends_with(b"\n") => {
                into.pop();
                Ok(())
            }
            Ok(_) => Err(self.died("closed its output")),
            Err(e) => Err(self.died(&format!("cannot be read ({e})"))),
        }
    }

    /// Exactly `n` bytes of the reply into `into` (replacing its content).
    pub fn read_exact(&mut self, n: usize, into: &mut Vec<u8>) -> Result<()> {
        into.clear();
        into.resize(n, 0);
        let read = self.stdout.read_exact(into);
        read.map_err(|e| self.died(&format!("stopped mid-answer ({e})")))
    }

    /// The error for a process that stopped answering: its exit status and last stderr line.
    pub fn died(&mut self, how: &str) -> Error {
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
        // the stderr reader may still be draining the process's last words
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tail = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let status = status.map_or_else(|| "still running".to_owned(), |s| s.to_string());
        let tail = if tail.is_empty() { String::new() } else { format!("; its last stderr line: {tail}") };
        Error::permanent(format!("{} (`{}`) {how}: {status}{tail}", self.what, self.interpreter))
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        self.stdin = None; // EOF: the script returns
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
