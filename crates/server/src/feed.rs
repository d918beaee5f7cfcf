//! `GET /index?since=RFC3339&limit=N`: what this agora caches, one JSON object per line
//! (`{"Path","Version","Timestamp"}`), oldest first, in the format of index.golang.org, so
//! pkgsite workers, mirrors and auditors can follow it with the tools they already have.
//!
//! A client sees only module versions it could download: each entry passes the access rules on
//! its module path and, for modules read from a repository, on that repository. Entries a client
//! may not see are skipped without shortening the page, so an empty page still means "nothing
//! newer" and never "everything left was hidden".

use std::collections::HashMap;
use std::time::SystemTime;

use agora_access::Principal;
use agora_gomod::module::ModulePath;
use agora_index::{FeedEntry, MAX_FEED_LIMIT};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::error::AppError;
use crate::routes::AppState;

/// index.golang.org's default page size.
const DEFAULT_LIMIT: usize = 2000;

/// Pages read from the index for one answer at most, when the access rules hide many entries.
const MAX_ROUNDS: usize = 16;

#[derive(Deserialize)]
pub(crate) struct FeedQuery {
    since: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn feed(
    State(state): State<AppState>,
    Query(q): Query<FeedQuery>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let headers: &HeaderMap = request.headers();
    let client = state.guard.client(request.extensions(), headers);
    let who = state.guard.authenticate(&client, headers)?;
    let Some(index) = state.proxy.index() else {
        return Err(AppError::NotFound(
            "the module index is not available on this server".into(),
        ));
    };
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => SystemTime::UNIX_EPOCH,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(SystemTime::from)
            .map_err(|e| AppError::BadRequest(format!("since: not an RFC 3339 time: {e}")))?,
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| AppError::BadRequest("limit: not a positive number".into()))?
            .min(MAX_FEED_LIMIT),
    };
    let mut readable = Readable::new(&state, &who);
    let mut out = String::new();
    let mut shown = 0;
    let mut page = index.feed(since, limit).await.map_err(index_error)?;
    for _ in 0..MAX_ROUNDS {
        let exhausted = page.len() < limit;
        for entry in &page {
            if shown < limit && readable.check(&entry.path).await {
                push_line(&mut out, entry);
                shown += 1;
            }
        }
        let Some(last) = page.last() else { break };
        if exhausted || shown >= limit {
            break;
        }
        page = index.feed_after(last, limit).await.map_err(index_error)?;
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response())
}

fn index_error(e: agora_index::IndexError) -> AppError {
    AppError::Core(agora_core::CoreError::Internal(e.to_string()))
}

fn push_line(out: &mut String, entry: &FeedEntry) {
    let time: DateTime<Utc> = entry.timestamp.into();
    let line = serde_json::json!({
        "Path": entry.path.as_str(),
        "Version": entry.version,
        "Timestamp": time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    });
    out.push_str(&line.to_string());
    out.push('\n');
}

/// The access rules for one client, remembered per module for one answer (the feed, the UI).
pub(crate) struct Readable<'a> {
    state: &'a AppState,
    who: &'a Principal,
    seen: HashMap<String, bool>,
}

impl<'a> Readable<'a> {
    pub(crate) fn new(state: &'a AppState, who: &'a Principal) -> Self {
        Readable {
            state,
            who,
            seen: HashMap::new(),
        }
    }

    pub(crate) async fn check(&mut self, module: &ModulePath) -> bool {
        if let Some(ok) = self.seen.get(module.as_str()) {
            return *ok;
        }
        let ok = self.decide(module).await;
        self.seen.insert(module.as_str().to_owned(), ok);
        ok
    }

    async fn decide(&self, module: &ModulePath) -> bool {
        let guard = &self.state.guard;
        if guard.authorize(self.who, module, None).is_err() {
            return false;
        }
        if !guard.restricts() {
            return true;
        }
        match self.state.proxy.repository(module).await {
            Ok(Some(repository)) => guard
                .authorize_repository(self.who, &repository, module, None)
                .is_ok(),
            Ok(None) => true,
            // A repository that cannot be resolved now cannot be checked: hidden.
            Err(_) => false,
        }
    }
}
