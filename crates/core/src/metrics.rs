//! Prometheus metrics: what the proxy does (cache hits and misses, fetch durations per source,
//! single-flight waits, storage errors) and what the server serves (requests by route and status,
//! bytes). Labels are fixed, small sets (never module paths), so cardinality stays bounded and no
//! private module name leaks into a metrics system.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    source: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LockWaitLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    result: &'static str,
}

/// Every metric agora exports. Cheap to share (`Arc<Metrics>`); recording is lock-free.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<RouteLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    fetch_seconds: Family<FetchLabels, Histogram>,
    singleflight_waits: Counter,
    storage_errors: Counter,
    fetches_in_flight: Gauge,
    lock_acquired: Counter,
    lock_waits: Family<LockWaitLabels, Counter>,
    lock_errors: Counter,
    verifications: Family<VerificationLabels, Counter>,
    stored_bytes: Family<KindLabels, Gauge>,
    stored_artifacts: Family<KindLabels, Gauge>,
    evictions: Family<KindLabels, Counter>,
    evicted_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agora");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let bytes = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes by route (as declared by Content-Length)",
            bytes.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cache lookups by artifact kind and result (hit, miss, stale; absent: a miss answered from the not-found memory, also counted as a miss)",
            cache.clone(),
        );
        let fetch_seconds = Family::<FetchLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "fetch_duration_seconds",
            "Fetches from an upstream proxy or git by artifact kind and outcome",
            fetch_seconds.clone(),
        );
        let singleflight_waits = Counter::default();
        registry.register(
            "singleflight_waits",
            "Requests that waited for a fetch another request had started",
            singleflight_waits.clone(),
        );
        let storage_errors = Counter::default();
        registry.register(
            "storage_errors",
            "Failed storage operations",
            storage_errors.clone(),
        );
        let fetches_in_flight = Gauge::default();
        registry.register(
            "fetches_in_flight",
            "Fetches currently running",
            fetches_in_flight.clone(),
        );
        let lock_acquired = Counter::default();
        registry.register(
            "lock_acquired",
            "Cross-replica fetch locks this replica took in order to fetch",
            lock_acquired.clone(),
        );
        let lock_waits = Family::<LockWaitLabels, Counter>::default();
        registry.register(
            "lock_waits",
            "Fetches another replica held the lock for, by outcome: served (its answer was read \
             from storage), took_over (it finished without storing; fetched here) or timed_out \
             (waited queue_timeout; fetched here)",
            lock_waits.clone(),
        );
        let lock_errors = Counter::default();
        registry.register(
            "lock_errors",
            "Lock service failures; the fetch went ahead without cross-replica coordination",
            lock_errors.clone(),
        );
        let verifications = Family::<VerificationLabels, Counter>::default();
        registry.register(
            "sumdb_verifications",
            "Checks of a go.mod or zip against the checksum database before caching, by result: \
             ok, mismatch, not_found, security (the database misbehaved) or unavailable",
            verifications.clone(),
        );
        let stored_bytes = Family::<KindLabels, Gauge>::default();
        registry.register(
            "stored_bytes",
            "Bytes in the store by artifact kind (info, mod, zip), as the index counts them",
            stored_bytes.clone(),
        );
        let stored_artifacts = Family::<KindLabels, Gauge>::default();
        registry.register(
            "stored_artifacts",
            "Artifacts in the store by kind, as the index counts them",
            stored_artifacts.clone(),
        );
        let evictions = Family::<KindLabels, Counter>::default();
        registry.register(
            "evictions",
            "Artifacts deleted by retention, by kind",
            evictions.clone(),
        );
        let evicted_bytes = Counter::default();
        registry.register(
            "evicted_bytes",
            "Bytes freed by retention",
            evicted_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes,
            cache,
            fetch_seconds,
            singleflight_waits,
            storage_errors,
            fetches_in_flight,
            lock_acquired,
            lock_waits,
            lock_errors,
            verifications,
            stored_bytes,
            stored_artifacts,
            evictions,
            evicted_bytes,
        }
    }

    /// Cache answers for module artifacts, lists and `@latest` so far: (from the cache: hits and
    /// stale answers, from a source: misses), for the status page's hit ratio.
    pub fn cache_answers(&self) -> (u64, u64) {
        let count = |kind, result| {
            self.cache
                .get_or_create(&CacheLabels { kind, result })
                .get()
        };
        let mut cached = 0;
        let mut fetched = 0;
        for kind in ["info", "mod", "zip", "list", "latest"] {
            cached += count(kind, "hit") + count(kind, "stale");
            fetched += count(kind, "miss");
        }
        (cached, fetched)
    }

    /// What the store holds of one kind (`info`, `mod`, `zip`), from the index.
    pub fn set_stored(&self, kind: &'static str, artifacts: u64, bytes: u64) {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.stored_artifacts
            .get_or_create(&KindLabels { kind })
            .set(clamp(artifacts));
        self.stored_bytes
            .get_or_create(&KindLabels { kind })
            .set(clamp(bytes));
    }

    /// One artifact deleted by retention.
    pub fn record_eviction(&self, kind: &'static str, bytes: u64) {
        self.evictions.get_or_create(&KindLabels { kind }).inc();
        self.evicted_bytes.inc_by(bytes);
    }

    /// One served request. `route` is one of a fixed set (`list`, `info`, `zip`, `sumdb`, ...).
    pub fn record_request(&self, route: &'static str, status: u16, bytes: u64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        if bytes > 0 {
            self.bytes
                .get_or_create(&RouteLabels { route })
                .inc_by(bytes);
        }
    }

    /// A cache lookup for `kind` (`list`, `latest`, `info`, `mod`, `zip`, `tile`) with `result`
    /// `hit`, `miss`, `stale` or `absent` (a miss that the not-found memory answered).
    pub fn record_cache(&self, kind: &'static str, result: &'static str) {
        self.cache
            .get_or_create(&CacheLabels { kind, result })
            .inc();
    }

    /// A finished fetch from `source` (`upstream` or `git`).
    pub fn record_fetch(&self, source: &'static str, kind: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.fetch_seconds
            .get_or_create(&FetchLabels {
                source,
                kind,
                outcome,
            })
            .observe(took.as_secs_f64());
    }

    pub fn record_singleflight_wait(&self) {
        self.singleflight_waits.inc();
    }

    pub fn record_storage_error(&self) {
        self.storage_errors.inc();
    }

    pub fn fetch_started(&self) {
        self.fetches_in_flight.inc();
    }

    pub fn fetch_finished(&self) {
        self.fetches_in_flight.dec();
    }

    pub fn record_lock_acquired(&self) {
        self.lock_acquired.inc();
    }

    /// A wait for another replica's fetch ended: `served`, `took_over` or `timed_out`.
    pub fn record_lock_wait(&self, outcome: &'static str) {
        self.lock_waits
            .get_or_create(&LockWaitLabels { outcome })
            .inc();
    }

    /// A checksum-database verification and its result (see the metric's help).
    pub fn record_verification(&self, result: &'static str) {
        self.verifications
            .get_or_create(&VerificationLabels { result })
            .inc();
    }

    pub fn record_lock_error(&self) {
        self.lock_errors.inc();
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_values() {
        let m = Metrics::new();
        m.record_request("zip", 200, 1234);
        m.record_cache("zip", "miss");
        m.record_fetch("git", "zip", true, Duration::from_millis(30));
        m.record_singleflight_wait();
        let text = m.render();
        assert!(
            text.contains("agora_http_requests_total{route=\"zip\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("agora_http_response_bytes_total{route=\"zip\"} 1234"),
            "{text}"
        );
        assert!(
            text.contains("agora_cache_lookups_total{kind=\"zip\",result=\"miss\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "agora_fetch_duration_seconds_count{source=\"git\",kind=\"zip\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("agora_singleflight_waits_total 1"), "{text}");
    }

    #[test]
    fn renders_lock_counters() {
        let m = Metrics::new();
        m.record_lock_acquired();
        m.record_lock_wait("served");
        m.record_lock_error();
        let text = m.render();
        assert!(text.contains("agora_lock_acquired_total 1"), "{text}");
        assert!(
            text.contains("agora_lock_waits_total{outcome=\"served\"} 1"),
            "{text}"
        );
        assert!(text.contains("agora_lock_errors_total 1"), "{text}");
    }
}
