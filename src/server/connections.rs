//! The listeners' connections and their limits: how many are open at once
//! (idle ones evicted for new ones), how long headers may take, how long a
//! reader may take nothing.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::telemetry::{opts, register};

/// Time a client has to send a request's headers, counted from the
/// connection's start or the end of the previous response (so it is also
/// the idle keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a response may wait for the client to take more bytes.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the listeners count.
#[derive(Clone)]
pub struct Metrics {
    /// Connections closed at once because [`super::MAX_CONNECTIONS`] (or
    /// [`super::MAX_TELEMETRY_CONNECTIONS`]) were open and none was idle.
    pub http_connections_refused: IntCounter,
    /// Idle connections closed to make room for a new one.
    pub http_connections_evicted: IntCounter,
}

impl Metrics {
    /// The connection counters, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        Metrics {
            http_connections_refused: register(
                registry,
                IntCounter::with_opts(opts(
                    "http_connections_refused_total",
                    "Connections to /metrics, /healthz and /readyz closed at once because too many were open.",
                )),
            ),
            http_connections_evicted: register(
                registry,
                IntCounter::with_opts(opts(
                    "http_connections_evicted_total",
                    "Idle connections to the local server (no request in progress) closed to make room for a new one.",
                )),
            ),
        }
    }
}

/// Serves `listener` with at most `connections` open at once.
pub(super) fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    connections: usize,
    metrics: Metrics,
) -> tokio::task::JoinHandle<()> {
    let slots = Slots::new(connections, metrics);
    tokio::spawn(accept_loop(listener, app, slots))
}

/// The open connections of one listener. When all are taken, a new
/// connection evicts the oldest one that has no request in progress and has
/// been read until it had nothing more to say (idle, or still sending its
/// headers): a client that opens connections and sends nothing cannot keep a
/// probe or a scrape out. The connection evicted is the oldest of the peer
/// address holding the most, so a flood that reconnects as fast as it is
/// evicted churns its own connections; one not yet read is spared. Only
/// when no connection is evictable is the new one refused.
struct Slots {
    limit: usize,
    metrics: Metrics,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    next_id: u64,
    /// By id, so the oldest comes first.
    open: BTreeMap<u64, OpenConnection>,
}

struct OpenConnection {
    peer: IpAddr,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
}

/// What a connection is doing, for eviction.
#[derive(Default)]
struct Activity {
    /// Requests dispatched and not yet answered to the last byte.
    in_progress: AtomicUsize,
    /// A read found nothing more to read: everything the client sent so
    /// far has been seen.
    waited: AtomicBool,
}

impl Activity {
    fn evictable(&self) -> bool {
        self.waited.load(Ordering::Acquire) && self.in_progress.load(Ordering::Acquire) == 0
    }
}

/// A connection's place in its [`Slots`], given back when dropped.
struct Slot {
    id: u64,
    slots: Arc<Slots>,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
}

impl Slots {
    fn new(limit: usize, metrics: Metrics) -> Arc<Self> {
        Arc::new(Slots {
            limit,
            metrics,
            state: Mutex::default(),
        })
    }

    /// A slot for a new connection, evicting an idle one if all are taken;
    /// `None` if every open connection is serving a request.
    fn acquire(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        // The map stays consistent whatever panicked while holding it.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.open.len() >= self.limit {
            // The peer holding the most connections gives one up: a flood
            // from one pod evicts its own connections, not the kubelet's.
            let mut held = HashMap::<IpAddr, usize>::new();
            for connection in state.open.values() {
                *held.entry(connection.peer).or_default() += 1;
            }
            let idle = state
                .open
                .iter()
                .filter(|(_, c)| c.activity.evictable())
                .min_by_key(|(id, c)| (std::cmp::Reverse(held[&c.peer]), **id))
                .map(|(id, _)| *id)?;
            let evicted = state.open.remove(&idle).expect("found above");
            evicted.evict.notify_one();
            self.metrics.http_connections_evicted.inc();
        }
        let id = state.next_id;
        state.next_id += 1;
        let activity = Arc::new(Activity::default());
        let evict = Arc::new(Notify::new());
        state.open.insert(
            id,
            OpenConnection {
                peer,
                activity: activity.clone(),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            id,
            slots: self.clone(),
            activity,
            evict,
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self
            .slots
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.open.remove(&self.id);
    }
}

/// Counts a request as in progress from its dispatch until its response
/// body is dropped (sent to the last byte, or abandoned).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, slots: Arc<Slots>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors, typically: wait for some to close.
                tracing::debug!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.acquire(peer) else {
            slots.metrics.http_connections_refused.inc();
            drop(stream);
            continue;
        };
        let counter = slot.activity.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |request| {
            let guard = InProgress::start(&counter);
            let mut app = app.clone();
            async move {
                let response = tower_service::Service::call(&mut app, request).await?;
                // The guard lives as long as the body is being sent.
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::from_stream(body.into_data_stream().map(move |chunk| {
                        let _ = &guard;
                        chunk
                    }))
                }))
            }
        });
        tokio::spawn(async move {
            let mut io = StallLimit::new(stream, WRITE_STALL_TIMEOUT);
            io.activity = Some(slot.activity.clone());
            let io = TokioIo::new(io);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = slot.evict.notified() => {
                    // Closes the connection at once if it is between
                    // requests; a response already under way is finished.
                    tracing::debug!("closing an idle local HTTP connection for a new one");
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "local HTTP connection ended");
            }
            drop(slot);
        });
    }
}

/// A connection whose writes fail once the peer has taken nothing for
/// `limit`: a reader draining a byte at a time would otherwise hold its
/// connection (and the response) for hours.
struct StallLimit<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits for the peer.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Told when a read finds nothing more to read.
    activity: Option<Arc<Activity>>,
}

impl<S> StallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallLimit {
            inner,
            limit,
            stalled: None,
            activity: None,
        }
    }

    /// Passes a write's outcome on, timing how long it stays pending.
    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_pending() {
            if let Some(activity) = &self.activity {
                activity.waited.store(true, Ordering::Release);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    /// Vectored writes let hyper queue the shared body instead of copying
    /// it into a buffer of its own for every connection.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, poll)
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
