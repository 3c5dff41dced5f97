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
use std::sync::{Arc, PoisonError, RwLock};
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
use crate::readiness::FIRST_SNAPSHOT;
use crate::series::Snapshot;
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
            Bytes::from((shared.render)(&snapshot, &omit))
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
        use crate::series::fixtures::{common, pod as one_pod};
        Arc::new(Snapshot {
            series: vec![one_pod(&common("pusher", &[]), pod, "nginx")],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_snapshot_is_rendered_once_for_every_reader() {
        let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), vec![]));
        shared.publish(snapshot("first"));
        let first = shared.inventory_text().await.unwrap();
        let again = shared.inventory_text().await.unwrap();
        assert!(first.ends_with(b"} 1\n"), "{first:?}");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, shared");
        shared.publish(snapshot("second"));
        let second = shared.inventory_text().await.unwrap();
        assert!(
            String::from_utf8_lossy(&second).contains(r#"name="second""#),
            "rendered anew: {second:?}"
        );
    }

    /// `/metrics` over a real socket: status and body.
    async fn scrape(shared: Arc<Shared>) -> (u16, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let server = serve(address, shared).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        server.abort();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    #[tokio::test]
    async fn metrics_answer_500_when_rendering_fails_and_200_when_it_works() {
        let mut failing = Shared::new(Arc::new(Telemetry::new()), vec![]);
        failing.render = |_, _| panic!("the encoder failed");
        let failing = Arc::new(failing);
        failing.publish(snapshot("p"));
        let (status, body) = scrape(failing.clone()).await;
        assert_eq!(status, 500, "{body}");
        assert!(!body.contains("container_image_container_info"), "{body}");
        assert!(
            failing.inventory_text().await.is_none(),
            "the failure is kept for the snapshot"
        );

        let working = Arc::new(Shared::new(Arc::new(Telemetry::new()), vec![]));
        working.publish(snapshot("p"));
        let (status, body) = scrape(working).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#"name="p""#), "{body}");
        assert!(
            body.contains("container_image_pusher_"),
            "and the service's own: {body}"
        );
    }
}
