//! SHA-256 git repositories (`git init --object-format=sha256`, 64-digit object names): agora
//! serves them over the HTTPS git server as the go command computes them straight from git.

use std::collections::BTreeMap;

use agora_testkit::git::{format_utc, pseudo_timestamp};
use agora_testkit::{http, Agora, GitHost, GoClient, HttpsGitServer, ModDownload, SshGitServer};

use crate::support::*;

const H: &str = "gitlab-sha256.corp.example";

fn go_via(agora: &Agora) -> GoClient {
    GoClient::find()
        .env("GONOSUMDB", "*.corp.example")
        .env("GOSUMDB", "off")
        .env("GOPROXY", agora.url())
}

/// What a client learns from one `go mod download -json` answer: the version, the `.info` time,
/// the h1 sums of the zip and the go.mod, or the error.
fn outcome(d: &ModDownload) -> String {
    if let Some(e) = &d.error {
        return format!("error: {e}");
    }
    let info: serde_json::Value = serde_json::from_slice(&d.info_bytes()).unwrap();
    format!(
        "{} time={} zip={} mod={}",
        d.version.as_deref().unwrap_or("-"),
        info["Time"].as_str().unwrap_or("-"),
        d.sum.as_deref().unwrap_or("-"),
        d.go_mod_sum.as_deref().unwrap_or("-"),
    )
}

#[test]
fn a_sha256_repository_is_served_like_the_go_command_serves_it() {
    let host = GitHost::new().host(H);
    let module = format!("{H}/team/lib");
    let v2 = format!("{module}/v2");
    let mut repo = host.repo_with_object_format(&module, "sha256");
    // The root LICENSE goes into the zip of the v2 module in its subdirectory too.
    repo.write("go.mod", format!("module {module}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n")
        .write("LICENSE", "Permission is granted.\n");
    let first = repo.commit("one");
    assert_eq!(first.len(), 64, "a SHA-256 repository: {first}");
    repo.tag("v1.0.0");
    repo.write("more.go", "package lib\n");
    repo.commit("two");
    repo.annotated_tag("v1.1.0", "release v1.1.0");
    // Major version 2 in a subdirectory of the same branch.
    repo.write("v2/go.mod", format!("module {v2}\n\ngo 1.21\n"))
        .write("v2/lib.go", "package lib\n");
    repo.commit("v2");
    repo.tag("v2.0.0");
    repo.git(["checkout", "-q", "-b", "feature"]);
    repo.write("feature.go", "package lib\n");
    let feature = repo.commit("feature");
    repo.checkout("main");
    repo.write("untagged.go", "package lib\n");
    let untagged = repo.commit("untagged");

    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "");
    let trace = tmp.path().join("git-trace.log");
    let agora = private_agora(
        tmp.path(),
        &config,
        "off",
        &[("GIT_TRACE", trace.clone().into_os_string())],
    );

    // The first request makes the mirror: in git's default format (SHA-1), then, as the fetch
    // fails before any object is sent, in the remote's. One pack is downloaded.
    let (status, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(&module, "v1.0.0", "info")
    ));
    assert_eq!(status, 200, "{}\n{}", http::text(&body), agora.stderr_log());
    let traced = std::fs::read_to_string(&trace).unwrap();
    let inits: Vec<&str> = traced
        .lines()
        .filter(|l| l.contains("built-in: git init"))
        .collect();
    assert_eq!(inits.len(), 2, "{traced}");
    assert!(inits[1].contains("--object-format=sha256"), "{traced}");
    assert_eq!(srv.fetches("team/lib"), 1, "{:?}", srv.requests());

    let direct = srv.configure_go(GoClient::find());
    let via = go_via(&agora);

    let mut queries: Vec<String> = [
        "v1.0.0",
        "v1.1.0",
        "feature",
        "main",
        "latest",
        &untagged[..7],
        &untagged[..12],
        // A prefix here, not a complete SHA-1 name.
        &untagged[..40],
        untagged.as_str(),
        &feature[..40],
        &first[..40],
        first.as_str(),
    ]
    .iter()
    .map(|q| format!("{module}@{q}"))
    .collect();
    queries.extend(["v2.0.0", "latest"].map(|q| format!("{v2}@{q}")));

    let answers = |go: &GoClient, goproxy: &str| -> BTreeMap<String, String> {
        let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
        let got = go
            .mod_download_many(goproxy, &refs)
            .unwrap_or_else(|e| panic!("go mod download via {goproxy}: {e}"));
        queries
            .iter()
            .cloned()
            .zip(got.iter().map(outcome))
            .collect()
    };
    let want = answers(&direct, "direct");
    // The go command itself resolves every query here: the comparison is not of two failures.
    for (q, a) in &want {
        assert!(!a.starts_with("error"), "the go command: {q}: {a}");
    }
    let pseudo = want[&format!("{module}@{}", &untagged[..12])].clone();
    assert!(
        pseudo.starts_with("v1.1.1-0.") && pseudo.contains(&format!("-{} ", &untagged[..12])),
        "a pseudo-version with the hash's first 12 digits: {pseudo}"
    );
    let pseudo_version = pseudo.split(' ').next().unwrap().to_owned();
    let mut want = want;
    let mut got = answers(&via, agora.url());
    // The pseudo-version itself, asked for by name.
    let q = format!("{module}@{pseudo_version}");
    for (map, go, goproxy) in [
        (&mut want, &direct, "direct"),
        (&mut got, &via, agora.url()),
    ] {
        let d = go.mod_download(goproxy, &q);
        map.insert(
            q.clone(),
            d.map_or_else(|e| format!("error: {e}"), |d| outcome(&d)),
        );
    }
    let diff: Vec<String> = want
        .iter()
        .filter(|(q, a)| got.get(*q) != Some(a))
        .map(|(q, a)| format!("{q}:\n  go:    {a}\n  agora: {:?}", got.get(q)))
        .collect();
    assert!(
        diff.is_empty(),
        "agora's answers differ from the go command's (GOPROXY=direct):\n{}\nagora log:\n{}",
        diff.join("\n"),
        agora.stderr_log()
    );

    // The version lists (`@v/list`) and `@latest`, which a go client only asks for when a
    // module has no tagged versions: asked directly.
    for (m, versions) in [(&module, "v1.0.0 v1.1.0"), (&v2, "v2.0.0")] {
        let go_list = direct.list_versions("direct", m).unwrap();
        assert_eq!(go_list.versions.join(" "), versions, "the go command: {m}");
        let agora_list = via.list_versions(agora.url(), m).unwrap();
        assert_eq!(agora_list.versions, go_list.versions, "{m}");

        let go_latest = direct.list_m("direct", &[&format!("{m}@latest")]).unwrap();
        let (status, _, body) = http::get(&format!("{}/{m}/@latest", agora.url()));
        assert_eq!(status, 200, "{m}/@latest: {}", http::text(&body));
        let latest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            latest["Version"].as_str(),
            go_latest.version.as_deref(),
            "{m}"
        );
        assert_eq!(latest["Time"].as_str(), go_latest.time.as_deref(), "{m}");
    }
}

/// Over SSH with git's protocol v0, which does not name the remote's object format when it
/// differs ("Server does not support this repository's object format"): the mirror is still
/// made in the right one. The answers are checked against the commits themselves; the test
/// above compares with the go command.
#[test]
fn a_sha256_repository_over_ssh_with_protocol_v0() {
    const SSH: &str = "gitlab-ssh-sha256.corp.example";
    let host = GitHost::new().host(SSH);
    let module = format!("{SSH}/team/lib");
    let mut repo = host.repo_with_object_format(&module, "sha256");
    repo.write("go.mod", format!("module {module}\n\ngo 1.21\n"));
    let tagged = repo.commit("one");
    repo.tag("v1.0.0");
    let time = repo.next_time();
    let untagged = repo.commit("two");

    let ssh = SshGitServer::serve(&host, SSH);
    let tmp = tempfile::tempdir().unwrap();
    let v0 = tmp.path().join("v0.gitconfig");
    std::fs::write(&v0, "[protocol]\n\tversion = 0\n").unwrap();
    let config = tmp.path().join("agora.toml");
    std::fs::write(
        &config,
        format!(
            "[routing]\nprivate = [{SSH:?}]\n\n[[git.rules]]\npattern = \"{SSH}/*/*\"\nurl = \"ssh://{SSH}/{{path}}.git\"\n"
        ),
    )
    .unwrap();
    let mut env = ssh.ssh_env();
    env.push(("GIT_CONFIG_GLOBAL", v0.into_os_string()));
    let agora = private_agora(tmp.path(), &config, "off", &env);

    let pseudo = format!("v1.0.1-0.{}-{}", pseudo_timestamp(time), &untagged[..12]);
    for (query, version) in [
        ("v1.0.0", "v1.0.0"),
        (tagged.as_str(), "v1.0.0"),
        (&untagged[..40], pseudo.as_str()),
        (untagged.as_str(), pseudo.as_str()),
        (pseudo.as_str(), pseudo.as_str()),
    ] {
        let (status, _, body) = http::get(&format!(
            "{}{}",
            agora.url(),
            artifact_path(&module, query, "info")
        ));
        assert_eq!(
            status,
            200,
            "{query}: {}\n{}",
            http::text(&body),
            agora.stderr_log()
        );
        let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(info["Version"].as_str(), Some(version), "{query}");
        if version == pseudo {
            assert_eq!(info["Time"].as_str(), Some(format_utc(time).as_str()));
        }
    }
    let (status, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(&module, &pseudo, "zip")
    ));
    assert_eq!(status, 200, "{}", http::text(&body));
    let requests = ssh.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.git_protocol.is_empty()),
        "protocol v0 only: {requests:?}"
    );
}
