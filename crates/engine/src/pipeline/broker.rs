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
) -> Result<()> {
    let mut publisher = broker.publisher()?;
    let lanes = broker.lanes().max(1);
    let lane_of = |iteration: i64| (iteration as usize) % lanes;
    let window = (broker.max_in_flight().max(1) * lanes) as i64;
    let mut committed = reader.iteration() - 1;
    loop {
        let iteration = reader.iteration();
        if halt() {
            return publisher.flush();
        }
        // flow control: wait for the consumers' commits (read from the shared backend)
        if iteration - committed > window {
            publisher.flush()?;
            let (waiting, mut pause, mut logged) = (Instant::now(), Duration::from_millis(2), false);
            loop {
                let mut b = backend.lock().unwrap_or_else(|p| p.into_inner());
                committed = slowest_lane(&mut **b, job_id, lanes)?.iteration;
                drop(b);
                if iteration - committed <= window || halt() {
                    break;
                }
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
                pause = (pause * 2).min(Duration::from_millis(100));
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

/// Consume pages in iteration order from `start` on, write, commit, then acknowledge. A page
/// already committed (a redelivery, a restarted producer's copy, another job's leftover) is
/// acknowledged and skipped; a gap fails the attempt (retried). `producer_failed` reports a
/// producer thread's error when the queue runs dry.
pub(super) fn consume(
    w: &mut Writer<'_>,
    stop: &AtomicBool,
    start: &DestinationCursor,
    broker: &dyn QueueBroker,
    producer_failed: &dyn Fn() -> Option<Error>,
) -> Result<Outcome> {
    let (lane, lanes) = w.lane;
    let mut subscriber = broker.subscriber(lane)?;
    let max_unacked = broker.max_unacked().max(1);
    tracing::info!(queue = %broker.describe(), lane, lanes, after_iteration = start.iteration, "pages travel through the queue");
    // the newest accepted delivery, and how many are held unacknowledged
    let mut held: Option<(u64, i64)> = None;
    let mut unacked = 0usize;
    loop {
        if stop.load(Ordering::SeqCst) {
            let outcome = w.stopped()?;
            if let Some((tag, _)) = held {
                subscriber.ack_through(tag)?;
            }
            return Ok(outcome);
        }
        let outcome = match subscriber.next(w.until_deadline())? {
            None => {
                if let Some(e) = producer_failed() {
                    let _ = w.flush(false); // commit what arrived, report the producer's error
                    return Err(e);
                }
                w.tick()?;
                None
            }
            Some((bytes, tag)) => {
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
                let r = produce(reader, broker, backend, &job_id, &halt);
                *produced.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            })
            .map_err(|e| Error::internal(format!("cannot start the producer thread: {e}")))?;
        let producer_failed = || {
            let mut result = produced.lock().unwrap_or_else(|p| p.into_inner());
            match result.take() {
                Some(Err(e)) => Some(e),
                other => {
                    *result = other;
                    None
                }
            }
        };
        let consumed = consume(w, stop, start, broker, &producer_failed);
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
