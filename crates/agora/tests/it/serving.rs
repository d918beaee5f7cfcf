//! Serving public modules through the upstream cache, checked against the real go client.

use std::sync::Arc;
use std::time::Duration;

use agora_testkit::fixtures::{BIG, GREET, MIXED_CASE};
use agora_testkit::http;
use agora_testkit::Fault;

use crate::support::*;

/// The go client builds a program through agora; every module's h1 hashes equal what
/// `GOPROXY=direct` computed; afterwards agora's data directory is itself a valid
/// `GOPROXY=file://` tree for the go client.
#[test]
fn go_builds_through_agora_with_identical_hashes_and_data_dir_is_a_goproxy_tree() {
    let w = world();
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("does/not/exist/yet");
    let agora = start(&data_dir, &up.url());

    let go = go_client();
    go.build(agora.url(), &w.fixtures.program_dir())
        .unwrap_or_else(|e| panic!("go build through agora failed: {e}"));

    for (query, direct) in &w.baseline {
        let via = go
            .mod_download(agora.url(), query)
            .unwrap_or_else(|e| panic!("go mod download {query} via agora: {e}"));
        assert_eq!(via.version, direct.version, "{query}");
        assert_eq!(via.sum, direct.sum, "zip h1 of {query}");
        assert_eq!(via.go_mod_sum, direct.go_mod_sum, "go.mod h1 of {query}");
    }

    // The go client's version list through agora equals the direct one.
    let direct_list = go_client().list_versions("direct", GREET).unwrap();
    let via_list = go.list_versions(agora.url(), GREET).unwrap();
    assert_eq!(via_list.versions, direct_list.versions);

    // agora created the data directory and laid it out like a GOPROXY tree.
    let files = files_under(&data_dir);
    assert!(
        files
            .iter()
            .any(|f| f == "github.com/agora-fixtures/!mixed!case/@v/v1.0.0.zip"),
        "{files:?}"
    );
    let file_proxy = format!("file://{}", data_dir.display());
    let offline = go_client();
    for (query, direct) in &w.baseline {
        let got = offline
            .mod_download(&file_proxy, query)
            .unwrap_or_else(|e| panic!("GOPROXY=file:// download {query}: {e}"));
        assert_eq!(got.sum, direct.sum, "{query} from the data directory");
    }
    offline
        .build(&file_proxy, &w.fixtures.program_dir())
        .unwrap_or_else(|e| panic!("go build from GOPROXY=file://data: {e}"));
}

#[test]
fn fifty_concurrent_requests_for_a_missing_zip_cause_one_upstream_fetch() {
    let w = world();
    let up = upstream();
    let version = w
        .baseline
        .keys()
        .find_map(|q| q.strip_prefix(&format!("{BIG}@")))
        .expect("bigzip fixture")
        .to_owned();
    let path = artifact_path(BIG, &version, "zip");
    // Hold the upstream answer long enough for every request to arrive while it is in flight.
    up.set_path_fault(&path, Fault::Delay(Duration::from_millis(700)));
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let url = format!("{}{path}", agora.url());

    let expected = std::fs::read(
        w.baseline[&format!("{BIG}@{version}")]
            .zip
            .as_deref()
            .expect("zip path"),
    )
    .unwrap();
    let expected = Arc::new(expected);
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                let (status, _, body) = http::get(&url);
                assert_eq!(status, 200);
                assert!(body == *expected, "zip bytes differ from the upstream's");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        up.count(&path),
        1,
        "requests seen upstream: {:?}",
        up.requests()
    );
}

#[test]
fn cached_answers_survive_an_upstream_outage_and_stale_lists_are_served() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        // Every list is immediately stale and past its revalidation window: each request tries
        // upstream first, then falls back to the cached copy.
        .env("AGORA_CACHE_LIST_FRESH", "0s")
        .env("AGORA_CACHE_LIST_STALE", "0s")
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let list = format!("{}/github.com/agora-fixtures/greet/@v/list", agora.url());
    let info = format!("{}{}", agora.url(), artifact_path(GREET, "v1.0.0", "info"));
    let zip = format!("{}{}", agora.url(), artifact_path(GREET, "v1.0.0", "zip"));
    let (s, h, list_body) = http::get(&list);
    assert_eq!((s, h["x-agora-cache"].to_str().unwrap()), (200, "miss"));
    assert!(http::text(&list_body).contains("v1.0.0\n"));
    assert_eq!(http::get(&info).0, 200);
    let (_, _, zip_body) = http::get(&zip);

    up.set_fault(Fault::Status(500));
    let (s, h, body) = http::get(&list);
    assert_eq!(s, 200);
    assert_eq!(h["x-agora-cache"], "stale");
    assert_eq!(body, list_body);
    let (s, h, _) = http::get(&info);
    assert_eq!((s, h["x-agora-cache"].to_str().unwrap()), (200, "hit"));
    let (s, _, body) = http::get(&zip);
    assert_eq!(s, 200);
    assert_eq!(body, zip_body);
    // Something never cached cannot be served: a clear upstream error, not a hang or a 500.
    let (s, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(MIXED_CASE, "v1.0.0", "info")
    ));
    assert_eq!(s, 502, "{}", http::text(&body));
}

#[test]
fn a_hanging_upstream_gives_a_timeout_error_not_a_hang() {
    let up = upstream();
    up.set_fault(Fault::Hang);
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_TIMEOUT", "1s")
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let (s, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(GREET, "v1.0.0", "info")
    ));
    assert_eq!(s, 504, "{}", http::text(&body));
    assert!(
        http::text(&body).contains("timed out"),
        "{}",
        http::text(&body)
    );
}

#[test]
fn disable_module_fetch_answers_from_cache_only() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let mod_url = format!("{}{}", agora.url(), artifact_path(GREET, "v1.1.0", "mod"));
    let no_fetch = [("Disable-Module-Fetch", "true")];
    let (s, _, body) = http::get_with(&mod_url, &no_fetch);
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(http::text(&body).contains("Disable-Module-Fetch"));
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // The same as a path prefix, for clients that cannot send a header.
    let cached_only = |path: &str| format!("{}/cached-only{path}", agora.url());
    let (s, _, body) = http::get(&cached_only(&artifact_path(GREET, "v1.1.0", "mod")));
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(http::text(&body).contains("/cached-only/"));
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    assert_eq!(http::get(&mod_url).0, 200);
    let (s, h, _) = http::get_with(&mod_url, &no_fetch);
    assert_eq!((s, h["x-agora-cache"].to_str().unwrap()), (200, "hit"));
    let (s, h, body) = http::get(&cached_only(&artifact_path(GREET, "v1.1.0", "mod")));
    assert_eq!((s, h["x-agora-cache"].to_str().unwrap()), (200, "hit"));
    assert!(http::text(&body).starts_with("module "));
    assert_eq!(up.requests().len(), 1);
}

/// A build asking again and again for a module that does not exist costs one upstream request
/// while `cache.not_found` lasts.
#[test]
fn a_missing_module_is_asked_upstream_once_while_remembered() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let list = format!("{}/example.com/nothing/here/@v/list", agora.url());
    for _ in 0..5 {
        let (s, _, body) = http::get(&list);
        assert_eq!(s, 404, "{}", http::text(&body));
    }
    assert_eq!(up.requests().len(), 1, "{:?}", up.requests());
}

#[test]
fn headers_head_requests_and_operational_endpoints() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let zip = format!("{}{}", agora.url(), artifact_path(GREET, "v1.0.0", "zip"));
    let (s, h, body) = http::request("HEAD", &zip, &[], None);
    assert_eq!(s, 200);
    assert!(body.is_empty());
    assert_eq!(h["content-type"], "application/zip");
    let (_, h2, body) = http::get(&zip);
    assert_eq!(h["content-length"], h2["content-length"]);
    assert_eq!(
        h2["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    assert!(h2["cache-control"].to_str().unwrap().contains("immutable"));

    let info = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(GREET, "v1.0.0", "info")
    ));
    assert_eq!(info.1["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&info.2).unwrap();
    assert_eq!(v["Version"], "v1.0.0");
    let list = http::get(&format!(
        "{}/github.com/agora-fixtures/greet/@v/list",
        agora.url()
    ));
    assert_eq!(list.1["content-type"], "text/plain; charset=utf-8");

    assert_eq!(http::get(&format!("{}/healthz", agora.url())).0, 200);
    assert_eq!(http::get(&format!("{}/readyz", agora.url())).0, 200);
    let (s, _, body) = http::get(&format!("{}/version", agora.url()));
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["name"], "agora");
}

#[test]
fn stale_lists_are_served_at_once_and_refreshed_in_the_background() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_CACHE_LIST_FRESH", "0s")
        .env("AGORA_CACHE_LIST_STALE", "1h")
        .start();
    let path = "/github.com/agora-fixtures/greet/@v/list";
    let list = format!("{}{path}", agora.url());
    assert_eq!(http::get(&list).1["x-agora-cache"], "miss");
    assert_eq!(up.count(path), 1);
    let (s, h, _) = http::get(&list);
    assert_eq!((s, h["x-agora-cache"].to_str().unwrap()), (200, "stale"));
    assert_eq!(h["cache-control"], "no-cache");
    // The refresh runs after the answer; wait (bounded) for it to reach the upstream.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.count(path) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(up.count(path), 2, "background refresh: {:?}", up.requests());
}

#[test]
fn invalid_upstream_answers_are_refused_and_not_cached() {
    let up = upstream();
    let bad_mod = "/github.com/agora-fixtures/greet/@v/v1.9.9.mod";
    up.add_file(bad_mod, "<html><body>Sign in</body></html>\n", "text/html");
    let bad_info = "/github.com/agora-fixtures/greet/@v/v1.9.8.info";
    up.add_file(bad_info, "{\"Version\":\"v1.9.7\"}", "application/json");
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    for path in [bad_mod, bad_info] {
        let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
        assert_eq!(s, 502, "{path}: {}", http::text(&body));
        assert!(http::text(&body).contains("invalid upstream answer"));
    }
    let stored: Vec<String> = files_under(data.path())
        .into_iter()
        .filter(|f| !f.starts_with("_agora/"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
}

#[test]
fn sigterm_stops_agora_gracefully() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let mut agora = start(data.path(), &up.url());
    assert_eq!(http::get(&format!("{}/healthz", agora.url())).0, 200);
    agora.terminate();
    let status = agora
        .wait_timeout(Duration::from_secs(10))
        .expect("agora exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(agora.stderr_log().contains("shutdown requested"));
}

#[test]
fn a_zip_for_another_module_or_a_truncated_zip_is_refused() {
    let w = world();
    let up = upstream();
    let other = std::fs::read(
        w.baseline[&format!("{MIXED_CASE}@v1.0.0")]
            .zip
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let wrong = "/github.com/agora-fixtures/greet/@v/v1.9.9.zip";
    up.add_file(wrong, other.clone(), "application/zip");
    let truncated = "/github.com/agora-fixtures/greet/@v/v1.9.8.zip";
    up.add_file(
        truncated,
        other[..other.len() / 2].to_vec(),
        "application/zip",
    );
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    for path in [wrong, truncated] {
        let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
        assert_eq!(s, 502, "{path}: {}", http::text(&body));
    }
    let stored: Vec<String> = files_under(data.path())
        .into_iter()
        .filter(|f| !f.starts_with("_agora/"))
        .collect();
    assert!(stored.is_empty(), "refused zips were stored: {stored:?}");
}
