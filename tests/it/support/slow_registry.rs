//! A scripted registry on a free 127.0.0.1 port that takes its time: every
//! answer comes after a delay. It either refuses every login (a 401 with a
//! Basic challenge, as a registry does for a wrong pull secret) or serves
//! one small OCI image under any repository and the tag `1` (manifest by
//! tag or digest, its config blob; 404 for anything else, such as the
//! referrers API). It records when each request arrived, so tests can
//! assert the order of events across registries instead of durations.
//! It can also [`Hold`] requests unanswered until [`SlowRegistry::release`],
//! so tests can show what a pusher does before an answer comes.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::registry::sha256_digest;

/// What the registry answers.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// 401 with `WWW-Authenticate: Basic` to every request.
    RefuseEveryLogin,
    /// The image, to anyone.
    ServeImage,
}

/// Which requests wait, unanswered, until [`SlowRegistry::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Nothing,
    /// Blobs (the image's config); manifests are answered.
    Blobs,
    Everything,
}

pub struct SlowRegistry {
    port: u16,
    released: tokio::sync::watch::Sender<bool>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    /// The image's manifest digest.
    pub digest: String,
}

#[derive(Clone)]
struct State {
    script: Script,
    delay: Duration,
    manifest: Bytes,
    digest: String,
    config: Bytes,
    config_digest: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    hold: Hold,
    released: tokio::sync::watch::Receiver<bool>,
}

impl SlowRegistry {
    pub async fn start(script: Script, delay: Duration) -> SlowRegistry {
        SlowRegistry::holding(script, delay, Hold::Nothing).await
    }

    /// A registry that answers the requests `hold` names only once
    /// [`SlowRegistry::release`] is called.
    pub async fn holding(script: Script, delay: Duration, hold: Hold) -> SlowRegistry {
        let (release, released) = tokio::sync::watch::channel(false);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config.len()
            },
            "layers": []
        }))
        .unwrap();
        let digest = sha256_digest(&manifest);
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            script,
            delay,
            manifest: manifest.into(),
            digest: digest.clone(),
            config: config.into(),
            config_digest,
            arrivals: arrivals.clone(),
            hold,
            released,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(request, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SlowRegistry {
            port,
            released: release,
            arrivals,
            digest,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Answers the held requests, and every later one at once.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    state: State,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.arrivals.lock().unwrap().push(Instant::now());
    let path = request.uri().path();
    let held = match state.hold {
        Hold::Nothing => false,
        Hold::Blobs => path.contains("/blobs/"),
        Hold::Everything => true,
    };
    if held {
        let mut released = state.released.clone();
        let _ = released.wait_for(|released| *released).await;
    }
    tokio::time::sleep(state.delay).await;
    let response = Response::builder();
    let body = |bytes: &Bytes| {
        if request.method() == Method::HEAD {
            Full::new(Bytes::new())
        } else {
            Full::new(bytes.clone())
        }
    };
    Ok(match state.script {
        Script::RefuseEveryLogin => response
            .status(401)
            .header("www-authenticate", "Basic realm=\"slow\"")
            .body(Full::new(Bytes::from_static(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ))),
        Script::ServeImage
            if path.ends_with("/manifests/1")
                || path.ends_with(&format!("/manifests/{}", state.digest)) =>
        {
            response
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .header("docker-content-digest", &state.digest)
                .header("content-length", state.manifest.len())
                .body(body(&state.manifest))
        }
        Script::ServeImage if path.ends_with(&format!("/blobs/{}", state.config_digest)) => {
            response
                .header("content-type", "application/octet-stream")
                .header("content-length", state.config.len())
                .body(body(&state.config))
        }
        Script::ServeImage => response.status(404).body(Full::new(Bytes::from_static(
            br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#,
        ))),
    }
    .unwrap())
}
