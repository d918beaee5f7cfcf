//! Toolchain downloads end to end: a Go 1.23 client told `GOTOOLCHAIN=go1.27.3` fetches the real
//! Go 1.27.3 distribution (module `golang.org/toolchain`) through agora from an upstream proxy,
//! agora and the client both verify it against a checksum database on loopback, and the
//! downloaded toolchain runs. The zip is large (tens of MiB): agora must stream it, so its memory
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

    // The client checks the checksum database through agora's /sumdb/ proxy, with its key.
    let go = GoClient::oldest()
        .env("GOTOOLCHAIN", &toolchain.go_version)
        .env("GOSUMDB", db.key());
    let mut cmd = go.command(["version"]);
    cmd.env("GOPROXY", agora.url());
    let switching = std::time::Instant::now();
    let out = go.run(cmd).expect("run go version");
    let switched = switching.elapsed();
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
        stdout.starts_with(&format!("go version {} ", toolchain.go_version)),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("go: downloading {}", toolchain.go_version)),
        "{stderr}"
    );
    let (_, peak) = memory_kib(agora.pid());

    // agora fetched it once, verified it against the database, and keeps it.
    let zip_path = artifact_path(MODULE, &toolchain.version, "zip");
    assert_eq!(up.count(&zip_path), 1, "{:?}", up.requests());
    let lookup = format!("/lookup/{MODULE}@{}", toolchain.version);
    assert!(db.requests().contains(&lookup), "{:?}", db.requests());
    let stored = data.path().join(zip_path.trim_start_matches('/'));
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), zip_size);

    // Streamed, not held: agora's peak resident memory grew by far less than the zip's size.
    let grown = peak.saturating_sub(idle) * 1024;
    eprintln!(
        "toolchain zip {:.1} MiB built in {:.1?}, hashed in {:.1?}; go version (download, \
         verify, unpack, run) {:.1?}; agora idle {:.1} MiB, peak {:.1} MiB; whole test {:.1?}",
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
