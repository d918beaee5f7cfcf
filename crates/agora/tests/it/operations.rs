//! Running for years: the metadata index (`agora ls`, `agora stats`, the `/index` feed),
//! quarantine and removal (CLI and admin endpoints, audited), and retention (`agora gc`), with
//! the go client. The last test runs two replicas over S3 and a shared PostgreSQL index.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_testkit::fixtures::{GREET, MIXED_CASE};
use agora_testkit::{http, Agora, PostgresServer, S3Server, S3Service};

use crate::support::*;

/// A configuration file under `dir` with `text`, and agora serving from `dir/data` with it.
fn start_with(dir: &Path, upstream: &str, text: &str) -> (Agora, PathBuf) {
    let config = dir.join("agora.toml");
    std::fs::write(&config, text).unwrap();
    let agora = builder(&dir.join("data"), upstream)
        .arg("--config")
        .arg(&config)
        .start();
    (agora, config)
}

fn get(agora: &Agora, path: &str) -> (u16, String) {
    let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
    (s, http::text(&body))
}

/// Polls `f` until it returns true, for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn post_json(agora: &Agora, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (s, _, body) = http::request(
        "POST",
        &format!("{}{path}", agora.url()),
        &headers,
        Some(body.as_bytes().to_vec()),
    );
    (s, http::text(&body))
}

const FAST_SYNC: &str = r#"
[index]
sync_interval = "200ms"
"#;

#[test]
fn a_quarantined_version_is_gone_for_the_go_client_until_lifted() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let audit = dir.join("audit.log");
    let (agora, _) = start_with(
        dir,
        &up.url(),
        &format!("{FAST_SYNC}\n[audit]\nfile = {audit:?}\n"),
    );
    let go = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    go.mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap();

    let reason = "CVE-2026-4242: credential stealer in init()";
    let (ok, out) = agora_in(
        dir,
        &["quarantine", &format!("{GREET}@v1.1.0"), "--reason", reason],
    );
    assert!(ok, "{out}");
    let info = artifact_path(GREET, "v1.1.0", "info");
    eventually(10, "the server to see the quarantine", || {
        get(&agora, &info).0 == 410
    });
    for ext in ["info", "mod", "zip"] {
        let (s, body) = get(&agora, &artifact_path(GREET, "v1.1.0", ext));
        assert_eq!(s, 410, "{ext}: {body}");
        assert!(body.contains(reason), "{ext}: {body}");
    }
    let (s, list) = get(&agora, &format!("/{GREET}/@v/list"));
    assert_eq!(s, 200);
    assert!(!list.lines().any(|v| v == "v1.1.0"), "{list}");
    assert!(list.lines().any(|v| v == "v1.0.0"), "{list}");
    // Kept aside, not deleted.
    assert!(
        files_under(&dir.join("data"))
            .iter()
            .any(|f| f.ends_with("v1.1.0.zip")),
        "the quarantined zip is still stored"
    );

    // The go client, with an empty module cache: refused, with the reason.
    let fresh = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    let err = fresh
        .mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap_err();
    assert!(err.message().contains("410"), "{}", err.message());
    assert!(err.message().contains(reason), "{}", err.message());
    let chosen = fresh
        .list_m(agora.url(), &[&format!("{GREET}@latest")])
        .unwrap();
    assert_eq!(chosen.version.as_deref(), Some("v1.0.0"));

    let (ok, out) = agora_in(dir, &["quarantine", &format!("{GREET}@v1.1.0"), "--lift"]);
    assert!(ok, "{out}");
    eventually(10, "the lift", || get(&agora, &info).0 == 200);
    fresh
        .mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap();
    // Served from the copy kept aside: never fetched again.
    assert_eq!(up.count(&artifact_path(GREET, "v1.1.0", "zip")), 1);

    let lines = std::fs::read_to_string(&audit).unwrap();
    let admin: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains(r#""event":"admin""#))
        .collect();
    assert_eq!(admin.len(), 2, "{lines}");
    assert!(
        admin[0].contains(r#""action":"quarantine""#),
        "{}",
        admin[0]
    );
    assert!(admin[0].contains("CVE-2026-4242"), "{}", admin[0]);
    assert!(admin[0].contains(r#""actor":"cli:"#), "{}", admin[0]);
    assert!(admin[1].contains(r#""action":"lift""#), "{}", admin[1]);

    // Bad input: a clear refusal, nothing recorded.
    let (ok, out) = agora_in(
        dir,
        &["quarantine", &format!("{GREET}@latest"), "--reason", "x"],
    );
    assert!(!ok && out.contains("not a canonical version"), "{out}");
    let (ok, out) = agora_in(dir, &["quarantine", GREET, "--reason", "x"]);
    assert!(!ok && out.contains("name the version"), "{out}");
}

#[test]
fn the_index_lists_what_is_cached_and_feeds_it_in_index_golang_org_format() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (agora, _) = start_with(dir, &up.url(), FAST_SYNC);
    let go = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    let before = chrono_now();
    go.mod_download(agora.url(), &format!("{GREET}@v1.0.0"))
        .unwrap();
    go.mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap();

    // The feed: both versions, oldest first, in index.golang.org's shape.
    let mut feed = String::new();
    eventually(10, "both versions in the feed", || {
        feed = get(&agora, "/index").1;
        feed.lines().count() >= 2
    });
    let entries: Vec<serde_json::Value> = feed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let versions: Vec<&str> = entries
        .iter()
        .map(|e| e["Version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1.0.0", "v1.1.0"], "{feed}");
    for e in &entries {
        assert_eq!(e["Path"], GREET);
        let t = e["Timestamp"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() >= 20, "{t}");
        assert!(t >= before.as_str(), "{t} >= {before}");
    }
    let (s, page) = get(&agora, "/index?limit=1");
    assert_eq!((s, page.lines().count()), (200, 1), "{page}");
    let second_since = entries[1]["Timestamp"].as_str().unwrap();
    let (_, rest) = get(&agora, &format!("/index?since={second_since}"));
    assert!(
        rest.contains("v1.1.0") && !rest.contains("v1.0.0"),
        "{rest}"
    );
    let (s, none) = get(&agora, "/index?since=2999-01-01T00:00:00Z");
    assert_eq!((s, none.as_str()), (200, ""));
    for bad in [
        "/index?since=yesterday",
        "/index?limit=-1",
        "/index?limit=x",
    ] {
        let (s, body) = get(&agora, bad);
        assert_eq!(s, 400, "{bad}: {body}");
    }

    // `agora ls` and `agora stats` read the same index (shared with the running server).
    let (ok, out) = agora_in(dir, &["ls", "--json"]);
    assert!(ok, "{out}");
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["module"], GREET, "{out}");
    assert_eq!(row["versions"], 2, "{out}");
    let (ok, out) = agora_in(dir, &["ls", GREET]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{GREET}@v1.1.0")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("info,mod,zip") && line.contains("upstream"),
        "{line}"
    );
    let (ok, out) = agora_in(dir, &["ls", GREET, "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let go_sum = go
        .mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap();
    assert_eq!(v["h1"].as_str(), go_sum.sum.as_deref(), "{out}");
    let (ok, out) = agora_in(dir, &["stats", "--json"]);
    assert!(ok, "{out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["modules"], 1, "{out}");
    assert_eq!(stats["versions"], 2, "{out}");
    assert_eq!(stats["by_kind"]["zip"]["artifacts"], 2, "{out}");
    assert_eq!(stats["by_origin"][0]["origin"], "upstream", "{out}");

    // Rebuilt from storage, the index says the same about what is stored.
    let (ok, out) = agora_in(dir, &["index", "rebuild"]);
    assert!(ok, "{out}");
    assert!(out.contains("6 artifacts"), "{out}");

    // Metrics from the index.
    eventually(10, "stored-bytes metrics", || {
        get(&agora, "/metrics")
            .1
            .contains("agora_stored_artifacts{kind=\"zip\"} 2")
    });
}

/// `YYYY-MM-DDTHH:MM:SSZ` now, for comparing with feed timestamps (same format, same order).
fn chrono_now() -> String {
    let t = std::time::SystemTime::now() - Duration::from_secs(1);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[test]
fn gc_evicts_unused_zips_and_an_evicted_version_is_fetched_again() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let private = "gitlab.corp.example";
    let (agora, _) = start_with(
        dir,
        &up.url(),
        &format!(
            "{FAST_SYNC}\n[routing]\nprivate = [\"{private}\"]\n\n[retention]\nunused_for = \"1s\"\nkeep_recent = \"0s\"\n"
        ),
    );
    let go = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    go.mod_download(agora.url(), &format!("{GREET}@v1.0.0"))
        .unwrap();
    let zip = artifact_path(GREET, "v1.0.0", "zip");
    let stored_zip = |dir: &Path| {
        files_under(&dir.join("data"))
            .iter()
            .any(|f| f.ends_with("v1.0.0.zip"))
    };
    assert!(stored_zip(dir));
    std::thread::sleep(Duration::from_millis(1500));

    let (ok, out) = agora_in(dir, &["gc"]);
    assert!(ok, "{out}");
    assert!(out.contains("would delete 1 artifacts"), "{out}");
    assert!(
        out.contains("v1.0.0.zip") && out.contains("unused"),
        "{out}"
    );
    assert!(!out.contains(".info") && !out.contains(".mod\t"), "{out}");
    assert!(stored_zip(dir), "a dry run deletes nothing");

    let (ok, out) = agora_in(dir, &["gc", "--apply"]);
    assert!(ok, "{out}");
    assert!(out.contains("deleted 1 artifacts"), "{out}");
    assert!(!stored_zip(dir), "the zip was deleted");
    assert!(
        files_under(&dir.join("data"))
            .iter()
            .any(|f| f.ends_with("v1.0.0.mod")),
        ".mod stays: module graphs stay resolvable"
    );
    let (ok, out) = agora_in(dir, &["gc"]);
    assert!(ok && out.contains("would delete 0 artifacts"), "{out}");

    // Fetched again (and verified again) on the next request.
    let fresh = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    fresh
        .mod_download(agora.url(), &format!("{GREET}@v1.0.0"))
        .unwrap();
    assert_eq!(up.count(&zip), 2);
    assert!(stored_zip(dir));

    // No limit, no collection.
    std::fs::write(dir.join("agora.toml"), FAST_SYNC).unwrap();
    let (ok, out) = agora_in(dir, &["gc"]);
    assert!(!ok && out.contains("sets no limit"), "{out}");
}

#[test]
fn admins_quarantine_and_remove_over_http_and_the_feed_hides_what_a_client_may_not_read() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.toml");
    let admin = token_add(&tokens, "ops", &["admin"]);
    let dev = token_add(&tokens, "dev", &["payments"]);
    let audit = dir.join("audit.log");
    let (agora, _) = start_with(
        dir,
        &up.url(),
        &format!(
            r#"{FAST_SYNC}
[auth]
tokens_file = {tokens:?}

[access]
default = ["anyone"]

[[access.rules]]
pattern = "{MIXED_CASE}"
allow = ["payments"]
on_deny = "not_found"

[audit]
file = {audit:?}
"#
        ),
    );
    let dev_get = |path: &str| {
        let bearer = format!("Bearer {dev}");
        let (s, _, body) = http::get_with(
            &format!("{}{path}", agora.url()),
            &[("Authorization", bearer.as_str())],
        );
        (s, http::text(&body))
    };
    assert_eq!(dev_get(&artifact_path(MIXED_CASE, "v1.0.0", "zip")).0, 200);
    assert_eq!(get(&agora, &artifact_path(GREET, "v1.0.0", "zip")).0, 200);

    // The feed shows each client only what it may read.
    eventually(10, "two modules in the feed", || {
        dev_get("/index").1.lines().count() == 2
    });
    let anonymous = get(&agora, "/index").1;
    assert!(anonymous.contains(GREET), "{anonymous}");
    assert!(!anonymous.contains(MIXED_CASE), "{anonymous}");
    assert_eq!(get(&agora, "/index?limit=1").1.lines().count(), 1);

    let body = format!(r#"{{"module":"{GREET}","version":"v1.0.0","reason":"leaked key"}}"#);
    assert_eq!(post_json(&agora, "/-/admin/quarantine", None, &body).0, 401);
    assert_eq!(
        post_json(&agora, "/-/admin/quarantine", Some(&dev), &body).0,
        403
    );
    let (s, text) = post_json(&agora, "/-/admin/quarantine", Some(&admin), &body);
    assert_eq!(s, 200, "{text}");
    // Effective at once on the replica that took it.
    let (s, text) = get(&agora, &artifact_path(GREET, "v1.0.0", "zip"));
    assert_eq!((s, text.contains("leaked key")), (410, true), "{text}");
    let bearer = format!("Bearer {admin}");
    let (s, _, listed) = http::get_with(
        &format!("{}/-/admin/quarantines", agora.url()),
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(s, 200);
    assert!(http::text(&listed).contains("leaked key"));
    // A form post (what a cross-site page could send) is refused.
    let (s, _, _) = http::request(
        "POST",
        &format!("{}/-/admin/quarantine", agora.url()),
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(b"module=x".to_vec()),
    );
    assert_eq!(s, 415);
    for bad in [
        r#"{"module":"not a path","version":"v1.0.0","reason":"x"}"#.to_owned(),
        format!(r#"{{"module":"{GREET}","version":"latest","reason":"x"}}"#),
        format!(r#"{{"module":"{GREET}","version":"v1.0.0","reason":"  "}}"#),
    ] {
        let (s, text) = post_json(&agora, "/-/admin/quarantine", Some(&admin), &bad);
        assert_eq!(s, 400, "{bad}: {text}");
    }

    // Removal deletes the stored artifacts; the next request fetches them again.
    let body = format!(r#"{{"module":"{GREET}"}}"#);
    let (s, text) = post_json(&agora, "/-/admin/remove", Some(&admin), &body);
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("v1.0.0.zip"), "{text}");
    assert!(!files_under(&dir.join("data"))
        .iter()
        .any(|f| f.contains("greet") && f.ends_with(".zip")));
    let body = format!(r#"{{"module":"{GREET}","version":"v1.0.0"}}"#);
    assert_eq!(
        post_json(&agora, "/-/admin/lift", Some(&admin), &body).0,
        200
    );
    assert_eq!(get(&agora, &artifact_path(GREET, "v1.0.0", "zip")).0, 200);
    assert_eq!(up.count(&artifact_path(GREET, "v1.0.0", "zip")), 2);

    let lines = std::fs::read_to_string(&audit).unwrap();
    let actions: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains(r#""event":"admin""#))
        .filter_map(|l| l.split(r#""action":""#).nth(1)?.split('"').next())
        .collect();
    assert_eq!(actions, ["quarantine", "remove", "lift"], "{lines}");
    assert!(lines.contains(r#""actor":"ops""#), "{lines}");
}

#[test]
fn two_replicas_over_s3_share_one_postgresql_index() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let bucket = s3.new_bucket();
    let pg = PostgresServer::shared();
    let db = pg.create_database();
    let tokens = tmp.path().join("tokens.toml");
    let admin = token_add(&tokens, "ops", &["admin"]);
    let config = format!(
        r#"{storage}
[index]
url = "{db}"
sync_interval = "200ms"

[auth]
tokens_file = {tokens:?}

[retention]
unused_for = "1s"
keep_recent = "0s"
"#,
        storage = s3_storage_toml(&s3, &bucket),
    );
    let replica = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        start_with(&d, &up.url(), &config).0
    };
    let a = replica("a");
    let b = replica("b");

    assert_eq!(get(&a, &artifact_path(GREET, "v1.0.0", "zip")).0, 200);
    assert_eq!(get(&a, &artifact_path(GREET, "v1.1.0", "zip")).0, 200);
    // B feeds what A stored: one index.
    eventually(10, "A's versions in B's feed", || {
        get(&b, "/index").1.lines().count() == 2
    });
    // B serves from the shared bucket, and counts it.
    assert_eq!(get(&b, &artifact_path(GREET, "v1.0.0", "zip")).0, 200);
    assert_eq!(up.count(&artifact_path(GREET, "v1.0.0", "zip")), 1);

    // Quarantined through A, refused by B within its sync interval.
    let body = format!(r#"{{"module":"{GREET}","version":"v1.0.0","reason":"bad build"}}"#);
    assert_eq!(
        post_json(&a, "/-/admin/quarantine", Some(&admin), &body).0,
        200
    );
    let zip = artifact_path(GREET, "v1.0.0", "zip");
    eventually(10, "B to refuse the quarantined version", || {
        get(&b, &zip).0 == 410
    });
    // The index's served counts are shared too.
    let (ok, out) = agora_in(&tmp.path().join("a"), &["stats", "--json"]);
    assert!(ok, "{out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["quarantined"], 1, "{out}");
    assert_eq!(stats["versions"], 2, "{out}");
    assert!(!out.contains(s3.secret_access_key()), "no secret in output");

    // Collected through A: the unused zip leaves the bucket (the quarantined one stays), and B
    // fetches it again on the next request.
    std::thread::sleep(Duration::from_millis(1200));
    let (ok, out) = agora_in(&tmp.path().join("a"), &["gc", "--apply"]);
    assert!(ok, "{out}");
    assert!(out.contains("deleted 1 artifacts"), "{out}");
    assert!(
        out.contains("v1.1.0.zip") && !out.contains("v1.0.0.zip"),
        "{out}"
    );
    let zip11 = artifact_path(GREET, "v1.1.0", "zip");
    assert_eq!(get(&b, &zip11).0, 200);
    assert_eq!(up.count(&zip11), 2);
}
