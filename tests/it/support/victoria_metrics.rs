//! A real VictoriaMetrics for tests: the single-node `victoria-metrics`
//! from Debian sid (`super::peers`) on 127.0.0.1, a second, independent
//! remote-write 1.0 implementation next to Prometheus, queried through its
//! Prometheus-compatible API with the same [`QueryApi`]; it also receives
//! OTLP/HTTP metrics.
//!
//! Two of its defaults would hide fresh data from a test: samples newer than
//! `-search.latencyOffset` (30 s) are left out of instant queries, and
//! ingested rows become searchable only when buffers are flushed (about once
//! a second). The helper sets the offset to zero and disables the response
//! cache; call [`VictoriaMetrics::force_flush`] after a push and before
//! querying.

use std::ops::Deref;
use std::time::Duration;

use super::peers::peer;
use super::process::{free_port, ChildGuard};
use super::prometheus::QueryApi;

/// How long VictoriaMetrics gets to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running VictoriaMetrics; killed when dropped.
pub struct VictoriaMetrics {
    api: QueryApi,
    _child: ChildGuard,
    // Storage; removed after the child is killed (declaration order).
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    pub async fn start() -> VictoriaMetrics {
        VictoriaMetrics::start_with(&[]).await
    }

    /// Starts one with `extra_args` (e.g. `-relabelConfig=…`) besides the test settings.
    pub async fn start_with(extra_args: &[&str]) -> VictoriaMetrics {
        let binary = peer("victoria-metrics");
        let dir = tempfile::Builder::new()
            .prefix("victoria-metrics-")
            .tempdir()
            .expect("create a tempdir for victoria-metrics");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut command = std::process::Command::new(binary);
        command
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-loggerLevel=WARN")
            .args(extra_args);
        let mut child = ChildGuard::spawn("victoria-metrics", &mut command);
        if let Err(message) = child
            .wait_until_http(&format!("{url}/health"), START_TIMEOUT, |status| {
                status.is_success()
            })
            .await
        {
            panic!("{message}");
        }
        VictoriaMetrics {
            api: QueryApi::new(url),
            _child: child,
            _dir: dir,
        }
    }

    /// The remote-write (1.0) endpoint.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.api.url())
    }

    /// The OTLP/HTTP metrics endpoint.
    pub fn otlp_url(&self) -> String {
        format!("{}/opentelemetry/v1/metrics", self.api.url())
    }

    /// Makes everything ingested so far searchable.
    pub async fn force_flush(&self) {
        let url = format!("{}/internal/force_flush", self.api.url());
        let response = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url} answered {}",
            response.status()
        );
    }
}

impl Deref for VictoriaMetrics {
    type Target = QueryApi;

    fn deref(&self) -> &QueryApi {
        &self.api
    }
}
