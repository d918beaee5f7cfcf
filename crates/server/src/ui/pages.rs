//! The pages' HTML (maud: every interpolated value is escaped). Pure functions from what the
//! handlers gathered to markup; nothing here reads storage or decides access.

use std::collections::HashMap;
use std::time::SystemTime;

use agora_access::Principal;
use agora_core::failures::FailureGroup;
use agora_core::health::SourceStats;
use agora_core::{Collection, Overview, VersionView};
use agora_index::{Origin, Quarantine, SearchHit, Stats};
use maud::{html, Markup, DOCTYPE};

use super::verdicts::Verdict;
use super::{UiSettings, Viewer};

/// "3 days ago", "just now": for times people scan rather than read.
pub(crate) fn ago(t: SystemTime) -> String {
    let Ok(d) = SystemTime::now().duration_since(t) else {
        return "just now".into();
    };
    let s = d.as_secs();
    let (n, unit) = match s {
        0..=59 => return "just now".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=2_591_999 => (s / 86_400, "day"),
        2_592_000..=31_535_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn layout(ui: &UiSettings, viewer: Option<&Viewer>, title: &str, body: Markup) -> String {
    let base = &ui.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agora" }
                link rel="stylesheet" href={ (base) "/-/assets/style.css" };
                script src={ (base) "/-/assets/search.js" } defer {}
            }
            body data-base=(base) {
                header.top {
                    a.brand href={ (base) "/" } { "agora" }
                    nav aria-label="Main" {
                        a href={ (base) "/-/search" } { "Search" }
                        @if viewer.is_some_and(|v| v.admin) {
                            a href={ (base) "/-/status" } { "Status" }
                        }
                        @match viewer.map(|v| &v.who) {
                            Some(Principal::Token(id)) => span.muted { "Signed in as " (id.name) },
                            _ => a href={ (base) "/?login" } { "Sign in" },
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

fn search_form(ui: &UiSettings, q: &str) -> Markup {
    html! {
        form.search role="search" action={ (ui.base) "/-/search" } method="get" {
            label.visually-hidden for="q" { "Module path" }
            input #q type="search" name="q" value=(q) placeholder="Search modules: golang.org/x/mod, yaml…"
                autocomplete="off" spellcheck="false";
            button type="submit" { "Search" }
        }
    }
}

pub(crate) fn home(ui: &UiSettings, viewer: &Viewer, origin: &str) -> String {
    let private = ui.private.join(",");
    // .netrc names a machine without its port.
    let authority = origin
        .split("://")
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("agora.example");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    let body = html! {
        h1 { "agora at " (origin) }
        p { "A Go module proxy: public modules through its upstream chain, private modules straight from git, every download cached and checked." }
        (search_form(ui, ""))
        h2 { "Use it" }
        p { "Point the go command at this proxy:" }
        pre { code {
            "go env -w GOPROXY=" (origin) "\n"
            @if let Some(vkey) = &ui.own_sumdb {
                "go env -w GOSUMDB=" (vkey) "\n"
            } @else if !private.is_empty() {
                "go env -w GONOSUMDB=" (private) "\n"
            }
        } }
        @if ui.own_sumdb.is_some() {
            p { "This agora runs a checksum database of its own: the go command verifies every module, private ones included, against it. Leave " code { "GONOSUMDB" } " unset." }
        } @else if !ui.private.is_empty() {
            p { "The private patterns are served from git by agora; " code { "GONOSUMDB" } " keeps the go command from asking the public checksum database about them." }
        }
        @if ui.auth {
            h2 { "Sign in from the go command" }
            p { "Modules here may need a token (ask for one: " code { "agora token add NAME" } "). With Go 1.24 or newer:" }
            pre { code { "go env -w GOAUTH='agora auth --url " (origin) " --token-file $HOME/.config/agora/token'" } }
            p { "or, for any Go version, in " code { "~/.netrc" } ":" }
            pre { code { "machine " (host) " login token password YOUR_TOKEN" } }
        }
        h2 { "What it serves" }
        dl.facts {
            dt { "Private modules (from git)" }
            dd {
                @if ui.private.is_empty() { "none configured" }
                @else { @for (i, p) in ui.private.iter().enumerate() { @if i > 0 { ", " } code { (p) } } }
            }
            dt { "Checksum database" }
            dd {
                @match &ui.sumdb {
                    Some(name) => { code { (name) } ": every public module is verified against it before it is cached, and it is proxied at " code { (origin) "/sumdb/" (name) } },
                    None => "none: public modules are not verified by agora",
                }
            }
            dt { "Feed" }
            dd { a href={ (ui.base) "/index" } { code { "/index" } } " lists what is cached, in index.golang.org's format" }
        }
    };
    layout(ui, Some(viewer), "Home", body)
}

pub(crate) fn search(ui: &UiSettings, viewer: &Viewer, q: &str, hits: &[SearchHit]) -> String {
    let body = html! {
        h1 { "Search" }
        (search_form(ui, q))
        p #result-count.muted aria-live="polite" {
            (hits.len()) @if hits.len() == 1 { " module" } @else { " modules" }
        }
        ul #results.results {
            @for h in hits {
                li {
                    a href={ (ui.base) "/" (h.module.as_str()) } { (h.module.as_str()) }
                    div.muted {
                        @if let Some(l) = &h.latest { "latest " (l) " · " }
                        (h.versions) @if h.versions == 1 { " version" } @else { " versions" }
                        " · last fetched " (ago(h.last_stored))
                    }
                }
            }
        }
    };
    layout(ui, Some(viewer), "Search", body)
}

fn origin_text(o: &Origin) -> Markup {
    match o {
        Origin::Upstream { url } => html! { "upstream " code { (url) } },
        Origin::Git {
            repository,
            commit,
            reference,
        } => html! {
            "git " code { (repository) } " at " code { (commit.get(..12).unwrap_or(commit)) }
            @if let Some(r) = reference { " (" code { (r) } ")" }
        },
        Origin::Unknown => html! { span.muted { "not recorded" } },
    }
}

fn badges(v: &VersionView, latest: Option<&str>) -> Markup {
    html! {
        @if latest == Some(v.version.as_str()) { span.badge { "latest" } }
        @if v.quarantine.is_some() { span.badge.bad { "quarantined" } }
        @if v.blocked.is_some() { span.badge.bad { "blocked" } }
        @if v.too_new_until.is_some() { span.badge.warn { "too new" } }
        @if v.retracted { span.badge.warn { "retracted" } }
    }
}

pub(crate) fn module(ui: &UiSettings, viewer: &Viewer, o: &Overview) -> String {
    let m = o.module.as_str();
    let latest = o.latest.as_deref();
    let latest_view = o
        .versions
        .iter()
        .find(|v| Some(v.version.as_str()) == latest);
    let body = html! {
        h1 { (m) }
        p.muted {
            @if o.private { "Private module, served from git. " } @else { "Public module, through the upstream chain. " }
            (o.versions.len()) @if o.versions.len() == 1 { " version cached." } @else { " versions cached." }
        }
        @if let Some(d) = &o.deprecated {
            div.notice.warn role="note" { strong { "Deprecated: " } (d) }
        }
        @if let Some(b) = &o.blocked {
            div.notice.bad role="note" { strong { "Blocked: " } (b) }
        }
        @if let Some(v) = latest_view {
            h2 { "Latest: " (v.version) }
            dl.facts {
                @if let Some(t) = v.time { dt { "Published" } dd { (date(t)) " (" (ago(t)) ")" } }
                dt { "Origin" } dd { (origin_text(&v.origin)) }
                @if let Some(l) = &o.license {
                    dt { "License" } dd { code { (l.file) } " (" (l.kind) ")" }
                }
                dt { "Get it" } dd { code { "go get " (m) "@" (v.version) } }
            }
            @if v.zip_h1.is_some() || v.mod_h1.is_some() {
                h2 { "go.sum" }
                pre { code {
                    @if let Some(h) = &v.zip_h1 { (m) " " (v.version) " " (h) "\n" }
                    @if let Some(h) = &v.mod_h1 { (m) " " (v.version) "/go.mod " (h) "\n" }
                } }
            }
        }
        @if !o.requires.is_empty() {
            h2 { "Requirements" }
            ul {
                @for (path, version) in &o.requires {
                    li { a href={ (ui.base) "/" (path) } { (path) } " " span.muted { (version) } }
                }
            }
        }
        @if let Some(g) = &o.go_mod {
            details {
                summary { "go.mod of " (latest.unwrap_or("the latest version")) }
                pre { code { (g) } }
            }
        }
        h2 { "Versions" }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Version" } th scope="col" { "Published" } th scope="col" { "State" } th scope="col" { "Origin" } } }
                tbody {
                    @for v in &o.versions {
                        tr id={ "v-" (v.version) } {
                            td { code { (v.version) } }
                            td { @if let Some(t) = v.time { time datetime=(date(t)) { (ago(t)) } } }
                            td {
                                (badges(v, latest))
                                @if let Some(q) = &v.quarantine { div { "Quarantined by " (q.actor) ": " (q.reason) } }
                                @if let Some(b) = &v.blocked { div { (b) } }
                                @if let Some(t) = v.too_new_until { div { "served from " (date(t)) } }
                                @if viewer.admin && v.quarantine.is_some() {
                                    form.inline method="post" action={ (ui.base) "/-/ui/lift" } {
                                        input type="hidden" name="module" value=(m);
                                        input type="hidden" name="version" value=(v.version);
                                        input type="hidden" name="reason" value="";
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button type="submit" { "Lift quarantine" }
                                    }
                                }
                            }
                            td { (origin_text(&v.origin)) }
                        }
                    }
                }
            }
        }
        @if viewer.admin {
            h2 { "Quarantine a version" }
            p.muted { "A quarantined version answers 410 Gone with the reason, leaves lists and @latest, and stays stored until lifted." }
            form.inline method="post" action={ (ui.base) "/-/ui/quarantine" } {
                input type="hidden" name="module" value=(m);
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="qv" { "Version" }
                input #qv type="text" name="version" required value=(latest.unwrap_or("")) spellcheck="false";
                label for="qr" { "Reason" }
                input #qr type="text" name="reason" required placeholder="CVE-2026-1234: …";
                button type="submit" { "Quarantine" }
            }
        }
    };
    layout(ui, Some(viewer), m, body)
}

/// What the status page shows.
pub(crate) struct StatusFacts {
    pub storage: String,
    pub index: Option<String>,
    pub ready: Result<(), String>,
    pub stats: Option<Stats>,
    /// (from cache, fetched)
    pub cache: (u64, u64),
    pub in_flight: usize,
    pub quarantines: Vec<Quarantine>,
    pub index_health: Option<Result<(), String>>,
    /// The lock shared with the other replicas (Redis), when configured.
    pub lock: Option<Result<(), String>>,
    pub failures: Vec<FailureGroup>,
    /// Doctor's verdict on the latest failure of each cause, when there is one.
    pub verdicts: HashMap<&'static str, Verdict>,
    /// How each source has been answering (this replica's fetches).
    pub sources: Vec<(String, SourceStats)>,
    /// Fetches waiting for a slot.
    pub queued: usize,
    pub last_collection: Option<(SystemTime, Collection)>,
}

fn health(h: &Result<(), String>) -> Markup {
    html! {
        @match h { Ok(()) => span.badge { "ok" }, Err(e) => { span.badge.bad { "failing" } " " (e) } }
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Doctor's verdict on a failure group, or why there is none.
fn verdict(ui: &UiSettings, viewer: &Viewer, g: &FailureGroup, v: Option<&Verdict>) -> Markup {
    let Some(target) = &g.last.target else {
        return html! { span.muted { "not about a module" } };
    };
    if ui.doctor.is_none() {
        return html! { span.muted { "not available" } };
    }
    html! {
        @match v {
            Some(Verdict::Done { target: checked, at, ok, report }) => {
                @if *ok { span.badge { "can serve it now" } } @else { span.badge.bad { "still failing" } }
                " " span.muted { code { (checked) } ", " (ago(*at)) }
                details { summary { "report" } pre { (report) } }
            }
            Some(Verdict::Running { target: checking }) => {
                span.muted { "checking " code { (checking) } "… (reload)" }
            }
            None => span.muted { "not checked yet" },
        }
        form.inline method="post" action={ (ui.base) "/-/ui/doctor" } {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="target" value=(target);
            button type="submit" { "Run doctor" }
        }
    }
}

pub(crate) fn status(ui: &UiSettings, viewer: &Viewer, f: &StatusFacts) -> String {
    let (cached, fetched) = f.cache;
    let ratio = if cached + fetched == 0 {
        "no requests yet".to_owned()
    } else {
        format!("{:.1}%", 100.0 * cached as f64 / (cached + fetched) as f64)
    };
    let body = html! {
        h1 { "Status" }
        dl.facts {
            dt { "Storage" } dd { (f.storage) " — "
                @match &f.ready { Ok(()) => "ready", Err(e) => { span.badge.bad { "not ready" } " " (e) } } }
            dt { "Index" } dd {
                @match &f.index { Some(i) => code { (i) }, None => "none" }
                @if let Some(h) = &f.index_health { " " (health(h)) }
            }
            dt { "Replica lock (Redis)" } dd {
                @match &f.lock { Some(h) => (health(h)), None => "not configured: each replica fetches on its own" }
            }
            dt { "Cache hit ratio" } dd { (ratio) " (" (cached) " from cache, " (fetched) " fetched since start)" }
            dt { "Fetches in flight" } dd { (f.in_flight) @if f.queued > 0 { ", " (f.queued) " waiting for a slot" } }
        }
        @if let Some(s) = &f.stats {
            h2 { "Stored" }
            div.table-wrap { table {
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Artifacts" } th scope="col" { "Size" } } }
                tbody {
                    @for (kind, t) in &s.by_kind {
                        tr { td { "." (kind.extension()) } td { (t.artifacts) } td { (bytes(t.bytes)) } }
                    }
                    tr { th scope="row" { "All" } td { (s.total().artifacts) } td { (bytes(s.total().bytes)) } }
                }
            } }
            p { (s.modules) " modules, " (s.versions) " versions, served " (s.served) " times." }
            h2 { "By origin" }
            ul {
                @for o in &s.by_origin {
                    li { (o.origin.as_str()) @if let Some(u) = &o.upstream { " " code { (u) } } ": " (o.totals.artifacts) " artifacts, " (bytes(o.totals.bytes)) }
                }
            }
        }
        h2 { "Sources" }
        @if f.sources.is_empty() { p.muted { "No fetch since this replica started." } }
        @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "State" } th scope="col" { "Answered" }
                    th scope="col" { "Failed" } th scope="col" { "Mean time" } th scope="col" { "Last failure" }
                } }
                tbody {
                    @for (name, s) in &f.sources {
                        tr {
                            td { span.muted { (s.kind) " " } code { (name) } }
                            td {
                                @if s.failing() { span.badge.bad { "failing" } } @else { span.badge { "ok" } }
                                @if let Some(at) = s.last_answer { " " span.muted { "answered " (ago(at)) } }
                            }
                            td { (s.answered) }
                            td { (s.failed) }
                            td { @match s.mean_latency() { Some(d) => (format!("{:.0} ms", d.as_secs_f64() * 1000.0)), None => "—" } }
                            td { @match &s.last_failure { Some((at, m)) => { (ago(*at)) ": " code { (m) } }, None => "none" } }
                        }
                    }
                }
            } }
        }
        h2 { "Recent failures" }
        @if f.failures.is_empty() { p.muted { "None since this replica started." } }
        @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Cause" } th scope="col" { "Count" } th scope="col" { "Latest" }
                    th scope="col" { "What to do" } th scope="col" { "Doctor" }
                } }
                tbody {
                    @for g in &f.failures {
                        tr {
                            td { (g.cause) }
                            td { (g.count) }
                            td { (ago(g.last.at)) ": " code { (g.last.message) } }
                            td { (g.hint) }
                            td.verdict { (verdict(ui, viewer, g, f.verdicts.get(g.cause))) }
                        }
                    }
                }
            } }
        }
        h2 { "Retention" }
        @match &ui.retention {
            None => p.muted { "No limit configured: the cache keeps everything." },
            Some(r) => {
                dl.facts {
                    dt { "Size budget" } dd { @match r.policy.max_size { Some(b) => (bytes(b)), None => "none" } }
                    dt { "Unused for" } dd { @match r.policy.unused_for { Some(d) => (humantime::format_duration(d)), None => "never evicted for age" } }
                    dt { "Kept forever" } dd { @if r.policy.keep.is_empty() { "nothing" } @else { (r.policy.keep.join(", ")) } }
                    dt { "Background collection" } dd { @match r.interval { Some(d) => { "every " (humantime::format_duration(d)) }, None => "off (agora gc --apply, or the button below)" } }
                    dt { "Last collection here" } dd {
                        @match &f.last_collection {
                            Some((at, c)) => { (ago(*at)) ": " (c.deleted) " artifacts deleted, " (bytes(c.freed)) " freed" @if c.hot > 0 { ", " (c.hot) " kept (in use)" } },
                            None => "none since this replica started",
                        }
                    }
                }
                form.inline method="post" action={ (ui.base) "/-/ui/gc" } {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" { "Collect now" }
                }
            }
        }
        @if ui.doctor.is_some() {
            h2 { "Doctor" }
            p.muted { "How agora would fetch a module, each step tried for real (nothing is cached)." }
            form.inline method="post" action={ (ui.base) "/-/ui/doctor" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="dt" { "Module" }
                input #dt type="text" name="target" required placeholder="gitlab.corp.example/team/svc@v1.2.3" spellcheck="false";
                button type="submit" { "Run doctor" }
            }
        }
        h2 { "Quarantined versions" }
        @if f.quarantines.is_empty() { p.muted { "None." } }
        @else {
            ul {
                @for q in &f.quarantines {
                    li {
                        a href={ (ui.base) "/" (q.module.as_str()) } { (q.module.as_str()) } "@" (q.version)
                        ": " (q.reason) span.muted { " — " (q.actor) ", " (ago(q.since)) }
                    }
                }
            }
        }
    };
    layout(ui, Some(viewer), "Status", body)
}

pub(crate) fn doctor(
    ui: &UiSettings,
    viewer: &Viewer,
    target: &str,
    ok: bool,
    report: &str,
) -> String {
    let body = html! {
        h1 { "Doctor: " (target) }
        @if ok { div.notice role="status" { span.badge { "OK" } " agora can serve it." } }
        @else { div.notice.bad role="status" { "It fails: the report names the step and a hint." } }
        pre { code { (report) } }
        p { a href={ (ui.base) "/-/status" } { "Back to status" } }
    };
    layout(ui, Some(viewer), "Doctor", body)
}

pub(crate) fn not_found(ui: &UiSettings, viewer: &Viewer) -> String {
    let body = html! {
        h1 { "Not found" }
        p { "Nothing is cached under this path, or it is not a module path." }
        @if matches!(viewer.who, Principal::Anonymous) {
            p { "Some modules are only visible once you " a href={ (ui.base) "/?login" } { "sign in" } "." }
        }
        (search_form(ui, ""))
    };
    layout(ui, Some(viewer), "Not found", body)
}

pub(crate) fn message(ui: &UiSettings, title: &str, text: &str) -> String {
    let body = html! { h1 { (title) } p { (text) } };
    layout(ui, None, title, body)
}
