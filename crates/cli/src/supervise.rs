//! The process runner: the producer and the consumers as child processes of this binary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bizon_connectors::descriptor::BrokerSpec;
use clap::ValueEnum;

use crate::args::{LogFormat, RunArgs};
use crate::{failed, Failure};

/// The process runner: the producer and the consumer as two child processes of this binary
/// (`run --role …`), supervised. A child that fails or dies stops the other (SIGTERM: it commits
/// what it has) and fails the run; the next run resumes from the last commit.
pub fn supervise(args: &RunArgs, broker: &dyn BrokerSpec) -> Result<(), Failure> {
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
        if let Some(file) = &args.config.custom_source {
            c.arg("--custom-source").arg(file);
        }
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
    say!(
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
