//! Logs and traces: log lines on stderr (text or JSON, filtered by `log.level` or `RUST_LOG`)
//! and, when `[tracing] otlp_endpoint` is set, OpenTelemetry spans exported over OTLP/HTTP.
//!
//! The spans themselves are written where the work happens, at `debug` level with targets under
//! `agora`: a request (`agora_server`), its cache lookup and fetch (`agora_core`), upstream
//! requests (`agora_upstream`), git commands (`agora_vcs`) and storage writes (`agora_storage`).
//! With tracing off nothing listens to them at `info`, so each costs one cached "disabled" check.
//! With tracing on, the exporting layer takes every `agora` span and `warn`/`error` events (as
//! span events), whatever the log filter says; the log layer keeps its filter and additionally
//! sees each request's span, whose `trace_id` field puts the trace id into every log line written
//! while the request is served.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat, TracingConfig};

/// The installed exporter, if any. [`Telemetry::shutdown`] sends what is still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (requests then get their own span; see the module docs).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Called once the server stopped
    /// taking requests, so that the last ones reach the collector.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "exporting the last spans failed");
            }
        }
    }
}

/// Installs the log layer and, when configured, the span exporter, as the process's subscriber.
pub fn init(config: &Config) -> Result<Telemetry> {
    let provider = config
        .tracing
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| provider(&config.tracing, endpoint))
        .transpose()?;
    let exporting = provider.is_some();
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // With tracing on, the log layer also takes the request spans (for their trace id), whatever
    // the log level; with it off there are none, and the filter is the log filter alone. Each
    // filter says the most verbose level it takes, so that `debug!` and `trace!` call sites of
    // all crates stay disabled by one level comparison, as without the exporter.
    let log_filter: Box<dyn Filter<Registry> + Send + Sync> = if exporting {
        Box::new(env_filter.or(filter_fn(is_request_span).with_max_level_hint(Level::INFO)))
    } else {
        Box::new(env_filter)
    };
    let log_layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log_layer = match config.log.format {
        LogFormat::Json => log_layer.json().with_filter(log_filter).boxed(),
        LogFormat::Text => log_layer.with_filter(log_filter).boxed(),
    };
    let span_layer = provider.as_ref().map(|p| {
        // Source locations, thread names and busy/idle times would be work on every span of every
        // request, for attributes nobody reading a proxy's traces needs.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("agora"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(is_exported).with_max_level_hint(Level::DEBUG))
    });
    if exporting {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    tracing_subscriber::registry()
        .with(log_layer)
        .with(span_layer)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(endpoint) = &config.tracing.otlp_endpoint {
        tracing::info!(
            endpoint = %agora_secret::redact(&traces_url(endpoint)),
            sample_ratio = config.tracing.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

/// The request spans ([`agora_server::trace::REQUEST_TARGET`]).
fn is_request_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == agora_server::trace::REQUEST_TARGET
}

/// What the exporter takes: agora's spans (`debug` and above), and its warnings and errors as span
/// events.
fn is_exported(meta: &Metadata<'_>) -> bool {
    let level = *meta.level();
    meta.target().starts_with("agora")
        && ((meta.is_span() && level <= Level::DEBUG) || (meta.is_event() && level <= Level::WARN))
}

fn provider(config: &TracingConfig, endpoint: &str) -> Result<SdkTracerProvider> {
    let url = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(config.export_timeout)
        .build()
        .with_context(|| {
            format!(
                "tracing.otlp_endpoint {}: cannot build the exporter",
                agora_secret::redact(&url)
            )
        })?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// The traces URL for a configured endpoint: a collector's base URL (`http://collector:4318`)
/// gets the OTLP/HTTP traces path, a URL with a path is taken as it is.
fn traces_url(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..] != *"/" => endpoint.to_owned(),
        _ => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.corp.example/custom/traces"),
            "https://otel.corp.example/custom/traces"
        );
    }

    #[test]
    fn only_agora_spans_and_warnings_are_exported() {
        // Metadata can't be built by hand outside tracing's macros; check the rule through
        // callsites of the real macros instead.
        struct Probe(std::sync::Mutex<Vec<(String, bool)>>);
        impl tracing::Subscriber for Probe {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, a: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                let m = a.metadata();
                self.0
                    .lock()
                    .unwrap()
                    .push((format!("span {} {}", m.target(), m.name()), is_exported(m)));
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, e: &tracing::Event<'_>) {
                let m = e.metadata();
                self.0.lock().unwrap().push((
                    format!("event {} {}", m.target(), m.level()),
                    is_exported(m),
                ));
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let probe = std::sync::Arc::new(Probe(Default::default()));
        tracing::subscriber::with_default(probe.clone(), || {
            let _a = tracing::debug_span!(target: "agora_core::proxy", "fetch");
            let _b = tracing::debug_span!(target: "tower_http::trace", "request");
            tracing::warn!(target: "agora_vcs::git", "slow");
            tracing::info!(target: "agora_vcs::git", "chatty");
            tracing::error!(target: "hyper::proto", "noise");
        });
        let seen = probe.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("span agora_core::proxy fetch".to_owned(), true),
                ("span tower_http::trace request".to_owned(), false),
                ("event agora_vcs::git WARN".to_owned(), true),
                ("event agora_vcs::git INFO".to_owned(), false),
                ("event hyper::proto ERROR".to_owned(), false),
            ]
        );
    }
}
