use super::*;
use crate::series::Snapshot;
use crate::telemetry::Telemetry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    assert!(
        shared.rendered.try_lock().unwrap().is_none(),
        "the text of a replaced snapshot is let go"
    );
    let second = shared.inventory_text().await.unwrap();
    assert!(
        String::from_utf8_lossy(&second).contains(r#"name="second""#),
        "rendered anew: {second:?}"
    );
}

/// The whole HTTP answer to `GET /metrics` at `address`.
async fn get_metrics(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
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
