//! Per-host credentials from agora's configuration, handed to `git` and to the `?go-get=1`
//! request without ever putting a secret on a command line, in a URL or in a message.
//!
//! - HTTPS: a password or token becomes an `Authorization: Basic …` header scoped to the host
//!   (`http.https://HOST/.extraHeader`), passed as environment configuration
//!   (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`). The environment of a process
//!   is readable only by its user, unlike its arguments, which `ps` shows to everyone.
//! - SSH: a key file becomes `GIT_SSH_COMMAND=ssh -i KEY -o IdentitiesOnly=yes -o BatchMode=yes`.
//!   The environment variable rather than `core.sshCommand`, because git prefers the variable
//!   and the private `git` module always sets it (batch mode).
//!
//! Both apply only to URLs of the credential's host: a mirror has one URL, so its environment is
//! computed once from that URL (see [`crate::Mirrors::with_credentials`]). A `host` with a port
//! (`git.corp.example:8443`) applies to that port only (a URL without a port has its scheme's
//! default one: 443 for https, 80 for http); a `host` without a port applies to every port of
//! that host, as `.netrc` machines do, so on a host that serves several services (`127.0.0.1`)
//! give the port.
//!
//! A configured repository URL (a rule's template, a `go-import` answer) may carry
//! `user:password@`. git would show it on command lines (`git remote-https origin URL`) and keep
//! it in the mirror's `config`, so [`git_remote`] takes the password out of the URL and hands it
//! to git like a configured credential; it wins over a configured credential for the host.
//!
//! Without a configured credential, git falls back to the machine's own setup (credential
//! helpers, `~/.netrc` read by libcurl, `~/.ssh/config`, ssh-agent), and the `?go-get=1` request
//! uses `.netrc` (`$NETRC`, else `$HOME/.netrc`) as the `go` command does.

use agora_secret::Secret;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Credentials for one host, from agora's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCredential {
    /// The host name as it appears in URLs (`gitlab.corp.example`, or `host:port`).
    pub host: String,
    /// The user for HTTPS basic authentication. Defaults to `oauth2` when only a token is given,
    /// which GitLab accepts for every token kind and GitHub and Gitea ignore.
    pub username: Option<String>,
    /// A password or access token for HTTPS (`Debug` shows `***`, so credentials can sit in
    /// logged structures).
    pub password: Option<Secret>,
    /// A private key file for SSH URLs of this host.
    pub ssh_key: Option<PathBuf>,
}

/// The user name sent with a token that was configured without one.
const DEFAULT_TOKEN_USER: &str = "oauth2";

impl HostCredential {
    /// What this credential consists of, for `agora doctor` and logs: never the secret itself.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.username, &self.password) {
            (Some(_), Some(_)) => parts.push("username+password".to_owned()),
            (None, Some(_)) => parts.push("token".to_owned()),
            (Some(u), None) => parts.push(format!("username {u} without password")),
            (None, None) => {}
        }
        if let Some(key) = &self.ssh_key {
            parts.push(format!("SSH key {}", key.display()));
        }
        if parts.is_empty() {
            parts.push("nothing".to_owned());
        }
        format!("agora config: {} for {}", parts.join(", "), self.host)
    }

    /// The basic-auth pair for HTTPS, if a password or token is configured.
    pub(crate) fn basic(&self) -> Option<(String, String)> {
        let password = self.password.as_ref()?.expose().to_owned();
        let user = self
            .username
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_USER.to_owned());
        Some((user, password))
    }
}

/// The scheme class and host (with port, if any) of a repository URL, `None` for local paths
/// and anything unparsable. scp-like `user@host:path` counts as SSH.
pub(crate) fn url_host(url: &str) -> Option<(Transport, String)> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let transport = match scheme {
            "https" | "http" => Transport::Http,
            "ssh" | "git+ssh" => Transport::Ssh,
            "git" => Transport::Git,
            _ => return None,
        };
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return (!host.is_empty()).then(|| (transport, host.to_owned()));
    }
    // scp-like syntax: a colon before any slash.
    let colon = url.find(':')?;
    if url[..colon].contains('/') {
        return None;
    }
    let authority = &url[..colon];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| (Transport::Ssh, host.to_owned()))
}

/// How git talks to a remote, as far as credentials care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Http,
    Ssh,
    Git,
}

/// The host of `host[:port]` (brackets kept for IPv6) and its port, if it has one.
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.starts_with('[') || h.ends_with(']')) =>
        {
            (h, Some(port))
        }
        _ => (host, None),
    }
}

/// Whether a credential's `host` names the URL host `url_host` (which may carry a port; without
/// one, a URL's port is `default_port`). A credential without a port matches every port.
fn host_matches(cred_host: &str, url_host: &str, default_port: Option<&str>) -> bool {
    let cred = cred_host.to_ascii_lowercase();
    let url = url_host.to_ascii_lowercase();
    let (cred_name, cred_port) = split_port(&cred);
    let (url_name, url_port) = split_port(&url);
    cred_name == url_name
        && match cred_port {
            None => true,
            Some(port) => url_port.or(default_port) == Some(port),
        }
}

/// The default port of a URL scheme, for matching credentials that name a port.
fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "https" => Some("443"),
        "http" => Some("80"),
        "ssh" | "git+ssh" => Some("22"),
        "git" => Some("9418"),
        _ => None,
    }
}

/// The configured credential for `host` (as in a URL of `scheme`), first match wins.
pub(crate) fn find<'a>(
    creds: &'a [HostCredential],
    scheme: &str,
    host: &str,
) -> Option<&'a HostCredential> {
    creds
        .iter()
        .find(|c| host_matches(&c.host, host, default_port(scheme)))
}

/// What git is given for a repository URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct GitRemote {
    /// The URL without any password: safe on a command line and in a config file.
    pub url: String,
    /// The environment that hands git the credentials for the URL (see the module docs).
    pub env: Vec<(String, String)>,
}

/// Leaves out the environment, which holds credentials.
impl fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Splits a repository URL into what git may see and how it gets the credentials: a password
/// in the URL (`https://user:password@host/…`) is taken out and becomes the `Authorization`
/// header for the URL's host; otherwise the configured credentials for the host apply
/// ([`git_env`]). A user name without a password stays in the URL (it is no secret, and for SSH
/// it is the account to log in as).
pub(crate) fn git_remote(creds: &[HostCredential], url: &str) -> GitRemote {
    let Some((url, user, password)) = split_password(url) else {
        return GitRemote {
            url: url.to_owned(),
            env: git_env(creds, url),
        };
    };
    let env = match url_host(&url) {
        Some((Transport::Http, host)) => {
            let scheme = url.split_once("://").map_or("https", |(s, _)| s);
            basic_header_env(scheme, &host, &user, &password)
        }
        // ssh and git:// cannot use a password from the URL (ssh never reads it): dropping it
        // loses nothing, and the configured credentials apply as for any URL.
        _ => git_env(creds, &url),
    };
    GitRemote { url, env }
}

/// `(url without the password, user, password)` for a `scheme://user:password@host/…` URL,
/// with user and password percent-decoded as git decodes them; `None` when the URL has no
/// password. For HTTP(S) the user goes too (it travels in the header); other schemes keep it.
fn split_password(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (userinfo, host) = rest[..end].rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let path = &rest[end..];
    let clean = if matches!(scheme, "http" | "https") {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{user}@{host}{path}")
    };
    Some((clean, percent_decode(user), percent_decode(password)))
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map_or_else(|_| s.to_owned(), |d| d.into_owned())
}

/// The environment that makes git send `Authorization: Basic user:password` to `scheme://host/`.
fn basic_header_env(scheme: &str, host: &str, user: &str, password: &str) -> Vec<(String, String)> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    // Entries the operator set this way stay in place; ours come after them.
    let base: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    vec![
        ("GIT_CONFIG_COUNT".to_owned(), (base + 1).to_string()),
        (
            format!("GIT_CONFIG_KEY_{base}"),
            format!("http.{scheme}://{host}/.extraHeader"),
        ),
        (
            format!("GIT_CONFIG_VALUE_{base}"),
            format!("Authorization: Basic {token}"),
        ),
    ]
}

/// The environment that hands the configured credentials for `url`'s host to git. Empty when
/// none applies.
pub(crate) fn git_env(creds: &[HostCredential], url: &str) -> Vec<(String, String)> {
    let Some((transport, host)) = url_host(url) else {
        return Vec::new();
    };
    let scheme = url.split_once("://").map_or("ssh", |(s, _)| s);
    let Some(cred) = find(creds, scheme, &host) else {
        return Vec::new();
    };
    let mut env = Vec::new();
    match transport {
        Transport::Http => {
            if let Some((user, password)) = cred.basic() {
                env = basic_header_env(scheme, &host, &user, &password);
            }
        }
        Transport::Ssh => {
            if let Some(key) = &cred.ssh_key {
                env.push((
                    "GIT_SSH_COMMAND".to_owned(),
                    format!(
                        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o ControlMaster=no",
                        shell_quote(&key.to_string_lossy())
                    ),
                ));
            }
        }
        Transport::Git => {}
    }
    env
}

/// Quotes `s` for the shell that git runs `GIT_SSH_COMMAND` with.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Which credentials git (and the meta request) would use for `url`, in words, never the secret.
pub(crate) fn source(creds: &[HostCredential], url: &str) -> String {
    let Some((transport, host)) = url_host(url) else {
        return "none (local repository)".to_owned();
    };
    if transport == Transport::Http && split_password(url).is_some() {
        return "password in the configured URL (handed to git as a header)".to_owned();
    }
    let scheme = url.split_once("://").map_or("ssh", |(s, _)| s);
    if let Some(cred) = find(creds, scheme, &host) {
        let applies = match transport {
            Transport::Http => cred.password.is_some(),
            Transport::Ssh => cred.ssh_key.is_some(),
            Transport::Git => false,
        };
        if applies {
            return cred.describe();
        }
    }
    match transport {
        Transport::Http => match netrc_lookup(&host) {
            Some((_, _, path)) => format!(".netrc entry for {host} ({})", path.display()),
            None => "none (system git configuration / credential helpers only)".to_owned(),
        },
        Transport::Ssh => format!("system ssh for {host} (~/.ssh/config, ssh-agent, default keys)"),
        Transport::Git => "none (git:// protocol is unauthenticated)".to_owned(),
    }
}

/// The `.netrc` file the `go` command would read: `$NETRC`, else `$HOME/.netrc`.
pub(crate) fn netrc_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETRC") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".netrc"))
}

/// The `.netrc` login and password for `host`, and the file they came from.
pub(crate) fn netrc_lookup(host: &str) -> Option<(String, String, PathBuf)> {
    let path = netrc_path()?;
    let text = std::fs::read_to_string(&path).ok()?;
    parse_netrc(&text)
        .into_iter()
        .find(|(machine, _, _)| machine == host)
        .map(|(_, login, password)| (login, password, path))
}

/// `(machine, login, password)` entries of a `.netrc`, parsed the way cmd/go's `auth/netrc.go`
/// does: line by line in token pairs, `macdef` bodies skipped up to an empty line, and
/// everything from `default` on ignored. Entries lacking a login or password are dropped.
pub(crate) fn parse_netrc(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let (mut machine, mut login, mut password) = (String::new(), String::new(), String::new());
    let mut in_macro = false;
    'lines: for line in text.split('\n') {
        if in_macro {
            if line.is_empty() {
                in_macro = false;
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let mut i = 0;
        while i + 1 < f.len() {
            match f[i] {
                "machine" => {
                    machine = f[i + 1].to_owned();
                    login.clear();
                    password.clear();
                }
                "default" => break 'lines,
                "login" => login = f[i + 1].to_owned(),
                "password" => password = f[i + 1].to_owned(),
                "macdef" => in_macro = true,
                _ => {}
            }
            if !machine.is_empty() && !login.is_empty() && !password.is_empty() {
                out.push((
                    std::mem::take(&mut machine),
                    std::mem::take(&mut login),
                    std::mem::take(&mut password),
                ));
            }
            i += 2;
        }
        if f.get(i) == Some(&"default") {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred() -> HostCredential {
        HostCredential {
            host: "gitlab.corp.example".into(),
            username: Some("bot".into()),
            password: Some("s3cr3t-token".into()),
            ssh_key: Some("/keys/id's".into()),
        }
    }

    #[test]
    fn describe_and_debug_hide_the_secret() {
        let c = cred();
        let d = c.describe();
        assert_eq!(
            d,
            "agora config: username+password, SSH key /keys/id's for gitlab.corp.example"
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let token_only = HostCredential {
            username: None,
            ssh_key: None,
            ..c
        };
        assert_eq!(
            token_only.describe(),
            "agora config: token for gitlab.corp.example"
        );
        assert_eq!(
            token_only.basic(),
            Some(("oauth2".into(), "s3cr3t-token".into()))
        );
    }

    #[test]
    fn hosts_of_urls() {
        let h = |u: &str| url_host(u);
        assert_eq!(
            h("https://u:p@gitlab.corp.example:8443/g/p.git"),
            Some((Transport::Http, "gitlab.corp.example:8443".into()))
        );
        assert_eq!(
            h("ssh://git@h.example/g/p.git"),
            Some((Transport::Ssh, "h.example".into()))
        );
        assert_eq!(
            h("git@h.example:g/p.git"),
            Some((Transport::Ssh, "h.example".into()))
        );
        assert_eq!(h("file:///tmp/x"), None);
        assert_eq!(h("/tmp/a:b"), None);
        assert!(host_matches("h.example", "H.example:443", None));
        assert!(!host_matches("h.example", "xh.example", None));
    }

    #[test]
    fn git_env_only_for_the_host() {
        let creds = [cred()];
        assert!(git_env(&creds, "https://github.com/o/r").is_empty());
        let env = git_env(&creds, "https://gitlab.corp.example/g/p.git");
        let get = |k: &str| env.iter().find(|(n, _)| n.starts_with(k)).map(|(_, v)| v);
        assert_eq!(
            get("GIT_CONFIG_KEY_").map(String::as_str),
            Some("http.https://gitlab.corp.example/.extraHeader")
        );
        let value = get("GIT_CONFIG_VALUE_").unwrap();
        let b64 = value.strip_prefix("Authorization: Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"bot:s3cr3t-token");
        let ssh = git_env(&creds, "ssh://git@gitlab.corp.example/g/p.git");
        assert_eq!(
            ssh,
            [(
                "GIT_SSH_COMMAND".to_owned(),
                r"ssh -i '/keys/id'\''s' -o IdentitiesOnly=yes -o BatchMode=yes -o ControlMaster=no"
                    .to_owned()
            )]
        );
    }

    /// Regression: credentials for `127.0.0.1` were sent to every port of that host. A host with
    /// a port is that port only; one without applies to every port (documented).
    #[test]
    fn a_credential_with_a_port_is_for_that_port_only() {
        let with_port = [HostCredential {
            host: "127.0.0.1:8443".into(),
            ..cred()
        }];
        assert!(!git_env(&with_port, "https://127.0.0.1:8443/g/p.git").is_empty());
        assert!(git_env(&with_port, "https://127.0.0.1:9443/g/p.git").is_empty());
        assert!(git_env(&with_port, "https://127.0.0.1/g/p.git").is_empty());
        assert!(git_env(&with_port, "https://127.0.0.10:8443/g/p.git").is_empty());
        let default_port = [HostCredential {
            host: "h.example:443".into(),
            ..cred()
        }];
        assert!(!git_env(&default_port, "https://h.example/g/p.git").is_empty());
        assert!(git_env(&default_port, "http://h.example/g/p.git").is_empty());
        let any_port = [HostCredential {
            host: "127.0.0.1".into(),
            ..cred()
        }];
        for url in ["https://127.0.0.1/x", "https://127.0.0.1:9443/x"] {
            assert!(!git_env(&any_port, url).is_empty(), "{url}");
        }
        let v6 = [HostCredential {
            host: "[::1]:8443".into(),
            ..cred()
        }];
        assert!(!git_env(&v6, "https://[::1]:8443/x").is_empty());
        assert!(git_env(&v6, "https://[::1]/x").is_empty());
    }

    fn header_of(env: &[(String, String)]) -> (String, String) {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n.starts_with(k))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let value = get("GIT_CONFIG_VALUE_");
        let b64 = value.strip_prefix("Authorization: Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        (get("GIT_CONFIG_KEY_"), String::from_utf8(raw).unwrap())
    }

    /// Regression: a rule URL with `user:password@` reached git's command line and the mirror's
    /// config file. The password leaves the URL and travels as a header.
    #[test]
    fn passwords_leave_urls_and_travel_as_headers() {
        let creds = [cred()];
        let r = git_remote(
            &creds,
            "https://bob:p%40ss:w@gitlab.corp.example:8443/g/p.git",
        );
        assert_eq!(r.url, "https://gitlab.corp.example:8443/g/p.git");
        assert!(!format!("{r:?}").contains("p%40ss"));
        assert_eq!(
            header_of(&r.env),
            (
                "http.https://gitlab.corp.example:8443/.extraHeader".to_owned(),
                "bob:p@ss:w".to_owned()
            )
        );
        // The URL's own credentials win over the configured ones for the host.
        let r = git_remote(&creds, "https://bob:pw@gitlab.corp.example/g/p.git");
        assert_eq!(header_of(&r.env).1, "bob:pw");
        // No password: nothing to take out; the configured credentials apply.
        let r = git_remote(&creds, "https://gitlab.corp.example/g/p.git");
        assert_eq!(r.url, "https://gitlab.corp.example/g/p.git");
        assert_eq!(header_of(&r.env).1, "bot:s3cr3t-token");
        let r = git_remote(&[], "https://oauth2@h.example/g/p.git");
        assert_eq!(r.url, "https://oauth2@h.example/g/p.git");
        assert!(r.env.is_empty());
        // SSH keeps its user; the password is dropped, the configured key applies.
        let r = git_remote(&creds, "ssh://git:pw@gitlab.corp.example/g/p.git");
        assert_eq!(r.url, "ssh://git@gitlab.corp.example/g/p.git");
        assert_eq!(r.env[0].0, "GIT_SSH_COMMAND");
        let r = git_remote(&[], "git@h.example:g/p.git");
        assert_eq!(r.url, "git@h.example:g/p.git");
    }

    #[test]
    fn netrc_like_go() {
        let text = "machine a.example login u1 password p1\n\
                    machine b.example\n login u2\n password p2\n\
                    macdef init\nmachine evil login x password y\n\n\
                    machine c.example login u3\n\
                    machine d.example login u4 password p4\n\
                    default login anon password anon\n\
                    machine e.example login u5 password p5\n";
        let got = parse_netrc(text);
        let machines: Vec<&str> = got.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(machines, ["a.example", "b.example", "d.example"]);
        assert_eq!(got[1], ("b.example".into(), "u2".into(), "p2".into()));
    }
}
