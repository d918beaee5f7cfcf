//! Request spans for OpenTelemetry tracing: [`with_request_spans`] wraps the application so that
//! each request runs inside an `info` span with target [`REQUEST_TARGET`], continuing the caller's
//! trace when it sent a W3C `traceparent` header. The span carries the trace id as a field, so
//! that every log line written while serving the request names it, and [`current_trace_id`]
//! gives it to the audit log.
//!
//! Installed only when agora exports traces: without it requests have no span of their own and
//! the deeper `debug` spans (cache lookup, fetch, git, storage) are disabled at `info`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of request spans; the log layer takes these whatever its level.
pub const REQUEST_TARGET: &str = "agora::request";

/// `app` with a span per request; see the module docs.
pub fn with_request_spans(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(request_span))
}

async fn request_span(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!(
        target: REQUEST_TARGET,
        "request",
        otel.name = %format!("{method} {}", route_of(&path)),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = Empty,
        trace_id = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    // Fails only when the span is disabled (no exporter), where there is nothing to continue.
    let _ = span.set_parent(parent);
    let context = span.context();
    let trace = context.span().span_context().clone();
    if trace.is_valid() {
        span.record("trace_id", tracing::field::display(trace.trace_id()));
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// The trace id of the request being served, when it is traced.
pub fn current_trace_id() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let trace = context.span().span_context().clone();
    trace.is_valid().then(|| trace.trace_id().to_string())
}

/// A span name of low cardinality: the kind of request, not the module path.
fn route_of(path: &str) -> &'static str {
    if path.starts_with("/sumdb/") {
        "sumdb"
    } else if path.ends_with("/@v/list") {
        "list"
    } else if path.ends_with("/@latest") {
        "latest"
    } else if path.contains("/@v/") {
        if path.ends_with(".info") {
            "info"
        } else if path.ends_with(".mod") {
            "mod"
        } else if path.ends_with(".zip") {
            "zip"
        } else {
            "artifact"
        }
    } else if path.starts_with("/-/admin/") {
        "admin"
    } else if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/version") {
        "operations"
    } else if path.starts_with("/index") {
        "index"
    } else {
        "page"
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn span_names_name_the_kind_of_request() {
        for (path, route) in [
            ("/golang.org/x/text/@v/list", "list"),
            ("/golang.org/x/text/@latest", "latest"),
            ("/golang.org/x/text/@v/v0.3.0.info", "info"),
            ("/golang.org/x/text/@v/v0.3.0.mod", "mod"),
            ("/golang.org/x/text/@v/v0.3.0.zip", "zip"),
            ("/sumdb/sum.golang.org/lookup/x@v1", "sumdb"),
            ("/-/admin/quarantine", "admin"),
            ("/readyz", "operations"),
            ("/index", "index"),
            ("/golang.org/x/text", "page"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }
}
