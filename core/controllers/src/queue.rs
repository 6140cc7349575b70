//! Work queues: what each controller still has to reconcile.
//!
//! A key is queued at most once however often it is added; a key being reconciled and added
//! again is reconciled once more afterwards, never by two workers at once. Failures come back
//! after a per-key backoff (5 ms doubling to 1000 s, as Kubernetes' controllers do, capped here
//! at 60 s so a cluster recovers promptly once the API server is back).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

struct State<T> {
    queue: VecDeque<T>,
    /// Queued or to be queued again when processing ends.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// A deduplicating work queue with delayed and rate-limited adds.
pub struct Queue<T> {
    state: Arc<Mutex<State<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T> Default for Queue<T>
where
    T: Clone + Eq + Hash + Send + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Queue<T>
where
    T: Clone + Eq + Hash + Send + 'static,
{
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            ready: Arc::new(Notify::new()),
        }
    }

    /// Queues `item` unless it is queued already.
    pub fn add(&self, item: T) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if !s.dirty.insert(item.clone()) {
            return;
        }
        if !s.processing.contains(&item) {
            s.queue.push_back(item);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Queues `item` after `delay`.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(item);
        });
    }

    /// Queues `item` after its backoff, which doubles with each failure in a row.
    pub fn add_rate_limited(&self, item: T) {
        let failures = match self.state.lock() {
            Ok(mut s) => {
                let n = s.failures.entry(item.clone()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => return,
        };
        self.add_after(item, backoff(failures));
    }

    /// Clears `item`'s failure count after a success.
    pub fn forget(&self, item: &T) {
        if let Ok(mut s) = self.state.lock() {
            s.failures.remove(item);
        }
    }

    /// The next item, once there is one; the caller must call [`Queue::done`] with it.
    pub async fn get(&self) -> T {
        loop {
            let notified = self.ready.notified();
            if let Ok(mut s) = self.state.lock()
                && let Some(item) = s.queue.pop_front()
            {
                s.dirty.remove(&item);
                s.processing.insert(item.clone());
                // Another waiting worker may take the next one.
                if !s.queue.is_empty() {
                    self.ready.notify_one();
                }
                return item;
            }
            notified.await;
        }
    }

    /// Ends processing of `item`; if it was added meanwhile it is queued again.
    pub fn done(&self, item: &T) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// How many items wait (not counting those being processed).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.queue.len()).unwrap_or(0)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// What a reconcile asks for after succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Nothing until something changes.
    No,
    /// Look again after this long (a timer the controller needs, e.g. a grace period).
    After(Duration),
}

/// Runs `workers` concurrent workers taking keys from `queue` and calling `reconcile`;
/// errors are logged and the key retried with backoff. Runs until dropped.
pub async fn run_workers<T, F, Fut, E>(
    controller: &'static str,
    queue: Queue<T>,
    workers: usize,
    reconcile: F,
) where
    T: Clone + Eq + Hash + Send + Display + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send,
    E: Display,
{
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tasks.push(async move {
            loop {
                let key = queue.get().await;
                match reconcile(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Requeue::After(d) = requeue {
                            queue.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller, key = %key, error = %e, "reconcile failed; will retry");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    futures::future::join_all(tasks).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_when_added_during_processing() {
        let q: Queue<&str> = Queue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a, "a");
        // Added while being processed: not handed to another worker now...
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
        // ...but queued again once the first processing ends.
        q.done(&"a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "a");
        q.done(&"a");
        q.done(&"b");
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(5), Duration::from_millis(80));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_come_back_after_backoff_and_successes_reset_it() {
        let q: Queue<u32> = Queue::new();
        let calls = Arc::new(Mutex::new(0u32));
        let c = calls.clone();
        let workers = run_workers("test", q.clone(), 2, move |_k: u32| {
            let c = c.clone();
            async move {
                let mut n = c.lock().unwrap();
                *n += 1;
                if *n < 4 {
                    Err("not yet")
                } else {
                    Ok(Requeue::No)
                }
            }
        });
        let handle = tokio::spawn(workers);
        q.add(7);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*calls.lock().unwrap(), 4);
        assert!(q.state.lock().unwrap().failures.is_empty());
        handle.abort();
    }
}
