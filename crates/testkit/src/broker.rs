//! An in-memory [`QueueBroker`] for engine tests, with RabbitMQ's semantics where the engine
//! relies on them: one ordered queue per lane, a prefetch bound (`max_unacked` deliveries held
//! unacknowledged per subscriber), delivery tags per subscriber, `ack` of one delivery and
//! `ack_through` of every delivery up to a tag (an unknown tag is an error, as RabbitMQ closes the
//! channel), redelivery of what a subscriber held unacknowledged when it goes away (first, in
//! order, to the next subscriber of its lane), `purge` of ready messages and `delete` of the
//! queues. Publishing is confirmed at once; [`MemoryBroker::lose`] drops a chosen message.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bizon_core::{Error, QueueBroker, QueuePublisher, QueueSubscriber, Result};

#[derive(Default)]
struct State {
    /// Ready messages per lane.
    lanes: Vec<VecDeque<Vec<u8>>>,
    /// Bumped by `delete`: deliveries of an older generation are not requeued.
    generation: u64,
    published: u64,
    delivered: u64,
    redelivered: u64,
    acked: u64,
    unacked: usize,
    purges: u64,
    deletes: u64,
    /// Publishes (1-based, counted over the broker's life) that are confirmed but never queued.
    lose: Vec<u64>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

/// Lanes of in-memory queues; clones share them (a producer and consumers in other threads).
#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
    lanes: usize,
    max_unacked: usize,
}

impl MemoryBroker {
    /// `lanes` ordered queues; a subscriber holds at most `max_unacked` deliveries.
    pub fn new(lanes: usize, max_unacked: usize) -> Self {
        let lanes = lanes.max(1);
        let state = State { lanes: vec![VecDeque::new(); lanes], ..State::default() };
        MemoryBroker {
            shared: Arc::new(Shared { state: Mutex::new(state), arrived: Condvar::new() }),
            lanes,
            max_unacked: max_unacked.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lose the `n`th publish from now on counted over the broker's life (1-based): it is
    /// confirmed but never queued, as a broker that failed over without it would.
    pub fn lose(&self, n: u64) {
        self.state().lose.push(n);
    }

    /// Messages waiting in `lane` (not delivered, or returned for redelivery).
    pub fn ready(&self, lane: usize) -> Vec<Vec<u8>> {
        self.state().lanes[lane].iter().cloned().collect()
    }
    /// Deliveries held unacknowledged by live subscribers.
    pub fn unacked(&self) -> usize {
        self.state().unacked
    }
    pub fn published(&self) -> u64 {
        self.state().published
    }
    /// Deliveries, redeliveries included.
    pub fn delivered(&self) -> u64 {
        self.state().delivered
    }
    /// Deliveries returned to their lane by a subscriber that went away without acknowledging.
    pub fn redelivered(&self) -> u64 {
        self.state().redelivered
    }
    pub fn acked(&self) -> u64 {
        self.state().acked
    }
    pub fn purges(&self) -> u64 {
        self.state().purges
    }
    pub fn deletes(&self) -> u64 {
        self.state().deletes
    }
}

impl QueueBroker for MemoryBroker {
    fn describe(&self) -> String {
        format!("memory broker ({} lanes)", self.lanes)
    }
    fn purge(&self) -> Result<()> {
        let mut s = self.state();
        s.lanes.iter_mut().for_each(VecDeque::clear);
        s.purges += 1;
        Ok(())
    }
    fn delete(&self) -> Result<()> {
        let mut s = self.state();
        s.lanes.iter_mut().for_each(VecDeque::clear);
        s.generation += 1;
        s.unacked = 0;
        s.deletes += 1;
        Ok(())
    }
    fn publisher(&self) -> Result<Box<dyn QueuePublisher>> {
        Ok(Box::new(Publisher { broker: self.clone() }))
    }
    fn subscriber(&self, lane: usize) -> Result<Box<dyn QueueSubscriber>> {
        if lane >= self.lanes {
            return Err(Error::config(format!("lane {lane} of a {}-lane broker", self.lanes)));
        }
        let generation = self.state().generation;
        Ok(Box::new(Subscriber { broker: self.clone(), lane, next_tag: 1, held: BTreeMap::new(), generation }))
    }
    fn lanes(&self) -> usize {
        self.lanes
    }
    fn max_unacked(&self) -> usize {
        self.max_unacked
    }
}

struct Publisher {
    broker: MemoryBroker,
}

impl QueuePublisher for Publisher {
    fn publish(&mut self, lane: usize, message: Vec<u8>) -> Result<()> {
        let mut s = self.broker.state();
        let lost = s.lose.contains(&(s.published + 1));
        let queue =
            s.lanes.get_mut(lane).ok_or_else(|| Error::internal(format!("publish to lane {lane}: no such lane")))?;
        if !lost {
            queue.push_back(message);
        }
        s.published += 1;
        drop(s);
        self.broker.shared.arrived.notify_all();
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

struct Subscriber {
    broker: MemoryBroker,
    lane: usize,
    next_tag: u64,
    /// Deliveries held unacknowledged, by tag.
    held: BTreeMap<u64, Vec<u8>>,
    generation: u64,
}

impl Subscriber {
    fn acked(&mut self, tags: Vec<u64>) {
        let mut s = self.broker.state();
        for tag in tags {
            self.held.remove(&tag);
            s.acked += 1;
            if s.generation == self.generation {
                s.unacked -= 1;
            }
        }
    }
}

impl QueueSubscriber for Subscriber {
    fn waiting(&mut self) -> Option<u64> {
        Some(self.broker.state().lanes[self.lane].len() as u64)
    }

    fn next(&mut self, timeout: Duration) -> Result<Option<(Vec<u8>, u64)>> {
        let deadline = Instant::now() + timeout;
        let mut s = self.broker.state();
        loop {
            // prefetch: nothing more until the subscriber acknowledges
            if self.held.len() < self.broker.max_unacked {
                if let Some(m) = s.lanes[self.lane].pop_front() {
                    s.delivered += 1;
                    if s.generation == self.generation {
                        s.unacked += 1;
                    }
                    drop(s);
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    self.held.insert(tag, m.clone());
                    return Ok(Some((m, tag)));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            s = self.broker.shared.arrived.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
    fn ack(&mut self, tag: u64) -> Result<()> {
        if !self.held.contains_key(&tag) {
            return Err(Error::internal(format!("ack: unknown delivery tag {tag}")));
        }
        self.acked(vec![tag]);
        Ok(())
    }
    fn ack_through(&mut self, tag: u64) -> Result<()> {
        if !self.held.contains_key(&tag) {
            return Err(Error::internal(format!("ack_through: unknown delivery tag {tag}")));
        }
        let tags = self.held.range(..=tag).map(|(t, _)| *t).collect();
        self.acked(tags);
        Ok(())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut s = self.broker.state();
        if s.generation != self.generation {
            return; // the queue was deleted with what this subscriber held
        }
        let held = std::mem::take(&mut self.held);
        s.unacked -= held.len();
        s.redelivered += held.len() as u64;
        let queue = &mut s.lanes[self.lane];
        for (_, m) in held.into_iter().rev() {
            queue.push_front(m);
        }
        drop(s);
        self.broker.shared.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_prefetch_acks_and_redelivery() {
        let b = MemoryBroker::new(2, 2);
        let mut p = b.publisher().unwrap();
        for i in 0..5u8 {
            p.publish(usize::from(i % 2), vec![i]).unwrap();
        }
        let mut s = b.subscriber(0).unwrap();
        let t = Duration::from_millis(1);
        let (m0, t0) = s.next(t).unwrap().unwrap();
        let (m2, t2) = s.next(t).unwrap().unwrap();
        assert_eq!((m0, m2), (vec![0], vec![2]));
        assert!(s.next(t).unwrap().is_none(), "prefetch 2: nothing more until an ack");
        assert!(s.ack(99).is_err(), "unknown tag");
        s.ack_through(t0).unwrap();
        assert!(s.ack(t0).is_err(), "acked already");
        let (m4, _) = s.next(t).unwrap().unwrap();
        assert_eq!(m4, vec![4]);
        assert_eq!(b.unacked(), 2);
        drop(s); // 2 and 4 were not acknowledged: redelivered in order
        assert_eq!((b.unacked(), b.redelivered()), (0, 2));
        let mut s = b.subscriber(0).unwrap();
        assert_eq!(s.next(t).unwrap().unwrap().0, vec![2]);
        assert_eq!(s.next(t).unwrap().unwrap().0, vec![4]);
        let _ = t2;
        assert_eq!(b.ready(1), vec![vec![1], vec![3]], "lane 1 untouched");
        b.purge().unwrap();
        assert!(b.ready(1).is_empty(), "purged");
        b.delete().unwrap();
        drop(s);
        assert!(b.ready(0).is_empty(), "a deleted queue's deliveries are not returned");
    }
}
