//! Running the real `container-image-pusher` binary from tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, wait_for_http, ChildGuard};
use super::prometheus::{QueryApi, Sample};

pub const BIN: &str = env!("CARGO_BIN_EXE_container-image-pusher");

/// Runs the pusher to completion; returns (success, exit code, stdout, stderr).
pub async fn run_once(
    args: &[&str],
    kubeconfig: Option<&Path>,
) -> (bool, Option<i32>, String, String) {
    let kubeconfig = kubeconfig.map(|p| p.to_str().expect("a UTF-8 kubeconfig path"));
    let envs: Vec<(&str, &str)> = kubeconfig.map(|p| ("KUBECONFIG", p)).into_iter().collect();
    run_with_env(args, &envs).await
}

/// [`run_once`] with extra environment variables (they win over the
/// defaults, e.g. `RUST_LOG=trace`).
pub async fn run_with_env(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(BIN);
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
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.success(),
        output.status.code(),
        stdout,
        stderr,
    )
}

/// A long-running pusher, killed on drop.
pub struct Pusher {
    pub child: ChildGuard,
    pub base_url: String,
}

impl Pusher {
    /// Starts the pusher in long-running mode with its local server on a
    /// free port, and waits until it answers /healthz.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Pusher {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .args(["--metrics-address", &address])
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
        Pusher { child, base_url }
    }

    /// Polls an instant query until `pred` holds; panics with the pusher's
    /// log (which tells why) after 20 s.
    pub async fn wait_for_query(
        &self,
        prometheus: &QueryApi,
        promql: &str,
        pred: impl Fn(&[Sample]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let samples = prometheus.query(promql).await;
            if pred(&samples) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{promql} never matched, last {samples:?}\n{}",
                self.child.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

/// Writes a manifest with one Pod per name (image `127.0.0.1:1/NAME:1`,
/// which fails fast: nothing listens on port 1) and returns its path.
pub fn write_pods(dir: &Path, file: &str, names: &[&str]) -> PathBuf {
    let path = dir.join(file);
    let pods: Vec<String> = names
        .iter()
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"127.0.0.1:1/{name}:1\"}}]}}\n"
            )
        })
        .collect();
    // Write then rename, so a pusher reading the file never sees half of it.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, pods.join("---\n")).expect("write manifests");
    std::fs::rename(&tmp, &path).expect("move manifests into place");
    path
}

/// Runs the pusher to completion with `stdin` as its standard input;
/// returns (exit code, stderr).
pub async fn run_once_with_stdin(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(BIN)
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
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `count` Pods that all run `image`, named `NAME_PREFIX-i`, in one
/// multi-document file; a long prefix makes a large `/metrics` page.
pub fn write_many_pods(
    dir: &Path,
    file: &str,
    name_prefix: &str,
    count: usize,
    image: &str,
) -> PathBuf {
    let path = dir.join(file);
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name_prefix}-{i}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"{image}\"}}]}}\n"
        ));
    }
    std::fs::write(&path, text).expect("write manifests");
    path
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
