//! The in-process runners, producer and consumer in this process without an external queue:
//! the stream runner (one loop: read a page, write it) and the thread runner (a producer thread
//! reading pages into the byte-bounded [`ByteQueue`], this thread writing them). Both read with
//! the shared [`PageReader`] and write with the [`Writer`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bizon_core::{DestinationCursor, Error, Page, ReadContext, Result, Source};

use super::reader::PageReader;
use super::writer::Writer;
use super::Outcome;
use crate::queue::{ByteQueue, Pop};
use crate::spans;

pub(super) fn stream_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
) -> Result<Outcome> {
    let (spec, backend, counters, cursor_id) = (w.spec, w.backend, w.counters, w.cursor_id.clone());
    let mut reader = PageReader::new(source, ctx, backend, spec, &cursor_id, counters, start).in_lane(w.lane);
    loop {
        if stop.load(Ordering::SeqCst) {
            return w.stopped();
        }
        match reader.read()? {
            None => return w.finish(),
            Some((iteration, page)) => {
                let last = page.is_last();
                w.accept(iteration, page)?;
                if last {
                    return w.finish();
                }
            }
        }
    }
}

enum Item {
    Page(i64, Box<Page>),
    /// The producer stopped at `max_iterations`.
    Exhausted,
}

pub(super) fn thread_loop(
    source: &mut dyn Source,
    w: &mut Writer<'_>,
    ctx: &ReadContext,
    stop: &AtomicBool,
    start: &DestinationCursor,
) -> Result<Outcome> {
    let queue: ByteQueue<Item> = ByteQueue::new(w.spec.queue_max_bytes as usize, w.spec.queue_max_messages as usize);
    let (spec, backend, counters, cursor_id, lane) = (w.spec, w.backend, w.counters, w.cursor_id.clone(), w.lane);
    let gauge = |q: &ByteQueue<Item>| {
        let (items, bytes) = q.depth();
        counters.queue_messages.store(items as u64, Ordering::Relaxed);
        counters.queue_bytes.store(bytes as u64, Ordering::Relaxed);
        counters.lane_waiting.store(items as u64, Ordering::Relaxed);
        counters.lane_known.store(true, Ordering::Relaxed);
    };
    std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("bizon-producer".into())
            .spawn_scoped(s, || {
                let mut reader = PageReader::new(source, ctx, backend, spec, &cursor_id, counters, start).in_lane(lane);
                let result = loop {
                    if stop.load(Ordering::SeqCst) {
                        break Ok(());
                    }
                    let (iteration, page) = match reader.read() {
                        Ok(Some((iteration, page))) => (iteration, page),
                        Ok(None) => {
                            let _ = queue.push(Item::Exhausted, 0);
                            break Ok(());
                        }
                        Err(e) => break Err(e),
                    };
                    let last = page.is_last();
                    let bytes = page.records.byte_len();
                    let (t, n) = (spans::start(), page.records.len() as u64);
                    if queue.push(Item::Page(iteration, Box::new(page)), bytes).is_err() {
                        break Ok(()); // the consumer gave up
                    }
                    spans::end("enqueue", iteration, n, t);
                    gauge(&queue);
                    if last {
                        break Ok(());
                    }
                };
                queue.close();
                result
            })
            .map_err(|e| Error::internal(format!("cannot start the producer thread: {e}")))?;

        let consumed = (|| -> Result<Option<Outcome>> {
            loop {
                if stop.load(Ordering::SeqCst) {
                    // Stop pulling; what is already queued is written, then committed.
                    while let Pop::Item(Item::Page(i, p)) = queue.pop(Duration::ZERO) {
                        w.accept(i, *p)?;
                    }
                    return w.stopped().map(Some);
                }
                match queue.pop(w.until_deadline()) {
                    Pop::Item(Item::Page(i, page)) => {
                        gauge(&queue);
                        let last = page.is_last();
                        w.accept(i, *page)?;
                        if last {
                            return w.finish().map(Some);
                        }
                    }
                    Pop::Item(Item::Exhausted) => return w.finish().map(Some),
                    Pop::Timeout => w.tick()?,
                    Pop::Closed => return Ok(None),
                }
            }
        })();
        if consumed.is_err() {
            queue.abandon();
        }
        let produced = producer.join().map_err(|_| Error::internal("the producer thread panicked"))?;
        match (consumed, produced) {
            (Err(e), _) => Err(e),
            (Ok(Some(outcome)), _) => Ok(outcome),
            // Closed without a last page: the producer failed or was stopped.
            (Ok(None), Err(e)) => {
                w.flush(false)?;
                Err(e)
            }
            (Ok(None), Ok(())) => w.stopped(),
        }
    })
}
