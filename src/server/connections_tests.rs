use super::*;
use crate::server::tests::free_address;
use crate::server::{serve_telemetry, Shared, MAX_CONNECTIONS};
use crate::telemetry::Telemetry;
use axum::routing::get;
use std::net::SocketAddr;
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

/// `GET path` over a new connection from 127.0.0.2 (the flood comes
/// from 127.0.0.1, as a kubelet's probes come from the node and a flood
/// from a pod): whether a 200 came back. A connection closed without an
/// answer (refused, or evicted) is not one.
async fn probe(address: SocketAddr, path: &str) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let Ok(mut stream) = socket.connect(address).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    // A bound only so that a hung server fails the test instead of
    // hanging it; answered probes take milliseconds.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response));
    matches!(read.await, Ok(Ok(_))) && response.starts_with(b"HTTP/1.1 200")
}

/// Holds `count` connections that send nothing and reconnect as soon as
/// they are closed, like the attack of issue 21 (item 4).
fn flood(address: SocketAddr, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                        let mut buf = [0; 64];
                        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect()
}

/// 64 idle connections that reconnect at once used to hold every slot,
/// so that no /healthz probe was answered and the liveness probe killed
/// the pod. Idle connections now give way, on the main listener, and
/// the health listener has connections of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_through_a_flood_of_idle_reconnecting_connections() {
    let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), vec![]));
    let main = free_address();
    let health = free_address();
    let listener = tokio::net::TcpListener::bind(main).await.unwrap();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared.clone());
    let slots = Slots::new(MAX_CONNECTIONS, shared.metrics.clone());
    let server = tokio::spawn(accept_loop(listener, app, slots.clone()));
    let telemetry_server = serve_telemetry(health, shared.clone()).await.unwrap();
    let attackers = flood(main, MAX_CONNECTIONS);
    // Every slot taken by the flood before the first probe.
    while slots.open() < MAX_CONNECTIONS {
        tokio::task::yield_now().await;
    }
    let mut answered_health = 0;
    let mut answered_main = 0;
    for _ in 0..30 {
        answered_health += usize::from(probe(health, "/healthz").await);
        answered_main += usize::from(probe(main, "/healthz").await);
    }
    for attacker in attackers {
        attacker.abort();
    }
    server.abort();
    telemetry_server.abort();
    assert_eq!(answered_health, 30, "probes on the health listener");
    assert_eq!(
        answered_main,
        30,
        "probes on the main listener ({} refused, {} evicted)",
        shared.metrics.http_connections_refused.get(),
        shared.metrics.http_connections_evicted.get()
    );
    assert!(shared.metrics.http_connections_evicted.get() >= 30);
    assert_eq!(shared.metrics.http_connections_refused.get(), 0);
}

/// A connection in the middle of a request is never evicted: when every
/// slot is busy, the new connection is the one refused. Of the idle
/// ones, the peer with the most connections loses its oldest.
#[tokio::test]
async fn busy_connections_are_spared_and_the_biggest_peer_gives_way() {
    let metrics = Metrics::new(&prometheus::Registry::new());
    let slots = Slots::new(3, metrics.clone());
    let one: IpAddr = "10.0.0.1".parse().unwrap();
    let two: IpAddr = "10.0.0.2".parse().unwrap();
    let lone = slots.acquire(one).unwrap();
    let first = slots.acquire(two).unwrap();
    let second = slots.acquire(two).unwrap();
    assert!(slots.acquire(one).is_none(), "not yet read: spared");
    for slot in [&lone, &first, &second] {
        slot.activity.waited.store(true, Ordering::Release);
    }
    let busy = [
        InProgress::start(&lone.activity),
        InProgress::start(&first.activity),
        InProgress::start(&second.activity),
    ];
    assert!(slots.acquire(one).is_none(), "all busy: refused");
    drop(busy);
    let third = slots.acquire(one).expect("evicts an idle one");
    assert_eq!(metrics.http_connections_evicted.get(), 1);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), first.evict.notified())
            .await
            .is_ok(),
        "the oldest of the peer with the most was told to close"
    );
    drop(first);
    assert_eq!(slots.open(), 3);
    drop((lone, second, third));
    assert_eq!(slots.open(), 0);
}
