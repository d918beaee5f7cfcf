//! Temporary directories for the test world, and the sweep that removes those of dead test
//! processes.
//!
//! Why: the expensive fixtures (git hosts, go sandboxes, the upstream proxy tree, built programs)
//! are built once per test binary and kept in statics, and Rust never drops statics, so their
//! [`TempDir`]s were never deleted: every test run left hundreds of MB in `/tmp` (a CI run once
//! failed on a full disk). A process cannot clean up after itself at exit, but the next one can.
//!
//! So every temporary directory of the testkit is made by [`tempdir`], under a directory owned by
//! the process: `<temp_dir>/agora-tests/<pid>-<start time>-<pid namespace>/`. The first call in a
//! process removes the directories of processes that no longer exist. The start time (from
//! `/proc/<pid>/stat`) tells a reused pid from the process that left the directory; a directory of
//! another pid namespace (a container sharing `/tmp`) is left alone, since its processes cannot be
//! seen from here. Test binaries sweep concurrently (cargo runs several), so a dead directory is
//! first renamed to a name of the sweeping process (atomic: one sweeper wins, the others skip it)
//! and then deleted; a sweeper that dies halfway leaves a renamed directory that the next sweep
//! removes. Directories that are dropped still delete themselves at once, as any [`TempDir`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The directory, under [`std::env::temp_dir`], that holds one directory per test process.
pub const ROOT_NAME: &str = "agora-tests";

/// A new temporary directory named `<prefix>XXXXXX` in this process's scratch directory (see the
/// module docs). Deleted when dropped; if it never is (a static fixture, a killed process), the
/// first test process started after this one has exited deletes it.
///
/// # Panics
/// When the directory cannot be created.
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(process_dir())
        .unwrap_or_else(|e| {
            panic!(
                "create a {prefix}* temporary directory in {}: {e}",
                process_dir().display()
            )
        })
}

/// This process's scratch directory, `<temp_dir>/agora-tests/<pid>-<start>-<ns>/`; the first call
/// creates it and sweeps the directories of dead processes.
///
/// # Panics
/// When it cannot be created.
pub fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join(ROOT_NAME);
        let me = Owner::current();
        let dir = root.join(me.map_or_else(|| std::process::id().to_string(), |o| o.name()));
        create_root(&root);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create test scratch directory {}: {e}", dir.display()));
        // Without /proc, nothing tells a dead process from a live one: keep everything.
        if let Some(me) = me {
            sweep(&root, &me);
        }
        dir
    })
}

/// Creates the shared root, writable by everyone like `/tmp` itself (sticky: nobody can rename or
/// delete another user's directories), so that a run as another user still works.
fn create_root(root: &Path) {
    if let Some(parent) = root.parent() {
        let _ = fs::create_dir_all(parent);
    }
    match fs::create_dir(root) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o1777));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("create test scratch root {}: {e}", root.display()),
    }
    let meta = fs::symlink_metadata(root)
        .unwrap_or_else(|e| panic!("test scratch root {}: {e}", root.display()));
    assert!(
        meta.is_dir(),
        "test scratch root {} is not a directory (a symlink or a file): remove it",
        root.display()
    );
}

/// The process a scratch directory belongs to, as written in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    /// Start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    start: u64,
    /// Inode of the pid namespace (`/proc/<pid>/ns/pid`), 0 when unknown.
    ns: u64,
}

impl Owner {
    fn current() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            pid,
            start: start_time(pid).ok()??,
            ns: pid_namespace(),
        })
    }

    /// `<pid>-<start>-<ns>`.
    fn name(&self) -> String {
        format!("{}-{}-{}", self.pid, self.start, self.ns)
    }

    /// The owner of a directory named `<pid>-<start>-<ns>`, or of a directory a sweeper renamed
    /// to `<pid>-<start>-<ns>.<anything>`. Other names are not the testkit's.
    fn parse(name: &str) -> Option<Owner> {
        let id = name.split_once('.').map_or(name, |(id, _)| id);
        let mut parts = id.split('-');
        let owner = Owner {
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            ns: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    /// Whether the process still exists. Anything unclear counts as alive: a directory kept too
    /// long costs disk space, one deleted too early breaks a running test.
    fn alive(&self) -> bool {
        match start_time(self.pid) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) | Ok(None) => true,
            // Same pid, another start time: the pid was reused, the owner is gone.
            Ok(Some(start)) => start == self.start,
        }
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`); `Ok(None)` when unreadable.
fn start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so count from the last ')'.
    // After it, field 3 (state) is the first word, so field 22 is the twentieth.
    Ok(stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|s| s.parse().ok()))
}

/// The inode of this process's pid namespace (`pid:[4026531836]`), 0 when unknown.
fn pid_namespace() -> u64 {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// Removes, from `root`, every entry owned by a process of `me`'s pid namespace that no longer
/// exists. Safe to run concurrently with other sweepers and with live processes creating their
/// directories; errors are ignored (a sweep is best effort and must never fail a test).
fn sweep(root: &Path, me: &Owner) {
    static RENAMED: AtomicUsize = AtomicUsize::new(0);
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(Owner::parse) else {
            continue;
        };
        if owner == *me || owner.ns != me.ns || owner.alive() {
            continue;
        }
        // Take it first: only one concurrent sweeper can rename it; the others get NotFound.
        let n = RENAMED.fetch_add(1, Ordering::Relaxed);
        let taken = root.join(format!("{}.swept-{n}", me.name()));
        if fs::rename(entry.path(), &taken).is_err() {
            continue;
        }
        // Not following symlinks; a plain file is removed too.
        if fs::remove_dir_all(&taken).is_err() {
            let _ = fs::remove_file(&taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A pid no process can have: Linux pids stay below 2^22.
    const NO_SUCH_PID: u32 = u32::MAX - 1;

    fn mkdir(root: &Path, name: &str) -> PathBuf {
        let d = root.join(name);
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/file"), "x").unwrap();
        d
    }

    fn names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn owners_round_trip_through_names() {
        let o = Owner {
            pid: 42,
            start: 7,
            ns: 4026531836,
        };
        assert_eq!(Owner::parse(&o.name()), Some(o));
        assert_eq!(Owner::parse(&format!("{}.swept-3", o.name())), Some(o));
        for bad in [
            "",
            "42",
            "42-7",
            "42-7-x",
            "42-7-1-2",
            "agora-git-abc",
            "-1-2",
        ] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = Owner::current().expect("/proc is readable on the test machines");
        assert!(me.alive());
        assert!(!Owner {
            pid: NO_SUCH_PID,
            ..me
        }
        .alive());
        assert!(
            !Owner {
                start: me.start + 1,
                ..me
            }
            .alive(),
            "a reused pid is not the owner"
        );
        assert!(process_dir().ends_with(me.name()));
        let t = tempdir("agora-scratch-test-");
        assert!(t.path().starts_with(process_dir()));
    }

    #[test]
    fn sweep_removes_dead_processes_dirs_and_keeps_live_ones() {
        let root = tempdir("agora-sweep-");
        let root = root.path();
        let me = Owner::current().unwrap();
        let mut child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("run sleep");
        let other_live = Owner {
            pid: child.id(),
            start: start_time(child.id()).unwrap().unwrap(),
            ns: me.ns,
        };
        let dead = Owner {
            pid: NO_SUCH_PID,
            ..me
        };
        let reused = Owner {
            start: me.start + 1,
            ..me
        };
        let other_ns = Owner {
            ns: me.ns + 1,
            ..dead
        };
        mkdir(root, &me.name());
        mkdir(root, &other_live.name());
        mkdir(root, &dead.name());
        mkdir(root, &reused.name());
        mkdir(root, &format!("{}.swept-0", dead.name()));
        mkdir(root, &other_ns.name());
        mkdir(root, "agora-git-AbCdEf");
        fs::write(root.join(format!("{NO_SUCH_PID}-1-{}", me.ns)), "a file").unwrap();

        sweep(root, &me);
        let _ = child.kill();
        let _ = child.wait();

        let mut want = vec![
            me.name(),
            other_live.name(),
            other_ns.name(),
            "agora-git-AbCdEf".to_string(),
        ];
        want.sort();
        assert_eq!(names(root), want);
        assert!(root.join(me.name()).join("sub/file").is_file());
    }

    #[test]
    fn concurrent_sweeps_share_the_work() {
        let root = tempdir("agora-sweep-");
        let root = root.path();
        let me = Owner::current().unwrap();
        mkdir(root, &me.name());
        for start in 0..40 {
            let dead = Owner {
                pid: NO_SUCH_PID,
                start,
                ns: me.ns,
            };
            mkdir(root, &dead.name());
        }
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| sweep(root, &me));
            }
        });
        assert_eq!(names(root), vec![me.name()]);
    }
}
