//! Debian's `docker-registry` holding the generated images, filled once
//! into `--registry-dir` and reused by later runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::json;

use super::images::{fingerprint, ImagePlan, Upload, IMAGE_FORMAT_VERSION};
use super::options::Options;
use super::results::{RegistryCounts, RegistrySetup};
use super::support::process::{free_port, require_binary, ChildGuard};
use super::support::registry::sha256_digest;

/// The marker file in `--registry-dir` saying which images are stored.
pub(crate) const MARKER_FILE: &str = "scale-images.json";

/// Debian's docker-registry on a storage directory that outlives the run.
/// (`tests/it/support/registry.rs` keeps its storage in a tempdir, so the
/// launch is repeated here with the same configuration approach.)
pub(crate) struct ScaleRegistry {
    pub(crate) host: String,
    pub(crate) dir: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) child: ChildGuard,
    /// Access-log lines already counted, and their totals.
    pub(crate) access: Mutex<(usize, RegistryCounts)>,
}

#[derive(serde::Deserialize, Serialize)]
pub(crate) struct Marker {
    pub(crate) format: u32,
    pub(crate) images: usize,
    pub(crate) fingerprint: String,
}

impl ScaleRegistry {
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<ScaleRegistry> {
        let binary = require_binary("docker-registry", "docker-registry");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the registry directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolve {}", dir.display()))?;
        let host = format!("127.0.0.1:{}", free_port());
        let config = json!({
            "version": "0.1",
            // Warnings only, but the access log on: it is how requests are counted.
            "log": { "level": "warn", "accesslog": { "disabled": false } },
            "storage": {
                "filesystem": { "rootdirectory": dir.join("storage") },
                "cache": { "blobdescriptor": "inmemory" },
            },
            "http": { "addr": host, "secret": "container-image-pusher-scale" },
        });
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)
            .context("write the registry config")?;
        let mut child = ChildGuard::spawn(
            "docker-registry",
            Command::new(binary).arg("serve").arg(&config_path),
        );
        child
            .wait_until_http(
                &format!("http://{host}/v2/"),
                Duration::from_secs(30),
                |status| status.is_success(),
            )
            .await
            .map_err(|e| anyhow!(e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(ScaleRegistry {
            host,
            dir,
            http,
            child,
            access: Mutex::default(),
        })
    }

    /// Pushes the images the marker does not vouch for.
    pub(crate) async fn fill(
        &self,
        plans: &[ImagePlan],
        options: &Options,
    ) -> anyhow::Result<RegistrySetup> {
        let marker_path = self.dir.join(MARKER_FILE);
        let stored = std::fs::read(&marker_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
            .filter(|marker| marker.format == IMAGE_FORMAT_VERSION)
            .filter(|marker| {
                let plans: Vec<ImagePlan> = (0..marker.images).map(ImagePlan::new).collect();
                fingerprint(&plans) == marker.fingerprint
            })
            .map_or(0, |marker| marker.images);
        if stored >= plans.len() {
            progress!(
                options,
                "registry {}: the {} images are already stored ({} in all)",
                self.dir.display(),
                plans.len(),
                stored
            );
            return Ok(RegistrySetup {
                images_stored: stored,
                images_pushed: 0,
                push_seconds: 0.0,
            });
        }
        let started = Instant::now();
        let todo = &plans[stored..];
        progress!(
            options,
            "registry {}: pushing images {}..{} ({} in flight)",
            self.dir.display(),
            stored,
            plans.len(),
            options.push_concurrency
        );
        let mut pushes = futures::stream::iter(todo.iter().map(|plan| self.push(plan)))
            .buffer_unordered(options.push_concurrency.max(1));
        let mut done = 0;
        while let Some(result) = pushes.next().await {
            result?;
            done += 1;
            if done % 1000 == 0 {
                progress!(options, "  {done}/{} pushed", todo.len());
            }
        }
        let marker = Marker {
            format: IMAGE_FORMAT_VERSION,
            images: plans.len(),
            fingerprint: fingerprint(plans),
        };
        std::fs::write(&marker_path, serde_json::to_vec_pretty(&marker)?)
            .context("write the registry marker")?;
        let push_seconds = started.elapsed().as_secs_f64();
        progress!(
            options,
            "  {} images pushed in {push_seconds:.1}s",
            todo.len()
        );
        Ok(RegistrySetup {
            images_stored: plans.len(),
            images_pushed: todo.len(),
            push_seconds,
        })
    }

    pub(crate) async fn push(&self, plan: &ImagePlan) -> anyhow::Result<()> {
        for upload in &plan.uploads {
            match upload {
                Upload::Blob(data) => self.push_blob(&plan.repo, data).await?,
                Upload::Manifest {
                    reference,
                    media_type,
                    body,
                } => {
                    let url = format!(
                        "http://{}/v2/{}/manifests/{reference}",
                        self.host, plan.repo
                    );
                    let response = self
                        .http
                        .put(&url)
                        .header(reqwest::header::CONTENT_TYPE, *media_type)
                        .body(body.clone())
                        .send()
                        .await
                        .with_context(|| format!("PUT {url}"))?;
                    expect(response, reqwest::StatusCode::CREATED, "PUT manifest").await?;
                }
            }
        }
        Ok(())
    }

    /// POST to start an upload, PUT with `?digest=` to finish it, as
    /// `tests/it/support/registry.rs` does.
    pub(crate) async fn push_blob(&self, repo: &str, data: &[u8]) -> anyhow::Result<()> {
        let url = format!("http://{}/v2/{repo}/blobs/uploads/", self.host);
        let start = self
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let start = expect(start, reqwest::StatusCode::ACCEPTED, "start blob upload").await?;
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| anyhow!("blob upload to {repo} answered without Location"))?;
        let mut upload = reqwest::Url::parse(&format!("http://{}/", self.host))?.join(location)?;
        upload
            .query_pairs_mut()
            .append_pair("digest", &sha256_digest(data));
        let finish = self
            .http
            .put(upload)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .with_context(|| format!("finish blob upload to {repo}"))?;
        expect(finish, reqwest::StatusCode::CREATED, "finish blob upload").await?;
        Ok(())
    }

    /// Requests by the pusher (its User-Agent) so far, from the access log:
    /// `127.0.0.1 - - [date] "HEAD /v2/… HTTP/1.1" 200 123 "" "container-image-pusher/…"`.
    pub(crate) fn counts(&self) -> RegistryCounts {
        let logs = self.child.logs();
        let mut access = self.access.lock().unwrap_or_else(PoisonError::into_inner);
        let (offset, counts) = &mut *access;
        let Some(end) = logs.rfind('\n').map(|i| i + 1) else {
            return counts.clone();
        };
        if end <= *offset {
            return counts.clone();
        }
        for line in logs[*offset..end].lines() {
            if !line.contains("container-image-pusher") {
                continue;
            }
            let Some(request) = line.split('"').nth(1) else {
                continue;
            };
            let mut parts = request.split(' ');
            let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
                continue;
            };
            if path.contains("/referrers/") {
                counts.referrer_listings += 1;
                continue;
            }
            if path.contains("/tags/list") {
                counts.tag_lists += 1;
                continue;
            }
            match (
                method,
                path.contains("/manifests/"),
                path.contains("/blobs/"),
            ) {
                ("HEAD", true, _) => counts.head_manifests += 1,
                ("GET", true, _) => counts.get_manifests += 1,
                ("GET", _, true) => counts.get_blobs += 1,
                ("GET", _, _) if path == "/v2/" => counts.get_version_checks += 1,
                _ => counts.other += 1,
            }
        }
        *offset = end;
        counts.clone()
    }
}

pub(crate) async fn expect(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    if response.status() == status {
        return Ok(response);
    }
    let got = response.status();
    let url = response.url().clone();
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: {url} answered {got} (expected {status}): {body}")
}
