//! The admin endpoints, under `/-/admin/` (no module path can begin with `-`): quarantine and
//! lift a version, remove a module's or version's artifacts, list the quarantines. They need a
//! token in the `admin` group, take JSON bodies (a cross-site form cannot send one, so a browser
//! holding an admin's Basic credentials cannot be made to call them), and every call is written
//! to the audit log with its outcome.

use std::time::SystemTime;

use agora_access::{AdminRecord, Principal};
use agora_gomod::module::ModulePath;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::error::AppError;
use crate::routes::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionBody {
    module: String,
    version: Option<String>,
    reason: Option<String>,
}

/// Who is asking, once they are known to be an admin (here and in the web UI's actions).
pub(crate) struct Admin {
    pub(crate) who: Principal,
    pub(crate) ip: String,
}

impl Admin {
    /// Writes what this admin did to the audit log.
    pub(crate) fn audit(
        &self,
        state: &AppState,
        action: &'static str,
        module: &str,
        version: Option<&str>,
        reason: Option<&str>,
        result: &str,
    ) {
        state.guard.audit().record_admin(&AdminRecord {
            time: SystemTime::now(),
            actor: self.who.name().to_owned(),
            ip: Some(self.ip.clone()),
            action,
            module: module.to_owned(),
            version: version.map(str::to_owned),
            reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
            result: result.to_owned(),
        });
    }
}

fn admit(
    state: &AppState,
    extensions: &http::Extensions,
    headers: &HeaderMap,
) -> Result<Admin, AppError> {
    let client = state.guard.client(extensions, headers);
    let who = state.guard.authenticate(&client, headers)?;
    state.guard.require_admin(&who)?;
    Ok(Admin {
        who,
        ip: client.ip.to_string(),
    })
}

fn audit(state: &AppState, admin: &Admin, action: &'static str, body: &VersionBody, result: &str) {
    admin.audit(
        state,
        action,
        &body.module,
        body.version.as_deref(),
        body.reason.as_deref(),
        result,
    );
}

fn module_of(body: &VersionBody) -> Result<ModulePath, AppError> {
    ModulePath::new(&body.module).map_err(|e| AppError::BadRequest(format!("module: {e}")))
}

fn version_of(body: &VersionBody) -> Result<&str, AppError> {
    body.version
        .as_deref()
        .filter(|v| agora_core::validate::is_canonical(v))
        .ok_or_else(|| AppError::BadRequest("version: a canonical version is required".into()))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{value}\n"),
    )
        .into_response()
}

/// `POST /-/admin/quarantine {"module","version","reason"}`.
pub(crate) async fn quarantine(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Json(body): Json<VersionBody>,
) -> Result<Response, AppError> {
    let admin = admit(&state, &extensions, &headers)?;
    let module = module_of(&body)?;
    let version = version_of(&body)?;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| AppError::BadRequest("reason: say why the version is quarantined".into()))?;
    let result = state
        .proxy
        .quarantine(&module, version, reason, admin.who.name())
        .await;
    audit(&state, &admin, "quarantine", &body, &outcome(&result));
    let q = result?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"module": module.as_str(), "version": q.version, "reason": q.reason, "actor": q.actor}),
    ))
}

/// `POST /-/admin/lift {"module","version"}`.
pub(crate) async fn lift(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Json(body): Json<VersionBody>,
) -> Result<Response, AppError> {
    let admin = admit(&state, &extensions, &headers)?;
    let module = module_of(&body)?;
    let version = version_of(&body)?;
    let result = state.proxy.lift(&module, version).await;
    audit(&state, &admin, "lift", &body, &outcome(&result));
    let lifted = result?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"module": module.as_str(), "version": version, "lifted": lifted.is_some()}),
    ))
}

/// `POST /-/admin/remove {"module","version"?}`: deletes the artifacts from storage.
pub(crate) async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Json(body): Json<VersionBody>,
) -> Result<Response, AppError> {
    let admin = admit(&state, &extensions, &headers)?;
    let module = module_of(&body)?;
    let version = match &body.version {
        None => None,
        Some(_) => Some(version_of(&body)?),
    };
    let result = state.proxy.remove(&module, version).await;
    let said = match &result {
        Ok(keys) => format!("{} objects deleted", keys.len()),
        Err(e) => format!("error: {e}"),
    };
    audit(&state, &admin, "remove", &body, &said);
    let keys = result?;
    let deleted: Vec<String> = keys.iter().map(|k| k.path()).collect();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"deleted": deleted}),
    ))
}

/// `GET /-/admin/quarantines`.
pub(crate) async fn quarantines(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
) -> Result<Response, AppError> {
    admit(&state, &extensions, &headers)?;
    let Some(index) = state.proxy.index() else {
        return Err(AppError::NotFound("no metadata index is configured".into()));
    };
    let all = index
        .quarantines()
        .await
        .map_err(|e| AppError::Core(agora_core::CoreError::Internal(e.to_string())))?;
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|q| {
            serde_json::json!({
                "module": q.module.as_str(),
                "version": q.version,
                "reason": q.reason,
                "actor": q.actor,
                "since": humantime::format_rfc3339_seconds(q.since).to_string(),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, serde_json::Value::Array(rows)))
}

fn outcome<T>(result: &Result<T, agora_core::CoreError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}
