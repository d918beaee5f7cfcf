//! Private modules straight from git: an "internal GitLab" over HTTPS (private CA, basic auth) and
//! over SSH (key auth), judged against the go command's own answers.

use std::path::Path;

use agora_testkit::fixtures::{Expect, PRIVATE_HOST};
use agora_testkit::gitserver::GoGetMode;
use agora_testkit::go::zip_entries;
use agora_testkit::{http, private_matrix, Agora, GitHost, GoClient, HttpsGitServer, SshGitServer};

use crate::support::*;

fn go_via(agora: &Agora) -> GoClient {
    go_via_client(GoClient::find(), agora)
}

fn go_via_client(go: GoClient, agora: &Agora) -> GoClient {
    go.env("GONOSUMDB", "*.corp.example")
        .env("GOSUMDB", "off")
        .env("GOPROXY", agora.url())
}

#[test]
fn private_matrix_through_agora_matches_the_go_command() {
    let host = GitHost::new();
    let fx = private_matrix(&host);
    let srv = HttpsGitServer::serve(&host, PRIVATE_HOST);
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[PRIVATE_HOST], "");
    let agora = private_agora(tmp.path(), &config, "off", &[]);

    // The client has neither git credentials nor the CA: everything comes from agora.
    let answers = fx.record(&go_via(&agora), agora.url());
    let golden = fx.golden();
    let mut diff = golden.diff(&answers);
    diff.extend(answers.diff(&golden));
    assert!(
        diff.is_empty(),
        "agora's answers differ from the go command's (GOPROXY=direct):\n{}",
        diff.join("\n")
    );

    // The oldest supported client gets the same answers, except that it refuses the modules
    // that ask for a newer Go; their zips are checked against the file list the zip rules give.
    let mut old = fx.record(&go_via_client(GoClient::oldest(), &agora), agora.url());
    let mismatches = fx.check(&old, false);
    assert!(mismatches.is_empty(), "Go 1.23: {}", mismatches.join("\n"));
    let mut golden = golden;
    for m in fx.modules() {
        for case in &m.cases {
            let Expect::TooNewForGo(version) = &case.expect else {
                continue;
            };
            let key = format!("{}@{}", m.path, case.query);
            let (status, _, zip) = http::get(&format!(
                "{}{}",
                agora.url(),
                artifact_path(&m.path, version, "zip")
            ));
            assert_eq!(status, 200, "{key}: {}", http::text(&zip));
            let prefix = format!("{}@{version}/", m.path);
            let mut files: Vec<String> = zip_entries(&zip)
                .into_iter()
                .map(|(name, _)| name.strip_prefix(&prefix).unwrap_or(&name).to_owned())
                .collect();
            files.sort();
            assert_eq!(Some(&files), case.files.as_ref(), "{key}: zip file list");
            for a in [&mut old, &mut golden] {
                a.queries.remove(&key);
            }
        }
    }
    let mut diff = golden.diff(&old);
    diff.extend(old.diff(&golden));
    assert!(
        diff.is_empty(),
        "Go 1.23's answers through agora differ from Go 1.27's direct ones:\n{}",
        diff.join("\n")
    );
    let log = agora.stderr_log();
    assert!(
        !log.contains(srv.token()),
        "the token leaked into agora's log"
    );
}

#[test]
fn go_builds_a_program_with_private_modules_over_ssh_and_https_and_a_public_one() {
    const HTTPS: &str = "gitlab-build.corp.example";
    const SSH: &str = "gitlab-ssh.corp.example";
    let host = GitHost::new().host(HTTPS).host(SSH);
    let lib = |repo: &str, module: &str, pkg: &str, value: &str| {
        let mut r = host.repo(repo);
        r.write("go.mod", format!("module {module}\n\ngo 1.21\n"))
            .write(
                &format!("{pkg}.go"),
                format!("package {pkg}\n\n// Value is exported.\nconst Value = {value:?}\n"),
            );
        r.commit(pkg);
        r.tag("v1.0.0");
    };
    lib(
        &format!("{HTTPS}/team/httpslib"),
        &format!("{HTTPS}/team/httpslib"),
        "httpslib",
        "https",
    );
    // A GitLab subgroup: the server's go-get answer is wrong for it, so agora needs a rule.
    lib(
        &format!("{HTTPS}/group/sub/deep"),
        &format!("{HTTPS}/group/sub/deep"),
        "deep",
        "subgroup",
    );
    lib(
        &format!("{SSH}/team/sshlib"),
        &format!("{SSH}/team/sshlib"),
        "sshlib",
        "ssh",
    );

    let https = HttpsGitServer::serve(&host, HTTPS);
    https.set_go_get(GoGetMode::FirstTwoElements);
    let ssh = SshGitServer::serve(&host, SSH);
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let rules = format!(
        "\n[[git.rules]]\npattern = \"{HTTPS}/group/sub/*\"\nurl = \"https://{HTTPS}/{{path}}.git\"\n\n[[git.rules]]\npattern = \"{SSH}/*/*\"\nurl = \"ssh://{SSH}/{{path}}.git\"\n"
    );
    let config = gitlab_config(tmp.path(), &https, &[HTTPS, SSH], &rules);
    let agora = private_agora(tmp.path(), &config, &up.url(), &ssh.ssh_env());

    let program = tmp.path().join("program");
    std::fs::create_dir_all(&program).unwrap();
    std::fs::write(
        program.join("go.mod"),
        format!(
            "module example.com/app\n\ngo 1.21\n\nrequire (\n\t{HTTPS}/team/httpslib v1.0.0\n\t{HTTPS}/group/sub/deep v1.0.0\n\t{SSH}/team/sshlib v1.0.0\n\tgithub.com/agora-fixtures/greet v1.1.0\n)\n"
        ),
    )
    .unwrap();
    std::fs::write(
        program.join("main.go"),
        format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"{HTTPS}/group/sub/deep\"\n\t\"{HTTPS}/team/httpslib\"\n\t\"{SSH}/team/sshlib\"\n\t\"github.com/agora-fixtures/greet\"\n)\n\nfunc main() {{ fmt.Println(httpslib.Value, deep.Value, sshlib.Value, greet.Hello(\"x\")) }}\n"
        ),
    )
    .unwrap();
    let go = go_via(&agora);
    go.build(agora.url(), &program).unwrap_or_else(|e| {
        panic!(
            "go build through agora failed: {e}\nagora log:\n{}",
            agora.stderr_log()
        )
    });
    assert!(
        up.requests().iter().all(|p| !p.contains("corp.example")),
        "private paths went upstream: {:?}",
        up.requests()
    );
    assert!(!ssh.requests().is_empty(), "the SSH module came over SSH");
    assert!(https.fetches("team/httpslib") >= 1);
    assert!(https.fetches("group/sub/deep") >= 1);
}

#[test]
fn a_new_tag_of_a_mirrored_repository_costs_a_fetch_not_a_clone() {
    const H: &str = "gitlab-mirror.corp.example";
    let (host, _, mut repo) = team_lib(H);
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "[git]\nrefresh_interval = \"0s\"\n");
    let trace = tmp.path().join("git-trace.log");
    let agora = private_agora(
        tmp.path(),
        &config,
        "off",
        &[("GIT_TRACE", trace.clone().into_os_string())],
    );
    let info = |v: &str| {
        http::get(&format!(
            "{}{}",
            agora.url(),
            artifact_path(&format!("{H}/team/lib"), v, "info")
        ))
    };
    assert_eq!(info("v1.0.0").0, 200);
    let first = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(
        count_git(&first, "init") + count_git(&first, "clone"),
        1,
        "{first}"
    );

    repo.write("more.go", "package lib\n");
    repo.commit("two");
    repo.tag("v1.1.0");
    let (s, _, body) = info("v1.1.0");
    assert_eq!(s, 200, "{}", http::text(&body));
    let all = std::fs::read_to_string(&trace).unwrap();
    let second = &all[first.len()..];
    assert_eq!(
        count_git(second, "init") + count_git(second, "clone"),
        0,
        "{second}"
    );
    assert!(count_git(second, "fetch") >= 1, "{second}");
}

/// Number of `git <cmd>` invocations in a GIT_TRACE log.
fn count_git(trace: &str, cmd: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains(&format!("built-in: git {cmd}")))
        .count()
}

#[test]
fn misconfigurations_get_the_right_status_a_clear_message_and_no_secret() {
    const H: &str = "gitlab-errors.corp.example";
    const SSH: &str = "gitlab-ssh-errors.corp.example";
    let host = GitHost::new().host(H).host(SSH);
    for repo in [format!("{H}/team/lib"), format!("{SSH}/team/lib")] {
        let mut r = host.repo(&repo);
        r.write("go.mod", format!("module {repo}\n\ngo 1.21\n"));
        r.commit("one");
        r.tag("v1.0.0");
    }
    let srv = HttpsGitServer::serve(&host, H);
    let ssh = SshGitServer::serve(&host, SSH);
    let ssh_rule =
        format!("\n[[git.rules]]\npattern = \"{SSH}/*/*\"\nurl = \"ssh://{SSH}/{{path}}.git\"\n");

    struct Case {
        name: &'static str,
        module: String,
        version: &'static str,
        status: u16,
        message: &'static str,
        doctor: &'static str,
    }
    let lib = format!("{H}/team/lib");
    let cases = [
        Case {
            name: "ok",
            module: lib.clone(),
            version: "v1.0.0",
            status: 200,
            message: "",
            doctor: "verdict: OK",
        },
        Case {
            name: "missing tag",
            module: lib.clone(),
            version: "v1.9.0",
            status: 404,
            message: "v1.9.0",
            doctor: "no such version",
        },
        Case {
            name: "missing repo",
            module: format!("{H}/team/nothing"),
            version: "v1.0.0",
            status: 404,
            message: "not found",
            doctor: "FAILED",
        },
        Case {
            name: "wrong token",
            module: lib.clone(),
            version: "v1.0.0",
            status: 403,
            message: "credentials",
            doctor: "authentication refused",
        },
        Case {
            name: "unknown CA",
            module: lib.clone(),
            version: "v1.0.0",
            status: 403,
            message: "not trusted",
            doctor: "ca_file",
        },
        Case {
            name: "wrong SSH key",
            module: format!("{SSH}/team/lib"),
            version: "v1.0.0",
            status: 403,
            message: "credentials",
            doctor: "authentication refused",
        },
    ];
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut config_text =
            std::fs::read_to_string(gitlab_config(tmp.path(), &srv, &[H, SSH], &ssh_rule)).unwrap();
        let mut env: Vec<(&str, std::ffi::OsString)> = ssh.ssh_env();
        match case.name {
            "wrong token" => {
                config_text = config_text.replace(srv.token(), "glpat-wrong-secret-123")
            }
            "unknown CA" => {
                config_text = config_text.replace(
                    &format!("ca_file = {:?}\n", srv.ca_cert().display().to_string()),
                    "",
                );
            }
            "wrong SSH key" => {
                env = vec![(
                    "GIT_SSH_COMMAND",
                    format!("ssh -F {}", ssh.wrong_key_ssh_config().display()).into(),
                )];
            }
            _ => {}
        }
        let config = tmp.path().join("case.toml");
        std::fs::write(&config, &config_text).unwrap();
        let agora = private_agora(tmp.path(), &config, "off", &env);
        let (status, _, body) = http::get(&format!(
            "{}{}",
            agora.url(),
            artifact_path(&case.module, case.version, "info")
        ));
        let body = http::text(&body);
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(body.contains(case.message), "{}: {body}", case.name);

        let mut doctor = std::process::Command::new(agora_bin());
        doctor
            .args([
                "doctor",
                &format!("{}@{}", case.module, case.version),
                "--config",
            ])
            .arg(&config)
            .args(["--data"])
            .arg(tmp.path().join("doctor-data"))
            .env("GIT_CONFIG_GLOBAL", tmp.path().join("empty.gitconfig"))
            .env_remove("GOPRIVATE")
            .env_remove("GOPROXY");
        for (k, v) in &env {
            doctor.env(k, v);
        }
        let out = doctor.output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report.contains(case.doctor),
            "{}: doctor said:\n{report}",
            case.name
        );
        assert_eq!(
            out.status.success(),
            case.status == 200,
            "{}: {report}",
            case.name
        );
        for secret in [srv.token(), "glpat-wrong-secret-123"] {
            assert!(!body.contains(secret), "{}: secret in response", case.name);
            assert!(
                !report.contains(secret),
                "{}: secret in doctor output",
                case.name
            );
            assert!(
                !agora.stderr_log().contains(secret),
                "{}: secret in log",
                case.name
            );
        }
    }
}

/// Without credentials in agora's config, the machine's `.netrc` is used (by git, and for go-get
/// lookups), as on a developer's laptop.
#[test]
fn netrc_credentials_are_used_like_on_a_laptop() {
    const H: &str = "gitlab-netrc.corp.example";
    let host = GitHost::new().host(H);
    let mut r = host.repo(&format!("{H}/team/lib"));
    r.write("go.mod", format!("module {H}/team/lib\n\ngo 1.21\n"));
    r.commit("one");
    r.tag("v1.0.0");
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".netrc"), srv.netrc()).unwrap();
    let config = tmp.path().join("agora.toml");
    std::fs::write(
        &config,
        format!(
            "ca_file = {:?}\n[routing]\nprivate = [{H:?}]\n",
            srv.ca_cert().display().to_string()
        ),
    )
    .unwrap();
    let agora = private_agora(
        tmp.path(),
        &config,
        "off",
        &[("HOME", home.into_os_string())],
    );
    let (status, _, body) = http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(&format!("{H}/team/lib"), "v1.0.0", "zip")
    ));
    assert_eq!(status, 200, "{}", http::text(&body));
    assert!(srv.requests().iter().any(|r| r.authenticated));
    assert!(!agora.stderr_log().contains(srv.token()));
}

/// Adds tags to `repo` that no mirror on a file system can hold: an element longer than a file
/// name, and a tag that is also a "directory" of another (`v1.1.0` and `v1.1.0/x`). Only a
/// `packed-refs` file holds such refs, as on a git server that stores refs in a database.
fn add_unmirrorable_tags(repo: &agora_testkit::Repo) -> String {
    let long = format!("v1.2.0-{}", "x".repeat(300));
    repo.git(["pack-refs", "--all"]);
    let head = repo.head();
    let packed = repo.path().join(".git/packed-refs");
    let text = std::fs::read_to_string(&packed).unwrap();
    // Without the "sorted" trait git sorts the file itself when reading it.
    let mut text = text.replacen(" sorted", "", 1);
    for tag in [long.as_str(), "v1.1.0/x"] {
        text.push_str(&format!("{head} refs/tags/{tag}\n"));
    }
    std::fs::write(&packed, text).unwrap();
    assert!(
        repo.git(["tag", "-l"]).contains(&long),
        "the long tag exists"
    );
    long
}

/// Regression: one ref git cannot store in a mirror (a name element longer than a file name,
/// or a name that is also a directory of another ref) made the whole `git fetch` fail, and every
/// request for the repository answered 502. Such refs are skipped (and logged); the rest of the
/// repository is served.
#[test]
fn refs_that_cannot_be_mirrored_are_skipped_not_fatal() {
    const H: &str = "gitlab-refs.corp.example";
    let (host, module, mut repo) = team_lib(H);
    repo.write("more.go", "package lib\n");
    repo.commit("two");
    repo.tag("v1.1.0");
    add_unmirrorable_tags(&repo);
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "[git]\nrefresh_interval = \"0s\"\n");
    let agora = private_agora(tmp.path(), &config, "off", &[]);

    let get = |path: String| get_text(&agora, &path);
    let (status, list) = get(format!("/{module}/@v/list"));
    assert_eq!(status, 200, "{list}\n{}", agora.stderr_log());
    let mut versions: Vec<&str> = list.lines().collect();
    versions.sort_unstable();
    assert_eq!(versions, ["v1.0.0", "v1.1.0"]);
    for v in ["v1.0.0", "v1.1.0"] {
        let (status, body) = get(artifact_path(&module, v, "zip"));
        assert_eq!(status, 200, "{v}: {body}");
    }
    // A second fetch (refresh interval 0) still works, and so does a new tag.
    repo.write("third.go", "package lib\n");
    repo.commit("three");
    repo.tag("v1.3.0");
    let (status, body) = get(artifact_path(&module, "v1.3.0", "info"));
    assert_eq!(status, 200, "{body}");
    let log = agora.stderr_log();
    assert!(
        log.contains("cannot be mirrored") && log.contains("v1.1.0/x"),
        "the skipped refs are logged: {log}"
    );
}

/// Every file under `dir` whose contents include `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(dir.join(f))
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Regression: a `[[git.rules]]` URL with `user:password@` put the password on git's command
/// lines (`git remote-https origin https://user:password@…`, visible in `ps`) and into the
/// mirror's `config` file. The credentials are taken out of the URL and handed to git like
/// `[[git.credentials]]` (an `Authorization` header through the environment); the fetch works.
#[test]
fn credentials_in_a_rule_url_reach_neither_command_lines_nor_files() {
    const H: &str = "gitlab-userinfo.corp.example";
    let (host, module, _) = team_lib(H);
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agora.toml");
    std::fs::write(
        &config,
        format!(
            "ca_file = {ca:?}\n[routing]\nprivate = [\"{H}\"]\n\n[[git.rules]]\npattern = \"{H}/*/*\"\nurl = \"https://{user}:{token}@{H}/{{path}}.git\"\n",
            ca = srv.ca_cert().display().to_string(),
            user = srv.user(),
            token = srv.token(),
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let trace = run.join("git-trace.log");
    let agora = private_agora(
        &run,
        &config,
        "off",
        &[("GIT_TRACE", trace.clone().into_os_string())],
    );
    for ext in ["info", "mod", "zip"] {
        let (status, _, body) = http::get(&format!(
            "{}{}",
            agora.url(),
            artifact_path(&module, "v1.0.0", ext)
        ));
        assert_eq!(status, 200, "{ext}: {}", http::text(&body));
    }
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(traced.contains("remote-https"), "git was traced: {traced}");
    assert_eq!(
        files_containing(&run, srv.token()),
        Vec::<String>::new(),
        "the password is in these files (mirror config, git trace of command lines, ...)"
    );
    assert!(!agora.stderr_log().contains(srv.token()));
    assert!(!agora.stdout_log().contains(srv.token()));
}

/// Regression: error bodies sent to clients carried agora's internals: git command lines
/// (`git ls-remote -- https://...`), the mirror directory under the data directory and the
/// repository URL a `[[git.rules]]` entry rewrote the module path to. Clients get the cause in
/// the go command's terms; agora's log keeps the detail for the operator.
#[test]
fn error_bodies_name_the_cause_not_commands_paths_or_internal_urls() {
    const H: &str = "gitlab-leaks.corp.example";
    const ALIAS: &str = "alias-leaks.corp.example";
    let host = GitHost::new().host(H);
    let mut r = host.repo(&format!("{H}/team/lib"));
    r.write("go.mod", format!("module {ALIAS}/lib\n\ngo 1.21\n"));
    r.commit("one");
    r.tag("v1.0.0");
    let srv = HttpsGitServer::serve(&host, H);
    // The module path names a host that is not the git server's: the URL must stay internal.
    let rule = format!(
        "\n[[git.rules]]\npattern = \"{ALIAS}/*\"\nurl = \"https://{H}/team/{{path}}.git\"\n"
    );

    struct Case {
        name: &'static str,
        module: String,
        version: &'static str,
        status: u16,
        cause: String,
        /// What agora's log must still say about it.
        detail: Vec<String>,
    }
    let lib = format!("{ALIAS}/lib");
    let cases = [
        Case {
            name: "unknown version",
            module: lib.clone(),
            version: "v1.2.3",
            status: 404,
            cause: format!("{lib}@v1.2.3: invalid version: unknown revision v1.2.3"),
            detail: vec!["unknown revision v1.2.3".into()],
        },
        Case {
            name: "missing repository",
            module: format!("{ALIAS}/nothing"),
            version: "v1.0.0",
            status: 404,
            cause: "repository not found".into(),
            detail: vec!["fetch".into(), format!("https://{H}/team/nothing.git")],
        },
        Case {
            name: "wrong credentials",
            module: lib.clone(),
            version: "v1.0.0",
            status: 403,
            cause: "the git server refused agora's credentials".into(),
            detail: vec!["fetch".into(), format!("https://{H}")],
        },
        Case {
            name: "unknown CA",
            module: lib.clone(),
            version: "v1.0.0",
            status: 403,
            cause: "untrusted certificate".into(),
            detail: vec!["fetch".into(), format!("https://{H}")],
        },
    ];
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut config_text =
            std::fs::read_to_string(gitlab_config(tmp.path(), &srv, &[ALIAS, H], &rule)).unwrap();
        match case.name {
            "wrong credentials" => {
                config_text = config_text.replace(srv.token(), "glpat-wrong-secret-456")
            }
            "unknown CA" => {
                config_text = config_text.replace(
                    &format!("ca_file = {:?}\n", srv.ca_cert().display().to_string()),
                    "",
                )
            }
            _ => {}
        }
        let config = tmp.path().join("case.toml");
        std::fs::write(&config, &config_text).unwrap();
        let agora = private_agora(tmp.path(), &config, "off", &[]);
        let mut said = Vec::new();
        for ext in ["info", "mod", "zip"] {
            let (status, _, body) = http::get(&format!(
                "{}{}",
                agora.url(),
                artifact_path(&case.module, case.version, ext)
            ));
            let body = http::text(&body);
            assert_eq!(status, case.status, "{} .{ext}: {body}", case.name);
            assert!(body.contains(&case.cause), "{} .{ext}: {body}", case.name);
            said.push(body);
        }
        // What the go command shows its user: the body, after its own words.
        let go_said = go_via(&agora)
            .mod_download(agora.url(), &format!("{}@{}", case.module, case.version))
            .expect_err(case.name)
            .to_string();
        assert!(go_said.contains(&case.cause), "{}: {go_said}", case.name);
        said.push(go_said);
        let data_dir = tmp.path().display().to_string();
        for text in &said {
            for leak in [
                data_dir.as_str(),
                "_agora",
                "git fetch",
                "git clone",
                "ls-remote",
                "git archive",
                " --",
                "file://",
                H,
                "glpat-",
            ] {
                assert!(
                    !text.contains(leak),
                    "{}: {leak:?} reached the client:\n{text}",
                    case.name
                );
            }
        }
        let log = agora.stderr_log();
        for detail in &case.detail {
            assert!(
                log.contains(detail),
                "{}: {detail:?} is gone from agora's log:\n{log}",
                case.name
            );
        }
        assert!(!log.contains("glpat-wrong-secret-456"), "{}", case.name);
    }
}

/// Regression: with a hardened git configuration (`safe.bareRepository = explicit`) every git
/// command agora ran in a mirror failed ("cannot use bare repository"), because git found the
/// mirror through its current directory; the go command works under it. `log.decorate = full`
/// and `protocol.file.allow = user` are other hardening settings seen on such machines.
#[test]
fn a_hardened_git_configuration_works_as_for_the_go_command() {
    const H: &str = "gitlab-hardened.corp.example";
    let (host, module, mut repo) = team_lib(H);
    repo.write("more.go", "package lib\n");
    repo.commit("two");
    repo.tag("v1.1.0");
    let srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let hardened = tmp.path().join("hardened.gitconfig");
    std::fs::write(
        &hardened,
        "[safe]\n\tbareRepository = explicit\n[log]\n\tdecorate = full\n[protocol \"file\"]\n\tallow = user\n",
    )
    .unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "[git]\nrefresh_interval = \"0s\"\n");
    let agora = private_agora(
        tmp.path(),
        &config,
        "off",
        &[("GIT_CONFIG_GLOBAL", hardened.clone().into_os_string())],
    );
    let get = |path: String| get_text(&agora, &path);
    let (status, list) = get(format!("/{module}/@v/list"));
    assert_eq!(status, 200, "{list}\n{}", agora.stderr_log());
    let mut versions: Vec<&str> = list.lines().collect();
    versions.sort_unstable();
    assert_eq!(versions, ["v1.0.0", "v1.1.0"]);
    for ext in ["info", "mod", "zip"] {
        let (status, body) = get(artifact_path(&module, "v1.1.0", ext));
        assert_eq!(status, 200, "{ext}: {body}");
    }
    // A later fetch into the existing mirror, and `latest` (the default branch's tip).
    repo.write("third.go", "package lib\n");
    repo.commit("three");
    let (status, body) = get(format!("/{module}/@latest"));
    assert_eq!(status, 200, "@latest: {body}");

    // The go command, straight from git under the same configuration, agrees with agora.
    let direct = srv
        .configure_go(GoClient::find())
        .gitconfig(&hardened)
        .mod_download("direct", &format!("{module}@v1.1.0"))
        .unwrap_or_else(|e| panic!("the go command under the hardened configuration: {e}"));
    let via = go_via(&agora)
        .mod_download(agora.url(), &format!("{module}@v1.1.0"))
        .unwrap_or_else(|e| panic!("through agora: {e}"));
    assert_eq!(via.sum, direct.sum);
    assert_eq!(via.go_mod_sum, direct.go_mod_sum);

    // `agora doctor` makes a mirror of its own.
    let out = std::process::Command::new(agora_bin())
        .args(["doctor", &format!("{module}@v1.1.0"), "--config"])
        .arg(&config)
        .arg("--data")
        .arg(tmp.path().join("doctor-data"))
        .env("GIT_CONFIG_GLOBAL", &hardened)
        .env_remove("GOPRIVATE")
        .env_remove("GOPROXY")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        !agora.stderr_log().contains("git maintenance failed"),
        "{}",
        agora.stderr_log()
    );
}

/// Regression: a `?go-get=1` page that redirects from https to http (without GOINSECURE) was
/// "host unreachable ... error following redirect" (502), as if the host were down. The go
/// command refuses such a redirect as insecure; so does agora, in the go command's words, as a
/// bad answer of the meta server (not here: 404), and `agora doctor` names it.
#[test]
fn a_go_get_redirect_to_http_is_refused_as_insecure_like_the_go_command() {
    const H: &str = "gitlab-redirect.corp.example";
    let host = GitHost::new().host(H);
    let module = format!("{H}/team/lib");
    let mut repo = host.repo(&module);
    repo.write("go.mod", format!("module {module}\n\ngo 1.21\n"));
    repo.commit("one");
    repo.tag("v1.0.0");
    let srv = HttpsGitServer::builder(host.repo_dir(H))
        .host(H)
        .go_get_redirect(&format!("http://{H}"))
        .start();
    let insecure = format!("to insecure URL http://{H}/team/lib?go-get=1");

    let go_err = srv
        .configure_go(GoClient::find())
        .mod_download("direct", &format!("{module}@v1.0.0"))
        .expect_err("the go command refuses the redirect");
    let go_said = go_err
        .download()
        .and_then(|d| d.error.clone())
        .unwrap_or_else(|| go_err.to_string());
    assert!(
        go_said.contains("redirected from secure URL") && go_said.contains(&insecure),
        "the go command said: {go_said}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let config = gitlab_config(tmp.path(), &srv, &[H], "");
    let agora = private_agora(tmp.path(), &config, "off", &[]);
    let (status, body) = get_text(&agora, &artifact_path(&module, "v1.0.0", "info"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("redirected from secure URL") && body.contains(&insecure),
        "{body}"
    );
    assert!(!body.contains("unreachable"), "{body}");

    let out = std::process::Command::new(agora_bin())
        .args(["doctor", &format!("{module}@v1.0.0"), "--config"])
        .arg(&config)
        .arg("--data")
        .arg(tmp.path().join("doctor-data"))
        .env("GIT_CONFIG_GLOBAL", tmp.path().join("empty.gitconfig"))
        .env_remove("GOPRIVATE")
        .env_remove("GOPROXY")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("insecure redirect") && report.contains("GOINSECURE"),
        "doctor said:\n{report}"
    );
    assert!(
        !report.contains("host unreachable"),
        "doctor said:\n{report}"
    );
}
