//! The accept loop and each connection's bounds: how many connections are open at once, how
//! long a request head may take, how long a kept-alive connection may sit idle, and a bounded
//! drain of an unread request body before closing, so a client still sending it reads the
//! answer (a 413, say) instead of a reset. The request body's own deadline is applied where the
//! body is read ([`super::body::read_bytes`]).
//!
//! The timers live in the connection's I/O wrapper, which is the one place that sees hyper wait
//! for bytes; the service marks where a request starts and its response ends. A timer is reset
//! only when it fires or must fire earlier, not on every request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

use super::{App, AppFuture};
use crate::config::HttpConfig;

/// File descriptors kept for everything that is not a client connection (database files, task
/// processes' pipes, the runtime, logs) when the open-file limit caps `max_connections`.
pub const FD_RESERVE: u64 = 256;

/// Pause after an accept error that is not about one connection (out of file descriptors or
/// memory): the listener stays readable, so retrying at once would spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Unread request body drained before closing, at most (bytes and time). Beyond that the
/// connection is closed anyway and the client may see a reset instead of the answer.
pub const LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(5);

/// The most connections the open-file limit leaves room for: the limit less [`FD_RESERVE`],
/// but at least half the limit (a small limit still serves), and never more than `configured`.
pub fn connection_cap(configured: usize) -> usize {
    // The semaphore counting them takes at most u32::MAX permits at once (at shutdown).
    let configured = configured.min(u32::MAX as usize);
    let Some(nofile) = open_file_limit() else { return configured.max(1) };
    let room = nofile.saturating_sub(FD_RESERVE).max(nofile / 2);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
}

/// The soft `RLIMIT_NOFILE`, if there is one.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Accepts and serves connections until `shutdown` completes; then stops accepting, lets each
/// connection finish its request in flight, and returns when all are closed.
pub async fn serve(listener: TcpListener, app: App, limits: &HttpConfig, shutdown: impl Future<Output = ()>) {
    let cap = connection_cap(limits.max_connections);
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            cap,
            "http.max_connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let (stop, stopped) = watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header deadline is this module's (it tells idle from slow); hyper's would cover both.
    builder.header_read_timeout(None);
    let timeouts = Timeouts { header: limits.header_read_timeout, keep_alive: limits.keep_alive_timeout };
    let mut shutdown = pin!(shutdown);
    let (mut failing, mut full) = (false, false);
    loop {
        // A slot first: at the cap, new clients wait in the listen backlog instead of being
        // accepted into a connection nobody can serve.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                full = false;
                slot
            }
            Err(_) => {
                if !full {
                    tracing::warn!(cap, "connection limit reached; new connections wait");
                    full = true;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (tcp, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => {
                    failing = false;
                    c
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "accept failed; retrying every {ACCEPT_BACKOFF:?}");
                        failing = true;
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let shared = Arc::new(Shared::default());
        let io = TokioIo::new(ConnIo::new(tcp, shared.clone(), timeouts));
        let service = ConnService { app: app.clone(), remote, shared };
        let conn = builder.serve_connection(io, service);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(());
    // Every connection holds a slot until it is closed.
    let _ = slots.acquire_many(u32::try_from(cap).expect("capped to u32 by connection_cap")).await;
}

/// Errors about the one connection being accepted (it went away first): accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    keep_alive: Duration,
}

/// What the connection is doing, as far as its timeouts care.
const HEAD: u8 = 0; // waiting for a request head to be complete
const BUSY: u8 = 1; // a request is being handled: its body read, its response written
const IDLE: u8 = 2; // kept alive between requests, nothing sent yet

/// State the service and bodies share with the connection's I/O. All on the connection's task;
/// atomics only because hyper wants the service `Send`.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    /// The last request's body was dropped before its end: drain it before closing.
    unread_body: AtomicBool,
}

/// The TCP stream with the connection's deadlines.
struct ConnIo {
    tcp: TcpStream,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    /// The phase `due` was computed for.
    seen: u8,
    /// When the current phase must end. The timer may fire earlier (it is moved only lazily).
    due: Instant,
    timer: Pin<Box<Sleep>>,
    /// While closing: body bytes still to drain, once draining started.
    linger: Option<usize>,
}

impl ConnIo {
    fn new(tcp: TcpStream, shared: Arc<Shared>, timeouts: Timeouts) -> ConnIo {
        let due = Instant::now() + timeouts.header;
        ConnIo { tcp, shared, timeouts, seen: HEAD, due, timer: Box::pin(tokio::time::sleep_until(due)), linger: None }
    }

    /// The current phase, with `due` moved if the phase changed since last looked at.
    fn follow(&mut self) -> u8 {
        let phase = self.shared.phase.load(Relaxed);
        if phase != self.seen {
            self.seen = phase;
            match phase {
                IDLE => self.due = Instant::now() + self.timeouts.keep_alive,
                HEAD => self.due = Instant::now() + self.timeouts.header,
                _ => {}
            }
        }
        phase
    }

    /// Ready(Err) once `due` has passed; otherwise arranges a wake-up no later than `due`.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.timer.deadline() > self.due {
                self.timer.as_mut().reset(self.due);
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.due {
                return Poll::Ready(io::ErrorKind::TimedOut.into());
            }
            // Fired for an earlier deadline; the current one is later.
            self.timer.as_mut().reset(self.due);
        }
    }

    /// Called as the response is written: once it is done, hyper reads again only when the
    /// socket wakes it, so the keep-alive timer must be able to wake it too.
    fn watch_idle(&mut self, cx: &mut Context<'_>) {
        let was = self.seen;
        if self.follow() == IDLE && was != IDLE && self.poll_due(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.follow();
        if phase == BUSY {
            // The request body has its own deadline where it is read.
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if phase == IDLE && buf.filled().len() > before => {
                // The next request has begun: from here its head has the header deadline.
                this.shared.phase.store(HEAD, Relaxed);
                this.seen = HEAD;
                this.due = Instant::now() + this.timeouts.header;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_due(cx).map(Err),
            other => other,
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.watch_idle(cx);
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.watch_idle(cx);
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.watch_idle(cx);
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// Sends FIN after the response; when a request body was left unread, reads and discards
    /// it first (bounded), since closing a socket with unread data resets it, and a client still
    /// writing its body then loses the response too.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = match this.linger {
            Some(left) => left,
            None => {
                ready!(Pin::new(&mut this.tcp).poll_shutdown(cx))?;
                if !this.shared.unread_body.load(Relaxed) {
                    return Poll::Ready(Ok(()));
                }
                this.due = Instant::now() + LINGER_MAX_TIME;
                LINGER_MAX_BYTES
            }
        };
        let mut scratch = [0u8; 16 * 1024];
        let mut left = left;
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && buf.filled().len() < left => {
                    left -= buf.filled().len();
                }
                // The end of the body stream, the bound, or a broken connection: done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    this.linger = Some(left);
                    return this.poll_due(cx).map(|_| Ok(()));
                }
            }
        }
    }
}

/// The router for one connection: gives handlers the client address, and tells the
/// connection's I/O where each request starts and ends.
struct ConnService {
    app: App,
    remote: SocketAddr,
    shared: Arc<Shared>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> ResponseFuture {
        self.shared.phase.store(BUSY, Relaxed);
        self.shared.unread_body.store(false, Relaxed);
        let mut req =
            req.map(|inner| axum::body::Body::new(RequestBody { inner, shared: self.shared.clone(), ended: false }));
        req.extensions_mut().insert(ConnectInfo(self.remote));
        ResponseFuture { inner: self.app.call(req), shared: Some(self.shared.clone()) }
    }
}

struct ResponseFuture {
    inner: AppFuture,
    shared: Option<Arc<Shared>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let res = ready!(Pin::new(&mut this.inner).poll(cx));
        let shared = this.shared.take().expect("polled after completion");
        Poll::Ready(Ok(res.map(|inner| ResponseBody { inner, shared })))
    }
}

/// A response body; its end (hyper drops it once written) makes the connection idle.
struct ResponseBody {
    inner: axum::body::Body,
    shared: Arc<Shared>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.shared.phase.store(IDLE, Relaxed);
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body; dropped before its end, it marks the connection for draining on close.
struct RequestBody {
    inner: Incoming,
    shared: Arc<Shared>,
    ended: bool,
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.shared.unread_body.store(true, Relaxed);
        }
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() {
            this.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_open_file_limit() {
        let nofile = open_file_limit().expect("a finite limit in tests");
        let cap = connection_cap(usize::MAX);
        assert!((cap as u64) < nofile, "cap {cap} vs limit {nofile}");
        assert_eq!(connection_cap(3), 3);
    }
}
