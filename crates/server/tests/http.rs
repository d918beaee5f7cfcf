//! The HTTP layer over a pre-filled in-memory store (no upstream is ever asked): validators and
//! conditional requests, ranges, compression and metrics through the router; slow-client timeouts
//! and shutdown through `serve_with` on a real socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{Policy, Proxy, ProxyOptions, ProxySource, SumdbProxy};
use agora_gomod::module::ModulePath;
use agora_server::{router, serve_with, AppState, ServeOptions};
use agora_storage::{ArtifactKind, Storage, StorageKey};
use agora_upstream::{ClientOptions, UpstreamClient};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const MODULE: &str = "example.com/m";
const MOD: &[u8] =
    b"module example.com/m\n\ngo 1.21\n\nrequire example.com/other v1.2.3 // indirect\n";
const LIST: &[u8] = b"v1.0.0\nv1.0.1\nv1.1.0\nv1.2.0\nv1.3.0\nv2.0.0+incompatible\n";
const ZIP_LEN: usize = 32 << 20;

fn zip_bytes() -> &'static [u8] {
    static ZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZIP.get_or_init(|| (0..ZIP_LEN).map(|i| (i * 7 % 251) as u8).collect())
}

/// An app whose store already holds `example.com/m@v1.0.0` (info, mod, a 32 MiB "zip") and a fresh
/// version list. Its only source is a closed port, so any fetch would fail loudly.
async fn app() -> (Router, Proxy) {
    let storage = Storage::memory().unwrap();
    let m = ModulePath::new(MODULE).unwrap();
    let put = |kind, body: Vec<u8>| {
        let storage = storage.clone();
        let key = StorageKey::artifact(&m, "v1.0.0", kind);
        async move { storage.put_once(&key, Bytes::from(body)).await.unwrap() }
    };
    put(
        ArtifactKind::Info,
        br#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#.to_vec(),
    )
    .await;
    put(ArtifactKind::Mod, MOD.to_vec()).await;
    put(ArtifactKind::Zip, zip_bytes().to_vec()).await;
    storage
        .put_overwrite(&StorageKey::List(m.clone()), Bytes::from_static(LIST))
        .await
        .unwrap();

    let client = UpstreamClient::new(ClientOptions {
        retries: 0,
        ..Default::default()
    })
    .unwrap();
    let nowhere = Arc::new(ProxySource::new(
        "http://127.0.0.1:9".into(),
        client.clone(),
    ));
    let policy = Policy::new(&[], &[]);
    let proxy = Proxy::new(
        storage.clone(),
        policy.clone(),
        &[],
        client.clone(),
        nowhere,
        ProxyOptions::default(),
    );
    let sumdb = Arc::new(SumdbProxy::new(Vec::new(), None, client, proxy.clone()));
    let app = router(AppState::new(proxy.clone(), sumdb));
    (app, proxy)
}

fn path(ext: &str) -> String {
    if ext == "list" {
        format!("/{MODULE}/@v/list")
    } else {
        format!("/{MODULE}/@v/v1.0.0.{ext}")
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test]
async fn artifacts_carry_validators_and_conditional_gets_answer_304() {
    let (app, _) = app().await;
    for ext in ["info", "mod", "zip", "list"] {
        let full = send(&app, "GET", &path(ext), &[]).await;
        assert_eq!(full.status, StatusCode::OK, "{ext}");
        let etag = full.header(header::ETAG).expect("ETag").to_owned();
        let last_modified = full
            .header(header::LAST_MODIFIED)
            .expect("Last-Modified")
            .to_owned();
        let cache_control = full.header(header::CACHE_CONTROL).unwrap().to_owned();
        assert_eq!(
            etag.starts_with("W/"),
            ext != "zip",
            "{ext}: weak tags for text only: {etag}"
        );

        // The same content gets the same tag.
        let again = send(&app, "GET", &path(ext), &[]).await;
        assert_eq!(again.header(header::ETAG), Some(etag.as_str()), "{ext}");

        for (name, value) in [
            (header::IF_NONE_MATCH, etag.as_str()),
            (header::IF_NONE_MATCH, "\"nope\", *"),
            (header::IF_MODIFIED_SINCE, last_modified.as_str()),
        ] {
            for method in ["GET", "HEAD"] {
                let cond = send(&app, method, &path(ext), &[(name.clone(), value)]).await;
                assert_eq!(
                    cond.status,
                    StatusCode::NOT_MODIFIED,
                    "{ext} {method} {name}: {value}"
                );
                assert!(cond.body.is_empty());
                assert_eq!(cond.header(header::ETAG), Some(etag.as_str()));
                assert_eq!(
                    cond.header(header::CACHE_CONTROL),
                    Some(cache_control.as_str())
                );
            }
        }
        let changed = send(
            &app,
            "GET",
            &path(ext),
            &[(header::IF_NONE_MATCH, "\"other\"")],
        )
        .await;
        assert_eq!(changed.status, StatusCode::OK);
        assert_eq!(changed.body, full.body);
        let old = send(
            &app,
            "GET",
            &path(ext),
            &[(header::IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT")],
        )
        .await;
        assert_eq!(old.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn zips_serve_byte_ranges_and_head_agrees_with_get() {
    let (app, _) = app().await;
    let zip = zip_bytes();
    let len = zip.len() as u64;
    let full = send(&app, "GET", &path("zip"), &[]).await;
    assert_eq!(full.header(header::ACCEPT_RANGES), Some("bytes"));
    assert_eq!(full.body.len(), ZIP_LEN);
    assert!(full.body == zip);

    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-1099", 100, 1100),
        ("bytes=1000000-", 1_000_000, len),
        ("bytes=-4096", len - 4096, len),
        ("bytes=5-99999999999", 5, len),
    ] {
        let part = send(&app, "GET", &path("zip"), &[(header::RANGE, range)]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{range}");
        let content_range = format!("bytes {start}-{}/{len}", end - 1);
        assert_eq!(
            part.header(header::CONTENT_RANGE),
            Some(content_range.as_str())
        );
        assert_eq!(
            part.header(header::CONTENT_LENGTH),
            Some((end - start).to_string().as_str())
        );
        assert!(
            part.body[..] == zip[start as usize..end as usize],
            "{range}"
        );

        let head = send(&app, "HEAD", &path("zip"), &[(header::RANGE, range)]).await;
        assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
        assert!(head.body.is_empty());
        for h in [
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::CONTENT_TYPE,
        ] {
            assert_eq!(
                head.header(h.clone()),
                part.header(h.clone()),
                "HEAD {range} {h}"
            );
        }
    }

    for range in ["bytes=99999999999-", "bytes=-0"] {
        let bad = send(&app, "GET", &path("zip"), &[(header::RANGE, range)]).await;
        assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            bad.header(header::CONTENT_RANGE),
            Some(format!("bytes */{len}").as_str())
        );
        assert!(bad.body.is_empty());
    }
    // Multiple ranges and a stale If-Range get the whole zip.
    let etag = full.header(header::ETAG).unwrap().to_owned();
    for headers in [
        vec![(header::RANGE, "bytes=0-1,5-6")],
        vec![(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"old\"")],
    ] {
        let whole = send(&app, "GET", &path("zip"), &headers).await;
        assert_eq!(whole.status, StatusCode::OK);
        assert_eq!(whole.body.len(), ZIP_LEN);
    }
    let current = send(
        &app,
        "GET",
        &path("zip"),
        &[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, &etag)],
    )
    .await;
    assert_eq!(current.status, StatusCode::PARTIAL_CONTENT);

    let head = send(&app, "HEAD", &path("zip"), &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header(header::CONTENT_LENGTH),
        Some(len.to_string().as_str())
    );
    assert_eq!(head.header(header::ETAG), Some(etag.as_str()));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn text_is_compressed_when_accepted_zips_never() {
    let (app, _) = app().await;
    for (ext, expected) in [("list", LIST), ("mod", MOD)] {
        let gz = send(
            &app,
            "GET",
            &path(ext),
            &[(header::ACCEPT_ENCODING, "gzip")],
        )
        .await;
        assert_eq!(gz.header(header::CONTENT_ENCODING), Some("gzip"), "{ext}");
        assert_eq!(gz.header(header::VARY), Some("accept-encoding"));
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, expected, "{ext}");
        let br = send(&app, "GET", &path(ext), &[(header::ACCEPT_ENCODING, "br")]).await;
        assert_eq!(br.header(header::CONTENT_ENCODING), Some("br"), "{ext}");
        let identity = send(&app, "GET", &path(ext), &[]).await;
        assert_eq!(identity.header(header::CONTENT_ENCODING), None);
        assert_eq!(&identity.body[..], expected);
        assert_eq!(identity.header(header::VARY), Some("accept-encoding"));
        // The (weak) tag is the same for every encoding, so a 304 works whatever was stored.
        assert_eq!(gz.header(header::ETAG), identity.header(header::ETAG));
    }
    let zip = send(
        &app,
        "GET",
        &path("zip"),
        &[(header::ACCEPT_ENCODING, "gzip, br")],
    )
    .await;
    assert_eq!(zip.header(header::CONTENT_ENCODING), None);
    assert_eq!(zip.body.len(), ZIP_LEN);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let (app, proxy) = app().await;
    send(&app, "GET", &path("info"), &[]).await;
    send(&app, "GET", &path("zip"), &[(header::RANGE, "bytes=0-9")]).await;
    send(&app, "GET", &path("list"), &[]).await;
    send(&app, "GET", "/example.com/m/@v/v1.0.0.tar", &[]).await;
    let (etag, _) = {
        let a = send(&app, "HEAD", &path("mod"), &[]).await;
        (a.header(header::ETAG).unwrap().to_owned(), a.status)
    };
    send(&app, "GET", &path("mod"), &[(header::IF_NONE_MATCH, &etag)]).await;
    let m = send(&app, "GET", "/metrics", &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(
        m.header(header::CONTENT_TYPE),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for line in [
        "agora_http_requests_total{route=\"info\",status=\"200\"} 1",
        "agora_http_requests_total{route=\"zip\",status=\"206\"} 1",
        "agora_http_requests_total{route=\"list\",status=\"200\"} 1",
        "agora_http_requests_total{route=\"other\",status=\"404\"} 1",
        "agora_http_requests_total{route=\"mod\",status=\"200\"} 1",
        "agora_http_requests_total{route=\"mod\",status=\"304\"} 1",
        "agora_http_response_bytes_total{route=\"zip\"} 10",
        &format!(
            "agora_http_response_bytes_total{{route=\"list\"}} {}",
            LIST.len()
        ),
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(proxy.metrics().render(), text);
}

/// A running `serve_with` on loopback; stops when dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(app: Router, opts: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve_with(
        listener,
        app,
        async {
            let _ = rx.await;
        },
        opts,
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

/// One request on a fresh connection; the status code.
async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout_and_do_not_block_others() {
    let (app, _) = app().await;
    let server = start(
        app,
        ServeOptions {
            header_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                // One byte every 100 ms: the head would take ~8 s to arrive.
                for b in request {
                    if s.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // The server closing the connection shows up as EOF or a reset.
                    let mut buf = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                        Ok(Ok(n)) => panic!("slow client got an answer: {:?}", &buf[..n]),
                        Err(_) => {}
                    }
                }
                panic!("slow client was never disconnected");
            })
        })
        .collect();
    // Meanwhile, normal clients are served at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get_status(server.addr, &path("info")).await, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    for s in slow {
        let closed_after = s.await.unwrap();
        assert!(
            closed_after >= Duration::from_millis(450) && closed_after < Duration::from_secs(3),
            "slow client closed after {closed_after:?}"
        );
    }
    drop(server);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_send_timeout() {
    let (app, _) = app().await;
    let server = start(
        app,
        ServeOptions {
            send_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path("zip")).as_bytes())
        .await
        .unwrap();
    // Never read while the server fills the socket buffers, then drain what was sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        outcome.is_ok(),
        "the connection should have been closed by the server"
    );
    assert!(
        got.len() < ZIP_LEN,
        "the whole zip arrived ({} bytes): the stalled write never timed out",
        got.len()
    );
    // Clients that read are unaffected.
    assert_eq!(get_status(server.addr, &path("zip")).await, 200);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_responses_and_returns() {
    let (app, _) = app().await;
    let mut server = start(app, ServeOptions::default()).await;
    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A download in progress completes.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path("zip")).as_bytes())
        .await
        .unwrap();
    let n = busy.read(&mut buf).await.unwrap();
    assert!(n > 0);

    server.stop.take().unwrap().send(()).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), busy.read_to_end(&mut rest))
        .await
        .expect("in-flight download finishes")
        .unwrap();
    assert!(n + rest.len() > ZIP_LEN, "the whole zip was sent");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve_with returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener closed"
    );
}

/// On the wire, a 304 carries no `Content-Length` (it would have to be the 200's length).
#[tokio::test]
async fn not_modified_on_the_wire_has_no_content_length() {
    let (app, _) = app().await;
    let etag = send(&app, "GET", &path("mod"), &[])
        .await
        .header(header::ETAG)
        .unwrap()
        .to_owned();
    let server = start(app, ServeOptions::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
            path("mod")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8(resp).unwrap().to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 304"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(!text.contains("content-encoding"), "{text}");
    assert!(
        text.contains(&format!("etag: {}", etag.to_ascii_lowercase())),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "no body: {text}");
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection buffer also bounds the request head: a head of 100 KiB gets 431, a head of
/// 16 KiB is served, and a whole 32 MiB zip still streams intact through the small write queue.
#[tokio::test]
async fn oversized_request_heads_get_431_and_large_bodies_stream_whole() {
    let (app, _) = app().await;
    let server = start(app, ServeOptions::default()).await;
    let exchange = |head: String| async move {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // The server may answer (and close) before it has read everything we send.
        let _ = s.write_all(head.as_bytes()).await;
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp).await;
        resp
    };
    let status = |resp: &[u8]| -> u16 {
        String::from_utf8_lossy(&resp[..resp.len().min(64)])
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let with_header = |len: usize| {
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            path("info"),
            "a".repeat(len)
        )
    };
    assert_eq!(status(&exchange(with_header(100 << 10)).await), 431);
    assert_eq!(status(&exchange(with_header(16 << 10)).await), 200);

    let resp = exchange(format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        path("zip")
    ))
    .await;
    assert_eq!(status(&resp), 200);
    let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(resp[body_at..] == *zip_bytes(), "zip body differs");
    drop(server);
}

/// A Unix socket gets the TCP listener's treatment: the peer is loopback (`UNIX_PEER`), a client
/// that sends nothing is dropped after the header timeout, shutdown returns.
#[cfg(unix)]
#[tokio::test]
async fn a_unix_socket_is_served_with_the_same_peer_timeouts_and_shutdown() {
    use axum::extract::ConnectInfo;
    use tokio::net::UnixStream;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.sock");
    let (listener, file) = agora_server::bind_unix(&path).unwrap();
    let app = Router::new().route(
        "/peer",
        axum::routing::get(
            |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move { peer.to_string() },
        ),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(
        listener,
        app,
        async {
            let _ = rx.await;
        },
        ServeOptions {
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    ));

    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.ends_with(&agora_server::UNIX_PEER.to_string()),
        "{resp}"
    );

    let started = Instant::now();
    let mut idle = UnixStream::connect(&path).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("an idle client is dropped");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve_with returns after shutdown")
        .unwrap()
        .unwrap();
    drop(file);
    assert!(!path.exists());
}
