//! End-to-end runs through the real RabbitMQ on 127.0.0.1:5672 (guest/guest): every record
//! exactly once, kill -9 of the running process, an unreachable broker. Each test uses its own
//! queue (deleted by the run that completes).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A unique queue name per test and run, so tests run in parallel and re-run on a dirty broker.
fn queue_name(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("bizon_test_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// generator → rabbitmq → file.
fn through_rabbitmq(s: &Scratch, label: &str, total: u64, extra_source: &str, extra_dest: &str) -> (String, String) {
    let cfg = generator_to_file(s, label, total, extra_source, extra_dest);
    let queue = queue_name(label);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        port: 5672\n        \
         queue_name: {queue}\n      consumer:\n        prefetch: 16\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    (cfg.to_str().unwrap().to_owned(), queue)
}

fn queues() -> String {
    let out = std::process::Command::new("rabbitmqctl").args(["list_queues", "-q", "name"]).output().unwrap();
    assert!(out.status.success(), "rabbitmqctl list_queues: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_million_records_through_rabbitmq_arrive_exactly_once_and_the_queue_is_removed() {
    let s = Scratch::new("rmq-1m");
    let (cfg, queue) = through_rabbitmq(&s, "rmq1m", 1_000_000, "", "");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains(&format!("rabbitmq 127.0.0.1:5672 queue `{queue}`")), "{err}");
    assert!(err.contains("completed: 1000000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn kill_9_at_three_seeded_moments_then_resume_loses_and_duplicates_nothing() {
    let s = Scratch::new("rmq-kill");
    let (cfg, queue) =
        through_rabbitmq(&s, "rmqkill", 1_000_000, "  page_size: 2000\n  rate_limit: 300000\n", "    buffer_size: 1\n");
    let (interrupted, completed) = kill_at_seeded_moments(&s, &cfg, 0x5EED_0601, 3, 150, 900);
    assert!(interrupted >= 2, "the kills must land mid-run (only {interrupted} did)");
    if !completed {
        let logs = run_until_done(&s, &cfg, 3);
        assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    }
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn an_unreachable_broker_fails_in_bounded_time_naming_host_and_port_without_the_password() {
    let s = Scratch::new("rmq-down");
    let text = "name: rmq-down\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config: {}\n\
                engine:\n  runner:\n    config:\n      max_retries: 2\n      retry_backoff_ms: 50\n  queue:\n    type: rabbitmq\n    \
                config:\n      queue:\n        host: 127.0.0.1\n        port: 1\n        queue_name: never\n        \
                password: s3cret-rabbit-pw\n";
    let cfg = s.write("pipeline.yml", text);
    let t = Instant::now();
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    assert!(err.contains("rabbitmq 127.0.0.1:1 queue `never`: cannot connect"), "{err}");
    assert!(!err.contains("s3cret-rabbit-pw"), "password leaked:\n{err}");
}

#[test]
fn rabbitmq_config_typos_point_at_the_key() {
    let s = Scratch::new("rmq-typo");
    let text = "name: typo\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: logger\n  config: {}\n\
                engine:\n  queue:\n    type: rabbitmq\n    config:\n      queue:\n        host: 127.0.0.1\n        \
                queue_nam: x\n";
    let cfg = s.write("pipeline.yml", text);
    let out = s.run(&["config", "validate", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pipeline.yml:14:9"), "{err}");
    assert!(err.contains("queue_name"), "{err}");
}

/// `through_rabbitmq` with `engine.runner.type: process`.
fn process_runner(s: &Scratch, label: &str, total: u64, extra_source: &str, extra_dest: &str) -> (String, String) {
    let (cfg, queue) = through_rabbitmq(s, label, total, extra_source, extra_dest);
    use_process_runner(&cfg);
    (cfg, queue)
}

#[test]
fn the_process_runner_moves_every_record_exactly_once_through_two_child_processes() {
    let s = Scratch::new("rmq-proc");
    let (cfg, queue) = process_runner(&s, "rmqproc", 1_000_000, "", "");
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("process runner: producer pid"), "{err}");
    assert!(err.contains("role=\"producer\"") && err.contains("role=\"consumer\""), "{err}");
    assert!(err.contains("published (the consumer completes the job): 1000000 records"), "{err}");
    assert!(err.contains("completed: 1000000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

/// bizon runs `runner: process` over its in-memory (multiprocessing) queue; here that config
/// runs the thread runner with a warning (one process, producer and consumer on their own
/// cores), from the YAML and from `--runner process`; `--strict` refuses it.
#[test]
fn the_process_runner_with_the_in_memory_queue_runs_as_thread() {
    let s = Scratch::new("rmq-proc-mem");
    let cfg = generator_to_file(&s, "procmem", 1000, "  page_size: 100\n", "");
    let cfg = cfg.to_str().unwrap().to_owned();
    let out = s.run(&["run", &cfg, "--runner", "process", "--no-progress"]);
    let err = ok(&out);
    assert!(err.contains("runner `process` with the in-memory queue runs as `thread`"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1000);
    use_process_runner(&cfg);
    let out = s.run(&["config", "validate", &cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning:") && stderr(&out).contains("runs as `thread`"), "{}", stderr(&out));
    let strict = s.run(&["config", "validate", &cfg, "--strict"]);
    assert_eq!(strict.status.code(), Some(2), "{}", stderr(&strict));
    std::fs::remove_file(s.path("out.json")).unwrap();
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert!(err.contains("completed: 1000 records"), "{err}");
    assert_exactly_once(&s.path("out.json"), 1000);
}

/// Read the supervisor's "producer pid P, consumer pid C" line from a running process runner;
/// the rest of its stderr is collected by a thread.
fn child_pids(child: &mut std::process::Child) -> (u32, u32, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no pid line in:\n{seen}");
        seen.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("bizon: process runner: producer pid ") {
            let (p, c) = rest.split_once(", consumer pid ").unwrap();
            let rest = std::thread::spawn(move || {
                let mut tail = String::new();
                std::io::Read::read_to_string(&mut reader, &mut tail).unwrap();
                seen + &tail
            });
            return (p.parse().unwrap(), c.parse().unwrap(), rest);
        }
    }
}

#[test]
fn a_consumer_process_killed_by_signal_9_fails_the_run_cleanly_and_the_next_run_resumes() {
    let s = Scratch::new("rmq-proc-kill");
    let (cfg, _queue) = process_runner(&s, "rmqprockill", 600_000, "  rate_limit: 150000\n", "    buffer_size: 1\n");
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    let (_, consumer, log) = child_pids(&mut child);
    let staging = s.path("out_temp.json");
    wait_until("rows written by the consumer", Duration::from_secs(30), || {
        std::fs::metadata(&staging).map(|m| m.len() > 5_000_000).unwrap_or(false)
    });
    unsafe { libc::kill(consumer as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let err = log.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("the consumer process (pid {consumer}) was killed by signal 9")), "{err}");
    let logs = run_until_done(&s, &cfg, 2);
    assert!(logs.last().unwrap().contains("resumed after iteration"), "{}", logs.last().unwrap());
    assert_exactly_once(&s.path("out.json"), 600_000);
}

#[test]
fn producer_and_consumer_roles_run_as_separate_processes_and_survive_consumer_kills() {
    let s = Scratch::new("rmq-roles");
    let (cfg, queue) = through_rabbitmq(
        &s,
        "rmqroles",
        1_000_000,
        "  page_size: 2000\n  rate_limit: 300000\n",
        "    buffer_size: 1\n",
    );
    // the consumer may start first: it waits for the producer's job
    let mut consumer = s.spawn(&["run", &cfg, "--role", "consumer", "--no-progress"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(consumer.try_wait().unwrap().is_none(), "the consumer waits for a producer");
    let second = s.run(&["run", &cfg, "--role", "consumer", "--no-progress"]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("the consumer of pipeline `rmqroles` is already running: job "),
        "{}",
        stderr(&second)
    );
    let producer = s.spawn(&["run", &cfg, "--role", "producer", "--no-progress"]);
    // kill -9 the consumer at three seeded moments, restarting it each time
    let (consumer, killed) = kill_consumer_at_seeded_moments(&s, &cfg, consumer, 0x5EED_0602, 3, (150, 600), 0);
    assert!(killed >= 2, "the kills must land mid-run (only {killed} did)");
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "producer: {}", String::from_utf8_lossy(&out.stderr));
    let out = consumer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "consumer: {err}");
    assert!(err.contains("completed: "), "{err}");
    assert_exactly_once(&s.path("out.json"), 1_000_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn sigterm_stops_the_process_runner_cleanly_and_the_next_run_resumes() {
    let s = Scratch::new("rmq-proc-term");
    let (cfg, queue) = process_runner(&s, "rmqprocterm", 400_000, "  rate_limit: 100000\n", "    buffer_size: 1\n");
    let mut child = s.spawn(&["run", &cfg, "--no-progress"]);
    let (producer, consumer, log) = child_pids(&mut child);
    let staging = s.path("out_temp.json");
    wait_until("rows written by the consumer", Duration::from_secs(30), || {
        std::fs::metadata(&staging).map(|m| m.len() > 5_000_000).unwrap_or(false)
    });
    sigterm(&child);
    let status = child.wait().unwrap();
    let err = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop exits 0:\n{err}");
    assert_eq!(err.matches("stopped (resumable").count(), 2, "both children stop cleanly:\n{err}");
    for pid in [producer, consumer] {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "child {pid} still running");
    }
    let logs = run_until_done(&s, &cfg, 1);
    assert!(logs[0].contains("resumed after iteration"), "{}", logs[0]);
    assert_exactly_once(&s.path("out.json"), 400_000);
    assert!(!queues().lines().any(|q| q.trim() == queue), "queue {queue} left behind");
}

#[test]
fn two_consumers_and_one_producer_split_the_work_over_two_rabbitmq_lanes() {
    let s = Scratch::new("rmq-lanes");
    let (cfg, queue) = through_rabbitmq(&s, "rmqlanes", 600_000, "", "");
    use_lanes(&cfg, 2);
    two_consumers_split_one_producers_work(&s, &cfg, 600_000);
    let left = queues();
    assert!(!left.lines().any(|q| q.trim().starts_with(&queue)), "lane queues left behind: {left}");
}

#[test]
fn lanes_need_a_destination_that_can_split_and_a_consumer_each() {
    let s = Scratch::new("rmq-lanes-cfg");
    let text = "name: lanes\nsource:\n  name: dummy\n  stream: creatures\ndestination:\n  name: command\n  config:\n    \
                command: [cat]\nengine:\n  queue:\n    type: rabbitmq\n    config:\n      lanes: 2\n      queue:\n        \
                host: 127.0.0.1\n        queue_name: x\n";
    let cfg = s.write("pipeline.yml", text);
    let out = s.run(&["config", "validate", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pipeline.yml:13:14") && err.contains("`command` destination does not support"), "{err}");
    // the thread runner would be one consumer for two lanes
    let text = text.replace("name: command\n  config:\n    command: [cat]\n", "name: logger\n  config: {}\n");
    let cfg = s.write("pipeline.yml", &text);
    let out = s.run(&["run", cfg.to_str().unwrap(), "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 lanes need one consumer each"), "{}", stderr(&out));
}

#[test]
fn the_process_runner_starts_one_consumer_per_lane() {
    let s = Scratch::new("rmq-proc-lanes");
    let (cfg, _queue) = process_runner(&s, "rmqproclanes", 300_000, "", "");
    use_lanes(&cfg, 2);
    let err = ok(&s.run(&["run", &cfg, "--no-progress"]));
    assert_eq!(err.matches(", consumer pid ").count(), 2, "{err}");
    let mut ids = read_ids(&s.path("out.lane-0.json"));
    let lane0 = ids.len();
    ids.extend(read_ids(&s.path("out.lane-1.json")));
    assert!(lane0 > 0 && lane0 < ids.len(), "both lanes wrote rows: {lane0} of {}", ids.len());
    let (missing, dups) = missing_and_duplicates(&ids, 300_000);
    assert_eq!((missing, dups, ids.len()), (0, 0, 300_000));
}

/// The value and `lane` label of `bizon_lane_pages_waiting` in a Prometheus text body.
fn lane_gauge(body: &str) -> Option<(String, f64)> {
    let l = body.lines().find(|l| l.starts_with("bizon_lane_pages_waiting{"))?;
    let lane = l.split("lane=\"").nth(1)?.split('"').next()?.to_owned();
    Some((lane, l.rsplit(' ').next()?.parse().ok()?))
}

#[test]
fn a_consumer_exports_the_pages_waiting_on_its_lane_in_the_broker() {
    let s = Scratch::new("rmq-lane-gauge");
    let queue = queue_name("rmqgauge");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // 200 pages over 2 lanes, each consumer taking 100 ms per page. Prefetch 50 makes the
    // producer's window (2 × prefetch per lane) hold a lane's whole 100 pages, so it publishes them
    // without waiting on a commit while a consumer holds at most 50: pages wait in the broker for
    // the first 5 s of a lane whatever the machine's load (with prefetch 4 the window was 8 pages
    // per lane, and a producer slow to see commits kept the backlog at 0 on a loaded CI machine)
    let base = format!(
        "name: rmqgauge\nsource:\n  name: generator\n  stream: records\n  total: 200000\n  page_size: 1000\n\
         destination:\n  name: null\n  config:\n    latency_ms: 100\nengine:\n  backend:\n    type: sqlite\n    config:\n      \
         database: {db}\n  queue:\n    type: rabbitmq\n    config:\n      lanes: 2\n      queue:\n        host: 127.0.0.1\n        \
         queue_name: {queue}\n      consumer:\n        prefetch: 50\n",
        db = s.path("state.db").display()
    );
    let watched = s.write(
        "watched.yml",
        &format!("{base}monitoring:\n  type: prometheus\n  config:\n    address: 127.0.0.1:{port}\n"),
    );
    let plain = s.write("plain.yml", &base);
    let producer = s.spawn(&["run", plain.to_str().unwrap(), "--role", "producer", "--no-progress"]);
    let a = s.spawn(&["run", watched.to_str().unwrap(), "--role", "consumer", "--no-progress"]);
    let b = s.spawn(&["run", plain.to_str().unwrap(), "--role", "consumer", "--no-progress"]);
    let (mut seen, started) = (Vec::new(), Instant::now());
    while started.elapsed() < Duration::from_secs(60) {
        match http_get(port, "/metrics") {
            Some(body) => seen.extend(lane_gauge(&body)),
            None if !seen.is_empty() => break, // the consumer finished its lane
            None => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in [a, b, producer] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!seen.is_empty(), "the consumer exported bizon_lane_pages_waiting");
    let lane = &seen[0].0;
    assert!(lane == "0" || lane == "1", "{seen:?}");
    assert!(seen.iter().all(|(l, _)| l == lane), "one lane per consumer: {seen:?}");
    let most = seen.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    assert!(most > 0.0 && most <= 100.0, "pages waited on the lane, at most its 100: {seen:?}");
}

/// generator → RabbitMQ on 4 lanes → PostgreSQL, with a shared PostgreSQL backend. Two consumers
/// for four lanes (a consumer hands its dry lane over to a lane without a consumer, and takes an
/// unfinished lane when its own is done), each killed -9 at seeded moments and restarted, and a
/// third consumer joining late: every row exactly once in the target, the staging table swapped
/// in once, the job completed and its queues removed.
#[test]
fn postgres_on_four_lanes_two_stealing_consumers_killed_and_a_late_third_write_every_row_once() {
    let s = Scratch::new("rmq-pg-lanes");
    let schema = Schema::new("pglanes");
    let queue = queue_name("rmqpglanes");
    let total = 300_000u64;
    let pg = pg_keys(&schema.0, 4);
    let text = format!(
        "name: rmqpglanes\nsource:\n  name: generator\n  stream: records\n  total: {total}\n  page_size: 1000\n  \
         rate_limit: 50000\ndestination:\n  name: postgres\n  config:\n    {pg}    destination_id: events\n    buffer_size: 1\n\
         engine:\n  backend:\n    type: postgres\n    config:\n      {backend}      lease_seconds: 5\n  queue:\n    type: rabbitmq\n    \
         config:\n      lanes: 4\n      queue:\n        host: 127.0.0.1\n        port: 5672\n        queue_name: {queue}\n      \
         consumer:\n        prefetch: 4\n",
        backend = pg.replace("\n    ", "\n      ")
    );
    let cfg = s.write("pipeline.yml", &text);
    let cfg = cfg.to_str().unwrap();
    let consumer = || s.spawn(&["run", cfg, "--role", "consumer", "--no-progress"]);
    let mut consumers = vec![consumer(), consumer()];
    let producer = s.spawn(&["run", cfg, "--role", "producer", "--no-progress"]);
    // kill -9 one of the two at each of three seeded moments and start a new one at once; a
    // third consumer joins after the second kill
    let mut rng = Rng(0x5EED_2201);
    let mut killed = 0;
    let mut late = None;
    for k in 0..3 {
        std::thread::sleep(Duration::from_millis(700 + rng.below(900)));
        let victim = &mut consumers[k % 2];
        if victim.try_wait().unwrap().is_none() {
            victim.kill().unwrap();
            victim.wait().unwrap();
            killed += 1;
        }
        consumers[k % 2] = consumer();
        if k == 1 {
            late = Some(consumer());
        }
    }
    consumers.extend(late);
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "producer: {}", String::from_utf8_lossy(&out.stderr));
    let mut logs = Vec::new();
    for c in consumers {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "consumer: {err}");
        logs.push(err);
    }
    let all = logs.join("\n---\n");
    assert!(killed >= 2, "the kills must land mid-run (only {killed} did)");
    assert!(all.contains(" completed: "), "a consumer completed the job:\n{all}");
    assert!(
        all.contains("handing it over") || all.contains("taking an unfinished one"),
        "consumers moved between lanes:\n{all}"
    );
    let (rows, distinct) = schema.count("events");
    assert_eq!((rows, distinct), (total as i64, total as i64), "every row exactly once");
    assert_eq!(schema.try_count("events__bizon_staging"), None, "the staging table was swapped in");
    let mut pg = client();
    let mut q = |sql: &str| -> i64 { pg.query_one(&sql.replace("@S", &schema.0), &[]).unwrap().get(0) };
    // the job's marker row, published once; four lane chains, each ending done
    assert_eq!(q("SELECT count(*) FROM \"@S\".bizon_destination_commits WHERE published AND job_id NOT LIKE '%~%'"), 1);
    assert_eq!(
        q("SELECT count(DISTINCT job_id) FROM \"@S\".bizon_destination_commits \
           WHERE job_id LIKE '%~%' AND (cursor->>'done')::boolean"),
        4
    );
    assert_eq!(q("SELECT count(*) FROM \"@S\".bizon_jobs WHERE stream = 'records' AND status = 'succeeded'"), 1);
    assert!(!queues().lines().any(|q| q.trim().starts_with(&queue)), "lane queues left behind");
}

/// The value of `bizon_lanes_unclaimed` in a Prometheus text body.
fn unclaimed_gauge(body: &str) -> Option<f64> {
    body.lines().find(|l| l.starts_with("bizon_lanes_unclaimed"))?.rsplit(' ').next()?.parse().ok()
}

/// One consumer for three lanes: the producer exports how many unfinished lanes have no consumer
/// (3 before the consumer starts, then 2), and the consumer, whose lane runs dry while the
/// producer waits for the other lanes, hands lanes over until every record is written once.
#[test]
fn the_producer_exports_unclaimed_lanes_and_one_consumer_works_through_three_lanes() {
    let s = Scratch::new("rmq-unclaimed");
    let (cfg, queue) = through_rabbitmq(&s, "rmqunclaimed", 60_000, "  page_size: 1000\n", "");
    use_lanes(&cfg, 3);
    edit_config(&cfg, "prefetch: 16", "prefetch: 2"); // 2 × 2 pages per lane ahead: the producer waits
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let watched = s.write(
        "watched.yml",
        &format!(
            "{}monitoring:\n  type: prometheus\n  config:\n    address: 127.0.0.1:{port}\n",
            std::fs::read_to_string(&cfg).unwrap()
        ),
    );
    let producer = s.spawn(&["run", watched.to_str().unwrap(), "--role", "producer", "--no-progress"]);
    let mut seen = Vec::new();
    let mut consumer = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(v) = http_get(port, "/metrics").as_deref().and_then(unclaimed_gauge) {
            if seen.last() != Some(&v) {
                seen.push(v);
            }
        }
        if consumer.is_none() && seen.contains(&3.0) {
            consumer = Some(s.spawn(&["run", &cfg, "--role", "consumer", "--no-progress"]));
        }
        if seen.contains(&2.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let consumer = consumer.unwrap_or_else(|| panic!("no 3 unclaimed lanes seen before a consumer: {seen:?}"));
    assert!(seen.contains(&2.0), "one lane claimed once the consumer runs: {seen:?}");
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "producer: {}", String::from_utf8_lossy(&out.stderr));
    let out = consumer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "consumer: {err}");
    assert!(err.contains("handing it over") && err.contains(" completed: "), "{err}");
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.extend(read_ids(&s.path(&format!("out.lane-{k}.json"))));
    }
    let (missing, dups) = missing_and_duplicates(&ids, 60_000);
    assert_eq!((missing, dups, ids.len()), (0, 0, 60_000));
    assert!(!queues().lines().any(|q| q.trim().starts_with(&queue)), "lane queues left behind");
}
