use super::*;
use crate::series::Snapshot;
use crate::telemetry::Telemetry;
use axum::body::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn snapshot(pod: &str) -> Arc<Snapshot> {
    use crate::series::fixtures::{common, pod as one_pod};
    Arc::new(Snapshot {
        series: vec![one_pod(&common("pusher", &[]), pod, "nginx")],
        ..Default::default()
    })
}

/// The whole HTTP answer to `GET /metrics` at `address`.
async fn get_metrics(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // What arrived before the server closed the connection, reset or not.
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// `/metrics` over a real socket: status and body.
async fn scrape(shared: Arc<Shared>) -> (u16, String) {
    let address = free_address();
    let server = serve(address, shared).await.unwrap();
    let response = get_metrics(address).await;
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
    failing.render = |_, _| Box::new(std::iter::from_fn(|| panic!("the encoder failed")));
    let failing = Arc::new(failing);
    failing.publish(snapshot("p"));
    let (status, body) = scrape(failing.clone()).await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("container_image_container_info"), "{body}");
    assert!(
        failing.inventory_chunks().await.is_none(),
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

/// An encoder that fails after its first chunk cuts the body short (the
/// scraper sees a failed scrape, not a short inventory),
/// and the next scrape of the snapshot answers 500 at once.
#[tokio::test]
async fn a_rendering_failing_mid_body_cuts_it_short() {
    let mut failing = Shared::new(Arc::new(Telemetry::new()), vec![]);
    failing.render = |_, _| {
        let mut first = true;
        Box::new(std::iter::from_fn(move || {
            assert!(std::mem::take(&mut first), "the encoder failed");
            Some(Bytes::from_static(b"# first chunk\n"))
        }))
    };
    let failing = Arc::new(failing);
    failing.publish(snapshot("p"));
    // Cut short: after the status and the first chunk, or before them if
    // the failure came before they were sent.
    let (_, response) = scrape(failing.clone()).await;
    assert!(!response.contains("500"), "{response}");
    assert_eq!(body(&response), None, "not ended: {response}");
    let (status, response) = scrape(failing).await;
    assert_eq!(status, 500, "{response}");
}

/// The body of a chunked HTTP answer, if it ended as one must.
fn body(response: &str) -> Option<String> {
    let (_, mut rest) = response.split_once("\r\n\r\n")?;
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            return (after == "\r\n").then_some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[tokio::test]
async fn the_streamed_body_is_the_snapshots_text_then_the_services_own() {
    use crate::series::fixtures::{common, every_family, pod};
    let common = common("pusher", &[("cluster", "a")]);
    let mut series = every_family(&common);
    // Several chunks' worth, of few distinct values (the table of values
    // is the process' one, and its tests count the ids it frees).
    series.extend((0..2000).map(|i| pod(&common, &format!("pod-{}", i % 10), "quote\"me\\\n")));
    series.extend(every_family(&common));
    let snapshot = Arc::new(Snapshot {
        series,
        ..Default::default()
    });
    let omit = vec!["job".to_owned(), "cluster".to_owned()];
    let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), omit));
    shared.publish(snapshot.clone());
    let (status, response) = scrape(shared).await;
    assert_eq!(status, 200, "{response}");
    let body = body(&response).expect("a whole body");
    let inventory =
        crate::encode::exposition::render_families(&snapshot, &["job", "cluster"], |f| {
            !f.is_self_metric()
        });
    assert!(inventory.len() > 4 * crate::encode::exposition::CHUNK_BYTES);
    let own = body
        .strip_prefix(&inventory)
        .expect("the inventory first, whole");
    assert!(own.starts_with("# HELP container_image_pusher_"), "{own}");
}

/// What a test's chunks did: how many were made, are alive, were alive at
/// once at most, and whether the rendering was let go.
struct Probe {
    made: AtomicUsize,
    live: AtomicUsize,
    highest: AtomicUsize,
    dropped: AtomicBool,
}

impl Probe {
    const fn new() -> Self {
        Probe {
            made: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            highest: AtomicUsize::new(0),
            dropped: AtomicBool::new(false),
        }
    }
}

/// Chunks of [`exposition::CHUNK_BYTES`] that `probe` counts.
const PROBED_CHUNKS: usize = 400;

struct Probed(&'static Probe);

impl Iterator for Probed {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.0.made.fetch_add(1, Ordering::SeqCst) >= PROBED_CHUNKS {
            return None;
        }
        let live = self.0.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.highest.fetch_max(live, Ordering::SeqCst);
        Some(Bytes::from_owner(Counted(
            vec![b'#'; crate::encode::exposition::CHUNK_BYTES],
            self.0,
        )))
    }
}

impl Drop for Probed {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

struct Counted(Vec<u8>, &'static Probe);

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The main listener serving chunks that `probe` counts, and a request
/// for them sent: the client's end, not yet read.
async fn probed(
    render: fn(Arc<Snapshot>, Vec<String>) -> shared::InventoryChunks,
) -> tokio::net::TcpStream {
    let mut shared = Shared::new(Arc::new(Telemetry::new()), vec![]);
    shared.render = render;
    let address = free_address();
    // Serves until the test's runtime ends.
    let _server = serve(address, Arc::new(shared)).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// A reader slower than the renderer (26 MB taken 4 KiB at a time) gets
/// every chunk, and the renderer waits for it: a few chunks are alive at
/// once, not the text.
#[tokio::test]
async fn a_slow_reader_holds_a_few_chunks_not_the_text() {
    static PROBE: Probe = Probe::new();
    let mut stream = probed(|_, _| Box::new(Probed(&PROBE))).await;
    let mut buf = vec![0; 4096];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await.unwrap() {
            0 => break,
            n => total += n,
        }
        tokio::task::yield_now().await;
    }
    assert!(
        total > PROBED_CHUNKS * crate::encode::exposition::CHUNK_BYTES,
        "{total}"
    );
    let highest = PROBE.highest.load(Ordering::SeqCst);
    assert!(highest <= 16, "{highest} chunks alive at once");
}

/// A reader that goes away mid-body lets go of the rendering: no more
/// chunks are made for it.
#[tokio::test]
async fn a_reader_that_goes_away_stops_the_rendering() {
    static PROBE: Probe = Probe::new();
    let mut stream = probed(|_, _| Box::new(Probed(&PROBE))).await;
    let mut buf = vec![0; 64 * 1024];
    stream.read_exact(&mut buf).await.unwrap();
    drop(stream);
    // A bound only so that a rendering never let go fails the test.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !PROBE.dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the rendering is let go");
    let made = PROBE.made.load(Ordering::SeqCst);
    assert!(made < PROBED_CHUNKS / 2, "{made} chunks made");
}

pub(super) fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn the_health_listener_serves_only_the_services_own_metrics() {
    let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), vec![]));
    shared.publish(snapshot("p"));
    let address = free_address();
    let server = serve_telemetry(address, shared).await.unwrap();
    let response = get_metrics(address).await;
    server.abort();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("container_image_pusher_build_info{"),
        "{response}"
    );
    assert!(
        !response.contains(r#"name="p""#),
        "no inventory: {response}"
    );
}
