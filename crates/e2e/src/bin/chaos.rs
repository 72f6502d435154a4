//! `bizon-chaos`: the crash matrix. Runs the real `bizon` binary (next to this one) for generator →
//! {file, postgres} × queue {memory, rabbitmq, kafka} × {full_refresh, incremental}, kills it with
//! signal 9 at seeded random moments, resumes until the job completes, then counts what the
//! destination holds: records lost and duplicated, against the destination's documented guarantee
//! (file and PostgreSQL: exactly-once, so 0 and 0). Writes a Markdown table and exits 1 when a
//! cell breaks its guarantee.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (database `test`, user `postgres`) and RabbitMQ on
//! 127.0.0.1:5672; Kafka is `bizon-kafka-mock` (started here) unless `BIZON_TEST_KAFKA` is set.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    kills: usize,
    seed: u64,
    records: u64,
    report: PathBuf,
    only: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "bizon-chaos: {msg}\nusage: bizon-chaos [--kills N (5)] [--seed S (1)] [--records R (100000)] [--report FILE (docs/reliability.md)] [--only SUBSTRING]"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut a = Args { kills: 5, seed: 1, records: 100_000, report: "docs/reliability.md".into(), only: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("`{flag}` needs a value")));
        match flag.as_str() {
            "--kills" => a.kills = value().parse().unwrap_or_else(|_| usage("--kills: a number")),
            "--seed" => a.seed = value().parse().unwrap_or_else(|_| usage("--seed: a number")),
            "--records" => a.records = value().parse().unwrap_or_else(|_| usage("--records: a number")),
            "--report" => a.report = value().into(),
            "--only" => a.only = Some(value()),
            other => usage(&format!("unknown option `{other}`")),
        }
    }
    a
}

/// xorshift64*: the same seed, the same kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

struct Cell {
    destination: &'static str,
    queue: &'static str,
    mode: &'static str,
}

impl Cell {
    fn name(&self) -> String {
        format!("{}-{}-{}", self.destination, self.queue, self.mode)
    }
}

struct Outcome {
    kills: usize,
    runs: usize,
    rows: u64,
    lost: u64,
    duplicates: u64,
    seconds: f64,
    error: Option<String>,
}

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("cannot find this executable: {e}")));
    exe.with_file_name(name)
}

fn pg() -> postgres::Client {
    postgres::Client::connect("host=127.0.0.1 port=5432 user=postgres dbname=test", postgres::NoTls)
        .unwrap_or_else(|e| usage(&format!("PostgreSQL on 127.0.0.1:5432 (scripts/deps.sh --services starts it): {e}")))
}

fn config(cell: &Cell, dir: &Path, tag: &str, records: u64, kills: usize, kafka: &str) -> String {
    // rate-limited so the job takes about 0.6 s per kill plus a second: every kill lands mid-run
    let rate = ((records as f64 / (0.6 * kills as f64 + 1.0)) as u64).max(1);
    let mut y = format!(
        "name: chaos_{tag}\nsource:\n  name: generator\n  stream: records\n  total: {records}\n  page_size: 1000\n  rate_limit: {rate}\n  \
         sync_mode: {}\n",
        cell.mode
    );
    if cell.mode == "incremental" {
        y.push_str("  cursor_field: updated_at\n");
    }
    match cell.destination {
        "file" => y.push_str(&format!(
            "destination:\n  name: file\n  config:\n    path: {}\n    buffer_size: 1\n",
            dir.join("out.json").display()
        )),
        _ => y.push_str(&format!(
            "destination:\n  name: postgres\n  config:\n    host: 127.0.0.1\n    database: test\n    username: postgres\n    \
             schema: chaos_{tag}\n    destination_id: records\n    buffer_size: 1\n"
        )),
    }
    y.push_str(&format!(
        "engine:\n  backend:\n    type: sqlite\n    config:\n      database: {}\n",
        dir.join("state.db").display()
    ));
    match cell.queue {
        "rabbitmq" => y.push_str(&format!(
            "  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        queue_name: chaos_{tag}\n"
        )),
        "kafka" => y.push_str(&format!(
            "  queue:\n    type: kafka\n    config:\n      queue:\n        bootstrap_server: {kafka}\n        topic: chaos_{tag}\n      \
             consumer:\n        group_id: chaos_{tag}\n"
        )),
        _ => {}
    }
    y
}

fn spawn(cfg: &Path, dir: &Path) -> Child {
    Command::new(bin("bizon"))
        .args(["run", cfg.to_str().unwrap_or_default(), "--no-progress"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| usage(&format!("cannot start bizon: {e}")))
}

/// Record ids the destination holds.
fn ids(cell: &Cell, dir: &Path, tag: &str) -> Result<Vec<u64>, String> {
    let parse = |id: &str| id.parse::<u64>().map_err(|_| format!("record id `{id}` is not a generator id"));
    match cell.destination {
        "file" => {
            let text = std::fs::read_to_string(dir.join("out.json")).map_err(|e| format!("out.json: {e}"))?;
            text.lines()
                .map(|l| {
                    let v: serde_json::Value =
                        serde_json::from_str(l).map_err(|e| format!("a partial or bad row ({e}): {l:.120}"))?;
                    parse(v["source_record_id"].as_str().unwrap_or_default())
                })
                .collect()
        }
        _ => {
            let rows = pg()
                .query(&format!("SELECT source_record_id FROM chaos_{tag}.records"), &[])
                .map_err(|e| format!("reading the table: {e}"))?;
            rows.iter().map(|r| parse(r.get(0))).collect()
        }
    }
}

fn run_cell(cell: &Cell, a: &Args, rng: &mut Rng, kafka: &str) -> Outcome {
    let started = Instant::now();
    let tag = format!("{}_{}_{}", cell.name().replace('-', "_"), std::process::id(), a.seed);
    let dir = std::env::temp_dir().join(format!("bizon-chaos-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| usage(&format!("{}: {e}", dir.display())));
    let cfg = dir.join("pipeline.yml");
    std::fs::write(&cfg, config(cell, &dir, &tag, a.records, a.kills, kafka)).unwrap_or_else(|e| usage(&e.to_string()));
    let mut out = Outcome { kills: 0, runs: 0, rows: 0, lost: 0, duplicates: 0, seconds: 0.0, error: None };
    for _ in 0..a.kills {
        let mut child = spawn(&cfg, &dir);
        out.runs += 1;
        std::thread::sleep(Duration::from_millis(150 + rng.below(900)));
        if child.try_wait().ok().flatten().is_some() {
            break; // finished before its kill
        }
        let _ = child.kill();
        let _ = child.wait();
        out.kills += 1;
    }
    let mut completed = false;
    for _ in 0..5 {
        let mut child = spawn(&cfg, &dir);
        out.runs += 1;
        // bounded: a run that hangs is killed and counts as a failure of the cell
        let deadline = Instant::now() + Duration::from_secs(120 + a.records / 2000);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            out.error = Some("a run did not finish in time (hung)".into());
        }
        let o = child.wait_with_output().unwrap_or_else(|e| usage(&e.to_string()));
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() && err.contains("completed") {
            completed = true;
            // a resume that failed once and then completed keeps its guarantee; a hang does not
            out.error.take_if(|e| !e.contains("hung"));
            break;
        }
        if out.error.is_none() {
            out.error = err.lines().rev().find(|l| l.contains("error")).map(str::to_owned);
        }
    }
    if !completed {
        out.error.get_or_insert_with(|| "did not complete in 5 runs".into());
    }
    match ids(cell, &dir, &tag) {
        Ok(ids) => {
            let distinct: HashSet<u64> = ids.iter().copied().collect();
            out.rows = ids.len() as u64;
            out.duplicates = ids.len() as u64 - distinct.len() as u64;
            out.lost = (0..a.records).filter(|i| !distinct.contains(i)).count() as u64;
        }
        Err(e) => out.error = Some(e),
    }
    if cell.destination == "postgres" {
        let _ = pg().batch_execute(&format!("DROP SCHEMA IF EXISTS chaos_{tag} CASCADE"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out.seconds = started.elapsed().as_secs_f64();
    out
}

fn main() {
    let a = args();
    let mut kafka_child = None;
    let kafka = match std::env::var("BIZON_TEST_KAFKA") {
        Ok(k) => k,
        Err(_) => {
            let mut child = Command::new(bin("bizon-kafka-mock"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| usage(&format!("cannot start bizon-kafka-mock: {e}")));
            let mut line = String::new();
            let _ = std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
            kafka_child = Some(child);
            line.trim().trim_start_matches("bootstrap.servers=").to_owned()
        }
    };
    let mut cells = Vec::new();
    for destination in ["file", "postgres"] {
        for queue in ["memory", "rabbitmq", "kafka"] {
            for mode in ["full_refresh", "incremental"] {
                let cell = Cell { destination, queue, mode };
                if a.only.as_ref().is_none_or(|o| cell.name().contains(o.as_str())) {
                    cells.push(cell);
                }
            }
        }
    }
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut table = String::new();
    table.push_str(
        "| destination | queue | mode | kills | runs | rows | lost | duplicates | guarantee | verdict | seconds |\n",
    );
    table.push_str("|---|---|---|---:|---:|---:|---:|---:|---|---|---:|\n");
    let mut failed = 0;
    for cell in &cells {
        let o = run_cell(cell, &a, &mut rng, &kafka);
        let ok = o.error.is_none() && o.lost == 0 && o.duplicates == 0 && o.kills > 0;
        let verdict = match (&o.error, ok) {
            (Some(e), _) => format!("FAIL: {e}"),
            (None, true) => "ok".to_owned(),
            (None, false) if o.kills == 0 => "FAIL: no kill landed mid-run".to_owned(),
            (None, false) => "FAIL".to_owned(),
        };
        failed += usize::from(!ok);
        let row = format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | exactly-once | {verdict} | {:.1} |\n",
            cell.destination, cell.queue, cell.mode, o.kills, o.runs, o.rows, o.lost, o.duplicates, o.seconds
        );
        eprint!("{row}");
        table.push_str(&row);
    }
    if let Some(mut c) = kafka_child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let section = format!(
        "Generated by `bizon-chaos --kills {} --seed {} --records {}` (release build; `cargo run --release --bin bizon-chaos -- …`).\n\
         Each cell: generator → destination through the queue, `kill -9` at {} seeded moments (150–1,050 ms into each run; the\n\
         source is rate-limited so the job needs about 0.6 s per kill plus a second), then runs until the job completes; the\n\
         destination's rows are then counted against the records the source produced. File and PostgreSQL are exactly-once destinations: 0 lost and 0 duplicates is the only passing result.\n\n{table}\n\
         {} of {} cells kept their guarantee.\n",
        a.kills,
        a.seed,
        a.records,
        a.kills,
        cells.len() - failed,
        cells.len()
    );
    // the matrix replaces its own section of an existing report; the rest of the file stays
    let (begin, end) = ("<!-- chaos:begin -->\n", "<!-- chaos:end -->");
    let report = match std::fs::read_to_string(&a.report) {
        Ok(old) if old.contains(begin) && old.contains(end) => {
            let (head, rest) = old.split_once(begin).unwrap_or_default();
            let (_, tail) = rest.split_once(end).unwrap_or_default();
            format!("{head}{begin}{section}{end}{tail}")
        }
        _ => format!("# Reliability\n\n## The crash matrix\n\n{begin}{section}{end}\n"),
    };
    if let Err(e) = std::fs::write(&a.report, report) {
        usage(&format!("{}: {e}", a.report.display()));
    }
    eprintln!(
        "bizon-chaos: {} of {} cells kept their guarantee; report in {}",
        cells.len() - failed,
        cells.len(),
        a.report.display()
    );
    std::process::exit(i32::from(failed > 0));
}
