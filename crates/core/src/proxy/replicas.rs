//! Single-flight in this process, and turns among the replicas that share a store.
//!
//! Several agora processes may share one store. Each fetch runs once per process
//! ([`crate::singleflight::SingleFlight`]); with a [`crate::FetchLock`]
//! ([`crate::ProxyBuilder::lock`]) it also runs once across processes. Inside the single-flight
//! leader's work, `take_turn`:
//! 1. takes the lock for the flight key, and re-reads storage first (the previous holder may have
//!    just stored the answer), fetching only if it is still missing;
//! 2. when another replica holds the lock, polls storage every `poll` until the answer appears
//!    (write-once artifacts: the object exists; list/`@latest`: the stored copy differs from the
//!    one this request saw), or until the lock is free again (the holder failed or died: take it
//!    and fetch here);
//! 3. after waiting `queue_timeout`, fetches here without the lock, with a warning: a stuck holder
//!    or a misbehaving Redis costs a duplicate fetch, never a failed request (the other choice, 503,
//!    would turn a Redis problem into client errors);
//! 4. when the lock service fails, warns (at most every 30 s) and fetches here: per-replica
//!    single-flight, as without Redis.
//!
//! `.info` for a query that is not a canonical version (a branch, a commit prefix) cannot know the
//! key its answer will be stored under, so a waiter only waits for the lock to be free and then
//! fetches itself (the replicas resolve such a query one after another, not all at once).
//! Failed fetches are not shared either: after a holder's "not found" each waiting replica asks
//! once itself.

use super::fetch::Outcome;
use super::Proxy;
use crate::error::CoreError;
use crate::lock::LockGuard;

/// What the cross-replica lock decided for one fetch.
pub(super) enum Turn<T> {
    /// Another replica stored the answer: serve it, do not fetch.
    Stored(T),
    /// Fetch here. The guard, when there is one, tells the other replicas to wait; it must live
    /// until the answer is stored.
    Fetch(Option<LockGuard>),
}

impl Proxy {
    /// Decides, with the replicas sharing the lock, whether this replica fetches `flight_key`
    /// (see the module docs). `stored` reads the answer another replica may have stored.
    pub(super) async fn take_turn<T, F, Fut>(
        &self,
        flight_key: &str,
        mut stored: F,
    ) -> Result<Turn<T>, CoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, CoreError>>,
    {
        let Some(lock) = &self.inner.lock else {
            return Ok(Turn::Fetch(None));
        };
        let metrics = &self.inner.gate.metrics;
        let started = tokio::time::Instant::now();
        let deadline = started + self.inner.opts.queue_timeout;
        let mut waited = false;
        loop {
            match lock.try_acquire(flight_key).await {
                Ok(Some(guard)) => {
                    metrics.record_lock_acquired();
                    // The previous holder may have stored the answer just before releasing.
                    if let Some(found) = stored().await? {
                        if waited {
                            metrics.record_lock_wait("served");
                        }
                        return Ok(Turn::Stored(found));
                    }
                    if waited {
                        metrics.record_lock_wait("took_over");
                        tracing::debug!(
                            fetch.key = flight_key,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "the replica holding the fetch lock stored nothing; fetching here"
                        );
                    }
                    return Ok(Turn::Fetch(Some(guard)));
                }
                Ok(None) => {}
                Err(err) => {
                    metrics.record_lock_error();
                    if self.inner.lock_warning.ready() {
                        tracing::warn!(
                            fetch.key = flight_key,
                            error = %err,
                            "fetch lock unavailable; fetching without coordinating with other \
                             replicas (further warnings suppressed for 30 s)"
                        );
                    }
                    return Ok(Turn::Fetch(None));
                }
            }
            // Another replica is fetching: wait for its answer to show up in storage.
            waited = true;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                metrics.record_lock_wait("timed_out");
                tracing::warn!(
                    fetch.key = flight_key,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "another replica has been fetching for longer than queue_timeout; fetching \
                     here too"
                );
                return Ok(Turn::Fetch(None));
            }
            tokio::time::sleep(lock.poll_interval().min(deadline - now)).await;
            if let Some(found) = stored().await? {
                metrics.record_lock_wait("served");
                return Ok(Turn::Stored(found));
            }
        }
    }

    pub(super) async fn fly<F>(&self, key: String, work: F) -> Outcome
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        let metrics = self.inner.gate.metrics.clone();
        let work = async move {
            metrics.fetch_started();
            let out = work.await;
            metrics.fetch_finished();
            out
        };
        let (result, role) = self.inner.flights.run(key, work).await;
        if role == crate::singleflight::Role::Waiter {
            self.inner.gate.metrics.record_singleflight_wait();
        }
        result.map_err(|panic| CoreError::Internal(panic.to_string()))?
    }
}
