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

/// `agora auth` as the go command runs it (GOAUTH): the first call prints the credential set,
/// the second (a refused URL as argument, the answer on stdin) the same for agora's URLs and
/// nothing for other hosts; no token is a one-line error on stderr.
#[test]
fn auth_command_speaks_the_goauth_protocol() {
    use std::io::Write;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "agora_s3cr3t\n").unwrap();
    let run = |args: &[&str], stdin: &str, env: &[(&str, &str)]| {
        let mut child = agora_cmd()
            .arg("auth")
            .args(args)
            .env_remove("AGORA_URL")
            .env_remove("AGORA_TOKEN")
            .env_remove("AGORA_TOKEN_FILE")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = token.to_str().unwrap();
    let set = "https://agora.corp.example\nhttps://agora.corp.example:443\n\n\
               Authorization: Bearer agora_s3cr3t\n\n";
    let flags = ["--url", "https://agora.corp.example", "--token-file", file];
    assert_eq!(run(&flags, "", &[]), (true, set.to_owned(), String::new()));

    let answer = "HTTP/2.0 403 Forbidden\nContent-Type: text/plain; charset=utf-8\n\n";
    let refused = [
        &flags[..],
        &["https://agora.corp.example/corp.example/x/@v/list"],
    ]
    .concat();
    assert_eq!(
        run(&refused, answer, &[]),
        (true, set.to_owned(), String::new())
    );
    let elsewhere = [&flags[..], &["https://github.com/x/y?go-get=1"]].concat();
    assert_eq!(
        run(&elsewhere, answer, &[]),
        (true, String::new(), String::new())
    );

    // From the environment alone.
    let env = [
        ("AGORA_URL", "https://agora.corp.example"),
        ("AGORA_TOKEN_FILE", file),
    ];
    assert_eq!(run(&[], "", &env), (true, set.to_owned(), String::new()));

    let (ok, out, err) = run(&["--url", "https://agora.corp.example"], "", &[]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.starts_with("agora: error: no agora token") && err.lines().count() == 1,
        "{err}"
    );

    let out = agora_cmd().args(["auth", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for want in ["GOAUTH='agora auth", "--token-file", "AGORA_TOKEN"] {
        assert!(help.contains(want), "{want}: {help}");
    }
}
