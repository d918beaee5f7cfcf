//! Small HTTP helpers for assertions: one request, the whole answer, no surprises.
//!
//! Each call uses a fresh client (no connection reuse between calls, so a restarted server on a reused
//! port never sees a stale pooled connection), never follows redirects (tests assert on them), ignores
//! proxy environment variables, and times out after 60 s. The blocking functions must not be called
//! from inside an async runtime (reqwest's blocking client refuses); use the `_async` forms there.

use std::path::Path;
use std::time::Duration;

pub use reqwest::header::HeaderMap;
use reqwest::Method;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `(status, headers, body)`.
pub type Answer = (u16, HeaderMap, Vec<u8>);

/// GET `url`.
///
/// # Panics
/// On a transport error (connection refused, reset, time-out); use [`try_request`] to assert on those.
pub fn get(url: &str) -> Answer {
    request("GET", url, &[], None)
}

/// GET `url` with extra request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    request("GET", url, headers, None)
}

/// Any method, with headers and an optional body. Panics on transport errors.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Answer {
    try_request(method, url, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e} ({e:?})"))
}

/// Like [`request`], returning transport errors.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, reqwest::Error> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()?;
    send_blocking(client, method, url, headers, body)
}

/// GET an `https://` URL trusting only the CA in `ca_file` (PEM), e.g.
/// [`HttpsGitServer::ca_cert`](crate::HttpsGitServer::ca_cert). Panics on transport errors.
pub fn get_with_ca(url: &str, ca_file: &Path, headers: &[(&str, &str)]) -> Answer {
    try_request_with_ca("GET", url, ca_file, headers, None)
        .unwrap_or_else(|e| panic!("GET {url} failed: {e} ({e:?})"))
}

/// Any request to an `https://` URL trusting only the CA in `ca_file`, returning transport errors
/// (e.g. a certificate the CA did not sign).
pub fn try_request_with_ca(
    method: &str,
    url: &str,
    ca_file: &Path,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, reqwest::Error> {
    let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("read {}: {e}", ca_file.display()));
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .build()?;
    send_blocking(client, method, url, headers, body)
}

fn send_blocking(
    client: reqwest::blocking::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, reqwest::Error> {
    let method = Method::from_bytes(method.as_bytes()).expect("valid HTTP method");
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes()?.to_vec();
    Ok((status, headers, body))
}

/// Async GET `url`. Panics on transport errors.
pub async fn get_async(url: &str) -> Answer {
    request_async("GET", url, &[], None).await
}

/// Async form of [`request`]. Panics on transport errors.
pub async fn request_async(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    try_request_async(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e} ({e:?})"))
}

/// Async form of [`try_request`].
pub async fn try_request_async(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, reqwest::Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()?;
    let method = Method::from_bytes(method.as_bytes()).expect("valid HTTP method");
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?.to_vec();
    Ok((status, headers, body))
}

/// The body as UTF-8 text (lossy), for assertions and messages.
pub fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Decodes `%XX` escapes of a URL path (the test servers match and record decoded paths); `None`
/// for a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
