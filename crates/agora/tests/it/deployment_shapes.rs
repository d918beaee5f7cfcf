//! Deployment shapes: agora under a path prefix behind a shared ingress (`server.path_prefix`),
//! and on a Unix socket for a reverse proxy on the same machine (`listen = "unix:/PATH"`).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_testkit::fixtures::GREET;
use agora_testkit::http;

use crate::support::*;

/// The go command downloads and verifies through `GOPROXY=http://HOST/go`; every endpoint lives
/// under the prefix, nothing outside it.
#[test]
fn go_downloads_through_a_path_prefix_and_nothing_answers_outside_it() {
    let w = world();
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_SERVER_PATH_PREFIX", "/go")
        .start();
    let base = format!("{}/go", agora.url());
    let query = format!("{GREET}@v1.1.0");

    // The checksum database is reached through the prefix too (GOSUMDB without a URL asks the
    // proxy: `<GOPROXY>/sumdb/<name>/...`).
    let go = go_client().env("GOSUMDB", w.sumdb.key());
    let got = go
        .mod_download(&base, &query)
        .unwrap_or_else(|e| panic!("go mod download through /go: {e}\n{}", agora.stderr_log()));
    assert_eq!(got.sum, w.baseline[&query].sum);
    assert_eq!(got.go_mod_sum, w.baseline[&query].go_mod_sum);

    for path in ["/healthz", "/readyz", "/version", "/metrics"] {
        let (status, body) = get_text(&agora, &format!("/go{path}"));
        assert_eq!(status, 200, "/go{path}: {body}");
    }
    // The web UI links within the prefix.
    let (status, home) = get_text(&agora, "/go/");
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("href=\"/go/-/assets/style.css\""), "{home}");
    assert!(home.contains(&format!("GOPROXY={base}")), "{home}");
    let (status, css) = get_text(&agora, "/go/-/assets/style.css");
    assert_eq!((status, css.contains("prefers-color-scheme")), (200, true));
    let info = artifact_path(GREET, "v1.1.0", "info");
    let (status, body) = get_text(&agora, &format!("/go{info}"));
    assert_eq!((status, body.contains("v1.1.0")), (200, true), "{body}");

    // Outside the prefix: 404, also for paths that only start like it.
    for path in [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        info.clone(),
        format!("/gopher{info}"),
        format!("/cached-only{info}"),
    ] {
        let (status, body) = get_text(&agora, &path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = raw_request(agora.url(), "GET", "/%67o/healthz");
    assert_eq!(status, 404, "an encoded prefix is not the prefix: {body}");

    // `/cached-only/` under the prefix: cached versions answer, others do not get fetched.
    let (status, body) = get_text(&agora, &format!("/go/cached-only{info}"));
    assert_eq!(status, 200, "{body}");
    let uncached = artifact_path(GREET, "v1.0.0", "info");
    let (status, body) = get_text(&agora, &format!("/go/cached-only{uncached}"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(up.count(&uncached), 0, "cached-only fetched upstream");

    // Query strings survive the prefix's removal: the feed reads them.
    let (status, _, body) = http::get(&format!("{base}/index?limit=1"));
    assert_eq!(status, 200, "{}", http::text(&body));
    assert!(
        http::text(&body).lines().count() <= 1,
        "{}",
        http::text(&body)
    );
    let (status, _, _) = http::get(&format!("{base}/index?limit=none"));
    assert_eq!(status, 400);
}

/// GET over a Unix socket, byte for byte: the status and the body.
fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    let s = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    raw_exchange(s, "localhost", "GET", path)
}

/// Serves over a Unix socket (replacing the socket a crashed agora left behind, with mode 0660),
/// and removes the socket on SIGTERM.
#[test]
fn serves_on_a_unix_socket_replacing_a_stale_one_and_removes_it_at_shutdown() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agora.sock");
    // A crashed server's socket: the file is there, nobody listens.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(UnixStream::connect(&socket).is_err());

    let listen = format!("unix:{}", socket.display());
    let mut agora = bare_builder_on(&listen, &dir.path().join("data"), &up.url())
        .env("GOSUMDB", world().sumdb.gosumdb())
        .start();
    assert_eq!(agora.url(), listen, "the ready line names the socket");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    assert_eq!(unix_get(&socket, "/healthz"), (200, "ok\n".to_owned()));
    let (status, body) = unix_get(&socket, &artifact_path(GREET, "v1.1.0", "info"));
    assert_eq!(status, 200, "{body}\n{}", agora.stderr_log());
    assert!(body.contains("\"Version\":\"v1.1.0\""), "{body}");

    // `agora healthcheck` reaches it with nginx's notation.
    let url = format!("http://unix:{}:/readyz", socket.display());
    let (ok, out) = agora_cmd(["healthcheck", "--url", url.as_str()]);
    assert!(ok, "{out}");

    agora.terminate();
    let status = agora.wait_timeout(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!socket.exists(), "the socket outlived agora");
}

/// A file at the socket's path that is not a socket is an operator's file: agora refuses to start
/// and leaves it alone.
#[test]
fn refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.sock");
    std::fs::write(&path, "not a socket\n").unwrap();

    let mut child = Command::new(agora_bin())
        .args(["serve", "--upstream", "off", "--data"])
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", path.display()))
        .env_remove("GOPROXY")
        .env_remove("GOSUMDB")
        .env("AGORA_SUMDB_NAME", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agora");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("agora started on a regular file's path instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not a socket") && stderr.contains(&path.display().to_string()),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket\n");
}
