//! HTTPS through `serve_tls` on a real socket, with certificates from a throwaway CA: HTTP/1.1 and
//! HTTP/2 over ALPN, the `Transport` and `ClientInfo` seen by handlers, certificate reloads (on
//! demand, by the watcher, and refused when the files are broken), the handshake timeout and
//! graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_server::{
    serve_tls, serve_with, CancellationToken, ClientInfo, ReloadingTls, ServeOptions, TlsError,
    TlsFiles, Transport, TrustedProxies,
};
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A throwaway certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "agora test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 with its own key.
    fn leaf(&self, common_name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// Replaces a file the way Kubernetes and renewal tools do: write aside, then rename.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Certificate files in a temporary directory.
struct Files {
    _dir: tempfile::TempDir,
    files: TlsFiles,
}

impl Files {
    fn new(leaf: &Leaf) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert_file: dir.path().join("tls.crt"),
            key_file: dir.path().join("tls.key"),
        };
        let this = Files { _dir: dir, files };
        this.write(leaf);
        this
    }

    fn write(&self, leaf: &Leaf) {
        replace(&self.files.cert_file, &leaf.cert_pem);
        replace(&self.files.key_file, &leaf.key_pem);
    }

    fn cert(&self) -> &PathBuf {
        &self.files.cert_file
    }

    fn key(&self) -> &PathBuf {
        &self.files.key_file
    }
}

/// `/` tells the scheme and peer the connection loop recorded; `/client` what [`ClientInfo`]
/// makes of them with 127.0.0.1 trusted; `/slow` signals `started` and answers 500 ms later.
fn app(started: Arc<Notify>) -> Router {
    let trusted = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    Router::new()
        .route(
            "/",
            get(
                |Extension(t): Extension<Transport>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    format!("secure={} peer={}", t.secure, peer.ip())
                },
            ),
        )
        .route(
            "/client",
            get(|client: ClientInfo| async move {
                format!("{}://{}", client.scheme(), client.ip)
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .with_state(trusted)
}

/// A running listener (HTTPS, or plain HTTP for comparison).
struct Server {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_tls(
    tls: Arc<ReloadingTls>,
    stop: &CancellationToken,
    opts: ServeOptions,
    started: Arc<Notify>,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(serve_tls(listener, app(started), shutdown, opts, tls));
    Server { addr, task }
}

fn https_client(ca: &Ca, addr: SocketAddr, http1: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10));
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// The leaf certificate a fresh TLS connection is given.
async fn served_cert(addr: SocketAddr, ca: &Ca) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn stop_server(stop: &CancellationToken, server: Server) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server stops in time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn https_and_http_side_by_side() {
    let ca = Ca::new();
    let leaf = ca.leaf("agora one");
    let files = Files::new(&leaf);
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let https = start_tls(tls, &stop, ServeOptions::default(), Arc::default()).await;

    // Plain HTTP on a second listener, stopped by the same token.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = listener.local_addr().unwrap();
    let plain = tokio::spawn(serve_with(
        listener,
        app(Arc::default()),
        stop.clone().cancelled_owned(),
        ServeOptions::default(),
    ));

    for (http1, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let client = https_client(&ca, https.addr, http1);
        for host in ["localhost".to_string(), "127.0.0.1".to_string()] {
            let url = format!("https://{host}:{}/", https.addr.port());
            let resp = client.get(&url).send().await.unwrap();
            assert_eq!(resp.version(), version, "{url}");
            assert_eq!(resp.text().await.unwrap(), "secure=true peer=127.0.0.1");
        }
        let client_url = format!("https://localhost:{}/client", https.addr.port());
        let resp = client
            .get(&client_url)
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-proto", "http")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "http://198.51.100.7");
    }

    let resp = reqwest::get(format!("http://{plain_addr}/")).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "secure=false peer=127.0.0.1");
    let resp = reqwest::Client::new()
        .get(format!("http://{plain_addr}/client"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "https://127.0.0.1");

    stop_server(&stop, https).await;
    tokio::time::timeout(Duration::from_secs(5), plain)
        .await
        .expect("plain server stops with the same token")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections() {
    let ca = Ca::new();
    let one = ca.leaf("agora one");
    let two = ca.leaf("agora two");
    let files = Files::new(&one);
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let server = start_tls(tls.clone(), &stop, ServeOptions::default(), Arc::default()).await;
    assert_eq!(served_cert(server.addr, &ca).await, one.der);
    // A keep-alive connection opened before the reload.
    let client = https_client(&ca, server.addr, true);
    let url = format!("https://localhost:{}/", server.addr.port());
    client.get(&url).send().await.unwrap();

    assert!(!tls.reload().unwrap(), "unchanged files");
    let before = tls.cert_sha256();
    files.write(&two);
    assert!(tls.reload().unwrap());
    assert!(!tls.reload().unwrap(), "already loaded");
    assert_ne!(tls.cert_sha256(), before);
    assert_eq!(served_cert(server.addr, &ca).await, two.der);
    // Established connections are not disturbed.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    stop_server(&stop, server).await;
}

#[tokio::test]
async fn broken_files_keep_the_old_certificate() {
    let ca = Ca::new();
    let one = ca.leaf("agora one");
    let two = ca.leaf("agora two");
    let files = Files::new(&one);
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let server = start_tls(tls.clone(), &stop, ServeOptions::default(), Arc::default()).await;

    // Half-way through a renewal: the new certificate with the old key.
    replace(files.cert(), &two.cert_pem);
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("does not match certificate"),
        "{err}"
    );
    assert_eq!(served_cert(server.addr, &ca).await, one.der);

    replace(files.key(), "not a key\n");
    let err = tls.reload().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no private key in {}", files.key().display())
    );
    // Key material never reaches the message.
    let truncated = &two.key_pem[..two.key_pem.len() / 2];
    replace(files.key(), truncated);
    let err = tls.reload().unwrap_err().to_string();
    assert!(!err.contains(&truncated[30..60]), "{err}");

    replace(files.cert(), "");
    replace(files.key(), &two.key_pem);
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

    std::fs::remove_file(files.cert()).unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot read certificate file {}: ",
            files.cert().display()
        )),
        "{err}"
    );
    assert_eq!(served_cert(server.addr, &ca).await, one.der);

    files.write(&two);
    assert!(tls.reload().unwrap());
    assert_eq!(served_cert(server.addr, &ca).await, two.der);

    stop_server(&stop, server).await;
}

#[tokio::test]
async fn load_reports_broken_files() {
    let ca = Ca::new();
    let one = ca.leaf("agora one");
    let two = ca.leaf("agora two");
    let files = Files::new(&one);
    replace(files.key(), &two.key_pem);
    let err = ReloadingTls::load(files.files.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key {} does not match certificate {}",
            files.key().display(),
            files.cert().display()
        )
    );
    std::fs::remove_file(files.key()).unwrap();
    let err = ReloadingTls::load(files.files.clone()).unwrap_err();
    assert!(matches!(err, TlsError::ReadKey { .. }), "{err}");
}

/// Polls `check` every 50 ms for up to 5 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn watcher_reloads_changed_files() {
    let ca = Ca::new();
    let one = ca.leaf("agora one");
    let two = ca.leaf("agora two");
    let three = ca.leaf("agora three");
    let files = Files::new(&one);
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let server = start_tls(tls.clone(), &stop, ServeOptions::default(), Arc::default()).await;
    let watch = tls.clone().spawn_watch(Duration::from_millis(100));

    files.write(&two);
    eventually("the watcher to load the second certificate", async || {
        served_cert(server.addr, &ca).await == two.der
    })
    .await;

    // A broken pair is not picked up; the next good one is.
    replace(files.key(), &one.key_pem);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(served_cert(server.addr, &ca).await, two.der);
    files.write(&three);
    eventually("the watcher to load the third certificate", async || {
        served_cert(server.addr, &ca).await == three.der
    })
    .await;

    // The watcher ends once nobody else holds the configuration.
    stop_server(&stop, server).await;
    drop(tls);
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("watcher ends")
        .unwrap();
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_header_timeout() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf("agora one"));
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let opts = ServeOptions {
        header_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = start_tls(tls, &stop, opts, Arc::default()).await;

    let started = Instant::now();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server closes the connection");
    // Closed without a byte (or reset): no ClientHello, no answer.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

    // The server is still fine.
    assert_eq!(
        https_client(&ca, server.addr, true)
            .get(format!("https://localhost:{}/", server.addr.port()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stop_server(&stop, server).await;
}

#[tokio::test]
async fn graceful_shutdown_drains_tls_requests() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf("agora one"));
    let tls = Arc::new(ReloadingTls::load(files.files.clone()).unwrap());
    let stop = CancellationToken::new();
    let started = Arc::new(Notify::new());
    // Default header timeout (30 s): a pending handshake must not hold shutdown for that long.
    let server = start_tls(tls, &stop, ServeOptions::default(), started.clone()).await;
    let addr = server.addr;
    let _silent = TcpStream::connect(addr).await.unwrap();

    let client = https_client(&ca, addr, false);
    let slow = tokio::spawn(
        client
            .get(format!("https://localhost:{}/slow", addr.port()))
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the slow request reaches its handler");

    let stopping = Instant::now();
    stop.cancel();
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server stops in time")
        .unwrap()
        .unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
