//! Private modules whose `go-import` tag names a subdirectory of the repository (Go 1.25), and the
//! `Origin` of `.info` answers built from git: both judged against the go command's own answers
//! (`GOPROXY=direct`, Go 1.27), then read through agora by Go 1.23, which cannot go direct.

use agora_testkit::go::zip_entries;
use agora_testkit::{http, Agora, GitHost, GoClient, HttpsGitServer, ModDownload};
use serde_json::Value;

use crate::support::*;

fn go_via(go: GoClient, agora: &Agora) -> GoClient {
    go.env("GONOSUMDB", "*.corp.example")
        .env("GOSUMDB", "off")
        .env("GOPROXY", agora.url())
}

/// agora's `.info` (or `@latest`) body for `path` (`/<module>/@v/<query>.info`), parsed.
fn info(agora: &Agora, path: &str) -> Value {
    let (status, _, body) = http::get(&format!("{}{path}", agora.url()));
    let body = http::text(&body);
    assert_eq!(status, 200, "{path}: {body}\n{}", agora.stderr_log());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Asserts that agora's answer to `query` names the version the go command found and carries
/// the go command's `Origin`, field by field.
fn assert_same_info(agora: &Agora, module: &str, query: &str, direct: &ModDownload) {
    let path = if query == "latest" {
        format!("/{module}/@latest")
    } else {
        format!("/{module}/@v/{query}.info")
    };
    let got = info(agora, &path);
    assert_eq!(
        got["Version"].as_str(),
        direct.version.as_deref(),
        "{module}@{query}: version"
    );
    let want = direct.origin.clone().unwrap_or(Value::Null);
    assert_eq!(
        got.get("Origin").cloned().unwrap_or(Value::Null),
        want,
        "{module}@{query}: Origin (agora left, go command right)"
    );
}

/// Go 1.25's fourth `go-import` field: `H/team/lib` lives in `go/` of `H/team/mono`, with tags
/// `go/vX.Y.Z`. Versions, sums, pseudo-versions and `@latest` through agora equal the go
/// command's, and so does each answer's `Origin` (with its `Subdir`); Go 1.23 gets the same
/// module through agora. Before: agora refused the field ("not supported", 404).
#[test]
fn private_module_in_a_go_import_subdirectory_matches_the_go_command() {
    const H: &str = "gitlab-subdir.corp.example";
    let module = format!("{H}/team/lib");
    let host = GitHost::new().host(H);
    let mut repo = host.repo(&format!("{H}/team/mono"));
    repo.write("LICENSE", "root license\n")
        .write("README.md", "the monorepo\n")
        .write("other/other.go", "package other\n")
        .write("go/go.mod", format!("module {module}\n\ngo 1.21\n"))
        .write("go/lib.go", "package lib\n");
    repo.commit("one");
    repo.tag("go/v1.0.0");
    // A tag without the prefix is not this module's.
    repo.tag("v9.0.0");
    repo.write("go/more.go", "package lib\n\nconst More = 1\n");
    repo.commit("two");
    repo.tag("go/v1.1.0");
    repo.write("other/more.go", "package other\n");
    let untagged = repo.commit("three");
    repo.branch("dev");
    repo.checkout("dev");
    repo.write("go/dev.go", "package lib\n");
    repo.commit("on dev");
    repo.checkout("main");
    repo.write("go/head.go", "package lib\n");
    repo.commit("four");
    // A major version in a directory of its own, named by its own go-import tag: tags
    // `go2/v2.x.y`, pseudo-versions based on `go2/v2.` tags.
    let v2 = format!("{module}/v2");
    repo.write("go2/go.mod", format!("module {v2}\n\ngo 1.21\n"))
        .write("go2/lib.go", "package lib\n");
    repo.commit("v2");
    repo.tag("go2/v2.0.0");
    repo.write("go2/next.go", "package lib\n");
    let v2_untagged = repo.commit("v2 next");

    let srv = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_import(
            &module,
            &format!("{module} git https://{H}/team/mono.git go"),
        )
        .go_import(&v2, &format!("{v2} git https://{H}/team/mono.git go2"))
        .start();
    let direct = srv.configure_go(GoClient::find());
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "");
    let agora = private_agora(tmp.path(), &config, "off", &[]);
    let via = go_via(GoClient::find(), &agora);

    let want = direct.list_versions("direct", &module).unwrap();
    assert_eq!(want.versions, ["v1.0.0", "v1.1.0"]);
    let got = via.list_versions(agora.url(), &module).unwrap();
    assert_eq!(got.versions, want.versions, "{}", agora.stderr_log());

    let short = &untagged[..12];
    for query in ["v1.0.0", "v1.1.0", "latest", short, "dev"] {
        let q = format!("{module}@{query}");
        let d = direct
            .mod_download("direct", &q)
            .unwrap_or_else(|e| panic!("go direct {q}: {e}"));
        let a = via
            .mod_download(agora.url(), &q)
            .unwrap_or_else(|e| panic!("via agora {q}: {e}\n{}", agora.stderr_log()));
        assert_eq!(a.version, d.version, "{q}");
        assert_eq!(a.sum, d.sum, "{q}: zip h1");
        assert_eq!(a.go_mod_sum, d.go_mod_sum, "{q}: go.mod h1");
        assert_same_info(&agora, &module, query, &d);
    }
    // Spelled out once: the commit after go/v1.1.0 is its pseudo-version, the zip holds the
    // subdirectory's files and the repository's LICENSE, under the module's name.
    let d = direct
        .mod_download("direct", &format!("{module}@{short}"))
        .unwrap();
    let version = d.version.clone().unwrap();
    assert!(version.starts_with("v1.1.1-0."), "{version}");
    let (status, _, zip) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(&module, &version, "zip")
    ));
    assert_eq!(status, 200);
    let mut names: Vec<String> = zip_entries(&zip).into_iter().map(|(n, _)| n).collect();
    names.sort();
    let prefix = format!("{module}@{version}/");
    assert_eq!(
        names,
        ["LICENSE", "go.mod", "lib.go", "more.go"].map(|f| format!("{prefix}{f}"))
    );
    let origin = d.origin.clone().unwrap();
    assert_eq!(origin["Subdir"], "go");
    assert_eq!(origin["TagPrefix"], "go/");

    for query in ["v2.0.0", "latest", &v2_untagged[..12]] {
        let q = format!("{v2}@{query}");
        let d = direct
            .mod_download("direct", &q)
            .unwrap_or_else(|e| panic!("go direct {q}: {e}"));
        let a = via
            .mod_download(agora.url(), &q)
            .unwrap_or_else(|e| panic!("via agora {q}: {e}\n{}", agora.stderr_log()));
        assert_eq!(
            (&a.version, &a.sum, &a.go_mod_sum),
            (&d.version, &d.sum, &d.go_mod_sum),
            "{q}"
        );
        assert_same_info(&agora, &v2, query, &d);
    }

    // Go 1.23 cannot read the fourth field itself; through agora it gets the same module.
    let old = go_via(GoClient::oldest(), &agora);
    for query in ["v1.1.0", "latest", short] {
        let q = format!("{module}@{query}");
        let d = direct.mod_download("direct", &q).unwrap();
        let a = old
            .mod_download(agora.url(), &q)
            .unwrap_or_else(|e| panic!("Go 1.23 via agora {q}: {e}"));
        assert_eq!(
            (&a.version, &a.sum, &a.go_mod_sum),
            (&d.version, &d.sum, &d.go_mod_sum),
            "{q}"
        );
    }
    assert!(!agora.stderr_log().contains(srv.token()));
}

/// A `go-import` subdirectory the go command refuses (leading `/` or `-`) is refused by agora as
/// a bad meta tag (404), with the go command's words in its log.
#[test]
fn private_go_import_subdirectory_with_a_leading_slash_is_refused_like_the_go_command() {
    const H: &str = "gitlab-badsubdir.corp.example";
    let module = format!("{H}/team/lib");
    let host = GitHost::new().host(H);
    let mut repo = host.repo(&format!("{H}/team/mono"));
    repo.write("go/go.mod", format!("module {module}\n"));
    repo.commit("one");
    repo.tag("go/v1.0.0");
    let srv = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_import(
            &module,
            &format!("{module} git https://{H}/team/mono.git /go"),
        )
        .start();
    let err = srv
        .configure_go(GoClient::find())
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .expect_err("the go command refuses the subdirectory");
    assert!(
        err.to_string()
            .contains("invalid subdirectory \"/go\": leading slash"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "");
    let agora = private_agora(tmp.path(), &config, "off", &[]);
    let (status, body) = get_text(&agora, &artifact_path(&module, "v1.0.0", "info"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("invalid go-import meta tags"), "{body}");
    let log = agora.stderr_log();
    assert!(
        log.contains(r#"invalid subdirectory \"/go\": leading slash"#)
            || log.contains(r#"invalid subdirectory "/go": leading slash"#),
        "{log}"
    );
}

/// `.info` built from git carries the go command's `Origin` (VCS, URL, Hash, Ref, TagPrefix,
/// TagSum) for a tag, a commit, a branch and `@latest` (tagged, untagged, and a `/v2` module
/// without tags, which has none); never a credential;
/// a version's cached `.info` keeps only what the version itself depends on; and Go 1.23 reads
/// such answers. Before: `.info` had only `Version` and `Time`.
#[test]
fn private_info_carries_the_go_commands_origin() {
    const H: &str = "gitlab-origin.corp.example";
    let tagged = format!("{H}/team/lib");
    let untagged_module = format!("{H}/team/fresh");
    let host = GitHost::new().host(H);
    let mut repo = host.repo(&tagged);
    repo.write("go.mod", format!("module {tagged}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n");
    repo.commit("one");
    repo.tag("v1.0.0");
    repo.write("two.go", "package lib\n");
    repo.commit("two");
    repo.annotated_tag("v1.1.0", "annotated");
    repo.write("three.go", "package lib\n");
    let commit = repo.commit("three");
    repo.write("four.go", "package lib\n");
    repo.commit("four");
    repo.branch("feature");
    repo.checkout("feature");
    repo.write("feature.go", "package lib\n");
    repo.commit("feature");
    repo.checkout("main");
    let mut fresh = host.repo(&untagged_module);
    fresh
        .write("go.mod", format!("module {untagged_module}\n"))
        .write("f.go", "package fresh\n");
    fresh.commit("only");
    let major_module = format!("{H}/team/major/v2");
    let mut major = host.repo(&format!("{H}/team/major"));
    major
        .write("go.mod", format!("module {major_module}\n"))
        .write("m.go", "package major\n");
    major.commit("only");

    let srv = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_get(agora_testkit::gitserver::GoGetMode::Correct)
        .start();
    let direct = srv.configure_go(GoClient::find());
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "");
    let agora = private_agora(tmp.path(), &config, "off", &[]);

    let short = &commit[..12];
    // The branch first: its version's cached .info must not keep the branch's ref.
    for query in ["feature", "v1.0.0", "v1.1.0", short, "main", "latest"] {
        let d = direct
            .mod_download("direct", &format!("{tagged}@{query}"))
            .unwrap();
        assert_same_info(&agora, &tagged, query, &d);
    }
    let d = direct
        .mod_download("direct", &format!("{untagged_module}@latest"))
        .unwrap();
    assert_eq!(d.origin.as_ref().unwrap()["Ref"], "HEAD");
    assert_same_info(&agora, &untagged_module, "latest", &d);
    // A /v2 module's pseudo-version depends on its `v2.` tags, its version list on all tags: the
    // go command then gives no origin at all.
    let d = direct
        .mod_download("direct", &format!("{major_module}@latest"))
        .unwrap();
    assert_eq!(d.origin, None);
    assert_same_info(&agora, &major_module, "latest", &d);

    // What a version's .info says once cached: a pseudo-version its commit, a tag its tag, never
    // the branch or tag list that resolved it.
    let feature = direct
        .mod_download("direct", &format!("{tagged}@feature"))
        .unwrap();
    let pseudo = feature.version.unwrap();
    let cached = info(&agora, &artifact_path(&tagged, &pseudo, "info"));
    let origin = cached["Origin"].as_object().unwrap();
    let mut keys: Vec<&str> = origin.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["Hash", "URL", "VCS"], "{cached}");
    assert_eq!(origin["URL"], format!("https://{H}/team/lib.git"));
    let v110 = info(&agora, &artifact_path(&tagged, "v1.1.0", "info"));
    assert_eq!(v110["Origin"]["Ref"], "refs/tags/v1.1.0");
    assert!(v110["Origin"].get("TagSum").is_none(), "{v110}");

    // Go 1.23 accepts .info with an Origin.
    let old = go_via(GoClient::oldest(), &agora);
    for query in ["v1.1.0", "feature", "latest"] {
        let q = format!("{tagged}@{query}");
        let a = old
            .mod_download(agora.url(), &q)
            .unwrap_or_else(|e| panic!("Go 1.23 via agora {q}: {e}"));
        let d = direct.mod_download("direct", &q).unwrap();
        assert_eq!((&a.version, &a.sum), (&d.version, &d.sum), "{q}");
    }
    let log = agora.stderr_log();
    assert!(!log.contains(srv.token()));
}
