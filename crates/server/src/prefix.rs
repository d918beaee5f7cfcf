//! Serving under a path prefix (`server.path_prefix = "/go"`), for an agora behind an ingress it
//! shares with other services: clients use `GOPROXY=https://host/go`.
//!
//! [`with_path_prefix`] wraps the whole application: a request under the prefix reaches it with
//! the prefix taken off its URI (query kept), so handlers, `/cached-only/` and the request parser
//! see the same paths as without a prefix; any other request is answered 404 before routing.
//! The raw (still percent-encoded) path is compared, element by element: `/go` does not match
//! `/gopher/...`, and `/%67o/...` is not `/go/...`.

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceExt;

use crate::error::AppError;

/// A validated path prefix: `/` followed by one or more non-empty elements of unreserved URL
/// characters (`A-Z a-z 0-9 - . _ ~`), without a trailing `/`. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPrefix(Arc<str>);

/// Why a path prefix was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path prefix {prefix:?}: {reason}")]
pub struct PathPrefixError {
    pub prefix: String,
    pub reason: &'static str,
}

impl PathPrefix {
    /// Checks `prefix` (e.g. `/go`, `/proxy/go`).
    pub fn new(prefix: &str) -> Result<PathPrefix, PathPrefixError> {
        let refuse = |reason| {
            Err(PathPrefixError {
                prefix: prefix.to_owned(),
                reason,
            })
        };
        let Some(rest) = prefix.strip_prefix('/') else {
            return refuse("must start with \"/\"");
        };
        if rest.is_empty() {
            return refuse("must name at least one path element (leave it empty for none)");
        }
        if rest.ends_with('/') {
            return refuse("must not end with \"/\"");
        }
        if rest.contains("//") {
            return refuse("must not contain \"//\"");
        }
        // `@` would read as part of a GOPROXY path (`@v`, `@latest`).
        if rest.contains('@') {
            return refuse("must not contain \"@\"");
        }
        for element in rest.split('/') {
            if element == "." || element == ".." {
                return refuse("must not contain \".\" or \"..\" elements");
            }
            // Anything else would be percent-encoded by some clients and not by others.
            if !element
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                return refuse(
                    "may only contain letters, digits, \"-\", \".\", \"_\", \"~\" and \"/\"",
                );
            }
        }
        Ok(PathPrefix(prefix.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below the prefix (`/go/x` → `/x`, `/go` → `/`), or `None` outside it.
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        match path.strip_prefix(&*self.0)? {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }

    /// `uri` with the prefix taken off its path, or `None` outside the prefix.
    fn rewrite(&self, uri: &Uri) -> Option<Uri> {
        let rest = self.strip(uri.path())?;
        let path_and_query = match uri.query() {
            Some(q) => PathAndQuery::try_from(format!("{rest}?{q}")),
            None => PathAndQuery::try_from(rest),
        }
        .ok()?;
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).ok()
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `app` served under `prefix` only; see the module docs.
pub fn with_path_prefix(app: Router, prefix: PathPrefix) -> Router {
    let service = tower::service_fn(move |mut req: Request| {
        let app = app.clone();
        let prefix = prefix.clone();
        async move {
            match prefix.rewrite(req.uri()) {
                Some(uri) => {
                    *req.uri_mut() = uri;
                    app.oneshot(req).await
                }
                None => Ok(
                    AppError::NotFound(format!("this server answers only under {prefix}/"))
                        .into_response(),
                ),
            }
        }
    });
    Router::new().fallback_service(service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http::StatusCode;

    #[test]
    fn valid_and_invalid_prefixes() {
        for ok in ["/go", "/proxy/go", "/a.b/c-d_e~f", "/v1"] {
            assert_eq!(PathPrefix::new(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            ("go", "start with"),
            ("/", "at least one"),
            ("/go/", "end with"),
            ("/a//b", "\"//\""),
            ("/./go", "\"..\""),
            ("/go/..", "\"..\""),
            ("/go@v1", "\"@\""),
            ("/g%6f", "may only"),
            ("/go?x", "may only"),
            ("/g o", "may only"),
        ] {
            let err = PathPrefix::new(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn strip_matches_whole_elements() {
        let p = PathPrefix::new("/go").unwrap();
        assert_eq!(p.strip("/go/healthz"), Some("/healthz"));
        assert_eq!(p.strip("/go"), Some("/"));
        assert_eq!(p.strip("/go/"), Some("/"));
        assert_eq!(p.strip("/gopher/x"), None);
        assert_eq!(p.strip("/healthz"), None);
        assert_eq!(p.strip("/%67o/healthz"), None);
    }

    #[tokio::test]
    async fn handlers_see_the_path_without_the_prefix_and_the_query() {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|uri: Uri| async move { uri.to_string() });
        let app = with_path_prefix(app, PathPrefix::new("/go").unwrap());
        let call = |path: &str| {
            let app = app.clone();
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                    .await
                    .unwrap();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(call("/go/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            call("/go/a/@v/list?x=1").await,
            (StatusCode::OK, "/a/@v/list?x=1".into())
        );
        let (status, body) = call("/healthz").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/go/"), "{body}");
        assert_eq!(call("/gopher/healthz").await.0, StatusCode::NOT_FOUND);
    }
}
