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
        ("GET", "/github.com/agora-fixtures/greet", 404),
        ("GET", "/", 404),
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
