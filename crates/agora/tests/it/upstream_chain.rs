//! GOPROXY chain semantics: `,` falls through only on 404/410, `|` on any error.

use agora_testkit::fixtures::GREET;
use agora_testkit::{http, Fault, UpstreamProxy};

use crate::support::*;

fn info_status(agora_url: &str) -> (u16, String) {
    let (s, _, body) = http::get(&format!(
        "{agora_url}{}",
        artifact_path(GREET, "v1.1.0", "info")
    ));
    (s, http::text(&body))
}

#[test]
fn comma_falls_through_on_not_found_only() {
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = UpstreamProxy::serve_dir(empty_dir.path());
    let good = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &format!("{},{}", empty.url(), good.url()));
    assert_eq!(info_status(agora.url()).0, 200);
    assert_eq!(empty.requests().len(), 1);
    assert_eq!(good.requests().len(), 1);

    // A 410 also means "not here".
    let gone = upstream();
    gone.set_fault(Fault::Status(410));
    let good2 = upstream();
    let data2 = tempfile::tempdir().unwrap();
    let agora2 = start(data2.path(), &format!("{},{}", gone.url(), good2.url()));
    assert_eq!(info_status(agora2.url()).0, 200);
}

#[test]
fn comma_stops_on_a_server_error() {
    let broken = upstream();
    broken.set_fault(Fault::Status(500));
    let good = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &format!("{},{}", broken.url(), good.url()))
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let (status, body) = info_status(agora.url());
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("500"), "{body}");
    assert!(good.requests().is_empty(), "{:?}", good.requests());
    assert!(files_under(data.path())
        .iter()
        .all(|f| f.starts_with("_agora/")));
}

#[test]
fn pipe_falls_through_on_any_error() {
    let broken = upstream();
    broken.set_fault(Fault::Status(500));
    let good = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &format!("{}|{}", broken.url(), good.url()))
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    assert_eq!(info_status(agora.url()).0, 200);

    // A connection failure also moves on after `|`.
    let mut dead = upstream();
    let dead_url = dead.url();
    dead.stop();
    let data2 = tempfile::tempdir().unwrap();
    let agora2 = builder(data2.path(), &format!("{dead_url}|{}", good.url()))
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    assert_eq!(info_status(agora2.url()).0, 200);
}

#[test]
fn transient_upstream_errors_are_retried() {
    let flaky = upstream();
    let path = artifact_path(GREET, "v1.1.0", "info");
    flaky.set_path_fault(&path, Fault::Status(503));
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &flaky.url())
        .env("AGORA_UPSTREAM_RETRIES", "2")
        .start();
    let (status, _) = info_status(agora.url());
    assert_eq!(status, 502);
    assert_eq!(flaky.count(&path), 3, "one attempt plus two retries");
}

#[test]
fn direct_and_off_entries_are_understood() {
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), "off");
    let (status, body) = info_status(agora.url());
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("GOPROXY=off"), "{body}");

    // `direct` after a proxy that has nothing: agora computes the answer from git itself, and it
    // equals what the go command computed.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = UpstreamProxy::serve_dir(empty_dir.path());
    let data2 = tempfile::tempdir().unwrap();
    let agora2 = builder(data2.path(), &format!("{},direct", empty.url()))
        .env("GIT_CONFIG_GLOBAL", world().host.gitconfig_path())
        .start();
    let (status, body) = info_status(agora2.url());
    assert_eq!(status, 200, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(&world().baseline[&format!("{GREET}@v1.1.0")].info_bytes()).unwrap();
    assert_eq!(got["Version"], want["Version"]);
    assert_eq!(got["Time"], want["Time"]);
}

/// Regression: for modules the checksum database does not cover, a `.mod` of `hello world`, an
/// empty body or an HTML page answered 200 and was stored write-once (`go list -m all` then fails
/// for everyone, for good); an upstream that redirected to an internal page had it stored as a
/// go.mod. Such answers are refused (502) and nothing is stored. A go.mod that declares another
/// module path (a fork used through `replace`) is served, as the go command and
/// proxy.golang.org serve it.
#[test]
fn go_mod_files_no_go_command_accepts_and_redirects_inward_are_refused() {
    use agora_testkit::fixtures::{BIG, MIXED_CASE};
    let up = upstream();
    // An "internal" page reachable by a name that resolves to loopback.
    let internal = upstream();
    internal.add_file(
        "/admin.mod",
        "module internal.example/secret\n",
        "text/plain",
    );
    let internal_by_name = internal.url().replace("127.0.0.1", "localhost");
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_ROUTING_NOSUMDB", "github.com/agora-fixtures")
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let get = |path: &str| {
        let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
        (s, http::text(&body))
    };
    let greet = |v: &str| artifact_path(GREET, v, "mod");
    let cases = [
        ("hello world", greet("v1.0.0"), "hello world"),
        ("empty", greet("v1.1.0"), ""),
        (
            "HTML",
            artifact_path(MIXED_CASE, "v1.0.0", "mod"),
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n",
        ),
    ];
    for (name, path, body) in &cases {
        up.add_file(path, body.to_string(), "text/html");
        let (s, text) = get(path);
        assert_eq!(s, 502, "{name}: {text}");
        assert!(
            text.contains("declares no module") || text.contains("invalid"),
            "{name}: {text}"
        );
    }
    let big = artifact_path(BIG, "v1.0.0", "mod");
    for (name, location) in [
        (
            "to a name resolving inward",
            format!("{internal_by_name}/admin.mod"),
        ),
        (
            "to another scheme",
            format!("https://127.0.0.1:{}/admin.mod", internal.addr().port()),
        ),
    ] {
        up.set_path_fault(&big, Fault::Redirect(location));
        let (s, text) = get(&big);
        assert_eq!(s, 502, "{name}: {text}");
    }
    assert!(internal.requests().is_empty(), "{:?}", internal.requests());
    let stored: Vec<_> = files_under(data.path())
        .into_iter()
        .filter(|f| f.ends_with(".mod"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");

    // A fork's go.mod keeps the path it replaces: served and stored as it is.
    up.clear_faults();
    up.add_file(
        &big,
        "module example.com/original\n\ngo 1.21\n",
        "text/plain",
    );
    let (s, text) = get(&big);
    assert_eq!(
        (s, text.as_str()),
        (200, "module example.com/original\n\ngo 1.21\n")
    );
}
