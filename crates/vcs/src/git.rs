//! Running the system `git`.
//!
//! Every invocation gets the same environment: no terminal prompts (a server has no one to type a
//! password), batch-mode SSH, and the C locale so that stderr can be classified. Nothing else is
//! overridden, so the machine's git configuration, SSH setup and credential helpers apply.
//! Children are killed when their future is dropped, so a caller's timeout really stops git.

use std::path::Path;
use std::process::{Output, Stdio};

use agora_secret::redact;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{Error, GitFailure};

/// Longest stderr kept in an error; git's useful lines come first.
const MAX_STDERR: usize = 4096;

/// A `git` command line, run in (and on) the bare repository `dir`, if any.
pub(crate) struct Git<'a> {
    dir: Option<&'a Path>,
    args: Vec<&'a str>,
    env: &'a [(String, String)],
}

impl<'a> Git<'a> {
    pub(crate) fn new(dir: Option<&'a Path>, args: &[&'a str]) -> Self {
        Git {
            dir,
            args: args.to_vec(),
            env: &[],
        }
    }

    /// Adds environment variables (credentials as `GIT_CONFIG_*` entries, an SSH command).
    /// They never show up in [`Git::display`], so errors and logs stay free of secrets.
    pub(crate) fn envs(mut self, env: &'a [(String, String)]) -> Self {
        self.env = env;
        self
    }

    /// The command as shown in errors and logs, with credentials redacted.
    pub(crate) fn display(&self) -> String {
        redact(&format!("git {}", self.args.join(" ")))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        if let Some(dir) = self.dir {
            // Name the repository explicitly: under `safe.bareRepository = explicit` (a
            // hardening setting) git refuses a bare repository found through the current
            // directory. `.` rather than the path, which may be relative to agora's directory.
            cmd.current_dir(dir).arg("--git-dir=.");
        }
        cmd.args(&self.args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Like cmd/go: never hang on an SSH password or host-key prompt, and don't let a shared
        // ControlMaster connection outlive us. Respect an explicit choice by the operator.
        if std::env::var_os("GIT_SSH").is_none() && std::env::var_os("GIT_SSH_COMMAND").is_none() {
            cmd.env(
                "GIT_SSH_COMMAND",
                "ssh -o ControlMaster=no -o BatchMode=yes",
            );
        }
        // Last, so that a configured SSH key's command replaces the default above.
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The git subcommand (`fetch`, `ls-remote`, ...): the first argument that is not an option
    /// or an option's value.
    fn subcommand(&self) -> &'a str {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            match *arg {
                "-c" | "-C" => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                a => return a,
            }
        }
        ""
    }

    /// Runs the command with its stdout streamed into `file` (not held in memory), failing once
    /// more than `limit` bytes arrive. Returns the number of bytes written.
    #[tracing::instrument(level = "debug", name = "git", skip_all, fields(
        otel.name = %format!("git {}", self.subcommand()),
        process.command_line = %self.display(),
    ))]
    pub(crate) async fn run_to_file(
        &self,
        file: &mut tokio::fs::File,
        path: &Path,
        limit: u64,
    ) -> Result<u64, Error> {
        use tokio::io::AsyncReadExt;
        let spawn_err = |source| Error::Spawn {
            command: self.display(),
            source,
        };
        let mut child = self.command().spawn().map_err(spawn_err)?;
        let mut stdout = child.stdout.take().ok_or_else(|| Error::Spawn {
            command: self.display(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let mut stderr = child.stderr.take().ok_or_else(|| Error::Spawn {
            command: self.display(),
            source: std::io::Error::other("no stderr pipe"),
        })?;
        // Drain stderr concurrently so that a chatty git cannot block on a full pipe.
        let stderr_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = (&mut stderr)
                .take(MAX_STDERR as u64 * 4)
                .read_to_end(&mut buf)
                .await;
            // Keep draining (and discarding) whatever else comes.
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            buf
        });
        let mut written = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = stdout.read(&mut buf).await.map_err(spawn_err)?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > limit {
                // Dropping the child kills it (kill_on_drop).
                return Err(Error::TooLarge {
                    what: self.display(),
                    limit,
                });
            }
            // Writing is our disk's business (it may be full), not git's.
            let write_err = |source| Error::Io {
                path: path.to_owned(),
                source,
            };
            file.write_all(&buf[..n]).await.map_err(write_err)?;
        }
        file.flush().await.map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let status = child.wait().await.map_err(spawn_err)?;
        let stderr = stderr_task.await.unwrap_or_default();
        let out = Output {
            status,
            stdout: Vec::new(),
            stderr,
        };
        if status.success() {
            Ok(written)
        } else {
            Err(self.failure(&out))
        }
    }

    /// Runs the command with optional stdin and returns its raw output, whatever the exit status.
    #[tracing::instrument(level = "debug", name = "git", skip_all, fields(
        otel.name = %format!("git {}", self.subcommand()),
        process.command_line = %self.display(),
        process.exit_code = tracing::field::Empty,
    ))]
    pub(crate) async fn output(&self, stdin: Option<&[u8]>) -> Result<Output, Error> {
        let mut cmd = self.command();
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let spawn_err = |source| Error::Spawn {
            command: self.display(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Inputs are a few lines, far below the pipe buffer, so writing before reading
            // cannot deadlock.
            pipe.write_all(input).await.map_err(spawn_err)?;
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if let Some(code) = out.status.code() {
            tracing::Span::current().record("process.exit_code", code);
        }
        Ok(out)
    }

    /// Runs the command and returns its stdout; a non-zero exit is an [`Error::Git`].
    pub(crate) async fn run(&self) -> Result<Vec<u8>, Error> {
        let out = self.output(None).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failure(&out))
        }
    }

    /// The error for a failed run, classified from stderr.
    pub(crate) fn failure(&self, out: &Output) -> Error {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut stderr = redact(stderr.trim());
        if stderr.len() > MAX_STDERR {
            let mut cut = MAX_STDERR;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push_str(" [...]");
        }
        if stderr.is_empty() {
            stderr = format!("exit status {}", out.status);
        }
        Error::Git {
            command: self.display(),
            kind: classify(&stderr),
            stderr,
        }
    }
}

/// Classifies git's stderr. Order matters: TLS and auth problems are often followed by generic
/// "could not read from remote" lines, and some hosts say "not found" for private repositories
/// only after an auth message.
pub(crate) fn classify(stderr: &str) -> GitFailure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    // Our own disk, first: whatever else git says afterwards follows from it. Lines from the
    // remote ("remote: ...") are the server's disk, not ours.
    let local = s
        .lines()
        .filter(|line| !line.trim_start().starts_with("remote:"))
        .any(|line| {
            [
                "no space left on device",
                "disk quota exceeded",
                "read-only file system",
            ]
            .iter()
            .any(|n| line.contains(n))
        });
    if local {
        GitFailure::LocalStorage
    } else if any(&[
        "server certificate verification failed",
        "ssl certificate problem",
        "unable to get local issuer certificate",
        "self signed certificate",
        "self-signed certificate",
        "certificate verify failed",
        "unknown certificate authority",
    ]) {
        GitFailure::UnknownCa
    } else if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied (publickey",
        "invalid username or password",
        "http basic: access denied",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "access denied",
    ]) {
        GitFailure::AuthFailed
    } else if any(&[
        "repository not found",
        "not found",
        "does not appear to be a git repository",
        "does not exist",
        "the requested url returned error: 404",
        "no such repository",
    ]) {
        GitFailure::NotFound
    } else if any(&[
        "could not resolve host",
        "could not resolve hostname",
        "name or service not known",
        "temporary failure in name resolution",
        "failed to connect",
        "connection refused",
        "connection timed out",
        "operation timed out",
        "network is unreachable",
        "no route to host",
        "connection reset",
    ]) {
        GitFailure::Unreachable
    } else {
        GitFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_stderr() {
        let cases = [
            (
                "remote: Repository not found.\nfatal: repository 'https://github.com/o/x/' not found",
                GitFailure::NotFound,
            ),
            (
                "fatal: '/tmp/nope' does not appear to be a git repository\nfatal: Could not read from remote repository.",
                GitFailure::NotFound,
            ),
            (
                "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
                GitFailure::AuthFailed,
            ),
            (
                "git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                GitFailure::AuthFailed,
            ),
            (
                "fatal: Authentication failed for 'https://gitlab.corp/x.git/'",
                GitFailure::AuthFailed,
            ),
            (
                "fatal: unable to access 'https://nope.invalid/x/': Could not resolve host: nope.invalid",
                GitFailure::Unreachable,
            ),
            (
                "fatal: unable to access 'https://h/x/': Failed to connect to h port 443: Connection refused",
                GitFailure::Unreachable,
            ),
            (
                "fatal: unable to access 'https://h/x/': server certificate verification failed. CAfile: none CRLfile: none",
                GitFailure::UnknownCa,
            ),
            (
                "fatal: unable to access 'https://h/x/': SSL certificate problem: self-signed certificate in certificate chain",
                GitFailure::UnknownCa,
            ),
            ("fatal: bad object", GitFailure::Other),
            // Regression: a full local disk was "upstream git failed" (502). git 2.47's words
            // when a mirror's 1 MiB tmpfs filled during a fetch (a big pack, a small one):
            (
                "fatal: write error: No space left on device\nfatal: fetch-pack: invalid index-pack output",
                GitFailure::LocalStorage,
            ),
            (
                "fatal: unable to write loose object file: No space left on device\nfatal: unpack-objects failed",
                GitFailure::LocalStorage,
            ),
            (
                "error: could not lock config file config: Read-only file system",
                GitFailure::LocalStorage,
            ),
            // The server's full disk is the server's problem.
            (
                "remote: fatal: write error: No space left on device\nfatal: the remote end hung up unexpectedly",
                GitFailure::Other,
            ),
        ];
        for (stderr, want) in cases {
            assert_eq!(classify(stderr), want, "{stderr}");
        }
    }
}
