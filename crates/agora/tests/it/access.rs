//! Who may fetch what: HTTPS with a private CA, tokens from `agora token` sent by the real go
//! command from `.netrc`, access rules per module path, revocation without restart, TLS-only
//! credentials behind trusted proxies, certificate reload, and the audit log.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_testkit::fixtures::{BIG, GREET, MIXED_CASE};
use agora_testkit::gitserver::TestCa;
use agora_testkit::{http, Agora, GoClient};

use crate::support::*;

fn token_cmd(file: &Path, args: &[&str]) -> (bool, String) {
    let mut all: Vec<std::ffi::OsString> = vec!["token".into()];
    all.extend(args.iter().map(Into::into));
    all.extend(["--file".into(), file.as_os_str().to_owned()]);
    agora_cmd(all)
}

/// A CA and a certificate for 127.0.0.1, copied to `dir/cert.pem` and `dir/key.pem` (agora reads
/// these paths; tests overwrite them to rotate the certificate).
fn issue_cert(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf) {
    let cert = ca.issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(cert.cert_path(), &c).unwrap();
    std::fs::copy(cert.key_path(), &k).unwrap();
    (c, k)
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ca: TestCa,
    tokens: PathBuf,
    audit: PathBuf,
    alice: String,
    bob: String,
    agora: Agora,
}

/// agora over HTTP and HTTPS with: greet readable by the `payments` group only (403 for others),
/// MixedCase hidden from everyone but `payments` (404), everything else open to anyone. greet is
/// also a private module fetched straight from git.
fn setup(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let ca = TestCa::new("agora test CA");
    let (cert, key) = issue_cert(&ca, &dir);
    let tokens = dir.join("tokens.toml");
    let alice = token_add(&tokens, "alice", &["payments"]);
    let bob = token_add(&tokens, "bob", &[]);
    let audit = dir.join("audit.log");
    let config = dir.join("agora.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[routing]
private = ["{GREET}"]

[tls]
listen = "127.0.0.1:0"
cert_file = {cert:?}
key_file = {key:?}
reload_interval = "200ms"

[auth]
tokens_file = {tokens:?}
reload_interval = "200ms"

[access]
default = ["anyone"]

[[access.rules]]
pattern = "{GREET}"
allow = ["payments"]

[[access.rules]]
pattern = "{MIXED_CASE}"
allow = ["payments"]
on_deny = "not_found"

[audit]
file = {audit:?}
{extra}"#
        ),
    )
    .unwrap();
    let up = upstream();
    let agora = builder(&dir.join("data"), &up.url())
        .arg("--config")
        .arg(&config)
        .env("GIT_CONFIG_GLOBAL", world().host.gitconfig_path())
        .start();
    // The upstream must outlive the test: leak it with the setup.
    std::mem::forget(up);
    Setup {
        _tmp: tmp,
        dir,
        ca,
        tokens,
        audit,
        alice,
        bob,
        agora,
    }
}

/// A go client that trusts the test CA and sends `user`'s token from `.netrc` (none if `None`).
///
/// Go 1.23 matches a `.netrc` machine against the request's `Host`, port included, so the line
/// names `127.0.0.1:PORT` (later Go versions also accept the bare host; on port 443 both agree).
fn go_with(s: &Setup, token: Option<(&str, &str)>) -> GoClient {
    let host = s
        .agora
        .https_url()
        .trim_start_matches("https://")
        .to_owned();
    let go = go_client()
        .trust_ca(s.ca.cert_path())
        .env("GOSUMDB", "off")
        .env("GOFLAGS", "-modcacherw");
    match token {
        Some((user, secret)) => {
            go.netrc(&format!("machine {host} login {user} password {secret}\n"))
        }
        None => go,
    }
}

fn https_get(s: &Setup, path: &str, token: Option<&str>) -> (u16, http::HeaderMap, String) {
    let url = format!("{}{path}", s.agora.https_url());
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let (st, h, body) = http::get_with_ca(&url, &s.ca.cert_path(), &headers);
    (st, h, http::text(&body))
}

fn audit_lines(s: &Setup) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&s.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

#[test]
fn go_client_with_netrc_over_https_and_rules_per_path() {
    let s = setup("");
    let proxy = s.agora.https_url();
    let greet = format!("{GREET}@v1.1.0");
    let mixed = format!("{MIXED_CASE}@v1.0.0");

    // alice (payments): the private module from git and the hidden one, with go's own hashes.
    let alice = go_with(&s, Some(("alice", &s.alice)));
    for q in [&greet, &mixed] {
        let got = alice
            .mod_download(&proxy, q)
            .unwrap_or_else(|e| panic!("alice {q}: {e}"));
        let want = &world().baseline[q.as_str()];
        assert_eq!(got.sum, want.sum, "{q}");
        assert_eq!(got.go_mod_sum, want.go_mod_sum, "{q}");
    }

    // bob (no group): 403 naming the rule for greet; MixedCase looks like it does not exist.
    let bob = go_with(&s, Some(("bob", &s.bob)));
    let err = bob.mod_download(&proxy, &greet).unwrap_err().to_string();
    assert!(
        err.contains("403") && err.contains("bob may not read"),
        "{err}"
    );
    let err = bob.mod_download(&proxy, &mixed).unwrap_err().to_string();
    assert!(err.contains("404") || err.contains("not found"), "{err}");
    // (Not just "403": the proxy's random port may contain those digits.)
    assert!(
        !err.contains("403 Forbidden") && !err.contains("may not"),
        "{err}"
    );

    // No credentials: asked for a token (401) on the restricted path; public modules are open.
    let anon = go_with(&s, None);
    let err = anon.mod_download(&proxy, &greet).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("needs a token"),
        "{err}"
    );
    anon.mod_download(&proxy, &format!("{BIG}@v1.0.0"))
        .expect("public module, anonymous client");
    let (st, headers, _) = https_get(&s, &format!("/{GREET}/@v/list"), None);
    assert_eq!(st, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));

    // A wrong token is refused, never treated as anonymous.
    let (st, _, body) = https_get(&s, &format!("/{BIG}/@v/list"), Some("agora_not-a-token"));
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("unknown or revoked token"), "{body}");

    // No leak of the hidden module through listings or lookups for bob: the answer says no
    // more than the request did.
    let escaped = agora_gomod::module::escape_path(MIXED_CASE).unwrap();
    for (path, what) in [
        (format!("/{escaped}/@v/list"), MIXED_CASE.to_owned()),
        (format!("/{escaped}/@latest"), MIXED_CASE.to_owned()),
        (artifact_path(MIXED_CASE, "v1.0.0", "info"), mixed.clone()),
    ] {
        let (st, headers, body) = https_get(&s, &path, Some(&s.bob));
        assert_eq!(st, 404, "{path}: {body}");
        assert_eq!(body, format!("not found: {what}\n"), "{path}");
        assert!(headers.get("x-agora-cache").is_none(), "{path}");
        assert!(headers.get("etag").is_none(), "{path}");
    }

    // The audit trail: restricted and private paths only, with who, what and the outcome.
    let lines = audit_lines(&s);
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l["module"] != BIG),
        "public modules are not audited: {lines:?}"
    );
    let find = |client: &str, module: &str, status: u16| {
        lines
            .iter()
            .find(|l| l["client"] == client && l["module"] == module && l["status"] == status)
    };
    let ok = find("alice", GREET, 200).expect("alice's fetch of greet is audited");
    assert_eq!(ok["event"], "fetch");
    assert_eq!(ok["result"], "ok");
    assert_eq!(ok["ip"], "127.0.0.1");
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines
        .iter()
        .any(|l| l["client"] == "alice" && l["request"] == "zip" && l["version"] == "v1.1.0"));
    assert_eq!(
        find("bob", GREET, 403).expect("bob's refusal")["result"],
        "denied"
    );
    assert!(find("bob", MIXED_CASE, 404).is_some());
    assert!(find("anonymous", GREET, 401).is_some());
    let text = std::fs::read_to_string(&s.audit).unwrap();
    assert!(!text.contains(&s.alice) && !text.contains(&s.bob));
}

/// Regression: a refusal hidden behind a 404 (`on_deny = "not_found"`) was audited as
/// `"result": "not_found"`, exactly like a real miss, so an auditor could not see anyone probing
/// for protected modules. It is a denial marked `"hidden": true` in the audit log, and the client
/// still gets the plain 404 a miss gets.
#[test]
fn hidden_denials_are_audited_as_denials() {
    let s = setup("");
    let mixed_info = artifact_path(MIXED_CASE, "v1.0.0", "info");
    let escaped = agora_gomod::module::escape_path(MIXED_CASE).unwrap();
    let mixed_list = format!("/{escaped}/@v/list");

    // Wrong group and anonymous: a plain "not found", nothing about a rule.
    for (token, path) in [(Some(s.bob.as_str()), &mixed_info), (None, &mixed_list)] {
        let (st, _, body) = https_get(&s, path, token);
        assert_eq!(st, 404, "{path}: {body}");
        assert!(
            body.starts_with("not found: ") && !body.contains("rule") && !body.contains("denied"),
            "{path}: {body}"
        );
    }
    // A real miss of the same module, by a client allowed to read it.
    let (st, _, body) = https_get(
        &s,
        &artifact_path(MIXED_CASE, "v9.9.9", "info"),
        Some(&s.alice),
    );
    assert_eq!(st, 404, "{body}");
    // A refusal the client is told about.
    let (st, _, body) = https_get(&s, &artifact_path(GREET, "v1.1.0", "info"), Some(&s.bob));
    assert_eq!(st, 403, "{body}");

    let lines = audit_lines(&s);
    let find = |client: &str, module: &str, version: Option<&str>| {
        lines
            .iter()
            .find(|l| {
                l["client"] == client && l["module"] == module && l["version"].as_str() == version
            })
            .unwrap_or_else(|| panic!("no audit line for {client} {module}: {lines:?}"))
    };
    for probe in [
        find("bob", MIXED_CASE, Some("v1.0.0")),
        find("anonymous", MIXED_CASE, None),
    ] {
        assert_eq!(probe["status"], 404, "{probe}");
        assert_eq!(probe["result"], "denied", "{probe}");
        assert_eq!(probe["hidden"], true, "{probe}");
    }
    let miss = find("alice", MIXED_CASE, Some("v9.9.9"));
    assert_eq!(miss["status"], 404, "{miss}");
    assert_eq!(miss["result"], "not_found", "{miss}");
    assert!(miss["hidden"].is_null(), "{miss}");
    let shown = find("bob", GREET, Some("v1.1.0"));
    assert_eq!(shown["result"], "denied", "{shown}");
    assert_eq!(shown["hidden"], false, "{shown}");
}

#[test]
fn revoked_token_stops_working_without_restart() {
    let s = setup("");
    let path = artifact_path(GREET, "v1.1.0", "info");
    assert_eq!(https_get(&s, &path, Some(&s.alice)).0, 200);

    let (ok, out) = token_cmd(&s.tokens, &["list"]);
    assert!(
        ok && out.contains("alice") && out.contains("payments"),
        "{out}"
    );
    assert!(!out.contains(&s.alice) && !out.contains("sha256:"), "{out}");
    let (ok, out) = token_cmd(&s.tokens, &["revoke", "alice"]);
    assert!(ok, "{out}");
    let (ok, out) = token_cmd(&s.tokens, &["revoke", "alice"]);
    assert!(!ok, "revoking twice must fail: {out}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _, body) = https_get(&s, &path, Some(&s.alice));
        if st == 401 {
            assert!(body.contains("unknown or revoked token"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {st} 10 s after revocation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A token issued now works at once (same mechanism), and bob is unaffected.
    let carol = token_add(&s.tokens, "carol", &["payments"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while https_get(&s, &path, Some(&carol)).0 != 200 {
        assert!(Instant::now() < deadline, "new token not accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(https_get(&s, &path, Some(&s.bob)).0, 403);
    // The tokens file never holds a secret.
    let file = std::fs::read_to_string(&s.tokens).unwrap();
    assert!(!file.contains(&carol) && !file.contains(&s.bob), "{file}");
}

#[test]
fn credentials_need_tls_unless_a_trusted_proxy_vouches() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    let alice = token_add(&tokens, "alice", &["payments"]);
    let run = |trusted: &str| {
        let config = tmp.path().join(format!("agora-{}.toml", trusted.len()));
        std::fs::write(
            &config,
            format!(
                "[auth]\ntokens_file = {tokens:?}\nrequire_tls = true\n[server]\ntrusted_proxies = [{trusted}]\n[access]\ndefault = [\"payments\"]\n"
            ),
        )
        .unwrap();
        builder(
            &tmp.path().join(format!("data-{}", trusted.len())),
            &upstream_url(),
        )
        .arg("--config")
        .arg(&config)
        .start()
    };
    let path = artifact_path(GREET, "v1.1.0", "info");
    let bearer = format!("Bearer {alice}");

    // Nobody trusted: X-Forwarded-Proto from the loopback peer is ignored.
    let untrusting = run("");
    let url = format!("{}{path}", untrusting.url());
    let (st, _, body) = http::get_with(&url, &[("authorization", &bearer)]);
    assert_eq!(st, 403, "{}", http::text(&body));
    assert!(http::text(&body).contains("must be sent over HTTPS"));
    let (st, _, _) = http::get_with(
        &url,
        &[("authorization", &bearer), ("x-forwarded-proto", "https")],
    );
    assert_eq!(st, 403, "a spoofed X-Forwarded-Proto must not count");
    assert_eq!(
        http::get(&url).0,
        401,
        "no credentials, default needs payments"
    );

    let trusting = run("\"127.0.0.1/32\"");
    let url = format!("{}{path}", trusting.url());
    let (st, _, body) = http::get_with(
        &url,
        &[
            ("authorization", &bearer),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    );
    assert_eq!(st, 200, "{}", http::text(&body));
    let (st, _, _) = http::get_with(&url, &[("authorization", &bearer)]);
    assert_eq!(st, 403, "plain HTTP without the proxy's word");
    // The audit log (main log here) names the client the proxy reported.
    let log = trusting.stderr_log();
    assert!(
        log.contains("203.0.113.9") && log.contains("agora::audit"),
        "{log}"
    );
}

fn upstream_url() -> String {
    let up = upstream();
    let url = up.url();
    std::mem::forget(up);
    url
}

#[test]
fn certificate_rotation_on_sighup_and_on_change() {
    let s = setup("");
    let path = format!("/{BIG}/@v/list");
    assert_eq!(https_get(&s, &path, None).0, 200);

    // A certificate from another CA: clients trusting only that CA fail until agora reloads.
    let ca2 = TestCa::new("agora rotated CA");
    let staged = s.dir.join("staged");
    std::fs::create_dir_all(&staged).unwrap();
    let (c2, k2) = issue_cert(&ca2, &staged);
    let url = format!("{}{path}", s.agora.https_url());
    assert!(http::try_request_with_ca("GET", &url, &ca2.cert_path(), &[], None).is_err());
    // Key first, then certificate: a half-written pair must not take agora down.
    std::fs::copy(&k2, s.dir.join("key.pem")).unwrap();
    std::fs::copy(&c2, s.dir.join("cert.pem")).unwrap();
    s.agora.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((st, _, _)) = http::try_request_with_ca("GET", &url, &ca2.cert_path(), &[], None)
        {
            assert_eq!(st, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated certificate never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken key is refused; the current certificate stays in service.
    std::fs::write(s.dir.join("key.pem"), "not a key").unwrap();
    s.agora.hangup();
    std::thread::sleep(Duration::from_millis(600));
    let (st, _, _) = http::try_request_with_ca("GET", &url, &ca2.cert_path(), &[], None).unwrap();
    assert_eq!(st, 200);
    assert!(s.agora.stderr_log().contains("reload failed"));
}

/// Regression: a rule on `git.corp.test/team/secret` (hidden with `not_found`) was walked around
/// by naming the same repository another way: `secret.git`, another case, a `go-import` vanity
/// path or a `[[git.rules]]` alias answered 200 with the protected source for anonymous clients,
/// from git and from the cache alike. Rules protect the repository whatever path reaches it.
#[test]
fn access_rules_protect_the_repository_under_every_name() {
    const H: &str = "git.corp.test";
    const ALIAS: &str = "alias.corp.test";
    let host = agora_testkit::GitHost::new().host(H);
    for name in ["secret", "open"] {
        let mut r = host.repo(&format!("{H}/team/{name}"));
        r.write("go.mod", format!("module {H}/team/{name}\n\ngo 1.21\n"))
            .write(
                &format!("{name}.go"),
                format!("package {name}\n\n// Token is confidential.\nconst Token = \"{name}\"\n"),
            );
        r.commit(name);
        r.tag("v1.0.0");
    }
    let srv = agora_testkit::HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_import(
            &format!("{H}/vanity/secret"),
            &format!("{H}/vanity/secret git https://{H}/team/secret.git"),
        )
        .start();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.toml");
    let alice = token_add(&tokens, "alice", &["payments"]);
    let audit = dir.join("audit.log");
    let extra = format!(
        r#"
[[git.rules]]
pattern = "{ALIAS}/*"
url = "https://{H}/team/{{path}}.git"

[auth]
tokens_file = {tokens:?}

[[access.rules]]
pattern = "{H}/team/secret"
allow = ["payments"]
on_deny = "not_found"

[audit]
file = {audit:?}
"#
    );
    let config = gitlab_config(dir, &srv, &[H, ALIAS], &extra);
    let agora = private_agora(dir, &config, "off", &[]);
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let (st, h, body) = http::get_with(&format!("{}{path}", agora.url()), &headers);
        (st, h, http::text(&body))
    };

    // Every name of the protected repository, and what each request asks of it.
    let names = [
        format!("{H}/team/secret.git"),
        format!("{H}/!team/!secret.git"),
        format!("{H}/vanity/secret"),
        format!("{ALIAS}/secret"),
    ];
    let requests = |name: &str| {
        [
            format!("/{name}/@v/list"),
            format!("/{name}/@latest"),
            format!("/{name}/@v/master.info"),
            format!("/{name}/@v/v1.0.0.info"),
            format!("/{name}/@v/v1.0.0.zip"),
        ]
    };
    // alice may read it under any name; what she fetches is cached, and must stay protected.
    for name in &names {
        let (st, _, body) = get(&format!("/{name}/@v/list"), Some(&alice));
        assert_eq!(st, 200, "alice {name}: {body}\n{}", agora.stderr_log());
        assert_eq!(body, "v1.0.0\n", "alice {name}");
    }
    let (st, _, body) = get(&format!("/{H}/team/secret.git/@v/v1.0.0.zip"), Some(&alice));
    assert_eq!(st, 200, "{body}");

    for name in &names {
        for path in requests(name) {
            let (st, headers, body) = get(&path, None);
            assert_eq!(st, 404, "anonymous {path} must look missing: {body}");
            assert!(
                body.starts_with("not found: ") && !body.contains("Token"),
                "{path}: {body}"
            );
            assert!(headers.get("x-agora-cache").is_none(), "{path}");
        }
    }
    // The checks refuse only the protected repository: another on the same host stays open.
    let (st, _, body) = get(&format!("/{H}/team/open.git/@v/v1.0.0.info"), None);
    assert_eq!(st, 200, "{body}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in [format!("{H}/team/secret.git"), format!("{ALIAS}/secret")] {
        assert!(
            lines.iter().any(|l| l["client"] == "anonymous"
                && l["module"] == name
                && l["status"] == 404
                && l["result"] == "denied"
                && l["hidden"] == true),
            "anonymous probes of {name} are audited as hidden denials: {lines:?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l["client"] == "anonymous" && l["module"] == name && l["status"] == 200),
            "{name}: {lines:?}"
        );
    }
}

/// Writes `contents` to `path` readable by its owner only, as a token file should be.
fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// GOAUTH (Go 1.24+): the go command gets its token from `agora auth`, with no `.netrc`. A
/// wrapper records every call (arguments, the answer the go command passes on stdin, the exit
/// status), so the go command's second call after a refusal is checked too; without GOAUTH the
/// go command reports agora's 401 and says how to send a token.
#[test]
fn goauth_command_hands_the_go_command_its_token() {
    let s = setup("");
    let proxy = s.agora.https_url();
    let greet = format!("{GREET}@v1.1.0");
    let log = s.dir.join("goauth.log");
    let wrapper = s.dir.join("goauth.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             echo \"call: $*\" >> {log:?}\n\
             input=$(cat)\n\
             printf '%s\\n' \"$input\" | sed 's/^/stdin: /' >> {log:?}\n\
             printf '%s\\n' \"$input\" | {agora:?} auth \"$@\" 2>> {log:?}\n\
             status=$?\n\
             echo \"exit: $status\" >> {log:?}\n\
             exit $status\n",
            agora = agora_bin(),
        ),
    )
    .unwrap();
    let calls = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_file(&log).ok();
        text
    };
    let goauth = |extra: &str| format!("/bin/sh {} {extra}", wrapper.display());

    // alice's token from a file: the private module, with the go command's own hashes.
    let alice_file = s.dir.join("alice.token");
    write_secret(&alice_file, &format!("{}\n", s.alice));
    let alice = go_with(&s, None).env(
        "GOAUTH",
        goauth(&format!(
            "--url {proxy} --token-file {}",
            alice_file.display()
        )),
    );
    let got = alice
        .mod_download(&proxy, &greet)
        .unwrap_or_else(|e| panic!("alice {greet}: {e}\n{}", calls()));
    let want = &world().baseline[greet.as_str()];
    assert_eq!(got.sum, want.sum);
    assert_eq!(got.go_mod_sum, want.go_mod_sum);
    let text = calls();
    assert!(text.starts_with("call: --url"), "{text}");
    assert!(
        !text.contains(&s.alice),
        "a token on a command line: {text}"
    );
    assert!(!text.contains("exit: 1"), "{text}");
    assert!(
        audit_lines(&s)
            .iter()
            .any(|l| l["client"] == "alice" && l["module"] == GREET && l["status"] == 200),
        "the fetch was alice's"
    );

    // bob's token from the environment: valid but not allowed, so the go command calls again
    // with the refused URL and agora's answer, and reports the 403.
    let bob = go_with(&s, None)
        .env("GOAUTH", goauth(""))
        .env("AGORA_URL", &proxy)
        .env("AGORA_TOKEN", &s.bob);
    let err = bob.mod_download(&proxy, &greet).unwrap_err().to_string();
    assert!(
        err.contains("403") && err.contains("bob may not read"),
        "{err}"
    );
    let text = calls();
    assert!(!text.contains(&s.bob), "a token on a command line: {text}");
    let second = format!("call: {proxy}/{GREET}/@v/v1.1.0.info");
    assert!(text.contains(&second), "no second call: {text}");
    assert!(
        text.contains("stdin: HTTP/") && text.contains(" 403 "),
        "{text}"
    );
    assert!(
        text.contains("exit: 0") && !text.contains("exit: 1"),
        "{text}"
    );

    // A token agora does not know: refused (401, `invalid_token` in the challenge the second
    // call sees), never treated as anonymous.
    let wrong = s.dir.join("wrong.token");
    write_secret(&wrong, "agora_not-a-token\n");
    let go = go_with(&s, None).env(
        "GOAUTH",
        goauth(&format!("--url {proxy} --token-file {}", wrong.display())),
    );
    let err = go.mod_download(&proxy, &greet).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("unknown or revoked token"),
        "{err}"
    );
    let text = calls();
    assert!(text.contains("error=\"invalid_token\""), "{text}");

    // No token anywhere: `agora auth` fails with a message (the go command shows it with -x
    // only) and the go command goes on without one, into agora's 401.
    let go = go_with(&s, None).env("GOAUTH", goauth(&format!("--url {proxy}")));
    let err = go.mod_download(&proxy, &greet).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("needs a token"),
        "{err}"
    );
    let text = calls();
    assert!(
        text.contains("no agora token") && text.contains("exit: 1"),
        "{text}"
    );

    // Without GOAUTH (and no .netrc): a clear 401 that says how to send a token.
    let err = go_with(&s, None)
        .mod_download(&proxy, &greet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401 Unauthorized") && err.contains("needs a token") && err.contains("GOAUTH"),
        "{err}"
    );
    // The challenge names both schemes agora accepts.
    let (st, headers, _) = https_get(&s, &format!("/{GREET}/@v/list"), None);
    assert_eq!(st, 401);
    let challenges: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        challenges.contains(&"Bearer realm=\"agora\"")
            && challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );

    let log = std::fs::read_to_string(&s.audit).unwrap();
    assert!(!log.contains(&s.alice) && !log.contains(&s.bob));
    assert!(!s.agora.stderr_log().contains(&s.alice));
}
