//! The pods waiting to be scheduled: an active FIFO, and per-pod backoff for pods that did
//! not fit (1 s, doubling up to 60 s, as v1's `podBackoff`). A cluster change that may let a
//! pod fit (a node added or updated, a pod deleted) moves every backed-off pod back to
//! active at once; its backoff keeps counting, so a pod that still does not fit waits longer
//! next time.
//!
//! Time is passed in (`now`), so tests need no clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use keelson_scheduler::queue::SchedulingQueue;
//!
//! let mut q = SchedulingQueue::new();
//! let t0 = Instant::now();
//! q.add("default/web");
//! assert_eq!(q.pop(t0), Some("default/web"));
//! assert_eq!(q.backoff("default/web", t0), Duration::from_secs(1));
//! assert_eq!(q.pop(t0), None);
//! assert_eq!(q.pop(t0 + Duration::from_secs(1)), Some("default/web"));
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The first backoff.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// The backoff the next failure gets.
    next: Duration,
    /// When the pod may be retried, while it is backing off.
    until: Option<Instant>,
}

/// Pods to schedule, keyed by `K` (such as `namespace/name`); see the [module docs](self).
#[derive(Debug)]
pub struct SchedulingQueue<K> {
    /// Active keys in order; may hold stale entries of keys no longer in `queued`, which
    /// `pop` skips (removing from the middle of a long queue would cost its length).
    active: VecDeque<K>,
    /// The keys that are really active.
    queued: HashSet<K>,
    backoff: HashMap<K, Backoff>,
}

impl<K: Clone + Eq + Hash> Default for SchedulingQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> SchedulingQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        SchedulingQueue {
            active: VecDeque::new(),
            queued: HashSet::new(),
            backoff: HashMap::new(),
        }
    }

    /// Queues `key` to be scheduled now, unless it is queued or backing off already.
    pub fn add(&mut self, key: K) {
        if self.backoff.get(&key).is_some_and(|b| b.until.is_some()) {
            return;
        }
        self.activate(key);
    }

    fn activate(&mut self, key: K) {
        if self.queued.insert(key.clone()) {
            self.active.push_back(key);
        }
    }

    /// The next pod to schedule: first any pod whose backoff has expired by `now`, then the
    /// active pods in order.
    pub fn pop(&mut self, now: Instant) -> Option<K> {
        self.flush(now);
        while let Some(key) = self.active.pop_front() {
            if self.queued.remove(&key) {
                return Some(key);
            }
        }
        None
    }

    /// Records that `key` did not fit: it waits for its backoff, returned, before it is
    /// active again (unless the cluster changes first).
    pub fn backoff(&mut self, key: K, now: Instant) -> Duration {
        self.queued.remove(&key);
        let b = self.backoff.entry(key).or_insert(Backoff {
            next: INITIAL_BACKOFF,
            until: None,
        });
        let wait = b.next;
        b.until = Some(now + wait);
        b.next = (wait * 2).min(MAX_BACKOFF);
        wait
    }

    /// Forgets `key` entirely: it was scheduled or deleted.
    pub fn remove(&mut self, key: &K) {
        self.queued.remove(key);
        self.backoff.remove(key);
        if self.queued.is_empty() {
            self.active.clear();
        }
    }

    /// A node was added or updated, or a pod deleted: every backed-off pod becomes active.
    pub fn cluster_changed(&mut self) {
        let mut moved: Vec<K> = Vec::new();
        for (k, b) in self.backoff.iter_mut() {
            if b.until.take().is_some() {
                moved.push(k.clone());
            }
        }
        for k in moved {
            self.activate(k);
        }
    }

    /// Moves pods whose backoff has expired by `now` to active.
    pub fn flush(&mut self, now: Instant) {
        let mut due: Vec<(Instant, K)> = Vec::new();
        for (k, b) in self.backoff.iter_mut() {
            if let Some(until) = b.until
                && until <= now
            {
                b.until = None;
                due.push((until, k.clone()));
            }
        }
        due.sort_by_key(|(until, _)| *until);
        for (_, k) in due {
            self.activate(k);
        }
    }

    /// When the earliest backoff expires, if any pod is backing off; for the daemon to sleep.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.backoff.values().filter_map(|b| b.until).min()
    }

    /// How many pods are active.
    pub fn active_len(&self) -> usize {
        self.queued.len()
    }

    /// How many pods are backing off.
    pub fn backoff_len(&self) -> usize {
        self.backoff.values().filter(|b| b.until.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_to_sixty_seconds() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        let waits: Vec<u64> = (0..9).map(|_| q.backoff("p", t).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn backed_off_pods_wait_until_expiry() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.active_len(), 2, "adding twice queues once");
        assert_eq!(q.pop(t), Some("a"));
        q.backoff("a", t);
        q.backoff("a", t); // second failure: 2 s from t
        q.add("a"); // an update while backing off does not skip the wait
        assert_eq!(q.pop(t), Some("b"));
        assert_eq!(q.pop(t + s(1)), None);
        assert_eq!(q.next_expiry(), Some(t + s(2)));
        assert_eq!(q.pop(t + s(2)), Some("a"));
        assert_eq!(q.next_expiry(), None);
    }

    #[test]
    fn expired_pods_come_out_in_expiry_order() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.backoff("slow", t);
        q.backoff("slow", t);
        q.backoff("fast", t);
        assert_eq!(q.pop(t + s(5)), Some("fast"));
        assert_eq!(q.pop(t + s(5)), Some("slow"));
    }

    #[test]
    fn cluster_change_moves_backed_off_pods_to_active_and_keeps_the_count() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.backoff("a", t);
        q.backoff("b", t);
        assert_eq!((q.active_len(), q.backoff_len()), (0, 2));
        q.cluster_changed();
        assert_eq!((q.active_len(), q.backoff_len()), (2, 0));
        let mut got = vec![q.pop(t).unwrap(), q.pop(t).unwrap()];
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert_eq!(q.backoff("a", t), s(2), "the backoff keeps doubling");
    }

    #[test]
    fn remove_forgets_the_backoff() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.backoff("a", t);
        q.backoff("a", t);
        q.remove(&"a");
        assert_eq!(q.pop(t + s(100)), None);
        assert_eq!(q.backoff("a", t), s(1));
        q.add("b");
        q.remove(&"b");
        assert_eq!(q.active_len(), 0);
    }
}
