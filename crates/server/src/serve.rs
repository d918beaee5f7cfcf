//! The connection loop: hyper (HTTP/1.1, and HTTP/2 with prior knowledge or ALPN) over a TCP
//! listener or a Unix socket ([`Listener`]), in plain HTTP ([`serve_with`]) or HTTPS
//! ([`serve_tls`]), with the timeouts that keep slow or malicious clients from holding
//! connections forever, and graceful shutdown.
//!
//! Every request carries two extensions: [`ConnectInfo`]`<SocketAddr>` (the TCP peer) and
//! [`Transport`] (whether the connection is TLS). A Unix socket's peer has no address; it is
//! [`UNIX_PEER`], `127.0.0.1:0`, a loopback client, so a local reverse proxy's forwarding headers
//! are believed only when `127.0.0.1` is in [`crate::TrustedProxies`].
//!
//! - **Header timeout**: a client must send a complete request head within
//!   [`ServeOptions::header_timeout`], counted from the connection's start or from the end of the
//!   previous response. It bounds slowloris clients (headers sent byte by byte) and is also the
//!   keep-alive idle timeout. Under TLS the handshake gets its own `header_timeout` first, so a
//!   client that opens a connection and never says hello is dropped too.
//! - **Send timeout**: a response write blocked on a client that does not read (a full socket buffer)
//!   for [`ServeOptions::send_timeout`] closes the connection (nginx's `send_timeout`). Time spent by
//!   the handler itself (a cold fetch from git) is not counted: only stalls on the client are.
//! - Request bodies are not part of the GOPROXY protocol; handlers never read them.
//! - HTTP/2 connections are pinged every `header_timeout` and closed when pings go unanswered.
//! - On shutdown the listener closes at once, idle connections close, in-flight requests finish
//!   within [`ServeOptions::shutdown_timeout`]; connections still open then are dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
pub use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::listen::Listener;
use crate::tls::ReloadingTls;

/// The [`ConnectInfo`] of a connection over a Unix socket, which has no IP address: loopback.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Connection-level limits. [`ServeOptions::default`] is what [`serve`] uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time allowed to send a complete request head (also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Longest a response write may stay blocked on a client that does not read.
    pub send_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Whether HTTP/1.1 connections are kept open between requests.
    pub keep_alive: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            keep_alive: true,
        }
    }
}

/// What the connection loop knows about a request's transport, stored in its extensions next to
/// [`ConnectInfo`]: whether it arrived over TLS. Behind a TLS-terminating proxy this is the hop
/// from the proxy; see [`crate::identity::ClientInfo`] for the client's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    pub secure: bool,
}

/// Serves `app` on `listener` with [`ServeOptions::default`] until `shutdown` completes, then
/// drains in-flight requests.
pub async fn serve(
    listener: impl Into<Listener>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit connection limits: plain HTTP.
pub async fn serve_with(
    listener: impl Into<Listener>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServeOptions,
) -> io::Result<()> {
    run(listener.into(), app, shutdown, opts, None).await
}

/// [`serve_with`] over TLS: HTTPS with HTTP/1.1 or HTTP/2 (ALPN), the certificate taken from `tls`
/// at each handshake, so [`ReloadingTls::reload`] applies to new connections at once.
///
/// The handshake must complete within [`ServeOptions::header_timeout`]; the request head then has
/// its own `header_timeout`. The send timeout covers the handshake and everything after it.
///
/// Plain HTTP and HTTPS side by side share one shutdown signal through a [`CancellationToken`]:
///
/// ```no_run
/// # async fn doc(
/// #     app: axum::Router,
/// #     tls_files: agora_server::TlsFiles,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use agora_server::{serve_tls, serve_with, CancellationToken, ReloadingTls, ServeOptions};
///
/// let tls = Arc::new(ReloadingTls::load(tls_files)?);
/// tls.clone().spawn_watch(Duration::from_secs(60));
/// let http = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let https = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// let opts = ServeOptions::default();
/// let stop = CancellationToken::new();
/// // On SIGTERM or ctrl-c: `stop.cancel()`. On SIGHUP: `tls.reload()`, logging an error.
/// tokio::try_join!(
///     serve_with(http, app.clone(), stop.clone().cancelled_owned(), opts.clone()),
///     serve_tls(https, app, stop.clone().cancelled_owned(), opts, tls.clone()),
/// )?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_tls(
    listener: impl Into<Listener>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServeOptions,
    tls: Arc<ReloadingTls>,
) -> io::Result<()> {
    let acceptor = tls.acceptor();
    // The acceptor shares the swappable certificate; holding `tls` would keep its watcher alive.
    drop(tls);
    run(listener.into(), app, shutdown, opts, Some(acceptor)).await
}

/// How much of a response body a connection queues beyond what the socket took (and, for
/// HTTP/1.1, the largest request head it reads). A warm zip is read without waiting (see
/// `agora_storage`'s local reads), so hyper's default (about 400 KiB) filled up on every
/// download: 256 concurrent downloads of a large zip held ~90 MiB instead of ~40 MiB
/// (scripts/bench, memory rows), for no bandwidth gain.
const CONNECTION_BUFFER: usize = 64 << 10;

async fn run(
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServeOptions,
    tls: Option<TlsAcceptor>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(CONNECTION_BUFFER)
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(opts.keep_alive);
    builder
        .http2()
        .max_send_buf_size(CONNECTION_BUFFER)
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.header_timeout)
        .keep_alive_timeout(opts.header_timeout);
    let conn = Arc::new(ConnContext {
        builder,
        app,
        tls,
        header_timeout: opts.header_timeout,
        send_timeout: opts.send_timeout,
        // Cancelled when accepting stops (or this future is dropped): pending handshakes are
        // abandoned rather than completed only to be shut down.
        stop: CancellationToken::new(),
    });
    let _stop_handshakes = conn.stop.clone().drop_guard();

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    on_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The watcher is taken here, before shutdown can start, so that no connection escapes it.
        let watcher = graceful.watcher();
        match accepted {
            Accepted::Tcp(stream, remote) => {
                // Small answers (info, mod, list) go out at once rather than waiting for more data.
                let _ = stream.set_nodelay(true);
                tokio::spawn(conn.clone().serve(stream, remote, watcher));
            }
            #[cfg(unix)]
            Accepted::Unix(stream) => {
                tokio::spawn(conn.clone().serve(stream, UNIX_PEER, watcher));
            }
        }
    }
    drop(listener);
    conn.stop.cancel();
    tracing::info!(
        connections = graceful.count(),
        "shutting down; draining in-flight requests"
    );
    if tokio::time::timeout(opts.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = opts.shutdown_timeout.as_millis() as u64,
            "in-flight requests did not finish in time; closing their connections"
        );
    }
    Ok(())
}

/// A connection just accepted.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
        #[cfg(unix)]
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// What every connection of one listener shares.
struct ConnContext {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    send_timeout: Duration,
    stop: CancellationToken,
}

impl ConnContext {
    async fn serve<S>(self: Arc<Self>, stream: S, remote: SocketAddr, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Under TLS too: a client that stops reading stalls the writes, wherever they come from.
        let stream = SendTimeout::new(stream, self.send_timeout);
        let Some(acceptor) = &self.tls else {
            return self.http(stream, remote, false, watcher).await;
        };
        let handshake = tokio::time::timeout(self.header_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(client.addr = %remote, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client.addr = %remote, "TLS handshake timed out");
                    return;
                }
            },
            () = self.stop.cancelled() => return,
        };
        self.http(stream, remote, true, watcher).await
    }

    async fn http<I>(&self, io: I, remote: SocketAddr, secure: bool, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let asked = Arc::new(AtomicBool::new(false));
        let service = hyper::service::service_fn({
            let asked = asked.clone();
            move |mut req: http::Request<Incoming>| {
                asked.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(remote));
                req.extensions_mut().insert(Transport { secure });
                app.clone().oneshot(req)
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let mut conn = std::pin::pin!(watcher.watch(conn));
        // hyper's header timeout starts with the first byte of a request head: before it, while
        // the protocol (HTTP/1 or 2) is being recognised, a client that sends nothing at all
        // would hold the connection forever.
        let result = tokio::select! {
            result = &mut conn => result,
            () = tokio::time::sleep(self.header_timeout) => {
                if !asked.load(Ordering::Relaxed) {
                    tracing::debug!(client.addr = %remote, "no request within the header timeout");
                    return;
                }
                conn.await
            }
        };
        if let Err(err) = result {
            // Header timeouts, resets, clients that went away: routine, not failures of agora.
            tracing::debug!(client.addr = %remote, error = %err, "connection closed with an error");
        }
    }
}

/// Accept errors are either about one connection (retry at once) or about resources such as file
/// descriptors (back off briefly instead of spinning).
async fn on_accept_error(err: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// An I/O stream whose writes fail with `TimedOut` when they stay blocked longer than a limit.
struct SendTimeout<T> {
    inner: T,
    limit: Duration,
    /// Armed while a write is blocked; disarmed by any write progress.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> SendTimeout<T> {
    fn new(inner: T, limit: Duration) -> Self {
        SendTimeout {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// After the inner write returned `Pending`: `Pending` until the limit, then the error.
    fn poll_stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if !self.armed {
            self.armed = true;
            let at = Instant::now() + self.limit;
            self.deadline.as_mut().reset(at);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not read the response in time",
        )))
    }

    fn progressed<R>(
        &mut self,
        r: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.poll_stalled(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(r, cx)
    }
}
