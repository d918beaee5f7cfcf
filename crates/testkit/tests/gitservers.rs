//! The git servers of `agora_testkit::gitserver`, checked with real git and the real go command.
//!
//! Each HTTPS test uses its own host name, so they run in parallel (see the gitserver module docs).

use std::path::Path;
use std::process::Output;

use agora_testkit::git::git_command;
use agora_testkit::gitserver::{GoGetMode, RequestKind, TestCa, HOSTS_FILE};
use agora_testkit::{http, GitHost, GoClient, HttpsGitServer, SshGitServer};
use base64::Engine as _;

/// Creates repository `repo_path` (e.g. `host/team/lib`) with `module` in its go.mod, tagged v1.0.0.
fn lib_repo(host: &GitHost, repo_path: &str, module: &str) -> String {
    let mut r = host.repo(repo_path);
    r.write("go.mod", format!("module {module}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n\n// X is exported.\nconst X = 1\n");
    let c = r.commit("lib");
    r.tag("v1.0.0");
    c
}

fn basic(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

/// `git <args>` with an isolated configuration plus `env`.
fn git(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut cmd = git_command(Path::new("/"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run git")
}

/// The go command over HTTPS: works with the CA and the .netrc, and fails without the .netrc, with a
/// wrong token, and with the wrong CA; the server records what happened.
#[test]
fn https_server_needs_credentials_and_the_private_ca() {
    const H: &str = "gitlab-auth.corp.example";
    let host = GitHost::new().host(H);
    let commit = lib_repo(&host, &format!("{H}/team/lib"), &format!("{H}/team/lib"));
    let srv = HttpsGitServer::serve(&host, H);
    let module = format!("{H}/team/lib");
    let query = format!("{module}@v1.0.0");

    let hosts = std::fs::read_to_string(HOSTS_FILE).unwrap();
    let lines: Vec<&str> = hosts
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == H))
        .collect();
    assert_eq!(lines, [format!("{} {H} # agora-testkit", srv.ip())]);

    // Right CA and .netrc: works, and every step is visible in the server's log.
    let go = srv.configure_go(GoClient::find());
    let dl = go.mod_download("direct", &query).unwrap();
    assert_eq!(dl.version.as_deref(), Some("v1.0.0"));
    assert_eq!(dl.origin.as_ref().unwrap()["Hash"], commit.as_str());
    assert_eq!(
        dl.origin.as_ref().unwrap()["URL"],
        format!("https://{H}/team/lib.git")
    );
    let reqs = srv.requests();
    let go_get = reqs.iter().find(|r| r.kind == RequestKind::GoGet).unwrap();
    assert_eq!(go_get.path, "/team/lib");
    assert_eq!(go_get.query, "go-get=1");
    assert!(
        go_get.authenticated,
        "the go command sends .netrc credentials with ?go-get=1: {go_get:?}"
    );
    // git asks anonymously first, then with the .netrc credentials.
    let refs: Vec<_> = reqs
        .iter()
        .filter(|r| r.kind == RequestKind::InfoRefs)
        .collect();
    assert_eq!((refs[0].status, refs[0].user.as_deref()), (401, None));
    assert_eq!(
        (refs[1].status, refs[1].user.as_deref()),
        (200, Some(srv.user()))
    );
    assert_eq!(srv.count(RequestKind::InfoRefs, "team/lib.git"), refs.len());
    assert!(srv.fetches("team/lib") >= 1, "{reqs:#?}");
    assert!(
        reqs.iter()
            .filter(|r| r.kind == RequestKind::UploadPack)
            .all(|r| r.command.is_some()),
        "protocol v2: {reqs:#?}"
    );
    assert_eq!(srv.tls_handshake_failures(), 0);

    // No .netrc: git cannot authenticate (and must not prompt).
    srv.reset_requests();
    let err = GoClient::find()
        .trust_ca(srv.ca_cert())
        .mod_download("direct", &query)
        .unwrap_err();
    assert!(err.message().contains("terminal prompts disabled"), "{err}");
    assert!(srv
        .requests()
        .iter()
        .any(|r| r.kind == RequestKind::InfoRefs && r.status == 401));
    assert_eq!(srv.fetches("team/lib"), 0);

    // A wrong token: refused, and the user name (only) is recorded.
    srv.reset_requests();
    let err = GoClient::find()
        .trust_ca(srv.ca_cert())
        .netrc(&srv.netrc_for(srv.user(), "glpat-wrong"))
        .mod_download("direct", &query)
        .unwrap_err();
    // git falls back to prompting once the .netrc password is refused: same message as above, the
    // server's log tells the two apart.
    assert!(err.message().contains("terminal prompts disabled"), "{err}");
    assert!(srv
        .requests()
        .iter()
        .any(|r| r.user.as_deref() == Some(srv.user()) && !r.authenticated && r.status == 401));

    // A CA that did not sign the server's certificate: the TLS handshake fails.
    let other = TestCa::new("some other CA");
    let err = GoClient::find()
        .trust_ca(other.cert_path())
        .netrc(&srv.netrc())
        .mod_download("direct", &query)
        .unwrap_err();
    assert!(
        err.message()
            .contains("certificate signed by unknown authority"),
        "{err}"
    );
    // And with the machine's CA bundle (no trust_ca), just the same.
    let err = GoClient::find()
        .netrc(&srv.netrc())
        .mod_download("direct", &query)
        .unwrap_err();
    assert!(err.message().contains("x509"), "{err}");
    assert!(srv.tls_handshake_failures() >= 2);
}

/// `?go-get=1` answers in every mode, basic auth on git endpoints, and what a wrong (GitLab-style
/// anonymous) answer does to the go command.
#[test]
fn https_server_go_get_answers() {
    const H: &str = "gitlab-goget.corp.example";
    let host = GitHost::new().host(H);
    lib_repo(
        &host,
        &format!("{H}/team/sub/deep"),
        &format!("{H}/team/sub/deep"),
    );
    let srv = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_import(
            &format!("{H}/special"),
            &format!("{H}/special git https://elsewhere.example/special.git"),
        )
        .start();
    let ca = srv.ca_cert();
    let auth = basic(srv.user(), srv.token());
    let meta = |path: &str, headers: &[(&str, &str)]| {
        let (status, hdrs, body) =
            http::get_with_ca(&format!("https://{H}/{path}?go-get=1"), &ca, headers);
        if status != 200 {
            return format!("status {status}");
        }
        assert_eq!(hdrs["content-type"], "text/html; charset=utf-8");
        let body = http::text(&body);
        let start = body.find("content=\"").expect("a go-import meta tag") + 9;
        body[start..start + body[start..].find('"').unwrap()].to_string()
    };

    // GitLab mode (the default): anonymous callers get the first two elements, wrong for subgroups.
    assert_eq!(
        meta("team/sub/deep", &[]),
        format!("{H}/team/sub git https://{H}/team/sub.git")
    );
    let right = format!("{H}/team/sub/deep git https://{H}/team/sub/deep.git");
    assert_eq!(meta("team/sub/deep", &[("Authorization", &auth)]), right);
    assert_eq!(
        meta("team/sub/deep/pkg/x", &[("Authorization", &auth)]),
        right
    );
    assert_eq!(
        meta("special/pkg", &[]),
        format!("{H}/special git https://elsewhere.example/special.git")
    );
    srv.set_go_get(GoGetMode::Correct);
    assert_eq!(meta("team/sub/deep", &[]), right);
    assert_eq!(meta("team/nothing", &[]), "status 404");
    srv.set_go_get(GoGetMode::NotFound);
    assert_eq!(
        meta("team/sub/deep", &[("Authorization", &auth)]),
        "status 404"
    );

    // Git endpoints need the credentials; the ref advertisement is git's.
    let refs = format!("https://{H}/team/sub/deep.git/info/refs?service=git-upload-pack");
    let (status, headers, _) = http::get_with_ca(&refs, &ca, &[]);
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"GitLab\"");
    let (status, headers, body) = http::get_with_ca(&refs, &ca, &[("Authorization", &auth)]);
    assert_eq!(status, 200, "{}\n{}", http::text(&body), srv.cgi_stderr());
    assert_eq!(
        headers["content-type"],
        "application/x-git-upload-pack-advertisement"
    );
    assert!(http::text(&body).contains("refs/tags/v1.0.0"));
    let (status, _, _) = http::get_with_ca(
        &format!("https://{H}/team/nothing.git/info/refs?service=git-upload-pack"),
        &ca,
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 404);
    // A client that does not trust the CA cannot even connect.
    let other = TestCa::new("not the server's CA");
    assert!(http::try_request_with_ca("GET", &refs, &other.cert_path(), &[], None).is_err());

    // git itself: ls-remote fetches no pack, clone fetches one.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".netrc"), srv.netrc()).unwrap();
    let env = [
        ("HOME", home.path().as_os_str()),
        ("GIT_SSL_CAINFO", ca.as_os_str()),
    ];
    srv.reset_requests();
    let out = git(&["ls-remote", &srv.repo_url("team/sub/deep")], &env);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("refs/tags/v1.0.0"));
    assert_eq!(srv.fetches("team/sub/deep"), 0, "{:#?}", srv.requests());
    let clone_dir = home.path().join("clone");
    let out = git(
        &[
            "clone",
            "-q",
            &srv.repo_url("team/sub/deep"),
            clone_dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(srv.fetches("team/sub/deep"), 1, "{:#?}", srv.requests());

    // The go command with the right credentials but a GitLab-style wrong answer: it looks for the
    // module in team/sub, which does not exist.
    srv.set_go_get(GoGetMode::FirstTwoElements);
    let go = srv.configure_go(GoClient::find());
    let err = go
        .mod_download("direct", &format!("{H}/team/sub/deep@v1.0.0"))
        .unwrap_err();
    assert!(err.message().contains(&format!("{H}/team/sub")), "{err}");
    // With the correct answer it works.
    srv.set_go_get(GoGetMode::GitLab);
    let dl = go
        .mod_download("direct", &format!("{H}/team/sub/deep@v1.0.0"))
        .unwrap();
    assert_eq!(dl.version.as_deref(), Some("v1.0.0"));
}

/// sshd with key authentication: git and the go command with the right key, refusals otherwise.
#[test]
fn ssh_server_serves_git_to_the_right_key_only() {
    let host = GitHost::new();
    let alias = agora_testkit::gitserver::DEFAULT_SSH_HOST;
    host.add_host(alias);
    let module = format!("{alias}/team/tool.git");
    let commit = lib_repo(&host, &format!("{alias}/team/tool"), &module);
    let srv = SshGitServer::serve(&host, alias);

    // git ls-remote with the authorized key, then with another one.
    let ok_cmd = srv.ssh_command();
    let out = git(
        &["ls-remote", &srv.repo_url("team/tool")],
        &[("GIT_SSH_COMMAND", ok_cmd.as_ref())],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.sshd_log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{commit}\trefs/tags/v1.0.0")));
    let wrong = format!("ssh -F {}", srv.wrong_key_ssh_config().display());
    let out = git(
        &["ls-remote", &srv.repo_url("team/tool")],
        &[("GIT_SSH_COMMAND", wrong.as_ref())],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The gitconfig alone (core.sshCommand) works for git too.
    let cfg = srv.gitconfig_path();
    let out = git(
        &["ls-remote", &format!("https://{alias}/team/tool")],
        &[("GIT_CONFIG_GLOBAL", cfg.as_os_str())],
    );
    assert!(
        out.status.success(),
        "insteadOf + core.sshCommand: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = srv.requests();
    assert!(
        reqs.iter()
            .all(|r| r.command == "git-upload-pack '/team/tool.git'"
                || r.command == "git-upload-pack '/team/tool'"),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().all(|r| r.git_protocol == "version=2"),
        "{reqs:?}"
    );

    // The go command: a .git module path, rewritten to ssh:// by the gitconfig.
    srv.reset_requests();
    let go = srv.configure_go(GoClient::find());
    let dl = go
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .unwrap();
    assert_eq!(dl.version.as_deref(), Some("v1.0.0"));
    assert_eq!(dl.origin.as_ref().unwrap()["Hash"], commit.as_str());
    let latest = go.list_m("direct", &[&format!("{module}@latest")]).unwrap();
    assert_eq!(latest.version.as_deref(), Some("v1.0.0"));
    assert!(!srv.requests().is_empty());
    let err = go
        .mod_download("direct", &format!("{alias}/team/nope.git@v1.0.0"))
        .unwrap_err();
    // For .git paths go probes each secure scheme (https via the rewrite, then git+ssh and ssh).
    assert!(
        err.message()
            .contains("no secure protocol found for repository"),
        "{err}"
    );
    assert!(srv
        .requests()
        .iter()
        .any(|r| r.command.contains("/team/nope")));

    // Go 1.27 leaves GIT_SSH_COMMAND alone, so git's core.sshCommand (the sandbox's) applies.
    srv.configure_go(GoClient::find())
        .env_remove("GIT_SSH_COMMAND")
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .unwrap();

    // The trap of older clients: without GIT_SSH_COMMAND Go 1.23 sets its own, which beats
    // core.sshCommand, and ssh then reads the passwd home's ~/.ssh/config, which does not know
    // the alias.
    srv.reset_requests();
    let err = srv
        .configure_go(GoClient::oldest())
        .env_remove("GIT_SSH_COMMAND")
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .unwrap_err();
    assert!(
        err.message()
            .contains("no secure protocol found for repository"),
        "{err}"
    );
    assert!(srv.requests().is_empty(), "{:?}", srv.requests());
}

/// A go-import answer from the HTTPS server that points at the SSH server.
#[test]
fn go_import_can_point_at_the_ssh_server() {
    const H: &str = "gitlab-meta.corp.example";
    let alias = agora_testkit::gitserver::DEFAULT_SSH_HOST;
    let host = GitHost::new().host(H).host(alias);
    let module = format!("{H}/team/tool");
    let commit = lib_repo(&host, &format!("{alias}/team/tool"), &module);
    let ssh = SshGitServer::serve(&host, alias);
    let https = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_import(
            &module,
            &format!("{module} git {}", ssh.repo_url("team/tool")),
        )
        .start();
    let go = ssh.configure_go(https.configure_go(GoClient::find()));
    let dl = go
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .unwrap();
    assert_eq!(dl.origin.as_ref().unwrap()["Hash"], commit.as_str());
    assert_eq!(
        dl.origin.as_ref().unwrap()["URL"],
        format!("ssh://{alias}/team/tool.git")
    );
    assert_eq!(
        https
            .requests()
            .iter()
            .filter(|r| r.kind == RequestKind::GoGet)
            .count(),
        1
    );
    assert!(!ssh.requests().is_empty());
}

/// Dropping a server frees its host name and address at once.
#[test]
fn https_server_restarts_on_the_same_name() {
    const H: &str = "gitlab-restart.corp.example";
    let host = GitHost::new().host(H);
    let first = HttpsGitServer::serve(&host, H);
    let ip = first.ip();
    drop(first);
    let mut second = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .no_auth()
        .start();
    assert_eq!(second.ip(), ip);
    let (status, _, _) =
        http::get_with_ca(&format!("https://{H}/x/y?go-get=1"), &second.ca_cert(), &[]);
    assert_eq!(status, 200);
    second.stop();
    assert!(std::net::TcpStream::connect((ip, 443)).is_err());
}
