//! What the connection loop listens on: a TCP address or, for a reverse proxy on the same machine,
//! a Unix socket (`listen = "unix:/run/agora/agora.sock"`).
//!
//! A Unix socket file outlives the process that made it (`kill -9`), so [`bind_unix`] replaces a
//! leftover one, but only a socket nobody listens on: a regular file (a typo in the path) or a
//! live agora's socket is refused, never removed. The socket is made group-accessible (0660:
//! the reverse proxy's user joins agora's group) and removed again when its [`UnixSocketFile`] is
//! dropped, if it is still the one this process made.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;

/// A configured listen address: `HOST:PORT` (an IP address) or `unix:/absolute/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A listen address that is neither `IP:PORT` nor `unix:/absolute/path`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid listen address {addr:?}: {reason}")]
pub struct ListenAddrError {
    pub addr: String,
    pub reason: &'static str,
}

/// The scheme prefix of a Unix socket address.
pub const UNIX_SCHEME: &str = "unix:";

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| ListenAddrError {
            addr: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix(UNIX_SCHEME) {
            if !path.starts_with('/') {
                return Err(refuse(
                    "a Unix socket needs an absolute path: unix:/run/agora/agora.sock",
                ));
            }
            if path.ends_with('/') {
                return Err(refuse("a Unix socket path names a file, not a directory"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| refuse("expected IP:PORT (0.0.0.0:3000, [::]:3000) or unix:/PATH"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{UNIX_SCHEME}{}", p.display()),
        }
    }
}

/// A bound listener, handed to [`crate::serve_with`] (which also takes a bare [`TcpListener`]).
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

#[cfg(unix)]
impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

/// Binds a Unix socket at `path` with mode 0660, replacing a stale socket file (see the module
/// docs). Keep the returned [`UnixSocketFile`] until serving ends: dropping it removes the file.
#[cfg(unix)]
pub fn bind_unix(path: &Path) -> io::Result<(UnixListener, UnixSocketFile)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another process is listening on {}", path.display()),
                    ))
                }
                // Nobody answers: left behind by a process that is gone.
                Err(_) => std::fs::remove_file(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("removing the stale socket {}: {e}", path.display()),
                    )
                })?,
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("checking {}: {e}", path.display()),
            ))
        }
    }
    let listener = UnixListener::bind(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    // Made before the mode is set, so that a failure below removes the socket again.
    let file = UnixSocketFile {
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    };
    // Set after bind (the umask decides the mode bind gives): until then the socket is at most as
    // open as the umask allows.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok((listener, file))
}

/// The socket file [`bind_unix`] made; removed on drop unless something else took its name since.
#[cfg(unix)]
#[derive(Debug)]
pub struct UnixSocketFile {
    path: PathBuf,
    /// Device and inode, to tell our socket from one another process put there since.
    id: (u64, u64),
}

#[cfg(unix)]
impl UnixSocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            if let Err(err) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the socket file");
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn addresses() {
        assert_eq!(
            "127.0.0.1:3000".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 3000)))
        );
        let unix: ListenAddr = "unix:/run/agora/agora.sock".parse().unwrap();
        assert_eq!(unix, ListenAddr::Unix("/run/agora/agora.sock".into()));
        assert_eq!(unix.to_string(), "unix:/run/agora/agora.sock");
        for bad in [
            "unix:agora.sock",
            "unix:",
            "unix:/run/agora/",
            "localhost:3000",
            "",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn stale_sockets_are_replaced_other_files_and_live_sockets_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.sock");

        let (listener, file) = bind_unix(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let err = bind_unix(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        // A crash: the listener is gone, the file is left.
        drop(listener);
        std::mem::forget(file);
        assert!(path.exists());
        let (_listener, file) = bind_unix(&path).unwrap();
        drop(file);
        assert!(!path.exists(), "removed on drop");

        std::fs::write(&path, "not a socket").unwrap();
        let err = bind_unix(&path).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
