//! Secrets stay secret: after a run that uses every kind of secret agora holds (git credentials,
//! client tokens, an upstream password, a webhook password) on success and failure paths with
//! debug logging, none of them appears in logs, the audit trail, responses, `config show`,
//! `doctor`, `/metrics` or the tokens file.

use agora_testkit::fixtures::GREET;
use agora_testkit::{http, GitHost, HttpsGitServer, WebhookServer};
use base64::Engine as _;

use crate::support::*;

const H: &str = "gitlab-secrets.corp.example";
const UPSTREAM_PASSWORD: &str = "upstream-pw-5f1c0e9b";
const HOOK_PASSWORD: &str = "hook-pw-93ad71c2";
const WRONG_TOKEN: &str = "agora_wrongTOKENwrongTOKENwrongTOKENwrong123";

#[test]
fn no_secret_appears_anywhere_after_a_run() {
    let host = GitHost::new().host(H);
    let repo = format!("{H}/team/lib");
    let mut r = host.repo(&repo);
    r.write("go.mod", format!("module {repo}\n\ngo 1.21\n"));
    r.commit("one");
    r.tag("v1.0.0");
    let srv = HttpsGitServer::serve(&host, H);
    let up = upstream();
    let hook = WebhookServer::start();
    hook.set(|c| {
        if c["version"] == "v1.2.0-rc.1" {
            agora_testkit::Verdict::Deny("pre-releases are not allowed".into())
        } else {
            agora_testkit::Verdict::Allow
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    let out = std::process::Command::new(agora_bin())
        .args(["token", "add", "alice", "-g", "team", "--file"])
        .arg(&tokens)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let alice = printed
        .split_whitespace()
        .find(|w| w.starts_with("agora_"))
        .unwrap()
        .to_owned();
    let upstream_url =
        up.url()
            .replacen("http://", &format!("http://mirror:{UPSTREAM_PASSWORD}@"), 1);
    let hook_url = hook
        .url()
        .replacen("http://", &format!("http://hook:{HOOK_PASSWORD}@"), 1);
    let audit = tmp.path().join("audit.log");
    let config = tmp.path().join("agora.toml");
    std::fs::write(
        &config,
        format!(
            r#"ca_file = {ca:?}
[upstream]
proxy = {upstream_url:?}
[routing]
private = ["{H}"]
[[git.credentials]]
host = "{H}"
username = {user:?}
password = {token:?}
[auth]
tokens_file = {tokens:?}
[access]
default = ["authenticated"]
[validation]
url = {hook_url:?}
[audit]
file = {audit:?}
"#,
            ca = srv.ca_cert().display().to_string(),
            user = srv.user(),
            token = srv.token(),
        ),
    )
    .unwrap();
    let empty_gitconfig = tmp.path().join("empty.gitconfig");
    std::fs::write(&empty_gitconfig, "").unwrap();
    let agora = builder(&tmp.path().join("data"), &upstream_url)
        .arg("--config")
        .arg(&config)
        .env("GIT_CONFIG_GLOBAL", &empty_gitconfig)
        .env("AGORA_LOG_LEVEL", "debug")
        .start();

    let mut seen = String::new();
    let mut call = |path: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let (st, h, body) = http::get_with(&format!("{}{path}", agora.url()), &headers);
        seen.push_str(&format!("{path} {st}\n"));
        for (k, v) in &h {
            seen.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        seen.push_str(&http::text(&body));
        st
    };
    let bearer = format!("Bearer {alice}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{alice}"))
    );
    let wrong = format!("Bearer {WRONG_TOKEN}");
    // Private module from git: success, missing version, missing repository.
    for ext in ["info", "mod", "zip"] {
        assert_eq!(
            call(&artifact_path(&repo, "v1.0.0", ext), Some(&basic)),
            200
        );
    }
    assert_eq!(
        call(&artifact_path(&repo, "v9.0.0", "info"), Some(&bearer)),
        404
    );
    assert_eq!(
        call(&format!("/{H}/team/nothing/@v/list"), Some(&bearer)),
        404
    );
    // Public modules through the password-protected upstream: success, refusal by the webhook,
    // a module the upstream does not have.
    assert_eq!(
        call(&artifact_path(GREET, "v1.1.0", "mod"), Some(&bearer)),
        200
    );
    assert_eq!(
        call(&artifact_path(GREET, "v1.2.0-rc.1", "mod"), Some(&bearer)),
        403
    );
    assert_eq!(
        call("/github.com/agora-fixtures/absent/@v/list", Some(&bearer)),
        404
    );
    // Refused credentials: a wrong token, a malformed header, none at all.
    assert_eq!(
        call(&artifact_path(&repo, "v1.0.0", "info"), Some(&wrong)),
        401
    );
    assert_eq!(
        call(
            &artifact_path(&repo, "v1.0.0", "info"),
            Some(&format!("Basic {WRONG_TOKEN}"))
        ),
        401
    );
    assert_eq!(call(&artifact_path(&repo, "v1.0.0", "info"), None), 401);
    assert_eq!(call("/metrics", None), 200);
    // The upstream failing (an error answer that names the upstream URL).
    up.set_fault(agora_testkit::Fault::Status(500));
    assert!(call(&artifact_path(GREET, "v1.0.0", "mod"), Some(&bearer)) >= 500);
    up.clear_faults();
    // The git server refusing agora's credentials is covered by the private tests; here the
    // doctor runs the whole chain once with debug output.
    let run = |args: &[&str]| {
        let out = std::process::Command::new(agora_bin())
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("GIT_CONFIG_GLOBAL", &empty_gitconfig)
            .env("AGORA_LOG_LEVEL", "debug")
            .env_remove("GOPROXY")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let shown = run(&["config", "show"]);
    assert!(shown.contains("[validation]"), "{shown}");
    let doctor_ok = run(&["doctor", &format!("{repo}@v1.0.0")]);
    assert!(doctor_ok.contains("verdict: OK"), "{doctor_ok}");
    let doctor_bad = run(&["doctor", &format!("{H}/team/nothing@v1.0.0")]);

    let everything = [
        ("responses", seen),
        ("stderr log", agora.stderr_log()),
        ("stdout log", agora.stdout_log()),
        ("audit log", std::fs::read_to_string(&audit).unwrap()),
        ("config show", shown),
        ("doctor", doctor_ok),
        ("doctor (failing)", doctor_bad),
        ("tokens file", std::fs::read_to_string(&tokens).unwrap()),
    ];
    let secrets = [
        ("git token", srv.token().to_owned()),
        ("upstream password", UPSTREAM_PASSWORD.to_owned()),
        ("webhook password", HOOK_PASSWORD.to_owned()),
        ("client token", alice.clone()),
        ("wrong client token", WRONG_TOKEN.to_owned()),
    ];
    for (where_, text) in &everything {
        assert!(!text.is_empty(), "{where_} is empty: the test saw nothing");
        for (what, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} found in {where_}:\n{text}"
            );
        }
    }
    // The run did exercise the paths it claims to.
    let audit_text = &everything[3].1;
    assert!(audit_text.contains("\"client\":\"alice\"") && audit_text.contains("\"status\":401"));
}
