//! Faults beyond kill -9: a TCP proxy between bizon and PostgreSQL that slows, stalls and cuts the
//! connections mid-run, and a destination disk that fills up. The run retries or fails cleanly,
//! never loses a durable record, and resumes. (PostgreSQL and RabbitMQ restarts have their own
//! test binaries: `postgres_restart.rs`, `rabbitmq_restart.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const PASS: u8 = 0;
const SLOW: u8 = 1;
const STALL: u8 = 2;

/// A TCP proxy to `upstream`: `mode` slows (5 ms per chunk) or stalls the traffic; bumping
/// `cuts` closes every open connection.
struct FaultProxy {
    port: u16,
    mode: Arc<AtomicU8>,
    cuts: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl FaultProxy {
    fn start(upstream: &'static str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, cuts, connections) =
            (Arc::new(AtomicU8::new(PASS)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (m, c, n) = (mode.clone(), cuts.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                let generation = c.load(Ordering::SeqCst);
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let (m, c) = (m.clone(), c.clone());
                    std::thread::spawn(move || pump(from, to, &m, &c, generation));
                }
            }
        });
        FaultProxy { port, mode, cuts, connections }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8, cuts: &AtomicU64, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if cuts.load(Ordering::SeqCst) != generation {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if mode.load(Ordering::SeqCst) == STALL {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if mode.load(Ordering::SeqCst) == SLOW {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

#[test]
fn a_proxy_that_slows_stalls_and_cuts_the_postgres_connection_loses_nothing() {
    let proxy = FaultProxy::start("127.0.0.1:5432");
    let s = Scratch::new("tcp-faults");
    let schema = Schema::new("tcp_faults");
    // 6 s at the source's rate: every fault lands mid-run; incremental appends to the table, so
    // committed rows are visible while it runs
    let total = 600_000;
    let text = format!(
        "name: tcp_faults\nsource:\n  name: generator\n  stream: records\n  total: {total}\n  page_size: 1000\n  rate_limit: 100000\n  \
         sync_mode: incremental\n  cursor_field: updated_at\n\
         destination:\n  name: postgres\n  config:\n    host: 127.0.0.1\n    port: {}\n    database: test\n    username: postgres\n    \
         sslmode: disable\n    schema: {}\n    destination_id: records\n    buffer_size: 1\nengine:\n  backend:\n    type: sqlite\n    \
         config:\n      database: {}\n  runner:\n    config:\n      retry_backoff_ms: 50\n",
        proxy.port,
        schema.0,
        s.path("state.db").display()
    );
    let cfg = s.write("pipeline.yml", &text);
    let child = s.spawn(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let rows = || schema.try_count("records").unwrap_or(0);
    wait_until("rows arriving", Duration::from_secs(30), || rows() > 20_000);
    proxy.set(SLOW);
    std::thread::sleep(Duration::from_millis(600));
    proxy.set(STALL);
    let stalled_at = rows();
    std::thread::sleep(Duration::from_millis(1500));
    // at most the commit already on the wire when the stall began (a flush is ~1 MB ≈ 4k rows)
    assert!(rows() <= stalled_at + 10_000, "nothing more committed through a stalled connection");
    proxy.set(PASS);
    wait_until("rows after the stall", Duration::from_secs(30), || rows() > stalled_at + 20_000);
    let before_cut = proxy.connections.load(Ordering::SeqCst);
    let at_cut = rows();
    proxy.cut();
    assert!(at_cut < total as i64, "the cut lands mid-run ({at_cut} rows)");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("transient error: resuming from the last commit"), "the cut forced a retry: {err}");
    assert!(proxy.connections.load(Ordering::SeqCst) > before_cut, "reconnected through the proxy");
    assert_eq!(schema.count("records"), (total as i64, total as i64), "rows, distinct ids");
}

/// A tmpfs of `mb` MB mounted at `dir` (needs root, as on the CI machine), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, mb: u64) -> SmallDisk {
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {mb} MB tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }

    fn grow(&self, mb: u64) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m"), self.0.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn a_full_destination_disk_fails_the_run_cleanly_and_it_resumes_exactly_once_after_space_is_freed() {
    let s = Scratch::new("disk-full");
    let disk = SmallDisk::mount(s.path("disk"), 8);
    let out_path = s.path("disk").join("out.json");
    // ~22 MB of rows (incremental: appended to the target) on an 8 MB disk
    let text = format!(
        "name: disk_full\nsource:\n  name: generator\n  stream: records\n  total: 100000\n  sync_mode: incremental\n  \
         cursor_field: updated_at\ndestination:\n  name: file\n  config:\n    path: {}\n    buffer_size: 1\nengine:\n  backend:\n    \
         type: sqlite\n    config:\n      database: {}\n  runner:\n    config:\n      max_retries: 1\n      retry_backoff_ms: 10\n",
        out_path.display(),
        s.path("state.db").display()
    );
    let cfg = s.write("pipeline.yml", &text);
    let cfg = cfg.to_str().unwrap();
    let out = s.run(&["run", cfg, "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "the error says why: {err}");
    assert!(err.contains(out_path.to_str().unwrap()), "and names the file: {err}");
    let jobs = stdout(&s.run(&["job", "list", cfg]));
    assert!(jobs.lines().nth(1).is_some_and(|l| l.contains("failed")), "{jobs}");
    let records = jobs.lines().nth(1).unwrap().split_whitespace().nth(5).unwrap(); // committed/total
    let committed: u64 = records.split('/').next().unwrap().parse().unwrap();
    assert!(committed > 0, "some records were durably committed before the disk filled: {jobs}");
    // space is freed: the next run resumes from the last commit
    disk.grow(64);
    let err = ok(&s.run(&["run", cfg, "--no-progress"]));
    assert!(err.contains("resumed after iteration"), "{err}");
    assert_exactly_once(&out_path, 100_000);
}
