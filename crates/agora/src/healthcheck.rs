//! `agora healthcheck`: asks a running agora whether it is ready (`GET /readyz`), for Docker's
//! `HEALTHCHECK` and other supervisors, so the runtime image needs no curl.
//!
//! One plain-HTTP/1.1 request over a TCP socket with short timeouts; the answer's status line
//! decides (200 → exit 0). HTTPS is not spoken: agora's plain listener is what a supervisor on
//! the same machine reaches; an HTTPS-only agora is checked with `--url` pointing at a plain one
//! or from the load balancer.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(url: Option<&str>, config: &crate::ConfigArgs) -> Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => default_url(config.load()?.listen.as_deref())?,
    };
    let (host, path) = split_url(&url)?;
    let status = get_status(&host, &path)?;
    if status != 200 {
        bail!("{url} answered {status}");
    }
    println!("ok: {url} answered 200");
    Ok(())
}

/// `/readyz` on the plain listen address; a wildcard address is reached through loopback.
fn default_url(listen: Option<&str>) -> Result<String> {
    let Some(listen) = listen else {
        bail!("agora listens on HTTPS only (listen = \"\"); pass --url http://HOST:PORT/readyz");
    };
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("invalid listen address {listen:?}"))?;
    let host = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        other => other.to_string(),
    };
    Ok(format!("http://{host}/readyz"))
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url:?}: only http:// URLs are supported");
    };
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
    Ok((host, path.to_owned()))
}

fn get_status(host: &str, path: &str) -> Result<u16> {
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: agora-healthcheck\r\nConnection: close\r\n\r\n"
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
            default_url(Some("0.0.0.0:3000")).unwrap(),
            "http://127.0.0.1:3000/readyz"
        );
        assert_eq!(
            default_url(Some("[::]:3000")).unwrap(),
            "http://[::1]:3000/readyz"
        );
        assert_eq!(
            default_url(Some("10.1.2.3:8080")).unwrap(),
            "http://10.1.2.3:8080/readyz"
        );
        assert!(default_url(None).is_err());
        assert_eq!(
            split_url("http://127.0.0.1:3000/readyz").unwrap(),
            ("127.0.0.1:3000".into(), "/readyz".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/readyz".into())
        );
        assert_eq!(
            split_url("http://[::1]:3000/healthz").unwrap(),
            ("[::1]:3000".into(), "/healthz".into())
        );
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
        assert_eq!(get_status(&addr.to_string(), "/readyz").unwrap(), 200);
        assert_eq!(get_status(&addr.to_string(), "/readyz").unwrap(), 503);
        server.join().unwrap();
    }
}
