//! Hostile input to the pusher process itself: manifests files that are not
//! UTF-8, alias bombs and deep nesting, and `/metrics` clients that read
//! slowly or never finish their request. Each costs only itself: the rest
//! of the snapshot is pushed, memory stays bounded, the server keeps serving.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use support::fixtures::{pod_manifest, unreachable_image, write_many_pods, write_pods};
use support::pusher::{once_args, rss_bytes, run_once, run_once_with_stdin, Pusher, RunOutput};
use support::receiver::Receiver;
use support::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NOT_UTF8: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata: {name: \"\xff\xfe\"}\n";

/// A pod manifest document whose image fails fast.
fn pod(name: &str) -> String {
    pod_manifest(name, &unreachable_image(name))
}

/// `[[[[…]]]]` nested `depth` deep: quadratic to parse without a limit.
fn deep_nesting(depth: usize) -> String {
    format!("{}{}\n", "[".repeat(depth), "]".repeat(depth))
}

/// About `bytes` of YAML whose aliases expand a billionfold.
fn alias_bomb(bytes: usize) -> String {
    let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    // Then many uses of the largest anchor, up to the size asked for.
    text.push_str("bomb: [*l9");
    while text.len() < bytes {
        text.push_str(", *l9");
    }
    text.push_str("]\n");
    text
}

/// The `name` of every container_info series any request carried.
fn pushed_names(receiver: &Receiver) -> BTreeSet<String> {
    receiver
        .received()
        .iter()
        .flat_map(|r| r.values("container_image_container_info", "name"))
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The warnings the pusher logged about skipped manifests input.
fn skip_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains("skipping a manifests"))
        .collect()
}

/// A directory with good files, a file that is not UTF-8, and files whose
/// bad documents (deep nesting, an alias bomb) sit between good ones.
fn hostile_directory(dir: &Path, bomb_bytes: usize, depth: usize) {
    std::fs::write(dir.join("good.yaml"), [pod("a"), pod("b")].join("---\n")).unwrap();
    std::fs::write(dir.join("latin1.yaml"), NOT_UTF8).unwrap();
    std::fs::write(
        dir.join("deep.yaml"),
        [pod("before-deep"), deep_nesting(depth), pod("after-deep")].join("---\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("bomb.yaml"),
        [
            pod("before-bomb"),
            alias_bomb(bomb_bytes),
            pod("after-bomb"),
        ]
        .join("---\n"),
    )
    .unwrap();
}

const GOOD: &[&str] = &[
    "a",
    "b",
    "before-deep",
    "after-deep",
    "before-bomb",
    "after-bomb",
];

#[tokio::test]
async fn once_pushes_every_good_document_and_exits_3_when_input_was_skipped() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 400 KB of nesting took 160 s to parse; a 2 MB alias bomb, gigabytes.
    hostile_directory(dir.path(), 2 << 20, 200_000);
    let started = Instant::now();
    let RunOutput { code, stderr, .. } = run_once(
        &once_args(dir.path().to_str().unwrap(), &receiver.url(), &[]),
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}\n{stderr}");
    assert_eq!(pushed_names(&receiver), names(GOOD), "{stderr}");
    receiver.assert_valid();
    let skipped = skip_lines(&stderr);
    assert_eq!(skipped.len(), 3, "{skipped:#?}");
    for (file, reason) in [
        ("latin1.yaml", "not_utf8"),
        ("deep.yaml", "too_deep"),
        ("bomb.yaml", "alias_expansion"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|l| l.contains(file) && l.contains(reason)),
            "{file}: {skipped:#?}"
        );
    }
}

#[tokio::test]
async fn once_with_a_single_bad_file_or_bad_stdin_pushes_the_rest() {
    let receiver = Receiver::start().await;
    let mut mixed = pod("first").into_bytes();
    mixed.extend_from_slice(b"---\n");
    mixed.extend_from_slice(NOT_UTF8);
    mixed.extend_from_slice(b"---\n");
    mixed.extend_from_slice(pod("second").as_bytes());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.yaml");
    std::fs::write(&file, &mixed).unwrap();
    let RunOutput { stderr, .. } = run_once(
        &once_args(file.to_str().unwrap(), &receiver.url(), &[]),
        None,
    )
    .await
    .expect_exit(3, "input was skipped");
    assert_eq!(pushed_names(&receiver), names(&["first", "second"]));
    assert_eq!(skip_lines(&stderr).len(), 1, "{stderr}");

    let receiver = Receiver::start().await;
    let RunOutput { stderr, .. } =
        run_once_with_stdin(&once_args("-", &receiver.url(), &[]), &mixed)
            .await
            .expect_exit(3, "input was skipped");
    assert_eq!(pushed_names(&receiver), names(&["first", "second"]));
    let skipped = skip_lines(&stderr);
    assert!(
        skipped.len() == 1 && skipped[0].contains("<stdin>"),
        "{stderr}"
    );

    // Nothing left but the bad file: not a failure to push, still exit 3.
    std::fs::write(&file, NOT_UTF8).unwrap();
    let receiver = Receiver::start().await;
    run_once(
        &once_args(file.to_str().unwrap(), &receiver.url(), &[]),
        None,
    )
    .await
    .expect_exit(3, "input was skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_skips_bad_files_logs_once_counts_every_tick_and_stops_promptly() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    hostile_directory(dir.path(), 2 << 20, 200_000);
    let mut pusher = Pusher::on_manifests(dir.path(), "300ms")
        .pushing_to(&receiver.url())
        .start()
        .await;
    pusher
        .child
        .wait_until_http(
            &format!("{}/readyz", pusher.base_url),
            Duration::from_secs(60),
            |s| s.is_success(),
        )
        .await
        .unwrap();
    let pushed = wait_until(Duration::from_secs(60), || {
        pushed_names(&receiver) == names(GOOD)
    })
    .await;
    assert!(
        pushed,
        "pushed {:?}\n{}",
        pushed_names(&receiver),
        pusher.child.logs()
    );

    // Several ticks later: counted at each, logged once.
    let count = |metrics: &str, reason: &str| -> f64 {
        let prefix = format!(
            r#"container_image_pusher_discovery_errors_total{{kind="manifest",reason="{reason}"}}"#
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    pusher
        .metrics_when(Duration::from_secs(60), "5 ticks of errors", |metrics| {
            ["not_utf8", "too_deep", "alias_expansion"]
                .iter()
                .all(|r| count(metrics, r) >= 5.0)
        })
        .await;
    let logs = pusher.child.logs();
    assert_eq!(skip_lines(&logs).len(), 3, "{logs}");
    let rss = rss_bytes(pusher.child.id());
    assert!(rss < 400 << 20, "RSS {} MiB", rss >> 20);

    // Fixed: read again, said once, its workload pushed.
    std::fs::write(dir.path().join("latin1.yaml"), pod("fixed")).unwrap();
    pusher
        .wait_until(
            Duration::from_secs(60),
            "the fixed file pushed",
            async || pushed_names(&receiver).contains("fixed"),
        )
        .await;
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("read without problems again").count(),
        1,
        "{logs}"
    );

    pusher.terminate_promptly().await;
    receiver.assert_valid();
}

/// Sends `GET /metrics` and reads only the status line and headers.
async fn start_slow_reader(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: pusher\r\n\r\n")
        .await
        .expect("send the request");
    let mut head = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut head))
        .await
        .expect("the response starts within a minute")
        .expect("read the response head");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    stream
}

/// Starts a pusher serving a `/metrics` page of about `pods` × 600 bytes.
async fn pusher_with_a_large_page(dir: &Path, pods: usize) -> (Pusher, usize) {
    let prefix = "p".repeat(200);
    let manifests = write_many_pods(dir, "many.yaml", &prefix, pods, "127.0.0.1:1/same:1");
    let pusher = Pusher::on_manifests(&manifests, "1h").start().await;
    let last = format!("name=\"{prefix}-{}\"", pods - 1);
    let page = pusher
        .metrics_when(Duration::from_secs(120), &last, |page| page.contains(&last))
        .await;
    (pusher, page.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_metrics_readers_hold_a_few_chunks_each_and_normal_scrapes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (pusher, page) = pusher_with_a_large_page(dir.path(), 6000).await;
    assert!(page > 3 << 19, "page of {page} bytes");
    let address = pusher.base_url.trim_start_matches("http://").to_owned();
    let before = rss_bytes(pusher.child.id());

    // A reader holding the whole page would cost 50 × the page; a
    // streamed reader holds a few 64 KiB chunks.
    let mut readers = Vec::new();
    for _ in 0..50 {
        readers.push(start_slow_reader(&address).await);
    }
    let scraped = pusher.metrics().await;
    assert_eq!(scraped.len(), page, "a normal scrape gets the whole page");
    let after = rss_bytes(pusher.child.id());
    assert!(
        after.saturating_sub(before) < 48 << 20,
        "50 slow readers of {} MiB grew RSS {} → {} MiB",
        page >> 20,
        before >> 20,
        after >> 20
    );

    // Beyond the connection limit, connections are closed at once.
    let mut more = Vec::new();
    for _ in 0..400 {
        more.push(TcpStream::connect(&address).await.expect("connect"));
    }
    let mut closed = 0;
    for stream in &mut more {
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: pusher\r\n\r\n")
            .await;
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    // At most the limit is served at once; a slow reader whose whole page
    // is already in its socket's buffers is idle to the server, so it may
    // be evicted for one of these, which is then served in its place.
    let limit = container_image_pusher::server::MAX_CONNECTIONS;
    assert!(
        closed >= 400 - limit - readers.len(),
        "{closed} of 400 closed"
    );
    let after = rss_bytes(pusher.child.id());
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "450 slow readers grew RSS {} → {} MiB",
        before >> 20,
        after >> 20
    );
    drop(more);
    drop(readers);
    // Served again once the slow readers are gone (until then a request
    // may be refused, so not `Pusher::metrics`, which panics).
    pusher
        .wait_until(
            Duration::from_secs(60),
            "/metrics served again",
            async || match reqwest::get(format!("{}/metrics", pusher.base_url)).await {
                Ok(response) => response
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("container_image_pusher_http_connections_refused_total"),
                Err(_) => false,
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_requests_and_idle_connections_are_closed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a"]);
    let pusher = Pusher::on_manifests(&manifests, "1h").start().await;
    let address = pusher.base_url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut connections = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        if i % 2 == 0 {
            // slowloris: a request whose headers never end
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: pusher\r\nX-a: ")
                .await
                .unwrap();
        }
        connections.push(stream);
    }
    let timeout = container_image_pusher::server::HEADER_READ_TIMEOUT;
    let limit = timeout + Duration::from_secs(20);
    for stream in &mut connections {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(limit, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // e.g. a 408 answer before the close
                }
            }
        })
        .await;
        assert!(read.is_ok(), "a connection was still open after {limit:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_secs(1),
        "closed after {took:?}, before the timeout"
    );
    assert!(pusher
        .metrics()
        .await
        .contains("container_image_container_info"));
}
