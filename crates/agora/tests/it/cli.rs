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

fn athens_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/athens")
        .join(name)
}

/// An agora command with no Athens variables from the machine.
fn import_athens_cmd() -> Command {
    let mut c = agora_cmd();
    for (k, _) in std::env::vars() {
        if k.starts_with("ATHENS_")
            || k.starts_with("AWS_")
            || k == "PORT"
            || k.starts_with("BASIC_AUTH_")
        {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn import_athens_writes_a_config_agora_loads() {
    let out = import_athens_cmd()
        .args(["config", "import-athens"])
        .arg(athens_fixture("seed.toml"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("[[filter.rules]]"), "{stdout}");
    assert!(
        stdout.contains("pattern = \"golang.org/x/tools\""),
        "{stdout}"
    );
    let notes: Vec<&str> = stderr.lines().collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].starts_with("athens: action needed: Storage.Disk.RootPath: ")
            && notes[0].contains("agora import /var/lib/athens"),
        "{stderr}"
    );

    // The output, saved, is a configuration `agora config show` accepts.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agora.toml");
    let out = import_athens_cmd()
        .args(["config", "import-athens", "--data-dir", "/srv/agora", "-o"])
        .arg(&file)
        .arg(athens_fixture("seed.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the configuration went to the file");
    let shown = agora_cmd()
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("data_dir = \"/srv/agora\""), "{text}");
    assert!(text.contains("nosumdb = ["), "{text}");

    // An existing file is kept unless --force.
    let again = |force: bool| {
        let mut c = import_athens_cmd();
        c.args(["config", "import-athens", "-o"]).arg(&file);
        if force {
            c.arg("--force");
        }
        c.arg(athens_fixture("config.dev.toml")).output().unwrap()
    };
    let out = again(false);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists; pass --force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("/srv/agora"));
    let out = again(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("backend = \"memory\""));
}

#[test]
fn import_athens_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let athens = dir.path().join("athens.toml");
    std::fs::write(
        &athens,
        "StorageType = \"s3\"\nGithubToken = \"ghp_in_the_file\"\n\
         [Storage.S3]\nBucket = \"mods\"\nRegion = \"eu-west-1\"\nKey = \"AKIAEXAMPLE\"\nSecret = \"s3-secret-in-file\"\n\
         [SingleFlight]\n[SingleFlight.Redis]\nEndpoint = \"redis://:redis-pw@redis:6379\"\n",
    )
    .unwrap();
    let out = import_athens_cmd()
        .args(["config", "import-athens"])
        .arg(&athens)
        .env("BASIC_AUTH_USER", "builder")
        .env("BASIC_AUTH_PASS", "basic-auth-pw")
        .env("ATHENS_SINGLE_FLIGHT_TYPE", "redis")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    for secret in [
        "ghp_in_the_file",
        "s3-secret-in-file",
        "redis-pw",
        "basic-auth-pw",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    assert!(
        all.contains("secret_access_key_env = \"AWS_SECRET_ACCESS_KEY\""),
        "{all}"
    );
    assert!(
        all.contains("password_env = \"ATHENS_GITHUB_TOKEN\""),
        "{all}"
    );
    assert!(all.contains("hash = \"sha256:"), "{all}");
}

#[test]
fn import_athens_bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let athens = dir.path().join("athens.toml");
    for (text, want) in [
        (
            "Timeout = \"five minutes\"\n",
            "Timeout: expected a whole number",
        ),
        ("FilterFile = \"nowhere.conf\"\n", "nowhere.conf"),
        ("[Storage\n", "parsing the Athens configuration"),
    ] {
        std::fs::write(&athens, text).unwrap();
        let out = import_athens_cmd()
            .args(["config", "import-athens"])
            .arg(&athens)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(
            stderr.starts_with("agora: error: ") && stderr.contains(want),
            "{text}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = import_athens_cmd()
        .args(["config", "import-athens", "--force"])
        .arg(&athens)
        .output()
        .unwrap();
    assert!(!out.status.success(), "--force needs --output");
}
