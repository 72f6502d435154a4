//! End-to-end durability: kill -9 at random moments, SIGTERM, incremental watermarks, full
//! refresh visibility, one run per pipeline, injected faults. Every test runs the real binary.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn kill_9_at_five_seeded_moments_then_resume_loses_and_duplicates_nothing() {
    let s = Scratch::new("kill9");
    // rate-limited so every seeded kill lands mid-run however fast the machine (1M takes ≥ 2 s)
    let cfg =
        generator_to_file(&s, "kill9", 1_000_000, "  page_size: 2000\n  rate_limit: 500000\n", "    buffer_size: 1\n");
    let cfg = cfg.to_str().unwrap();
    let (interrupted, completed) = kill_at_seeded_moments(&s, cfg, 0x5EED_0003, 5, 20, 280);
    assert!(interrupted >= 3, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        let logs = run_until_done(&s, cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!s.path("out_temp.json").exists(), "staging file published");
}

/// `format: parquet`: a directory of part files, one per flush; the same kills, every record once.
#[test]
fn parquet_parts_killed_at_seeded_moments_then_resumed_hold_every_record_once() {
    let s = Scratch::new("kill9-parquet");
    let cfg = generator_to_file(
        &s,
        "kill9pq",
        300_000,
        "  page_size: 2000\n  rate_limit: 150000\n",
        "    format: parquet\n    buffer_size: 1\n",
    );
    let cfg = cfg.to_str().unwrap();
    let (interrupted, completed) = kill_at_seeded_moments(&s, cfg, 0x5EED_0004, 4, 20, 400);
    assert!(interrupted >= 3, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        run_until_done(&s, cfg, 3);
    }
    // `path: out.json` names the directory of parts here.
    let dir = s.path("out.json");
    let mut parts: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    assert!(parts.iter().all(|p| p.extension().is_some_and(|x| x == "parquet")), "only parts are left: {parts:?}");
    assert!(parts.len() > 3, "one part per flush: {}", parts.len());
    let ids: Vec<u64> = bizon_connectors::parquet::read_strings(&dir, "source_record_id")
        .unwrap()
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    let (missing, dups) = missing_and_duplicates(&ids, 300_000);
    assert_eq!((ids.len(), missing, dups), (300_000, 0, 0), "rows, missing, duplicates");
    assert!(!s.path("out.json_temp").exists(), "staging directory published");
}

#[test]
fn sigterm_stops_cleanly_and_the_next_run_resumes() {
    let s = Scratch::new("sigterm");
    let cfg = generator_to_file(&s, "sigterm", 300_000, "  page_size: 1000\n  rate_limit: 200000\n", "");
    let cfg = cfg.to_str().unwrap();
    let child = s.spawn(&["run", cfg, "--no-progress"]);
    let staging = s.path("out_temp.json");
    wait_until("rows in the staging file", Duration::from_secs(30), || {
        std::fs::metadata(&staging).map(|m| m.len() > 100_000).unwrap_or(false)
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "SIGTERM exits 0 after committing:\n{err}");
    assert!(err.contains("stopped (resumable"), "{err}");
    let jobs = stdout(&s.run(&["job", "list", cfg]));
    assert!(jobs.contains("stopped"), "{jobs}");
    let logs = run_until_done(&s, cfg, 1);
    assert!(logs[0].contains("resumed after iteration"), "{}", logs[0]);
    assert_exactly_once(&s.path("out.json"), 300_000);
}

#[test]
fn incremental_appends_only_newer_records_and_reset_rereads_all() {
    let s = Scratch::new("incremental");
    let inc = "  sync_mode: incremental\n  cursor_field: updated_at\n  page_size: 300\n";
    let cfg = generator_to_file(&s, "inc", 1000, inc, "").to_str().unwrap().to_owned();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 1000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1000);

    // Nothing new: nothing written.
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 0 records"), "{err}");
    assert_eq!(read_ids(&s.path("out.json")).len(), 1000);

    // 500 newer records appear at the source: only they are appended.
    let cfg = generator_to_file(&s, "inc", 1500, inc, "").to_str().unwrap().to_owned();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 500 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1500);
    let ids = read_ids(&s.path("out.json"));
    assert_eq!(ids[1000..], (1000..1500).collect::<Vec<_>>()[..], "appended in order after the first 1000");

    // Reset: re-read everything and replace the file (not append).
    let err = ok(&s.run(&["run", &cfg, "--no-progress", "--reset"]));
    assert!(err.contains("completed: 1500 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1500);

    // After the reset the watermark is back: the next run appends only newer records.
    let cfg = generator_to_file(&s, "inc", 1600, inc, "").to_str().unwrap().to_owned();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 100 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1600);

    // `bizon stream reset` (bizon's deferred reset): a request the next run takes up.
    let out = s.run(&["stream", "reset", &cfg]);
    assert!(stdout(&out).contains("reset requested for stream `records`"), "{}", stdout(&out));
    let again = stdout(&s.run(&["stream", "reset", &cfg]));
    assert!(again.contains("a reset is already pending"), "{again}");
    assert!(stdout(&s.run(&["job", "list", &cfg])).contains("reset_requested"));
    // --cancel withdraws it: the next run is a plain incremental one.
    let out = stdout(&s.run(&["stream", "reset", &cfg, "--cancel"]));
    assert!(out.contains("1 pending reset request(s) canceled"), "{out}");
    let out = stdout(&s.run(&["stream", "reset", &cfg, "--cancel"]));
    assert!(out.contains("no pending reset request"), "{out}");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 0 records"), "{err}");
    // Requested again: the next run re-reads everything and replaces the target, once.
    ok(&s.run(&["stream", "reset", &cfg]));
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 1600 records") && err.contains("a stream reset was requested"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1600);
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 0 records"), "the request was taken up once: {err}");
    assert!(stdout(&s.run(&["job", "list", &cfg])).contains("reset_consumed"));

    // --now forgets the watermark at once; the next run still replaces the target.
    let out = stdout(&s.run(&["stream", "reset", &cfg, "--now"]));
    assert!(out.contains("watermark forgotten") && out.contains("reset requested"), "{out}");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 1600 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1600);

    // --stream names another stream: a stream the source lacks is refused with a suggestion.
    let bad = s.run(&["stream", "reset", &cfg, "--stream", "record"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("did you mean `records`?"), "{}", stderr(&bad));
}

/// A deferred reset killed mid-run: the next run resumes the reset (not an append), takes the
/// request up, and the target holds every record once.
#[test]
fn a_requested_reset_killed_mid_run_resumes_as_a_reset() {
    let s = Scratch::new("reset-kill");
    let inc = "  sync_mode: incremental\n  cursor_field: updated_at\n  page_size: 500\n  rate_limit: 100000\n";
    let cfg = generator_to_file(&s, "resetkill", 100_000, inc, "    buffer_size: 0\n").to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_exactly_once(&s.path("out.json"), 100_000);
    ok(&s.run(&["stream", "reset", &cfg]));
    kill_mid_run(&s, &cfg, 400);
    let logs = run_until_done(&s, &cfg, 2);
    assert!(logs[0].contains("resumed after iteration"), "{}", logs[0]);
    assert_exactly_once(&s.path("out.json"), 100_000);
    let jobs = stdout(&s.run(&["job", "list", &cfg]));
    assert!(jobs.contains("reset_consumed") && !jobs.contains("reset_requested"), "{jobs}");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 0 records"), "{err}");

    // A full refresh stream has nothing to reset later (bizon's rule); --now still cancels.
    let full = generator_to_file(&s, "resetkill-full", 10, "", "").to_str().unwrap().to_owned();
    let out = s.run(&["stream", "reset", &full]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("only incremental streams can be reset"), "{}", stderr(&out));
    let out = stdout(&s.run(&["stream", "reset", &full, "--now"]));
    assert!(out.contains("0 unfinished job(s) canceled") && !out.contains("reset requested"), "{out}");
}

#[test]
fn incremental_survives_kill_9_exactly_once() {
    let s = Scratch::new("inc-kill");
    let inc = "  sync_mode: incremental\n  cursor_field: updated_at\n  page_size: 500\n  rate_limit: 100000\n";
    let cfg = generator_to_file(&s, "inckill", 20_000, inc, "    buffer_size: 0\n").to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    let cfg = generator_to_file(&s, "inckill", 120_000, inc, "    buffer_size: 0\n").to_str().unwrap().to_owned();
    kill_mid_run(&s, &cfg, 400);
    run_until_done(&s, &cfg, 1);
    assert_exactly_once(&s.path("out.json"), 120_000);
}

#[test]
fn full_refresh_readers_see_old_or_new_never_partial() {
    let s = Scratch::new("visibility");
    let target = s.path("out.json");
    let cfg = generator_to_file(&s, "vis", 20_000, "  page_size: 500\n", "").to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_eq!(read_ids(&target).len(), 20_000);

    // A slow second run: poll the target throughout.
    let slow = "  page_size: 500\n  rate_limit: 40000\n";
    let cfg = generator_to_file(&s, "vis", 30_000, slow, "    buffer_size: 0\n").to_str().unwrap().to_owned();
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    let mut polls = 0;
    while child.try_wait().unwrap().is_none() {
        let n = read_ids(&target).len();
        assert!(n == 20_000 || n == 30_000, "a reader saw {n} rows");
        polls += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(polls > 5, "the run was too fast to observe ({polls} polls)");
    assert_eq!(read_ids(&target).len(), 30_000);

    // Killed mid-run: the previous complete result stays.
    let cfg = generator_to_file(&s, "vis", 40_000, slow, "    buffer_size: 0\n").to_str().unwrap().to_owned();
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    wait_until("staging rows", Duration::from_secs(30), || {
        std::fs::metadata(s.path("out_temp.json")).map(|m| m.len() > 0).unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_exactly_once(&target, 30_000);
    run_until_done(&s, &cfg, 1);
    assert_exactly_once(&target, 40_000);
}

#[test]
fn default_50_mb_buffer_moves_a_million_records_and_buffer_0_finalizes() {
    let s = Scratch::new("buffers");
    let cfg = generator_to_file(&s, "buf50", 1_000_000, "", "").to_str().unwrap().to_owned();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 1000000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);

    let s = Scratch::new("buffer0");
    let cfg =
        generator_to_file(&s, "buf0", 2_345, "  page_size: 100\n", "    buffer_size: 0\n").to_str().unwrap().to_owned();
    ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_exactly_once(&s.path("out.json"), 2_345);
    assert!(!s.path("out_temp.json").exists());
    let show = stdout(&s.run(&["job", "list", &cfg]));
    assert!(show.contains("succeeded") && show.contains("2345/2345"), "{show}");
}

#[test]
fn page_larger_than_the_buffer_is_written_through() {
    let s = Scratch::new("bigpage");
    // One page of ~3 MB against a 1 MB buffer and a 1 MB queue.
    let text = format!(
        "name: bigpage\nsource:\n  name: generator\n  stream: records\n  total: 3000\n  page_size: 3000\n  record_size: 1000\n\
         destination:\n  name: file\n  config:\n    path: {}\n    buffer_size: 1\n\
         engine:\n  queue:\n    type: python_queue\n    config:\n      queue:\n        max_size_mb: 1\n",
        s.path("out.json").display()
    );
    let cfg = s.write("c.yml", &text);
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    assert_exactly_once(&s.path("out.json"), 3000);
}

#[test]
fn a_second_run_is_refused_and_a_killed_run_is_taken_over() {
    let s = Scratch::new("lock");
    let slow =
        generator_to_file(&s, "locked", 100_000, "  page_size: 500\n  rate_limit: 5000\n", "    buffer_size: 0\n");
    let slow = slow.to_str().unwrap().to_owned();
    let mut first = s.spawn(&["run", &slow, "--no-progress"]);
    wait_until("first run writing", Duration::from_secs(30), || {
        std::fs::metadata(s.path("out_temp.json")).map(|m| m.len() > 0).unwrap_or(false)
    });
    let second = s.run(&["run", &slow, "--no-progress"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("already running: job "), "{err}");
    assert!(err.contains(&format!("(pid {})", first.id())), "{err}");

    first.kill().unwrap();
    first.wait().unwrap();
    let fast = generator_to_file(&s, "locked", 100_000, "  page_size: 500\n", "    buffer_size: 0\n");
    let logs = run_until_done(&s, fast.to_str().unwrap(), 1);
    assert!(logs[0].contains("resumed after iteration"), "{}", logs[0]);
    assert_exactly_once(&s.path("out.json"), 100_000);
}

#[test]
fn injected_transient_errors_are_retried_from_the_last_commit() {
    let s = Scratch::new("failpoints");
    let cfg = generator_to_file(&s, "fp", 50_000, "  page_size: 500\n", "    buffer_size: 0\n");
    let out = s
        .cmd(&["run", cfg.to_str().unwrap(), "--no-progress"])
        .env("BIZON_FAILPOINTS", "after_write=error@0.05,before_commit=error@0.05,before_finalize=error@0.5")
        .env("BIZON_FAILPOINTS_SEED", "11")
        .output()
        .unwrap();
    let err = ok(&out);
    assert!(err.contains("retries"), "faults must have fired:\n{err}");
    assert_exactly_once(&s.path("out.json"), 50_000);
}

#[test]
fn aborts_at_every_durability_boundary_then_resume_exactly_once() {
    for (point, runner) in [
        ("after_write", "thread"),
        ("before_commit", "thread"),
        ("after_commit", "stream"),
        ("before_flush", "stream"),
        ("after_finalize", "thread"),
        ("before_finalize", "thread"),
    ] {
        let s = Scratch::new(&format!("abort-{point}"));
        let cfg = generator_to_file(&s, "abort", 20_000, "  page_size: 500\n", "    buffer_size: 0\n");
        let cfg = cfg.to_str().unwrap();
        let prob = if point.contains("finalize") { "1" } else { "0.05" };
        let out = s
            .cmd(&["run", cfg, "--no-progress", "--runner", runner])
            .env("BIZON_FAILPOINTS", format!("{point}=abort@{prob}"))
            .env("BIZON_FAILPOINTS_SEED", "5")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: the failpoint must abort the first run");
        run_until_done(&s, cfg, 2);
        assert_exactly_once(&s.path("out.json"), 20_000);
    }
}

#[test]
fn stream_runner_resumes_after_kill_exactly_once() {
    let s = Scratch::new("stream-runner");
    let cfg = generator_to_file(
        &s,
        "streamrun",
        200_000,
        "  page_size: 1000\n  rate_limit: 200000\n",
        "    buffer_size: 1\n",
    );
    let cfg = cfg.to_str().unwrap();
    let mut child = s.spawn(&["run", cfg, "--no-progress", "--runner", "stream"]);
    wait_until("rows", Duration::from_secs(30), || {
        std::fs::metadata(s.path("out_temp.json")).map(|m| m.len() > 1_000_000).unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let out = s.run(&["run", cfg, "--no-progress", "--runner", "stream"]);
    assert!(ok(&out).contains("resumed after iteration"));
    assert_exactly_once(&s.path("out.json"), 200_000);
}

#[test]
fn max_iterations_caps_the_pages_read() {
    let s = Scratch::new("maxit");
    let cfg = generator_to_file(&s, "maxit", 10_000, "  page_size: 1000\n  max_iterations: 3\n", "");
    ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    assert_exactly_once(&s.path("out.json"), 3000);
}

#[test]
fn fault_injecting_destination_fails_and_retries() {
    let s = Scratch::new("null-faults");
    let text = "name: nullfaults\nsource:\n  name: generator\n  stream: records\n  total: 20000\n  page_size: 100\n\
        destination:\n  name: null\n  config:\n    fail_rate: 0.05\n    latency_ms: 1\n    seed: 9\n    buffer_size: 0\n";
    let cfg = s.write("c.yml", text);
    let err = ok(&s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]));
    assert!(err.contains("completed: 20000 records") && err.contains("retries"), "{err}");
    let always = s.write(
        "always.yml",
        &format!(
            "{}engine:\n  runner:\n    config:\n      max_retries: 3\n      retry_backoff_ms: 1\n",
            text.replace("fail_rate: 0.05", "fail_rate: 1")
        ),
    );
    let out = s.run(&["run", always.to_str().unwrap(), "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "a destination that always fails ends the run with exit 1");
    assert!(stderr(&out).contains("giving up after 4 attempts"), "{}", stderr(&out));
}

#[test]
fn buffer_flush_timeout_commits_a_slow_stream_before_the_buffer_fills() {
    let s = Scratch::new("flush-timeout");
    // ~6 s of slow records, far below the 50 MB buffer: only the 1 s timeout can commit.
    let cfg =
        generator_to_file(&s, "slow", 9_000, "  page_size: 100\n  rate_limit: 1500\n", "    buffer_flush_timeout: 1\n");
    let cfg = cfg.to_str().unwrap();
    let mut child = s.spawn(&["run", cfg, "--no-progress"]);
    let committed = |s: &Scratch| -> Option<u64> {
        let out = stdout(&s.run(&["job", "list", cfg]));
        let line = out.lines().find(|l| l.contains(" running "))?;
        line.split_whitespace().find_map(|w| w.strip_suffix("/9000")).and_then(|n| n.parse().ok())
    };
    wait_until("a time-based commit", Duration::from_secs(30), || {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the run ended ({status:?}) before a time-based commit was seen:\n{err}");
        }
        committed(&s).is_some_and(|n| n > 0)
    });
    assert!(child.try_wait().unwrap().is_none(), "the commit came before the end of the run");
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = run_until_done(&s, cfg, 1);
    assert!(logs[0].contains("resumed after iteration"), "{}", logs[0]);
    assert_exactly_once(&s.path("out.json"), 9_000);
}
