//! A real OCI registry for tests: Debian's `docker-registry` (CNCF
//! distribution 2.8.2) on 127.0.0.1, storing blobs in a tempdir, plus helpers
//! that push hand-built images into it over the registry HTTP API.
//!
//! A real registry rather than a mock, so the product's registry client meets
//! the genuine protocol: content negotiation on `Accept`, `Docker-Content-Digest`,
//! basic-auth challenges, 404 error bodies.
//!
//! What distribution 2.8.2 does that tests should know about (checked by the
//! support self-tests):
//! - It keeps the exact bytes of a pushed manifest, so unknown fields (such as
//!   annotations on a Docker manifest list) survive a round trip, and the
//!   digest of what GET returns is the digest that was pushed.
//! - Pushing an index or manifest list whose child manifest is not in the
//!   repository is refused (400 `MANIFEST_BLOB_UNKNOWN`), and so is a manifest
//!   whose config or layer blob was not uploaded: push children first.
//! - An index descriptor needs no `platform`: an entry without one is
//!   accepted, as are BuildKit's unknown/unknown
//!   attestation entries and an `application/vnd.in-toto+json` layer.
//! - Content negotiation is strict. GET of an OCI manifest or OCI index whose
//!   `Accept` lacks its media type answers 404 `MANIFEST_UNKNOWN` ("OCI
//!   manifest found, but accept header does not support OCI manifests", "OCI
//!   index found, but accept header does not support OCI indexes"). GET of a
//!   Docker manifest list with only the Docker manifest type in `Accept`
//!   serves the linux/amd64 child manifest instead (with that child's digest).
//!   GET of a Docker image manifest or list with no `Accept` at all answers
//!   400 `MANIFEST_INVALID` (it would convert to schema 1, which this build
//!   cannot). Send the full `Accept` list (see [`MANIFEST_ACCEPT`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::process::{free_port, install_crypto_provider, require_binary, ChildGuard};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const IN_TOTO_LAYER: &str = "application/vnd.in-toto+json";

/// An `Accept` header value naming every manifest type, as a registry client
/// that handles both OCI and Docker images sends it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// How long the registry gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry`; killed when dropped.
pub struct Registry {
    host: String,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    child: ChildGuard,
    // Config, htpasswd file and blob storage; removed on drop (after the
    // child is killed, since fields drop in declaration order).
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry that allows anonymous push and pull.
    pub async fn start() -> Registry {
        Registry::launch(None).await
    }

    /// A registry that demands HTTP basic auth as `user`/`password` for every
    /// request, through an htpasswd file made with `htpasswd -Bbn`.
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn launch(credentials: Option<(String, String)>) -> Registry {
        let binary = require_binary("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir()
            .expect("create a tempdir for the registry");
        let htpasswd = credentials
            .as_ref()
            .map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config_path = dir.path().join("config.yml");
        let config = registry_config(&host, &dir.path().join("storage"), htpasswd.as_deref());
        std::fs::write(&config_path, config).expect("write the registry config");

        let mut child = ChildGuard::spawn(
            "docker-registry",
            Command::new(binary).arg("serve").arg(&config_path),
        );
        // /v2/ is the API version check: 200 without auth, 401 with it. Either
        // means the registry is serving.
        let ready = child
            .wait_until_http(&format!("http://{host}/v2/"), START_TIMEOUT, |status| {
                status.is_success() || status == reqwest::StatusCode::UNAUTHORIZED
            })
            .await;
        if let Err(message) = ready {
            panic!("{message}");
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the registry push client");
        Registry {
            host,
            credentials,
            http,
            child,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The registry process's output so far (for failure messages).
    pub fn logs(&self) -> String {
        self.child.logs()
    }

    /// A request to `path` (starting with `/v2/`) carrying the credentials, if
    /// any: for tests that inspect what the registry serves.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorize(self.http.request(method, format!("{}{path}", self.url())))
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads `data` as a blob of `repo` in one piece (POST to start the
    /// upload, PUT with `?digest=` to finish it).
    ///
    /// The returned descriptor has an empty media type: the caller knows what
    /// the blob is (see [`Descriptor::with_media_type`]).
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Descriptor {
        let digest = sha256_digest(data);
        let start = self
            .request(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("start blob upload to {repo}: {e}"));
        let start = expect_status(start, reqwest::StatusCode::ACCEPTED, "start blob upload").await;
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| {
                panic!("blob upload start for {repo} answered without a Location header")
            })
            .to_owned();
        // The Location may be absolute or relative, and carries its own query
        // (`_state`), so the digest is appended as a proper query pair.
        let mut upload_url = reqwest::Url::parse(&self.url())
            .and_then(|base| base.join(&location))
            .unwrap_or_else(|e| panic!("unusable upload Location {location:?}: {e}"));
        upload_url.query_pairs_mut().append_pair("digest", &digest);
        let finish = self
            .authorize(self.http.put(upload_url))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("finish blob upload to {repo}: {e}"));
        let finish =
            expect_status(finish, reqwest::StatusCode::CREATED, "finish blob upload").await;
        check_content_digest(&finish, &digest, "blob upload");
        Descriptor {
            media_type: String::new(),
            digest,
            size: data.len() as u64,
        }
    }

    /// PUTs a manifest (or index) under `reference` (a tag or a digest) and
    /// returns its digest, after checking the registry computed the same one.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        match self
            .try_push_manifest(repo, reference, media_type, body)
            .await
        {
            Ok(digest) => digest,
            Err((status, body)) => {
                panic!("push manifest {repo}:{reference}: answered {status}: {body}")
            }
        }
    }

    /// Like [`Registry::push_manifest`], but a refusal comes back as
    /// `Err((status, error body))`, for tests of what the registry rejects.
    pub async fn try_push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, (reqwest::StatusCode, String)> {
        let digest = sha256_digest(body);
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("push manifest {repo}:{reference}: {e}"));
        if response.status() != reqwest::StatusCode::CREATED {
            let status = response.status();
            let text = response
                .text()
                .await
                .unwrap_or_else(|e| format!("<body unreadable: {e}>"));
            return Err((status, text));
        }
        check_content_digest(&response, &digest, "manifest push");
        Ok(digest)
    }
}

/// Writes the registry's own config: filesystem storage in the tempdir,
/// 127.0.0.1 only, and htpasswd auth only when asked for (Debian's default
/// `/etc/docker/registry/config.yml` always enables it, so it is not used).
fn registry_config(
    host: &str,
    storage: &std::path::Path,
    htpasswd: Option<&std::path::Path>,
) -> String {
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "accesslog": { "disabled": true } },
        "storage": {
            "filesystem": { "rootdirectory": storage },
            "delete": { "enabled": true },
            // No blob-descriptor cache: tests want what is on disk.
        },
        "http": {
            "addr": host,
            // A fixed secret avoids the "No HTTP secret provided" warning;
            // it only signs upload state, and there is one instance.
            "secret": "container-image-pusher-tests",
            "headers": { "X-Content-Type-Options": ["nosniff"] },
        },
    });
    if let Some(path) = htpasswd {
        config["auth"] = json!({ "htpasswd": { "realm": "test-registry", "path": path } });
    }
    // YAML is a superset of JSON, but serde_yaml keeps the file readable.
    serde_yaml::to_string(&config).expect("serialize the registry config")
}

/// Runs `htpasswd -Bbn` (bcrypt, the only hash distribution accepts) and
/// stores its output next to the config.
fn write_htpasswd(dir: &std::path::Path, user: &str, password: &str) -> PathBuf {
    let binary = require_binary("htpasswd", "apache2-utils");
    let output = Command::new(binary)
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd");
    assert!(
        output.status.success(),
        "htpasswd -Bbn failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("htpasswd");
    std::fs::write(&path, &output.stdout).expect("write the htpasswd file");
    path
}

async fn expect_status(
    response: reqwest::Response,
    expected: reqwest::StatusCode,
    what: &str,
) -> reqwest::Response {
    if response.status() == expected {
        return response;
    }
    let status = response.status();
    let url = response.url().clone();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| format!("<body unreadable: {e}>"));
    panic!("{what}: {url} answered {status} (expected {expected}): {body}");
}

fn check_content_digest(response: &reqwest::Response, expected: &str, what: &str) {
    let header = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|value| value.to_str().ok());
    assert_eq!(
        header,
        Some(expected),
        "{what}: Docker-Content-Digest differs from the locally computed digest"
    );
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn with_media_type(mut self, media_type: &str) -> Descriptor {
        self.media_type = media_type.to_owned();
        self
    }

    /// The descriptor as JSON (`mediaType`, `digest`, `size`).
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// Which family of media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / index.
    Oci,
    /// Docker image manifest v2 schema 2 / manifest list.
    Docker,
}

impl Format {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn index_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }

    pub fn layer_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
}

/// What a single-platform image should contain. Build it with
/// [`ImageSpec::oci`] or [`ImageSpec::docker`] and the builder methods.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub format: Format,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// RFC 3339; `None` leaves the `created` key out of the config entirely.
    pub created: Option<String>,
    /// The config's `config.Labels` (left out when empty).
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations; only written for [`Format::Oci`].
    pub annotations: BTreeMap<String, String>,
    /// Raw layer bytes (need not be real gzip: nothing unpacks them).
    pub layers: Vec<Vec<u8>>,
}

impl ImageSpec {
    pub fn new(format: Format, os: &str, architecture: &str) -> Self {
        ImageSpec {
            format,
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
            created: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            layers: Vec::new(),
        }
    }

    pub fn oci(os: &str, architecture: &str) -> Self {
        ImageSpec::new(Format::Oci, os, architecture)
    }

    pub fn docker(os: &str, architecture: &str) -> Self {
        ImageSpec::new(Format::Docker, os, architecture)
    }

    pub fn variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.to_owned());
        self
    }

    pub fn created(mut self, rfc3339: &str) -> Self {
        self.created = Some(rfc3339.to_owned());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn layer(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.layers.push(bytes.into());
        self
    }

    /// The image config JSON as a builder would write it.
    pub fn config(&self) -> Value {
        // Layers are stored as-is, so their "uncompressed" digest is the
        // digest of the bytes themselves.
        let diff_ids: Vec<String> = self
            .layers
            .iter()
            .map(|layer| sha256_digest(layer))
            .collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        if let Some(created) = &self.created {
            config["created"] = json!(created);
        }
        if !self.labels.is_empty() {
            config["config"]["Labels"] = json!(self.labels);
        }
        config
    }
}

/// The result of pushing an image, attestation or index.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// The manifest digest (same as `manifest.digest`).
    pub digest: String,
    /// Descriptor of the manifest itself (media type, digest, byte size).
    pub manifest: Descriptor,
    /// Byte size of the config blob (0 for an index).
    pub config_size: u64,
    /// Sum of the layer blob sizes (0 for an index).
    pub layers_size: u64,
}

impl PushedImage {
    /// The size the product should report for the image: config plus layers.
    pub fn image_size(&self) -> u64 {
        self.config_size + self.layers_size
    }
}

/// Pushes the config, the layers and the manifest of `spec`; the manifest goes
/// under `tag`, or only by digest when `tag` is `None`.
pub async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    spec: &ImageSpec,
) -> PushedImage {
    let config_bytes = serde_json::to_vec(&spec.config()).expect("serialize the image config");
    let config = reg
        .push_blob(repo, &config_bytes)
        .await
        .with_media_type(spec.format.config_media_type());
    let mut layers = Vec::new();
    for layer in &spec.layers {
        layers.push(
            reg.push_blob(repo, layer)
                .await
                .with_media_type(spec.format.layer_media_type()),
        );
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": spec.format.manifest_media_type(),
        "config": config.to_json(),
        "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    });
    if spec.format == Format::Oci && !spec.annotations.is_empty() {
        manifest["annotations"] = json!(spec.annotations);
    }
    let layers_size = layers.iter().map(|layer| layer.size).sum();
    push_manifest_json(
        reg,
        repo,
        tag,
        spec.format.manifest_media_type(),
        &manifest,
        config.size,
        layers_size,
    )
    .await
}

/// Pushes an attestation manifest like BuildKit's (an OCI manifest with an
/// OCI config of platform unknown/unknown and one in-toto layer), by digest
/// only; wrap it in [`IndexEntry::Attestation`] to reference it from an index.
pub async fn push_attestation(reg: &Registry, repo: &str, subject_digest: &str) -> PushedImage {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{ "name": "_", "digest": { "sha256": subject_digest.trim_start_matches("sha256:") } }],
        "predicate": {},
    });
    let statement_bytes = serde_json::to_vec(&statement).expect("serialize the in-toto statement");
    let layer = reg
        .push_blob(repo, &statement_bytes)
        .await
        .with_media_type(IN_TOTO_LAYER);
    let config_json = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    let config_bytes = serde_json::to_vec(&config_json).expect("serialize the attestation config");
    let config = reg
        .push_blob(repo, &config_bytes)
        .await
        .with_media_type(OCI_CONFIG);
    let mut layer_json = layer.to_json();
    layer_json["annotations"] =
        json!({ "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer_json],
    });
    push_manifest_json(
        reg,
        repo,
        None,
        OCI_MANIFEST,
        &manifest,
        config.size,
        layer.size,
    )
    .await
}

async fn push_manifest_json(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    media_type: &str,
    manifest: &Value,
    config_size: u64,
    layers_size: u64,
) -> PushedImage {
    let body = serde_json::to_vec_pretty(manifest).expect("serialize the manifest");
    let digest = sha256_digest(&body);
    let reference = tag.unwrap_or(&digest);
    let pushed_digest = reg.push_manifest(repo, reference, media_type, &body).await;
    PushedImage {
        digest: pushed_digest.clone(),
        manifest: Descriptor {
            media_type: media_type.to_owned(),
            digest: pushed_digest,
            size: body.len() as u64,
        },
        config_size,
        layers_size,
    }
}

/// One entry of an image index / manifest list.
#[derive(Clone, Debug)]
pub enum IndexEntry {
    /// A platform image, with the platform written into the descriptor.
    Image {
        pushed: PushedImage,
        os: String,
        architecture: String,
        variant: Option<String>,
        annotations: BTreeMap<String, String>,
    },
    /// A BuildKit-style attestation manifest (see [`push_attestation`]):
    /// platform unknown/unknown, `vnd.docker.reference.type:
    /// attestation-manifest` and `vnd.docker.reference.digest: <subject>`.
    Attestation {
        pushed: PushedImage,
        subject_digest: String,
    },
}

impl IndexEntry {
    /// A platform image entry without annotations.
    pub fn image(
        pushed: &PushedImage,
        os: &str,
        architecture: &str,
        variant: Option<&str>,
    ) -> IndexEntry {
        IndexEntry::Image {
            pushed: pushed.clone(),
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
            annotations: BTreeMap::new(),
        }
    }

    fn descriptor(&self) -> Value {
        match self {
            IndexEntry::Image {
                pushed,
                os,
                architecture,
                variant,
                annotations,
            } => {
                let mut descriptor = pushed.manifest.to_json();
                let mut platform = json!({ "architecture": architecture, "os": os });
                if let Some(variant) = variant {
                    platform["variant"] = json!(variant);
                }
                descriptor["platform"] = platform;
                if !annotations.is_empty() {
                    descriptor["annotations"] = json!(annotations);
                }
                descriptor
            }
            IndexEntry::Attestation {
                pushed,
                subject_digest,
            } => {
                let mut descriptor = pushed.manifest.to_json();
                descriptor["platform"] = json!({ "architecture": "unknown", "os": "unknown" });
                descriptor["annotations"] = json!({
                    "vnd.docker.reference.digest": subject_digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                });
                descriptor
            }
        }
    }
}

/// Pushes an OCI image index or a Docker manifest list under `tag`. The
/// entries' manifests must already be in `repo`. `annotations` are the
/// index's own (written for both formats; distribution keeps them verbatim).
pub async fn push_index(
    reg: &Registry,
    repo: &str,
    tag: &str,
    format: Format,
    entries: Vec<IndexEntry>,
    annotations: BTreeMap<String, String>,
) -> PushedImage {
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": format.index_media_type(),
        "manifests": entries.iter().map(IndexEntry::descriptor).collect::<Vec<_>>(),
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    push_manifest_json(
        reg,
        repo,
        Some(tag),
        format.index_media_type(),
        &index,
        0,
        0,
    )
    .await
}

/// An artifact attached to an image, as signing and SBOM tools push one.
pub struct Attachment<'a> {
    /// `artifactType`; `None` leaves it out, as older tools do.
    pub artifact_type: Option<&'a str>,
    /// The media type of its one layer (the signature, SBOM or statement).
    pub layer_media_type: &'a str,
    /// The layer's annotations (e.g. `in-toto.io/predicate-type`).
    pub layer_annotations: Value,
}

/// Pushes `artifact` by digest as an OCI manifest whose `subject` is
/// `subject`, and returns its descriptor as a referrers index lists it
/// (`artifactType` copied from the manifest, as registries and the tag
/// schema's clients do).
pub async fn push_artifact(
    reg: &Registry,
    repo: &str,
    subject: &PushedImage,
    artifact: &Attachment<'_>,
) -> Value {
    let config = reg.push_blob(repo, b"{}").await;
    // The layer's bytes name its type, so two artifacts of one type share it.
    let layer = reg
        .push_blob(repo, artifact.layer_media_type.as_bytes())
        .await;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": artifact.layer_media_type, "digest": layer.digest, "size": layer.size,
            "annotations": artifact.layer_annotations}],
        "subject": subject.manifest.to_json(),
    });
    if let Some(artifact_type) = artifact.artifact_type {
        manifest["artifactType"] = json!(artifact_type);
    }
    let body = serde_json::to_vec(&manifest).expect("serialize the artifact manifest");
    let digest = reg
        .push_manifest(repo, &sha256_digest(&body), OCI_MANIFEST, &body)
        .await;
    let mut descriptor = json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": body.len()});
    if let Some(artifact_type) = artifact.artifact_type {
        descriptor["artifactType"] = json!(artifact_type);
    }
    descriptor
}

/// Attaches `artifacts` to `subject` the way clients do on a registry
/// without the referrers API: each pushed with its `subject`, and an index
/// of them tagged `sha256-<hex>` (the referrers tag schema).
pub async fn attach_with_tag_schema(
    reg: &Registry,
    repo: &str,
    subject: &PushedImage,
    artifacts: &[Attachment<'_>],
) {
    let mut descriptors = Vec::new();
    for artifact in artifacts {
        descriptors.push(push_artifact(reg, repo, subject, artifact).await);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors});
    let body = serde_json::to_vec(&index).expect("serialize the referrers index");
    let tag = subject.digest.replacen(':', "-", 1);
    reg.push_manifest(repo, &tag, OCI_INDEX, &body).await;
}
