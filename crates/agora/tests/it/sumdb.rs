//! The checksum database: agora proxies it for clients (`supported`, lookups, tiles kept only once
//! proven, private paths refused locally), and verifies every public module's go.mod and zip
//! against it before caching them. The database is the Go reference implementation on loopback
//! (testkit's [`SumdbServer`]); tampering comes from the upstream proxy, a moved git tag and a
//! forked log.

use std::io::Cursor;

use agora_gomod::{create_zip, MemFile};
use agora_testkit::{http, SumdbServer, UpstreamProxy};

use crate::support::*;

const GREET: &str = agora_testkit::fixtures::GREET;
const DB: &str = "sumdb.agora.test";

/// A database that knows every fixture version, as the go command hashed it.
fn database() -> SumdbServer {
    let db = SumdbServer::start(DB);
    for (q, d) in &world().baseline {
        db.know_download(q, d);
    }
    db
}

/// Every file agora stored under its data directory, relative, sorted (`_agora/` left out).
fn stored(data: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![data.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(data).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("_agora") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn checksum_database_is_proxied_with_verified_tiles_and_private_lookups_never_leave() {
    let db = database();
    let data = tempfile::tempdir().unwrap();
    let up = upstream();
    let agora = builder(data.path(), &up.url())
        .env("GOSUMDB", db.gosumdb())
        .env("AGORA_ROUTING_NOSUMDB", "gitlab.corp.example")
        .start();
    let base = agora.url();
    let prefix = format!("/sumdb/{DB}");

    assert_eq!(http::get(&format!("{base}{prefix}/supported")).0, 200);
    assert_eq!(
        http::get(&format!("{base}/sumdb/sum.other.example/supported")).0,
        404
    );

    // The go command verifies through agora with the database's key and no GONOSUMDB.
    let go = go_client().env("GOSUMDB", db.key());
    let got = go
        .mod_download(base, &format!("{GREET}@v1.1.0"))
        .unwrap_or_else(|e| panic!("{e}\n{}", agora.stderr_log()));
    assert_eq!(got.sum, world().baseline[&format!("{GREET}@v1.1.0")].sum);
    assert!(
        db.requests()
            .iter()
            .any(|p| p == &format!("/lookup/{GREET}@v1.1.0")),
        "{:?}",
        db.requests()
    );

    // Lookups pass through unchanged.
    let lookup = format!("/lookup/{GREET}@v1.0.0");
    let (s, h, body) = http::get(&format!("{base}{prefix}{lookup}"));
    assert_eq!(s, 200);
    assert_eq!(body, http::get(&format!("{}{lookup}", db.url())).2);
    assert_eq!(h["content-type"], "text/plain; charset=UTF-8");

    // Tiles: proven against the tree head before they are kept, then served from the cache.
    let (_, _, latest) = http::get(&format!("{}/latest", db.url()));
    let n: u64 = http::text(&latest).lines().nth(1).unwrap().parse().unwrap();
    let tile = format!("tile/8/0/000.p/{n}");
    for cache in ["miss", "hit"] {
        let (s, h, body) = http::get(&format!("{base}{prefix}/{tile}"));
        assert_eq!(s, 200, "{}", http::text(&body));
        assert_eq!(body, http::get(&format!("{}/{tile}", db.url())).2);
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["x-agora-cache"], cache);
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    }
    assert!(data.path().join(format!("sumdb/{DB}/{tile}")).is_file());
    // The tile went through the fetch pipeline: the upstream gate counted it.
    let (_, _, metrics) = http::get(&format!("{base}/metrics"));
    assert!(
        http::text(&metrics).contains(
            "agora_fetch_duration_seconds_count{source=\"upstream\",kind=\"tile\",outcome=\"ok\"} 1"
        ),
        "{}",
        http::text(&metrics)
    );

    let before = db.requests().len();
    let (s, _, body) = http::get(&format!(
        "{base}{prefix}/lookup/gitlab.corp.example/team/svc@v1.0.0"
    ));
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(http::text(&body).contains("private"));
    assert_eq!(db.requests().len(), before, "a private path leaked");

    // Unknown paths under a configured database are refused, not forwarded.
    assert_eq!(
        raw_request(base, "GET", &format!("{prefix}/tile/8/0/x/../000")).0,
        400
    );
    assert_eq!(http::get(&format!("{base}{prefix}/tile/8/0/00")).0, 404);
    assert_eq!(http::get(&format!("{base}{prefix}/admin")).0, 404);
    assert_eq!(db.requests().len(), before);
}

/// Regression: a 51-byte answer for a full tile (8192 bytes) or a partial `.p/5` tile (160 bytes)
/// was served `immutable` and kept for good, breaking verification for every client.
#[test]
fn malformed_or_forged_tiles_are_refused_and_never_kept() {
    let db = database();
    // Grow the log to five records, then let a broken mirror of it serve the tiles.
    for q in world().baseline.keys().take(5) {
        let (m, v) = q.split_once('@').unwrap();
        let (m, v) = (
            agora_gomod::module::escape_path(m).unwrap(),
            agora_gomod::module::escape_version(v).unwrap(),
        );
        assert_eq!(http::get(&format!("{}/lookup/{m}@{v}", db.url())).0, 200);
    }
    let mirror = UpstreamProxy::serve_dir(tempfile::tempdir().unwrap().keep());
    let (_, _, latest) = http::get(&format!("{}/latest", db.url()));
    mirror.add_file("/latest", latest, "text/plain; charset=UTF-8");
    mirror.add_file("/tile/8/0/000", vec![7u8; 51], "application/octet-stream");
    mirror.add_file(
        "/tile/8/0/000.p/5",
        vec![7u8; 51],
        "application/octet-stream",
    );
    // The right size, but not the log's hashes.
    mirror.add_file(
        "/tile/8/0/000.p/4",
        vec![7u8; 128],
        "application/octet-stream",
    );

    for (verify, key) in [(true, db.key().to_owned()), (false, DB.to_owned())] {
        let data = tempfile::tempdir().unwrap();
        let agora = builder(data.path(), "off")
            .env("GOSUMDB", format!("{key} {}", mirror.url()))
            .env("AGORA_SUMDB_VERIFY", verify.to_string())
            .start();
        let cases: &[&str] = if verify {
            &["tile/8/0/000", "tile/8/0/000.p/5", "tile/8/0/000.p/4"]
        } else {
            // Without a key only sizes can be checked.
            &["tile/8/0/000", "tile/8/0/000.p/5"]
        };
        for tile in cases {
            for _ in 0..2 {
                let (s, h, body) = http::get(&format!("{}/sumdb/{DB}/{tile}", agora.url()));
                assert_eq!(s, 502, "verify={verify} {tile}: {}", http::text(&body));
                assert!(h.get("cache-control").unwrap().to_str().unwrap() == "no-store");
            }
        }
        assert_eq!(stored(data.path()), Vec::<String>::new(), "verify={verify}");
    }
}

/// A zip for `module@version` with different content than the fixture's.
fn forged_zip(module: &str, version: &str) -> Vec<u8> {
    let files = vec![
        MemFile::regular("go.mod", format!("module {module}\n\ngo 1.21\n").into_bytes()),
        MemFile::regular(
            "greet.go",
            b"package greet\n\n// Hello is not what the author wrote.\nfunc Hello(string) string { return \"pwned\" }\n".to_vec(),
        ),
    ];
    let mut out = Cursor::new(Vec::new());
    create_zip(&mut out, module, version, &files, &Default::default()).unwrap();
    out.into_inner()
}

#[test]
fn tampered_go_mod_and_zip_from_upstream_are_refused_with_a_security_error() {
    let db = database();
    let up = upstream();
    let (mod_path, zip_path) = (
        artifact_path(GREET, "v1.1.0", "mod"),
        artifact_path(GREET, "v1.1.0", "zip"),
    );
    up.add_file(
        &mod_path,
        format!("module {GREET}\n\ngo 1.22\n"),
        "text/plain",
    );
    up.add_file(&zip_path, forged_zip(GREET, "v1.1.0"), "application/zip");
    let data = tempfile::tempdir().unwrap();
    let audit = data.path().join("audit.log");
    let agora = builder(&data.path().join("data"), &up.url())
        .env("GOSUMDB", db.gosumdb())
        .env("AGORA_AUDIT_FILE", &audit)
        .start();

    for path in [&mod_path, &zip_path] {
        for _ in 0..2 {
            let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
            let text = http::text(&body);
            assert_eq!(s, 403, "{path}: {text}");
            assert!(
                text.contains("checksum mismatch") && text.contains("SECURITY ERROR"),
                "{text}"
            );
        }
    }
    // The go command, asking agora, is refused and says why.
    let err = go_client()
        .mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        stored(&data.path().join("data"))
            .iter()
            .all(|p| !p.ends_with(".mod") && !p.ends_with(".zip")),
        "{:?}",
        stored(&data.path().join("data"))
    );
    let (_, _, metrics) = http::get(&format!("{}/metrics", agora.url()));
    assert!(
        http::text(&metrics).contains("agora_sumdb_verifications_total{result=\"mismatch\"}"),
        "{}",
        http::text(&metrics)
    );
    let log = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains(GREET) && l.contains("\"status\":403")),
        "mismatches are audited: {log}"
    );

    // The upstream heals: the next request tries again and the real bytes are verified.
    up.remove_file(&mod_path);
    up.remove_file(&zip_path);
    for path in [&mod_path, &zip_path] {
        let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
        assert_eq!(s, 200, "{path}: {}", http::text(&body));
    }
    // A version the database does not know is refused as the go command refuses it.
    let unknown = artifact_path(agora_testkit::fixtures::BIG, "v1.0.0", "mod");
    let fresh = SumdbServer::start(DB);
    let agora2 = builder(&data.path().join("data2"), &up.url())
        .env("GOSUMDB", fresh.gosumdb())
        .start();
    let (s, _, body) = http::get(&format!("{}{unknown}", agora2.url()));
    assert_eq!(s, 403, "{}", http::text(&body));
    assert!(http::text(&body).contains("not found in checksum database"));
}

#[test]
fn a_public_tag_moved_after_it_was_recorded_is_refused() {
    const MOVED: &str = "github.com/agora-moved/lib";
    let host = &world().host;
    let mut repo = host.repo(MOVED);
    repo.write("go.mod", format!("module {MOVED}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n\nconst V = 1\n");
    repo.commit("v1");
    repo.tag("v1.0.0");
    // The database recorded the tag as the go command hashed it then.
    let recorded = go_client()
        .mod_download("direct", &format!("{MOVED}@v1.0.0"))
        .unwrap();
    let db = database();
    db.know(
        MOVED,
        "v1.0.0",
        recorded.sum.as_deref().unwrap(),
        recorded.go_mod_sum.as_deref().unwrap(),
    );
    // Then the tag moved to other content.
    repo.write("lib.go", "package lib\n\nconst V = 2\n");
    repo.commit("moved");
    repo.git(["tag", "-f", "v1.0.0"]);

    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), "direct")
        .env("GOSUMDB", db.gosumdb())
        .env("GIT_CONFIG_GLOBAL", host.gitconfig_path())
        .start();
    let (s, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(MOVED, "v1.0.0", "zip")
    ));
    let text = http::text(&body);
    assert_eq!(s, 403, "{text}\n{}", agora.stderr_log());
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(text.contains(recorded.sum.as_deref().unwrap()), "{text}");
    assert!(stored(data.path()).iter().all(|p| !p.ends_with(".zip")));
}

#[test]
fn a_forked_log_is_refused_and_stays_refused_after_a_restart() {
    let db = database();
    for (q, d) in &world().baseline {
        let (module, version) = q.split_once('@').unwrap();
        // Same key, another story about every version.
        db.know_in_fork(
            module,
            version,
            "h1:forged",
            d.go_mod_sum.as_deref().unwrap(),
        );
    }
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let start = || {
        builder(data.path(), &up.url())
            .env("GOSUMDB", db.gosumdb())
            .start()
    };
    let agora = start();
    for v in ["v1.0.0", "v1.1.0"] {
        let path = artifact_path(GREET, v, "mod");
        assert_eq!(http::get(&format!("{}{path}", agora.url())).0, 200);
    }
    db.fork();
    let fetch_mixed = |agora: &agora_testkit::Agora| {
        let path = artifact_path(agora_testkit::fixtures::MIXED_CASE, "v1.0.0", "mod");
        http::get(&format!("{}{path}", agora.url()))
    };
    let (s, _, body) = fetch_mixed(&agora);
    let text = http::text(&body);
    assert_eq!(s, 502, "{text}");
    assert!(
        text.contains("SECURITY ERROR") && text.contains("misbehavior"),
        "{text}"
    );
    assert!(agora.stderr_log().contains("misbehavior"));
    drop(agora);
    // The verified tree head was kept: a restarted agora still refuses the fork.
    let agora = start();
    let (s, _, body) = fetch_mixed(&agora);
    assert_eq!(s, 502, "{}", http::text(&body));
    assert!(stored(data.path())
        .iter()
        .all(|p| !p.contains("!mixed!case/@v/v1.0.0.mod")));
}

/// `golang.org/toolchain` is verified even where a no-checksum pattern matches it, and refused
/// when no checksum database is configured, as the go command requires for toolchains.
#[test]
fn toolchains_are_always_verified() {
    const TOOLCHAIN: &str = "golang.org/toolchain";
    const V: &str = "v0.0.1-go1.99.0.linux-amd64";
    let go_mod = format!("module {TOOLCHAIN}\n");
    let up = upstream();
    let path = artifact_path(TOOLCHAIN, V, "mod");
    up.add_file(&path, go_mod.clone(), "text/plain");
    let db = SumdbServer::start(DB);
    let data = tempfile::tempdir().unwrap();
    let agora = builder(&data.path().join("a"), &up.url())
        .env("GOSUMDB", db.gosumdb())
        .env("AGORA_ROUTING_NOSUMDB", "golang.org")
        .start();
    let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
    assert_eq!(s, 403, "{}", http::text(&body));
    assert!(http::text(&body).contains("not found in checksum database"));
    db.know(
        TOOLCHAIN,
        V,
        "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &agora_gomod::dirhash::hash_go_mod(go_mod.as_bytes()),
    );
    let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
    assert_eq!((s, http::text(&body)), (200, go_mod));

    let off = builder(&data.path().join("b"), &up.url())
        .env("GOSUMDB", "off")
        .start();
    let (s, _, body) = http::get(&format!("{}{path}", off.url()));
    assert_eq!(s, 403, "{}", http::text(&body));
    assert!(http::text(&body).contains("verified against a checksum database"));
}
