//! Resolution over real HTTP (a tiny local server standing in for vanity hosts and a git HTTP
//! host), and credentials: sent where they belong, never shown in errors.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_vcs::{
    HostCredential, Mirrors, ResolveFailure, ResolvedBy, Resolver, ResolverOptions, Vcs, VcsOptions,
};
use base64::Engine as _;

/// Requests seen by the server: request line and the Authorization header, if any.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn meta(content: &str) -> String {
    format!(
        "<html><head><meta name=\"go-import\" content=\"{content}\"></head><body>\
         <meta name=\"go-import\" content=\"ignored git https://x\"></body></html>"
    )
}

/// Serves canned answers on 127.0.0.1; returns the base URL and the request log.
fn serve() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut auth = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_owned());
                    }
                }
            }
            let target = line.split(' ').nth(1).unwrap_or("").to_owned();
            seen.lock().unwrap().push((line.trim().to_owned(), auth));
            let (status, extra, body) = match target.as_str() {
                "/meta.example/a/b?go-get=1" | "/meta.example/a?go-get=1" => (
                    "200 OK",
                    "",
                    meta("meta.example/a git https://git.example/a.git"),
                ),
                "/bad.example/x/y?go-get=1" => (
                    "200 OK",
                    "",
                    meta("bad.example/x git https://git.example/x.git"),
                ),
                "/bad.example/x?go-get=1" => (
                    "200 OK",
                    "",
                    meta("bad.example/x git https://elsewhere/x.git"),
                ),
                "/proxy.example/m?go-get=1" => (
                    "200 OK",
                    "",
                    meta("proxy.example/m mod https://proxy.example"),
                ),
                "/sub.example/m?go-get=1" => (
                    "200 OK",
                    "",
                    meta("sub.example/m git https://git.example/mono.git ./go/"),
                ),
                "/badsub.example/m?go-get=1" => (
                    "200 OK",
                    "",
                    meta("badsub.example/m git https://git.example/mono.git -go"),
                ),
                "/plain.example/p?go-get=1" => ("200 OK", "", "<html>no tags</html>".to_owned()),
                "/err404.example/p?go-get=1" => (
                    "404 Not Found",
                    "",
                    meta("err404.example/p git https://git.example/p.git"),
                ),
                t if t.starts_with("/auth.example/") || t.starts_with("/o/r/") => (
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"x\"\r\n",
                    String::new(),
                ),
                _ => ("404 Not Found", "", String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}Content-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, log)
}

fn secret_cred(host: &str, secret: &str) -> HostCredential {
    HostCredential {
        host: host.to_owned(),
        username: Some("robot".into()),
        password: Some(secret.into()),
        ssh_key: None,
    }
}

#[tokio::test]
async fn meta_tags_over_http() {
    let (base, log) = serve();
    let resolver = Resolver::new(ResolverOptions {
        credentials: vec![secret_cred("auth.example", "SECRET-META")],
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap()
    .with_meta_base_for_tests(&base);

    // A deeper path: the prefix page is fetched too and must agree.
    let r = resolver.resolve("meta.example/a/b").await.unwrap();
    assert_eq!(r.root, "meta.example/a");
    assert_eq!(r.url, "https://git.example/a.git");
    assert_eq!(
        r.by,
        ResolvedBy::GoImport {
            meta_url: format!("{base}/meta.example/a/b?go-get=1")
        }
    );
    let fail = |module: &'static str| {
        let resolver = &resolver;
        async move { resolver.resolve(module).await.unwrap_err() }
    };
    let e = fail("bad.example/x/y").await;
    assert_eq!(e.resolve_failure(), Some(ResolveFailure::BadMeta), "{e}");
    let e = fail("proxy.example/m").await;
    assert_eq!(
        e.resolve_failure(),
        Some(ResolveFailure::Unsupported),
        "{e}"
    );
    // Go 1.25's subdirectory field, cleaned as the go command joins it; a leading `-` or `/` is
    // refused in the go command's words.
    let r = resolver.resolve("sub.example/m").await.unwrap();
    assert_eq!(
        (r.url.as_str(), r.subdir.as_str()),
        ("https://git.example/mono.git", "go")
    );
    let e = fail("badsub.example/m").await;
    assert_eq!(e.resolve_failure(), Some(ResolveFailure::BadMeta), "{e}");
    assert!(
        e.to_string()
            .contains("invalid subdirectory \"-go\": leading hyphen"),
        "{e}"
    );
    let e = fail("plain.example/p").await;
    assert_eq!(e.resolve_failure(), Some(ResolveFailure::NotFound), "{e}");
    assert!(e.is_not_found());
    // Tags on an error page still count, as in the go command.
    let r = resolver.resolve("err404.example/p").await.unwrap();
    assert_eq!(r.url, "https://git.example/p.git");
    let e = fail("nothing.example/p").await;
    assert_eq!(e.resolve_failure(), Some(ResolveFailure::NotFound), "{e}");

    // Credentials go to their host only, and never into the message.
    let e = fail("auth.example/p").await;
    assert_eq!(e.resolve_failure(), Some(ResolveFailure::AuthFailed), "{e}");
    assert!(!format!("{e} {e:?}").contains("SECRET"), "{e}");
    let log = log.lock().unwrap();
    for (line, auth) in log.iter() {
        let want = line.contains("/auth.example/").then(|| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("robot:SECRET-META")
            )
        });
        assert_eq!(auth, &want, "{line}");
    }
}

#[tokio::test]
async fn git_gets_credentials_through_the_environment() {
    let (base, log) = serve();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    let secret = "SECRET-GIT";
    let tmp = tempfile::tempdir().unwrap();
    let mirrors =
        Mirrors::new(tmp.path(), Duration::ZERO).with_credentials(vec![secret_cred(&host, secret)]);
    let e = mirrors.open(&format!("{base}/o/r")).await.unwrap_err();
    assert_eq!(
        e.git_failure(),
        Some(agora_vcs::GitFailure::AuthFailed),
        "{e}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("robot:{secret}"));
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(secret) && !shown.contains(&basic),
        "{shown}"
    );
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(line, auth)| line.contains("/o/r/info/refs")
                && auth.as_deref() == Some(&format!("Basic {basic}"))),
        "{seen:?}"
    );

    // Another host's mirror gets nothing.
    let other = Mirrors::new(tmp.path(), Duration::ZERO)
        .with_credentials(vec![secret_cred("elsewhere.example", secret)]);
    log.lock().unwrap().clear();
    let _ = other.open(&format!("{base}/o/r")).await.unwrap_err();
    assert!(log.lock().unwrap().iter().all(|(_, a)| a.is_none()));

    // credential_source describes without revealing.
    let vcs = Vcs::new(VcsOptions {
        mirror_dir: tmp.path().join("m"),
        refresh_interval: Duration::ZERO,
        first_fetch: Default::default(),
        resolver: ResolverOptions {
            credentials: vec![
                secret_cred(&host, secret),
                HostCredential {
                    host: "ssh.example".into(),
                    username: None,
                    password: None,
                    ssh_key: Some("/keys/id_ed25519".into()),
                },
            ],
            ..Default::default()
        },
    })
    .unwrap();
    let src = vcs.credential_source(&format!("{base}/o/r"));
    assert_eq!(src, format!("agora config: username+password for {host}"));
    assert!(vcs
        .credential_source("ssh://git@ssh.example/g/p.git")
        .contains("SSH key /keys/id_ed25519"));
    assert!(vcs
        .credential_source("git@other.example:g/p.git")
        .starts_with("system ssh"));
    let e = vcs.ls_remote(&format!("{base}/o/r")).await.unwrap_err();
    assert!(!e.to_string().contains(secret));
}
