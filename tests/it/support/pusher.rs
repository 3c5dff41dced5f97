//! Running the real `container-image-pusher` binary from tests.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, install_crypto_provider, wait_for_http, ChildGuard};
use super::prometheus::{QueryApi, Sample};
use super::wait::{wait_until, wait_until_async};

pub const BIN: &str = env!("CARGO_BIN_EXE_container-image-pusher");

/// What a pusher run to completion left behind.
#[derive(Debug)]
pub struct RunOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Panics with the pusher's log unless it exited with status 0; the
    /// output otherwise, for more checks.
    pub fn assert_success(self) -> RunOutput {
        assert!(
            self.success,
            "the pusher failed with {:?}:\n{}",
            self.code, self.stderr
        );
        self
    }

    /// Panics with the pusher's log unless it exited with `code` (1: a run
    /// that failed, 2: a usage error, 3: input skipped); the output
    /// otherwise, for more checks. `why` says what the code means here.
    pub fn expect_exit(self, code: i32, why: &str) -> RunOutput {
        assert_eq!(
            self.code,
            Some(code),
            "{why}: exit code {:?}, expected {code}:\n{}",
            self.code,
            self.stderr
        );
        self
    }

    /// Panics with the pusher's log unless it failed (any exit but 0).
    pub fn expect_failure(self, why: &str) -> RunOutput {
        assert!(!self.success, "{why}: it succeeded:\n{}", self.stderr);
        self
    }

    fn from(output: std::process::Output) -> RunOutput {
        RunOutput {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Args for a one-shot push of `manifests` to `url`, then `extra`.
pub fn once_args<'a>(manifests: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
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

/// Runs the pusher to completion, with `KUBECONFIG` set to `kubeconfig`.
pub async fn run_once(args: &[&str], kubeconfig: Option<&Path>) -> RunOutput {
    let kubeconfig = kubeconfig.map(|p| p.to_str().expect("a UTF-8 kubeconfig path"));
    let envs: Vec<(&str, &str)> = kubeconfig.map(|p| ("KUBECONFIG", p)).into_iter().collect();
    run_with_env(args, &envs).await
}

/// [`run_once`] with extra environment variables (they win over the
/// defaults, e.g. `RUST_LOG=trace`).
pub async fn run_with_env(args: &[&str], envs: &[(&str, &str)]) -> RunOutput {
    let mut command = tokio::process::Command::new(BIN);
    // The health set (--push-self-metrics) would add its series to every
    // count these tests make; tests/it/self_metrics.rs turns it back on.
    command.env(SELF_METRICS_ENV, "false");
    command
        .args(args)
        .env("RUST_LOG", "info,container_image_pusher=debug")
        .env_remove("KUBECONFIG");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the pusher finishes within two minutes")
        .expect("the pusher binary runs");
    RunOutput::from(output)
}

/// Turns the pushed health set off in the pushers these helpers start
/// (an argument `--push-self-metrics=true` wins over it).
pub const SELF_METRICS_ENV: &str = "PUSHER_PUSH_SELF_METRICS";

/// A long-running pusher, killed on drop.
pub struct Pusher {
    pub child: ChildGuard,
    pub base_url: String,
    /// The health listener (--telemetry-address).
    pub telemetry_url: String,
}

impl Pusher {
    /// SIGTERMs the pusher and asserts that it exits 0 well inside the
    /// 25 s grace period (10 s): nothing it waits on may hold the pod.
    pub async fn terminate_promptly(&mut self) {
        let started = std::time::Instant::now();
        let status = self
            .child
            .terminate(Duration::from_secs(20))
            .await
            .expect("exits after SIGTERM");
        assert!(status.success(), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGTERM took {:?}:\n{}",
            started.elapsed(),
            self.child.logs()
        );
    }

    /// Starts the pusher in long-running mode with its local server on a
    /// free port, and waits until it answers /healthz.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Pusher {
        // The test talks to the pusher with reqwest, which needs rustls's
        // provider chosen.
        install_crypto_provider();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let telemetry = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(BIN);
        // The health set (--push-self-metrics) would add its series to every
        // count these tests make; tests/it/self_metrics.rs turns it back on.
        command.env(SELF_METRICS_ENV, "false");
        command
            .args(args)
            .args(["--metrics-address", &address])
            .args(["--telemetry-address", &telemetry])
            .env("RUST_LOG", "info,container_image_pusher=debug")
            .env_remove("KUBECONFIG");
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = ChildGuard::spawn("container-image-pusher", &mut command);
        let base_url = format!("http://{address}");
        if let Err(e) = wait_for_http(&format!("{base_url}/healthz"), Duration::from_secs(30)).await
        {
            panic!("{e}\n{}", child.logs());
        }
        Pusher {
            child,
            base_url,
            telemetry_url: format!("http://{telemetry}"),
        }
    }

    /// Polls an instant query until `pred` holds; panics with the pusher's
    /// log (which tells why) after 20 s.
    pub async fn wait_for_query(
        &self,
        prometheus: &QueryApi,
        promql: &str,
        pred: impl Fn(&[Sample]) -> bool,
    ) {
        let mut samples = Vec::new();
        let matched = wait_until_async(Duration::from_secs(20), async || {
            samples = prometheus.query(promql).await;
            pred(&samples)
        })
        .await;
        assert!(
            matched,
            "{promql} never matched, last {samples:?}\n{}",
            self.child.logs()
        );
    }

    /// [`Pusher::wait_for_query`] until `promql` returns `n` series (0:
    /// until it returns none).
    pub async fn wait_for_series(&self, prometheus: &QueryApi, promql: &str, n: usize) {
        self.wait_for_query(prometheus, promql, |s| s.len() == n)
            .await;
    }

    /// [`Pusher::wait_for_series`] for each `(promql, n)`, in order.
    pub async fn wait_for_each(&self, prometheus: &QueryApi, expected: &[(&str, usize)]) {
        for (promql, n) in expected {
            self.wait_for_series(prometheus, promql, *n).await;
        }
    }

    /// Polls `condition` until it holds; panics with `what` and the
    /// pusher's log (which tells why) after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: impl std::fmt::Display,
        condition: impl AsyncFnMut() -> bool,
    ) {
        assert!(
            wait_until_async(timeout, condition).await,
            "waited {timeout:?} for {what}:\n{}",
            self.child.logs()
        );
    }

    /// Polls /metrics until `pred` likes the page, and returns it; panics
    /// with `what`, the last page and the pusher's log after `timeout`.
    pub async fn metrics_when(
        &self,
        timeout: Duration,
        what: impl std::fmt::Display,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut page = String::new();
        let matched = wait_until_async(timeout, async || {
            page = self.metrics().await;
            pred(&page)
        })
        .await;
        assert!(
            matched,
            "/metrics never showed {what} within {timeout:?}:\n{page}\n{}",
            self.child.logs()
        );
        page
    }

    /// Polls the pusher's log until `pred` likes it, and returns it; panics
    /// with `what` and the log after `timeout`.
    pub async fn logs_when(
        &self,
        timeout: Duration,
        what: impl std::fmt::Display,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut logs = String::new();
        let matched = wait_until(timeout, || {
            logs = self.child.logs();
            pred(&logs)
        })
        .await;
        assert!(
            matched,
            "the log never showed {what} within {timeout:?}:\n{logs}"
        );
        logs
    }

    /// The value of one self-metric sample (the whole line up to the value,
    /// e.g. `container_image_pusher_held_series{endpoint="…"}`), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// GET /readyz: the status code and body.
    pub async fn readyz(&self) -> (u16, String) {
        let response = reqwest::get(format!("{}/readyz", self.base_url))
            .await
            .expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body")
    }
}

/// Runs the pusher to completion with `stdin` as its standard input.
pub async fn run_once_with_stdin(args: &[&str], stdin: &[u8]) -> RunOutput {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(BIN)
        .env(SELF_METRICS_ENV, "false")
        .args(args)
        .env("RUST_LOG", "info,container_image_pusher=debug")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the pusher binary runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin)
        .await
        .expect("write the pusher's stdin");
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the pusher finishes within two minutes")
        .expect("the pusher's output");
    RunOutput::from(output)
}

/// Resident memory of process `pid`, from /proc (VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"));
    kib * 1024
}
