//! What ships agora: the container image's Dockerfile, the Debian package's systemd unit and the
//! list of runtime packages they share, and the command-line habits packages rely on (man
//! pages, shell completions, `agora healthcheck`).
//!
//! Docker cannot build here (no daemon, no registry), so the Dockerfile is checked by reading
//! it: its runtime stage must install exactly `packaging/runtime-packages`, the list the tests'
//! setup installs and the .deb depends on.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{agora_bin, agora_cmd, bare_builder};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn runtime_packages() -> Vec<String> {
    let mut list: Vec<String> = read("packaging/runtime-packages")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    list.sort();
    list
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                if !cur.trim().is_empty() {
                    out.push(cur.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                cur.clear();
            }
        }
    }
    out
}

/// The packages of `apt-get install` commands in `instructions`.
fn apt_installs(instructions: &[String]) -> Vec<String> {
    let mut pkgs = Vec::new();
    for i in instructions.iter().filter(|i| i.starts_with("RUN ")) {
        for cmd in i.split("&&") {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let Some(at) = words.windows(2).position(|w| w == ["apt-get", "install"]) else {
                continue;
            };
            pkgs.extend(
                words[at + 2..]
                    .iter()
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| w.to_string()),
            );
        }
    }
    pkgs.sort();
    pkgs
}

#[test]
fn dockerfile_runtime_installs_exactly_the_runtime_packages() {
    let all = dockerfile_instructions();
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.starts_with("FROM "))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {all:#?}"
    );
    let (build, runtime) = (&all[stages[0]..stages[1]], &all[stages[1]..]);
    assert!(build[0].contains(" AS build"), "{}", build[0]);
    assert!(
        build
            .iter()
            .any(|i| i.contains("cargo build --release --locked -p agora")),
        "{build:#?}"
    );
    assert!(
        runtime[0].starts_with("FROM debian:bookworm-slim"),
        "{}",
        runtime[0]
    );
    assert_eq!(
        apt_installs(runtime),
        runtime_packages(),
        "runtime stage vs packaging/runtime-packages"
    );

    let has = |prefix: &str| runtime.iter().any(|i| i.starts_with(prefix));
    assert!(has("USER agora"), "{runtime:#?}");
    assert!(has("VOLUME [\"/var/lib/agora\"]"), "{runtime:#?}");
    assert!(has("ENV AGORA_DATA_DIR=/var/lib/agora"), "{runtime:#?}");
    assert!(
        has("HEALTHCHECK ")
            && runtime
                .iter()
                .any(|i| i.contains("CMD [\"agora\", \"healthcheck\"]"))
    );
    assert!(has("COPY --from=build "), "{runtime:#?}");
    // The exposed port is the one agora listens on by default.
    let (ok, shown) = agora_cmd(["config", "show"]);
    assert!(ok, "{shown}");
    let port = shown
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"0.0.0.0:"))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("default listen address in {shown}"));
    assert!(
        has(&format!("EXPOSE {port}")),
        "EXPOSE {port}: {runtime:#?}"
    );

    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

/// The setup script installs the same list for the tests; this test fails if it stops reading it.
#[test]
fn setup_installs_the_runtime_packages() {
    let setup = read("scripts/setup");
    assert!(
        setup.contains("packaging/runtime-packages"),
        "scripts/setup must read the list"
    );
    let deb = read("scripts/package-deb");
    assert!(
        deb.contains("packaging/runtime-packages"),
        "the .deb must depend on the list"
    );
    for p in runtime_packages() {
        let installed = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", &p])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
            .unwrap_or(false);
        assert!(
            installed,
            "{p} (packaging/runtime-packages) is not installed: run scripts/setup"
        );
    }
}

/// `systemd-analyze verify` on the unit as shipped, with ExecStart pointed at the binary under
/// test (verify insists that the executable exists). No running systemd is needed.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is missing: scripts/setup installs the systemd package"
    );
    let unit = read("packaging/debian/agora.service");
    for setting in [
        "User=agora",
        "StateDirectory=agora",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecStart=/usr/bin/agora serve --config /etc/agora/agora.toml",
    ] {
        assert!(unit.contains(setting), "agora.service lacks {setting:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.service");
    std::fs::write(&path, unit.replace("/usr/bin/agora", agora_bin())).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd's own exposure score (0 = locked down, 10 = exposed); "OK" is below 4.
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for agora.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.0, "exposure {score}:\n{text}");

    let sysusers = read("packaging/debian/agora.sysusers");
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u agora - ") && l.contains(" /var/lib/agora ")),
        "{sysusers}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    for (shell, marker) in [
        ("bash", "_agora()"),
        ("zsh", "#compdef agora"),
        ("fish", "complete -c agora"),
    ] {
        let out = Command::new(agora_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(text.contains(marker), "{shell}: {marker} missing");
        assert!(
            text.contains("import-athens"),
            "{shell}: subcommands are completed"
        );
    }
    let out = Command::new(agora_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));

    let out = Command::new(agora_bin()).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        page.starts_with(".ie") || page.contains(".TH agora 1"),
        "{page}"
    );
    assert!(
        page.contains("self\\-hosted Go module proxy")
            || page.contains("self-hosted Go module proxy")
    );

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let (ok, out) = agora_cmd(["man".as_ref(), "--dir".as_ref(), pages.as_os_str()]);
    assert!(ok, "{out}");
    for name in [
        "agora.1",
        "agora-serve.1",
        "agora-config-import-athens.1",
        "agora-token-add.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}

#[test]
fn healthcheck_asks_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let agora = bare_builder(&dir.path().join("data"), "off").start();
    let url = format!("{}/readyz", agora.url().trim_end_matches('/'));
    let (ok, out) = agora_cmd(["healthcheck", "--url", url.as_str()]);
    assert!(ok, "{out}");
    assert!(out.contains("answered 200"), "{out}");
    // From the configuration: the listen address, through loopback.
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/readyz")
        .to_owned();
    let (ok, out) = agora_cmd([
        "healthcheck",
        "--listen",
        format!("0.0.0.0:{port}").as_str(),
    ]);
    assert!(ok, "{out}");

    drop(agora);
    let (ok, out) = agora_cmd(["healthcheck", "--url", url.as_str()]);
    assert!(!ok, "a stopped agora is unhealthy: {out}");
    assert!(out.contains("connecting to"), "{out}");
    let (ok, out) = agora_cmd(["healthcheck", "--url", "https://127.0.0.1:1/readyz"]);
    assert!(!ok && out.contains("only http://"), "{out}");
}
