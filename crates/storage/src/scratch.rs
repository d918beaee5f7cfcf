//! Scratch space on local disk: one directory per process under `_agora/tmp`, named after its
//! owner (`p<pid>-<start time>-<boot id>`), so that a starting agora can tell the leftovers of a
//! dead process (`kill -9`, a crash, a power cut) from the downloads of a live one sharing the
//! data directory, and remove only the former.
//!
//! The pid alone would not do: pids are reused, and a reused pid would keep a dead process's
//! files forever (or, worse, make a live stranger's look dead). The start time (from
//! `/proc/<pid>/stat`, in clock ticks since boot) and the boot id together name one process
//! for good. Where `/proc` cannot tell (not Linux), ownership is unknown and only the old rule
//! applies: files older than [`SCRATCH_MAX_AGE`](crate::store::SCRATCH_MAX_AGE) go.
//!
//! Replicas share remote storage, never local scratch, so only processes on this machine can
//! own these directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Whether `dir` (created if missing) takes a new file: a read-only, full or vanished data
/// directory must show as not ready, since every miss is staged there.
pub(crate) async fn probe_writable(dir: &Path) -> Result<(), crate::StorageError> {
    let owned = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&owned)?;
        let probe = owned.join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|source| crate::StorageError::Scratch {
        path: dir.to_owned(),
        source,
    })
}

/// Whose a scratch directory is.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Alive,
    Gone,
    /// Not a name this scheme makes, or no `/proc` to ask.
    Unknown,
}

/// Removes what dead processes left under `parent` and returns this process's own scratch
/// directory there, created if needed. Several [`crate::Storage`]s of one process share it.
pub(crate) fn claim(parent: &Path, max_age: Duration) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(parent)?;
    sweep(parent, max_age);
    let own = parent.join(own_name());
    std::fs::create_dir_all(&own)?;
    Ok(own)
}

/// Best-effort: removes the directories of processes that are gone, and files older than
/// `max_age` where the owner is unknown (loose files of older agora versions included).
/// Removing a scratch name never loses data: published artifacts are links or copies.
fn sweep(parent: &Path, max_age: Duration) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            remove_if_old(&path, max_age);
            continue;
        }
        match owner(&entry.file_name().to_string_lossy()) {
            Owner::Alive => {}
            Owner::Gone => {
                let bytes = dir_bytes(&path);
                if std::fs::remove_dir_all(&path).is_ok() {
                    tracing::info!(
                        path = %path.display(),
                        bytes,
                        "removed scratch files of a process that is gone"
                    );
                }
            }
            Owner::Unknown => {
                if let Ok(files) = std::fs::read_dir(&path) {
                    for f in files.flatten() {
                        remove_if_old(&f.path(), max_age);
                    }
                }
            }
        }
    }
}

fn remove_if_old(path: &Path, max_age: Duration) {
    let old = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > max_age);
    if old && std::fs::remove_file(path).is_ok() {
        tracing::info!(path = %path.display(), "removed stale scratch file");
    }
}

/// Total size of the files directly in `dir`, for the log.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The scratch directory name of this process.
fn own_name() -> String {
    let pid = std::process::id();
    match (start_time(pid), boot_id()) {
        (Some(start), Some(boot)) => name(pid, start, &boot),
        // Unknowable owner: such a name never parses, so it is only ever swept by age.
        _ => format!("p{pid}"),
    }
}

fn name(pid: u32, start: u64, boot: &str) -> String {
    format!("p{pid}-{start}-{boot}")
}

/// Whether the process a scratch directory is named after still runs.
fn owner(name: &str) -> Owner {
    let parsed = name.strip_prefix('p').and_then(|rest| {
        let mut f = rest.splitn(3, '-');
        let pid: u32 = f.next()?.parse().ok()?;
        let start: u64 = f.next()?.parse().ok()?;
        Some((pid, start, f.next()?))
    });
    let Some((pid, start, boot)) = parsed else {
        return Owner::Unknown;
    };
    // Without our own start time there is no /proc to ask.
    let (Some(_), Some(this_boot)) = (start_time(std::process::id()), boot_id()) else {
        return Owner::Unknown;
    };
    if boot != this_boot {
        return Owner::Gone;
    }
    match start_time(pid) {
        Some(t) if t == start => Owner::Alive,
        // No such process, or the pid now belongs to a later one.
        _ => Owner::Gone,
    }
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
#[cfg(target_os = "linux")]
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn start_time(_pid: u32) -> Option<u64> {
    None
}

/// This boot's id, without dashes, so names stay one `-`-separated triple.
#[cfg(target_os = "linux")]
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id: String = id
        .trim()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(not(target_os = "linux"))]
fn boot_id() -> Option<String> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn owners_are_told_apart() {
        let me = own_name();
        assert_eq!(owner(&me), Owner::Alive);
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        let boot = boot_id().unwrap();
        // Same pid, other start time: the pid was reused.
        assert_eq!(owner(&name(pid, start + 1, &boot)), Owner::Gone);
        // Another boot.
        assert_eq!(owner(&name(pid, start, "0123abcd")), Owner::Gone);
        // A process that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pid = child.id();
        child.wait().unwrap();
        assert_eq!(owner(&name(child_pid, 1, &boot)), Owner::Gone);
        for other in ["1-2-3-x", "p", "pabc-1-x", "tmp"] {
            assert_eq!(owner(other), Owner::Unknown, "{other}");
        }
    }

    #[test]
    fn claim_removes_dead_owners_and_keeps_live_and_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let boot = boot_id().unwrap();
        let dead = dir.path().join(name(std::process::id(), 1, &boot));
        let unknown = dir.path().join("not-ours");
        for d in [&dead, &unknown] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("partial.zip"), b"partial").unwrap();
        }
        let own = claim(dir.path(), Duration::from_secs(3600)).unwrap();
        assert!(!dead.exists());
        assert!(unknown.join("partial.zip").exists());
        std::fs::write(own.join("in-progress"), b"x").unwrap();
        // A second claim by the same (live) process keeps its files.
        assert_eq!(claim(dir.path(), Duration::from_secs(3600)).unwrap(), own);
        assert!(own.join("in-progress").exists());
    }
}
