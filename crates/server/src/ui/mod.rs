//! The web UI: server-rendered pages for the people who use and run agora.
//!
//! - `/`: how to use this agora, written from its own configuration and URL; a search box.
//! - `/-/search?q=` (and `/-/search.json` for search as you type): modules by substring over the
//!   index, prefix matches first.
//! - `/<module path>` (a path the GOPROXY protocol never uses): versions, go.mod, `go.sum` lines,
//!   provenance and policy state; quarantine and lift for admins.
//! - `/-/status`: what the store holds, cache hit ratio, fetches in flight, quarantines (admins).
//!
//! The same access rules as the protocol: a page never shows a module a viewer could not
//! download, and a hidden module's page is the same 404 as a missing one. Pages are rendered
//! with maud (escaping by default); every asset is embedded; responses carry a strict
//! `Content-Security-Policy` (scripts and styles from this origin only, nothing inline). Actions
//! are POSTs carrying a token derived from the viewer's identity and a key of this process
//! (browsers send Basic credentials by themselves, so a cross-site form must not be able to
//! act), and are refused when the browser says the request came from another site.

mod pages;
mod verdicts;

use std::sync::Arc;

use agora_access::Principal;
use agora_gomod::module::ModulePath;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::admin::Admin;
use crate::error::AppError;
use crate::routes::AppState;

const STYLE: &str = include_str!("assets/style.css");
const SEARCH_JS: &str = include_str!("assets/search.js");

/// Scripts and styles from this origin only, no inline code, no frames, forms to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Results shown for a search.
const SEARCH_LIMIT: usize = 50;

/// What the pages say about this agora, from its configuration.
#[derive(Clone, Debug, Default)]
pub struct UiSettings {
    /// GOPRIVATE-style patterns of modules fetched from git.
    pub private: Vec<String>,
    /// The checksum database public modules are verified against, if any.
    pub sumdb: Option<String>,
    /// Whether clients may need a token (a tokens file or access rules are configured).
    pub auth: bool,
    /// The path agora is served under (`server.path_prefix`), for links.
    pub base: String,
    /// A random key of this process, for the actions' CSRF tokens.
    pub csrf_key: [u8; 32],
    /// The retention policy, when one is configured (the status page shows it and can run it).
    pub retention: Option<RetentionUi>,
    /// The verifier key of agora's own checksum database, when there is one.
    pub own_sumdb: Option<String>,
    /// Runs `agora doctor` for a target, for admins.
    pub doctor: Option<Doctor>,
    /// Doctor's verdicts on the recent failures (the status page).
    pub verdicts: Arc<verdicts::Verdicts>,
}

/// What `agora doctor` answers: whether agora can serve the target, and the report.
pub type DoctorAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = (bool, String)> + Send>>;

/// `agora doctor TARGET` as a function.
#[derive(Clone)]
pub struct Doctor(pub Arc<dyn Fn(String) -> DoctorAnswer + Send + Sync>);

impl std::fmt::Debug for Doctor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doctor")
    }
}

/// Retention as the status page knows it.
#[derive(Clone, Debug)]
pub struct RetentionUi {
    pub policy: agora_index::RetentionPolicy,
    pub keep_recent: std::time::Duration,
    /// The background collection's period, if any.
    pub interval: Option<std::time::Duration>,
}

impl UiSettings {
    /// Settings with a fresh CSRF key.
    pub fn new(private: Vec<String>, sumdb: Option<String>, auth: bool, base: String) -> Self {
        let mut csrf_key = [0u8; 32];
        getrandom(&mut csrf_key);
        UiSettings {
            private,
            sumdb,
            auth,
            base,
            csrf_key,
            retention: None,
            own_sumdb: None,
            doctor: None,
            verdicts: Default::default(),
        }
    }

    /// With `agora doctor` on the status page.
    pub fn with_doctor(mut self, doctor: Doctor) -> Self {
        self.doctor = Some(doctor);
        self
    }

    /// With agora's own checksum database (clients set `GOSUMDB` to its verifier key).
    pub fn with_own_sumdb(mut self, verifier_key: String) -> Self {
        self.own_sumdb = Some(verifier_key);
        self
    }

    /// With a retention policy to show and run.
    pub fn with_retention(mut self, retention: RetentionUi) -> Self {
        self.retention = Some(retention);
        self
    }

    fn csrf(&self, who: &Principal) -> String {
        let mut h = Sha256::new();
        h.update(self.csrf_key);
        h.update((who.name().len() as u64).to_be_bytes());
        h.update(who.name().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Random bytes from the OS (a process key; failure to read is not survivable anyway).
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("reading /dev/urandom");
}

/// The UI's routes (module pages come through the GOPROXY fallback: see [`module_page`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/-/search", get(search))
        .route("/-/search.json", get(search_json))
        .route("/-/status", get(status))
        .route("/-/login", get(login))
        .route("/-/ui/quarantine", post(quarantine))
        .route("/-/ui/lift", post(lift))
        .route("/-/ui/gc", post(collect))
        .route("/-/ui/doctor", post(doctor))
        .route(
            "/-/assets/style.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route(
            "/-/assets/search.js",
            get(|| asset(SEARCH_JS, "text/javascript; charset=utf-8")),
        )
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Who is looking.
pub(crate) struct Viewer {
    pub who: Principal,
    pub admin: bool,
    pub csrf: String,
}

/// Every page's viewer; wrong credentials are asked for again.
impl axum::extract::FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        viewer(state, &parts.extensions, &parts.headers).ok_or_else(challenge)
    }
}

/// The viewer, or `None` for credentials that are wrong (the caller asks again: the browser
/// shows its login prompt).
fn viewer(state: &AppState, extensions: &http::Extensions, headers: &HeaderMap) -> Option<Viewer> {
    let client = state.guard.client(extensions, headers);
    let who = state.guard.authenticate(&client, headers).ok()?;
    Some(Viewer {
        admin: state.guard.require_admin(&who).is_ok(),
        csrf: state.ui.csrf(&who),
        who,
    })
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Basic realm=\"agora\", charset=\"UTF-8\"",
            ),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "sign in with your agora token as the password\n",
    )
        .into_response()
}

/// A rendered page with the security headers every page carries.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `scheme://host` the browser used, for the lines to paste.
fn origin(state: &AppState, extensions: &http::Extensions, headers: &HeaderMap) -> String {
    let client = state.guard.client(extensions, headers);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("agora.example");
    let scheme = if client.secure { "https" } else { "http" };
    format!("{scheme}://{host}{}", state.ui.base)
}

/// `/`; `/?login` asks for credentials first. The challenge comes from the root path so that
/// browsers send the credentials with every later request to this agora, not only below
/// the path that asked for them.
async fn home(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<HomeQuery>,
    headers: HeaderMap,
    extensions: http::Extensions,
) -> Response {
    if q.login.is_some() {
        return match v.who {
            Principal::Anonymous => challenge(),
            Principal::Token(_) => Redirect::to(&format!("{}/", state.ui.base)).into_response(),
        };
    }
    let origin = origin(&state, &extensions, &headers);
    html(StatusCode::OK, pages::home(&state.ui, &v, &origin))
}

#[derive(Deserialize)]
struct HomeQuery {
    login: Option<String>,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Search hits the viewer may see.
async fn visible_hits(
    state: &AppState,
    who: &Principal,
    q: &str,
) -> Result<Vec<agora_index::SearchHit>, Response> {
    let Some(index) = state.proxy.index() else {
        return Ok(Vec::new());
    };
    let hits = index.search(q, SEARCH_LIMIT * 2).await.map_err(|e| {
        tracing::warn!(error = %e, "search failed");
        html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(
                &state.ui,
                "Search is unavailable",
                "The index did not answer; try again.",
            ),
        )
    })?;
    let mut readable = crate::feed::Readable::new(state, who);
    let mut out = Vec::new();
    for hit in hits {
        if out.len() >= SEARCH_LIMIT {
            break;
        }
        if readable.check(&hit.module).await {
            out.push(hit);
        }
    }
    Ok(out)
}

async fn search(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<SearchQuery>,
) -> Response {
    let q = q.q.chars().take(200).collect::<String>();
    match visible_hits(&state, &v.who, &q).await {
        Ok(hits) => html(StatusCode::OK, pages::search(&state.ui, &v, &q, &hits)),
        Err(r) => r,
    }
}

async fn search_json(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<SearchQuery>,
) -> Response {
    let q = q.q.chars().take(200).collect::<String>();
    let hits = match visible_hits(&state, &v.who, &q).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let rows: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            serde_json::json!({
                "module": h.module.as_str(),
                "latest": h.latest,
                "versions": h.versions,
                "last_fetched": pages::ago(h.last_stored),
            })
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::Value::Array(rows).to_string(),
    )
        .into_response()
}

/// `/-/login`: see [`home`].
async fn login(State(state): State<AppState>) -> Response {
    Redirect::to(&format!("{}/?login", state.ui.base)).into_response()
}

/// A module's page, for a GET of `/<module path>`; `None` when the path is not one (the
/// GOPROXY routes answer it).
pub(crate) async fn module_page(
    state: &AppState,
    parts: &http::request::Parts,
) -> Option<Response> {
    let path = parts.uri.path();
    if parts.method != http::Method::GET && parts.method != http::Method::HEAD {
        return None;
    }
    if path.contains("/@") || path.starts_with("/sumdb/") || path.starts_with("/cached-only/") {
        return None;
    }
    // Garbage (traversal, encoded slashes, control characters, oversized paths) gets the
    // protocol's 400/414, whatever it looks like.
    if let Err(AppError::BadRequest(_) | AppError::UriTooLong) = crate::request::parse(path) {
        return None;
    }
    let raw = path.strip_prefix('/')?;
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    let Some(v) = viewer(state, &parts.extensions, &parts.headers) else {
        return Some(challenge());
    };
    let not_found = || html(StatusCode::NOT_FOUND, pages::not_found(&state.ui, &v));
    let Ok(module) = ModulePath::new(&decoded) else {
        return Some(not_found());
    };
    let mut readable = crate::feed::Readable::new(state, &v.who);
    if !readable.check(&module).await {
        return Some(not_found());
    }
    let overview = match state.proxy.overview(&module).await {
        Ok(Some(o)) => o,
        Ok(None) => return Some(not_found()),
        Err(err) => {
            tracing::warn!(error = %err, module = %module, "module page failed");
            return Some(html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message(
                    &state.ui,
                    "Unavailable",
                    "This page could not be built; try again.",
                ),
            ));
        }
    };
    Some(html(
        StatusCode::OK,
        pages::module(&state.ui, &v, &overview),
    ))
}

async fn status(State(state): State<AppState>, v: Viewer) -> Response {
    if matches!(v.who, Principal::Anonymous) {
        return challenge();
    }
    if !v.admin {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                &state.ui,
                "Forbidden",
                "The status page is for the admin group.",
            ),
        );
    }
    let stats = match state.proxy.index() {
        Some(index) => Some(index.stats().await.map_err(|e| e.to_string())),
        None => None,
    };
    let quarantines = match state.proxy.index() {
        Some(index) => index.quarantines().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let ready = state.proxy.ready().await.map_err(|e| e.to_string());
    let failures = state.proxy.failures().groups();
    let verdicts = state
        .ui
        .verdicts
        .refresh(&failures, state.ui.doctor.as_ref());
    let facts = pages::StatusFacts {
        index_health: stats
            .as_ref()
            .map(|r| r.as_ref().map(drop).map_err(Clone::clone)),
        lock: state.proxy.lock_health().await,
        failures,
        verdicts,
        sources: state.proxy.source_health(),
        queued: state.proxy.fetches_queued(),
        last_collection: state.proxy.last_collection(),
        storage: state.proxy.storage().backend().to_string(),
        index: state.proxy.index().map(|i| i.location().to_owned()),
        ready,
        stats: stats.and_then(Result::ok),
        cache: state.proxy.metrics().cache_answers(),
        in_flight: state.proxy.fetches_in_flight(),
        quarantines,
    };
    html(StatusCode::OK, pages::status(&state.ui, &v, &facts))
}

#[derive(Deserialize)]
struct CollectForm {
    csrf: String,
}

/// `POST /-/ui/gc`: a collection now, under the configured retention policy.
async fn collect(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Form(form): Form<CollectForm>,
) -> Response {
    let admin = match check_action(&state, &extensions, &headers, &form.csrf) {
        Ok((_, admin)) => admin,
        Err(r) => return r.page(&state.ui),
    };
    let Some(r) = &state.ui.retention else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message(&state.ui, "Not done", "No retention limit is configured."),
        );
    };
    let result = state.proxy.collect(&r.policy, r.keep_recent, true).await;
    let said = match &result {
        Ok(Some(c)) => format!("{} artifacts deleted, {} bytes freed", c.deleted, c.freed),
        Ok(None) => "another replica is collecting".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    admin.audit(&state, "gc", "", None, None, &said);
    match result {
        Ok(_) => Redirect::to(&format!("{}/-/status", state.ui.base)).into_response(),
        Err(_) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(&state.ui, "Not done", &said),
        ),
    }
}

#[derive(Deserialize)]
struct DoctorForm {
    target: String,
    csrf: String,
}

/// `POST /-/ui/doctor`: `agora doctor TARGET`, its report shown as a page (audited).
async fn doctor(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Form(form): Form<DoctorForm>,
) -> Response {
    let (v, admin) = match check_action(&state, &extensions, &headers, &form.csrf) {
        Ok(found) => found,
        Err(r) => return r.page(&state.ui),
    };
    let target = form.target.trim().to_owned();
    let (module, version) = match target.split_once('@') {
        Some((m, v)) => (m, Some(v)),
        None => (target.as_str(), None),
    };
    if target.is_empty() || target.len() > 512 || ModulePath::new(module).is_err() {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message(
                &state.ui,
                "Not done",
                "Name a module path, optionally with @VERSION.",
            ),
        );
    }
    let Some(Doctor(run)) = state.ui.doctor.clone() else {
        return html(
            StatusCode::NOT_FOUND,
            pages::message(&state.ui, "Not available", "doctor is not available here."),
        );
    };
    let (ok, report) = run(target.clone()).await;
    admin.audit(
        &state,
        "doctor",
        module,
        version,
        None,
        if ok { "ok" } else { "failed" },
    );
    html(
        StatusCode::OK,
        pages::doctor(&state.ui, &v, &target, ok, &report),
    )
}

#[derive(Deserialize)]
struct ActionForm {
    module: String,
    version: String,
    #[serde(default)]
    reason: String,
    csrf: String,
}

/// Why an action is refused before it is looked at.
enum Refused {
    /// No or wrong credentials: ask for them.
    Challenge,
    Forbidden(&'static str),
}

impl Refused {
    fn page(self, ui: &UiSettings) -> Response {
        match self {
            Refused::Challenge => challenge(),
            Refused::Forbidden(msg) => {
                html(StatusCode::FORBIDDEN, pages::message(ui, "Forbidden", msg))
            }
        }
    }
}

/// Admin, a valid token for this viewer (`csrf`, from the form), and not sent from another
/// site: the viewer, and the admin for the audit log.
fn check_action(
    state: &AppState,
    extensions: &http::Extensions,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Viewer, Admin), Refused> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(Refused::Forbidden(
            "Actions must come from this site's own pages.",
        ));
    }
    let v = viewer(state, extensions, headers).ok_or(Refused::Challenge)?;
    if matches!(v.who, Principal::Anonymous) {
        return Err(Refused::Challenge);
    }
    if !v.admin {
        return Err(Refused::Forbidden("Only the admin group may do this."));
    }
    if !constant_time_eq(csrf.as_bytes(), v.csrf.as_bytes()) {
        return Err(Refused::Forbidden(
            "This form has expired; reload the page and try again.",
        ));
    }
    let admin = Admin {
        who: v.who.clone(),
        ip: state.guard.client(extensions, headers).ip.to_string(),
    };
    Ok((v, admin))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn quarantine(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Form(form): Form<ActionForm>,
) -> Response {
    act(state, headers, extensions, form, true).await
}

async fn lift(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Form(form): Form<ActionForm>,
) -> Response {
    act(state, headers, extensions, form, false).await
}

async fn act(
    state: AppState,
    headers: HeaderMap,
    extensions: http::Extensions,
    form: ActionForm,
    quarantine: bool,
) -> Response {
    let admin = match check_action(&state, &extensions, &headers, &form.csrf) {
        Ok((_, admin)) => admin,
        Err(r) => return r.page(&state.ui),
    };
    let bad = |msg: &str| {
        html(
            StatusCode::BAD_REQUEST,
            pages::message(&state.ui, "Not done", msg),
        )
    };
    let Ok(module) = ModulePath::new(&form.module) else {
        return bad("That is not a module path.");
    };
    if !agora_core::validate::is_canonical(&form.version) {
        return bad("Name a version such as v1.2.3.");
    }
    let reason = form.reason.trim();
    if quarantine && reason.is_empty() {
        return bad("Say why the version is quarantined: clients see the reason.");
    }
    let result = if quarantine {
        state
            .proxy
            .quarantine(&module, &form.version, reason, admin.who.name())
            .await
            .map(drop)
    } else {
        state.proxy.lift(&module, &form.version).await.map(drop)
    };
    let said = match &result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    admin.audit(
        &state,
        if quarantine { "quarantine" } else { "lift" },
        &form.module,
        Some(&form.version),
        Some(reason),
        &said,
    );
    match result {
        Ok(()) => Redirect::to(&format!("{}/{}", state.ui.base, module)).into_response(),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(&state.ui, "Not done", &e.to_string()),
        ),
    }
}

/// Shared, read-only page settings.
pub type SharedUi = Arc<UiSettings>;
