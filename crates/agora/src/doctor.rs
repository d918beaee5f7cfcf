//! `agora doctor MODULE[@VERSION]`: how agora would fetch a module, step by step, each step tried
//! for real, ending in a verdict that names the failing step and a hint. It replaces "exec into the
//! container and try git clone by hand". Secrets are never printed: credentials are described by
//! their source only, and git's messages are redacted by agora-vcs.

use std::fmt::Write as _;

use anyhow::Result;

use agora_core::{FetchMode, Route};
use agora_gomod::module::ModulePath;
use agora_storage::Storage;
use agora_vcs::{GitFailure, ResolveFailure, ResolvedBy};

use crate::app;
use crate::config::Config;

/// One numbered line of the report.
struct Report {
    out: String,
    step: usize,
}

impl Report {
    fn line(&mut self, name: &str, text: impl AsRef<str>) {
        self.step += 1;
        let _ = writeln!(self.out, "[{}] {:<12} {}", self.step, name, text.as_ref());
    }

    /// The report with a failure verdict.
    fn fail(mut self, name: &str, problem: impl AsRef<str>, hint: impl AsRef<str>) -> Verdict {
        self.line(name, format!("FAILED: {}", problem.as_ref()));
        let _ = writeln!(
            self.out,
            "verdict: FAILED at step {} ({name}): {}\nhint: {}",
            self.step,
            first_line(problem.as_ref()),
            hint.as_ref()
        );
        Verdict {
            ok: false,
            report: self.out,
        }
    }

    fn ok(mut self, verdict: impl AsRef<str>) -> Verdict {
        let _ = writeln!(self.out, "verdict: OK: {}", verdict.as_ref());
        Verdict {
            ok: true,
            report: self.out,
        }
    }
}

/// A finished diagnosis: whether agora can serve the target, and the numbered report.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub ok: bool,
    pub report: String,
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn hint_for(failure: Option<GitFailure>, host: &str) -> String {
    match failure {
        Some(GitFailure::Unreachable) => format!(
            "host unreachable: check that {host} resolves and that this machine may connect to it (DNS, firewall, HTTPS_PROXY)"
        ),
        Some(GitFailure::AuthFailed) => format!(
            "authentication refused by {host}: check the token or SSH key in [[git.credentials]] for {host} (or this machine's .netrc / ~/.ssh/config), and that it may read the repository"
        ),
        Some(GitFailure::UnknownCa) => format!(
            "{host} presents a certificate from an unknown CA: set ca_file to your internal CA bundle (PEM)"
        ),
        Some(GitFailure::NotFound) => format!(
            "repository not found on {host}: check the repository URL (a [[git.rules]] entry may be needed for subgroups), or that agora's credentials can see it"
        ),
        _ => "see the git message above".to_owned(),
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    host.split(':').next().unwrap_or(host).to_owned()
}

/// Runs the diagnosis and prints it. Returns whether agora can serve the target.
pub fn run(config: &Config, target: &str) -> Result<bool> {
    let app = doctor_app(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let verdict = runtime.block_on(diagnose(&app, target));
    print!("{}", verdict.report);
    Ok(verdict.ok)
}

/// The parts a diagnosis uses: the configured ones over a throw-away memory store, since
/// artifacts fetched while diagnosing must not land in the real cache. Built before the async
/// runtime starts (wiring may set process environment for git).
pub fn doctor_app(config: &Config) -> Result<app::App> {
    app::build(config, Storage::memory()?)
}

/// Diagnoses `target` (`MODULE[@VERSION]`) with `app` (see [`doctor_app`]).
pub async fn diagnose(app: &app::App, target: &str) -> Verdict {
    let mut r = Report {
        out: format!("agora doctor {target}\n"),
        step: 0,
    };
    let (path, query) = match target.split_once('@') {
        Some((p, q)) => (p, q),
        None => (target, "latest"),
    };
    let module = match ModulePath::new(path) {
        Ok(m) => m,
        Err(e) => {
            return r.fail(
                "module path",
                e.to_string(),
                "module paths look like host.example/group/project[/subdir][/vN]",
            )
        }
    };
    r.line(
        "module path",
        format!("{module} (escaped {})", module.escaped()),
    );

    match app.policy.route(&module) {
        Route::Upstream => {
            r.line(
                "route",
                "public: through the upstream chain (not a private pattern)",
            );
            let result = if query == "latest" {
                app.proxy.latest(&module, FetchMode::Background).await
            } else {
                app.proxy.info(&module, query, FetchMode::Background).await
            };
            match result {
                Ok(served) => {
                    r.line("resolve", String::from_utf8_lossy(&served.body).trim());
                    r.ok(format!("agora can serve {module}@{query} from upstream"))
                }
                Err(e) => r.fail(
                    "resolve",
                    e.to_string(),
                    "if this is a private module, add its pattern to routing.private (GOPRIVATE) so agora fetches it from git",
                ),
            }
        }
        Route::Direct => diagnose_direct(app, r, &module, query).await,
    }
}

async fn diagnose_direct(
    app: &app::App,
    mut r: Report,
    module: &ModulePath,
    query: &str,
) -> Verdict {
    r.line(
        "route",
        "private: straight from git (matches routing.private / GONOPROXY), never sent upstream",
    );
    let root = match app.vcs.resolve(module.as_str()).await {
        Ok(root) => root,
        Err(e) => {
            let host = module
                .as_str()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let hint = match e.git_failure() {
                _ if e.resolve_failure() == Some(ResolveFailure::InsecureRedirect) => format!(
                    "insecure redirect: {host} redirects the ?go-get=1 request from https to http, which agora (like the go command) refuses: make {host} answer over https, or add a [[git.rules]] entry for this path; only if plain http is really meant, list the path in routing.insecure (GOINSECURE)"
                ),
                Some(f @ (GitFailure::Unreachable | GitFailure::AuthFailed | GitFailure::UnknownCa)) => {
                    hint_for(Some(f), &host)
                }
                _ => "agora could not find the repository: add a [[git.rules]] entry (pattern + url) for this path".to_owned(),
            };
            return r.fail("repository", e.to_string(), hint);
        }
    };
    let how = match &root.by {
        ResolvedBy::Rule { pattern } => format!("rule {pattern:?}"),
        ResolvedBy::KnownHost => "known host".to_owned(),
        ResolvedBy::VcsSuffix => "\".git\" in the path".to_owned(),
        ResolvedBy::GoImport { meta_url } => format!("go-import meta tag at {meta_url}"),
    };
    let subdir = if root.subdir.is_empty() {
        String::new()
    } else {
        format!(" in subdirectory {}", root.subdir)
    };
    r.line(
        "repository",
        format!(
            "{} (root {}{subdir}, found by {how})",
            agora_vcs::redact(&root.url),
            root.root
        ),
    );
    let host = host_of(&root.url);
    r.line("credentials", app.vcs.credential_source(&root.url));
    match app.vcs.ls_remote(&root.url).await {
        Ok(n) => r.line("reach", format!("git ls-remote: {n} refs")),
        Err(e) => return r.fail("reach", e.to_string(), hint_for(e.git_failure(), &host)),
    }
    let repo = match app.vcs.code_repo(module.as_str()).await {
        Ok(repo) => repo,
        Err(e) => return r.fail("mirror", e.to_string(), hint_for(e.git_failure(), &host)),
    };
    r.line(
        "mirror",
        format!("{} (fetched)", repo.mirror().dir().display()),
    );
    let rev = if query == "latest" {
        repo.latest().await
    } else {
        repo.stat(query).await
    };
    let rev = match rev {
        Ok(rev) => rev,
        Err(e) => {
            let hint = if e.is_not_found() {
                format!(
                    "no such version: list the repository's tags with `git ls-remote --tags {}`; tags of a module in a subdirectory need the prefix \"{}/\"",
                    agora_vcs::redact(&root.url),
                    repo.code_dir()
                )
            } else {
                hint_for(e.git_failure(), &host)
            };
            return r.fail("version", e.to_string(), hint);
        }
    };
    r.line(
        "version",
        format!(
            "{query} → {} (commit {}, {})",
            rev.version,
            rev.short,
            rev.time_rfc3339()
        ),
    );
    match repo.go_mod_at(&rev.hash, &rev.version).await {
        Ok(body) => match agora_gomod::gomodfile::module_path(&body) {
            Some(declared) if declared != module.as_str() => r.fail(
                "go.mod",
                format!("go.mod declares module {declared:?}, not {:?}", module.as_str()),
                "the module path does not match the repository's go.mod: check the import path, or the rule's root for this module",
            ),
            Some(_) => {
                r.line("go.mod", "declares the same module path");
                r.ok(format!("agora can serve {module}@{}", rev.version))
            }
            None => {
                r.line("go.mod", "none (agora synthesizes `module <path>`)");
                r.ok(format!("agora can serve {module}@{}", rev.version))
            }
        },
        Err(e) => r.fail("go.mod", e.to_string(), hint_for(e.git_failure(), &host)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_urls() {
        assert_eq!(
            host_of("ssh://git@gitlab.corp.example:2222/a/b.git"),
            "gitlab.corp.example"
        );
        assert_eq!(
            host_of("https://gitlab.corp.example/a/b.git"),
            "gitlab.corp.example"
        );
        assert_eq!(host_of("https://u:p@h.example/x"), "h.example");
    }
}
