//! [`WebhookServer`]: a validation webhook on `127.0.0.1` that records every JSON body it receives
//! and answers as the test says (allow, deny with a reason, fail, or hang).
//!
//! Plain blocking HTTP/1.1, one thread per connection, `Connection: close`: the webhook sees a
//! handful of requests per test, and a dependency-free server keeps its behaviour obvious.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the webhook answers to one request.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// 200.
    Allow,
    /// 403 with this body.
    Deny(String),
    /// This status with an empty body (e.g. 500).
    Status(u16),
    /// No answer for this long (then 200).
    Hang(Duration),
}

type Decide = dyn Fn(&serde_json::Value) -> Verdict + Send + Sync;

/// A running webhook; stops accepting when dropped.
pub struct WebhookServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    decide: Arc<Mutex<Arc<Decide>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl WebhookServer {
    /// Starts a webhook that allows everything until told otherwise.
    pub fn start() -> WebhookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let decide: Arc<Mutex<Arc<Decide>>> = Arc::new(Mutex::new(Arc::new(|_| Verdict::Allow)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, d, s) = (received.clone(), decide.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, d) = (r.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &r, &d);
                });
            }
        });
        WebhookServer {
            addr,
            received,
            decide,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/validate", self.addr)
    }

    /// Sets how requests are answered from now on.
    pub fn set(&self, decide: impl Fn(&serde_json::Value) -> Verdict + Send + Sync + 'static) {
        *self.decide.lock().unwrap() = Arc::new(decide);
    }

    /// Every JSON body received so far, in arrival order.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(
    conn: TcpStream,
    received: &Mutex<Vec<serde_json::Value>>,
    decide: &Mutex<Arc<Decide>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    received.lock().unwrap().push(value.clone());
    let decide = decide.lock().unwrap().clone();
    let (status, text) = match decide(&value) {
        Verdict::Allow => (200, String::new()),
        Verdict::Deny(reason) => (403, reason),
        Verdict::Status(s) => (s, String::new()),
        Verdict::Hang(d) => {
            std::thread::sleep(d);
            (200, String::new())
        }
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}
