//! The local HTTP endpoint: `/metrics` (the last snapshot plus the service's
//! own metrics), `/healthz` and `/readyz`.
//!
//! Anyone who can reach the port is a client, so what a client can make it
//! hold is bounded: a snapshot is rendered once and its bytes are shared by
//! every reader (a slow reader costs a reference, not a copy), connections
//! are limited, headers must arrive within [`HEADER_READ_TIMEOUT`], and a
//! reader that takes nothing for [`WRITE_STALL_TIMEOUT`] is disconnected.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, TextEncoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

use crate::exposition;
use crate::inventory::Snapshot;
use crate::readiness::FIRST_SNAPSHOT;
use crate::telemetry::Telemetry;

/// Connections served at once; more are closed as soon as they are
/// accepted. Scrapers, probes and a curious human need a handful.
pub const MAX_CONNECTIONS: usize = 64;

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
    /// generation, rendered by the first scrape after it was published.
    rendered: tokio::sync::Mutex<Option<(u64, Bytes)>>,
    /// Labels left out of `/metrics` (job and external labels).
    omit: Vec<String>,
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
        }
    }

    /// Publishes a new snapshot; the first one clears the
    /// [`FIRST_SNAPSHOT`] readiness condition.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        {
            let mut published = self.snapshot.write().expect("snapshot lock poisoned");
            published.generation += 1;
            published.snapshot = snapshot;
        }
        self.telemetry.readiness.clear(FIRST_SNAPSHOT);
    }

    /// The current snapshot's series in the text format, rendered once per
    /// snapshot however many scrapes ask at once.
    async fn inventory_text(self: &Arc<Self>) -> Bytes {
        let (generation, snapshot) = {
            let published = self.snapshot.read().expect("snapshot lock poisoned");
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
            Bytes::from(exposition::render(&snapshot, &omit, &[]))
        })
        .await
        .unwrap_or_default();
        *rendered = Some((generation, text.clone()));
        text
    }

    /// The service's own metrics: small, and current at every scrape.
    fn telemetry_text(&self) -> Bytes {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.telemetry.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        Bytes::from(out)
    }
}

/// Binds the address and serves until the process ends.
pub async fn serve(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(accept_loop(
        listener,
        app,
        shared.telemetry.clone(),
    )))
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, telemetry: Arc<Telemetry>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: wait for some to close.
                tracing::debug!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            telemetry.http_connections_refused.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(StallLimit::new(stream, WRITE_STALL_TIMEOUT));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "local HTTP connection ended");
            }
            drop(slot);
        });
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let inventory = shared.inventory_text().await;
    let telemetry = shared.telemetry_text();
    // Two chunks, the first shared with every other reader of this snapshot.
    let chunks = [inventory, telemetry].map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        Body::from_stream(futures::stream::iter(chunks)),
    )
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
}

impl<S> StallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallLimit {
            inner,
            limit,
            stalled: None,
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_takes_nothing_is_disconnected_a_slow_one_is_not() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = StallLimit::new(server, WRITE_STALL_TIMEOUT);
        let error = server.write_all(&[0; 1 << 20]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = StallLimit::new(server, WRITE_STALL_TIMEOUT);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 1024];
            let mut total = 0;
            loop {
                tokio::time::sleep(WRITE_STALL_TIMEOUT / 2).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        server.write_all(&[0; 16 * 1024]).await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }

    fn snapshot(pod: &str) -> Arc<Snapshot> {
        use crate::discovery::{Container, Kind, Workload};
        use crate::inventory::{build_once, CommonLabels};
        let workloads = [Workload {
            kind: Kind::Pod,
            namespace: "ns".into(),
            name: pod.into(),
            containers: vec![Container {
                name: "c".into(),
                image: "nginx".into(),
                jsonpath: "{.spec.containers[0]}".into(),
                image_id: None,
            }],
            pull: Default::default(),
            metadata_labels: Vec::new(),
        }];
        let labels = CommonLabels::new("pusher", &[]);
        Arc::new(build_once(&workloads, &Default::default(), &labels, 0))
    }

    #[tokio::test]
    async fn a_snapshot_is_rendered_once_for_every_reader() {
        let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), vec![]));
        shared.publish(snapshot("first"));
        let first = shared.inventory_text().await;
        let again = shared.inventory_text().await;
        assert!(first.ends_with(b"} 1\n"), "{first:?}");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, shared");
        shared.publish(snapshot("second"));
        let second = shared.inventory_text().await;
        assert!(
            String::from_utf8_lossy(&second).contains(r#"name="second""#),
            "rendered anew: {second:?}"
        );
    }
}
