//! Cross-replica fetch locks: one fetch per artifact however many agora replicas share a store.
//!
//! [`crate::singleflight`] makes concurrent requests inside one process share one fetch. Replicas
//! behind a load balancer that share one bucket need a lock they all see: [`FetchLock`] is that
//! lock, [`RedisLock`] implements it over Redis, and [`crate::ProxyBuilder::lock`] plugs it in
//! (the waiting and re-checking of storage lives in the proxy, which knows what each fetch
//! stores).
//!
//! # Redis protocol
//! - acquire: `SET agora:lock:<key> <random token> NX PX <ttl>`; a reply of nil means another
//!   replica holds it.
//! - while held, a task renews the TTL every `ttl / 3` with a script that extends it only if the
//!   value is still our token, so an expired lock taken over by another replica is never extended.
//! - release (when the [`LockGuard`] is dropped): a check-and-delete script, for the same reason.
//!
//! # Failure is never fatal
//! The lock saves work; it is not what keeps the cache correct. Artifacts are write-once and
//! published atomically, and a writer that loses the race serves the winner's bytes, so two
//! replicas fetching the same version at once cost an extra fetch and nothing else. Hence every
//! problem here (Redis down at start or later, slow answers, a lock lost while renewing) degrades to
//! per-replica single-flight with a rate-limited warning, and never becomes an error for a client:
//! every Redis call is bounded by [`RedisLockOptions::op_timeout`], and after a failure calls fail
//! fast for a few seconds instead of each request paying the timeout.

use agora_secret::redact;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// A lock shared by every replica, taken by the replica that fetches an artifact.
#[async_trait]
pub trait FetchLock: Send + Sync {
    /// Tries once, without waiting, to take the lock named `key` (a single-flight key such as
    /// `zip:example.com/m@v1.0.0`). `Ok(Some)`: held until the guard is dropped. `Ok(None)`:
    /// another holder has it. `Err`: the lock service cannot tell; the caller goes on without it.
    async fn try_acquire(&self, key: &str) -> Result<Option<LockGuard>, LockError>;

    /// How often a replica waiting for another one's fetch looks at storage and at the lock.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(200)
    }
}

/// Why the lock service could not answer. Never shown to clients: the proxy logs it and fetches
/// without cross-replica coordination.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("invalid lock service URL: {0}")]
    Config(String),
    #[error("lock service {op} failed: {reason}")]
    Unavailable { op: &'static str, reason: String },
    #[error("lock service {op} did not answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
}

/// A held lock. Dropping it releases the lock (in the background, best effort: if that fails the
/// lock expires after its TTL).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    _release: oneshot::Sender<()>,
    lost: Arc<AtomicBool>,
}

/// The implementation's side of a [`LockGuard`]: kept by the task that renews and releases the
/// lock.
pub struct LockHolder {
    released: oneshot::Receiver<()>,
    lost: Arc<AtomicBool>,
}

impl LockGuard {
    /// A guard for the caller and the holder side for the implementation's renewal task.
    pub fn pair() -> (LockGuard, LockHolder) {
        let (tx, rx) = oneshot::channel();
        let lost = Arc::new(AtomicBool::new(false));
        (
            LockGuard {
                _release: tx,
                lost: lost.clone(),
            },
            LockHolder { released: rx, lost },
        )
    }

    /// Whether the lock was lost while held (it expired, or another holder took it over): another
    /// replica may be fetching the same artifact.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl LockHolder {
    /// Resolves once the guard is dropped. Await it at most once to completion.
    pub async fn released(&mut self) {
        // An error only means the sender was dropped, which is exactly the signal.
        let _ = (&mut self.released).await;
    }

    /// Records that the lock was lost while its guard is still alive.
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }
}

/// Settings of [`RedisLock`].
#[derive(Clone)]
pub struct RedisLockOptions {
    /// `redis://[user:password@]host:port[/db]` (or `redis+unix://`). May hold a password, so it
    /// is never logged; `Debug` redacts it.
    pub url: String,
    /// Lifetime of a lock nobody renews: how long the others wait for a replica that died while
    /// fetching. Renewed every `ttl / 3` while held. Keep it below the proxy's `queue_timeout`, so
    /// a waiter takes over from a dead holder before it gives up waiting.
    pub ttl: Duration,
    /// How often a waiting replica checks storage and the lock.
    pub poll: Duration,
    /// Longest wait for any one Redis call (connecting included).
    pub op_timeout: Duration,
}

impl RedisLockOptions {
    /// The defaults (30 s TTL, 200 ms poll, 1 s per Redis call) for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisLockOptions {
            url: url.into(),
            ttl: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            op_timeout: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for RedisLockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockOptions")
            .field("url", &redact(&self.url))
            .field("ttl", &self.ttl)
            .field("poll", &self.poll)
            .field("op_timeout", &self.op_timeout)
            .finish()
    }
}

/// After a failed Redis call, further calls fail at once for this long: during an outage a cold
/// fetch then costs one `op_timeout` every few seconds, not one per request.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Renews the TTL only while the lock still holds our token (`ARGV[1]`).
const RENEW_LUA: &str = r"
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the lock only while it still holds our token.
const RELEASE_LUA: &str = r"
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0";

/// [`FetchLock`] over one Redis server. Cheap to clone.
#[derive(Clone)]
pub struct RedisLock {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    client: redis::Client,
    /// Made on first use (it needs a Tokio runtime); it connects lazily and reconnects by itself.
    conn: OnceLock<ConnectionManager>,
    ttl: Duration,
    poll: Duration,
    op_timeout: Duration,
    /// Calls fail fast until then (see [`PAUSE_AFTER_FAILURE`]).
    paused_until: Mutex<Option<Instant>>,
    renew: Script,
    release: Script,
    renew_warning: WarnEvery,
}

impl RedisLock {
    /// A lock client for `opts.url`. It does not connect: the first lock request does, and later
    /// ones reconnect, so agora starts (and serves, without cross-replica coordination) while Redis
    /// is down. Needs no Tokio runtime. Fails only for a URL that cannot be parsed (the message
    /// shows the URL with its password redacted).
    pub fn new(opts: RedisLockOptions) -> Result<Self, LockError> {
        // The parse error is not shown: it could quote the URL, password included.
        let client = redis::Client::open(opts.url.as_str()).map_err(|_| {
            LockError::Config(format!(
                "{}: not a redis:// or redis+unix:// URL (TLS is not supported)",
                redact(&opts.url)
            ))
        })?;
        Ok(RedisLock {
            inner: Arc::new(RedisInner {
                client,
                conn: OnceLock::new(),
                ttl: opts.ttl.max(Duration::from_millis(30)),
                poll: opts.poll.max(Duration::from_millis(1)),
                op_timeout: opts.op_timeout.max(Duration::from_millis(1)),
                paused_until: Mutex::new(None),
                renew: Script::new(RENEW_LUA),
                release: Script::new(RELEASE_LUA),
                renew_warning: WarnEvery::new(Duration::from_secs(30)),
            }),
        })
    }

    /// Answers PING, for readiness checks and `doctor`.
    pub async fn ping(&self) -> Result<(), LockError> {
        let cmd = redis::cmd("PING");
        self.inner
            .call("ping", |mut c| async move {
                cmd.query_async::<String>(&mut c).await.map(drop)
            })
            .await
    }

    /// Renews `key` while `holder`'s guard lives, then releases it.
    async fn hold(self, key: String, token: String, mut holder: LockHolder) {
        let inner = &self.inner;
        let every = inner.ttl / 3;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = holder.released() => break,
                _ = ticks.tick() => match inner.renew(&key, &token).await {
                    Ok(true) => {}
                    Ok(false) => {
                        holder.mark_lost();
                        tracing::warn!(
                            lock.key = %key,
                            "fetch lock expired or was taken over while fetching; the fetch goes on \
                             (the write is atomic) but another replica may fetch the same artifact"
                        );
                        // Not ours any more: neither renew nor release it.
                        return;
                    }
                    // Maybe a blip: the next tick tries again, and if the TTL runs out first the
                    // next renewal reports the loss.
                    Err(err) => {
                        if inner.renew_warning.ready() {
                            tracing::warn!(lock.key = %key, error = %err, "cannot renew fetch lock");
                        }
                    }
                },
            }
        }
        if let Err(err) = inner.release(&key, &token).await {
            tracing::debug!(lock.key = %key, error = %err, "cannot release fetch lock; it will expire");
        }
    }
}

#[async_trait]
impl FetchLock for RedisLock {
    async fn try_acquire(&self, key: &str) -> Result<Option<LockGuard>, LockError> {
        let inner = &self.inner;
        let rkey = redis_key(key);
        let token = new_token();
        let cmd = redis::cmd("SET")
            .arg(&rkey)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(inner.ttl))
            .to_owned();
        let set = inner
            .call("acquire", |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await;
        match set {
            Ok(Some(_)) => {
                let (guard, holder) = LockGuard::pair();
                tokio::spawn(self.clone().hold(rkey, token, holder));
                Ok(Some(guard))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                if matches!(err, LockError::Timeout { .. }) {
                    // The SET may have landed after all; a lock nobody knows it holds would make
                    // the other replicas wait a whole TTL. Best effort, in the background.
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let _ = inner.release_unpaused(&rkey, &token).await;
                    });
                }
                Err(err)
            }
        }
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll
    }
}

impl RedisInner {
    fn connection(&self) -> Result<ConnectionManager, LockError> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        // Few, quick retries: every call is bounded by `op_timeout` anyway, and the manager starts
        // a fresh attempt whenever a call finds the connection broken.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| LockError::Unavailable {
                op: "connect",
                reason: e.to_string(),
            })?;
        Ok(self.conn.get_or_init(|| manager).clone())
    }

    /// Runs one Redis call within `op_timeout`, failing fast while paused after a failure.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, LockError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        if let Some(until) = *lock(&self.paused_until) {
            if Instant::now() < until {
                return Err(LockError::Unavailable {
                    op,
                    reason: "failed recently; retrying in a few seconds".into(),
                });
            }
        }
        let result = self.call_unpaused(op, f).await;
        *lock(&self.paused_until) = match result {
            Ok(_) => None,
            Err(_) => Some(Instant::now() + PAUSE_AFTER_FAILURE),
        };
        result
    }

    async fn call_unpaused<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, LockError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(self.op_timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LockError::Unavailable {
                op,
                reason: e.to_string(),
            }),
            Err(_) => Err(LockError::Timeout {
                op,
                after: self.op_timeout,
            }),
        }
    }

    /// `Ok(false)`: the lock no longer holds our token.
    async fn renew(&self, key: &str, token: &str) -> Result<bool, LockError> {
        let ttl = millis(self.ttl);
        self.call("renew", |mut c| async move {
            let n: i64 = self
                .renew
                .key(key)
                .arg(token)
                .arg(ttl)
                .invoke_async(&mut c)
                .await?;
            Ok(n == 1)
        })
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<(), LockError> {
        self.call("release", |c| self.release_script(c, key, token))
            .await
    }

    /// [`release`](Self::release) even while calls are paused after a failure (cleaning up after
    /// a `SET` that timed out but may have landed).
    async fn release_unpaused(&self, key: &str, token: &str) -> Result<(), LockError> {
        self.call_unpaused("release", |c| self.release_script(c, key, token))
            .await
    }

    async fn release_script(
        &self,
        mut c: ConnectionManager,
        key: &str,
        token: &str,
    ) -> RedisResult<()> {
        self.release
            .key(key)
            .arg(token)
            .invoke_async::<i64>(&mut c)
            .await
            .map(drop)
    }
}

/// Prefix of every lock key agora writes to Redis.
pub const KEY_PREFIX: &str = "agora:lock:";

/// Plain keys up to this length are used as they are; longer ones are hashed.
const MAX_PLAIN_KEY: usize = 100;

/// The Redis key for a lock name: `agora:lock:<name>` for short printable names (readable in
/// `redis-cli`), else `agora:lock:#<sha256 hex>:<readable start>`. Plain names never contain `#`,
/// so the two forms cannot collide.
pub fn redis_key(name: &str) -> String {
    let plain =
        name.len() <= MAX_PLAIN_KEY && name.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    if plain {
        return format!("{KEY_PREFIX}{name}");
    }
    let readable: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .take(40)
        .collect();
    format!(
        "{KEY_PREFIX}#{}:{readable}",
        hex(&Sha256::digest(name.as_bytes()))
    )
}

/// A token unique to one acquisition (it only has to differ from every other holder's, not be
/// secret): process id, time, a counter and per-process random hasher keys, hashed.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let random = std::collections::hash_map::RandomState::new().hash_one((n, nanos));
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(n.to_le_bytes());
    h.update(random.to_le_bytes());
    hex(&h.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Poisoning only means another thread panicked while holding the lock; the value is still fine.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rate limit for a warning that could otherwise repeat on every request (a Redis outage).
pub(crate) struct WarnEvery {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl WarnEvery {
    pub(crate) fn new(every: Duration) -> Self {
        WarnEvery {
            every,
            last: Mutex::new(None),
        }
    }

    /// True at most once per period: the caller logs then.
    pub(crate) fn ready(&self) -> bool {
        let mut last = lock(&self.last);
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_when_short_and_hashed_otherwise() {
        assert_eq!(
            redis_key("zip:example.com/m@v1.0.0"),
            "agora:lock:zip:example.com/m@v1.0.0"
        );
        let long = format!("info:example.com/{}@main", "x".repeat(200));
        let k = redis_key(&long);
        assert!(k.starts_with("agora:lock:#"), "{k}");
        assert!(k.len() < 140, "{k}");
        assert_ne!(k, redis_key(&format!("{long}y")));
        // Spaces and `#` are never used verbatim.
        assert!(redis_key("info:m@a b").starts_with("agora:lock:#"));
        assert!(redis_key("info:m@a#b").starts_with("agora:lock:#"));
    }

    #[test]
    fn tokens_differ() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token());
    }

    #[test]
    fn urls_are_redacted() {
        let dbg = format!("{:?}", RedisLockOptions::new("redis://:pw@h:1"));
        assert!(!dbg.contains("pw"), "{dbg}");
    }

    #[test]
    fn invalid_url_is_a_config_error_without_the_secret() {
        let err = RedisLock::new(RedisLockOptions::new("http://:pw@nowhere"))
            .err()
            .expect("not a redis URL");
        assert!(matches!(err, LockError::Config(_)), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn warnings_are_rate_limited() {
        let w = WarnEvery::new(Duration::from_secs(60));
        assert!(w.ready());
        assert!(!w.ready());
    }

    #[tokio::test]
    async fn guard_drop_signals_the_holder() {
        let (guard, mut holder) = LockGuard::pair();
        assert!(!guard.is_lost());
        holder.mark_lost();
        assert!(guard.is_lost());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), holder.released())
            .await
            .expect("released on drop");
    }
}
