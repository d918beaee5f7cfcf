//! The audit log: one JSON object per line for each fetch worth recording (the server decides
//! which: restricted and private modules), answering "who fetched what, when, and were they let
//! in" after the fact.
//!
//! With a file, lines are appended to it (mode 0600: module paths and client names are internal
//! information); without one, they go through `tracing` with target `agora::audit`, so they can be
//! routed like any other log. Recording never fails a request: a write error is logged (at most
//! once a minute) and the fetch goes on. Lines are not fsynced one by one; that would put a disk
//! flush on every request's path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::AccessError;
use crate::rules::DenyStatus;

/// How often at most a failing audit file is complained about.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One fetch, as the server saw it.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub time: SystemTime,
    /// The principal's name: "anonymous" or the token's name.
    pub client: String,
    pub ip: String,
    pub module: String,
    pub version: Option<String>,
    /// "list", "latest", "info", "mod", "zip" or "sumdb".
    pub request: &'static str,
    pub status: u16,
    /// Set when authentication or the access rules refused the request, with how the client was
    /// answered. A refusal answered as 404 (`on_deny = "not_found"`) is still a denial here:
    /// the client must not tell it from a miss, auditors must.
    pub denied: Option<DenyStatus>,
    /// How the cache answered ("hit", "miss", ...), when the request got that far.
    pub cache: Option<&'static str>,
    pub bytes: u64,
    pub duration: Duration,
    /// The request's trace id, when agora exports traces: the line and the trace find each other.
    pub trace_id: Option<String>,
}

/// The line's JSON shape; field order is the order people read in.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    client: &'a str,
    ip: &'a str,
    module: &'a str,
    version: Option<&'a str>,
    request: &'a str,
    status: u16,
    result: &'static str,
    /// Denials only: whether the client was answered as if the module did not exist.
    hidden: Option<bool>,
    cache: Option<&'a str>,
    bytes: u64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
}

impl AuditRecord {
    /// The outcome in one word, for filtering: "denied" for refusals by authentication or the
    /// access rules whatever their status, else by status: "ok" (2xx, 304), "denied" (401, 403),
    /// "not_found" (404, 410), else "error".
    pub fn result(&self) -> &'static str {
        if self.denied.is_some() {
            return "denied";
        }
        match self.status {
            200..=299 | 304 => "ok",
            401 | 403 => "denied",
            404 | 410 => "not_found",
            _ => "error",
        }
    }

    /// For denials, whether the refusal was hidden behind a "not found".
    pub fn hidden(&self) -> Option<bool> {
        self.denied.map(|d| d == DenyStatus::NotFound)
    }

    fn duration_ms(&self) -> f64 {
        // Microsecond resolution: cache hits take well under a millisecond.
        (self.duration.as_secs_f64() * 1e6).round() / 1e3
    }

    /// The record as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        let line = Line {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            event: "fetch",
            client: &self.client,
            ip: &self.ip,
            module: &self.module,
            version: self.version.as_deref(),
            request: self.request,
            status: self.status,
            result: self.result(),
            hidden: self.hidden(),
            cache: self.cache,
            bytes: self.bytes,
            duration_ms: self.duration_ms(),
            trace_id: self.trace_id.as_deref(),
        };
        let mut text = serde_json::to_string(&line).expect("an audit line always serializes");
        text.push('\n');
        text
    }
}

/// One operator action: quarantining or lifting a version, removing artifacts, a collection.
#[derive(Clone, Debug)]
pub struct AdminRecord {
    pub time: SystemTime,
    /// Who: a token's name over HTTP, `cli:<user>` from the command line.
    pub actor: String,
    /// The client's address over HTTP.
    pub ip: Option<String>,
    /// "quarantine", "lift", "remove" or "gc".
    pub action: &'static str,
    pub module: String,
    pub version: Option<String>,
    pub reason: Option<String>,
    /// What happened, in a few words ("ok", "3 artifacts deleted", an error).
    pub result: String,
}

#[derive(Serialize)]
struct AdminLine<'a> {
    time: String,
    event: &'static str,
    actor: &'a str,
    ip: Option<&'a str>,
    action: &'a str,
    module: &'a str,
    version: Option<&'a str>,
    reason: Option<&'a str>,
    result: &'a str,
}

impl AdminRecord {
    /// The record as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        let line = AdminLine {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            event: "admin",
            actor: &self.actor,
            ip: self.ip.as_deref(),
            action: self.action,
            module: &self.module,
            version: self.version.as_deref(),
            reason: self.reason.as_deref(),
            result: &self.result,
        };
        let mut text = serde_json::to_string(&line).expect("an audit line always serializes");
        text.push('\n');
        text
    }
}

/// Where audit records go.
#[derive(Debug)]
pub struct AuditLog {
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Tracing,
    File {
        path: PathBuf,
        state: Mutex<FileState>,
    },
}

#[derive(Debug)]
struct FileState {
    file: File,
    last_warning: Option<Instant>,
    /// Failed writes not warned about since `last_warning`.
    suppressed: u64,
}

fn open_append(path: &Path) -> Result<File, AccessError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(AccessError::io(dir))?;
    }
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(AccessError::io(path))
}

impl AuditLog {
    /// Appends to `file` (created with mode 0600 if missing), or logs through `tracing` without
    /// one. Fails only if the file cannot be opened: better to refuse to start than to run
    /// without the audit trail the configuration asked for.
    pub fn new(file: Option<PathBuf>) -> Result<AuditLog, AccessError> {
        let sink = match file {
            None => Sink::Tracing,
            Some(path) => Sink::File {
                state: Mutex::new(FileState {
                    file: open_append(&path)?,
                    last_warning: None,
                    suppressed: 0,
                }),
                path,
            },
        };
        Ok(AuditLog { sink })
    }

    /// The audit file, if records go to one.
    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::Tracing => None,
            Sink::File { path, .. } => Some(path),
        }
    }

    /// Records one fetch. Never fails: the request has been answered already.
    pub fn record(&self, rec: &AuditRecord) {
        match &self.sink {
            Sink::Tracing => tracing::info!(
                target: "agora::audit",
                time = %humantime::format_rfc3339_millis(rec.time),
                event = "fetch",
                client = %rec.client,
                ip = %rec.ip,
                module = %rec.module,
                version = rec.version.as_deref(),
                request = rec.request,
                status = rec.status,
                result = rec.result(),
                hidden = rec.hidden(),
                cache = rec.cache,
                bytes = rec.bytes,
                duration_ms = rec.duration_ms(),
                "fetch"
            ),
            Sink::File { .. } => self.append(&rec.to_json_line()),
        }
    }

    /// Records what an operator did (`agora quarantine`, `agora rm`, the admin endpoints).
    pub fn record_admin(&self, rec: &AdminRecord) {
        match &self.sink {
            Sink::Tracing => tracing::info!(
                target: "agora::audit",
                time = %humantime::format_rfc3339_millis(rec.time),
                event = "admin",
                actor = %rec.actor,
                ip = rec.ip.as_deref(),
                action = rec.action,
                module = %rec.module,
                version = rec.version.as_deref(),
                reason = rec.reason.as_deref(),
                result = %rec.result,
                "admin"
            ),
            Sink::File { .. } => self.append(&rec.to_json_line()),
        }
    }

    /// Appends one line to the file sink.
    fn append(&self, line: &str) {
        match &self.sink {
            Sink::Tracing => {}
            Sink::File { path, state } => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                // One write of the whole line, under the lock and with O_APPEND: lines from
                // concurrent requests never interleave.
                let Err(error) = state.file.write_all(line.as_bytes()) else {
                    return;
                };
                let now = Instant::now();
                if state
                    .last_warning
                    .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
                {
                    state.suppressed += 1;
                    return;
                }
                state.last_warning = Some(now);
                let suppressed = std::mem::take(&mut state.suppressed);
                drop(state);
                tracing::warn!(
                    audit.file = %path.display(),
                    %error,
                    suppressed,
                    "cannot write to the audit log; records are being lost"
                );
            }
        }
    }

    /// Opens the file path again (after logrotate moved the old file away; call on SIGHUP).
    /// On error the old file stays in use.
    pub fn reopen(&self) -> Result<(), AccessError> {
        if let Sink::File { path, state } = &self.sink {
            let file = open_append(path)?;
            state.lock().unwrap_or_else(PoisonError::into_inner).file = file;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    fn rec(status: u16) -> AuditRecord {
        AuditRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            client: "ci-payments".into(),
            ip: "10.0.0.7".into(),
            module: "gitlab.corp.example/payments/ledger".into(),
            version: Some("v1.2.3".into()),
            request: "zip",
            status,
            denied: None,
            cache: Some("hit"),
            bytes: 4096,
            duration: Duration::from_micros(1_234_567),
            trace_id: None,
        }
    }

    #[test]
    fn line_is_json_with_the_documented_fields() {
        let line = rec(200).to_json_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v["event"], "fetch");
        assert_eq!(v["client"], "ci-payments");
        assert_eq!(v["ip"], "10.0.0.7");
        assert_eq!(v["module"], "gitlab.corp.example/payments/ledger");
        assert_eq!(v["version"], "v1.2.3");
        assert_eq!(v["request"], "zip");
        assert_eq!(v["status"], 200);
        assert_eq!(v["result"], "ok");
        assert!(v["hidden"].is_null());
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["bytes"], 4096);
        assert_eq!(v["duration_ms"], 1234.567);
        assert_eq!(v.as_object().unwrap().len(), 13);

        let mut traced = rec(200);
        traced.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        let v: Value = serde_json::from_str(&traced.to_json_line()).unwrap();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v.as_object().unwrap().len(), 14);

        let mut r = rec(404);
        r.version = None;
        r.cache = None;
        let v: Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert!(v["version"].is_null() && v["cache"].is_null());

        for (status, want) in [
            (200, "ok"),
            (304, "ok"),
            (401, "denied"),
            (403, "denied"),
            (404, "not_found"),
            (410, "not_found"),
            (500, "error"),
            (502, "error"),
        ] {
            assert_eq!(rec(status).result(), want, "{status}");
        }
    }

    /// Regression: a refusal under `on_deny = "not_found"` was logged as `"not_found"`, like a
    /// real miss, so probing for protected modules left no trace an auditor could find.
    #[test]
    fn hidden_denials_are_denials() {
        for (denied, hidden, status) in [
            (DenyStatus::NotFound, true, 404),
            (DenyStatus::Forbidden, false, 403),
            (DenyStatus::Unauthorized, false, 401),
        ] {
            let mut r = rec(status);
            r.denied = Some(denied);
            let v: Value = serde_json::from_str(&r.to_json_line()).unwrap();
            assert_eq!(v["status"], status, "{denied:?}");
            assert_eq!(v["result"], "denied", "{denied:?}");
            assert_eq!(v["hidden"], hidden, "{denied:?}");
        }
        let miss: Value = serde_json::from_str(&rec(404).to_json_line()).unwrap();
        assert_eq!(miss["result"], "not_found");
        assert!(miss["hidden"].is_null());
    }

    #[test]
    fn concurrent_lines_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let log = Arc::new(AuditLog::new(Some(path.clone())).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let mut r = rec(200);
                        // Long lines make interleaving likelier if it could happen.
                        r.module = format!("corp.example/t{t}/{}", "x".repeat(2000 + i));
                        log.record(&r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1600);
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event"], "fetch");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn reopen_follows_logrotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::new(Some(path.clone())).unwrap();
        log.record(&rec(200));
        fs::rename(&path, &rotated).unwrap();
        log.record(&rec(403)); // still the old file until reopened
        log.reopen().unwrap();
        log.record(&rec(404));
        assert_eq!(fs::read_to_string(&rotated).unwrap().lines().count(), 2);
        let now = fs::read_to_string(&path).unwrap();
        assert_eq!(now.lines().count(), 1);
        assert!(now.contains("\"not_found\""));
    }

    #[test]
    fn tracing_sink_and_write_errors_do_not_fail() {
        let log = AuditLog::new(None).unwrap();
        assert!(log.path().is_none());
        log.record(&rec(200));
        log.reopen().unwrap();

        // /dev/full fails every write with ENOSPC.
        #[cfg(target_os = "linux")]
        {
            let log = AuditLog::new(Some("/dev/full".into())).unwrap();
            for _ in 0..3 {
                log.record(&rec(200));
            }
            let Sink::File { state, .. } = &log.sink else {
                unreachable!()
            };
            assert_eq!(
                state.lock().unwrap().suppressed,
                2,
                "warned once, then quiet"
            );
        }
    }
}
