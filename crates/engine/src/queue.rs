//! The in-memory queue between producer and consumer: bounded in bytes (and optionally in
//! messages), so a fast source waits for a slow destination instead of filling memory. A single
//! item larger than the bound is still admitted when the queue is empty: backpressure, never an
//! error.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct ByteQueue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    max_bytes: usize,
    max_items: usize,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

/// What `pop` found.
pub enum Pop<T> {
    Item(T),
    /// Nothing arrived before the timeout.
    Timeout,
    /// The producer closed the queue and it is drained.
    Closed,
}

impl<T> ByteQueue<T> {
    /// `max_items == 0` means no bound on the number of items.
    pub fn new(max_bytes: usize, max_items: usize) -> Self {
        ByteQueue {
            state: Mutex::new(State { items: VecDeque::new(), bytes: 0, closed: false }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            max_bytes: max_bytes.max(1),
            max_items: if max_items == 0 { usize::MAX } else { max_items },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panicking peer already fails the run; the queue state itself stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueue, waiting while the queue is full. Returns the item back if the queue was closed.
    pub fn push(&self, item: T, bytes: usize) -> Result<(), T> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(item);
            }
            let fits = s.items.is_empty() || (s.bytes + bytes <= self.max_bytes && s.items.len() < self.max_items);
            if fits {
                break;
            }
            s = self.not_full.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.bytes += bytes;
        s.items.push_back((item, bytes));
        drop(s);
        self.not_empty.notify_one();
        Ok(())
    }

    pub fn pop(&self, timeout: Duration) -> Pop<T> {
        let mut s = self.lock();
        loop {
            if let Some((item, bytes)) = s.items.pop_front() {
                s.bytes -= bytes;
                drop(s);
                self.not_full.notify_one();
                return Pop::Item(item);
            }
            if s.closed {
                return Pop::Closed;
            }
            let (guard, t) = self.not_empty.wait_timeout(s, timeout).unwrap_or_else(|p| p.into_inner());
            s = guard;
            if t.timed_out() && s.items.is_empty() && !s.closed {
                return Pop::Timeout;
            }
        }
    }

    /// No more pushes; pending items can still be popped. Wakes a blocked producer.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// Drop everything and close (the consumer gave up).
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.items.clear();
        s.bytes = 0;
        s.closed = true;
        drop(s);
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Items and bytes queued now (metrics).
    pub fn depth(&self) -> (usize, usize) {
        let s = self.lock();
        (s.items.len(), s.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_in_bytes_with_oversize_items_admitted() {
        let q = Arc::new(ByteQueue::new(100, 0));
        q.push(1, 1000).unwrap(); // larger than the bound, queue empty: admitted
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(2, 10).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.bytes(), 1000, "second push must wait");
        assert!(matches!(q.pop(Duration::from_millis(10)), Pop::Item(1)));
        assert!(t.join().unwrap());
        assert!(matches!(q.pop(Duration::from_millis(10)), Pop::Item(2)));
        assert!(matches!(q.pop(Duration::from_millis(10)), Pop::Timeout));
        q.close();
        assert!(matches!(q.pop(Duration::from_millis(10)), Pop::Closed));
        assert_eq!(q.push(3, 1), Err(3));
    }

    #[test]
    fn item_bound() {
        let q = ByteQueue::new(1 << 20, 1);
        q.push(1, 1).unwrap();
        q.close();
        assert_eq!(q.push(2, 1), Err(2));
    }
}
