//! The router and the handlers. Handlers parse, call `agora-core`, and map the result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{FetchMode, Freshness, Proxy, Served, SumdbProxy};
use agora_storage::{ArtifactKind, CachePolicy};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::request::{self, ProxyRequest};

/// Everything the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub proxy: Proxy,
    pub sumdb: Arc<SumdbProxy>,
}

const CACHE_STATUS: HeaderName = HeaderName::from_static("x-agora-cache");
const DISABLE_FETCH: &str = "disable-module-fetch";

/// Builds the application: GOPROXY and checksum-database routes behind a catch-all (module paths
/// contain slashes, so they cannot be expressed as route patterns), plus operational endpoints.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .fallback(goproxy)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Core(Arc::new(agora_core::CoreError::Internal(
                "handler panicked".into(),
            )))
            .into_response()
        }))
        // Bounds the time to the response head (a cold fetch included); bodies stream after.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(900),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.proxy.storage().check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "storage not ready\n").into_response()
        }
    }
}

async fn version() -> Response {
    let body = serde_json::json!({
        "name": "agora",
        "version": env!("CARGO_PKG_VERSION"),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn goproxy(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(AppError::MethodNotAllowed);
    }
    let req = request::parse(uri.path())?;
    let mode = if headers
        .get(DISABLE_FETCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        FetchMode::CacheOnly
    } else {
        FetchMode::Fetch
    };
    let proxy = &state.proxy;
    match req {
        ProxyRequest::List(module) => {
            let served = proxy.list(&module, mode).await?;
            Ok(small(
                served,
                "text/plain; charset=utf-8",
                CachePolicy::Mutable,
            ))
        }
        ProxyRequest::Latest(module) => {
            let served = proxy.latest(&module, mode).await?;
            Ok(small(served, "application/json", CachePolicy::Mutable))
        }
        ProxyRequest::Artifact {
            module,
            version,
            kind,
        } => match kind {
            ArtifactKind::Info => {
                let served = proxy.info(&module, &version, mode).await?;
                // A query (branch, commit) may resolve differently tomorrow; a version never does.
                let policy = if agora_core::validate::is_canonical(&version) {
                    CachePolicy::Immutable
                } else {
                    CachePolicy::Mutable
                };
                Ok(small(served, "application/json", policy))
            }
            ArtifactKind::Mod => {
                let served = proxy.go_mod(&module, &version, mode).await?;
                Ok(small(
                    served,
                    "text/plain; charset=utf-8",
                    CachePolicy::Immutable,
                ))
            }
            ArtifactKind::Zip => {
                let (obj, freshness) = proxy.zip(&module, &version, mode).await?;
                let mut resp = Response::new(Body::from_stream(obj.body));
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/zip"),
                );
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(obj.info.size));
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(CachePolicy::Immutable.header_value()),
                );
                h.insert(CACHE_STATUS, HeaderValue::from_static(freshness.as_str()));
                Ok(resp)
            }
        },
        ProxyRequest::SumdbSupported { name } => {
            if state.sumdb.supports(&name) {
                Ok((StatusCode::OK, "").into_response())
            } else {
                Err(AppError::NotFound(format!(
                    "checksum database {name} is not proxied here"
                )))
            }
        }
        ProxyRequest::Sumdb { name, rest } => {
            let answer = state.sumdb.get(&name, &rest, mode).await?;
            let policy = if answer.immutable {
                CachePolicy::Immutable
            } else {
                CachePolicy::Mutable
            };
            let served = Served {
                body: answer.body,
                freshness: answer.freshness,
                last_modified: None,
            };
            Ok(small(served, answer.content_type, policy))
        }
    }
}

fn small(served: Served, content_type: &'static str, policy: CachePolicy) -> Response {
    let cache_control = match (policy, served.freshness) {
        // A stale list must not be cached further downstream.
        (CachePolicy::Mutable, Freshness::Stale) => "no-cache",
        _ => policy.header_value(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
            (
                CACHE_STATUS,
                HeaderValue::from_static(served.freshness.as_str()),
            ),
        ],
        served.body,
    )
        .into_response()
}
