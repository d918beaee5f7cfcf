//! The testkit's own tests: each piece is checked against the real go command, so agora's tests can
//! trust what they are built on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use agora_testkit::fixtures::{self, BIG, GREET, GREET_V2, MIXED_CASE};
use agora_testkit::go::escape;
use agora_testkit::{http, public_modules, Agora, Fault, GitHost, GoClient, UpstreamProxy};

fn direct_client(host: &GitHost) -> GoClient {
    GoClient::find().gitconfig(host.gitconfig_path())
}

/// The go command fetches fixture repositories through the generated gitconfig (`file://` rewrite).
#[test]
fn go_downloads_fixtures_directly_from_git_host() {
    let host = GitHost::new();
    let fx = public_modules(&host);
    let go = direct_client(&host);

    let dl = go
        .mod_download("direct", &format!("{GREET}@v1.0.0"))
        .unwrap();
    assert_eq!(dl.path, GREET);
    assert_eq!(dl.version.as_deref(), Some("v1.0.0"));
    assert!(dl.sum.as_deref().unwrap().starts_with("h1:"));
    let origin = dl
        .origin
        .as_ref()
        .expect("direct downloads report an Origin");
    assert_eq!(origin["URL"], format!("https://{GREET}"));
    assert_eq!(origin["Hash"], fx.commit(&format!("{GREET}@v1.0.0")));
    let zip = dl.zip_bytes();
    assert_eq!(&zip[..2], b"PK");

    let list = go.list_versions("direct", GREET).unwrap();
    assert_eq!(list.versions, ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]);

    // @latest is the highest release; @main is a pseudo-version on top of the pre-release, with the
    // fixed commit time of the 4th commit (2024-01-02T03:04:05Z + 3h).
    let latest = go.list_m("direct", &[&format!("{GREET}@latest")]).unwrap();
    assert_eq!(latest.version.as_deref(), Some("v1.1.0"));
    let main = go.mod_download("direct", &format!("{GREET}@main")).unwrap();
    let expected = format!("v1.2.0-rc.1.0.20240102060405-{}", &fx.greet_untagged[..12]);
    assert_eq!(main.version.as_deref(), Some(expected.as_str()));

    let v2 = go
        .mod_download("direct", &format!("{GREET_V2}@v2.0.0"))
        .unwrap();
    assert_eq!(v2.version.as_deref(), Some("v2.0.0"));

    let mixed = go.list_versions("direct", MIXED_CASE).unwrap();
    assert_eq!(mixed.versions, ["v1.0.0", "v1.1.0-RC.1"]);
    let rc = go
        .mod_download("direct", &format!("{MIXED_CASE}@v1.1.0-RC.1"))
        .unwrap();
    assert!(
        rc.zip
            .as_deref()
            .unwrap()
            .contains("!mixed!case/@v/v1.1.0-!r!c.1.zip"),
        "module cache uses escaped paths: {:?}",
        rc.zip
    );

    let big = go.mod_download("direct", &format!("{BIG}@v1.0.0")).unwrap();
    let size = big.zip_bytes().len();
    assert!(
        (fixtures::BIG_BLOB_LEN..fixtures::BIG_BLOB_LEN + 64 * 1024).contains(&size),
        "big zip is about 1 MiB, got {size}"
    );

    // Failures come back with go's parsed JSON.
    let err = go
        .mod_download("direct", &format!("{GREET}@v9.9.9"))
        .unwrap_err();
    let parsed = err.download().expect("parsed JSON kept");
    assert!(
        parsed
            .error
            .as_deref()
            .unwrap()
            .contains("unknown revision v9.9.9"),
        "{err}"
    );
    let err = go
        .list_versions("direct", "github.com/agora-fixtures/nope")
        .unwrap_err();
    assert!(err.list().is_some(), "{err}");
}

/// A proxy built from the module cache serves what go accepts, with the same hashes as direct.
#[test]
fn upstream_proxy_serves_same_sums_as_direct() {
    let host = GitHost::new();
    let fx = public_modules(&host);
    let seed = direct_client(&host);
    let proxy = UpstreamProxy::from_fixtures(&seed, &host, &fx.queries());

    // A fresh client with no git access at all: everything must come from the proxy.
    let go = GoClient::find();
    for q in fx.queries() {
        let direct = seed.mod_download("direct", q).unwrap();
        let via = go.mod_download(&proxy.url(), q).unwrap();
        assert_eq!(via.version, direct.version, "{q}");
        assert_eq!(via.sum, direct.sum, "{q}");
        assert_eq!(via.go_mod_sum, direct.go_mod_sum, "{q}");
    }
    let list = go.list_versions(&proxy.url(), GREET).unwrap();
    assert_eq!(list.versions, ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]);

    // go asked for escaped paths, and the proxy recorded them.
    let reqs = proxy.requests();
    assert_eq!(
        proxy.count("/github.com/agora-fixtures/!mixed!case/@v/v1.1.0-!r!c.1.zip"),
        1,
        "{reqs:#?}"
    );
    assert_eq!(escape(MIXED_CASE), "github.com/agora-fixtures/!mixed!case");
    // On the wire, go percent-encodes the `!`.
    assert!(
        proxy
            .raw_requests()
            .contains(&"/github.com/agora-fixtures/%21mixed%21case/@v/v1.0.0.info".to_string()),
        "{:#?}",
        proxy.raw_requests()
    );

    // A missing version is a 404 with a text body, which go reports as "not found".
    let (status, headers, body) = http::get(&format!("{}/{GREET}/@v/v9.9.9.info", proxy.url()));
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert!(http::text(&body).contains("not found"));
    let (status, _, _) = http::get(&format!("{}/{GREET}/@latest", proxy.url()));
    assert_eq!(status, 404);

    // The fixture program builds through the proxy alone.
    proxy.reset_counts();
    let builder = GoClient::find();
    let dir = fx.program_dir();
    builder.build(&proxy.url(), &dir).unwrap();
    assert!(
        proxy.count(&format!("/{GREET}/@v/v1.1.0.zip")) == 1,
        "{:#?}",
        proxy.requests()
    );
    let sums = std::fs::read_to_string(dir.join("go.sum")).unwrap();
    assert!(sums.contains(&format!("{MIXED_CASE} v1.0.0 h1:")), "{sums}");
}

/// Reads whatever a raw HTTP/1.1 GET gets before the server closes or the timeout passes.
fn raw_get(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

#[test]
fn upstream_proxy_faults() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("m/@v")).unwrap();
    std::fs::write(tmp.path().join("m/@v/list"), "v1.0.0\n").unwrap();
    let payload = fixtures::deterministic_bytes(7, 256 * 1024);
    std::fs::write(tmp.path().join("m/@v/v1.0.0.zip"), &payload).unwrap();
    let mut proxy = UpstreamProxy::serve_dir(tmp.path());
    let url = proxy.url();

    let (status, headers, body) = http::get(&format!("{url}/m/@v/list"));
    assert_eq!((status, body.as_slice()), (200, b"v1.0.0\n".as_slice()));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    let (status, _, body) = http::get(&format!("{url}/m/@v/v1.0.0.zip"));
    assert_eq!(status, 200);
    assert!(body == payload, "zip served byte for byte");

    // Global status fault, with a path exempted.
    proxy.set_fault(Fault::Status(503));
    proxy.set_path_fault("/m/@v/list", Fault::None);
    assert_eq!(http::get(&format!("{url}/m/@v/v1.0.0.zip")).0, 503);
    assert_eq!(http::get(&format!("{url}/m/@v/list")).0, 200);
    proxy.clear_faults();

    // Delay.
    proxy.set_path_fault("/m/", Fault::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(http::get(&format!("{url}/m/@v/list")).0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Close without a response.
    proxy.set_path_fault("/m/", Fault::CloseConnection);
    assert!(http::try_request("GET", &format!("{url}/m/@v/list"), &[], None).is_err());
    assert_eq!(
        raw_get(proxy.addr(), "/m/@v/list", Duration::from_secs(10)).unwrap(),
        b""
    );

    // Truncated body: headers promise the whole file, the connection dies early.
    proxy.set_path_fault("/m/", Fault::Truncate(1000));
    assert!(http::try_request("GET", &format!("{url}/m/@v/v1.0.0.zip"), &[], None).is_err());
    let raw = raw_get(proxy.addr(), "/m/@v/v1.0.0.zip", Duration::from_secs(10)).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    assert!(
        text.contains(&format!("content-length: {}", payload.len())),
        "{text:.300}"
    );
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(raw.len() - head_end, 1000);

    // Hang: nothing comes back until the client gives up.
    proxy.set_path_fault("/m/", Fault::Hang);
    let err = raw_get(proxy.addr(), "/m/@v/list", Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    proxy.clear_faults();

    // Static files, and request accounting.
    proxy.add_file(
        "/sumdb/sum.golang.org/supported",
        "",
        "text/plain; charset=utf-8",
    );
    let (status, headers, _) = http::get(&format!("{url}/sumdb/sum.golang.org/supported"));
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(http::get(&format!("{url}/../etc/passwd")).0, 404);
    assert!(proxy.count("/m/@v/list") >= 5, "{:?}", proxy.requests());
    proxy.reset_counts();
    assert!(proxy.requests().is_empty());

    // Stop closes the port, even with a hung connection open.
    proxy.set_fault(Fault::Hang);
    let hung = TcpStream::connect(proxy.addr()).unwrap();
    (&hung)
        .write_all(b"GET /m/@v/list HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    proxy.stop();
    assert!(TcpStream::connect(proxy.addr()).is_err());
}

/// Fault injection seen by the go command itself.
#[test]
fn go_sees_upstream_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let proxy = UpstreamProxy::serve_dir(tmp.path());
    let go = GoClient::find();
    proxy.set_fault(Fault::Status(500));
    let err = go
        .mod_download(&proxy.url(), "example.com/m@v1.0.0")
        .unwrap_err();
    assert!(err.message().contains("500"), "{err}");
    proxy.set_fault(Fault::None);
    let err = go
        .mod_download(&proxy.url(), "example.com/m@v1.0.0")
        .unwrap_err();
    assert!(err.message().contains("404"), "{err}");
    assert_eq!(
        proxy.count("/example.com/m/@v/v1.0.0.info"),
        2,
        "{:?}",
        proxy.requests()
    );
}

/// The proxy works from async tests too (its runtime is its own), and drops cleanly there.
#[tokio::test]
async fn upstream_proxy_from_async_test() {
    let tmp = tempfile::tempdir().unwrap();
    let proxy = UpstreamProxy::serve_dir(tmp.path());
    proxy.add_file("/x", "hi", "text/plain");
    let (status, _, body) = http::get_async(&format!("{}/x", proxy.url())).await;
    assert_eq!((status, body.as_slice()), (200, b"hi".as_slice()));
    drop(proxy);
}

/// The process handle, with a stand-in for agora (sh printing the ready line).
#[test]
fn agora_handle_waits_for_ready_line_and_captures_stderr() {
    let sh = Path::new("/bin/sh");
    let mut a = Agora::start(
        sh,
        &[
            "-c",
            "echo starting >&2; sleep 0.2; echo \"agora: listening on http://127.0.0.1:9\"; echo \"$SECRET_ISH\" >&2; exec sleep 60",
        ],
        &[("SECRET_ISH", "visible")],
    );
    assert_eq!(a.url(), "http://127.0.0.1:9");
    assert!(a.pid() > 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.stderr_log().contains("visible") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.stderr_log(), "starting\nvisible\n");
    a.kill();
    assert!(a.wait_timeout(Duration::from_secs(1)).is_some());
}

#[test]
#[should_panic(expected = "agora closed stdout without becoming ready")]
fn agora_handle_panics_with_stderr_when_process_exits_early() {
    Agora::start(Path::new("/bin/sh"), &["-c", "echo boom >&2; exit 3"], &[]);
}
