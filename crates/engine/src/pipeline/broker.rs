//! Producer and consumer over an external queue ([`QueueBroker`]: RabbitMQ, Kafka): `produce`
//! reads pages with the shared [`PageReader`] and publishes them to lane `iteration % lanes`,
//! throttled by the slowest lane's committed cursor; `consume` takes one lane's pages in
//! iteration order, writes them with the [`Writer`] and acknowledges a delivery only after the
//! commit that covers it. `broker_loop` runs both in one process (the thread runner).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bizon_core::{wire, Backend, DestinationCursor, Error, QueueBroker, ReadContext, Result, Source};

use super::lanes::slowest_lane;
use super::reader::PageReader;
use super::writer::Writer;
use super::Outcome;
use crate::spans;

/// Publish pages from the reader's start on until the last one (or `max_iterations`, or a stop).
/// Pages already in the queue from an earlier attempt are published again: consumers skip what
/// they committed.
pub(super) fn produce(
    mut reader: PageReader<'_, '_>,
    broker: &dyn QueueBroker,
    backend: &Mutex<&mut dyn Backend>,
    job_id: &str,
    halt: &dyn Fn() -> bool,
    gauge: &dyn Fn(),
) -> Result<()> {
    let mut publisher = broker.publisher()?;
    // the gauge reads the backend: at most every BACKLOG_EVERY, publishing or waiting
    let mut gauged: Option<Instant> = None;
    let mut read_gauge = || {
        if gauged.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
            gauged = Some(Instant::now());
            gauge();
        }
    };
    let lanes = broker.lanes().max(1);
    let lane_of = |iteration: i64| (iteration as usize) % lanes;
    let window = (broker.max_in_flight().max(1) * lanes) as i64;
    let mut committed = reader.iteration() - 1;
    loop {
        let iteration = reader.iteration();
        if halt() {
            return publisher.flush();
        }
        read_gauge();
        // flow control: wait for the consumers' commits (read from the shared backend)
        if iteration - committed > window {
            publisher.flush()?;
            let (waiting, mut pause, mut logged) = (Instant::now(), FLOW_POLL_MIN, false);
            loop {
                let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
                committed = slowest_lane(&mut **b, job_id, lanes)?.iteration;
                drop(b);
                if iteration - committed <= window || halt() {
                    break;
                }
                read_gauge();
                if !logged && waiting.elapsed() > Duration::from_secs(10) {
                    tracing::info!(
                        iteration,
                        committed,
                        lanes,
                        "waiting for the consumers to commit (is one lane without a consumer?)"
                    );
                    logged = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(FLOW_POLL_MAX);
            }
            continue;
        }
        let page = match reader.read()? {
            Some((_, page)) => page,
            None => {
                // the end: every lane learns the first iteration that was not produced
                for lane in 0..lanes {
                    publisher.publish(lane, wire::encode(job_id, iteration, None))?;
                }
                return publisher.flush();
            }
        };
        let last = page.is_last();
        let t = spans::start();
        publisher.publish(lane_of(iteration), wire::encode(job_id, iteration, Some(&page)))?;
        spans::end("enqueue", iteration, page.records.len() as u64, t);
        if last {
            for lane in (0..lanes).filter(|l| *l != lane_of(iteration)) {
                publisher.publish(lane, wire::encode(job_id, iteration + 1, None))?;
            }
            return publisher.flush();
        }
    }
}

/// How often a producer ahead of its consumers looks at their commits: from the first to the
/// second, doubling. Each look is a query of the shared backend (every lane's cursor at once).
const FLOW_POLL_MIN: Duration = Duration::from_millis(5);
const FLOW_POLL_MAX: Duration = Duration::from_millis(50);

/// What a consumer knows of the producer when its queue runs dry.
pub(super) enum Producer {
    /// Still publishing, or in another process (the consumer role cannot tell).
    Unknown,
    /// The producer thread failed: its error ends the attempt.
    Failed(Error),
    /// The producer thread published every page and its end, and the broker confirmed them.
    Done,
}

/// How long a consumer waits for its next page after its producer thread published everything:
/// past it the rest was lost (a queue purged or a message dropped behind the engine's back), and
/// the attempt restarts from the last commit instead of waiting for it forever.
const LOST_TAIL_AFTER: Duration = Duration::from_secs(5);
/// How long a lane stays dry before its consumer looks for an unfinished lane without a consumer.
const LANE_IDLE: Duration = Duration::from_secs(1);
/// How often a consumer asks the broker for its lane's backlog (a round trip: never per page).
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Consume pages in iteration order from `start` on, write, commit, then acknowledge. A page
/// already committed (a redelivery, a restarted producer's copy, another job's leftover) is
/// acknowledged and skipped; a gap fails the attempt (retried). `producer` tells, when the queue
/// runs dry, whether a producer thread failed or finished ([`Producer`]).
pub(super) fn consume(
    w: &mut Writer<'_>,
    stop: &AtomicBool,
    start: &DestinationCursor,
    broker: &dyn QueueBroker,
    producer: &dyn Fn() -> Producer,
    handover: &dyn Fn() -> bool,
    gauge: &dyn Fn(),
) -> Result<Outcome> {
    let (lane, lanes) = w.lane;
    let mut idle_checked = Instant::now();
    let mut subscriber = broker.subscriber(lane)?;
    let max_unacked = broker.max_unacked().max(1);
    tracing::info!(queue = %broker.describe(), lane, lanes, after_iteration = start.iteration, "pages travel through the queue");
    // the newest accepted delivery, and how many are held unacknowledged
    let mut held: Option<(u64, i64)> = None;
    let mut unacked = 0usize;
    let mut last_delivery = Instant::now();
    let mut backlog_read: Option<Instant> = None;
    w.counters.lane.store(lane as u64, Ordering::Relaxed);
    loop {
        if backlog_read.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
            backlog_read = Some(Instant::now());
            if let Some(n) = subscriber.waiting() {
                w.counters.lane_waiting.store(n, Ordering::Relaxed);
                w.counters.lane_known.store(true, Ordering::Relaxed);
            }
            gauge();
        }
        if stop.load(Ordering::SeqCst) {
            let outcome = w.stopped()?;
            if let Some((tag, _)) = held {
                subscriber.ack_through(tag)?;
            }
            return Ok(outcome);
        }
        // on lanes the wait is short even with rows pending (the flush deadline can be minutes
        // away): a dry lane must be noticed to be handed over
        let wait = if lanes > 1 { w.until_deadline().min(LANE_IDLE / 4) } else { w.until_deadline() };
        let outcome = match subscriber.next(wait)? {
            None => {
                match producer() {
                    Producer::Failed(e) => {
                        let _ = w.flush(false); // commit what arrived, report the producer's error
                        return Err(e);
                    }
                    Producer::Done if last_delivery.elapsed() >= LOST_TAIL_AFTER => {
                        let _ = w.flush(false); // commit what arrived, then start again from there
                        return Err(Error::transient(format!(
                            "{}: the producer published every page, but iteration {} never arrived",
                            broker.describe(),
                            w.expected()
                        )));
                    }
                    Producer::Done | Producer::Unknown => {}
                }
                // Lanes: a dry lane is handed over when another unfinished lane has no consumer
                // (fewer consumers than lanes: the producer waits for that lane's commits, so this
                // one stays dry until someone consumes it). Everything that arrived is committed
                // and acknowledged first; `handover` takes the other lane's lock.
                if lanes > 1 && last_delivery.elapsed() >= LANE_IDLE && idle_checked.elapsed() >= LANE_IDLE {
                    idle_checked = Instant::now();
                    w.flush(false)?;
                    if let Some((tag, _)) = held.take() {
                        subscriber.ack_through(tag)?;
                        unacked = 0;
                    }
                    if handover() {
                        tracing::info!(
                            lane,
                            lanes,
                            iteration = w.cursor.iteration,
                            "lane dry while another lane has no consumer: handing it over"
                        );
                        return Ok(Outcome::LaneHandedOver);
                    }
                }
                w.tick()?;
                None
            }
            Some((bytes, tag)) => {
                last_delivery = Instant::now();
                let msg = wire::decode(&bytes)
                    .map_err(|e| Error::permanent(format!("{}: undecodable message: {e}", broker.describe())))?;
                let expected = w.expected();
                let gap = |arrived: i64| {
                    Error::transient(format!(
                        "{}: iteration {expected} is missing (iteration {arrived} arrived)",
                        broker.describe()
                    ))
                };
                if msg.job_id != w.job.id || (msg.page.is_some() && msg.iteration < expected) {
                    subscriber.ack(tag)?; // another job's leftover or a redelivered duplicate
                    continue;
                }
                match msg.page {
                    // the end of the stream: `iteration` is the first one that was not produced
                    None if msg.iteration <= expected => {
                        held = Some((tag, msg.iteration));
                        Some(w.finish()?)
                    }
                    None => return Err(gap(msg.iteration)),
                    Some(_) if msg.iteration > expected => return Err(gap(msg.iteration)),
                    Some(page) => {
                        held = Some((tag, msg.iteration));
                        unacked += 1;
                        let last = page.is_last();
                        w.accept(msg.iteration, page)?;
                        if last {
                            Some(w.finish()?)
                        } else {
                            if unacked >= max_unacked {
                                w.flush(false)?; // the broker sends no more until we acknowledge
                            }
                            None
                        }
                    }
                }
            }
        };
        if let Some((tag, iteration)) = held {
            if w.cursor.iteration >= iteration || outcome.is_some() {
                subscriber.ack_through(tag)?;
                held = None;
                unacked = 0;
            }
        }
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
}

/// The thread runner over an external queue: a producer thread publishes, this thread consumes.
/// Both ends restart from the last commit, so the queue is purged first; the queue is removed
/// when the job completes.
pub(super) fn broker_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
    broker: &dyn QueueBroker,
) -> Result<Outcome> {
    broker.purge()?;
    let (spec, backend, job_id, counters) = (w.spec, w.backend, w.job.id.clone(), w.counters);
    let abandon = AtomicBool::new(false);
    let produced: Mutex<Option<Result<()>>> = Mutex::new(None);
    let outcome = std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("bizon-producer".into())
            .spawn_scoped(s, || {
                let halt = || stop.load(Ordering::SeqCst) || abandon.load(Ordering::SeqCst);
                let reader = PageReader::new(source, ctx, backend, spec, &job_id, counters, start);
                let r = produce(reader, broker, backend, &job_id, &halt, &|| {});
                *produced.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            })
            .map_err(|e| Error::internal(format!("cannot start the producer thread: {e}")))?;
        let producer_state = || {
            let mut result = produced.lock().unwrap_or_else(|p| p.into_inner());
            match result.take() {
                Some(Err(e)) => Producer::Failed(e),
                Some(Ok(())) => {
                    *result = Some(Ok(()));
                    Producer::Done
                }
                None => Producer::Unknown,
            }
        };
        let consumed = consume(w, stop, start, broker, &producer_state, &|| false, &|| {});
        if consumed.is_err() {
            abandon.store(true, Ordering::SeqCst);
        }
        producer.join().map_err(|_| Error::internal("the producer thread panicked"))?;
        let produced = produced.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (consumed, produced) {
            (Err(e), _) => Err(e),
            (Ok(Outcome::Stopped), Some(Err(e))) => Err(e),
            (Ok(outcome), _) => Ok(outcome),
        }
    })?;
    if outcome == Outcome::Completed {
        remove_queue(broker);
    }
    Ok(outcome)
}

pub(super) fn remove_queue(broker: &dyn QueueBroker) {
    if let Err(e) = broker.delete() {
        tracing::warn!(error = %e, "the job is complete but its queue could not be deleted");
    }
}
