//! What may be fetched at all: allow/deny rules by pattern and version constraint, and the
//! validation webhook asked before a new artifact is cached.

use std::path::Path;
use std::time::Duration;

use agora_testkit::fixtures::{BIG, GREET, MIXED_CASE};
use agora_testkit::{http, Verdict, WebhookServer};

use crate::support::*;

fn with_config(data: &Path, upstream: &str, text: &str) -> agora_testkit::Agora {
    let path = data.join("agora.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&path, text).unwrap();
    builder(&data.join("data"), upstream)
        .arg("--config")
        .arg(&path)
        .start()
}

fn get(agora: &agora_testkit::Agora, path: &str) -> (u16, String) {
    let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
    (s, http::text(&body))
}

const RULES: &str = r#"
[[filter.rules]]
pattern = "github.com/agora-fixtures/bigzip"
action = "deny"
reason = "too big for this company"

[[filter.rules]]
pattern = "github.com/agora-fixtures/greet"
versions = "< v1.1.0"
action = "deny"
reason = "CVE-2026-0001"
"#;

#[test]
fn deny_rules_name_the_rule_and_fetch_nothing() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let agora = with_config(tmp.path(), &up.url(), RULES);

    // A whole module blocked: every question about it, nothing asked upstream.
    for path in [
        format!("/{BIG}/@v/list"),
        format!("/{BIG}/@latest"),
        artifact_path(BIG, "v1.0.0", "info"),
        artifact_path(BIG, "v1.0.0", "zip"),
    ] {
        let (s, body) = get(&agora, &path);
        assert_eq!(s, 403, "{path}: {body}");
        assert!(body.contains("filter rule 1"), "{path}: {body}");
        assert!(body.contains("too big for this company"), "{path}: {body}");
    }
    assert!(
        up.requests().iter().all(|p| !p.contains("bigzip")),
        "{:?}",
        up.requests()
    );

    // Versions below a fixed release: refused, and missing from the list.
    for ext in ["info", "mod", "zip"] {
        let (s, body) = get(&agora, &artifact_path(GREET, "v1.0.0", ext));
        assert_eq!(s, 403, "{ext}: {body}");
        assert!(
            body.contains("filter rule 2") && body.contains("versions < v1.1.0"),
            "{body}"
        );
        assert!(body.contains("CVE-2026-0001"), "{body}");
    }
    assert_eq!(up.count(&artifact_path(GREET, "v1.0.0", "zip")), 0);
    let (s, list) = get(&agora, &format!("/{GREET}/@v/list"));
    assert_eq!(s, 200);
    let mut versions: Vec<&str> = list.lines().collect();
    versions.sort();
    assert_eq!(versions, ["v1.1.0", "v1.2.0-rc.1"]);
    assert_eq!(get(&agora, &artifact_path(GREET, "v1.1.0", "mod")).0, 200);

    // The go command shows the rule to the developer.
    let go = go_client().env("GOSUMDB", "off");
    let err = go
        .mod_download(agora.url(), &format!("{GREET}@v1.0.0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("CVE-2026-0001"), "{err}");
    // Nothing of the blocked versions was written.
    let stored = files_under(&tmp.path().join("data"));
    assert!(
        stored
            .iter()
            .all(|f| !f.contains("bigzip") && !f.contains("v1.0.0")),
        "{stored:?}"
    );
}

#[test]
fn allow_list_and_rules_apply_to_cached_artifacts() {
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    // Fill the cache with no rules at all.
    {
        let agora = with_config(&data, &up.url(), "");
        assert_eq!(get(&agora, &artifact_path(GREET, "v1.0.0", "info")).0, 200);
        assert_eq!(
            get(&agora, &artifact_path(MIXED_CASE, "v1.0.0", "mod")).0,
            200
        );
    }
    // Restart with an allow list: only greet from v1.1.0 on.
    let agora = with_config(
        &data,
        &up.url(),
        r#"
[filter]
default = "deny"

[[filter.rules]]
pattern = "github.com/agora-fixtures/greet"
versions = ">= v1.1.0"
action = "allow"
"#,
    );
    let (s, body) = get(&agora, &artifact_path(MIXED_CASE, "v1.0.0", "mod"));
    assert_eq!(s, 403, "cached, but no longer allowed: {body}");
    assert!(body.contains("default rule"), "{body}");
    let (s, body) = get(&agora, &artifact_path(GREET, "v1.0.0", "info"));
    assert_eq!(s, 403, "{body}");
    assert_eq!(get(&agora, &artifact_path(GREET, "v1.1.0", "info")).0, 200);
    let (s, list) = get(&agora, &format!("/{GREET}/@v/list"));
    assert_eq!(s, 200);
    assert!(
        !list.contains("v1.0.0") && list.contains("v1.1.0"),
        "{list}"
    );
    let escaped = agora_gomod::module::escape_path(MIXED_CASE).unwrap();
    assert_eq!(get(&agora, &format!("/{escaped}/@v/list")).0, 403);
}

#[test]
fn bad_filter_config_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agora.toml");
    std::fs::write(
        &path,
        "[[filter.rules]]\npattern = \"x.example\"\nversions = \"~1.2\"\naction = \"deny\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(agora_bin())
        .args(["config", "show", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("filter.rules[0]") && err.contains("~1.2"),
        "{err}"
    );
}

fn webhook_config(hook: &WebhookServer, extra: &str) -> String {
    format!(
        "[validation]\nurl = {:?}\ntimeout = \"700ms\"\n{extra}",
        hook.url()
    )
}

#[test]
fn webhook_sees_each_new_artifact_once_and_can_deny() {
    let up = upstream();
    let hook = WebhookServer::start();
    hook.set(|c| {
        if c["module"] == MIXED_CASE {
            Verdict::Deny("license GPL-3.0 is not approved\nsecond line".into())
        } else {
            Verdict::Allow
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let agora = with_config(tmp.path(), &up.url(), &webhook_config(&hook, ""));

    for ext in ["info", "mod", "zip"] {
        assert_eq!(get(&agora, &artifact_path(GREET, "v1.1.0", ext)).0, 200);
    }
    let seen = hook.received();
    let kinds: Vec<&str> = seen.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["info", "mod", "zip"], "{seen:?}");
    assert!(seen
        .iter()
        .all(|c| c["module"] == GREET && c["version"] == "v1.1.0"));
    assert!(seen[1]["go_mod"]
        .as_str()
        .unwrap()
        .starts_with(&format!("module {GREET}")));
    let baseline = &world().baseline[&format!("{GREET}@v1.1.0")];
    assert_eq!(seen[2]["zip_hash"].as_str(), baseline.sum.as_deref());
    assert!(seen[2]["zip_size"].as_u64().unwrap() > 0);

    // Cached artifacts are not submitted again.
    for ext in ["info", "mod", "zip"] {
        assert_eq!(get(&agora, &artifact_path(GREET, "v1.1.0", ext)).0, 200);
    }
    assert_eq!(hook.received().len(), 3);

    // Denied: 403 with the webhook's first line; nothing stored.
    let (s, body) = get(&agora, &artifact_path(MIXED_CASE, "v1.0.0", "mod"));
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("validation webhook") && body.contains("license GPL-3.0 is not approved"),
        "{body}"
    );
    assert!(!body.contains("second line"), "{body}");
    let stored = files_under(&tmp.path().join("data"));
    assert!(
        stored.iter().all(|f| !f.to_lowercase().contains("mixed")),
        "{stored:?}"
    );
}

#[test]
fn webhook_outage_fails_closed_or_open_as_configured() {
    let up = upstream();
    let hook = WebhookServer::start();
    hook.set(|_| Verdict::Status(500));
    let tmp = tempfile::tempdir().unwrap();

    let closed = with_config(
        &tmp.path().join("closed"),
        &up.url(),
        &webhook_config(&hook, ""),
    );
    let (s, _, body) = http::get(&format!(
        "{}{}",
        closed.url(),
        artifact_path(GREET, "v1.1.0", "mod")
    ));
    assert_eq!(s, 503, "{}", http::text(&body));
    assert!(
        http::text(&body).contains("validation webhook is unavailable"),
        "{}",
        http::text(&body)
    );
    // A webhook that does not answer in time counts as unavailable too.
    hook.set(|_| Verdict::Hang(Duration::from_secs(3)));
    assert_eq!(get(&closed, &artifact_path(GREET, "v1.1.0", "zip")).0, 503);
    assert!(files_under(&tmp.path().join("closed/data"))
        .iter()
        .all(|f| !f.contains("greet")));
    // Once the webhook is back, the same request succeeds: nothing was remembered as refused.
    hook.set(|_| Verdict::Allow);
    assert_eq!(get(&closed, &artifact_path(GREET, "v1.1.0", "mod")).0, 200);

    hook.set(|_| Verdict::Status(502));
    let open = with_config(
        &tmp.path().join("open"),
        &up.url(),
        &webhook_config(&hook, "fail = \"open\"\n"),
    );
    assert_eq!(get(&open, &artifact_path(GREET, "v1.1.0", "zip")).0, 200);
    assert!(open.stderr_log().contains("fail-open"));
}

/// Copies `module`'s files from the shared upstream into a directory of its own (to serve with
/// [`agora_testkit::UpstreamProxy::serve_dir`]), with `.info` times rewritten by `times`.
fn upstream_copy(dest: &Path, module: &str, times: &[(&str, String)]) {
    let rel = agora_gomod::module::escape_path(module).unwrap();
    let from = world().upstream_root.join(&rel).join("@v");
    let to = dest.join(&rel).join("@v");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    for (version, time) in times {
        let info = format!(r#"{{"Version":"{version}","Time":"{time}"}}"#);
        std::fs::write(to.join(format!("{version}.info")), &info).unwrap();
        if *version == "v1.1.0" {
            // The upstream's own `@latest` names the young release.
            std::fs::write(dest.join(&rel).join("@latest"), &info).unwrap();
        }
    }
}

/// A minimum release age: a public version younger than the rule asks is refused with the
/// reason and `Retry-After`, left out of the list, and never `@latest`; the go command then
/// picks the newest version that is old enough, and fails on the young one with agora's reason.
#[test]
fn min_age_holds_back_young_public_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let an_hour_ago =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(3600))
            .to_string();
    upstream_copy(&tmp.path().join("up"), GREET, &[("v1.1.0", an_hour_ago)]);
    let up = agora_testkit::UpstreamProxy::serve_dir(tmp.path().join("up"));
    let agora = with_config(
        &tmp.path().join("agora"),
        &up.url(),
        &format!("[[filter.rules]]\npattern = \"{GREET}\"\nmin_age = \"7d\"\n"),
    );

    for ext in ["info", "mod", "zip"] {
        let (s, h, body) = http::get(&format!(
            "{}{}",
            agora.url(),
            artifact_path(GREET, "v1.1.0", ext)
        ));
        let body = http::text(&body);
        assert_eq!(s, 403, "{ext}: {body}");
        assert!(
            body.contains("too new") && body.contains("filter rule 1") && body.contains("7days"),
            "{body}"
        );
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            (6 * 86_400..7 * 86_400).contains(&retry),
            "Retry-After {retry}"
        );
    }
    assert_eq!(up.count(&artifact_path(GREET, "v1.1.0", "zip")), 0);
    let (s, list) = get(&agora, &format!("/{GREET}/@v/list"));
    assert_eq!(s, 200);
    let mut versions: Vec<&str> = list.lines().collect();
    versions.sort();
    assert_eq!(versions, ["v1.0.0", "v1.2.0-rc.1"]);
    let (s, latest) = get(&agora, &format!("/{GREET}/@latest"));
    assert_eq!(s, 200, "{latest}");
    assert!(latest.contains(r#""Version":"v1.0.0""#), "{latest}");

    // The go command, as developers run it.
    let go = go_client().env("GOSUMDB", world().sumdb.gosumdb());
    let chosen = go
        .list_m(agora.url(), &[&format!("{GREET}@latest")])
        .unwrap();
    assert_eq!(chosen.version.as_deref(), Some("v1.0.0"));
    let err = go
        .mod_download(agora.url(), &format!("{GREET}@v1.1.0"))
        .unwrap_err();
    assert!(err.message().contains("too new"), "{}", err.message());
}
