//! The remote-write client against every answer a receiver can give: a
//! strict scripted receiver of our own (checking every request on the
//! wire), and real Prometheus for the happy path and the 2.0 fallback.

mod support;

use std::time::{Duration, Instant};

use support::pusher::{run_once, write_pods, Pusher};
use support::receiver::{Receiver, Reply};
use support::Prometheus;

fn pods(dir: &tempfile::TempDir, names: &[&str]) -> String {
    write_pods(dir.path(), "pods.yaml", names)
        .to_str()
        .unwrap()
        .to_owned()
}

/// Args for a one-shot push of `manifests` to `url`.
fn once_args<'a>(manifests: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--manifests",
        manifests,
        "--once",
        "--remote-write-url",
        url,
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn a_5xx_is_retried_and_the_batch_arrives_once() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500).body("try again")]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a", "b"]);
    let (ok, _, _, stderr) = run_once(&once_args(&manifests, &receiver.url(), &[]), None).await;
    assert!(ok, "{stderr}");
    let received = receiver.received();
    assert_eq!(received.len(), 2, "one failure, one success");
    assert_eq!(
        received[0].request, received[1].request,
        "the same batch again"
    );
    receiver.assert_valid();
}

#[tokio::test]
async fn backoff_grows_and_never_exceeds_the_maximum() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.set_fallback(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let url = receiver.url();
    let args = once_args(
        &manifests,
        &url,
        &[
            "--retry-min-backoff",
            "40ms",
            "--retry-max-backoff",
            "320ms",
            "--remote-write-retry-for",
            "3s",
        ],
    );
    let (ok, code, _, stderr) = run_once(&args, None).await;
    assert!(
        !ok && code == Some(1),
        "a snapshot that never landed fails --once: {stderr}"
    );
    assert!(stderr.contains("503"), "{stderr}");
    let at: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 6, "kept retrying for 3 s: {gaps:?}");
    // Jitter draws each wait from [backoff/2, backoff], so compare the
    // early waits with the late ones rather than neighbours.
    assert!(
        gaps[0] < Duration::from_millis(200),
        "starts near the minimum: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(320 + 300)),
        "never above the maximum: {gaps:?}"
    );
    assert!(
        gaps[gaps.len() - 1] >= Duration::from_millis(150),
        "grew towards the maximum: {gaps:?}"
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429)
        .header("Retry-After", "2")
        .body("slow down")]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let (ok, _, _, stderr) = run_once(&once_args(&manifests, &receiver.url(), &[]), None).await;
    assert!(ok, "{stderr}");
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // With --retry-on-rate-limit=false a 429 is final.
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429).header("Retry-After", "2")]);
    let (ok, _, _, _) = run_once(
        &once_args(
            &manifests,
            &receiver.url(),
            &["--retry-on-rate-limit=false"],
        ),
        None,
    )
    .await;
    assert!(!ok);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn client_errors_are_tried_exactly_once() {
    container_image_pusher::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    for status in [400, 401, 404, 413] {
        let receiver = Receiver::start().await;
        let long_body = format!("rejected: {}", "x".repeat(5000));
        receiver.script([Reply::status(status).body(&long_body)]);
        let (ok, _, _, stderr) = run_once(&once_args(&manifests, &receiver.url(), &[]), None).await;
        assert!(!ok, "{status}");
        assert_eq!(receiver.received().len(), 1, "{status} is not retried");
        assert!(
            stderr.contains(&status.to_string()) && stderr.contains("rejected: xxx"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&"x".repeat(1100)),
            "at most 1 KiB of the body is logged"
        );
    }
}

#[tokio::test]
async fn a_hanging_receiver_times_out_then_recovers() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(204).delay(Duration::from_secs(20))]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let started = Instant::now();
    let (ok, _, _, stderr) = run_once(
        &once_args(
            &manifests,
            &receiver.url(),
            &["--remote-write-timeout", "1s"],
        ),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the hanging answer"
    );
    assert!(
        stderr.contains("timed out") || stderr.contains("timeout"),
        "{stderr}"
    );
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn after_an_outage_the_newest_snapshot_lands() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.set_fallback(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["old"]);
    let pusher = Pusher::start(
        &[
            "--manifests",
            &manifests,
            "--interval",
            "200ms",
            "--remote-write-url",
            &receiver.url(),
            "--retry-max-backoff",
            "100ms",
        ],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    write_pods(dir.path(), "pods.yaml", &["newest"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let during_outage = receiver.received().len();
    receiver.set_fallback(Reply::status(204));
    let deadline = Instant::now() + Duration::from_secs(10);
    let landed = loop {
        let accepted: Vec<_> = receiver
            .received()
            .into_iter()
            .skip(during_outage)
            .collect();
        if let Some(r) = accepted.iter().find(|r| {
            r.series()
                .iter()
                .any(|(labels, _)| labels.iter().any(|(_, v)| v == "newest"))
        }) {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the newest snapshot never landed:\n{}",
            pusher.child.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !landed
            .series()
            .iter()
            .any(|(labels, v)| labels.iter().any(|(_, l)| l == "old") && !v.is_nan()),
        "no stale snapshot replayed"
    );
    // Nothing queued up during the outage: after recovery, requests come one per tick.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after: Vec<_> = receiver
        .received()
        .into_iter()
        .skip(during_outage)
        .collect();
    assert!(
        after.len() <= 8,
        "{} requests in about 1.5 s of 200 ms ticks",
        after.len()
    );
    assert!(after.iter().all(|r| !r
        .series()
        .iter()
        .any(|(l, v)| l.iter().any(|(_, x)| x == "old") && !v.is_nan())));
    let superseded: f64 = pusher
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("container_image_pusher_snapshots_superseded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        superseded > 0.0,
        "snapshots were superseded during the outage"
    );
    receiver.assert_valid();
}

#[tokio::test]
async fn a_failing_endpoint_does_not_delay_the_other() {
    container_image_pusher::install_crypto_provider();
    let (healthy, hanging) = (Receiver::start().await, Receiver::start().await);
    hanging.set_fallback(Reply::status(204).delay(Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let _pusher = Pusher::start(
        &[
            "--manifests",
            &manifests,
            "--interval",
            "250ms",
            "--remote-write-url",
            &hanging.url(),
            "--remote-write-url",
            &healthy.url(),
        ],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        healthy.received().len() >= 8,
        "the healthy endpoint got {} pushes in 3 s",
        healthy.received().len()
    );
    assert!(hanging.received().len() <= 2);
    healthy.assert_valid();
}

#[tokio::test]
async fn remote_write_2_falls_back_on_415_and_stays() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(415)]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let _pusher = Pusher::start(
        &[
            "--manifests",
            &manifests,
            "--interval",
            "200ms",
            "--remote-write-url",
            &receiver.url(),
            "--remote-write-protocol",
            "2.0",
        ],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let versions: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            r.headers["x-prometheus-remote-write-version"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(versions.len() >= 3, "{versions:?}");
    assert_eq!(versions[0], "2.0.0");
    assert!(versions[1..].iter().all(|v| v == "0.1.0"), "{versions:?}");
    receiver.assert_valid();

    // A receiver that speaks 2.0 keeps getting 2.0, with valid symbols.
    let v2 = Receiver::start().await;
    v2.speak_v2();
    let manifests = pods(&dir, &["a", "b"]);
    let (ok, _, _, stderr) = run_once(
        &once_args(&manifests, &v2.url(), &["--remote-write-protocol", "2.0"]),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let received = v2.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].headers["x-prometheus-remote-write-version"],
        "2.0.0"
    );
    assert_eq!(
        received[0].request.timeseries.len(),
        4,
        "2 containers and their 2 resolve errors"
    );
    v2.assert_valid();
}

#[tokio::test]
async fn remote_write_2_to_prometheus_2_42_falls_back_and_lands() {
    container_image_pusher::install_crypto_provider();
    let prometheus = Prometheus::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a", "b", "c"]);
    let (ok, _, _, stderr) = run_once(
        &once_args(
            &manifests,
            &prometheus.write_url(),
            &["--remote-write-protocol", "2.0"],
        ),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("using 1.0 from now on"), "{stderr}");
    let count = prometheus
        .query("count(container_image_container_info)")
        .await;
    assert_eq!(count[0].value, 3.0);
}

#[tokio::test]
async fn basic_auth_headers_and_secrets_stay_out_of_logs() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cr3t-p4ss\n").unwrap();
    let url = receiver.url();
    let args = once_args(
        &manifests,
        &url,
        &[
            "--remote-write-username",
            "123456",
            "--remote-write-password-file",
            password.to_str().unwrap(),
            "--remote-write-header",
            "X-Scope-OrgID: team-a",
        ],
    );
    let (ok, _, stdout, stderr) = run_once(&args, None).await;
    assert!(ok, "{stderr}");
    let headers = &receiver.received()[0].headers;
    // base64("123456:s3cr3t-p4ss")
    assert_eq!(headers["authorization"], "Basic MTIzNDU2OnMzY3IzdC1wNHNz");
    assert_eq!(headers["x-scope-orgid"], "team-a");
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains("s3cr3t") && !output.contains("MTIzNDU2OnMzY3IzdC1wNHNz"),
            "{output}"
        );
    }

    // A rejected request does not log the credentials either.
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(401).body("bad credentials")]);
    let url = receiver.url().replace("http://", "http://user:urlpass@");
    let args = once_args(
        &manifests,
        &url,
        &[
            "--remote-write-password-file",
            password.to_str().unwrap(),
            "--remote-write-username",
            "u",
        ],
    );
    let (ok, _, stdout, stderr) = run_once(&args, None).await;
    assert!(!ok);
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains("s3cr3t") && !output.contains("urlpass"),
            "{output}"
        );
    }

    // Neither does --help, even with secrets in the environment.
    let help = std::process::Command::new(support::pusher::BIN)
        .arg("--help")
        .env(
            "PUSHER_REMOTE_WRITE_URL",
            "https://user:envpass@mimir.example.com/api/v1/push",
        )
        .env("PUSHER_REMOTE_WRITE_HEADERS", "X-Api-Key: envkey")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--remote-write-url")
            && !help.contains("envpass")
            && !help.contains("envkey"),
        "{help}"
    );
}

#[tokio::test]
async fn a_rotated_bearer_token_is_picked_up() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token").unwrap();
    let pusher = Pusher::start(
        &[
            "--manifests",
            &manifests,
            "--interval",
            "200ms",
            "--remote-write-url",
            &receiver.url(),
            "--remote-write-bearer-token-file",
            token.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Rotated as the kubelet does: a new file moved into place.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &token).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let tokens: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        tokens.first().map(String::as_str),
        Some("Bearer first-token")
    );
    assert_eq!(
        tokens.last().map(String::as_str),
        Some("Bearer second-token"),
        "{tokens:?}"
    );
    let metrics = pusher.metrics().await;
    assert!(!metrics.contains("first-token") && !metrics.contains("second-token"));
    assert!(
        !pusher.child.logs().contains("-token\""),
        "tokens stay out of the logs"
    );
}

#[tokio::test]
async fn reserved_headers_and_bad_endpoint_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let args = once_args(
        &manifests,
        "http://127.0.0.1:1/api/v1/write",
        &["--remote-write-header", "Content-Type: text/plain"],
    );
    let (ok, code, _, stderr) = run_once(&args, None).await;
    assert!(!ok && code == Some(2), "usage error: {stderr}");
    assert!(
        stderr.contains("Content-Type") && stderr.contains("cannot be overridden"),
        "{stderr}"
    );

    let file = dir.path().join("endpoints.yaml");
    std::fs::write(
        &file,
        "endpoints:\n  - url: http://127.0.0.1:1/api/v1/write\n    headers: {User-Agent: me}\n",
    )
    .unwrap();
    let (ok, code, _, stderr) = run_once(
        &[
            "--manifests",
            &manifests,
            "--once",
            "--remote-write-config",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(!ok && code == Some(2), "{stderr}");
    assert!(stderr.contains("User-Agent"), "{stderr}");
}

#[tokio::test]
async fn an_endpoints_file_gives_each_endpoint_its_own_tenant() {
    container_image_pusher::install_crypto_provider();
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let file = dir.path().join("endpoints.yaml");
    std::fs::write(
        &file,
        format!("endpoints:\n  - url: {}\n    headers: {{X-Scope-OrgID: team-a}}\n  - url: {}\n    headers: {{THANOS-TENANT: team-b}}\n", a.url(), b.url()),
    )
    .unwrap();
    let (ok, _, _, stderr) = run_once(
        &[
            "--manifests",
            &manifests,
            "--once",
            "--remote-write-config",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(a.received()[0].headers["x-scope-orgid"], "team-a");
    assert_eq!(b.received()[0].headers["thanos-tenant"], "team-b");
    assert!(!a.received()[0].headers.contains_key("thanos-tenant"));
}
