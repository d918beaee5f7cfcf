//! Download modes per module-path pattern (sync, async, redirect, none) and fetch concurrency
//! limits.

use std::time::{Duration, Instant};

use agora_testkit::fixtures::{GREET, MIXED_CASE};
use agora_testkit::{http, Fault};

use crate::support::*;

fn config_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("agora.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn download_modes_by_pattern() {
    let up = upstream();
    let other = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let config = config_file(
        tmp.path(),
        &format!(
            r#"
[[download]]
pattern = "{GREET}"
mode = "async"

[[download]]
pattern = "github.com/agora-fixtures/bigzip"
mode = "none"

[[download]]
pattern = "{MIXED_CASE}"
mode = "redirect"
url = "{}"
"#,
            other.url()
        ),
    );
    let agora = builder(&tmp.path().join("data"), &up.url())
        .arg("--config")
        .arg(&config)
        .start();

    // async: "not yet" at once, then the background fetch fills the cache.
    let info = format!("{}{}", agora.url(), artifact_path(GREET, "v1.0.0", "info"));
    let (s, _, body) = http::get(&info);
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(
        http::text(&body).contains("being fetched"),
        "{}",
        http::text(&body)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    while Instant::now() < deadline {
        status = http::get(&info).0;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 200, "the background fetch never landed");

    // none: cache only.
    let (s, _, body) = http::get(&format!(
        "{}/github.com/agora-fixtures/bigzip/@v/list",
        agora.url()
    ));
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(up.requests().iter().all(|p| !p.contains("bigzip")));

    // redirect: the same request at the other proxy; the go client follows it.
    let path = artifact_path(MIXED_CASE, "v1.0.0", "mod");
    let (s, headers, _) = http::get(&format!("{}{path}", agora.url()));
    assert_eq!(s, 302);
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("{}{path}", other.url())
    );
    let go = go_client();
    let got = go
        .mod_download(agora.url(), &format!("{MIXED_CASE}@v1.0.0"))
        .unwrap_or_else(|e| panic!("go through a redirect: {e}"));
    assert_eq!(
        got.sum,
        world().baseline[&format!("{MIXED_CASE}@v1.0.0")].sum
    );
    assert!(other.count(&path) >= 1);
}

#[test]
fn fetch_concurrency_is_limited_and_queues_time_out_with_503() {
    let up = upstream();
    up.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_LIMITS_UPSTREAM_FETCHES", "1")
        .env("AGORA_LIMITS_QUEUE_TIMEOUT", "300ms")
        .start();
    let urls: Vec<String> = ["v1.0.0", "v1.1.0"]
        .iter()
        .map(|v| format!("{}{}", agora.url(), artifact_path(GREET, v, "info")))
        .collect();
    let handles: Vec<_> = urls
        .into_iter()
        .map(|u| std::thread::spawn(move || http::get(&u)))
        .collect();
    let mut statuses: Vec<u16> = Vec::new();
    for h in handles {
        let (s, headers, _) = h.join().unwrap();
        if s == 503 {
            assert!(headers.contains_key("retry-after"));
        }
        statuses.push(s);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 503]);
}
