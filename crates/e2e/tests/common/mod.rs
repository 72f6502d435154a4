//! Helpers for end-to-end tests: run the real `bizon` binary in a scratch directory.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use bizon_testkit::fixtures::{missing_and_duplicates, read_ids, read_rows, TempDir};

/// The `bizon` binary of this build: beside this package's own binaries in the target directory
/// (`cargo test --workspace` builds it; `scripts/test.sh` runs that).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let path = Path::new(env!("CARGO_BIN_EXE_bizon-chaos")).with_file_name("bizon");
        assert!(path.exists(), "{} is missing: build it first (`cargo build -p bizon`)", path.display());
        path.to_string_lossy().into_owned()
    })
}

/// A scratch directory holding one pipeline's config, state and output. Processes it spawned
/// that are still running when it is dropped (a test that failed half-way) are killed.
pub struct Scratch {
    pub dir: TempDir,
    spawned: std::cell::RefCell<Vec<u32>>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.spawned.borrow().iter() {
            // only a live (not yet reaped) child of this test process: never a recycled pid
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
            let ours = fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
            if ours && fields.first() != Some(&"Z") {
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
    }
}

impl Scratch {
    pub fn new(label: &str) -> Self {
        Scratch { dir: TempDir::new(label), spawned: Default::default() }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(self.dir.path()).env_remove("RUST_LOG").env_remove("BIZON_FAILPOINTS");
        c.stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    pub fn spawn(&self, args: &[&str]) -> Child {
        let child = self.cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        self.spawned.borrow_mut().push(child.id());
        child
    }
    /// Files in the scratch directory (names), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout of a successful run.
pub fn ok_stdout(o: &Output) -> String {
    ok(o);
    stdout(o)
}

/// Assert success, showing stderr otherwise.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "bizon failed ({:?}):\n{}\n{}", o.status.code(), stdout(o), stderr(o));
    stderr(o)
}

/// A generator → file pipeline config. `extra_source` / `extra_dest` are YAML lines (2-space
/// indented under `source:` / `config:`).
pub fn generator_to_file(s: &Scratch, name: &str, total: u64, extra_source: &str, extra_dest: &str) -> PathBuf {
    let text = format!(
        "name: {name}\nsource:\n  name: generator\n  stream: records\n  total: {total}\n{extra_source}\
         destination:\n  name: file\n  config:\n    path: {out}\n{extra_dest}\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
        out = s.path("out.json").display(),
        db = s.path("state.db").display(),
    );
    s.write("pipeline.yml", &text)
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait for `child` (spawned by [`Scratch::spawn`]), assert it exited 0, return its stderr.
pub fn exit_ok(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {err}");
    err
}

pub fn sigterm(child: &Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// A small deterministic PRNG for kill moments (seeded: a failure replays).
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub fn file_exists(p: &Path) -> bool {
    p.exists()
}

/// Run to completion, resuming as often as needed (a failpoint may abort some attempts).
pub fn run_until_done(s: &Scratch, cfg: &str, max_runs: usize) -> Vec<String> {
    let mut logs = Vec::new();
    for _ in 0..max_runs {
        let out = s.run(&["run", cfg, "--no-progress"]);
        logs.push(stderr(&out));
        if out.status.success() {
            return logs;
        }
    }
    panic!("not done after {max_runs} runs:\n{}", logs.join("\n---\n"));
}

/// Start `bizon run cfg` up to `kills` times and `kill -9` it after a seeded random delay in
/// `min_ms..min_ms + spread_ms`; stops early when a run completes. Returns (runs killed
/// mid-run, whether a run completed).
pub fn kill_at_seeded_moments(
    s: &Scratch,
    cfg: &str,
    seed: u64,
    kills: usize,
    min_ms: u64,
    spread_ms: u64,
) -> (usize, bool) {
    kill_runs_at_seeded_moments(s, &["run", cfg, "--no-progress"], seed, kills, min_ms, spread_ms)
}

/// [`kill_at_seeded_moments`] of the command `args`.
pub fn kill_runs_at_seeded_moments(
    s: &Scratch,
    args: &[&str],
    seed: u64,
    kills: usize,
    min_ms: u64,
    spread_ms: u64,
) -> (usize, bool) {
    let mut rng = Rng(seed);
    let mut interrupted = 0;
    for kill in 0..kills {
        let mut child = s.spawn(args);
        let delay = min_ms + rng.below(spread_ms);
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().unwrap() {
            if !status.success() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                panic!("run {kill} failed: {status:?}; its stderr:\n{err}");
            }
            return (interrupted, true);
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        interrupted += 1;
        eprintln!("kill {kill} after {delay} ms: {status:?}");
    }
    (interrupted, false)
}

/// Start `bizon run cfg`, let it work for `ms` milliseconds, check it is still running and
/// `kill -9` it.
pub fn kill_mid_run(s: &Scratch, cfg: &str, ms: u64) {
    let mut child = s.spawn(&["run", cfg, "--no-progress"]);
    std::thread::sleep(Duration::from_millis(ms));
    assert!(child.try_wait().unwrap().is_none(), "still running at the kill");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The records a consumer's summary line reports (`…: N records, …`).
pub fn summary_records(stderr: &str) -> u64 {
    let line =
        stderr.lines().rev().find(|l| l.starts_with("bizon: job ")).unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    let (_, rest) = line.split_once("): ").or_else(|| line.split_once("completed: ")).unwrap();
    rest.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("no count in {line}"))
}

/// One producer and two consumers as separate processes over two lanes (a third consumer finds
/// both lanes taken and waits); every record once across the lane files, and each consumer did
/// part of the work.
pub fn two_consumers_split_one_producers_work(s: &Scratch, cfg: &str, total: u64) {
    let a = s.spawn(&["run", cfg, "--role", "consumer", "--no-progress"]);
    let b = s.spawn(&["run", cfg, "--role", "consumer", "--no-progress"]);
    std::thread::sleep(Duration::from_millis(400));
    let mut third = s.spawn(&["run", cfg, "--role", "consumer", "--no-progress"]);
    std::thread::sleep(Duration::from_millis(400));
    assert!(third.try_wait().unwrap().is_none(), "a consumer without a free lane waits");
    let producer = ok(&s.run(&["run", cfg, "--role", "producer", "--no-progress"]));
    assert!(producer.contains(&format!("published (the consumer completes the job): {total} records")), "{producer}");
    let out = third.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the waiting consumer ends with the job: {err}");
    assert!(err.contains("every unfinished lane has a consumer: waiting"), "{err}");
    let mut counts = vec![summary_records(&err)];
    let mut completed = 0;
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "consumer: {err}");
        completed += usize::from(err.contains(" completed: "));
        assert!(err.contains(" completed: ") || err.contains("finished its lane"), "{err}");
        counts.push(summary_records(&err));
    }
    // the last lane to finish completes the job (two finishing together may both do it)
    assert!(completed >= 1, "a consumer completes the job");
    assert!(counts[1..].iter().all(|&n| n > 0), "each of the first two did part of the work: {counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), total, "{counts:?}");
    let mut ids = read_ids(&s.path("out.lane-0.json"));
    ids.extend(read_ids(&s.path("out.lane-1.json")));
    let (missing, dups) = missing_and_duplicates(&ids, total);
    assert_eq!((missing, dups, ids.len() as u64), (0, 0, total));
    assert!(!s.path("out.json").exists());
}

/// Every id 1..=`expected` exactly once in the NDJSON file.
pub fn assert_exactly_once(path: &Path, expected: u64) {
    let ids = read_ids(path);
    let (missing, dups) = missing_and_duplicates(&ids, expected);
    assert_eq!((missing, dups), (0, 0), "{}: {} rows, {missing} missing, {dups} duplicates", path.display(), ids.len());
    assert_eq!(ids.len() as u64, expected);
}

/// Rewrite a config file written by the helpers above: `from` (which must be there) becomes `to`.
pub fn edit_config(cfg: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains(from), "{from:?} not in {cfg}:\n{text}");
    std::fs::write(cfg, text.replace(from, to)).unwrap();
}

/// `engine.runner.type: process`.
pub fn use_process_runner(cfg: &str) {
    edit_config(cfg, "engine:\n", "engine:\n  runner:\n    type: process\n");
}

/// `engine.queue.config.lanes: n` (a broker queue config written by the broker tests).
pub fn use_lanes(cfg: &str, n: usize) {
    edit_config(cfg, "    config:\n      queue:\n", &format!("    config:\n      lanes: {n}\n      queue:\n"));
}

/// `kill -9` the running `--role consumer` up to `kills` times, each after a seeded delay in
/// `delay.0..delay.0 + delay.1` ms, and start a new one `pause_ms` later. Returns the consumer
/// now running and how many kills landed while it was still working.
pub fn kill_consumer_at_seeded_moments(
    s: &Scratch,
    cfg: &str,
    mut consumer: Child,
    seed: u64,
    kills: usize,
    delay: (u64, u64),
    pause_ms: u64,
) -> (Child, usize) {
    let mut rng = Rng(seed);
    let mut killed = 0;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(delay.0 + rng.below(delay.1)));
        if consumer.try_wait().unwrap().is_some() {
            break;
        }
        consumer.kill().unwrap();
        consumer.wait().unwrap();
        killed += 1;
        std::thread::sleep(Duration::from_millis(pause_ms));
        consumer = s.spawn(&["run", cfg, "--role", "consumer", "--no-progress"]);
    }
    (consumer, killed)
}

// PostgreSQL (127.0.0.1:5432, trust auth, database `test`; override with BIZON_TEST_PG_HOST /
// _PORT / _USER / _DB).

pub fn pg_host() -> String {
    std::env::var("BIZON_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}
pub fn pg_port() -> String {
    std::env::var("BIZON_TEST_PG_PORT").unwrap_or_else(|_| "5432".into())
}
pub fn pg_user() -> String {
    std::env::var("BIZON_TEST_PG_USER").unwrap_or_else(|_| "postgres".into())
}
pub fn pg_db() -> String {
    std::env::var("BIZON_TEST_PG_DB").unwrap_or_else(|_| "test".into())
}

/// The connection keys of a PostgreSQL destination or backend on `schema` (host … schema), each
/// line indented by `indent` spaces after the first.
pub fn pg_keys(schema: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "host: {}\n{pad}port: {}\n{pad}database: {}\n{pad}username: {}\n{pad}schema: {schema}\n",
        pg_host(),
        pg_port(),
        pg_db(),
        pg_user()
    )
}

pub fn client() -> postgres::Client {
    let cfg = format!("host={} port={} user={} dbname={}", pg_host(), pg_port(), pg_user(), pg_db());
    postgres::Client::connect(&cfg, postgres::NoTls).expect("PostgreSQL must be running (scripts/test.sh starts it)")
}

/// A schema unique to the test, dropped on drop.
pub struct Schema(pub String);

impl Schema {
    pub fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("bizon_t_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        Schema(name)
    }
    pub fn count(&self, table: &str) -> (i64, i64) {
        let row = client()
            .query_one(
                &format!("SELECT count(*), count(DISTINCT source_record_id) FROM \"{}\".\"{table}\"", self.0),
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    }
    pub fn try_count(&self, table: &str) -> Option<i64> {
        client().query_one(&format!("SELECT count(*) FROM \"{}\".\"{table}\"", self.0), &[]).ok().map(|r| r.get(0))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = client().batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0));
    }
}

// Kafka.

/// A broker for one test: the external one from `BIZON_TEST_KAFKA`, else a mock cluster process
/// (killed on drop).
pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker whose mock cluster creates these topics (`NAME:PARTITIONS`) up front (its
    /// auto-created topics have 4 partitions); an external broker is used as it is (the test's
    /// loader creates the topic through the admin API).
    pub fn start_with(topics: &[String]) -> Broker {
        if let Ok(b) = std::env::var("BIZON_TEST_KAFKA") {
            return Broker { bootstrap: b, child: None };
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_bizon-kafka-mock"))
            .args(topics.iter().flat_map(|t| ["--topic", t.as_str()]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bizon-kafka-mock");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let bootstrap = line.trim().strip_prefix("bootstrap.servers=").expect("bootstrap line").to_owned();
        Broker { bootstrap, child: Some(child) }
    }

    /// Whether this is Tansu (`BIZON_TEST_KAFKA_FLAVOUR=tansu` next to `BIZON_TEST_KAFKA`, as
    /// scripts/test.sh sets them): a real Kafka-protocol broker that differs from librdkafka's mock
    /// cluster where a test says so (README, "What differs from the mock").
    pub fn is_tansu(&self) -> bool {
        self.child.is_none() && std::env::var("BIZON_TEST_KAFKA_FLAVOUR").is_ok_and(|f| f == "tansu")
    }

    /// `true` (and says why on stderr) when the broker is Tansu: the caller skips a check that
    /// rests on something only the mock cluster does.
    pub fn skip_on_tansu(&self, why: &str) -> bool {
        if self.is_tansu() {
            eprintln!("skipped against tansu: {why}");
        }
        self.is_tansu()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn topic(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("bizon_test_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

// HTTP on loopback.

/// One request a test HTTP server received.
pub struct HttpRequest {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The requests a [`serve_http`] server received, in order.
pub type Requests = std::sync::Arc<std::sync::Mutex<Vec<HttpRequest>>>;

/// An HTTP/1.1 server on loopback standing in for a service bizon talks to (schema registry,
/// Slack webhook, OTLP collector): every request is parsed, answered by `respond` (status line,
/// content type, body) and recorded. Returns the server's base URL and its requests.
pub fn serve_http(
    respond: impl Fn(&HttpRequest) -> (&'static str, &'static str, String) + Send + 'static,
) -> (String, Requests) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests: Requests = Default::default();
    let store = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((name, value)) = h.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let mut request = HttpRequest {
                path: line.split_whitespace().nth(1).unwrap_or_default().to_owned(),
                headers,
                body: Vec::new(),
            };
            let len = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            request.body.resize(len, 0);
            if reader.read_exact(&mut request.body).is_err() {
                continue;
            }
            let (status, kind, body) = respond(&request);
            store.lock().unwrap().push(request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, requests)
}

/// GET `path` from 127.0.0.1:`port` (the whole response); `None` while nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Lines in a file (0 while it does not exist).
pub fn line_count(path: &Path) -> u64 {
    std::fs::read(path).map(|b| b.iter().filter(|c| **c == b'\n').count() as u64).unwrap_or(0)
}
