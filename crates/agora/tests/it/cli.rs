//! The command line: `config show`, start-up errors.

use std::process::Command;

use crate::support::agora_bin;

fn agora_cmd() -> Command {
    let mut c = Command::new(agora_bin());
    for var in [
        "GOPROXY",
        "GOPRIVATE",
        "GONOPROXY",
        "GONOSUMDB",
        "GOSUMDB",
        "GOINSECURE",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn config_show_merges_layers_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agora.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:4000\"\n[routing]\nprivate = [\"gitlab.corp.example\"]\n",
    )
    .unwrap();
    let out = agora_cmd()
        .args(["config", "show", "--config"])
        .arg(&file)
        .args(["--data", "/srv/agora"])
        .env("GOPROXY", "https://bob:hunter2@proxy.corp.example,direct")
        .env("AGORA_LISTEN", "127.0.0.1:5000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen = \"127.0.0.1:5000\""), "{stdout}");
    assert!(stdout.contains("data_dir = \"/srv/agora\""), "{stdout}");
    assert!(stdout.contains("gitlab.corp.example"), "{stdout}");
    assert!(
        stdout.contains("https://***@proxy.corp.example,direct"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn unknown_configuration_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agora.toml");
    std::fs::write(&file, "[upstream]\nproxy_url = \"https://goproxy.cn\"\n").unwrap();
    let out = agora_cmd()
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy_url"));

    let out = agora_cmd()
        .args(["config", "show"])
        .env("AGORA_UPSTREAM_PROXYY", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGORA_UPSTREAM_PROXYY"));
}

#[test]
fn unusable_data_directory_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = agora_cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(blocker.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("agora: error"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("cannot use data directory"), "{stderr}");
}
