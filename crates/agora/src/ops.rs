//! Operating the cache over the metadata index: `agora ls`, `stats`, `index rebuild`,
//! `quarantine`, `rm` and `gc`, and the server's background work on the index (writing hits,
//! reading quarantines, metrics, collection).
//!
//! The commands open the same storage and index as the server (the SQLite file is shared safely
//! with a running server on the same machine; replicas share PostgreSQL). A quarantine or removal
//! made here is seen by running servers within `index.sync_interval`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use agora_access::AdminRecord;
use agora_core::Proxy;
use agora_gomod::module::ModulePath;
use agora_index::{Index, ModuleQuery, RebuildOptions};
use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::config::Config;

/// `agora index ...`.
#[derive(Subcommand)]
pub enum IndexCommand {
    /// Recreate the index from what storage holds (after losing the database, or to record
    /// artifacts imported or copied in by hand). Quarantines are kept.
    Rebuild {
        /// Also read every .mod and zip to record its h1: hash (slow on a large remote store).
        #[arg(long)]
        hash: bool,
        #[command(flatten)]
        config: crate::ConfigArgs,
    },
}

/// Opens the configured index.
pub async fn open_index(config: &Config) -> Result<Index> {
    Index::open(&config.index, &config.data_dir)
        .await
        .context("opening the metadata index")
}

/// `MODULE@VERSION` → its parts; the version must be canonical when `need_version`.
pub fn parse_target(target: &str, need_version: bool) -> Result<(ModulePath, Option<String>)> {
    let (m, v) = match target.rsplit_once('@') {
        Some((m, v)) => (m, Some(v.to_owned())),
        None => (target, None),
    };
    let module = ModulePath::new(m).with_context(|| format!("{m:?} is not a module path"))?;
    match &v {
        Some(v) if !agora_core::validate::is_canonical(v) => {
            bail!("{v:?} is not a canonical version (v1.2.3, v0.0.0-20240101000000-abcdef123456)")
        }
        None if need_version => bail!("name the version: {m}@VERSION"),
        _ => {}
    }
    Ok((module, v))
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// `agora ls [PATTERN]`: modules, or a module's versions when PATTERN is one module path.
pub async fn ls(config: &Config, pattern: Option<&str>, json: bool) -> Result<()> {
    let index = open_index(config).await?;
    let out = &mut std::io::stdout().lock();
    let modules = index
        .modules(&ModuleQuery {
            pattern: pattern.map(str::to_owned),
            ..ModuleQuery::default()
        })
        .await?;
    let single = match (pattern, modules.as_slice()) {
        (Some(p), [only]) if only.module.as_str() == p => Some(only.module.clone()),
        _ => None,
    };
    if let Some(module) = single {
        let versions = index.versions(&module).await?;
        for v in &versions {
            let bytes: u64 = v.artifacts.iter().map(|a| a.size).sum();
            let kinds: Vec<&str> = v.artifacts.iter().map(|a| a.kind.extension()).collect();
            let origin = v
                .artifacts
                .first()
                .map(|a| a.origin.kind().as_str())
                .unwrap_or("-");
            let served: u64 = v.artifacts.iter().map(|a| a.served_count).sum();
            if json {
                let line = serde_json::json!({
                    "module": module.as_str(),
                    "version": v.version,
                    "artifacts": kinds,
                    "bytes": bytes,
                    "origin": origin,
                    "h1": v.artifact(agora_storage::ArtifactKind::Zip).and_then(|a| a.h1.clone()),
                    "first_stored": v.first_stored.map(time),
                    "served": served,
                    "quarantine": v.quarantine.as_ref().map(|q| q.reason.clone()),
                });
                writeln!(out, "{line}")?;
            } else {
                let mark = match &v.quarantine {
                    Some(q) => format!("  QUARANTINED: {}", q.reason),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "{}@{}\t{}\t{}\t{}\tserved {}{mark}",
                    module,
                    v.version,
                    kinds.join(","),
                    size(bytes),
                    origin,
                    served
                )?;
            }
        }
        return Ok(());
    }
    for m in &modules {
        if json {
            let line = serde_json::json!({
                "module": m.module.as_str(),
                "versions": m.versions,
                "artifacts": m.artifacts,
                "bytes": m.bytes,
                "last_stored": time(m.last_stored),
                "last_served": m.last_served.map(time),
                "served": m.served_count,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}\t{} versions\t{}\tserved {}",
                m.module,
                m.versions,
                size(m.bytes),
                m.served_count
            )?;
        }
    }
    Ok(())
}

/// `agora stats`.
pub async fn stats(config: &Config, json: bool) -> Result<()> {
    let index = open_index(config).await?;
    let s = index.stats().await?;
    let out = &mut std::io::stdout().lock();
    if json {
        let kinds: serde_json::Map<String, serde_json::Value> = s
            .by_kind
            .iter()
            .map(|(k, t)| {
                (
                    k.extension().to_owned(),
                    serde_json::json!({"artifacts": t.artifacts, "bytes": t.bytes}),
                )
            })
            .collect();
        let origins: Vec<serde_json::Value> = s
            .by_origin
            .iter()
            .map(|o| serde_json::json!({"origin": o.origin.as_str(), "upstream": o.upstream, "artifacts": o.totals.artifacts, "bytes": o.totals.bytes}))
            .collect();
        let total = s.total();
        let line = serde_json::json!({
            "index": index.location(),
            "modules": s.modules,
            "versions": s.versions,
            "artifacts": total.artifacts,
            "bytes": total.bytes,
            "by_kind": kinds,
            "by_origin": origins,
            "served": s.served,
            "quarantined": s.quarantined,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let total = s.total();
    writeln!(out, "index:       {}", index.location())?;
    writeln!(out, "modules:     {}", s.modules)?;
    writeln!(out, "versions:    {}", s.versions)?;
    writeln!(
        out,
        "artifacts:   {} ({})",
        total.artifacts,
        size(total.bytes)
    )?;
    for (kind, t) in &s.by_kind {
        writeln!(
            out,
            "  .{:<4}      {} ({})",
            kind.extension(),
            t.artifacts,
            size(t.bytes)
        )?;
    }
    for o in &s.by_origin {
        let name = match &o.upstream {
            Some(u) => format!("{} {}", o.origin.as_str(), u),
            None => o.origin.as_str().to_owned(),
        };
        writeln!(
            out,
            "  from {name}: {} ({})",
            o.totals.artifacts,
            size(o.totals.bytes)
        )?;
    }
    writeln!(out, "served:      {}", s.served)?;
    writeln!(out, "quarantined: {}", s.quarantined)?;
    Ok(())
}

/// `agora index rebuild`.
pub async fn rebuild(config: &Config, storage: &agora_storage::Storage, hash: bool) -> Result<()> {
    let index = open_index(config).await?;
    let report = index.rebuild(storage, RebuildOptions { hash }).await?;
    println!(
        "index rebuilt from {}: {} artifacts ({}), {} other objects skipped",
        storage.backend(),
        report.artifacts,
        size(report.bytes),
        report.skipped
    );
    Ok(())
}

/// Who an operator is on the command line, for the audit log.
pub fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub fn audit_admin(
    audit: &agora_access::AuditLog,
    action: &'static str,
    module: &ModulePath,
    version: Option<&str>,
    reason: Option<&str>,
    result: &str,
) {
    audit.record_admin(&AdminRecord {
        time: SystemTime::now(),
        actor: cli_actor(),
        ip: None,
        action,
        module: module.to_string(),
        version: version.map(str::to_owned),
        reason: reason.map(str::to_owned),
        result: result.to_owned(),
    });
}

/// `agora gc [--apply]`.
pub async fn gc(config: &Config, proxy: &Proxy, apply: bool, json: bool) -> Result<()> {
    if !config.retention.is_set() {
        bail!("[retention] sets no limit (max_size, unused_for): nothing would ever be collected");
    }
    let policy = config.retention.policy(&config.routing.direct_patterns());
    let Some(done) = proxy
        .collect(&policy, config.retention.keep_recent, apply)
        .await?
    else {
        bail!("another replica is collecting right now; try again later");
    };
    let out = &mut std::io::stdout().lock();
    for e in &done.evictions {
        let reason = match e.reason {
            agora_index::EvictReason::Unused => "unused",
            agora_index::EvictReason::OverBudget => "over budget",
        };
        if json {
            let line = serde_json::json!({
                "key": e.key.path(), "bytes": e.size, "last_used": time(e.last_used), "reason": reason,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}\t{}\tlast used {}\t{reason}",
                e.key.path(),
                size(e.size),
                time(e.last_used)
            )?;
        }
    }
    let s = &done.summary;
    let verb = if apply { "deleted" } else { "would delete" };
    let (count, freed) = if apply {
        (done.deleted, done.freed)
    } else {
        (s.evicted.artifacts, s.evicted.bytes)
    };
    let mut line = format!(
        "gc: {verb} {count} artifacts, {} of {} stored",
        size(freed),
        size(s.before.bytes)
    );
    if done.hot > 0 {
        line.push_str(&format!(
            "; kept {} used in the last {}",
            done.hot,
            humantime::format_duration(config.retention.keep_recent)
        ));
    }
    if !s.within_budget {
        line.push_str("; still over max_size: what is left is kept (private modules, metadata)");
    }
    if !apply && count > 0 {
        line.push_str("; run with --apply to delete");
    }
    eprintln!("{line}");
    Ok(())
}

/// The server's work on the index: every `sync_interval` write hits and read quarantines;
/// every twelfth time (a minute by default) the stored-bytes metrics, a query over every artifact; every `retention.interval` a collection.
pub fn spawn_background(config: &Config, proxy: Proxy) {
    let sync_every = config.index.sync_interval.max(Duration::from_millis(100));
    let retention = config.retention.clone();
    let keep_recent = retention.keep_recent;
    let policy = retention.policy(&config.routing.direct_patterns());
    tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let mut tick = tokio::time::interval(sync_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_metrics: Option<std::time::Instant> = None;
            loop {
                tick.tick().await;
                if let Err(err) = proxy.sync_index().await {
                    tracing::warn!(error = %err, "index sync failed; retrying");
                }
                if last_metrics.is_none_or(|t| t.elapsed() >= sync_every * 12) {
                    last_metrics = Some(std::time::Instant::now());
                    if let Err(err) = proxy.refresh_store_metrics().await {
                        tracing::warn!(error = %err, "reading the index's totals failed");
                    }
                }
            }
        }
    });
    let Some(every) = retention.interval.filter(|_| retention.is_set()) else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match proxy.collect(&policy, keep_recent, true).await {
                Ok(Some(done)) => tracing::info!(
                    deleted = done.deleted,
                    freed = done.freed,
                    kept_hot = done.hot,
                    "retention collected"
                ),
                Ok(None) => tracing::debug!("another replica is collecting"),
                Err(err) => tracing::warn!(error = %err, "retention collection failed"),
            }
        }
    });
}
