//! Git servers like a company's internal GitLab, on loopback: [`HttpsGitServer`] (smart HTTP over
//! HTTPS with a private CA and basic auth, plus `?go-get=1` answers) and [`SshGitServer`] (OpenSSH's
//! `sshd` with key authentication).
//!
//! Both serve the repositories of a directory laid out as `<repos>/<path>`, usually one host's
//! directory of a [`GitHost`](crate::GitHost) (`git_host.repo_dir("gitlab.corp.example")`), so
//! fixtures are built with [`Repo`](crate::Repo) as usual and the same repositories can be reached
//! over `file://`, HTTPS and SSH.
//!
//! # Host names, loopback addresses and `/etc/hosts`
//!
//! The go command insists on `https://<module path>?go-get=1` on port 443 for hosts it does not know,
//! resolved by the system resolver, so an HTTPS server needs a real name → address mapping. Each
//! [`HttpsGitServer`] therefore:
//!
//! - binds port 443 on a loopback address derived from its host name ([`loopback_ip_for`]: a hash
//!   of the name into `127.1.0.1`–`127.254.255.254`, so different names never share a socket and the
//!   same name always gets the same address, across processes and runs);
//! - makes sure `/etc/hosts` has the line `<ip> <name> # agora-testkit` ([`ensure_hosts_entry`]:
//!   appended once, left there afterwards — it is idempotent, and a later run needs the same line).
//!   That needs root, which binding port 443 needs anyway; tests run as root on CI and in the dev
//!   container;
//! - holds a process-wide lease on its host name while it runs: a second server for the same name in
//!   the same test binary waits until the first one is dropped (the lease), and one in another
//!   process waits until port 443 on that address is free. Tests that can run in parallel use
//!   different host names (e.g. `gitlab-auth.corp.example`).
//!
//! [`SshGitServer`] needs none of this: the ssh client configuration it writes maps its host alias
//! to `127.0.0.1` and a free port.

mod https;
mod pki;
mod ssh;

use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use https::{
    GitRequest, GoGetMode, HttpsGitServer, HttpsGitServerBuilder, RequestKind, DEFAULT_HTTPS_HOST,
    DEFAULT_TOKEN, DEFAULT_USER,
};
pub use pki::{ServerCert, TestCa};
pub use ssh::{SshGitServer, SshRequest, DEFAULT_SSH_HOST};

/// The hosts file the system resolver (glibc, and Go's own resolver) reads.
pub const HOSTS_FILE: &str = "/etc/hosts";

/// Marks the lines [`ensure_hosts_entry`] writes, so they can be told apart from the machine's own.
const HOSTS_MARKER: &str = "# agora-testkit";

/// Poisoning only means another test thread panicked while holding the lock; the data is still fine.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The loopback address a host name is served on: `127.A.B.C` with `A` in 1..=254, `B` in 0..=255
/// and `C` in 1..=254, from a 64-bit FNV-1a hash of the lower-cased name. Never `127.0.0.x`, so it
/// stays clear of `localhost` and of servers bound to `127.0.0.1`.
pub fn loopback_ip_for(name: &str) -> Ipv4Addr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let a = 1 + (h % 254) as u8;
    let b = (h >> 16) as u8;
    let c = 1 + ((h >> 32) % 254) as u8;
    Ipv4Addr::new(127, a, b, c)
}

/// Makes `name` resolve to `ip` through `/etc/hosts` (see the module docs). Idempotent.
///
/// A stale line written by an earlier agora-testkit (marked `# agora-testkit`) for the same name is
/// replaced; a line the machine's owner wrote is not touched.
///
/// # Panics
/// When the name is mapped to another address by a line agora-testkit did not write, or the file
/// cannot be written (not root).
pub fn ensure_hosts_entry(name: &str, ip: Ipv4Addr) {
    // Serializes edits within this process; other processes only ever append the same line for a
    // name (the address is a function of the name), so a race costs at most a duplicate line.
    static EDIT: Mutex<()> = Mutex::new(());
    let _guard = lock(&EDIT);
    let text =
        std::fs::read_to_string(HOSTS_FILE).unwrap_or_else(|e| panic!("read {HOSTS_FILE}: {e}"));
    let mut stale = false;
    for line in text.lines() {
        let fields: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if fields.len() < 2 || !fields[1..].iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        if fields[0] == ip.to_string() {
            return;
        }
        assert!(
            line.contains(HOSTS_MARKER),
            "{HOSTS_FILE} maps {name} to {} (line {line:?}), but the test server for it listens on \
             {ip}: remove that line",
            fields[0]
        );
        stale = true;
    }
    let new_line = format!("{ip} {name} {HOSTS_MARKER}\n");
    let result = if stale {
        // Rewritten in place, not renamed over: /etc/hosts is often a bind mount in containers.
        let mut kept: String = text
            .lines()
            .filter(|l| !(l.contains(HOSTS_MARKER) && l.split_whitespace().any(|n| n == name)))
            .map(|l| format!("{l}\n"))
            .collect();
        kept.push_str(&new_line);
        std::fs::write(HOSTS_FILE, kept)
    } else {
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        std::fs::OpenOptions::new()
            .append(true)
            .open(HOSTS_FILE)
            .and_then(|mut f| f.write_all(format!("{sep}{new_line}").as_bytes()))
    };
    result.unwrap_or_else(|e| {
        panic!(
            "cannot add \"{}\" to {HOSTS_FILE}: {e} (the HTTPS git server needs root: it edits \
             {HOSTS_FILE} and binds port 443)",
            new_line.trim_end()
        )
    });
}

/// A process-wide claim on a host name, so two servers for the same name never run at once in one
/// test binary (they would fight over the same address and port). Released on drop.
#[derive(Debug)]
pub(crate) struct HostLease {
    name: String,
}

struct Leases {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

fn leases() -> &'static Leases {
    static LEASES: OnceLock<Leases> = OnceLock::new();
    LEASES.get_or_init(|| Leases {
        held: Mutex::new(HashSet::new()),
        freed: Condvar::new(),
    })
}

/// How long a server waits for another one with the same host name to stop.
const LEASE_WAIT: Duration = Duration::from_secs(600);

impl HostLease {
    /// Waits (up to 10 minutes) until no other server of this process uses `name`, then claims it.
    pub(crate) fn acquire(name: &str) -> HostLease {
        let key = name.to_ascii_lowercase();
        let l = leases();
        let deadline = Instant::now() + LEASE_WAIT;
        let mut held = lock(&l.held);
        while held.contains(&key) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "another test server for {name} ran for more than {LEASE_WAIT:?}; use a different \
                 host name for tests that run in parallel"
            );
            held = l
                .freed
                .wait_timeout(held, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        held.insert(key.clone());
        HostLease { name: key }
    }
}

impl Drop for HostLease {
    fn drop(&mut self) {
        let l = leases();
        lock(&l.held).remove(&self.name);
        l.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ips_are_stable_and_distinct() {
        let a = loopback_ip_for("gitlab.corp.example");
        assert_eq!(a, loopback_ip_for("GitLab.Corp.Example"));
        assert_ne!(a, loopback_ip_for("gitlab-auth.corp.example"));
        for name in ["a", "b.example", "gitlab.corp.example", "x.y.z"] {
            let o = loopback_ip_for(name).octets();
            assert_eq!(o[0], 127);
            assert!(o[1] >= 1 && o[1] <= 254, "{o:?}");
            assert!(o[3] >= 1 && o[3] <= 254, "{o:?}");
        }
    }

    #[test]
    fn leases_serialize_the_same_name() {
        let first = HostLease::acquire("lease.test.example");
        let other = HostLease::acquire("other.test.example");
        let t = std::thread::spawn(|| {
            let start = Instant::now();
            let _second = HostLease::acquire("LEASE.test.example");
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        let waited = t.join().unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        drop(other);
    }
}
