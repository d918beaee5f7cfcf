//! `agora healthcheck`: asks a running agora whether it is ready (`GET /readyz`), for Docker's
//! `HEALTHCHECK` and other supervisors, so the runtime image needs no curl.
//!
//! One plain-HTTP/1.1 request over a TCP socket, or a Unix socket (`http://unix:/PATH:/readyz`,
//! nginx's way of writing it), with short timeouts; the answer's status line decides (200 → exit
//! 0). HTTPS is not spoken: agora's plain listener is what a supervisor on the same machine
//! reaches; an HTTPS-only agora is checked with `--url` pointing at a plain one or from the load
//! balancer. The default URL includes `server.path_prefix`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(url: Option<&str>, config: &crate::ConfigArgs) -> Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let config = config.load()?;
            default_url(
                config.listen.as_deref(),
                config.server.path_prefix.as_deref(),
            )?
        }
    };
    let (target, path) = split_url(&url)?;
    let status = get_status(&target, &path)?;
    if status != 200 {
        bail!("{url} answered {status}");
    }
    println!("ok: {url} answered 200");
    Ok(())
}

/// `/readyz` (under `prefix`) on the plain listen address; a wildcard address is reached through
/// loopback.
fn default_url(listen: Option<&str>, prefix: Option<&str>) -> Result<String> {
    let Some(listen) = listen else {
        bail!("agora listens on HTTPS only (listen = \"\"); pass --url http://HOST:PORT/readyz");
    };
    let prefix = prefix.unwrap_or_default();
    let host = match listen.parse::<agora_server::ListenAddr>()? {
        agora_server::ListenAddr::Unix(path) => format!("unix:{}:", path.display()),
        agora_server::ListenAddr::Tcp(addr) => match addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
            SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
            other => other.to_string(),
        },
    };
    Ok(format!("http://{host}{prefix}/readyz"))
}

/// Where the request goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `host:port`.
    Tcp(String),
    Unix(PathBuf),
}

/// `http://host:port/path` → (`host:port`, `/path`); `http://unix:/run/agora.sock:/path` →
/// (the socket, `/path`).
fn split_url(url: &str) -> Result<(Target, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url:?}: only http:// URLs are supported");
    };
    if let Some(socket) = rest.strip_prefix("unix:") {
        let (socket, path) = match socket.split_once(":/") {
            Some((s, p)) => (s, format!("/{p}")),
            None => (socket.trim_end_matches(':'), "/readyz".to_owned()),
        };
        if !socket.starts_with('/') {
            bail!("{url:?}: expected http://unix:/SOCKET:/PATH");
        }
        return Ok((Target::Unix(PathBuf::from(socket)), path));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/readyz"),
    };
    if host.is_empty() || host.contains('@') {
        bail!("{url:?}: expected http://HOST[:PORT]/PATH");
    }
    let host = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((Target::Tcp(host), path.to_owned()))
}

fn get_status(target: &Target, path: &str) -> Result<u16> {
    match target {
        Target::Tcp(host) => {
            let addr = host
                .to_socket_addrs()
                .with_context(|| format!("resolving {host}"))?
                .next()
                .with_context(|| format!("{host} has no address"))?;
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
                .with_context(|| format!("connecting to {host}"))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            exchange(stream, host, path)
        }
        #[cfg(unix)]
        Target::Unix(socket) => {
            let shown = format!("unix:{}", socket.display());
            let stream = std::os::unix::net::UnixStream::connect(socket)
                .with_context(|| format!("connecting to {shown}"))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            exchange(stream, &shown, path)
        }
        #[cfg(not(unix))]
        Target::Unix(_) => bail!("Unix sockets need a Unix system"),
    }
}

/// Sends the request over `stream` and reads the status code of the answer.
fn exchange(mut stream: impl Read + Write, host: &str, path: &str) -> Result<u16> {
    // A Unix socket has no host name; `localhost` is what such a request usually says.
    let host_header = if host.starts_with("unix:") {
        "localhost"
    } else {
        host
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: agora-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending to {host}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .with_context(|| format!("reading the answer of {host}"))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{host} did not answer HTTP: {:?}", line.trim_end()))?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            default_url(Some("0.0.0.0:3000"), None).unwrap(),
            "http://127.0.0.1:3000/readyz"
        );
        assert_eq!(
            default_url(Some("[::]:3000"), None).unwrap(),
            "http://[::1]:3000/readyz"
        );
        assert_eq!(
            default_url(Some("10.1.2.3:8080"), Some("/go")).unwrap(),
            "http://10.1.2.3:8080/go/readyz"
        );
        assert_eq!(
            default_url(Some("unix:/run/agora/agora.sock"), Some("/go")).unwrap(),
            "http://unix:/run/agora/agora.sock:/go/readyz"
        );
        assert!(default_url(None, None).is_err());
        let tcp = |h: &str| Target::Tcp(h.into());
        assert_eq!(
            split_url("http://127.0.0.1:3000/readyz").unwrap(),
            (tcp("127.0.0.1:3000"), "/readyz".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            (tcp("localhost:80"), "/readyz".into())
        );
        assert_eq!(
            split_url("http://[::1]:3000/healthz").unwrap(),
            (tcp("[::1]:3000"), "/healthz".into())
        );
        assert_eq!(
            split_url("http://unix:/run/agora/agora.sock:/go/readyz").unwrap(),
            (
                Target::Unix("/run/agora/agora.sock".into()),
                "/go/readyz".into()
            )
        );
        assert_eq!(
            split_url("http://unix:/run/agora/agora.sock").unwrap(),
            (
                Target::Unix("/run/agora/agora.sock".into()),
                "/readyz".into()
            )
        );
        assert!(split_url("http://unix:agora.sock:/readyz").is_err());
        assert!(split_url("https://x/readyz").is_err());
        assert!(split_url("http://u:p@x/readyz").is_err());
    }

    #[test]
    fn status_of_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut req = String::new();
                reader.read_line(&mut req).unwrap();
                assert_eq!(req, "GET /readyz HTTP/1.1\r\n");
                // The whole head, so that closing does not reset the connection.
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let target = Target::Tcp(addr.to_string());
        assert_eq!(get_status(&target, "/readyz").unwrap(), 200);
        assert_eq!(get_status(&target, "/readyz").unwrap(), 503);
        server.join().unwrap();
    }
}
