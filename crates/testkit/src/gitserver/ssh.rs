//! [`SshGitServer`]: git over SSH with key authentication, by OpenSSH's `sshd`.
//!
//! `/usr/sbin/sshd -D -e -f <config> -p <port>` listens on `127.0.0.1` with a generated ed25519
//! host key. Only one generated client key is in its `authorized_keys`; a second key
//! ([`SshGitServer::wrong_key_ssh_config`]) exists to test refusals. Every session runs a generated
//! `ForceCommand` script, the way GitLab runs gitlab-shell: it logs the command, allows only
//! `git-upload-pack`, and maps the repository path of the URL (`/group/project` or
//! `/group/project.git`) into the repositories directory. So clone URLs look like GitLab's:
//! `ssh://gitlab-ssh.corp.example/group/project.git`.
//!
//! # Client side
//!
//! The server writes an ssh client config ([`SshGitServer::ssh_config`]) with a `Host <alias>` entry
//! (`HostName 127.0.0.1`, the port, `User root`, the key, a known_hosts file holding the host key,
//! `StrictHostKeyChecking yes`, `BatchMode yes`), to be used with `ssh -F <file>`:
//!
//! - `ssh` reads `~/.ssh/config` from the password database's home, not `$HOME`, so a sandboxed
//!   HOME does not help: the config is always passed with `-F`.
//! - sshd runs sessions as a real user and the machine has no `git` user, so URLs carry **no user**
//!   (`ssh://<alias>/...`; a `git@` in the URL would win over `User root` and be refused).
//! - For git: `core.sshCommand = ssh -F <file>` ([`SshGitServer::gitconfig_path`]).
//! - For the go command: Go 1.23 (not 1.27) sets `GIT_SSH_COMMAND` itself when neither `GIT_SSH` nor
//!   `GIT_SSH_COMMAND` is set, which beats `core.sshCommand`; so [`SshGitServer::configure_go`] sets
//!   `GIT_SSH_COMMAND=ssh -F <file>` explicitly.
//!
//! # How the go command reaches it (verified with Go 1.23.5, git 2.47, OpenSSH 9.2)
//!
//! The alias does not resolve, so the go command must not need `https://<alias>/...?go-get=1`.
//! Two ways work:
//!
//! 1. A module path with a `.git` suffix, `<alias>/group/project.git`: go skips the go-get lookup and
//!    probes `git ls-remote https://<alias>/group/project`, which the gitconfig rewrites with
//!    `url."ssh://<alias>/".insteadOf = https://<alias>/` (the common corporate setup).
//! 2. A go-import answer from another host pointing at SSH, e.g. an [`HttpsGitServer`] with
//!    `go_import("gitlab.corp.example/team/tool", "gitlab.corp.example/team/tool git ssh://<alias>/team/tool.git")`.
//!
//! [`HttpsGitServer`]: super::HttpsGitServer

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::go::GoClient;

/// The default host alias: `gitlab-ssh.corp.example` (resolved only through the ssh config).
pub const DEFAULT_SSH_HOST: &str = "gitlab-ssh.corp.example";

const SSHD: &str = "/usr/sbin/sshd";

/// One session, as logged by the `ForceCommand` script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRequest {
    /// `GIT_PROTOCOL` as the client sent it (`version=2` for protocol v2; empty for v0).
    pub git_protocol: String,
    /// The command the client asked for, e.g. `git-upload-pack '/team/tool.git'`.
    pub command: String,
}

/// A running sshd serving git repositories; see the module docs. Killed (with its sessions) on drop.
#[derive(Debug)]
pub struct SshGitServer {
    alias: String,
    port: u16,
    repos: PathBuf,
    dir: TempDir,
    child: Option<Child>,
}

impl SshGitServer {
    /// Serves `repos` (`<repos>/<path>` is `ssh://<alias>/<path>[.git]`) under [`DEFAULT_SSH_HOST`].
    pub fn start(repos: impl Into<PathBuf>) -> SshGitServer {
        SshGitServer::start_as(DEFAULT_SSH_HOST, repos)
    }

    /// Serves host `name` of `git_host` (its directory `<root>/<name>`, created if missing), with
    /// `name` as the alias.
    pub fn serve(git_host: &crate::GitHost, name: &str) -> SshGitServer {
        SshGitServer::start_as(name, git_host.repo_dir(name))
    }

    /// Like [`start`](Self::start) with another host alias.
    ///
    /// # Panics
    /// When openssh-server or ssh-keygen is missing (run scripts/setup), or sshd does not come up.
    pub fn start_as(alias: &str, repos: impl Into<PathBuf>) -> SshGitServer {
        let repos = repos.into();
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} not found: install openssh-server (run scripts/setup)"
        );
        assert!(
            which("ssh").is_some(),
            "ssh not found on PATH: install openssh-client (run scripts/setup)"
        );
        std::fs::create_dir_all(&repos)
            .unwrap_or_else(|e| panic!("create {}: {e}", repos.display()));
        let dir = crate::scratch::tempdir("agora-sshd-");
        let d = dir.path();
        // sshd refuses to start without its privilege separation directory (normally made by the
        // service unit, which never runs in a container).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (needs root)");

        keygen(&d.join("host_key"), "agora-testkit host key");
        keygen(&d.join("id_ed25519"), "agora-testkit client key");
        keygen(&d.join("id_wrong"), "agora-testkit unauthorized key");
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys"))
            .expect("write authorized_keys");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("read host key");
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (
            fields.next().expect("host key type"),
            fields.next().expect("host key"),
        );
        std::fs::write(d.join("known_hosts"), format!("{alias} {kind} {key}\n"))
            .expect("write known_hosts");

        let git =
            which("git").unwrap_or_else(|| panic!("git not found on PATH: run scripts/setup"));
        let script = d.join("git-serve.sh");
        std::fs::write(
            &script,
            FORCE_COMMAND
                .replace("@ROOT@", &sh_quote(&repos.display().to_string()))
                .replace(
                    "@LOG@",
                    &sh_quote(&d.join("requests.log").display().to_string()),
                )
                .replace("@GIT@", &sh_quote(&git.display().to_string())),
        )
        .expect("write ForceCommand script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod ForceCommand script");
        std::fs::write(d.join("requests.log"), "").expect("create request log");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "# Generated by agora-testkit.\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers root\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 PermitTTY no\n\
                 AllowTcpForwarding no\n\
                 X11Forwarding no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 AcceptEnv GIT_PROTOCOL\n\
                 ForceCommand {script}\n\
                 LogLevel VERBOSE\n",
                host_key = d.join("host_key").display(),
                dir = d.display(),
                script = script.display(),
            ),
        )
        .expect("write sshd_config");

        let mut server = SshGitServer {
            alias: alias.to_string(),
            port: 0,
            repos,
            dir,
            child: None,
        };
        server.spawn_sshd();
        server.write_client_files();
        server
    }

    /// Starts sshd on a free port, retrying when another process takes the port first.
    fn spawn_sshd(&mut self) {
        let log = self.dir.path().join("sshd.log");
        for _attempt in 0..5 {
            let port = free_port();
            let log_file = std::fs::File::create(&log).expect("create sshd log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(self.dir.path().join("sshd_config"))
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file))
                // Own process group: drop kills sshd and its session children together.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            // sshd logs this line once it listens; waiting for it (rather than probing the port)
            // keeps the log free of a bogus connection.
            let ready = format!("Server listening on 127.0.0.1 port {port}.");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if self.sshd_log().contains(&ready) {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                if Instant::now() > deadline {
                    crate::go::kill_group(child.id());
                    let _ = child.wait();
                    panic!(
                        "sshd did not listen on 127.0.0.1:{port} within 10 s:\n{}",
                        self.sshd_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let log_text = self.sshd_log();
            if !log_text.contains("Address already in use") {
                panic!("sshd exited at start:\n{log_text}");
            }
        }
        panic!("sshd could not bind a free port:\n{}", self.sshd_log());
    }

    fn write_client_files(&self) {
        let d = self.dir.path();
        for (file, key) in [
            ("ssh_config", "id_ed25519"),
            ("ssh_config_wrong", "id_wrong"),
        ] {
            std::fs::write(
                d.join(file),
                format!(
                    "# Generated by agora-testkit: use with ssh -F {file}.\n\
                     Host {alias}\n\
                     \tHostName 127.0.0.1\n\
                     \tPort {port}\n\
                     \tUser root\n\
                     \tIdentityFile {key}\n\
                     \tIdentitiesOnly yes\n\
                     \tIdentityAgent none\n\
                     \tHostKeyAlias {alias}\n\
                     \tUserKnownHostsFile {known}\n\
                     \tGlobalKnownHostsFile /dev/null\n\
                     \tStrictHostKeyChecking yes\n\
                     \tCheckHostIP no\n\
                     \tBatchMode yes\n\
                     \tControlMaster no\n\
                     \tConnectTimeout 20\n\
                     \tLogLevel ERROR\n",
                    file = d.join(file).display(),
                    alias = self.alias,
                    port = self.port,
                    key = d.join(key).display(),
                    known = d.join("known_hosts").display(),
                ),
            )
            .expect("write ssh config");
        }
        std::fs::write(
            d.join("gitconfig"),
            format!(
                "# Generated by agora-testkit.\n{}[safe]\n\tdirectory = *\n",
                self.gitconfig_snippet()
            ),
        )
        .expect("write gitconfig");
    }

    /// The host alias, e.g. `gitlab-ssh.corp.example`.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The port sshd listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory served.
    pub fn repos(&self) -> &Path {
        &self.repos
    }

    /// `ssh://<alias>/<repo>.git`, the clone URL of repository `repo` (e.g. `team/tool`).
    pub fn repo_url(&self, repo: &str) -> String {
        format!("ssh://{}/{}.git", self.alias, repo.trim_matches('/'))
    }

    /// The ssh client config with the authorized key (use as `ssh -F <file>`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The same config with a key sshd does not accept.
    pub fn wrong_key_ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config_wrong")
    }

    /// `ssh -F <ssh_config>`, for `GIT_SSH_COMMAND` or `core.sshCommand`.
    pub fn ssh_command(&self) -> String {
        format!("ssh -F {}", self.ssh_config().display())
    }

    /// The private key sshd accepts (e.g. for agora's own configuration).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The known_hosts file holding the server's host key under the alias.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Gitconfig text: `core.sshCommand = ssh -F <file>` and
    /// `url."ssh://<alias>/".insteadOf = https://<alias>/`.
    pub fn gitconfig_snippet(&self) -> String {
        format!(
            "[core]\n\tsshCommand = {cmd}\n[url \"ssh://{alias}/\"]\n\tinsteadOf = https://{alias}/\n",
            cmd = self.ssh_command(),
            alias = self.alias
        )
    }

    /// A complete gitconfig with [`gitconfig_snippet`](Self::gitconfig_snippet), for
    /// `GIT_CONFIG_GLOBAL`.
    pub fn gitconfig_path(&self) -> PathBuf {
        self.dir.path().join("gitconfig")
    }

    /// Sets up a go client for `GOPROXY=direct` against this server: the gitconfig above, and
    /// `GIT_SSH_COMMAND=ssh -F <file>` (go would otherwise set its own, overriding `core.sshCommand`).
    /// Replaces the client's gitconfig; combine configs by hand when a test needs more.
    pub fn configure_go(&self, go: GoClient) -> GoClient {
        go.gitconfig(self.gitconfig_path())
            .env("GIT_SSH_COMMAND", self.ssh_command())
            .env("GONOSUMDB", &self.alias)
    }

    /// Environment for other processes (agora, git): `GIT_SSH_COMMAND=ssh -F <file>`.
    pub fn ssh_env(&self) -> Vec<(&'static str, OsString)> {
        vec![("GIT_SSH_COMMAND", OsString::from(self.ssh_command()))]
    }

    /// Every session so far, in order.
    pub fn requests(&self) -> Vec<SshRequest> {
        let text =
            std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let (proto, cmd) = l.split_once('\t').unwrap_or(("", l));
                SshRequest {
                    git_protocol: proto.to_string(),
                    command: cmd.to_string(),
                }
            })
            .collect()
    }

    /// Forgets the recorded sessions.
    pub fn reset_requests(&self) {
        std::fs::write(self.dir.path().join("requests.log"), "").expect("truncate request log");
    }

    /// sshd's log (`-e`, LogLevel VERBOSE: accepted and refused keys, errors).
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops sshd and its sessions. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::go::kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ForceCommand: log, allow only upload-pack, map the URL path into the repositories directory.
/// `@ROOT@`, `@LOG@` and `@GIT@` are replaced by single-quoted absolute paths.
const FORCE_COMMAND: &str = r#"#!/bin/sh
# Generated by agora-testkit: the only command this sshd runs (ForceCommand), like gitlab-shell.
set -f
root=@ROOT@
log=@LOG@
git=@GIT@
cmd=${SSH_ORIGINAL_COMMAND-}
printf '%s\t%s\n' "${GIT_PROTOCOL-}" "$cmd" >> "$log"
case $cmd in
  "git-upload-pack '"*"'") path=${cmd#"git-upload-pack '"} ;;
  "git upload-pack '"*"'") path=${cmd#"git upload-pack '"} ;;
  *) echo "agora-testkit sshd: only git-upload-pack is served, not: $cmd" >&2; exit 128 ;;
esac
path=${path%"'"}
case $path in
  *"'"* | *..*) echo "agora-testkit sshd: bad repository path: $path" >&2; exit 128 ;;
esac
path=${path#/}
path=${path#"~/"}
dir=$root/$path
if [ ! -d "$dir" ] && [ -d "${dir%.git}" ]; then dir=${dir%.git}; fi
if [ -z "$path" ] || [ ! -d "$dir" ]; then
  echo "agora-testkit sshd: repository not found: $path" >&2
  exit 128
fi
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
exec "$git" upload-pack "$dir"
"#;

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ssh-keygen: {e} (install openssh-client: run scripts/setup)")
        });
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
