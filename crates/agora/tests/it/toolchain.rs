//! Toolchain downloads end to end: Go 1.23 clients told `GOTOOLCHAIN=go1.27.3` (or `auto`, in a
//! module that needs Go 1.27.3) fetch the real Go 1.27.3 distribution (module
//! `golang.org/toolchain`) through agora from an upstream proxy, agora and the clients verify it
//! against a checksum database on loopback, and the downloaded toolchain runs. The zip is large (tens of MiB): agora must stream it, so its memory
//! is checked too.

use agora_testkit::toolchain::MODULE;
use agora_testkit::{GoClient, SumdbServer, ToolchainModule, UpstreamProxy};

use crate::support::*;

/// Resident memory figures of a process in KiB: (current, peak), from `/proc`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn an_old_go_command_downloads_a_new_toolchain_through_agora() {
    let started = std::time::Instant::now();
    let toolchain = ToolchainModule::get();
    let built = started.elapsed();
    let zip_size = std::fs::metadata(&toolchain.zip).unwrap().len();
    let zip_hash =
        agora_gomod::dirhash::hash_zip(std::fs::File::open(&toolchain.zip).unwrap()).unwrap();
    let mod_hash = agora_gomod::dirhash::hash_go_mod(toolchain.go_mod.as_bytes());
    let hashed = started.elapsed() - built;

    let db = SumdbServer::start("sumdb.agora.test");
    db.know(MODULE, &toolchain.version, &zip_hash, &mod_hash);
    let up = UpstreamProxy::serve_dir(&toolchain.root);
    let data = tempfile::tempdir().unwrap();
    let agora = bare_builder(data.path(), &up.url())
        .env("GOSUMDB", db.gosumdb())
        .start();
    let (idle, _) = memory_kib(agora.pid());

    // `GOTOOLCHAIN=go1.27.3`, outside any module. The client checks the checksum database
    // through agora's /sumdb/ proxy, with its key.
    let switching = std::time::Instant::now();
    let go = GoClient::oldest()
        .env("GOTOOLCHAIN", &toolchain.go_version)
        .env("GOSUMDB", db.key());
    go_version(
        &go,
        go.work_dir(),
        agora.url(),
        &toolchain.go_version,
        &agora,
    );

    // `GOTOOLCHAIN=auto` in a module that needs the newer Go: another client, served from
    // agora's cache this time.
    let go = GoClient::oldest()
        .env("GOTOOLCHAIN", "auto")
        .env("GOSUMDB", db.key());
    let module = go.work_dir().join("m");
    std::fs::create_dir_all(&module).unwrap();
    let go_line = toolchain.go_version.trim_start_matches("go");
    std::fs::write(
        module.join("go.mod"),
        format!("module example.com/m\n\ngo {go_line}\n"),
    )
    .unwrap();
    go_version(&go, module, agora.url(), &toolchain.go_version, &agora);
    let switched = switching.elapsed();
    let (_, peak) = memory_kib(agora.pid());

    // agora fetched it once for both, verified it against the database, and keeps it.
    let zip_path = artifact_path(MODULE, &toolchain.version, "zip");
    assert_eq!(up.count(&zip_path), 1, "{:?}", up.requests());
    let lookup = format!("/lookup/{MODULE}@{}", toolchain.version);
    assert!(db.requests().contains(&lookup), "{:?}", db.requests());
    let stored = data.path().join(zip_path.trim_start_matches('/'));
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), zip_size);

    // Streamed, not held: agora's peak resident memory grew by far less than the zip's size.
    let grown = peak.saturating_sub(idle) * 1024;
    eprintln!(
        "toolchain zip {:.1} MiB built in {:.1?}, hashed in {:.1?}; two clients' go version \
         (download, verify, unpack, run) {:.1?}; agora idle {:.1} MiB, peak {:.1} MiB; whole test {:.1?}",
        mib(zip_size),
        built,
        hashed,
        switched,
        mib(idle * 1024),
        mib(peak * 1024),
        started.elapsed()
    );
    assert!(
        zip_size > 64 << 20,
        "the distribution should make a zip of tens of MiB, got {zip_size} bytes"
    );
    assert!(
        grown < 48 << 20,
        "agora's peak memory grew by {:.1} MiB while serving a {:.1} MiB zip",
        mib(grown),
        mib(zip_size)
    );
}

/// Runs `go version` in `dir` through agora and checks that the go command downloaded
/// `go_version` and ran it.
fn go_version(
    go: &GoClient,
    dir: std::path::PathBuf,
    proxy: &str,
    go_version: &str,
    agora: &agora_testkit::Agora,
) {
    let mut cmd = go.command(["version"]);
    cmd.current_dir(dir).env("GOPROXY", proxy);
    let out = go.run(cmd).expect("run go version");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{stdout}{stderr}\n{}",
        agora.stderr_log()
    );
    assert!(
        stdout.starts_with(&format!("go version {go_version} ")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("go: downloading {go_version}")),
        "{stderr}"
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
