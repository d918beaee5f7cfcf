//! Hostile and malformed requests get the right 4xx, and nothing is written anywhere.

use agora_testkit::http;

use crate::support::*;

#[test]
fn bad_requests_get_the_right_status_and_write_nothing() {
    let up = upstream();
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let agora = start(&data, &up.url());
    let before = files_under(parent.path());

    let long = format!("/github.com/{}/@v/list", "a".repeat(5000));
    let cases: &[(&str, &str, u16)] = &[
        // Traversal and encoded separators: garbage.
        (
            "GET",
            "/github.com/agora-fixtures/../../../etc/passwd/@v/list",
            400,
        ),
        ("GET", "/../../etc/passwd", 400),
        ("GET", "/github.com/x/%2e%2e/%2e%2e/@v/list", 400),
        ("GET", "/github.com%2fx%2fy/@v/list", 400),
        ("GET", "/github.com/x/y/@v/..%2f..%2fescape.info", 400),
        ("GET", "/github.com//y/@v/list", 400),
        ("GET", "/github.com/x/y/@v/v1.0.0%00.info", 400),
        ("GET", "/github.com/x/%zz/@v/list", 400),
        ("GET", "/github.com/x/%c3%28/@v/list", 400),
        // Well-formed requests naming nothing valid: "not found", so a client moves on.
        ("GET", "/github.com/Agora-Fixtures/greet/@v/list", 404),
        ("GET", "/github.com/agora-fixtures/greet!/@v/list", 404),
        ("GET", "/github.com/agora-fixtures/gr~1/@v/list", 404),
        ("GET", "/nodot/greet/@v/list", 404),
        (
            "GET",
            "/github.com/agora-fixtures/greet/@v/V1.0.0.info",
            404,
        ),
        ("GET", "/github.com/agora-fixtures/greet/@v/v1.0.zip", 404),
        ("GET", "/github.com/agora-fixtures/greet/@v/v1.0.0.exe", 404),
        ("GET", "/github.com/agora-fixtures/greet/@v/master.zip", 404),
        ("GET", "/github.com/agora-fixtures/greet/@v/v2.0.0.mod", 404),
        (
            "GET",
            "/github.com/agora-fixtures/greet/v2/@v/v1.0.0.zip",
            404,
        ),
        // The web UI's page of a module nothing is cached of, and its home page.
        ("GET", "/github.com/agora-fixtures/greet", 404),
        ("GET", "/", 200),
        ("GET", "/sumdb/not-configured.example/supported", 404),
        ("GET", "/sumdb/sum.golang.org/lookup/../../x", 400),
        // Oversized paths and other methods.
        ("GET", &long, 414),
        ("POST", "/github.com/agora-fixtures/greet/@v/list", 405),
        ("PUT", "/github.com/agora-fixtures/greet/@v/v9.9.9.zip", 405),
        ("DELETE", "/github.com/agora-fixtures/greet/@v/list", 405),
    ];
    for (method, path, want) in cases {
        let (status, body) = raw_request(agora.url(), method, path);
        assert_eq!(status, *want, "{method} {path}: {body}");
        if status != 405 {
            assert!(!body.is_empty(), "{method} {path}: a message is expected");
        }
    }
    assert!(
        up.requests().is_empty(),
        "bad input reached upstream: {:?}",
        up.requests()
    );
    let after = files_under(parent.path());
    let new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(new.is_empty(), "bad input wrote files: {new:?}");

    // The content type of error bodies is text/plain for the go client to print.
    let (status, headers, _) = http::get(&format!("{}/nodot/x/@v/list", agora.url()));
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
}

/// The value of agora's storage error counter, from `/metrics`.
fn storage_errors(agora: &agora_testkit::Agora) -> f64 {
    let (status, _, body) = http::get(&format!("{}/metrics", agora.url()));
    assert_eq!(status, 200);
    http::text(&body)
        .lines()
        .find(|l| l.starts_with("agora_storage_errors"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no storage error counter in /metrics"))
}

/// Regression: a module path element or version longer than a file name can be (255 bytes)
/// reached the local data directory, failed there with "file name too long" and answered
/// `503 storage unavailable`, counted as a storage error: anyone could raise that alert (here
/// the upstream answers for such names, as a lenient proxy might). Such a name cannot exist, so
/// it is a 404, decided before storage or the upstream are asked.
#[test]
fn names_longer_than_a_file_name_are_not_found_not_storage_errors() {
    let up = upstream();
    let long = "a".repeat(300);
    let long_version = format!("v1.0.0-{long}");
    let info = |v: &str| format!("{{\"Version\":\"{v}\",\"Time\":\"2024-01-01T00:00:00Z\"}}");
    let json = "application/json";
    let text = "text/plain; charset=utf-8";
    let paths = [
        (
            format!("/example.com/{long}/x/@v/list"),
            "v1.0.0\n".to_owned(),
            text,
        ),
        (format!("/example.com/{long}/@latest"), info("v1.0.0"), json),
        (
            format!("/example.com/{long}/@v/v1.0.0.info"),
            info("v1.0.0"),
            json,
        ),
        (
            format!("/example.com/m/@v/{long_version}.info"),
            info(&long_version),
            json,
        ),
        (
            format!("/example.com/m/@v/{long_version}.mod"),
            "module example.com/m\n".to_owned(),
            text,
        ),
        (
            format!("/example.com/m/@v/{long}.info"),
            info("v1.0.0"),
            json,
        ),
    ];
    for (path, body, content_type) in &paths {
        up.add_file(path, body.clone(), content_type);
    }
    let parent = tempfile::tempdir().unwrap();
    let agora = start(&parent.path().join("data"), &up.url());
    let before = storage_errors(&agora);
    for (path, _, _) in &paths {
        let (status, body) = raw_request(agora.url(), "GET", path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert_eq!(
        storage_errors(&agora),
        before,
        "long names were counted as storage errors"
    );
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // Names that fit still work.
    let (status, body) = raw_request(
        agora.url(),
        "GET",
        "/github.com/agora-fixtures/greet/@v/list",
    );
    assert_eq!(status, 200, "{body}");
}
