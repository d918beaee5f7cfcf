//! What the benchmarks share: timing helpers and a minimal HTTP client that asks agora for
//! module versions the way the go command does (`.info`, then `.mod`, then `.zip`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use agora_gomod::module::{escape_path, escape_version};

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `.info`, `.mod` and `.zip` of every `module@version` in `queries` from the agora at `base`:
/// one thread per version, all at once, each asserting a 200 with a body.
pub fn fetch_all(base: &str, queries: &[String]) {
    let addr = base
        .strip_prefix("http://")
        .expect("agora listens on http://")
        .trim_end_matches('/');
    std::thread::scope(|s| {
        for q in queries {
            s.spawn(move || {
                let (module, version) = q.split_once('@').expect("module@version");
                let prefix = format!(
                    "/{}/@v/{}",
                    escape_path(module).unwrap(),
                    escape_version(version).unwrap()
                );
                for ext in ["info", "mod", "zip"] {
                    let path = format!("{prefix}.{ext}");
                    let t = Instant::now();
                    let (status, body) = get(addr, &path);
                    if std::env::var_os("AGORA_BENCH_VERBOSE").is_some() {
                        eprintln!("GET {path}: {:.1} ms", ms(t.elapsed()));
                    }
                    assert!(
                        status == 200 && !body.is_empty(),
                        "GET {path}: {status} {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    );
                }
            });
        }
    });
}

/// One HTTP/1.1 GET on a fresh connection (as a client's first request would be): the status and
/// the body. The server closes the connection after answering, which delimits the body; nothing in
/// this client can weigh against the server's time.
pub fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: agora-bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response head");
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    // A chunked body keeps its framing here: only its presence is checked.
    (status, raw[end + 4..].to_vec())
}
