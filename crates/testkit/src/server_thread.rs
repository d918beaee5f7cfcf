//! A test server's own thread and runtime, stopped on request or on drop.
//!
//! Test servers run on a thread of their own with a current-thread runtime, so that they keep
//! serving while a test blocks (the blocking HTTP helpers, `Command::output`), whatever runtime the
//! test itself uses. Stopping drops that runtime, which cancels every connection task the server
//! spawned, hung ones included.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct ServerThread {
    name: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(stop)` on a new thread named `name`; `stop` resolves when the server is asked
    /// to stop.
    ///
    /// # Panics
    /// When the thread or its runtime cannot be made.
    pub(crate) fn spawn<F, Fut>(name: String, serve: F) -> ServerThread
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build a test server runtime");
                rt.block_on(serve(rx));
            })
            .unwrap_or_else(|e| panic!("spawn test server thread {name}: {e}"));
        ServerThread {
            name,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Asks the server to stop and waits for its thread. Idempotent.
    ///
    /// # Panics
    /// When the server's thread panicked (unless the calling thread is already unwinding: a
    /// failing test must not become a double panic).
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() && !std::thread::panicking() {
                panic!("test server thread {} panicked", self.name);
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}
