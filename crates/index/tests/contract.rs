//! The index contract: the same checks against both backends, SQLite in a temporary directory
//! and a real PostgreSQL server (one throwaway cluster per test binary, a fresh database per
//! test), plus what only one of them has (replicas sharing PostgreSQL, SQLite's file).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_gomod::module::ModulePath;
use agora_index::*;
use agora_storage::{ArtifactKind, Storage, StorageKey};
use agora_testkit::PostgresServer;
use tempfile::TempDir;

use ArtifactKind::{Info, Mod, Zip};

/// An index under test and what keeps it alive.
struct Env {
    index: Index,
    config: IndexConfig,
    dir: TempDir,
}

async fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = IndexConfig::default();
    let index = Index::open(&config, dir.path()).await.unwrap();
    assert_eq!(index.backend(), Backend::Sqlite);
    Env { index, config, dir }
}

async fn postgres() -> Env {
    let url = tokio::task::spawn_blocking(|| PostgresServer::shared().create_database())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = IndexConfig {
        url: Some(url),
        max_connections: 4,
        ..Default::default()
    };
    let index = Index::open(&config, dir.path()).await.unwrap();
    assert_eq!(index.backend(), Backend::Postgres);
    Env { index, config, dir }
}

/// Each check, once per backend.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() { super::$check(super::sqlite().await).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() { super::$check(super::postgres().await).await })*
        }
    };
}

contract!(
    recording_twice_keeps_the_first_record,
    versions_list_artifacts_in_semver_order,
    feed_is_ordered_and_pages_through_ties,
    serves_are_batched_and_flushed_in_one_go,
    a_served_artifact_missing_from_the_index_is_added_on_flush,
    stats_add_up_by_kind_and_origin,
    remove_and_forget,
    quarantine_and_lift,
    modules_are_listed_by_pattern_and_paged,
    search_finds_substrings_prefixes_first,
    retention_evicts_zips_least_recently_used_first_within_budget,
    retention_by_age_and_never_served_order,
    retention_keeps_patterns_and_quarantines_and_metadata_only_when_asked,
    rebuild_recreates_the_index_from_storage,
    reopening_keeps_everything,
);

fn m(p: &str) -> ModulePath {
    ModulePath::new(p).unwrap()
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn rec(module: &str, version: &str, kind: ArtifactKind, size: u64, at: u64) -> ArtifactRecord {
    ArtifactRecord {
        module: m(module),
        version: version.to_owned(),
        kind,
        size,
        h1: None,
        stored_at: t(at),
        origin: Origin::Upstream {
            url: "https://proxy.golang.org".into(),
        },
    }
}

fn key(module: &str, version: &str, kind: ArtifactKind) -> StorageKey {
    StorageKey::artifact(&m(module), version, kind)
}

/// Records a whole version (info 100 B, mod 200 B, zip `zip` B) stored at `at`.
async fn version(index: &Index, module: &str, version: &str, zip: u64, at: u64) {
    index
        .record_stored_many(&[
            rec(module, version, Info, 100, at),
            rec(module, version, Mod, 200, at),
            rec(module, version, Zip, zip, at),
        ])
        .await
        .unwrap();
}

async fn serve(index: &Index, module: &str, version: &str, kind: ArtifactKind, at: u64) {
    index
        .served_batch()
        .record(&key(module, version, kind), 1, t(0), t(at));
    index.flush_served().await.unwrap();
}

async fn recording_twice_keeps_the_first_record(env: Env) {
    let index = &env.index;
    let git = Origin::Git {
        repository: "https://ci:hunter2@git.corp.example/a.git".into(),
        commit: "0123abcd".into(),
        reference: Some("refs/tags/v1.0.0".into()),
    };
    let first = ArtifactRecord {
        origin: git.clone(),
        ..rec("git.corp.example/a", "v1.0.0", Zip, 1000, 10)
    }
    .with_h1("h1:first=");
    index.record_stored(&first).await.unwrap();
    // Another replica stored it too, later, from elsewhere: nothing changes.
    let again = rec("git.corp.example/a", "v1.0.0", Zip, 1000, 20).with_h1("h1:second=");
    index.record_stored(&again).await.unwrap();
    index.record_stored(&first).await.unwrap();
    let row = index.artifact(&first.key()).await.unwrap().unwrap();
    assert_eq!(row.stored_at, t(10));
    assert_eq!(row.h1.as_deref(), Some("h1:first="));
    assert_eq!(row.size, 1000);
    assert_eq!(
        row.origin,
        Origin::Git {
            repository: "https://***@git.corp.example/a.git".into(),
            commit: "0123abcd".into(),
            reference: Some("refs/tags/v1.0.0".into()),
        },
        "recorded without the credential"
    );

    // What a partial record lacked is filled in; an earlier time wins.
    let unknown = ArtifactRecord {
        origin: Origin::Unknown,
        ..rec("example.com/b", "v0.1.0", Mod, 50, 30)
    };
    index.record_stored(&unknown).await.unwrap();
    let known = rec("example.com/b", "v0.1.0", Mod, 50, 25).with_h1("h1:mod=");
    index.record_stored(&known).await.unwrap();
    let row = index.artifact(&known.key()).await.unwrap().unwrap();
    assert_eq!(row.stored_at, t(25));
    assert_eq!(row.h1.as_deref(), Some("h1:mod="));
    assert_eq!(row.origin.kind(), OriginKind::Upstream);

    // Duplicates within one batch are merged, not refused.
    let dup = rec("example.com/c", "v1.0.0", Info, 10, 5);
    index
        .record_stored_many(&[
            ArtifactRecord {
                stored_at: t(7),
                ..dup.clone()
            },
            dup.clone(),
        ])
        .await
        .unwrap();
    let row = index.artifact(&dup.key()).await.unwrap().unwrap();
    assert_eq!(row.stored_at, t(5));
    assert_eq!(index.stats().await.unwrap().total().artifacts, 3);
    assert!(index
        .artifact(&StorageKey::List(m("example.com/c")))
        .await
        .unwrap()
        .is_none());
}

async fn versions_list_artifacts_in_semver_order(env: Env) {
    let index = &env.index;
    for (v, at) in [
        ("v1.10.0", 1),
        ("v1.2.0", 2),
        ("v1.2.0-rc.1", 3),
        ("v0.0.0-20240101000000-abcdefabcdef", 4),
    ] {
        version(index, "example.com/a", v, 1000, at).await;
    }
    index
        .record_stored(&rec("example.com/a", "v2.0.0+incompatible", Mod, 10, 9))
        .await
        .unwrap();
    index
        .record_stored(&rec("example.com/ab", "v9.0.0", Mod, 10, 9))
        .await
        .unwrap();
    let rows = index.versions(&m("example.com/a")).await.unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(
        names,
        [
            "v0.0.0-20240101000000-abcdefabcdef",
            "v1.2.0-rc.1",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0+incompatible"
        ]
    );
    let v12 = &rows[2];
    assert_eq!(v12.first_stored, Some(t(2)));
    let kinds: Vec<ArtifactKind> = v12.artifacts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [Info, Mod, Zip]);
    assert_eq!(v12.artifact(Zip).unwrap().size, 1000);
    assert!(v12.quarantine.is_none());
    assert!(index
        .versions(&m("example.com/none"))
        .await
        .unwrap()
        .is_empty());
}

async fn feed_is_ordered_and_pages_through_ties(env: Env) {
    let index = &env.index;
    // A version's feed time is when its first artifact was stored.
    index
        .record_stored_many(&[
            rec("example.com/late", "v1.0.0", Zip, 1, 50),
            rec("example.com/late", "v1.0.0", Info, 1, 40),
        ])
        .await
        .unwrap();
    // Seven versions stored at the same instant (a bulk import), and a few before.
    for i in 0..7 {
        version(index, &format!("example.com/tie{}", 6 - i), "v1.0.0", 1, 30).await;
    }
    version(index, "example.com/b", "v1.0.0", 1, 10).await;
    version(index, "example.com/a", "v1.0.0", 1, 10).await;
    version(index, "example.com/a", "v0.9.0", 1, 10).await;
    version(index, "example.com/first", "v1.0.0", 1, 1).await;

    let all = index.feed(UNIX_EPOCH, 100).await.unwrap();
    let shown: Vec<String> = all
        .iter()
        .map(|e| format!("{}@{}", e.path, e.version))
        .collect();
    let mut want = vec![
        "example.com/first@v1.0.0".to_owned(),
        "example.com/a@v0.9.0".into(),
        "example.com/a@v1.0.0".into(),
        "example.com/b@v1.0.0".into(),
    ];
    want.extend((0..7).map(|i| format!("example.com/tie{i}@v1.0.0")));
    want.push("example.com/late@v1.0.0".into());
    assert_eq!(shown, want);
    assert_eq!(all.last().unwrap().timestamp, t(40));

    // `since` is inclusive, as on index.golang.org.
    let from_ties = index.feed(t(30), 3).await.unwrap();
    assert_eq!(from_ties.len(), 3);
    assert_eq!(from_ties[0].path.as_str(), "example.com/tie0");
    assert!(index.feed(t(41), 10).await.unwrap().is_empty());

    // Paging with the cursor visits every entry once, ties included.
    let mut paged = index.feed(UNIX_EPOCH, 3).await.unwrap();
    loop {
        let next = index.feed_after(paged.last().unwrap(), 3).await.unwrap();
        if next.is_empty() {
            break;
        }
        assert!(next.len() <= 3);
        paged.extend(next);
    }
    assert_eq!(paged, all);
    assert_eq!(index.feed(UNIX_EPOCH, 0).await.unwrap().len(), 0);
    assert_eq!(index.feed(UNIX_EPOCH, 1_000_000).await.unwrap().len(), 12);
}

async fn serves_are_batched_and_flushed_in_one_go(env: Env) {
    let index = &env.index;
    version(index, "example.com/a", "v1.0.0", 1000, 1).await;
    let zip = key("example.com/a", "v1.0.0", Zip);
    for at in [5, 9, 7] {
        index.served_batch().record(&zip, 1000, t(1), t(at));
    }
    let info = agora_storage::ObjectInfo {
        size: 100,
        last_modified: t(1),
        e_tag: None,
    };
    index.record_served(&key("example.com/a", "v1.0.0", Info), &info);
    index.record_served(&StorageKey::List(m("example.com/a")), &info);
    // Nothing is written before a flush.
    let row = index.artifact(&zip).await.unwrap().unwrap();
    assert_eq!((row.served_count, row.last_served), (0, None));

    let report = index.flush_served().await.unwrap();
    assert_eq!(
        report,
        FlushReport {
            artifacts: 2,
            serves: 4
        }
    );
    let row = index.artifact(&zip).await.unwrap().unwrap();
    assert_eq!((row.served_count, row.last_served), (3, Some(t(9))));
    let info_row = index
        .artifact(&key("example.com/a", "v1.0.0", Info))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info_row.served_count, 1);
    assert!(info_row.last_served.unwrap() > t(9), "served now");
    assert_eq!(index.flush_served().await.unwrap(), FlushReport::default());

    // Counts add up across flushes; an older serve does not move last_served back.
    index.served_batch().record(&zip, 1000, t(1), t(8));
    index.flush_served().await.unwrap();
    let row = index.artifact(&zip).await.unwrap().unwrap();
    assert_eq!((row.served_count, row.last_served), (4, Some(t(9))));
    assert_eq!(row.stored_at, t(1), "serves leave the stored time alone");
    assert_eq!(index.stats().await.unwrap().served, 5);
}

async fn a_served_artifact_missing_from_the_index_is_added_on_flush(env: Env) {
    let index = &env.index;
    let zip = key("example.com/old", "v1.0.0", Zip);
    index.served_batch().record(&zip, 4096, t(3), t(100));
    index.served_batch().record(&zip, 4096, t(3), t(101));
    index.flush_served().await.unwrap();
    let row = index.artifact(&zip).await.unwrap().unwrap();
    assert_eq!(row.size, 4096);
    assert_eq!(row.stored_at, t(3));
    assert_eq!(row.origin, Origin::Unknown);
    assert_eq!((row.served_count, row.last_served), (2, Some(t(101))));
    let feed = index.feed(UNIX_EPOCH, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].timestamp, t(3));

    // Recording it properly later fills in what the hit could not know, and keeps the counts.
    let proper = ArtifactRecord {
        origin: Origin::Upstream {
            url: "https://goproxy.cn".into(),
        },
        ..rec("example.com/old", "v1.0.0", Zip, 4096, 50)
    }
    .with_h1("h1:z=");
    index.record_stored(&proper).await.unwrap();
    let row = index.artifact(&zip).await.unwrap().unwrap();
    assert_eq!(row.origin.kind(), OriginKind::Upstream);
    assert_eq!(row.h1.as_deref(), Some("h1:z="));
    assert_eq!(row.stored_at, t(3));
    assert_eq!(row.served_count, 2);
    // A known version's feed time is not moved by a later flush.
    index.served_batch().record(&zip, 4096, t(1), t(102));
    index.flush_served().await.unwrap();
    assert_eq!(index.feed(UNIX_EPOCH, 10).await.unwrap()[0].timestamp, t(3));
}

async fn stats_add_up_by_kind_and_origin(env: Env) {
    let index = &env.index;
    assert_eq!(index.stats().await.unwrap().total(), Totals::default());
    version(index, "example.com/a", "v1.0.0", 1000, 1).await;
    version(index, "example.com/a", "v1.1.0", 2000, 2).await;
    version(index, "example.com/b", "v1.0.0", 3000, 3).await;
    let git = ArtifactRecord {
        origin: Origin::Git {
            repository: "ssh://git@git.corp.example/c.git".into(),
            commit: "ab".into(),
            reference: None,
        },
        ..rec("git.corp.example/c", "v0.1.0", Zip, 500, 4)
    };
    index.record_stored(&git).await.unwrap();
    index
        .quarantine(&m("example.com/a"), "v1.1.0", "CVE", "cli")
        .await
        .unwrap();
    serve(index, "example.com/a", "v1.0.0", Zip, 10).await;
    let s = index.stats().await.unwrap();
    assert_eq!((s.modules, s.versions), (3, 4));
    assert_eq!(
        s.kind(Info),
        Totals {
            artifacts: 3,
            bytes: 300
        }
    );
    assert_eq!(
        s.kind(Mod),
        Totals {
            artifacts: 3,
            bytes: 600
        }
    );
    assert_eq!(
        s.kind(Zip),
        Totals {
            artifacts: 4,
            bytes: 6500
        }
    );
    assert_eq!(
        s.total(),
        Totals {
            artifacts: 10,
            bytes: 7400
        }
    );
    assert_eq!(
        s.by_origin,
        vec![
            OriginTotals {
                origin: OriginKind::Git,
                upstream: None,
                totals: Totals {
                    artifacts: 1,
                    bytes: 500
                }
            },
            OriginTotals {
                origin: OriginKind::Upstream,
                upstream: Some("https://proxy.golang.org".into()),
                totals: Totals {
                    artifacts: 9,
                    bytes: 6900
                }
            },
        ]
    );
    assert_eq!((s.served, s.quarantined), (1, 1));
}

async fn remove_and_forget(env: Env) {
    let index = &env.index;
    version(index, "example.com/a", "v1.0.0", 10, 1).await;
    version(index, "example.com/a", "v1.1.0", 10, 2).await;
    version(index, "example.com/b", "v1.0.0", 10, 3).await;
    index
        .quarantine(&m("example.com/a"), "v1.0.0", "bad", "cli")
        .await
        .unwrap();
    assert_eq!(
        index
            .remove(&m("example.com/a"), Some("v1.0.0"))
            .await
            .unwrap(),
        3
    );
    let rows = index.versions(&m("example.com/a")).await.unwrap();
    assert_eq!(rows.len(), 2, "the quarantine stays");
    assert!(rows[0].artifacts.is_empty() && rows[0].quarantine.is_some());
    assert_eq!(index.feed(UNIX_EPOCH, 10).await.unwrap().len(), 2);
    assert_eq!(index.remove(&m("example.com/a"), None).await.unwrap(), 3);
    assert_eq!(index.remove(&m("example.com/a"), None).await.unwrap(), 0);
    assert_eq!(index.stats().await.unwrap().total().artifacts, 3);

    // Forgetting evicted artifacts keeps the version's feed entry.
    let n = index
        .forget(&[
            key("example.com/b", "v1.0.0", Zip),
            key("example.com/b", "v9.0.0", Zip),
            StorageKey::List(m("example.com/b")),
        ])
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(index.stats().await.unwrap().total().artifacts, 2);
    assert_eq!(index.feed(UNIX_EPOCH, 10).await.unwrap().len(), 1);
}

async fn quarantine_and_lift(env: Env) {
    let index = &env.index;
    let a = m("example.com/a");
    assert!(index.quarantined(&a, "v1.0.0").await.unwrap().is_none());
    assert!(matches!(
        index.quarantine(&a, "latest", "x", "cli").await,
        Err(IndexError::Invalid { .. })
    ));
    let q = index
        .quarantine(&a, "v1.0.0", "CVE-2026-1", "alice")
        .await
        .unwrap();
    assert_eq!(
        (q.reason.as_str(), q.actor.as_str()),
        ("CVE-2026-1", "alice")
    );
    let before = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = index
        .quarantine(&a, "v1.0.0", "CVE-2026-2", "bob")
        .await
        .unwrap();
    assert_eq!(again.since, q.since, "quarantining again keeps the time");
    assert!(again.since < before);
    assert_eq!(
        index.quarantined(&a, "v1.0.0").await.unwrap(),
        Some(again.clone())
    );
    index
        .quarantine(&m("example.com/B"), "v0.1.0", "r", "cli")
        .await
        .unwrap();
    let all = index.quarantines().await.unwrap();
    let names: Vec<String> = all
        .iter()
        .map(|q| format!("{}@{}", q.module, q.version))
        .collect();
    assert_eq!(names, ["example.com/B@v0.1.0", "example.com/a@v1.0.0"]);
    assert_eq!(index.lift(&a, "v1.0.0").await.unwrap(), Some(again));
    assert_eq!(index.lift(&a, "v1.0.0").await.unwrap(), None);
    assert!(index.quarantined(&a, "v1.0.0").await.unwrap().is_none());
}

async fn modules_are_listed_by_pattern_and_paged(env: Env) {
    let index = &env.index;
    for module in [
        "github.com/org/a",
        "github.com/org/b",
        "github.com/org/b/v2",
        "github.com/orgx/c",
        "git.corp.example/team/x",
        "gitlab.corp.example/y",
        "golang.org/x/mod",
    ] {
        version(index, module, "v1.0.0", 1000, 1).await;
    }
    version(index, "github.com/org/a", "v1.1.0", 500, 2).await;
    serve(index, "github.com/org/a", "v1.1.0", Zip, 9).await;
    let list = |pattern: Option<&str>, after: Option<&str>, limit| {
        let q = ModuleQuery {
            pattern: pattern.map(str::to_owned),
            after: after.map(str::to_owned),
            limit,
        };
        async move {
            index
                .modules(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.module.into_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None, 0).await.len(), 7);
    assert_eq!(
        list(Some("github.com/org"), None, 0).await,
        [
            "github.com/org/a",
            "github.com/org/b",
            "github.com/org/b/v2"
        ]
    );
    assert_eq!(
        list(Some("*.corp.example"), None, 0).await,
        ["git.corp.example/team/x", "gitlab.corp.example/y"]
    );
    assert_eq!(
        list(Some("github.com/org*,golang.org"), None, 0).await,
        [
            "github.com/org/a",
            "github.com/org/b",
            "github.com/org/b/v2",
            "github.com/orgx/c",
            "golang.org/x/mod"
        ]
    );
    assert!(list(Some("[bad"), None, 0).await.is_empty());
    assert_eq!(
        list(Some("github.com"), None, 2).await,
        ["github.com/org/a", "github.com/org/b"]
    );
    assert_eq!(
        list(Some("github.com"), Some("github.com/org/b"), 2).await,
        ["github.com/org/b/v2", "github.com/orgx/c"]
    );
    let a = &index
        .modules(&ModuleQuery {
            pattern: Some("github.com/org/a".into()),
            ..Default::default()
        })
        .await
        .unwrap()[0];
    assert_eq!((a.versions, a.artifacts, a.bytes), (2, 6, 2100));
    assert_eq!(
        (a.last_stored, a.last_served, a.served_count),
        (t(2), Some(t(9)), 1)
    );
}

async fn search_finds_substrings_prefixes_first(env: Env) {
    let index = &env.index;
    version(index, "github.com/acme/widgets", "v1.0.0", 10, 100).await;
    version(index, "github.com/acme/widgets", "v1.2.0", 10, 300).await;
    version(index, "github.com/acme/widgets", "v2.0.0-rc.1", 10, 400).await;
    version(index, "widgets.example/core", "v0.1.0", 10, 200).await;
    version(
        index,
        "github.com/other/thing",
        "v0.0.0-20240101000000-abcdefabcdef",
        10,
        50,
    )
    .await;
    version(index, "github.com/x/under_score", "v1.0.0", 10, 60).await;

    let hits = index.search("Widgets", 10).await.unwrap();
    let found: Vec<(&str, u64, Option<&str>)> = hits
        .iter()
        .map(|h| (h.module.as_str(), h.versions, h.latest.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("widgets.example/core", 1, Some("v0.1.0")),
            ("github.com/acme/widgets", 3, Some("v1.2.0")),
        ],
        "prefix matches first, then path order; latest is the highest release"
    );
    assert_eq!(hits[1].last_stored, t(400));
    let thing = index.search("other/thing", 10).await.unwrap();
    assert_eq!(
        thing[0].latest.as_deref(),
        Some("v0.0.0-20240101000000-abcdefabcdef")
    );
    // LIKE's wildcards are literal characters here.
    assert_eq!(index.search("r_s", 10).await.unwrap().len(), 1);
    assert!(index.search("%", 10).await.unwrap().is_empty());
    assert!(index.search("r%s", 10).await.unwrap().is_empty());
    assert!(index.search("_x_", 10).await.unwrap().is_empty());
    assert_eq!(index.search("", 2).await.unwrap().len(), 2, "limit");
}

fn names(plan: &Plan) -> Vec<String> {
    plan.evictions
        .iter()
        .map(|e| match &e.key {
            StorageKey::Artifact {
                module,
                version,
                kind,
            } => format!("{module}@{version}.{}", kind.extension()),
            other => panic!("not an artifact: {other:?}"),
        })
        .collect()
}

async fn retention_evicts_zips_least_recently_used_first_within_budget(env: Env) {
    let index = &env.index;
    // Zips of 1000 B, stored at 1..=4; metadata 300 B a version.
    for (i, v) in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"].iter().enumerate() {
        version(index, "example.com/a", v, 1000, i as u64 + 1).await;
    }
    // v1.0.0 was served recently, v1.2.0 long ago (still after it was stored).
    serve(index, "example.com/a", "v1.0.0", Zip, 100).await;
    serve(index, "example.com/a", "v1.2.0", Zip, 5).await;
    // Total: 4 * 1300 = 5200. Least recently used order: v1.1.0 (2), v1.3.0 (4), v1.2.0 (5), v1.0.0 (100).
    let now = t(200);
    let policy = |max| RetentionPolicy {
        max_size: Some(max),
        ..Default::default()
    };
    let plan = index.plan_retention(&policy(5200), now).await.unwrap();
    assert!(plan.evictions.is_empty() && plan.summary.within_budget);
    let plan = index.plan_retention(&policy(4000), now).await.unwrap();
    assert_eq!(
        names(&plan),
        ["example.com/a@v1.1.0.zip", "example.com/a@v1.3.0.zip"]
    );
    assert!(plan
        .evictions
        .iter()
        .all(|e| e.reason == EvictReason::OverBudget));
    assert_eq!(plan.evictions[0].size, 1000);
    assert_eq!(plan.evictions[0].last_used, t(2));
    assert_eq!(
        plan.summary,
        PlanSummary {
            before: Totals {
                artifacts: 12,
                bytes: 5200
            },
            evicted: Totals {
                artifacts: 2,
                bytes: 2000
            },
            bytes_after: 3200,
            within_budget: true,
        }
    );
    // A budget below what metadata takes evicts every zip and nothing else.
    let plan = index.plan_retention(&policy(100), now).await.unwrap();
    assert_eq!(
        names(&plan),
        [
            "example.com/a@v1.1.0.zip",
            "example.com/a@v1.3.0.zip",
            "example.com/a@v1.2.0.zip",
            "example.com/a@v1.0.0.zip"
        ]
    );
    assert_eq!(plan.summary.bytes_after, 1200);
    assert!(!plan.summary.within_budget);
    // The streaming form visits the same evictions.
    let mut seen = Vec::new();
    let summary = index
        .retention(&policy(100), now, |e| seen.push(e))
        .await
        .unwrap();
    assert_eq!((seen, summary), (plan.evictions, plan.summary));
    assert_eq!(
        index
            .plan_retention(&RetentionPolicy::default(), now)
            .await
            .unwrap(),
        Plan {
            evictions: vec![],
            summary: PlanSummary {
                before: Totals {
                    artifacts: 12,
                    bytes: 5200
                },
                evicted: Totals::default(),
                bytes_after: 5200,
                within_budget: true,
            }
        }
    );
}

async fn retention_by_age_and_never_served_order(env: Env) {
    let index = &env.index;
    let day = 86_400;
    // Never served: ordered by stored time. Served: by last serve.
    version(index, "example.com/n2", "v1.0.0", 10, 2 * day).await;
    version(index, "example.com/n1", "v1.0.0", 10, day).await;
    version(index, "example.com/s", "v1.0.0", 10, 0).await;
    serve(index, "example.com/s", "v1.0.0", Zip, 3 * day).await;
    version(index, "example.com/fresh", "v1.0.0", 10, 9 * day).await;
    let now = t(10 * day);
    let policy = RetentionPolicy {
        unused_for: Some(Duration::from_secs(5 * day)),
        ..Default::default()
    };
    let plan = index.plan_retention(&policy, now).await.unwrap();
    assert_eq!(
        names(&plan),
        [
            "example.com/n1@v1.0.0.zip",
            "example.com/n2@v1.0.0.zip",
            "example.com/s@v1.0.0.zip"
        ]
    );
    assert!(plan
        .evictions
        .iter()
        .all(|e| e.reason == EvictReason::Unused));
    // Age and budget together: old ones go for their age, then newer ones for the budget.
    let both = RetentionPolicy {
        // 4 versions of 310 B; the three old zips free 30 B, the fresh one 10 more.
        max_size: Some(1205),
        ..policy.clone()
    };
    let plan = index.plan_retention(&both, now).await.unwrap();
    assert_eq!(names(&plan).len(), 4);
    assert_eq!(plan.evictions[3].reason, EvictReason::OverBudget);
    assert!(plan.summary.within_budget);
}

async fn retention_keeps_patterns_and_quarantines_and_metadata_only_when_asked(env: Env) {
    let index = &env.index;
    let day = 86_400;
    version(index, "git.corp.example/team/x", "v1.0.0", 10, 0).await;
    version(index, "example.com/q", "v1.0.0", 10, 0).await;
    version(index, "example.com/old", "v1.0.0", 10, 0).await;
    // Its zip is old, but its go.mod was read recently: the version is in use.
    version(index, "example.com/graph", "v1.0.0", 10, 0).await;
    serve(index, "example.com/graph", "v1.0.0", Mod, 9 * day).await;
    index
        .quarantine(&m("example.com/q"), "v1.0.0", "CVE", "scanner")
        .await
        .unwrap();
    let now = t(10 * day);
    let policy = RetentionPolicy {
        unused_for: Some(Duration::from_secs(5 * day)),
        keep: vec!["*.corp.example".into()],
        ..Default::default()
    };
    let plan = index.plan_retention(&policy, now).await.unwrap();
    assert_eq!(
        names(&plan),
        ["example.com/graph@v1.0.0.zip", "example.com/old@v1.0.0.zip"]
    );
    let with_metadata = RetentionPolicy {
        metadata: true,
        ..policy
    };
    let plan = index.plan_retention(&with_metadata, now).await.unwrap();
    assert_eq!(
        names(&plan),
        [
            "example.com/graph@v1.0.0.zip",
            "example.com/old@v1.0.0.zip",
            "example.com/old@v1.0.0.info",
            "example.com/old@v1.0.0.mod"
        ]
    );
    // Metadata is never evicted for the budget alone.
    let budget = RetentionPolicy {
        max_size: Some(0),
        metadata: true,
        ..Default::default()
    };
    let plan = index.plan_retention(&budget, now).await.unwrap();
    assert!(plan
        .evictions
        .iter()
        .all(|e| matches!(e.key, StorageKey::Artifact { kind: Zip, .. })));
    assert_eq!(plan.evictions.len(), 3, "all but the quarantined zip");
}

async fn rebuild_recreates_the_index_from_storage(env: Env) {
    let index = &env.index;
    let storage = Storage::memory().unwrap();
    let module = m("example.com/Upper");
    let gomod = b"module example.com/Upper\n\ngo 1.21\n".to_vec();
    let mut zip = std::io::Cursor::new(Vec::new());
    let created = agora_gomod::create_zip(
        &mut zip,
        module.as_str(),
        "v1.0.0",
        &[
            agora_gomod::MemFile::regular("go.mod", gomod.clone()),
            agora_gomod::MemFile::regular("a.go", "package a\n"),
        ],
        &Default::default(),
    )
    .unwrap();
    let put = |k: StorageKey, body: Vec<u8>| {
        let storage = storage.clone();
        async move { storage.put_once(&k, body.into()).await.unwrap() }
    };
    put(
        StorageKey::artifact(&module, "v1.0.0", Info),
        br#"{"Version":"v1.0.0","Time":"2019-01-01T00:00:00Z"}"#.to_vec(),
    )
    .await;
    put(StorageKey::artifact(&module, "v1.0.0", Mod), gomod.clone()).await;
    put(
        StorageKey::artifact(&module, "v1.0.0", Zip),
        zip.into_inner(),
    )
    .await;
    put(
        StorageKey::artifact(&m("example.com/b"), "v0.1.0-RC1", Mod),
        b"module example.com/b\n".to_vec(),
    )
    .await;
    put(StorageKey::List(module.clone()), b"v1.0.0\n".to_vec()).await;
    put(StorageKey::Latest(module.clone()), b"{}".to_vec()).await;

    // Whatever the index held before is replaced; quarantines stay.
    version(index, "example.com/gone", "v1.0.0", 10, 1).await;
    index
        .quarantine(&module, "v1.0.0", "r", "cli")
        .await
        .unwrap();
    let report = index
        .rebuild(&storage, RebuildOptions::default())
        .await
        .unwrap();
    assert_eq!((report.artifacts, report.skipped), (4, 2));
    let s = index.stats().await.unwrap();
    assert_eq!((s.modules, s.versions, s.total().artifacts), (2, 2, 4));
    assert_eq!(s.total().bytes, report.bytes);
    assert_eq!(s.quarantined, 1);
    let rows = index.versions(&module).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].artifacts.len(), 3);
    assert!(rows[0].quarantine.is_some());
    assert!(rows[0]
        .artifacts
        .iter()
        .all(|a| a.origin == Origin::Unknown && a.h1.is_none()));
    let b = index.versions(&m("example.com/b")).await.unwrap();
    assert_eq!(b[0].version, "v0.1.0-RC1", "versions are unescaped");
    // The feed time is when it was stored, not the .info's commit time.
    let feed = index.feed(UNIX_EPOCH, 10).await.unwrap();
    assert!(feed.iter().all(|e| e.timestamp > t(0)));

    let report = index
        .rebuild(&storage, RebuildOptions { hash: true })
        .await
        .unwrap();
    assert_eq!(report.artifacts, 4);
    let rows = index.versions(&module).await.unwrap();
    assert_eq!(
        rows[0].artifact(Mod).unwrap().h1.as_deref(),
        Some(agora_gomod::hash_go_mod(&gomod).as_str())
    );
    assert_eq!(
        rows[0].artifact(Zip).unwrap().h1.as_deref(),
        Some(created.h1.as_str())
    );
    assert_eq!(rows[0].artifact(Info).unwrap().h1, None);
}

async fn reopening_keeps_everything(env: Env) {
    version(&env.index, "example.com/a", "v1.0.0", 10, 1).await;
    env.index
        .served_batch()
        .record(&key("example.com/a", "v1.0.0", Zip), 10, t(1), t(5));
    // Closing flushes what was counted.
    env.index.close().await.unwrap();
    let index = Index::open(&env.config, env.dir.path()).await.unwrap();
    let row = index
        .artifact(&key("example.com/a", "v1.0.0", Zip))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.served_count, 1);
    assert_eq!(index.stats().await.unwrap().versions, 1);
}

/// The embedded default: created with its directory on first start, in WAL mode.
#[tokio::test]
async fn sqlite_file_is_created_in_the_private_tree() {
    let env = sqlite().await;
    version(&env.index, "example.com/a", "v1.0.0", 10, 1).await;
    let file = env.dir.path().join("_agora/index.sqlite3");
    assert!(file.is_file());
    assert!(
        env.dir.path().join("_agora/index.sqlite3-wal").is_file(),
        "WAL mode"
    );
    assert_eq!(env.index.location(), format!("sqlite://{}", file.display()));
    // An unusable directory is an error, not a panic.
    let blocked = tempfile::tempdir().unwrap();
    std::fs::write(blocked.path().join("_agora"), "a file").unwrap();
    let err = Index::open(&IndexConfig::default(), blocked.path())
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::Dir { .. }), "{err}");
}

/// Replicas: two handles on one PostgreSQL database, writing at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_postgres_index() {
    let env = postgres().await;
    let other = Index::open(&env.config, env.dir.path()).await.unwrap();
    let a = env.index.clone();
    let modules: Vec<String> = (0..20).map(|i| format!("example.com/m{i}")).collect();
    let write = |index: Index, offset: u64| {
        let modules = modules.clone();
        tokio::spawn(async move {
            for module in &modules {
                version(&index, module, "v1.0.0", 10, 10 + offset).await;
                index
                    .served_batch()
                    .record(&key(module, "v1.0.0", Zip), 10, t(1), t(100 + offset));
                index.flush_served().await.unwrap();
            }
        })
    };
    let (x, y) = tokio::join!(write(a.clone(), 0), write(other.clone(), 5));
    x.unwrap();
    y.unwrap();
    for index in [&a, &other] {
        let s = index.stats().await.unwrap();
        assert_eq!((s.modules, s.versions, s.total().artifacts), (20, 20, 60));
        assert_eq!(s.served, 40);
    }
    let row = other
        .artifact(&key("example.com/m7", "v1.0.0", Zip))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.stored_at, t(10), "the earliest record wins");
    assert_eq!((row.served_count, row.last_served), (2, Some(t(105))));
    assert_eq!(a.feed(UNIX_EPOCH, 100).await.unwrap().len(), 20);
}

/// A password in the URL appears in no error or log line.
#[tokio::test]
async fn a_database_password_never_shows() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = IndexConfig {
        url: Some(format!("postgres://agora:hunter2@127.0.0.1:{port}/db")),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = Index::open(&config, dir.path()).await.unwrap_err();
    let shown = format!("{err} {err:?} {config:?}");
    assert!(matches!(err, IndexError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}
