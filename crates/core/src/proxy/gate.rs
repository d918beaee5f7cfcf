//! The gate around every fetch from a source: the concurrency limit of its kind, its metrics and
//! the source's health record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_upstream::WalkError;

use crate::health::{Outcome, SourceHealth};
use crate::metrics::Metrics;
use crate::source::{SourceError, SourceKind};

/// Concurrency limits and metrics around every fetch from a source.
pub(super) struct Gate {
    pub(super) metrics: Arc<Metrics>,
    pub(super) upstream: tokio::sync::Semaphore,
    pub(super) git: tokio::sync::Semaphore,
    pub(super) queue_timeout: Duration,
    pub(super) health: SourceHealth,
    /// Fetches waiting for a slot.
    pub(super) queued: AtomicUsize,
}

/// Runs one fetch from the source `name` within the concurrency limit for its kind of source,
/// recording its duration and outcome. Traced as one span (queueing included), named by source
/// and request.
#[tracing::instrument(level = "debug", name = "source", skip_all, fields(
    otel.name = %format!("{} {kind}", kind_of_source.label()),
    source.kind = kind_of_source.label(),
    source.name = name,
    source.request = kind,
))]
pub(super) async fn timed<T>(
    gate: &Gate,
    kind_of_source: SourceKind,
    name: &str,
    kind: &'static str,
    fetch: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let label = kind_of_source.label();
    let slots = match kind_of_source {
        SourceKind::Git => &gate.git,
        SourceKind::Upstream => &gate.upstream,
    };
    let waiting = Waiting::new(&gate.queued);
    let _permit = tokio::time::timeout(gate.queue_timeout, slots.acquire())
        .await
        .map_err(|_| {
            SourceError::Overloaded(format!(
                "too many {label} fetches in progress; waited {:?} for a slot",
                gate.queue_timeout
            ))
        })?
        .map_err(|_| SourceError::Overloaded("shutting down".into()))?;
    drop(waiting);
    let started = std::time::Instant::now();
    let result = fetch.await;
    let took = started.elapsed();
    gate.metrics.record_fetch(label, kind, result.is_ok(), took);
    // Checksum-database tiles go through the upstream slots but are a source of their own kind.
    let health_kind = if kind == "tile" {
        "checksum database"
    } else {
        label
    };
    match &result {
        Ok(_) => gate.health.note(name, health_kind, Outcome::Answered(took)),
        Err(e) if e.is_not_found() => gate.health.note(name, health_kind, Outcome::Answered(took)),
        // Our own queue or configuration, not the source's doing.
        Err(SourceError::Overloaded(_) | SourceError::Disabled) => {}
        Err(e) => gate
            .health
            .note(name, health_kind, Outcome::Failed(&e.to_string())),
    }
    result
}

/// Counts a fetch as queued until dropped (also when the caller gives up waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::Relaxed);
        Waiting(queued)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
