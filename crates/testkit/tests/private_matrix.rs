//! The private-module matrix (`agora_testkit::fixtures::private_matrix`), checked against the real
//! go command over the HTTPS git server: every expectation, the zip contents, and the golden answers
//! that agora's tests compare with.

use agora_testkit::fixtures::{private_matrix, private_matrix_on, Expect, PRIVATE_HOST};
use agora_testkit::gitserver::RequestKind;
use agora_testkit::{GitHost, GoClient, HttpsGitServer};

const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/private_matrix.json");

/// `GOPROXY=direct` over HTTPS (private CA, .netrc) agrees with every expectation and with the
/// golden file. `AGORA_TESTKIT_BLESS=1` rewrites the golden file instead of comparing.
#[test]
fn matrix_matches_the_go_command_and_the_golden_answers() {
    let host = GitHost::new();
    let fx = private_matrix(&host);
    let srv = HttpsGitServer::serve(&host, PRIVATE_HOST);
    let go = srv.configure_go(GoClient::find());

    let answers = fx.record(&go, "direct");
    let mismatches = fx.check(&answers, true);
    assert!(
        mismatches.is_empty(),
        "the go command disagrees with the matrix's expectations:\n{}",
        mismatches.join("\n")
    );
    let contents = fx.check_contents(&go, "direct");
    assert!(contents.is_empty(), "{}", contents.join("\n"));

    // Everything came over HTTPS, authenticated; the subgroup too (go sends the .netrc
    // credentials with ?go-get=1, so the GitLab-style server answers correctly).
    let reqs = srv.requests();
    assert!(
        reqs.iter().all(|r| r.kind != RequestKind::Other),
        "{reqs:#?}"
    );
    assert!(srv.fetches("matrix/tags") >= 1);
    assert!(srv.fetches("matrix/sub/deep") >= 1);
    assert!(reqs
        .iter()
        .filter(|r| r.kind == RequestKind::GoGet)
        .all(|r| r.authenticated));

    if std::env::var_os("AGORA_TESTKIT_BLESS").is_some() {
        std::fs::write(GOLDEN_PATH, answers.to_json()).expect("write golden file");
        return;
    }
    let golden = fx.golden();
    let mut diff = golden.diff(&answers);
    diff.extend(answers.diff(&golden));
    assert!(
        diff.is_empty(),
        "the go command's answers differ from {GOLDEN_PATH} (run with AGORA_TESTKIT_BLESS=1 if the \
         fixtures changed on purpose):\n{}",
        diff.join("\n")
    );
}

/// The golden file covers exactly the matrix's queries and modules, and agrees with its
/// expectations (so agora's tests can rely on it without running go against git).
#[test]
fn golden_answers_cover_the_matrix() {
    let host = GitHost::new();
    let fx = private_matrix(&host);
    let golden = fx.golden();
    let mut queries = fx.queries();
    queries.sort();
    let golden_queries: Vec<String> = golden.queries.keys().cloned().collect();
    assert_eq!(golden_queries, queries);
    let mut paths = fx.module_paths();
    paths.sort();
    assert_eq!(
        golden.lists.keys().map(String::as_str).collect::<Vec<_>>(),
        paths
    );
    let mismatches = fx.check(&golden, true);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Spot checks of the documented forms, independent of the expectations' code.
    let tags = fx.module("tags");
    let main = &golden.queries[&format!("{}@main", tags.path)];
    assert_eq!(
        main.version.as_deref(),
        Some(format!("v1.1.6-0.20240102080405-{}", &tags.rev("c6")[..12]).as_str())
    );
    assert_eq!(main.time.as_deref(), Some("2024-01-02T08:04:05Z"));
    let untagged = fx.module("untagged");
    assert!(golden.queries[&format!("{}@latest", untagged.path)]
        .version
        .as_deref()
        .unwrap()
        .starts_with("v0.0.0-20240102040405-"));
    assert_eq!(
        fx.module("UpperCase").escaped_path(),
        "gitlab.corp.example/matrix/!upper!case"
    );
    let failing: Vec<String> = fx
        .failing()
        .iter()
        .map(|(m, c)| format!("{}@{}", m.key, c.query))
        .collect();
    assert!(
        failing.contains(&"casefold@v1.0.0".to_string()),
        "{failing:?}"
    );
    assert!(
        failing.contains(&"oversized@v0.2.0".to_string()),
        "{failing:?}"
    );
    assert!(matches!(
        fx.module("vendor124").case("v1.0.0").expect,
        Expect::TooNewForGo(_)
    ));
}

/// The same matrix under another host name: same cases, other hashes.
#[test]
fn matrix_on_another_host() {
    let host = GitHost::new();
    let a = private_matrix(&host);
    let b = private_matrix_on(&host, "gitlab-other.corp.example");
    assert_eq!(a.modules().len(), b.modules().len());
    assert_eq!(a.queries().len(), b.queries().len());
    let (ta, tb) = (a.module("tags"), b.module("tags"));
    assert_eq!(tb.path, "gitlab-other.corp.example/matrix/tags");
    assert_ne!(
        ta.rev("c1"),
        tb.rev("c1"),
        "go.mod names the host, so hashes differ"
    );
    assert!(host
        .repo_dir("gitlab-other.corp.example/matrix/tags/.git")
        .is_dir());
}
