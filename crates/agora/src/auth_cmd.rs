//! `agora auth`: a credential command for the go command's `GOAUTH` (Go 1.24 and later), so that
//! a developer or CI job can hand the go command its agora token without a `.netrc`.
//!
//! With `GOAUTH='agora auth ...'` (the command line itself: `go help goauth`'s `command` method
//! has no keyword), the go command runs it once before its first HTTPS request,
//! with no extra argument and no input, and reads credential sets from stdout: URL prefixes, a
//! blank line, header lines, a blank line (`go help goauth`). When a request gets a 4xx answer it
//! runs the command again with the request's URL as one more argument and the answer's status line
//! and headers on stdin, and retries once with what the command printed then.
//!
//! The token comes from a file or the environment, never from the command line (where `ps` and
//! shell histories would show it), and is printed only to stdout, for the go command.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// The part of `agora auth --help` after the options: how a user sets it up.
pub const HELP: &str = "\
Set up (Go 1.24 or later; older go commands read only ~/.netrc):

  export GOPROXY=https://agora.corp.example
  export GOAUTH='agora auth --url https://agora.corp.example --token-file /home/alice/.config/agora/token'

or keep the token in the environment (CI secrets):

  export AGORA_URL=https://agora.corp.example AGORA_TOKEN=agora_...
  export GOAUTH='agora auth'

GOAUTH holds the command line itself (`go help goauth` calls this method `command`; the word is
not typed), split on spaces: give agora's full path if it is not in PATH. The URL must be the one
in GOPROXY (the go command matches credentials by URL prefix, and sends
GOAUTH credentials over HTTPS only). There is deliberately no --token flag: a token on a command
line shows in `ps` and shell histories.";

/// `agora auth`'s arguments (the subcommand's help text is in `main.rs`).
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// agora's URL as written in GOPROXY, e.g. https://agora.corp.example [env: AGORA_URL].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// File holding the token (its first line) [env: AGORA_TOKEN_FILE; else the token itself
    /// from AGORA_TOKEN].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Set by the go command on its second call: the URL that was refused (its answer's status
    /// line and headers come on stdin).
    #[arg(value_name = "REQUEST_URL")]
    request_url: Option<String>,
}

/// The environment variables `agora auth` reads. They are a client's settings, not agora's
/// configuration: `agora serve` and the other commands must not refuse them as unknown keys.
pub const CLIENT_ENV: &[&str] = &["AGORA_URL", "AGORA_TOKEN", "AGORA_TOKEN_FILE"];

/// The longest go-command answer read from stdin: a status line and headers, never a body.
const MAX_RESPONSE: u64 = 64 * 1024;

pub fn run(
    args: &AuthArgs,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let prefix = agora_url(args, env)?;
    if let Some(request) = &args.request_url {
        // The go command's second call. Its answer is drained (the go command writes it whole
        // before reading ours) but changes nothing: whatever agora said, the token to send is
        // the one configured, read again so that a rotated token file is picked up.
        if !stdin_is_terminal {
            let mut sink = Vec::new();
            stdin
                .take(MAX_RESPONSE)
                .read_to_end(&mut sink)
                .context("reading the go command's response from stdin")?;
        }
        if !covers(&prefix, request) {
            // GOAUTH commands are asked about every refused HTTPS URL (git hosts, other
            // proxies): this token is for agora only. No credential set is a valid answer.
            return Ok(());
        }
    }
    let token = token(args, env)?;
    let mut set = String::new();
    for url in prefixes(&prefix) {
        set.push_str(&url);
        set.push('\n');
    }
    set.push('\n');
    set.push_str(&format!("Authorization: Bearer {token}\n\n"));
    out.write_all(set.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the credentials to stdout")
}

/// Runs the command as the binary does: real environment, stdin and stdout.
pub fn run_main(args: &AuthArgs) -> Result<()> {
    let stdin = std::io::stdin();
    let is_terminal = stdin.is_terminal();
    run(
        args,
        &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
        &mut stdin.lock(),
        is_terminal,
        &mut std::io::stdout().lock(),
    )
}

/// agora's URL without a trailing slash, from `--url` or `AGORA_URL`.
fn agora_url(args: &AuthArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let Some(url) = args.url.clone().or_else(|| env("AGORA_URL")) else {
        bail!("no agora URL: pass --url https://HOST (the URL in GOPROXY) or set AGORA_URL");
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    let Some(rest) = url.strip_prefix("https://") else {
        bail!(
            "the agora URL must start with https:// (got {url:?}): the go command sends GOAUTH \
             credentials over HTTPS only"
        );
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '?' || c == '#')
    {
        bail!("not a usable agora URL: {url:?} (expected https://HOST[:PORT][/PATH])");
    }
    Ok(url)
}

/// The URL prefixes to print for `url`: itself, and the same with or without the default port,
/// since the go command compares prefixes as text and GOPROXY may spell the port either way.
fn prefixes(url: &str) -> Vec<String> {
    let rest = &url["https://".len()..];
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let other = match host.strip_suffix(":443") {
        Some(bare) => format!("https://{bare}{path}"),
        None if !host.ends_with(']') && host.contains(':') => return vec![url.to_owned()],
        None => format!("https://{host}:443{path}"),
    };
    vec![url.to_owned(), other]
}

/// Whether a credential for `prefix` applies to `request`, as the go command matches them: the
/// same host, and the path equal or below, ignoring the scheme and a default port.
fn covers(prefix: &str, request: &str) -> bool {
    let request = request.split(['?', '#']).next().unwrap_or_default();
    prefixes(prefix).iter().any(|p| {
        request
            .strip_prefix(p.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The token, from `--token-file`, `AGORA_TOKEN_FILE` or `AGORA_TOKEN`, checked to be usable in
/// a header. Error messages name the source, never the token.
fn token(args: &AuthArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let (token, source) = if let Some(file) = &args.token_file {
        (read_token_file(file)?, format!("{}", file.display()))
    } else if let Some(file) = env("AGORA_TOKEN_FILE") {
        let file = PathBuf::from(file);
        (
            read_token_file(&file)?,
            format!("{} (AGORA_TOKEN_FILE)", file.display()),
        )
    } else if let Some(token) = env("AGORA_TOKEN") {
        (token.trim().to_owned(), "AGORA_TOKEN".to_owned())
    } else {
        bail!(
            "no agora token: pass --token-file FILE, or set AGORA_TOKEN_FILE or AGORA_TOKEN \
             (an administrator issues tokens with `agora token add`)"
        );
    };
    if token.is_empty() {
        bail!("the agora token from {source} is empty");
    }
    // Anything else could end the header line early or smuggle in another header.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the agora token from {source} contains spaces or control characters");
    }
    Ok(token)
}

/// The first line of `file`, trimmed (editors add a final newline).
fn read_token_file(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the token file {}", file.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, file: Option<&Path>, request: Option<&str>) -> AuthArgs {
        AuthArgs {
            url: url.map(str::to_owned),
            token_file: file.map(Path::to_path_buf),
            request_url: request.map(str::to_owned),
        }
    }

    fn call(args: &AuthArgs, env: &[(&str, &str)], stdin: &str) -> Result<String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut out = Vec::new();
        run(args, &lookup, &mut stdin.as_bytes(), false, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn prints_a_credential_set_from_the_environment() {
        let out = call(
            &args(None, None, None),
            &[
                ("AGORA_URL", "https://agora.corp.example/"),
                ("AGORA_TOKEN", "agora_abc\n"),
            ],
            "",
        )
        .unwrap();
        assert_eq!(
            out,
            "https://agora.corp.example\nhttps://agora.corp.example:443\n\n\
             Authorization: Bearer agora_abc\n\n"
        );
    }

    #[test]
    fn reads_the_first_line_of_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "agora_xyz\n").unwrap();
        let out = call(
            &args(Some("https://127.0.0.1:8443/go"), Some(&file), None),
            &[("AGORA_TOKEN", "agora_ignored")],
            "",
        )
        .unwrap();
        assert_eq!(
            out,
            "https://127.0.0.1:8443/go\n\nAuthorization: Bearer agora_xyz\n\n"
        );
    }

    #[test]
    fn second_call_reads_the_response_and_answers_only_for_agora() {
        let env = [
            ("AGORA_URL", "https://agora.corp.example:443"),
            ("AGORA_TOKEN", "agora_abc"),
        ];
        let response = "HTTP/2.0 401 Unauthorized\nWww-Authenticate: Bearer realm=\"agora\", error=\"invalid_token\"\n\n";
        for url in [
            "https://agora.corp.example/github.com/a/b/@v/list",
            "https://agora.corp.example:443/sumdb/sum.golang.org/lookup/x@v1.0.0",
        ] {
            let out = call(&args(None, None, Some(url)), &env, response).unwrap();
            assert!(
                out.ends_with("\n\nAuthorization: Bearer agora_abc\n\n"),
                "{url}: {out}"
            );
        }
        for url in [
            "https://github.com/a/b?go-get=1",
            "https://agora.corp.example.evil.test/x",
            "https://agora.corp.example:8443/x",
        ] {
            assert_eq!(
                call(&args(None, None, Some(url)), &env, response).unwrap(),
                ""
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        type Case<'a> = (AuthArgs, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                args(None, None, None),
                vec![("AGORA_TOKEN", "t")],
                "no agora URL",
            ),
            (
                args(Some("http://agora.corp.example"), None, None),
                vec![("AGORA_TOKEN", "t")],
                "https://",
            ),
            (
                args(Some("https://agora.corp.example"), None, None),
                vec![],
                "no agora token",
            ),
            (
                args(Some("https://agora.corp.example"), Some(&empty), None),
                vec![],
                "is empty",
            ),
            (
                args(
                    Some("https://a.example"),
                    Some(&dir.path().join("none")),
                    None,
                ),
                vec![],
                "cannot read the token file",
            ),
            (
                args(Some("https://a.example"), None, None),
                vec![("AGORA_TOKEN", "agora_x\r\nX-Evil: 1")],
                "control characters",
            ),
        ];
        for (a, env, want) in cases {
            let err = format!("{:#}", call(&a, &env, "").unwrap_err());
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("agora_x"), "the token leaked: {err}");
        }
    }
}
