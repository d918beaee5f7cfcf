//! [`AppError`]: every failure's status code is decided here, once.
//!
//! For the go command, 404 and 410 mean "not found here, try the next proxy in GOPROXY"; any other
//! status stops it. So "does not exist", "invalid version" and "not cached" are 404, and 5xx is kept
//! for real failures. Bodies are `text/plain` (the go command prints them); 5xx bodies never carry
//! internal detail, which is logged once here instead.

use agora_access::DenyStatus;
use agora_core::CoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub enum AppError {
    /// Garbage in the request (encoded slashes, traversal, bad percent-encoding).
    BadRequest(String),
    /// Nothing here: unknown route, invalid module path or version, or missing upstream.
    NotFound(String),
    UriTooLong,
    MethodNotAllowed,
    /// Refused by the guard (credentials, access rules, credentials over plain HTTP), answered
    /// with `status`: 401 (with `WWW-Authenticate`) when a token could get in, 403 when not, or a
    /// 404 that reads exactly like [`AppError::NotFound`] when the module's existence is itself
    /// confidential. Being its own variant lets the audit log tell a refusal from a miss.
    Denied {
        status: DenyStatus,
        message: String,
        /// Why the credentials the client sent were refused (a 401's `Bearer` challenge says
        /// it); `None` when none were sent.
        bearer_error: Option<BearerError>,
    },
    Core(CoreError),
}

/// RFC 6750's `error` attribute of a `Bearer` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// An unknown or revoked token: sending it again will not help.
    InvalidToken,
    /// An `Authorization` header agora cannot read at all.
    InvalidRequest,
}

impl From<CoreError> for AppError {
    fn from(e: CoreError) -> Self {
        AppError::Core(e)
    }
}

impl AppError {
    /// How the guard refused the request, if it did.
    pub fn denied(&self) -> Option<DenyStatus> {
        match self {
            AppError::Denied { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The status and the client-visible message.
    pub fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, format!("bad request: {m}")),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, format!("not found: {m}")),
            AppError::UriTooLong => (StatusCode::URI_TOO_LONG, "request path too long".into()),
            AppError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are supported".into(),
            ),
            AppError::Denied {
                status, message, ..
            } => match status {
                DenyStatus::Unauthorized => {
                    (StatusCode::UNAUTHORIZED, format!("unauthorized: {message}"))
                }
                DenyStatus::Forbidden => (StatusCode::FORBIDDEN, format!("forbidden: {message}")),
                // Word for word what a miss says.
                DenyStatus::NotFound => (StatusCode::NOT_FOUND, format!("not found: {message}")),
            },
            AppError::Core(e) => match e {
                e @ (CoreError::NotFound { .. }
                | CoreError::NotCached(_)
                | CoreError::Disabled(_)) => (StatusCode::NOT_FOUND, format!("not found: {e}")),
                e @ (CoreError::Forbidden { .. }
                | CoreError::Blocked { .. }
                | CoreError::TooNew { .. }) => (StatusCode::FORBIDDEN, format!("forbidden: {e}")),
                e @ CoreError::Quarantined { .. } => (StatusCode::GONE, format!("gone: {e}")),
                e @ CoreError::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
                CoreError::Redirect { location, .. } => {
                    (StatusCode::FOUND, format!("see {location}"))
                }
                e @ CoreError::FetchingInBackground(_) => {
                    (StatusCode::NOT_FOUND, format!("not found: {e}"))
                }
                e @ CoreError::Overloaded { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
                e @ CoreError::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, e.to_string()),
                e @ CoreError::Upstream { .. } => {
                    let status = if e.is_timeout() {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    // Upstream URLs are redacted by the upstream crate: the message is safe.
                    (status, e.to_string())
                }
                // Git's failure in the go command's terms, without commands or paths.
                e @ (CoreError::Git { .. } | CoreError::InvalidUpstream { .. }) => {
                    (StatusCode::BAD_GATEWAY, e.to_string())
                }
                e @ CoreError::Checksum(c) => {
                    use agora_sumdb::SumdbError;
                    let status = match **c {
                        // Refused content: 403 also keeps the go command from trying the next
                        // proxy, which would have to refuse the same bytes.
                        SumdbError::NotFound { .. } | SumdbError::Mismatch(_) => {
                            StatusCode::FORBIDDEN
                        }
                        SumdbError::Security { .. } => StatusCode::BAD_GATEWAY,
                        SumdbError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    (status, e.to_string())
                }
                CoreError::Storage(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage unavailable; try again later".into(),
                ),
                CoreError::Internal(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
                }
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        if status.is_server_error() {
            // The full error (with storage paths etc.) goes to the log, once; the client gets the
            // message above.
            let detail = match &self {
                AppError::Core(e) => e.to_string(),
                _ => message.clone(),
            };
            tracing::warn!(http.status = status.as_u16(), error = %detail, "request failed");
        } else {
            tracing::debug!(http.status = status.as_u16(), error = %message, "request refused");
        }
        let mut resp = (status, format!("{message}\n")).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let AppError::Core(e) = &self {
            match e {
                CoreError::Redirect { location, .. } => {
                    if let Ok(v) = HeaderValue::from_str(location) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                }
                CoreError::Overloaded { .. } | CoreError::Unavailable { .. } => {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                CoreError::TooNew { allowed_from, .. } => {
                    let wait = allowed_from
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or_default();
                    // Whole seconds, rounded up: never before the version is served.
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                }
                CoreError::Checksum(c)
                    if matches!(**c, agora_sumdb::SumdbError::Unavailable { .. }) =>
                {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                _ => {}
            }
        }
        if let AppError::Denied {
            status: DenyStatus::Unauthorized,
            bearer_error,
            ..
        } = &self
        {
            // Both schemes agora accepts. curl and browsers prompt for Basic. The go command
            // reads neither: any 4xx makes it run its GOAUTH commands again with this answer on
            // their stdin (`agora auth` among them), then retry once; with .netrc it sends the
            // credentials up front and reports the message.
            let headers = resp.headers_mut();
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"agora\", charset=\"UTF-8\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(match bearer_error {
                    None => "Bearer realm=\"agora\"",
                    Some(BearerError::InvalidToken) => {
                        "Bearer realm=\"agora\", error=\"invalid_token\""
                    }
                    Some(BearerError::InvalidRequest) => {
                        "Bearer realm=\"agora\", error=\"invalid_request\""
                    }
                }),
            );
        }
        if matches!(self, AppError::MethodNotAllowed) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(err: AppError) -> (StatusCode, Vec<String>) {
        let resp = err.into_response();
        let values = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (resp.status(), values)
    }

    #[test]
    fn a_401_challenges_for_both_schemes_and_says_why_a_token_was_refused() {
        let denied = |status, bearer_error| AppError::Denied {
            status,
            message: "m".into(),
            bearer_error,
        };
        let basic = "Basic realm=\"agora\", charset=\"UTF-8\"";
        assert_eq!(
            challenges(denied(DenyStatus::Unauthorized, None)),
            (
                StatusCode::UNAUTHORIZED,
                vec![basic.to_owned(), "Bearer realm=\"agora\"".to_owned()]
            )
        );
        assert_eq!(
            challenges(denied(
                DenyStatus::Unauthorized,
                Some(BearerError::InvalidToken)
            ))
            .1[1],
            "Bearer realm=\"agora\", error=\"invalid_token\""
        );
        // A valid token that may not read: no challenge, a token would not help.
        assert_eq!(
            challenges(denied(DenyStatus::Forbidden, None)),
            (StatusCode::FORBIDDEN, vec![])
        );
    }
}
