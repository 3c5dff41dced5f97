//! The local HTTP endpoints: `/metrics` (the last snapshot plus the
//! service's own metrics), `/healthz` and `/readyz` on the main listener,
//! and a health listener with the service's own metrics alone, `/healthz`
//! and `/readyz`, whose connections the inventory's readers cannot take.
//!
//! Anyone who can reach the port is a client, so what a client can make it
//! hold is bounded: a snapshot is rendered once and its bytes are shared by
//! every reader (a slow reader costs a reference, not a copy), connections
//! are limited (idle ones evicted for new ones), headers must arrive within [`HEADER_READ_TIMEOUT`], and a
//! reader that takes nothing for [`WRITE_STALL_TIMEOUT`] is disconnected.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, TextEncoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::encode::exposition;
use crate::readiness::FIRST_SNAPSHOT;
use crate::series::Snapshot;
use crate::telemetry::Telemetry;

/// Connections served at once on the main listener; past it a new
/// connection evicts an idle one, or is closed at once when all are busy.
/// Scrapers, probes and a curious human need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// Connections served at once on the health listener (--telemetry-address):
/// the kubelet's probes and a health scrape or two.
pub const MAX_TELEMETRY_CONNECTIONS: usize = 16;

/// Time a client has to send a request's headers, counted from the
/// connection's start or the end of the previous response (so it is also
/// the idle keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a response may wait for the client to take more bytes.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the endpoints show; shared with the tick loop that updates it.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    snapshot: RwLock<Published>,
    /// The inventory part of `/metrics` for the snapshot of that
    /// generation, rendered by the first scrape after it was published
    /// (`None` if rendering it failed: every scrape of it answers 500).
    rendered: tokio::sync::Mutex<Option<(u64, Option<Bytes>)>>,
    /// Labels left out of `/metrics` (job and external labels).
    omit: Vec<String>,
    /// The snapshot's text: [`exposition::render`], but for a test of
    /// what a failed rendering answers.
    render: fn(&Snapshot, &[&str]) -> String,
}

#[derive(Default)]
struct Published {
    /// Counts publications, so a rendering knows which snapshot it shows.
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl Shared {
    pub fn new(telemetry: Arc<Telemetry>, omit: Vec<String>) -> Self {
        Shared {
            telemetry,
            snapshot: RwLock::default(),
            rendered: tokio::sync::Mutex::new(None),
            omit,
            render: exposition::render,
        }
    }

    /// Publishes a new snapshot; the first one clears the
    /// [`FIRST_SNAPSHOT`] readiness condition.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        {
            // Replacing an `Arc` cannot leave the value half-written, so a
            // poisoned lock is used as it is (the project's one policy).
            let mut published = self
                .snapshot
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            published.generation += 1;
            published.snapshot = snapshot;
        }
        self.telemetry.readiness.clear(FIRST_SNAPSHOT);
    }

    /// The current snapshot's series in the text format, rendered once per
    /// snapshot however many scrapes ask at once; `None` if rendering
    /// failed (a panic in the encoder), logged once per snapshot.
    async fn inventory_text(self: &Arc<Self>) -> Option<Bytes> {
        let (generation, snapshot) = {
            let published = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
            (published.generation, published.snapshot.clone())
        };
        // Scrapes that arrive during a rendering wait for it, rather than
        // each rendering (and holding) a copy of their own.
        let mut rendered = self.rendered.lock().await;
        if let Some((done, text)) = &*rendered {
            if *done >= generation {
                return text.clone();
            }
        }
        let shared = self.clone();
        // Rendering 100k series takes a while; keep it off the async workers.
        let text = tokio::task::spawn_blocking(move || {
            let omit: Vec<&str> = shared.omit.iter().map(String::as_str).collect();
            Bytes::from((shared.render)(&inventory_only(&snapshot), &omit))
        })
        .await;
        let text = match text {
            Ok(text) => Some(text),
            Err(e) => {
                tracing::error!(error = %e, "failed to render the snapshot for /metrics; answering 500 until the next snapshot");
                None
            }
        };
        *rendered = Some((generation, text.clone()));
        text
    }

    /// The service's own metrics: small, and current at every scrape.
    fn telemetry_text(&self) -> Result<Bytes, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.telemetry.registry.gather(), &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// The snapshot without the health series pushed with it: `/metrics`
/// serves those from the registry, current at every scrape (and a family
/// twice would make the text invalid).
fn inventory_only(snapshot: &Arc<Snapshot>) -> std::borrow::Cow<'_, Snapshot> {
    if !snapshot.series.iter().any(|s| s.family().is_self_metric()) {
        return std::borrow::Cow::Borrowed(snapshot);
    }
    std::borrow::Cow::Owned(Snapshot {
        series: snapshot
            .series
            .iter()
            .filter(|s| !s.family().is_self_metric())
            .cloned()
            .collect(),
        ..**snapshot
    })
}

/// Binds the address and serves `/metrics` (the inventory and the
/// service's own metrics), `/healthz` and `/readyz` until the process ends.
pub async fn serve(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = routes(get(metrics), &shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(accept(listener, app, MAX_CONNECTIONS, &shared))
}

/// Binds the health listener and serves the service's own metrics on
/// `/metrics` (never the inventory), `/healthz` and `/readyz`, with
/// [`MAX_TELEMETRY_CONNECTIONS`] of its own: however many clients hold the
/// inventory port, probes and health scrapes are answered here.
pub async fn serve_telemetry(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = routes(get(telemetry_metrics), &shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving the health listener: own /metrics, /healthz and /readyz");
    Ok(accept(listener, app, MAX_TELEMETRY_CONNECTIONS, &shared))
}

/// What both listeners answer; only their `/metrics` differs.
fn routes(metrics: MethodRouter<Arc<Shared>>, shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone())
}

/// Serves `listener` with at most `connections` open at once.
fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    connections: usize,
    shared: &Shared,
) -> tokio::task::JoinHandle<()> {
    let slots = Slots::new(connections, shared.telemetry.clone());
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
    telemetry: Arc<Telemetry>,
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
    fn new(limit: usize, telemetry: Arc<Telemetry>) -> Arc<Self> {
        Arc::new(Slots {
            limit,
            telemetry,
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
            self.telemetry.http_connections_evicted.inc();
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
            slots.telemetry.http_connections_refused.inc();
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

/// The service's own metrics alone, for the health listener.
async fn telemetry_metrics(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    match shared.telemetry_text() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "failed to render the service's own metrics for the health listener");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to render the service's own metrics; see the log\n",
            )
                .into_response()
        }
    }
}

/// The inventory and the service's own metrics; 500 if the inventory
/// could not be rendered, rather than a 200 that looks like an empty one.
async fn metrics(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    let failed = |what: &str| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to render {what}; see the log\n"),
        )
            .into_response()
    };
    let Some(inventory) = shared.inventory_text().await else {
        return failed("the inventory");
    };
    let telemetry = match shared.telemetry_text() {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "failed to render the service's own metrics for /metrics");
            return failed("the service's own metrics");
        }
    };
    // Two chunks, the first shared with every other reader of this snapshot.
    let chunks = [inventory, telemetry].map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// 200 `ready`, or 503 with one `condition: reason` line per failing condition.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let failing = shared.telemetry.readiness.failing();
    if failing.is_empty() {
        return (StatusCode::OK, "ready\n".to_owned());
    }
    let text = failing
        .iter()
        .map(|(condition, reason)| format!("{condition}: {reason}\n"))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, text)
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
#[path = "server_tests.rs"]
mod tests;
