//! Test support for agora's integration tests.
//!
//! There is no internet on the machines that run agora's tests, so this crate builds a small world on
//! loopback and drives it with the real `go` command, which is the oracle for every answer agora gives:
//!
//! - [`go`]: [`GoClient`], the `go` binary in a private sandbox (HOME, GOPATH, module and build caches)
//!   with an environment that nothing from the developer's machine leaks into.
//! - [`git`]: [`Repo`], deterministic fixture repositories made with the system `git` (fixed author,
//!   fixed and increasing commit times, so hashes and pseudo-versions are stable), and [`GitHost`], a
//!   directory of repositories laid out as `<host>/<path>` plus a gitconfig that makes
//!   `https://github.com/...` resolve to them.
//! - [`fixtures`]: a handful of small public modules under `github.com/agora-fixtures/...` and a Go
//!   program that uses them; and [`private_matrix`], private modules under `gitlab.corp.example`
//!   covering every edge case of turning git into module versions, with the go command's answers.
//! - [`gitserver`]: [`HttpsGitServer`] (git over HTTPS with a private CA, basic auth and
//!   `?go-get=1` answers, like an internal GitLab) and [`SshGitServer`] (git over SSH with a key).
//! - [`proxy`]: [`UpstreamProxy`], a static GOPROXY ("the public proxy") served over HTTP on
//!   `127.0.0.1`, with request recording and fault injection.
//! - [`agora`]: [`Agora`], a handle on a running agora process.
//! - [`http`]: tiny HTTP helpers for assertions.
//! - [`otlp`]: [`OtlpReceiver`], an OTLP/HTTP traces endpoint that decodes and keeps the spans
//!   agora exports.
//! - [`webhook`]: [`WebhookServer`], a validation webhook that records what it is asked and answers
//!   as the test says.
//! - [`redis`]: [`RedisServer`], a private `redis-server` on loopback that can be stopped and
//!   restarted (an outage), for the shared single-flight tests.
//! - [`postgres`]: [`PostgresServer`], a throwaway PostgreSQL cluster on loopback (run as an
//!   unprivileged user when the tests run as root), a fresh database per test, for the index.
//! - [`s3`]: [`S3Server`], a private S3-compatible server (moto) on loopback with a bucket per test,
//!   for the storage contract tests; [`S3Service`] is what they need of it.
//! - [`rgw`]: [`RgwServer`], a private single-node Ceph cluster with its S3 gateway (RGW) on
//!   loopback, one per test process with a bucket per test: a real S3 server, whose conditional
//!   `PutObject` is atomic, for the storage contract tests.
//! - [`sumdb`]: [`SumdbServer`], a checksum database on loopback built from the Go reference
//!   implementation, with a key of its own and a switch to a forked log.
//! - [`toolchain`]: [`ToolchainModule`], the installed Go 1.27.3 as the `golang.org/toolchain`
//!   module the go command downloads for `GOTOOLCHAIN`, built once per test process.
//! - [`scratch`]: [`scratch::tempdir`], which makes every temporary directory here, under a
//!   per-process directory that later test processes delete once this one has exited (the shared
//!   fixtures live in statics, which are never dropped).
//!
//! [`HttpsGitServer`] needs root (it binds port 443 on a loopback address and adds its host name to
//! `/etc/hosts`); tests run as root on CI and in the dev container. Tools come from `scripts/setup`:
//! git, openssl, openssh-server/-client and Go 1.23.
//!
//! Everything here panics with a descriptive message when the world cannot be built (a missing tool, a
//! failing git command): this is test code, and a clear panic is the most useful failure.

pub mod agora;
pub mod fixtures;
pub mod git;
pub mod gitserver;
pub mod go;
pub mod http;
pub mod otlp;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod rgw;
pub mod s3;
pub mod scratch;
mod server_thread;
pub mod sumdb;
pub mod toolchain;
pub mod webhook;

pub use agora::{Agora, AgoraBuilder};
pub use fixtures::{private_matrix, public_modules, PrivateFixtures, PublicFixtures};
pub use git::{GitHost, Repo};
pub use gitserver::{HttpsGitServer, SshGitServer};
pub use go::{GoClient, GoError, ListM, ModDownload};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::PostgresServer;
pub use proxy::{Fault, UpstreamProxy};
pub use redis::RedisServer;
pub use rgw::RgwServer;
pub use s3::{S3Server, S3Service};
pub use sumdb::SumdbServer;
pub use toolchain::ToolchainModule;
pub use webhook::{Verdict, WebhookServer};

/// A loopback port that was free when asked (another process may take it before the caller
/// binds it: servers that must have it retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
