//! The gate around every fetch from a source: the concurrency limit of its kind and its metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::source::{SourceError, SourceKind};

/// Concurrency limits and metrics around every fetch from a source.
pub(super) struct Gate {
    pub(super) metrics: Arc<Metrics>,
    pub(super) upstream: tokio::sync::Semaphore,
    pub(super) git: tokio::sync::Semaphore,
    pub(super) queue_timeout: Duration,
}

/// Runs one fetch from `source` within the concurrency limit for its kind of source, recording
/// its duration and outcome. Traced as one span (queueing included), named by source and request.
#[tracing::instrument(level = "debug", name = "source", skip_all, fields(
    otel.name = %format!("{} {kind}", kind_of_source.label()),
    source.kind = kind_of_source.label(),
    source.request = kind,
))]
pub(super) async fn timed<T>(
    gate: &Gate,
    kind_of_source: SourceKind,
    kind: &'static str,
    fetch: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let label = kind_of_source.label();
    let slots = match kind_of_source {
        SourceKind::Git => &gate.git,
        SourceKind::Upstream => &gate.upstream,
    };
    let _permit = tokio::time::timeout(gate.queue_timeout, slots.acquire())
        .await
        .map_err(|_| {
            SourceError::Overloaded(format!(
                "too many {label} fetches in progress; waited {:?} for a slot",
                gate.queue_timeout
            ))
        })?
        .map_err(|_| SourceError::Overloaded("shutting down".into()))?;
    let started = std::time::Instant::now();
    let result = fetch.await;
    gate.metrics
        .record_fetch(label, kind, result.is_ok(), started.elapsed());
    result
}
