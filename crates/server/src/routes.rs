//! The router and the handlers. Handlers parse, call `agora-core`, and map the result; every
//! GOPROXY answer is recorded in the metrics (route, status, bytes).
//!
//! Artifact answers carry `ETag` and `Last-Modified` and honour conditional requests (304); zips
//! honour `Range` (206/416); text answers are compressed (gzip, brotli) when the client accepts it.
//! See [`crate::http_cache`] for the validators.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agora_access::{AuditRecord, DenyStatus, Principal};
use agora_core::{CoreError, FetchMode, Freshness, Proxy, Served, SumdbPath, SumdbProxy};
use agora_gomod::module::ModulePath;
use agora_storage::{ArtifactKind, CachePolicy, StorageKey};
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::guard::Guard;
use crate::http_cache::{is_compressible, RangeAnswer, Validators};
use crate::request::{self, ProxyRequest};

/// Everything the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub proxy: Proxy,
    pub sumdb: Arc<SumdbProxy>,
    pub guard: Arc<Guard>,
    /// What the web UI's pages say about this agora.
    pub ui: Arc<crate::ui::UiSettings>,
}

impl AppState {
    /// A state without access control ([`Guard::open`]).
    pub fn new(proxy: Proxy, sumdb: Arc<SumdbProxy>) -> AppState {
        AppState {
            proxy,
            sumdb,
            guard: Arc::new(Guard::open()),
            ui: Arc::new(crate::ui::UiSettings::new(
                Vec::new(),
                None,
                false,
                String::new(),
            )),
        }
    }
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
        .route("/metrics", get(metrics))
        .route("/index", get(crate::feed::feed))
        .route("/-/admin/quarantine", post(crate::admin::quarantine))
        .route("/-/admin/lift", post(crate::admin::lift))
        .route("/-/admin/remove", post(crate::admin::remove))
        .route("/-/admin/quarantines", get(crate::admin::quarantines))
        .merge(crate::ui::routes())
        .fallback(goproxy)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Core(CoreError::Internal("handler panicked".into())).into_response()
        }))
        // Bounds the time to the response head (a cold fetch included); bodies stream after.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(900),
        ))
        // Text only: zips are already deflated, hash tiles are random bytes.
        .layer(
            CompressionLayer::new().compress_when(SizeAbove::default().and(
                |_: StatusCode, _: http::Version, headers: &HeaderMap, _: &http::Extensions| {
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(is_compressible)
                },
            )),
        )
        .layer(TraceLayer::new_for_http())
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.proxy.ready().await {
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

/// Prometheus text exposition of [`agora_core::Metrics`].
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.proxy.metrics().render(),
    )
        .into_response()
}

/// What the audit log and metrics learn about a request while it is answered.
struct Trace {
    /// The metrics label.
    route: &'static str,
    /// Who asked; `None` until credentials were accepted (refused ones are "unauthenticated").
    who: Option<Principal>,
    /// Set when the request concerns a module whose fetches are audited.
    audit: Option<(String, Option<String>)>,
    /// Set when the guard refused the request, with how the client was answered.
    denied: Option<DenyStatus>,
}

/// Every GOPROXY and checksum-database request: answered by [`answer`], recorded in the metrics
/// and, for private modules, in the audit log.
async fn goproxy(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, _body) = req.into_parts();
    if let Some(page) = crate::ui::module_page(&state, &parts).await {
        return page;
    }
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let client = state.guard.client(&parts.extensions, headers);
    let mut trace = Trace {
        route: "other",
        who: None,
        audit: None,
        denied: None,
    };
    let resp = match answer(&state, method, uri, headers, &client, &mut trace).await {
        Ok(resp) => resp,
        Err(err) => {
            trace.denied = err.denied();
            if let AppError::Core(e) = &err {
                state.proxy.failures().note(e);
                match e {
                    CoreError::Storage(_) => state.proxy.metrics().record_storage_error(),
                    // Refused content is audited whatever module it concerns.
                    CoreError::Checksum(c) if c.is_security() && trace.audit.is_none() => {
                        let path = request::strip_cached_only(uri.path()).0;
                        trace.audit = request::parse(path).ok().and_then(|r| {
                            subject(&r).map(|(m, v)| (m.to_string(), v.map(Cow::into_owned)))
                        });
                    }
                    _ => {}
                }
            }
            err.into_response()
        }
    };
    let bytes = if method == Method::HEAD {
        0
    } else {
        content_length(&resp)
    };
    state
        .proxy
        .metrics()
        .record_request(trace.route, resp.status().as_u16(), bytes);
    if let Some((module, version)) = trace.audit {
        state.guard.audit().record(&AuditRecord {
            time: SystemTime::now(),
            client: trace
                .who
                .as_ref()
                .map_or("unauthenticated", |w| w.name())
                .to_owned(),
            ip: client.ip.to_string(),
            module,
            version,
            request: trace.route,
            status: resp.status().as_u16(),
            denied: trace.denied,
            cache: resp
                .headers()
                .get(CACHE_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ["hit", "miss", "stale"].into_iter().find(|k| *k == v)),
            bytes,
            duration: started.elapsed(),
            trace_id: crate::trace::current_trace_id(),
        });
    }
    resp
}

/// The module a request is about, with its version, if it names one. Checksum-database lookups
/// name one too (`/sumdb/<db>/lookup/<module>@<version>`).
/// Borrowed from the request where it can be: this runs for every request.
fn subject(req: &ProxyRequest) -> Option<(Cow<'_, ModulePath>, Option<Cow<'_, str>>)> {
    match req {
        ProxyRequest::List(m) | ProxyRequest::Latest(m) => Some((Cow::Borrowed(m), None)),
        ProxyRequest::Artifact {
            module, version, ..
        } => Some((Cow::Borrowed(module), Some(Cow::Borrowed(version.as_str())))),
        ProxyRequest::Sumdb {
            path: SumdbPath::Lookup {
                module, version, ..
            },
            ..
        } => Some((
            Cow::Owned(ModulePath::new(module).ok()?),
            Some(Cow::Borrowed(version.as_str())),
        )),
        ProxyRequest::Sumdb { .. } => None,
        ProxyRequest::SumdbSupported { .. } => None,
    }
}

/// Authentication and access rules, before anything is read or fetched. Requests about audited
/// modules are marked for the audit log first, so refusals are audited too. The rules are checked
/// on the requested module path and again on the repository it resolves to, so that no other
/// name of a protected repository (`.git`, another case, a vanity path, a `[[git.rules]]` alias)
/// reads it.
async fn admit(
    state: &AppState,
    req: &ProxyRequest,
    client: &crate::identity::ClientInfo,
    headers: &HeaderMap,
    trace: &mut Trace,
) -> Result<Principal, AppError> {
    let guard = &state.guard;
    let subject = subject(req);
    if let Some((module, version)) = &subject {
        if guard.audited(state.proxy.policy(), module) {
            trace.audit = Some((module.to_string(), version.as_deref().map(str::to_owned)));
        }
    }
    let who = guard.authenticate(client, headers)?;
    trace.who = Some(who.clone());
    let Some((module, version)) = &subject else {
        guard.authorize_unscoped(&who, "the checksum database")?;
        return Ok(who);
    };
    guard.authorize(&who, module, version.as_deref())?;
    if guard.restricts() {
        if let Some(repository) = state.proxy.repository(module).await? {
            if trace.audit.is_none() && guard.audited_repository(&repository) {
                trace.audit = Some((module.to_string(), version.as_deref().map(str::to_owned)));
            }
            guard.authorize_repository(&who, &repository, module, version.as_deref())?;
        }
    }
    Ok(who)
}

/// The metrics label of a request (a fixed set: never a module path).
fn route_label(req: &ProxyRequest) -> &'static str {
    match req {
        ProxyRequest::List(_) => "list",
        ProxyRequest::Latest(_) => "latest",
        ProxyRequest::Artifact { kind, .. } => kind.extension(),
        ProxyRequest::SumdbSupported { .. } | ProxyRequest::Sumdb { .. } => "sumdb",
    }
}

/// The body size the handler produced (before compression).
fn content_length(resp: &Response) -> u64 {
    resp.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| resp.body().size_hint().exact())
        .unwrap_or(0)
}

async fn answer(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client: &crate::identity::ClientInfo,
    trace: &mut Trace,
) -> Result<Response, AppError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(AppError::MethodNotAllowed);
    }
    let (path, cached_only) = request::strip_cached_only(uri.path());
    let req = request::parse(path)?;
    trace.route = route_label(&req);
    admit(state, &req, client, headers, trace).await?;
    let mode = if cached_only
        || headers
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
            Ok(stored(headers, served, &StorageKey::List(module)))
        }
        ProxyRequest::Latest(module) => {
            let served = proxy.latest(&module, mode).await?;
            Ok(stored(headers, served, &StorageKey::Latest(module)))
        }
        ProxyRequest::Artifact {
            module,
            version,
            kind,
        } => match kind {
            ArtifactKind::Info => {
                let served = proxy.info(&module, &version, mode).await?;
                let key = StorageKey::artifact(&module, &version, kind);
                // A query (branch, commit) may resolve differently tomorrow; a version never does.
                let policy = if agora_core::validate::is_canonical(&version) {
                    key.cache_policy()
                } else {
                    CachePolicy::Mutable
                };
                Ok(small(headers, served, key.content_type(), policy))
            }
            ArtifactKind::Mod => {
                let served = proxy.go_mod(&module, &version, mode).await?;
                let key = StorageKey::artifact(&module, &version, kind);
                Ok(stored(headers, served, &key))
            }
            ArtifactKind::Zip => zip(state, method, headers, &module, &version, mode).await,
        },
        ProxyRequest::SumdbSupported { name } if own_db(state, &name) => {
            Ok((StatusCode::OK, "").into_response())
        }
        ProxyRequest::Sumdb { name, path } if own_db(state, &name) => {
            own_sumdb(state, headers, path).await
        }
        ProxyRequest::SumdbSupported { name } => {
            if state.sumdb.supports(&name) {
                Ok((StatusCode::OK, "").into_response())
            } else {
                Err(AppError::NotFound(format!(
                    "checksum database {name} is not proxied here"
                )))
            }
        }
        ProxyRequest::Sumdb { name, path } => {
            // Boxed: a tile fetch is a large state machine, and would otherwise be part of every
            // request's future (`agora_core::Proxy` boxes its fetches for the same reason).
            let answer = Box::pin(state.sumdb.get(&name, &path, mode)).await?;
            let served = Served {
                body: answer.body,
                freshness: answer.freshness,
                last_modified: answer.last_modified,
            };
            Ok(small(
                headers,
                served,
                answer.content_type,
                answer.cache_policy,
            ))
        }
    }
}

/// Whether `name` is agora's own checksum database.
fn own_db(state: &AppState, name: &str) -> bool {
    state
        .proxy
        .checksum_db()
        .is_some_and(|db| db.name() == name)
}

/// A request to agora's own checksum database: its signed tree head, a lookup (adding the
/// version first if agora serves it and the log does not have it yet) or a tile of the
/// published tree.
async fn own_sumdb(
    state: &AppState,
    headers: &HeaderMap,
    path: SumdbPath,
) -> Result<Response, AppError> {
    let db = state.proxy.checksum_db().expect("checked by the caller");
    let answer = |body: Bytes, content_type: &'static str, policy: CachePolicy| {
        let served = Served {
            body,
            freshness: Freshness::Hit,
            last_modified: None,
        };
        small(headers, served, content_type, policy)
    };
    match path {
        SumdbPath::Latest => {
            let (_, note) = db.published().await?;
            Ok(answer(
                note,
                agora_storage::layout::SUMDB_TEXT,
                CachePolicy::Mutable,
            ))
        }
        SumdbPath::Lookup {
            module, version, ..
        } => {
            let module = ModulePath::new(&module)
                .map_err(|e| AppError::NotFound(format!("invalid module path: {e}")))?;
            let body = Box::pin(state.proxy.own_lookup(&module, &version)).await?;
            Ok(answer(
                body,
                agora_storage::layout::SUMDB_TEXT,
                CachePolicy::Mutable,
            ))
        }
        SumdbPath::Tile { rest } => match db.tile(&rest).await? {
            Some(body) => {
                let content_type = if rest.contains("/data/") {
                    agora_storage::layout::SUMDB_TEXT
                } else {
                    "application/octet-stream"
                };
                Ok(answer(body, content_type, CachePolicy::Immutable))
            }
            None => Err(AppError::NotFound(format!(
                "{rest}: not a tile of {}'s published tree",
                db.name()
            ))),
        },
    }
}

/// A zip: streamed from storage, whole (200), in part (206) or not at all (304, 416).
async fn zip(
    state: &AppState,
    method: &Method,
    req: &HeaderMap,
    module: &ModulePath,
    version: &str,
    mode: FetchMode,
) -> Result<Response, AppError> {
    let (obj, freshness) = state.proxy.zip(module, version, mode).await?;
    let len = obj.info.size;
    let validators = Validators::of_object(&obj.info);
    let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(key.content_type()),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(key.cache_policy().header_value()),
    );
    headers.insert(CACHE_STATUS, HeaderValue::from_static(freshness.as_str()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    validators.apply(&mut headers);
    if validators.not_modified(req) {
        return Ok(not_modified(headers));
    }
    let range = validators.range(req, len);
    if let Some(content_range) = range.content_range(len) {
        headers.insert(header::CONTENT_RANGE, content_range);
    }
    let (status, body, body_len) = match range {
        RangeAnswer::Full => (StatusCode::OK, Body::from_stream(obj.body), len),
        RangeAnswer::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Body::empty(), 0),
        RangeAnswer::Partial(r) => {
            // Only the range is read from storage (the zip is write-once: same bytes as `obj`).
            drop(obj);
            let part_len = r.end - r.start;
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                let part = state.proxy.zip_range(module, version, r).await?;
                Body::from_stream(part.body)
            };
            (StatusCode::PARTIAL_CONTENT, body, part_len)
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// [`small`] with the content type and cache policy of the object `key` names.
fn stored(req: &HeaderMap, served: Served, key: &StorageKey) -> Response {
    small(req, served, key.content_type(), key.cache_policy())
}

/// A small answer held in memory (info, mod, list, latest, checksum database), with validators.
fn small(
    req: &HeaderMap,
    served: Served,
    content_type: &'static str,
    policy: CachePolicy,
) -> Response {
    let cache_control = policy.cache_control(matches!(served.freshness, Freshness::Stale));
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        CACHE_STATUS,
        HeaderValue::from_static(served.freshness.as_str()),
    );
    if is_compressible(content_type) {
        // Also on identity answers and 304s, so that caches keep encodings apart.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    let validators = Validators::of_bytes(&served.body, served.last_modified, content_type);
    validators.apply(&mut headers);
    if validators.not_modified(req) {
        return not_modified(headers);
    }
    (headers, served.body).into_response()
}

/// 304: the validators and caching headers of the 200 it stands for, no body.
fn not_modified(mut headers: HeaderMap) -> Response {
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    *resp.headers_mut() = headers;
    resp
}
