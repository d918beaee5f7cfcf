//! The web UI in a real browser (Debian's chromium, headless, driven over WebDriver by
//! chromedriver): every page, search as you type, a requirement link, quarantine by an admin
//! with the go client refused afterwards, and a protected module invisible to an anonymous
//! viewer. Plus what a browser hides: the security headers, CSRF refusals, hostile go.mod text
//! escaped, a hidden module's page byte for byte the one of a missing module.
//!
//! With `UI_SCREENSHOTS=DIR` the browser test saves the main pages as PNGs there (the
//! README's pictures come from `docs/ui`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_testkit::fixtures::GREET;
use agora_testkit::{free_port, http, Agora, GitHost, HttpsGitServer};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::*;

const H: &str = "git.corp.test";
/// What a hostile go.mod comment tries: script injection through the deprecation message.
const HOSTILE: &str = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";

struct Setup {
    _tmp: tempfile::TempDir,
    _srv: HttpsGitServer,
    /// The repositories: they must outlive the test (doctor reads them anew).
    _host: GitHost,
    agora: Agora,
    admin: String,
    dev: String,
    app: String,
    secret: String,
}

/// A private module `app` (two versions, requiring greet, deprecated with a hostile message, MIT
/// licensed) and a protected one `secret` (readable by `payments`, hidden from others), both from
/// git over HTTPS; greet from the upstream. All cached before the test looks.
fn setup() -> Setup {
    let host = GitHost::new().host(H);
    let app = format!("{H}/team/app");
    let mut repo = host.repo(&app);
    repo.write(
        "go.mod",
        format!(
            "// Deprecated: use {H}/team/app2 instead. {HOSTILE}\nmodule {app}\n\ngo 1.21\n\nrequire {GREET} v1.1.0\n"
        ),
    )
    .write("app.go", "package app\n")
    .write(
        "LICENSE",
        "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n",
    );
    repo.commit("one");
    repo.tag("v1.0.0");
    repo.write(
        "app.go",
        "package app\n\n// Two is the second version.\nconst Two = 2\n",
    );
    repo.commit("two");
    repo.tag("v1.1.0");
    let secret = format!("{H}/team/secret");
    let mut s = host.repo(&secret);
    s.write("go.mod", format!("module {secret}\n\ngo 1.21\n"))
        .write("secret.go", "package secret\n");
    s.commit("one");
    s.tag("v1.0.0");
    let srv = HttpsGitServer::serve(&host, H);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.toml");
    let admin = token_add(&tokens, "ops", &["admin", "payments"]);
    let dev = token_add(&tokens, "dev", &["payments"]);
    let extra = format!(
        r#"
[index]
sync_interval = "200ms"

[auth]
tokens_file = {tokens:?}

[[access.rules]]
pattern = "{secret}"
allow = ["payments"]
on_deny = "not_found"
"#
    );
    let config = gitlab_config(dir, &srv, &[H], &extra);
    let up = upstream();
    let agora = private_agora(dir, &config, &up.url(), &[]);
    std::mem::forget(up);
    let bearer = format!("Bearer {admin}");
    for path in [
        artifact_path(&app, "v1.0.0", "info"),
        artifact_path(&app, "v1.0.0", "mod"),
        artifact_path(&app, "v1.1.0", "info"),
        artifact_path(&app, "v1.1.0", "mod"),
        artifact_path(&app, "v1.1.0", "zip"),
        artifact_path(&secret, "v1.0.0", "info"),
        artifact_path(GREET, "v1.1.0", "info"),
        artifact_path(GREET, "v1.1.0", "mod"),
    ] {
        let (s, _, body) = http::get_with(
            &format!("{}{path}", agora.url()),
            &[("Authorization", bearer.as_str())],
        );
        assert_eq!(s, 200, "{path}: {}", http::text(&body));
    }
    // The index records in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_text(&agora, "/index").1.lines().count() < 3 {
        assert!(
            Instant::now() < deadline,
            "the index did not record the fetches"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Setup {
        _tmp: tmp,
        _srv: srv,
        _host: host,
        agora,
        admin,
        dev,
        app,
        secret,
    }
}

fn page(agora: &Agora, path: &str, token: Option<&str>) -> (u16, http::Answer) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let answer = http::get_with(&format!("{}{path}", agora.url()), &headers);
    (answer.0, answer)
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        .to_owned()
}

fn form_post(agora: &Agora, path: &str, token: &str, body: &str, extra: &[(&str, &str)]) -> u16 {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    headers.extend_from_slice(extra);
    http::request(
        "POST",
        &format!("{}{path}", agora.url()),
        &headers,
        Some(body.as_bytes().to_vec()),
    )
    .0
}

#[test]
fn pages_are_escaped_guarded_and_carry_a_strict_policy() {
    let s = setup();
    let agora = &s.agora;

    let (st, (_, headers, body)) = page(agora, &format!("/{}", s.app), None);
    let body = http::text(&body);
    assert_eq!(st, 200, "{body}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // The hostile deprecation message is text, never markup.
    assert!(!body.contains("<script>document"), "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(body.contains("&lt;script&gt;document.title="), "{body}");
    assert!(body.contains("(MIT)"), "the license: {body}");
    assert!(
        body.contains(&format!("{} v1.1.0 h1:", s.app)),
        "go.sum lines: {body}"
    );
    assert!(
        body.contains(&format!("{} v1.1.0/go.mod h1:", s.app)),
        "{body}"
    );
    assert!(
        body.contains(&format!("href=\"/{GREET}\"")),
        "requirement link: {body}"
    );
    assert!(
        !body.contains("name=\"csrf\""),
        "no admin forms for anonymous viewers"
    );

    // A hidden module's page is exactly a missing module's page.
    let (st_hidden, (_, _, hidden)) = page(agora, &format!("/{}", s.secret), None);
    let (st_missing, (_, _, missing)) = page(agora, &format!("/{H}/team/nothing"), None);
    assert_eq!((st_hidden, st_missing), (404, 404));
    assert_eq!(hidden, missing);
    let (st, _) = page(agora, &format!("/{}", s.secret), Some(&s.dev));
    assert_eq!(st, 200, "readable for its group");
    // Search and the feed do not leak it either.
    let (_, (_, _, found)) = page(agora, "/-/search.json?q=team", None);
    let found = http::text(&found);
    assert!(
        found.contains(&s.app) && !found.contains("secret"),
        "{found}"
    );
    let (_, (_, _, found)) = page(agora, "/-/search.json?q=team", Some(&s.dev));
    assert!(http::text(&found).contains("secret"));

    // Status is for admins.
    assert_eq!(page(agora, "/-/status", None).0, 401);
    assert_eq!(page(agora, "/-/status", Some(&s.dev)).0, 403);
    let (st, (_, _, status)) = page(agora, "/-/status", Some(&s.admin));
    let status = http::text(&status);
    assert_eq!(st, 200, "{status}");
    for part in [
        "Recent failures",
        "Retention",
        "Replica lock (Redis)",
        "Quarantined versions",
    ] {
        assert!(status.contains(part), "{part}: {status}");
    }

    // Actions: admin, the form's token, and not from another site.
    let (_, (_, _, admin_page)) = page(agora, &format!("/{}", s.app), Some(&s.admin));
    let csrf = csrf_of(&http::text(&admin_page));
    let form = |csrf: &str| {
        format!(
            "module={}&version=v1.0.0&reason=bad+build&csrf={csrf}",
            s.app.replace('/', "%2F")
        )
    };
    assert_eq!(
        form_post(agora, "/-/ui/quarantine", &s.admin, &form("0000"), &[]),
        403
    );
    assert_eq!(
        form_post(
            agora,
            "/-/ui/quarantine",
            &s.admin,
            &form(&csrf),
            &[("Sec-Fetch-Site", "cross-site")]
        ),
        403
    );
    // A viewer outside the admin group gets no form, and a copied one does not work.
    let (_, (_, _, dev_page)) = page(agora, &format!("/{}", s.app), Some(&s.dev));
    assert!(!http::text(&dev_page).contains("name=\"csrf\""));
    assert_eq!(
        form_post(agora, "/-/ui/quarantine", &s.dev, &form(&csrf), &[]),
        403
    );
    assert_eq!(
        get_text(agora, &artifact_path(&s.app, "v1.0.0", "info")).0,
        200,
        "nothing was quarantined"
    );
    assert_eq!(
        form_post(
            agora,
            "/-/ui/quarantine",
            &s.admin,
            &form(&csrf),
            &[("Sec-Fetch-Site", "same-origin")]
        ),
        303
    );
    assert_eq!(
        get_text(agora, &artifact_path(&s.app, "v1.0.0", "info")).0,
        410
    );

    // doctor from the status page: the report, each step tried for real.
    let target = format!("target={}%40v1.1.0&csrf={csrf}", s.app.replace('/', "%2F"));
    assert_eq!(form_post(agora, "/-/ui/doctor", &s.dev, &target, &[]), 403);
    let auth = format!("Bearer {}", s.admin);
    let (st, _, report) = http::request(
        "POST",
        &format!("{}/-/ui/doctor", agora.url()),
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(target.into_bytes()),
    );
    let report = http::text(&report);
    assert_eq!(st, 200, "{report}");
    assert!(report.contains("verdict: OK"), "{report}");
    assert!(
        report.contains("[2] route") && report.contains("ls-remote"),
        "{report}"
    );
}

/// chromedriver on a free loopback port, and a headless chromium session through it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Browser {
        let driver_bin = std::env::var_os("AGORA_TEST_CHROMEDRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
        assert!(
            driver_bin.exists(),
            "{} not found: run scripts/setup (it installs chromium and chromium-driver)",
            driver_bin.display()
        );
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("AGORA_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1200,1000", "--no-first-run", "--disable-extensions"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls client")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser { driver, client }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn shot(&self, name: &str) {
        let Some(dir) = std::env::var_os("UI_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    async fn wait_for(&self, what: &str, mut ok: impl AsyncFnMut(&Client) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&self.client).await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_browser_searches_follows_requirements_and_an_admin_quarantines() {
    let s = setup();
    let base = s.agora.url().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = Browser::start().await;
        let c = &b.client;

        // Home: how to use this agora, from its own URL and configuration.
        c.goto(&format!("{base}/")).await.unwrap();
        let pre = b.text("main pre").await;
        assert!(pre.contains(&format!("GOPROXY={base}")), "{pre}");
        assert!(pre.contains(&format!("GONOSUMDB={H}")), "{pre}");
        b.shot("home").await;

        // Search as you type: the list redraws without a page load.
        c.goto(&format!("{base}/-/search")).await.unwrap();
        let input = c.find(Locator::Id("q")).await.unwrap();
        input.send_keys("team/").await.unwrap();
        b.wait_for("search results", async |c: &Client| {
            let items = c.find_all(Locator::Css("#results li")).await.unwrap();
            items.len() == 1
        })
        .await;
        let hit = b.text("#results li").await;
        assert!(
            hit.contains(&s.app) && hit.contains("latest v1.1.0"),
            "{hit}"
        );
        assert!(!hit.contains("secret"), "anonymous: {hit}");
        b.shot("search").await;

        // The module page, keyboard reachable, and its requirement link.
        c.find(Locator::Css("#results li a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(b.text("h1").await, s.app);
        let notice = b.text(".notice").await;
        assert!(
            notice.contains("<script>document.title="),
            "shown as text: {notice}"
        );
        assert_ne!(
            c.title().await.unwrap(),
            "pwned",
            "the hostile comment did not run"
        );
        b.shot("module").await;
        c.find(Locator::LinkText(GREET))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(b.text("h1").await, GREET);

        // Anonymous: the protected module is not there.
        c.goto(&format!("{base}/{}", s.secret)).await.unwrap();
        assert_eq!(b.text("h1").await, "Not found");

        // An admin signs in (Basic credentials, as a browser sends them) and quarantines.
        let with_creds = base.replacen("http://", &format!("http://ops:{}@", s.admin), 1);
        c.goto(&format!("{with_creds}/?login")).await.unwrap();
        c.goto(&format!("{base}/{}", s.app)).await.unwrap();
        assert!(b.text("header").await.contains("Signed in as ops"));
        let version = c.find(Locator::Id("qv")).await.unwrap();
        version.clear().await.unwrap();
        version.send_keys("v1.1.0").await.unwrap();
        c.find(Locator::Id("qr"))
            .await
            .unwrap()
            .send_keys("CVE-2026-7777: backdoor in init")
            .await
            .unwrap();
        c.find(Locator::Css("form.inline button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait_for("the quarantine badge", async |c: &Client| {
            match c.find(Locator::Css("#v-v1\\.1\\.0 .badge.bad")).await {
                Ok(e) => e.text().await.unwrap_or_default() == "quarantined",
                Err(_) => false,
            }
        })
        .await;
        c.goto(&format!("{base}/-/status")).await.unwrap();
        let status = b.text("main").await;
        assert!(status.contains("CVE-2026-7777"), "{status}");
        b.shot("status").await;
        c.clone().close().await.unwrap();
    });

    // The go client is refused, with the reason.
    let go = go_client().env("GONOSUMDB", H);
    let err = go
        .mod_download(s.agora.url(), &format!("{}@v1.1.0", s.app))
        .unwrap_err();
    assert!(err.message().contains("410"), "{}", err.message());
    assert!(err.message().contains("CVE-2026-7777"), "{}", err.message());
}

/// The status page's sources and failures: an upstream that fails and a git host that answers
/// show as such, and the failure group gets doctor's verdict on its latest failure, checked in
/// the background once an admin looks.
#[test]
fn the_status_page_shows_source_health_and_doctors_verdict_on_failures() {
    let (host, lib, _repo) = team_lib(H);
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.toml");
    let admin = token_add(&tokens, "ops", &["admin"]);
    let config = gitlab_config(
        dir,
        &srv,
        &[H],
        &format!("[auth]\ntokens_file = {tokens:?}\n"),
    );
    let up = upstream();
    up.set_path_fault(&format!("/{GREET}/@v/"), agora_testkit::Fault::Status(500));
    let agora = private_agora(dir, &config, &up.url(), &[]);

    let (s, _) = page(&agora, &artifact_path(GREET, "v1.0.0", "info"), None);
    assert_eq!(s, 502, "the upstream fails");
    let (s, _) = page(&agora, &artifact_path(&lib, "v1.0.0", "info"), None);
    assert_eq!(s, 200, "git answers");

    let status = |agora: &Agora| {
        let (s, (_, _, body)) = page(agora, "/-/status", Some(&admin));
        assert_eq!(s, 200);
        http::text(&body)
    };
    let body = status(&agora);
    let sources = body
        .split("<h2>Sources</h2>")
        .nth(1)
        .and_then(|r| r.split("<h2>").next())
        .unwrap_or_else(|| panic!("no sources section: {body}"));
    let row_of = |name: &str| {
        sources
            .split("<tr>")
            .find(|r| r.contains(name))
            .unwrap_or_else(|| panic!("no row for {name}: {sources}"))
            .to_owned()
    };
    let upstream_row = row_of(&up.url());
    assert!(upstream_row.contains("failing"), "{upstream_row}");
    assert!(
        upstream_row.contains("500"),
        "the last failure's words: {upstream_row}"
    );
    let git_row = row_of(&format!("<code>{H}</code>"));
    assert!(git_row.contains(">ok<"), "{git_row}");
    assert!(!git_row.contains(srv.token()), "{git_row}");

    // The upstream failure's group: doctor runs for its latest failure in the background.
    assert!(body.contains("<td>upstream</td>"), "{body}");
    assert!(
        body.contains(&format!("name=\"target\" value=\"{GREET}@v1.0.0\"")),
        "a doctor button for the failed version: {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let body = status(&agora);
        if body.contains("still failing") || body.contains("can serve it now") {
            break body;
        }
        assert!(Instant::now() < deadline, "no verdict: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(verdict.contains("still failing"), "{verdict}");
    assert!(
        verdict.contains(&format!("agora doctor {GREET}@v1.0.0")),
        "the report: {verdict}"
    );
    // Doctor ran once for the group, not once per look at the page.
    let doctor_runs = agora
        .stderr_log()
        .matches("running doctor for a failure on the status page")
        .count();
    assert_eq!(doctor_runs, 1, "{}", agora.stderr_log());
}
