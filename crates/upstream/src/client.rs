//! One HTTP client for every upstream proxy and checksum database.

use agora_secret::redact;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Client settings. The defaults suit a proxy in front of a public mirror.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Whole-request limit for small answers (info, mod, list, latest, checksum database).
    pub timeout: Duration,
    /// Longest silence while a body is streaming; large zips may take longer than `timeout` in total.
    pub idle_timeout: Duration,
    /// Whole-request limit for zips.
    pub zip_timeout: Duration,
    /// Extra attempts after the first, for 429/5xx and transport failures.
    pub retries: u32,
    /// First retry delay; doubled on each attempt.
    pub backoff: Duration,
    pub user_agent: String,
    /// Extra trusted CA certificates (PEM), added to the system store.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Most bytes of answers held in memory while they download (info, mod, list, checksum
    /// database), across all requests: a fetch that would go beyond it fails as overloaded
    /// (503, retry), so that many concurrent large answers cannot exhaust memory.
    pub memory_budget: usize,
    /// Host names the configuration names (upstream proxies, the checksum database, the
    /// webhook): only these may resolve to internal addresses (see [`crate::egress`]).
    pub internal_hosts: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            zip_timeout: Duration::from_secs(600),
            retries: 2,
            backoff: Duration::from_millis(200),
            user_agent: format!("agora/{} (+Go module proxy)", env!("CARGO_PKG_VERSION")),
            extra_ca_pem: Vec::new(),
            memory_budget: 48 << 20,
            internal_hosts: Vec::new(),
        }
    }
}

/// Why one upstream fetch failed. Statuses are mapped, never passed through.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// 404/410: the upstream does not have it. The message is the upstream's text, trimmed.
    #[error("not found: {message}")]
    NotFound { status: u16, message: String },
    #[error("upstream {url} answered {status}")]
    Status { url: String, status: u16 },
    /// The connection failed or broke off (for git: any failure of the git process not named
    /// elsewhere, such as a transfer cut short).
    #[error("upstream {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("upstream {url} timed out")]
    Timeout { url: String },
    #[error("upstream {url} sent more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("upstream {url} sent an invalid answer: {reason}")]
    Invalid { url: String, reason: String },
    /// The origin refused agora's credentials or could not be trusted (wrong token or key, unknown
    /// CA). The message names the cause, never the secret.
    #[error("{message}")]
    Refused { message: String },
    #[error("module fetching is disabled (GOPROXY=off)")]
    Disabled,
    /// The proxy's own concurrency limit was reached and the wait for a slot timed out.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("writing download to {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// "Not here": the go command moves on to the next `,` entry only for these.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }

    fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Transport { .. } | FetchError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Shared HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    opts: ClientOptions,
    /// [`ClientOptions::memory_budget`] in KiB permits.
    budget: Arc<Semaphore>,
}

/// Permits of the memory budget are KiB, so that a `u32` count covers any budget.
const BUDGET_UNIT: usize = 1024;

/// Upper bound on the text kept from a "not found" body (the go command prints at most 8 lines).
const MESSAGE_LIMIT: usize = 1024;

impl UpstreamClient {
    pub fn new(opts: ClientOptions) -> Result<Self, FetchError> {
        let mut certs = Vec::new();
        for pem in &opts.extra_ca_pem {
            let mut parsed =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| FetchError::Invalid {
                    url: "(configured CA bundle)".into(),
                    reason: e.to_string(),
                })?;
            certs.append(&mut parsed);
        }
        let http = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.idle_timeout)
            .redirect(crate::egress::redirect_policy())
            .dns_resolver(crate::egress::GuardedResolver::new(&opts.internal_hosts))
            .tls_certs_merge(certs)
            .build()
            .map_err(|e| FetchError::Transport {
                url: "(client setup)".into(),
                message: e.to_string(),
            })?;
        let permits = (opts.memory_budget / BUDGET_UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Ok(UpstreamClient {
            http,
            budget: Arc::new(Semaphore::new(permits)),
            opts,
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// GETs `base/rel` fully into memory, refusing bodies over `limit` bytes.
    pub async fn get_bytes(&self, base: &str, rel: &str, limit: u64) -> Result<Bytes, FetchError> {
        let url = join(base, rel);
        if let Some(path) = url.strip_prefix("file://") {
            return read_file(&url, Path::new(path), limit).await;
        }
        let too_large = || FetchError::TooLarge {
            url: redact(&url),
            limit,
        };
        self.with_retries(&url, || async {
            let resp = self.send(&url, self.opts.timeout).await?;
            // A declared size over the limit is refused before a byte is read.
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut body = BytesMut::new();
            let mut held: Option<OwnedSemaphorePermit> = None;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transport(&url, e))?;
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                let units = (body.len() + chunk.len()).div_ceil(BUDGET_UNIT)
                    - held.as_ref().map_or(0, |p| p.num_permits());
                if units > 0 {
                    let more = u32::try_from(units)
                        .ok()
                        .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
                        .ok_or_else(|| {
                            FetchError::Overloaded(format!(
                                "more than {} MiB of upstream answers are downloading; retry shortly",
                                self.opts.memory_budget >> 20
                            ))
                        })?;
                    match &mut held {
                        Some(p) => p.merge(more),
                        None => held = Some(more),
                    }
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        })
        .await
    }

    /// GETs `base/rel` into the file at `dest` (created or truncated), streaming, refusing bodies
    /// over `limit` bytes. Returns the number of bytes written.
    pub async fn get_to_file(
        &self,
        base: &str,
        rel: &str,
        dest: &Path,
        limit: u64,
    ) -> Result<u64, FetchError> {
        let url = join(base, rel);
        let scratch = |source| FetchError::Scratch {
            path: dest.to_owned(),
            source,
        };
        if let Some(path) = url.strip_prefix("file://") {
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| file_err(&url, e))?;
            if meta.len() > limit {
                return Err(FetchError::TooLarge { url, limit });
            }
            return tokio::fs::copy(path, dest).await.map_err(scratch);
        }
        self.with_retries(&url, || async {
            let resp = self.send(&url, self.opts.zip_timeout).await?;
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(FetchError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            let mut file = tokio::fs::File::create(dest).await.map_err(scratch)?;
            let mut written = 0u64;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transport(&url, e))?;
                written += chunk.len() as u64;
                if written > limit {
                    return Err(FetchError::TooLarge {
                        url: url.clone(),
                        limit,
                    });
                }
                file.write_all(&chunk).await.map_err(scratch)?;
            }
            file.flush().await.map_err(scratch)?;
            Ok(written)
        })
        .await
    }

    /// POSTs a JSON `body` to `url` once (no retries: the caller decides what a failure means)
    /// and returns the status with at most `text_limit` bytes of the answer, as text.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
        text_limit: usize,
    ) -> Result<(u16, String), FetchError> {
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status().as_u16();
        let mut text = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport(url, e))?;
            text.extend_from_slice(&chunk);
            if text.len() >= text_limit {
                text.truncate(text_limit);
                break;
            }
        }
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }

    #[tracing::instrument(level = "debug", name = "upstream.request", skip_all, fields(
        otel.kind = "client",
        url.full = %redact(url),
        http.response.status_code = tracing::field::Empty,
    ))]
    async fn send(&self, url: &str, timeout: Duration) -> Result<reqwest::Response, FetchError> {
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status == StatusCode::OK {
            return Ok(resp);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            let message = not_found_message(resp).await;
            return Err(FetchError::NotFound {
                status: status.as_u16(),
                message,
            });
        }
        Err(FetchError::Status {
            url: redact(url),
            status: status.as_u16(),
        })
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut op: F) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(err) if err.is_retryable() && attempt < self.opts.retries => {
                    let delay = self.opts.backoff * 2u32.pow(attempt) + jitter(self.opts.backoff);
                    tracing::debug!(upstream.url = %redact(url), attempt, error = %err, "retrying upstream request");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn join(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

fn transport(url: &str, err: reqwest::Error) -> FetchError {
    if err.is_timeout() {
        return FetchError::Timeout { url: redact(url) };
    }
    // reqwest's Display includes the URL; rebuild the message from the source chain without it.
    let mut message = String::new();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&s.to_string());
        source = s.source();
    }
    if message.is_empty() {
        message = if err.is_connect() {
            "connection failed".into()
        } else {
            "request failed".into()
        };
    }
    FetchError::Transport {
        url: redact(url),
        message,
    }
}

async fn not_found_message(resp: reqwest::Response) -> String {
    let mut text = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        text.extend_from_slice(&chunk);
        if text.len() >= MESSAGE_LIMIT {
            break;
        }
    }
    clean_message(&String::from_utf8_lossy(&text))
}

/// Keeps a printable, short message: at most 8 lines, no control characters.
fn clean_message(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .take(MESSAGE_LIMIT)
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    let lines: Vec<&str> = cleaned.trim().lines().take(8).collect();
    if lines.is_empty() {
        "not found".into()
    } else {
        lines.join("\n")
    }
}

async fn read_file(url: &str, path: &Path, limit: u64) -> Result<Bytes, FetchError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| file_err(url, e))?;
    if meta.len() > limit {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| file_err(url, e))
}

fn file_err(url: &str, err: std::io::Error) -> FetchError {
    match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => FetchError::NotFound {
            status: 404,
            message: "not found".into(),
        },
        _ => FetchError::Transport {
            url: url.to_owned(),
            message: err.to_string(),
        },
    }
}

fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode as S;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn fast() -> ClientOptions {
        ClientOptions {
            backoff: Duration::from_millis(5),
            timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let base = serve(axum::Router::new().route(
            "/m/@v/list",
            get(move |headers: axum::http::HeaderMap| {
                let n = h.fetch_add(1, Ordering::SeqCst);
                let ua = headers[axum::http::header::USER_AGENT]
                    .to_str()
                    .unwrap()
                    .to_owned();
                async move {
                    assert!(ua.starts_with("agora/"), "{ua}");
                    if n < 2 {
                        (S::SERVICE_UNAVAILABLE, "busy")
                    } else {
                        (S::OK, "v1.0.0\n")
                    }
                }
            }),
        ))
        .await;
        let client = UpstreamClient::new(fast()).unwrap();
        let body = client.get_bytes(&base, "m/@v/list", 1024).await.unwrap();
        assert_eq!(&body[..], b"v1.0.0\n");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn maps_statuses_and_limits() {
        let base = serve(
            axum::Router::new()
                .route(
                    "/gone",
                    get(|| async { (S::GONE, "not found: gone\u{7}\nline2") }),
                )
                .route("/forbidden", get(|| async { (S::FORBIDDEN, "no") }))
                .route("/big", get(|| async { vec![b'x'; 4096] }))
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                ),
        )
        .await;
        let client = UpstreamClient::new(ClientOptions {
            retries: 0,
            ..fast()
        })
        .unwrap();
        match client.get_bytes(&base, "gone", 100).await {
            Err(FetchError::NotFound { status, message }) => {
                assert_eq!(status, 410);
                assert_eq!(message, "not found: gone\nline2");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client.get_bytes(&base, "forbidden", 100).await,
            Err(FetchError::Status { status: 403, .. })
        ));
        assert!(matches!(
            client.get_bytes(&base, "big", 100).await,
            Err(FetchError::TooLarge { .. })
        ));
        assert!(matches!(
            client.get_bytes(&base, "slow", 100).await,
            Err(FetchError::Timeout { .. })
        ));
    }

    /// Regression: 32 concurrent fetches of distinct 60 MiB go.mod files held up to 64 MiB each
    /// in memory (1.96 GB). A declared size over the limit is refused unread, and answers of
    /// unknown size share one memory budget.
    #[tokio::test]
    async fn large_answers_are_refused_unread_and_share_a_memory_budget() {
        // A 600 KiB chunk, a pause, another: chunked, so no Content-Length.
        let slow = || async {
            let chunks = futures::stream::unfold(0, |i| async move {
                if i == 2 {
                    return None;
                }
                if i == 1 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Some((Ok::<_, std::io::Error>(vec![b'x'; 600 << 10]), i + 1))
            });
            axum::body::Body::from_stream(chunks)
        };
        let base = serve(
            axum::Router::new()
                .route("/chunked", get(slow))
                .route("/declared", get(|| async { vec![b'm'; 2 << 20] })),
        )
        .await;
        // 1.5 MiB: one 1.2 MiB answer fits; two at once do not.
        let client = UpstreamClient::new(ClientOptions {
            memory_budget: 1536 << 10,
            ..fast()
        })
        .unwrap();
        let err = client
            .get_bytes(&base, "declared", 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
        let (a, b) = tokio::join!(
            client.get_bytes(&base, "chunked", 4 << 20),
            client.get_bytes(&base, "chunked", 4 << 20)
        );
        let refused = [&a, &b]
            .into_iter()
            .filter(|r| matches!(r, Err(FetchError::Overloaded(_))))
            .count();
        assert_eq!(refused, 1, "{a:?} {b:?}");
        assert!([&a, &b]
            .iter()
            .any(|r| r.as_ref().is_ok_and(|b| b.len() == 1200 << 10)));
        // What a fetch held is given back.
        for _ in 0..2 {
            let body = client.get_bytes(&base, "chunked", 4 << 20).await.unwrap();
            assert_eq!(body.len(), 1200 << 10);
        }
    }
}
