//! Tracing: with `[tracing] otlp_endpoint` set, agora exports a trace per request over OTLP/HTTP to
//! a receiver on loopback (the request, its cache lookup, the fetch from upstream or git with
//! each git command, the checksum check, the storage writes), continues a caller's
//! `traceparent`, and puts the trace id into its log lines and audit records. Without it, nothing
//! is exported and log lines carry no trace id.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_testkit::fixtures::GREET;
use agora_testkit::{http, HttpsGitServer, OtlpReceiver, ReceivedSpan};

use crate::support::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PRIVATE: &str = "gitlab-traced.corp.example";

/// The span named `name`, which must be there.
fn span<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        panic!("no span {name:?} in {names:?}")
    })
}

/// Every span of a trace hangs from its request span: the parent of each is in the trace.
fn assert_one_tree(spans: &[ReceivedSpan], request: &ReceivedSpan) {
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for s in spans {
        if s.span_id != request.span_id {
            assert!(
                ids.contains(s.parent_span_id.as_str()),
                "span {:?} has a parent outside the trace: {s:?}",
                s.name
            );
        }
    }
}

/// The JSON log lines on agora's stderr.
fn log_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn requests_are_traced_over_otlp_with_their_fetches_and_the_trace_id_in_logs() {
    let receiver = OtlpReceiver::start();
    let (host, module, _repo) = team_lib(PRIVATE);
    let srv = HttpsGitServer::serve(&host, PRIVATE);
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let tracing = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n[tracing]\notlp_endpoint = {:?}\nservice_name = \"agora-under-test\"\n",
        receiver.url()
    );
    let config = gitlab_config(tmp.path(), &srv, &[PRIVATE], &tracing);
    // Export every 100 ms rather than every 5 s (the SDK's standard variable).
    let agora = private_agora(
        tmp.path(),
        &config,
        &up.url(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100".into())],
    );

    // A public zip, for a caller that is itself traced.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (status, _, _) = http::get_with(
        &format!("{}{}", agora.url(), artifact_path(GREET, "v1.1.0", "zip")),
        &[("traceparent", &traceparent)],
    );
    assert_eq!(status, 200);
    let spans = receiver.wait_for(CALLER_TRACE, Duration::from_secs(30), |s| {
        s.iter().any(|s| s.name == "GET zip")
    });
    let request = span(&spans, "GET zip");
    assert_eq!(
        request.parent_span_id, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(request.service, "agora-under-test");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(
        request.attributes["url.path"],
        artifact_path(GREET, "v1.1.0", "zip")
    );
    assert_eq!(
        span(&spans, "cache.lookup").attributes["cache.result"],
        "miss"
    );
    span(&spans, "fetch");
    span(&spans, "upstream zip");
    let upstream_request = span(&spans, "upstream.request");
    assert!(
        upstream_request.attributes["url.full"].starts_with(&up.url()),
        "{upstream_request:?}"
    );
    span(&spans, "checksum.verify");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "storage.write"
                && s.attributes["storage.key"].ends_with("v1.1.0.zip")),
        "{spans:#?}"
    );
    assert_one_tree(&spans, request);

    // A private version, computed from git: its git commands are spans of the request's trace.
    let path = artifact_path(&module, "v1.0.0", "info");
    let (status, _, body) = http::get(&format!("{}{path}", agora.url()));
    assert_eq!(status, 200, "{}", http::text(&body));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let private_trace = loop {
        let found = receiver
            .spans()
            .into_iter()
            .find(|s| s.name == "GET info" && s.attributes.get("url.path") == Some(&path));
        if let Some(s) = found {
            break s.trace_id;
        }
        assert!(std::time::Instant::now() < deadline, "no span for {path}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let spans = receiver.wait_for(&private_trace, Duration::from_secs(5), |_| true);
    let request = span(&spans, "GET info");
    assert!(
        request.parent_span_id.is_empty(),
        "a new trace: {request:?}"
    );
    span(&spans, "git info");
    let git: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name.starts_with("git ") && s.name != "git info")
        .collect();
    assert!(
        git.iter()
            .any(|s| s.name == "git fetch" || s.name == "git ls-remote"),
        "{git:#?}"
    );
    for s in &git {
        let command = &s.attributes["process.command_line"];
        assert!(
            !command.contains(srv.token()),
            "a credential in a span: {command}"
        );
    }
    assert_one_tree(&spans, request);

    // The trace id is in the log lines written while serving (the audit line of the private
    // fetch, through the main log), in the request span's fields.
    let lines = log_lines(&agora.stderr_log());
    let audit = lines
        .iter()
        .find(|l| l["target"] == "agora::audit" && l["fields"]["module"] == module.as_str())
        .unwrap_or_else(|| panic!("no audit line for {module} in {lines:#?}"));
    assert_eq!(audit["span"]["trace_id"], private_trace.as_str(), "{audit}");

    // Nothing of the receiver's own requests, nor anything secret, is exported.
    for s in receiver.spans() {
        assert!(s.service == "agora-under-test", "{s:?}");
        for v in s.attributes.values() {
            assert!(!v.contains(srv.token()), "a credential in {s:?}");
        }
    }
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_logs_have_no_trace_id() {
    let receiver = OtlpReceiver::start();
    let up = upstream();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agora.toml");
    std::fs::write(&config, "[log]\nformat = \"json\"\n").unwrap();
    let agora = builder(&tmp.path().join("data"), &up.url())
        .arg("--config")
        .arg(&config)
        // Where the exporter would send spans if the standard variable turned it on: it must not.
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/", receiver.url()),
        )
        .start();
    let (status, _, _) = http::get_with(
        &format!("{}{}", agora.url(), artifact_path(GREET, "v1.1.0", "info")),
        &[(
            "traceparent",
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        )],
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let mut agora = agora;
    agora.terminate();
    agora.wait_timeout(Duration::from_secs(10));
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());
    let stderr = agora.stderr_log();
    assert!(!stderr.contains("trace_id"), "{stderr}");
    assert!(!stderr.contains(CALLER_TRACE), "{stderr}");
}

#[test]
fn a_bad_endpoint_or_ratio_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, expect) in [
        (
            "[tracing]\notlp_endpoint = \"collector:4318\"\n",
            "http:// or https://",
        ),
        ("[tracing]\nsample_ratio = 1.5\n", "between 0.0 and 1.0"),
    ] {
        let config = tmp.path().join("agora.toml");
        std::fs::write(&config, text).unwrap();
        let (ok, out) = agora_cmd([
            "config".as_ref(),
            "show".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        assert!(!ok && out.contains(expect), "{text}: {out}");
    }
}
