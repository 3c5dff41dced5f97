//! The remote-write client against every answer a receiver can give: a
//! strict scripted receiver of our own (checking every request on the
//! wire), and real Prometheus for the happy path and the 2.0 fallback.

use crate::support;

use std::time::{Duration, Instant};

use support::fixtures::write_pods;
use support::pusher::{once_args, run_once, run_with_env, Pusher, RunOutput};
use support::receiver::{Receiver, Reply};
use support::{wait_until, SharedPrometheus};

fn pods(dir: &tempfile::TempDir, names: &[&str]) -> String {
    write_pods(dir.path(), "pods.yaml", names)
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_5xx_is_retried_and_the_batch_arrives_once() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500).body("try again")]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a", "b"]);
    run_once(&once_args(&manifests, &receiver.url(), &[]), None)
        .await
        .assert_success();
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
    let RunOutput { stderr, .. } = run_once(&args, None)
        .await
        .expect_exit(1, "a snapshot that never landed fails --once");
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
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429)
        .header("Retry-After", "2")
        .body("slow down")]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    run_once(&once_args(&manifests, &receiver.url(), &[]), None)
        .await
        .assert_success();
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
    run_once(
        &once_args(
            &manifests,
            &receiver.url(),
            &["--retry-on-rate-limit=false"],
        ),
        None,
    )
    .await
    .expect_failure("a 429 is final");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn client_errors_are_tried_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    for status in [400, 401, 404, 413] {
        let receiver = Receiver::start().await;
        let long_body = format!("rejected: {}", "x".repeat(5000));
        receiver.script([Reply::status(status).body(&long_body)]);
        let RunOutput { stderr, .. } = run_once(&once_args(&manifests, &receiver.url(), &[]), None)
            .await
            .expect_failure(&format!("{status}"));
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
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(204).delay(Duration::from_secs(20))]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let started = Instant::now();
    let RunOutput { stderr, .. } = run_once(
        &once_args(
            &manifests,
            &receiver.url(),
            &["--remote-write-timeout", "1s"],
        ),
        None,
    )
    .await
    .assert_success();
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
    let receiver = Receiver::start().await;
    receiver.set_fallback(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["old"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&["--retry-max-backoff", "100ms"])
        .start()
        .await;
    let has = |r: &support::receiver::Received, value: &str| {
        r.series()
            .iter()
            .any(|(labels, _)| labels.iter().any(|(_, v)| v == value))
    };
    // Several ticks into the outage, snapshots are superseded while the
    // push keeps failing; then the newest is tried as well.
    pusher
        .wait_until(Duration::from_secs(10), "pushes failing", async || {
            receiver.received().len() >= 3
        })
        .await;
    write_pods(dir.path(), "pods.yaml", &["newest"]);
    pusher
        .wait_until(
            Duration::from_secs(10),
            "a push of the newest snapshot failing",
            async || receiver.received().iter().any(|r| has(r, "newest")),
        )
        .await;
    let during_outage = receiver.received().len();
    receiver.set_fallback(Reply::status(204));
    let accepted = || -> Vec<support::receiver::Received> {
        receiver
            .received()
            .into_iter()
            .skip(during_outage)
            .collect()
    };
    pusher
        .wait_until(
            Duration::from_secs(10),
            "the newest snapshot landing",
            async || accepted().iter().any(|r| has(r, "newest")),
        )
        .await;
    let landed = accepted()
        .into_iter()
        .find(|r| has(r, "newest"))
        .expect("the newest snapshot landed");
    assert!(
        !landed
            .series()
            .iter()
            .any(|(labels, v)| labels.iter().any(|(_, l)| l == "old") && !v.is_nan()),
        "no stale snapshot replayed"
    );
    // Nothing queued up during the outage: after recovery, requests come
    // one per tick, not in a burst replaying the outage.
    pusher
        .wait_until(
            Duration::from_secs(10),
            "6 requests after the outage",
            async || accepted().len() >= 6,
        )
        .await;
    let after = accepted();
    let span = after[5].at - after[1].at;
    assert!(
        span >= Duration::from_millis(400),
        "4 requests within {span:?} of 200 ms ticks: a burst"
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
    let (healthy, hanging) = (Receiver::start().await, Receiver::start().await);
    hanging.set_fallback(Reply::status(204).delay(Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let _pusher = Pusher::on_manifests(&manifests, "250ms")
        .pushing_to(&hanging.url())
        .pushing_to(&healthy.url())
        .start()
        .await;
    assert!(
        wait_until(Duration::from_secs(15), || healthy.received().len() >= 8).await,
        "the healthy endpoint got {} pushes in 15 s",
        healthy.received().len()
    );
    assert!(
        hanging.received().len() <= 2,
        "the hanging endpoint holds its first request"
    );
    healthy.assert_valid();
}

#[tokio::test]
async fn remote_write_2_falls_back_on_415_and_stays() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(415)]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&["--remote-write-protocol", "2.0"])
        .start()
        .await;
    pusher
        .wait_until(Duration::from_secs(15), "3 requests", || async {
            receiver.received().len() >= 3
        })
        .await;
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
    assert_eq!(versions[0], "2.0.0");
    assert!(versions[1..].iter().all(|v| v == "0.1.0"), "{versions:?}");
    receiver.assert_valid();

    // A receiver that speaks 2.0 keeps getting 2.0, with valid symbols.
    let v2 = Receiver::start().await;
    v2.speak_v2();
    let manifests = pods(&dir, &["a", "b"]);
    run_once(
        &once_args(&manifests, &v2.url(), &["--remote-write-protocol", "2.0"]),
        None,
    )
    .await
    .assert_success();
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
    let prometheus = SharedPrometheus::scope().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a", "b", "c"]);
    let RunOutput { stderr, .. } = run_once(
        &once_args(
            &manifests,
            &prometheus.write_url(),
            &[
                "--remote-write-protocol",
                "2.0",
                "--external-label",
                &prometheus.external_label(),
            ],
        ),
        None,
    )
    .await
    .assert_success();
    assert!(stderr.contains("using 1.0 from now on"), "{stderr}");
    let count = prometheus
        .query("count(container_image_container_info)")
        .await;
    assert_eq!(count[0].value, 3.0);
}

#[tokio::test]
async fn basic_auth_headers_and_secrets_stay_out_of_logs() {
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
    let RunOutput { stdout, stderr, .. } = run_once(&args, None).await.assert_success();
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
    let RunOutput { stdout, stderr, .. } =
        run_once(&args, None).await.expect_failure("the push fails");
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
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token").unwrap();
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&["--remote-write-bearer-token-file", token.to_str().unwrap()])
        .start()
        .await;
    let tokens = || -> Vec<String> {
        receiver
            .received()
            .iter()
            .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
            .collect()
    };
    pusher
        .wait_until(Duration::from_secs(15), "a first push", || async {
            !tokens().is_empty()
        })
        .await;
    // Rotated as the kubelet does: a new file moved into place.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &token).unwrap();
    pusher
        .wait_until(
            Duration::from_secs(15),
            "a push with the new token",
            || async { tokens().last().is_some_and(|t| t == "Bearer second-token") },
        )
        .await;
    let tokens = tokens();
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
    let RunOutput { stderr, .. } = run_once(&args, None).await.expect_exit(2, "usage error");
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
    let RunOutput { stderr, .. } = run_once(
        &[
            "--manifests",
            &manifests,
            "--once",
            "--remote-write-config",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await
    .expect_exit(2, "a usage error");
    assert!(stderr.contains("User-Agent"), "{stderr}");
}

#[tokio::test]
async fn an_endpoints_file_gives_each_endpoint_its_own_tenant() {
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let file = dir.path().join("endpoints.yaml");
    std::fs::write(
        &file,
        format!("endpoints:\n  - url: {}\n    headers: {{X-Scope-OrgID: team-a}}\n  - url: {}\n    headers: {{THANOS-TENANT: team-b}}\n", a.url(), b.url()),
    )
    .unwrap();
    run_once(
        &[
            "--manifests",
            &manifests,
            "--once",
            "--remote-write-config",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await
    .assert_success();
    assert_eq!(a.received()[0].headers["x-scope-orgid"], "team-a");
    assert_eq!(b.received()[0].headers["thanos-tenant"], "team-b");
    assert!(!a.received()[0].headers.contains_key("thanos-tenant"));
}

/// The metric series of one endpoint, e.g. `held_series` →
/// `container_image_pusher_held_series{endpoint="http://…/api/v1/write"}`.
fn endpoint_metric(name: &str, receiver: &Receiver) -> String {
    format!(
        "container_image_pusher_{name}{{endpoint=\"{}\"}}",
        receiver.url()
    )
}

fn count_lines(logs: &str, pred: impl Fn(&str) -> bool) -> usize {
    logs.lines().filter(|l| pred(l)).count()
}

#[tokio::test]
async fn a_retry_after_beyond_any_clock_fails_once_without_a_panic() {
    let receiver = Receiver::start().await;
    receiver.set_fallback(
        Reply::status(429)
            .header("Retry-After", "18446744073709551615")
            .body("slow down"),
    );
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let RunOutput { stderr, .. } = run_once(&once_args(&manifests, &receiver.url(), &[]), None)
        .await
        .expect_exit(1, "a failed push, not a crash");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("429") && stderr.contains("outlasts the retry window"),
        "says why: {stderr}"
    );
    assert_eq!(receiver.received().len(), 1, "no request during the pause");

    // The flag that used to panic the same way is refused at start.
    let url = receiver.url();
    let args = once_args(
        &manifests,
        &url,
        &["--remote-write-retry-for", "500000000000y"],
    );
    let RunOutput { stderr, .. } = run_once(&args, None).await.expect_exit(2, "a usage error");
    assert!(
        stderr.contains("--remote-write-retry-for") && stderr.contains("1day"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(receiver.received().len(), 1);
}

/// Starts a long-running pusher at 200 ms ticks against a receiver that
/// answers its first request 429 with `retry_after`, then 204; returns the
/// pusher (and its manifests' directory) once the receiver has seen the
/// first push after the pause, and
/// checks what is common to every such pause: one request during it, the
/// newest snapshot after it, one log line at each end, ready throughout.
async fn pause_and_resume(
    retry_after: &str,
    max_pause: &str,
) -> (Pusher, Receiver, tempfile::TempDir) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429)
        .header("Retry-After", retry_after)
        .body("slow down")]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["old"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&["--retry-max-pause", max_pause])
        .start()
        .await;
    pusher
        .wait_until(Duration::from_secs(15), "a first push", || async {
            !receiver.received().is_empty()
        })
        .await;
    write_pods(dir.path(), "pods.yaml", &["newest"]);
    pusher
        .wait_until(Duration::from_secs(5), "ready during the pause", || async {
            pusher.readyz().await.0 == 200
        })
        .await;
    pusher
        .wait_until(
            Duration::from_secs(30),
            "a push after the pause",
            || async { receiver.received().len() >= 2 },
        )
        .await;
    let received = receiver.received();
    let pause: Duration = humantime::parse_duration(max_pause).unwrap();
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= pause - Duration::from_millis(100),
        "no request during the {max_pause} pause, the next after {gap:?}"
    );
    assert!(
        received[1]
            .series()
            .iter()
            .any(|(labels, _)| labels.iter().any(|(_, v)| v == "newest")),
        "the newest snapshot waited and landed: {:?}\n{}",
        received[1].series(),
        pusher.child.logs()
    );
    let logs = pusher.child.logs();
    assert_eq!(
        count_lines(&logs, |l| l.contains("asked for a pause")),
        1,
        "{logs}"
    );
    assert_eq!(
        count_lines(&logs, |l| l.contains("pause is over")),
        1,
        "{logs}"
    );
    assert_eq!(pusher.readyz().await.0, 200, "{logs}");
    receiver.assert_valid();
    (pusher, receiver, dir)
}

#[tokio::test]
async fn a_retry_after_beyond_any_clock_pauses_the_sender_which_lives_on() {
    let (mut pusher, receiver, _manifests) = pause_and_resume("18446744073709551615", "2s").await;
    pusher.child.check_running().unwrap();
    assert_eq!(
        pusher
            .metric(&endpoint_metric("sender_restarts_total", &receiver))
            .await
            .unwrap_or(0.0),
        0.0,
        "the push task never died"
    );
    assert!(!pusher.child.logs().contains("panicked"));
}

#[tokio::test]
async fn a_receivers_pause_holds_pushes_across_ticks_up_to_the_ceiling() {
    // An hour asked, three seconds granted by --retry-max-pause; at 200 ms
    // ticks that used to be 15 requests.
    let (pusher, receiver, _manifests) = pause_and_resume("3600", "3s").await;
    let seen = receiver.received().len();
    pusher
        .wait_until(
            Duration::from_secs(10),
            "pushing at every tick again",
            || async { receiver.received().len() >= seen + 3 },
        )
        .await;
}

#[tokio::test]
async fn an_outage_with_churn_does_not_grow_what_is_marked_stale() {
    use container_image_pusher::remote_write::STALE_NAN;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a", "b", "c"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&[
            "--retry-max-backoff",
            "100ms",
            "--remote-write-retry-for",
            "1s",
        ])
        .start()
        .await;
    let held = endpoint_metric("held_series", &receiver);
    // Three containers: an info series and a resolve error each.
    pusher
        .wait_until(Duration::from_secs(15), "6 series held", || async {
            pusher.metric(&held).await == Some(6.0)
        })
        .await;
    receiver.set_fallback(Reply::status(503));
    let outage_started = receiver.received().len();
    // The cluster churns through 30 containers while the receiver is down.
    for round in 0..10 {
        let names: Vec<String> = (0..3).map(|i| format!("churn-{round}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        write_pods(dir.path(), "pods.yaml", &names);
        let name = format!("name=\"{}\"", names[0]);
        pusher
            .metrics_when(Duration::from_secs(10), &name, |m| m.contains(&name))
            .await;
    }
    write_pods(dir.path(), "pods.yaml", &["final"]);
    pusher
        .wait_until(
            Duration::from_secs(10),
            "pushes of the newest snapshot failing",
            || async {
                receiver.received().iter().skip(outage_started).any(|r| {
                    r.series()
                        .iter()
                        .any(|(l, _)| l.iter().any(|(_, v)| v == "final"))
                })
            },
        )
        .await;
    assert_eq!(
        pusher.metric(&held).await,
        Some(6.0),
        "a failed push adds nothing to what the receiver holds"
    );
    receiver.set_fallback(Reply::status(204));
    let recovered = receiver.received().len();
    pusher
        .wait_until(
            Duration::from_secs(15),
            "2 series held after recovery",
            || async { pusher.metric(&held).await == Some(2.0) },
        )
        .await;
    let mut stale: Vec<String> = receiver
        .received()
        .iter()
        .skip(recovered)
        .flat_map(|r| r.series())
        .filter(|(_, v)| v.to_bits() == STALE_NAN)
        .map(|(labels, _)| format!("{labels:?}"))
        .collect();
    stale.sort();
    stale.dedup();
    assert_eq!(
        stale.len(),
        6,
        "stale markers only for the accepted series of a, b and c: {stale:#?}"
    );
    assert!(stale.iter().all(|s| !s.contains("churn")), "{stale:#?}");
    receiver.assert_valid();
}

#[tokio::test]
async fn stale_markers_refused_for_good_are_not_sent_again() {
    use container_image_pusher::remote_write::STALE_NAN;
    let receiver = Receiver::start().await;
    // A receiver that will never take a NaN, such as some hosted stores.
    receiver.answer_by(|request| {
        let stale = request
            .timeseries
            .iter()
            .any(|ts| ts.samples.iter().any(|s| s.value.to_bits() == STALE_NAN));
        stale.then(|| Reply::status(400).body("NaN values are not supported"))
    });
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .args(&["--max-series-per-request", "1"])
        .start()
        .await;
    let held = endpoint_metric("held_series", &receiver);
    pusher
        .wait_until(Duration::from_secs(15), "2 series held", || async {
            pusher.metric(&held).await == Some(2.0)
        })
        .await;
    let stale_requests = || {
        receiver
            .received()
            .iter()
            .filter(|r| r.series().iter().any(|(_, v)| v.to_bits() == STALE_NAN))
            .count()
    };
    write_pods(dir.path(), "pods.yaml", &["b"]);
    pusher
        .wait_until(
            Duration::from_secs(15),
            "a's stale markers refused",
            || async { stale_requests() == 2 },
        )
        .await;
    let seen = receiver.received().len();
    pusher
        .wait_until(Duration::from_secs(15), "5 more ticks", || async {
            receiver.received().len() >= seen + 10
        })
        .await;
    assert_eq!(
        stale_requests(),
        2,
        "a refused marker is not repeated at every tick"
    );
    assert_eq!(pusher.metric(&held).await, Some(2.0), "b's series only");
}

#[tokio::test]
async fn a_refusing_receiver_is_logged_when_it_starts_and_when_it_ends() {
    let receiver = Receiver::start().await;
    // A refusal of the whole request (an out-of-order one is an overlap,
    // not a failure: tests/it/mimir.rs).
    receiver.set_fallback(Reply::status(400).body("snappy: corrupt input"));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .pushing_to(&receiver.url())
        .start()
        .await;
    pusher
        .wait_until(Duration::from_secs(20), "10 refused pushes", || async {
            receiver.received().len() >= 10
        })
        .await;
    receiver.set_fallback(Reply::status(204));
    pusher
        .wait_until(Duration::from_secs(10), "a recovery line", || async {
            pusher.child.logs().contains("pushing again")
        })
        .await;
    let logs = pusher.child.logs();
    let about_the_receiver = |l: &str| l.contains(&receiver.url()) || l.contains("corrupt input");
    assert_eq!(
        count_lines(&logs, |l| about_the_receiver(l)
            && (l.contains("WARN") || l.contains("ERROR"))),
        1,
        "one warning for 10 refused pushes:\n{logs}"
    );
    assert!(
        logs.contains("snappy: corrupt input"),
        "the warning says why"
    );
    assert_eq!(
        count_lines(&logs, |l| l.contains("pushing again")),
        1,
        "{logs}"
    );
    assert!(
        pusher
            .metric(&format!(
                "container_image_pusher_pushes_total{{endpoint=\"{}\",outcome=\"failed\"}}",
                receiver.url()
            ))
            .await
            .unwrap()
            >= 10.0,
        "the metrics count every failure"
    );
}

#[tokio::test]
async fn malformed_remote_write_settings_are_refused_without_echoing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let bad_url = dir.path().join("bad-url.yaml");
    std::fs::write(
        &bad_url,
        "endpoints:\n  - url: \"http://u:SECRET-3@[::1\"\n",
    )
    .unwrap();
    let bad_headers = dir.path().join("bad-headers.yaml");
    std::fs::write(
        &bad_headers,
        "endpoints:\n  - url: http://127.0.0.1:1/api/v1/write\n    headers: \"X-Api-Key: SECRET-4\"\n",
    )
    .unwrap();
    let (bad_url, bad_headers) = (bad_url.to_str().unwrap(), bad_headers.to_str().unwrap());
    let good = "http://127.0.0.1:1/api/v1/write";
    // Args, environment, the secret, what the message must name.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--remote-write-url", "http://u:SECRET-1@[::1"],
            vec![],
            "SECRET-1",
            "--remote-write-url",
        ),
        (
            vec![
                "--remote-write-url",
                good,
                "--remote-write-header",
                "X-Api-Key SECRET-2",
            ],
            vec![],
            "SECRET-2",
            "--remote-write-header",
        ),
        (
            vec!["--remote-write-config", bad_url],
            vec![],
            "SECRET-3",
            "bad-url.yaml",
        ),
        (
            vec!["--remote-write-config", bad_headers],
            vec![],
            "SECRET-4",
            "bad-headers.yaml",
        ),
        (
            vec![],
            vec![("PUSHER_REMOTE_WRITE_URL", "https://u:SECRET-5@[::1/push")],
            "SECRET-5",
            "--remote-write-url",
        ),
        (
            vec!["--remote-write-url", good],
            vec![("PUSHER_REMOTE_WRITE_HEADERS", "X-Api-Key SECRET-6")],
            "SECRET-6",
            "--remote-write-header",
        ),
    ];
    for (args, mut envs, secret, named) in cases {
        let mut all = vec!["--manifests", &manifests, "--once"];
        all.extend(args);
        envs.push(("RUST_LOG", "trace"));
        let RunOutput { stdout, stderr, .. } = run_with_env(&all, &envs)
            .await
            .expect_exit(2, &format!("{secret}: usage error"));
        assert!(
            stderr.contains(named),
            "{secret}: the message names {named}: {stderr}"
        );
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked: {stdout}{stderr}"
        );
    }
}

#[tokio::test]
async fn credentials_stay_out_of_trace_logs_even_when_the_receiver_echoes_them() {
    let receiver = Receiver::start().await;
    receiver.set_fallback(
        Reply::status(401).body("unknown key X-Api-Key=SECRET-KEY-7 for basic SECRET-PASS-8"),
    );
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let password = dir.path().join("password");
    std::fs::write(&password, "SECRET-PASS-8\n").unwrap();
    let url = receiver.url().replace("http://", "http://u:SECRET-URL-9@");
    let args = once_args(
        &manifests,
        &url,
        &[
            "--remote-write-header",
            "X-Api-Key: SECRET-KEY-7",
            "--remote-write-username",
            "u",
            "--remote-write-password-file",
            password.to_str().unwrap(),
        ],
    );
    let RunOutput { stdout, stderr, .. } = run_with_env(&args, &[("RUST_LOG", "trace")])
        .await
        .expect_exit(1, "the push fails");
    assert!(stderr.contains("unknown key X-Api-Key=***"), "{stderr}");
    for secret in ["SECRET-KEY-7", "SECRET-PASS-8", "SECRET-URL-9"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked at trace level"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_with_the_tenant_headers() {
    let (receiver, elsewhere) = (Receiver::start().await, Receiver::start().await);
    receiver.set_fallback(Reply::status(307).header("Location", &elsewhere.url()));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let url = receiver.url();
    let args = once_args(
        &manifests,
        &url,
        &["--remote-write-header", "X-Scope-OrgID: team-a"],
    );
    let RunOutput { stderr, .. } = run_once(&args, None).await.expect_exit(1, "the push fails");
    assert!(stderr.contains("307"), "{stderr}");
    assert_eq!(receiver.received().len(), 1, "a 3xx is final");
    assert!(elsewhere.received().is_empty(), "nothing went elsewhere");
}

/// A receiver that echoes the credential past the first KiB of its error
/// reply, as the raw token, the whole `Authorization` value or the base64
/// of `user:password`: no piece of any reaches the log (blanked before the
/// reply is cut to 1 KiB).
#[tokio::test]
async fn every_form_of_an_echoed_credential_is_blanked_before_the_reply_is_cut() {
    use base64::Engine;
    let token = format!("tok{}", "0123456789abcdef".repeat(6));
    let basic = base64::engine::general_purpose::STANDARD.encode("u:SECRET-PASS-8");
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "SECRET-PASS-8\n").unwrap();
    // Each echo straddles the first KiB of the reply.
    let runs: [(&[&str], String); 2] = [
        (
            &[
                "--remote-write-bearer-token-file",
                token_file.to_str().unwrap(),
            ],
            format!("{} Authorization: Bearer {token}", "x".repeat(950)),
        ),
        (
            &[
                "--remote-write-username",
                "u",
                "--remote-write-password-file",
                password.to_str().unwrap(),
            ],
            format!("{} Basic {basic} u:SECRET-PASS-8", "x".repeat(990)),
        ),
    ];
    for (extra, echo) in runs {
        let receiver = Receiver::start().await;
        receiver.set_fallback(Reply::status(401).body(&echo));
        let url = receiver.url();
        let args = once_args(&manifests, &url, extra);
        let out = run_with_env(&args, &[("RUST_LOG", "trace")]).await;
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        let logs = format!("{}{}", out.stdout, out.stderr);
        for secret in [token.as_str(), basic.as_str(), "SECRET-PASS-8"] {
            let pieces = secret.len().saturating_sub(7);
            for start in 0..pieces {
                let piece = &secret[start..start + 8];
                assert!(!logs.contains(piece), "{piece} of {secret} leaked:\n{logs}");
            }
        }
    }
}

/// A receiver that keeps failing does not hold a stopping pod for the
/// whole grace period: at shutdown a failed request is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_does_not_hold_shutdown_in_retries() {
    let receiver = Receiver::start().await;
    receiver.set_fallback(Reply::status(503).body("down"));
    let dir = tempfile::tempdir().unwrap();
    let manifests = pods(&dir, &["a"]);
    let url = receiver.url();
    let mut pusher = Pusher::on_manifests(&manifests, "1s")
        .pushing_to(&url)
        .args(&["--remote-write-retry-for", "5m"])
        .env("NO_COLOR", "1")
        .start()
        .await;
    pusher
        .wait_until(Duration::from_secs(20), "a retried request", async || {
            receiver.received().len() >= 2
        })
        .await;
    // The retries alone would take 5 minutes.
    pusher.terminate_promptly().await;
    assert!(pusher
        .child
        .logs()
        .contains("shutting down: the last push failed and is not retried"));
}
