//! In-process single-flight: concurrent callers for one key share one execution.
//!
//! The work runs in its own spawned task, so it finishes (and fills the cache) even when every
//! caller has gone away, and a panic in it becomes an error for the waiters, not a crash.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

type Flight<V> = Shared<BoxFuture<'static, Result<V, Arc<str>>>>;

/// A group of in-flight calls keyed by `K`, each producing a cloneable `V`.
pub struct SingleFlight<K, V> {
    inflight: Arc<Mutex<HashMap<K, Flight<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Arc::default(),
        }
    }
}

/// Whether the caller started the work or joined work already under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Waiter,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `work` unless a call for `key` is already in flight, in which case waits for that one.
    /// `Err` carries a panic message from the task.
    pub async fn run<F>(&self, key: K, work: F) -> (Result<V, Arc<str>>, Role)
    where
        F: std::future::Future<Output = V> + Send + 'static,
    {
        let (flight, role) = {
            let mut map = self.inflight.lock().expect("single-flight map poisoned");
            if let Some(f) = map.get(&key) {
                (f.clone(), Role::Waiter)
            } else {
                let map_ref = Arc::clone(&self.inflight);
                let k = key.clone();
                // The work keeps the leader's span: its fetch belongs to the leader's trace.
                let handle = tokio::spawn(tracing::Instrument::in_current_span(async move {
                    let v = work.await;
                    map_ref
                        .lock()
                        .expect("single-flight map poisoned")
                        .remove(&k);
                    v
                }));
                let inflight = Arc::clone(&self.inflight);
                let k = key.clone();
                let flight: Flight<V> = async move {
                    handle.await.map_err(|e| {
                        // The task panicked or was cancelled before it could remove its entry.
                        inflight
                            .lock()
                            .expect("single-flight map poisoned")
                            .remove(&k);
                        Arc::<str>::from(format!("background fetch failed: {e}"))
                    })
                }
                .boxed()
                .shared();
                map.insert(key, flight.clone());
                (flight, Role::Leader)
            }
        };
        (flight.await, role)
    }

    /// Number of keys in flight (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_execution() {
        let sf = Arc::new(SingleFlight::<String, usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k".to_string(), async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 42
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, role) = t.await.unwrap();
            assert_eq!(v.unwrap(), 42);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn work_survives_caller_cancellation_and_panics_become_errors() {
        let sf = Arc::new(SingleFlight::<u8, u8>::default());
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let caller = {
            let sf = sf.clone();
            tokio::spawn(async move {
                sf.run(1, async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    d.fetch_add(1, Ordering::SeqCst);
                    1
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "work finished without its caller"
        );

        let (r, _) = sf.run(2, async { panic!("boom") }).await;
        assert!(r.unwrap_err().contains("background fetch failed"));
        assert!(sf.is_empty());
    }
}
