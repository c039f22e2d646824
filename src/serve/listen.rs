//! Accepting and running connections: HTTP/1.1 with keep-alive, a cap on
//! open connections, timeouts for slow or idle clients, and a shutdown that
//! stops accepting, lets requests in flight finish and force-closes what is
//! still open after a grace period.
//!
//! Why not hyper's own `header_read_timeout`: its clock starts whenever a
//! connection waits for a request head, idle keep-alive time included, so it
//! cannot give a short limit for a head that has started to arrive and a
//! longer one for a connection resting between requests. Each connection here
//! has a small watchdog instead, fed by the socket (bytes received) and by the
//! service (request started, request answered). The body timeout belongs to
//! the body's reader ([`super::extract`]), which can still answer 408.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::metrics::Metrics;

/// How connections are admitted, timed and closed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// A request head (request line and headers) must arrive within this,
    /// counted from its first byte, or from the accept for a new connection.
    pub header_timeout: Duration,
    /// A request body must arrive within this once its handler starts reading (else 408).
    pub body_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones are closed as soon as accepted.
    pub max_connections: usize,
    /// After the shutdown signal, how long requests in flight may take before
    /// their connections are closed regardless.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight within the shutdown grace and force-closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnectionSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = OpenConnections::new(app, settings, metrics);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => connections.admit(stream),
                Err(e) => pause_after_accept_error(e).await,
            },
        }
    }
    // New connections are refused by the kernel from here on.
    drop(listener);
    connections.finish().await;
}

/// The running connections, and what each new one is started with.
struct OpenConnections {
    tasks: JoinSet<()>,
    app: Router,
    settings: ConnectionSettings,
    metrics: Arc<Metrics>,
    /// Turns `true` at shutdown: each connection finishes its request and closes.
    stop: watch::Sender<bool>,
    /// When a refusal was last logged, so a flood logs once a second.
    last_refusal_warning: Option<Instant>,
}

impl OpenConnections {
    fn new(app: Router, settings: ConnectionSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            tasks: JoinSet::new(),
            app,
            settings,
            metrics,
            stop: watch::channel(false).0,
            last_refusal_warning: None,
        }
    }

    /// Starts serving `stream`, or closes it at once when the cap is reached.
    ///
    /// Closing beats leaving it in the kernel's accept queue: the client (or a
    /// load balancer) learns at once that this replica is full and can go
    /// elsewhere, instead of waiting on a connection nobody reads.
    fn admit(&mut self, stream: TcpStream) {
        while self.tasks.try_join_next().is_some() {}
        if self.tasks.len() >= self.settings.max_connections {
            self.metrics.connections_refused.inc();
            self.warn_refusal();
            return;
        }
        let connection = Connection {
            settings: self.settings,
            metrics: self.metrics.clone(),
            stop: self.stop.subscribe(),
        };
        self.tasks.spawn(connection.run(stream, self.app.clone()));
    }

    fn warn_refusal(&mut self) {
        let now = Instant::now();
        if self
            .last_refusal_warning
            .is_none_or(|t| now - t >= Duration::from_secs(1))
        {
            self.last_refusal_warning = Some(now);
            tracing::warn!(
                max_connections = self.settings.max_connections,
                refused_total = self.metrics.connections_refused.get(),
                "connection refused: too many open connections"
            );
        }
    }

    /// Asks every connection to finish its request and close; after the
    /// shutdown grace, closes those still open.
    async fn finish(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.try_join_next().is_some() {}
        let grace = self.settings.shutdown_grace;
        tracing::info!(
            open = self.tasks.len(),
            grace_ms = grace.as_millis() as u64,
            "finishing open connections"
        );
        let all_closed = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            tracing::warn!(
                open = self.tasks.len(),
                "shutdown grace is over: closing the connections still open"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// Logs an accept error; pauses when it is not about one connection (out of
/// file descriptors, say), so the loop does not spin.
async fn pause_after_accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One accepted connection's settings and signals.
struct Connection {
    settings: ConnectionSettings,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves requests on `stream` until the client closes, a timeout
    /// expires, or shutdown has let the request in flight finish.
    async fn run(mut self, stream: TcpStream, app: Router) {
        let _open = OpenGauge::enter(&self.metrics);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let answer = {
            let activity = activity.clone();
            service_fn(move |request: hyper::Request<Incoming>| {
                answer(app.clone(), activity.clone(), request)
            })
        };
        // The watchdog below replaces hyper's header timer (see the module docs).
        let connection = http1::Builder::new()
            .keep_alive(true)
            .header_read_timeout(None)
            .serve_connection(io, answer);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                expired = activity.expired(&self.settings) => {
                    self.metrics.connections_timed_out.with_label_values(&[expired.label()]).inc();
                    tracing::debug!(waiting_for = expired.label(), "connection timed out; closing it");
                    return;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    // hyper closes an idle connection now and a busy one
                    // once its response is written.
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answers one request with `app`, telling the watchdog when it starts and ends.
async fn answer(
    app: Router,
    activity: Arc<Activity>,
    request: hyper::Request<Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    activity.request_started();
    let response = app.oneshot(request).await;
    activity.request_answered();
    response
}

/// What a connection was waiting for when its timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// A request head that did not arrive in full.
    Head,
    /// A next request on a keep-alive connection.
    Idle,
}

impl Expired {
    fn label(self) -> &'static str {
        match self {
            Expired::Head => "head",
            Expired::Idle => "idle",
        }
    }
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since `since` (accepted, or its first byte came).
    Head { since: Instant },
    /// Resting between requests since `since`, nothing received yet.
    Idle { since: Instant },
    /// A request is being answered; its body's timeout is the reader's.
    Busy,
}

/// A connection's phase, shared by its socket, its service and its watchdog.
///
/// A std `Mutex`: it is held for a few instructions and never across an await.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, update: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = update(*phase) {
            *phase = next;
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: a resting connection starts waiting for a whole head.
    ///
    /// Bytes that arrive while a request is busy (its body, or a pipelined
    /// next request) do not change the phase.
    fn received(&self) {
        self.set(|phase| match phase {
            Phase::Idle { .. } => Some(Phase::Head {
                since: Instant::now(),
            }),
            _ => None,
        });
    }

    fn request_started(&self) {
        self.set(|_| Some(Phase::Busy));
    }

    fn request_answered(&self) {
        self.set(|_| {
            Some(Phase::Idle {
                since: Instant::now(),
            })
        });
    }

    fn deadline(&self, settings: &ConnectionSettings) -> Option<(Instant, Expired)> {
        // A timeout too large to add to an instant is no timeout.
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Head { since } => since
                .checked_add(settings.header_timeout)
                .map(|at| (at, Expired::Head)),
            Phase::Idle { since } => since
                .checked_add(settings.idle_timeout)
                .map(|at| (at, Expired::Idle)),
            Phase::Busy => None,
        }
    }

    /// Resolves when the current phase outlasts its timeout.
    async fn expired(&self, settings: &ConnectionSettings) -> Expired {
        loop {
            match self.deadline(settings) {
                Some((at, expired)) if at <= Instant::now() => return expired,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A TCP stream that reports received bytes to its connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.received();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Counts a connection in `candor_connections_open` while it lives (also
/// when its task is aborted at the end of the shutdown grace).
struct OpenGauge<'a>(&'a Metrics);

impl<'a> OpenGauge<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.connections_open.inc();
        Self(metrics)
    }
}

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}
