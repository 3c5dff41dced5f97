//! What each fuzz target does with its input: the bytes go in where a peer,
//! a tenant or a file would put them, through the same functions the
//! service calls. Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and by `tests/it/fuzz_regressions.rs`, which replays the seeds and every
//! input a target once failed on with the stable toolchain.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::Engine as _;
use clap::Parser as _;
use container_image_pusher::config::Config;
use container_image_pusher::credentials::pull_secrets::{self, PullSecrets};
use container_image_pusher::credentials::Keyring;
use container_image_pusher::discovery::files::FileSource;
use container_image_pusher::discovery::Metrics;
use container_image_pusher::discovery::{
    Container, Kind, KindSpec, PullConfig, Selection, Workload,
};
use container_image_pusher::reference;
use container_image_pusher::registry::manifest::{choose_platform, ImageConfig, Manifest};
use container_image_pusher::registry::referrers::{self, MAX_ARTIFACT_TYPE_LEN};
use container_image_pusher::registry::Platform;
use container_image_pusher::registry::{auth, client};
use container_image_pusher::telemetry::Telemetry;
use container_image_pusher::verify::artifact::{self as signature_artifact, Form, SignatureLayer};
use container_image_pusher::verify::certificate::{self, CertificatePolicy, SubjectMatch};
use container_image_pusher::verify::policy::Policy;
use container_image_pusher::verify::signature::PublicKey;
use container_image_pusher::verify::{attestation, bundle, payload, tlog};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use sha2::Digest as _;

/// What a fuzz target does with one input.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its `fuzz_targets/` file and of its
/// `corpus/` and `regressions/` directories).
pub const TARGETS: &[(&str, Target)] = &[
    ("reference", reference),
    ("manifest", manifest),
    ("challenge", challenge),
    ("token", token),
    ("retry_after", retry_after),
    ("keyring", keyring),
    ("manifests_file", manifests_file),
    ("remote_write_config", remote_write_config),
    ("artifact", artifact),
    ("receiver_refusal", receiver_refusal),
    ("signature_payload", signature_payload),
    ("signature_bundle", signature_bundle),
    ("signature_attestation", signature_attestation),
    ("transparency_log", transparency_log),
    ("signature_certificate", signature_certificate),
    ("signature_key", signature_key),
    ("tag", tag),
    ("disk_cache", disk_cache),
];

/// An image as a pod spec names it.
pub fn reference(data: &[u8]) {
    let Ok(image) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = reference::parse(image) else {
        return;
    };
    // What the resolver asks the registry for.
    let _ = (parsed.resolve_registry(), parsed.repository(), parsed.tag());
    let pinned = reference::with_digest(&parsed, &format!("sha256:{}", "0".repeat(64)));
    let _ = pinned.whole();
}

/// A manifest, index or image config, and the digests a registry names:
/// the first line is a `Docker-Content-Digest`, the rest the body sent for it.
pub fn manifest(data: &[u8]) {
    let (digest, body) = split_at_newline(data);
    if let Ok(manifest) = Manifest::parse(body) {
        let descriptors = match &manifest {
            Manifest::Index { manifests, .. } => {
                for wanted in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                    let wanted: Platform = wanted.parse().expect("a valid platform");
                    let _ = choose_platform(manifests, &wanted);
                }
                manifests.iter().collect::<Vec<_>>()
            }
            Manifest::Image { config, layers, .. } => {
                std::iter::once(config).chain(layers).collect()
            }
        };
        // Digests named in a manifest are fetched next.
        for descriptor in descriptors {
            let _ = client::check_digest_syntax(&descriptor.digest);
        }
    }
    if let Ok(config) = ImageConfig::parse(body) {
        let _ = config.created_unix();
        let _ = config.labels();
    }
    let Ok(digest) = std::str::from_utf8(digest) else {
        return;
    };
    if client::check_digest_syntax(digest).is_ok() && client::verify(body, digest).is_ok() {
        let sha256 = format!("sha256:{}", hex(&sha2::Sha256::digest(body)));
        let sha512 = format!("sha512:{}", hex(&sha2::Sha512::digest(body)));
        assert!(
            digest == sha256 || digest == sha512,
            "content was accepted for {digest:?}, which is not its digest ({sha256})"
        );
    }
}

/// A registry's `WWW-Authenticate`.
pub fn challenge(data: &[u8]) {
    let Some(headers) = header(WWW_AUTHENTICATE, data) else {
        return;
    };
    let _ = auth::parse_challenge(&headers);
    let _ = auth::challenge_error(&headers);
}

/// A token server's answer.
pub fn token(data: &[u8]) {
    let _ = auth::token_from_answer(data);
}

/// A registry's or a remote-write receiver's `Retry-After` (both read it
/// with the same function).
pub fn retry_after(data: &[u8]) {
    let Some(headers) = header(RETRY_AFTER, data) else {
        return;
    };
    let _ = container_image_pusher::http::retry_after(&headers);
}

/// A remote-write receiver's 400: the first line is its written count
/// (`X-Prometheus-Remote-Write-Samples-Written`), the rest its text.
pub fn receiver_refusal(data: &[u8]) {
    use container_image_pusher::remote_write::{written, Refusal};
    let (count, text) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let written = header(
        reqwest::header::HeaderName::from_static("x-prometheus-remote-write-samples-written"),
        count,
    )
    .and_then(|headers| written(&headers));
    let _ = Refusal::of(&String::from_utf8_lossy(text), written);
}

/// A docker config — a tenant's pull secret (`.dockerconfigjson` or
/// `.dockercfg`) or the static `--docker-config` — and an image to find a
/// login for: the first byte picks where the config goes, the last line is
/// the image, the rest the config.
pub fn keyring(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (config, image) = match rest.iter().rposition(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(image) = std::str::from_utf8(image) else {
        return;
    };
    let mut static_keyring = Keyring::default();
    let secret_type = match selector % 3 {
        0 => "kubernetes.io/dockerconfigjson",
        1 => "kubernetes.io/dockercfg",
        _ => {
            let _ = static_keyring.add_docker_config(config, "--docker-config");
            ""
        }
    };
    let store = PullSecrets::new(true, static_keyring);
    if !secret_type.is_empty() {
        let key = if selector % 3 == 0 {
            ".dockerconfigjson"
        } else {
            ".dockercfg"
        };
        let secret = serde_json::json!({
            "metadata": {"namespace": "tenant", "name": "regcred"},
            "type": secret_type,
            "data": {key: base64::engine::general_purpose::STANDARD.encode(config)},
        });
        let secret = serde_json::from_value(secret).expect("a valid Secret");
        store.replace_from_files(&[secret], &[]);
    }
    let workload = Workload {
        kind: Kind::Pod,
        namespace: "tenant".into(),
        name: "pod".into(),
        containers: vec![Container {
            name: "c".into(),
            image: image.into(),
            jsonpath: "{.spec.containers[0]}".into(),
            image_id: None,
            versions: None,
        }],
        pull: PullConfig {
            secrets: vec!["regcred".into()],
            service_account: "default".into(),
        },
        metadata_labels: Vec::new(),
    };
    let _ = store.scope(&workload);
    let _ = pull_secrets::logins(&store.keyring(&workload), image);
}

/// A file given to `--manifests`, read the way every snapshot reads it,
/// with the pull secrets it holds applied to its workloads' images.
pub fn manifests_file(data: &[u8]) {
    let file = ScratchFile::new("manifests.yaml", data);
    let store = PullSecrets::new(true, Keyring::default());
    // Two configured kinds, so custom objects are fuzzed too.
    let selection = Selection {
        kinds: ["argo-rollouts", "keda-scaledjob"]
            .iter()
            .map(|preset| KindSpec::parse(preset).expect("a preset"))
            .collect(),
        ..Selection::default()
    };
    let source = FileSource::new(
        vec![file.path.clone()],
        selection,
        metrics(),
        Default::default(),
    );
    let Ok(found) = runtime().block_on(source.snapshot()) else {
        return;
    };
    let pull_objects = &found.pull_objects;
    store.replace_from_files(&pull_objects.secrets, &pull_objects.accounts);
    for workload in &found.workloads {
        let keyring = store.keyring(workload);
        for container in &workload.containers {
            let _ = pull_secrets::logins(&keyring, &container.image);
        }
    }
}

/// A `--remote-write-config` file, read as start-up reads it (its defaults
/// from the flags).
pub fn remote_write_config(data: &[u8]) {
    let file = ScratchFile::new("endpoints.yaml", data);
    let config = Config::try_parse_from([
        "container-image-pusher".as_ref(),
        "--remote-write-config".as_ref(),
        file.path.as_os_str(),
    ])
    .expect("the flags parse");
    if let Ok(settings) = config.settings() {
        for endpoint in settings.endpoints {
            let _ = endpoint.validate();
        }
    }
}

/// (first line, rest); the whole input is the rest when there is no newline.
fn split_at_newline(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    }
}

fn header(name: reqwest::header::HeaderName, value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Some(headers)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One service's worth of metrics, shared by every input: a registry per
/// input would cost more than the parsing under test.
fn metrics() -> Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS
        .get_or_init(|| Metrics::new(&Telemetry::new().registry))
        .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The input as a file, under a fresh name each time (nothing may take it
/// for a file it has already read), removed when dropped.
struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    fn new(name: &str, data: &[u8]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Memory, not the disk, where there is one: a file per input.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "container-image-pusher-fuzz-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, data).expect("the input written to a scratch file");
        ScratchFile { path }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An artifact attached to an image (a referrer, a cosign tag's manifest):
/// what it is, from bytes the registry chose. Whatever they say, it is one
/// of the known kinds, and its type is a label value of bounded length.
pub fn artifact(data: &[u8]) {
    let Ok(artifact) = referrers::classify(data) else {
        return;
    };
    assert!(!artifact.kinds.is_empty(), "every artifact has a kind");
    let label = &artifact.artifact_type;
    assert!(
        label.is_empty()
            || label == referrers::INVALID_ARTIFACT_TYPE
            || label.len() <= MAX_ARTIFACT_TYPE_LEN,
        "artifact type label of {} bytes",
        label.len()
    );
    assert!(
        label.bytes().all(|b| b.is_ascii_graphic()),
        "artifact type label {label:?} is not printable ASCII"
    );
}

/// A cosign P-256 public key: the policy signatures are checked under.
const COSIGN_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQsUyT3IB4rvLr2nYZo4Y/F3EAs37
cGGa4eDk9IWNPUV4cRTwGXh+BEUoMluwQ1LTTlwhxe/CsOTwrBWAhI9nLA==
-----END PUBLIC KEY-----
";

fn key_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy {
        name: "ours".into(),
        keys: vec![PublicKey::from_pem(COSIGN_KEY.as_bytes()).expect("a valid key")],
        certificates: Vec::new(),
        attestations: vec![SLSA_PROVENANCE.into()],
        transparency_log: None,
    })
}

const SUBJECT: &str = "sha256:89031b8208db85de3d48d7b02f5e0e5ccaab00ac3d5e8ba91394f05f7abf0aeb";

/// A signature manifest (its layers) and a simple-signing payload or
/// in-toto statement, as a registry sends them; checked under a key.
pub fn signature_payload(data: &[u8]) {
    let _ = payload::simple_signing_digest(data);
    let _ = payload::statement_digests(data);
    if let Ok(layers) = signature_artifact::signature_layers(data) {
        assert!(layers.len() <= signature_artifact::MAX_LAYERS);
    }
    let layer = SignatureLayer {
        digest: String::new(),
        size: data.len() as u64,
        form: Form::SimpleSigning {
            signature: "MEUCIDBqjwKE/gJ+DQXJsjIvwALfXuwI+SMbSkJBe6wDRAxcAiEAitlW2TK11t3GUFDBs666NeqM+210GBcnHq4BFy573gY=".into(),
            certificate: None,
            chain: None,
        },
    };
    let _ = signature_artifact::check(&layer, data, &[SUBJECT], key_policy());
}

/// A Sigstore bundle, as a registry sends it; checked under a key.
pub fn signature_bundle(data: &[u8]) {
    if let Ok(parsed) = bundle::parse(data) {
        if let bundle::Content::Dsse { signatures, .. } = &parsed.content {
            assert!(signatures.len() <= bundle::MAX_ENVELOPE_SIGNATURES);
        }
    }
    let layer = SignatureLayer {
        digest: String::new(),
        size: data.len() as u64,
        form: Form::Bundle,
    };
    let _ = signature_artifact::check(&layer, data, &[SUBJECT], key_policy());
}

const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// A DSSE envelope (cosign's legacy `.att` layer) or a Sigstore bundle, as
/// a registry sends it; checked as an attestation under a key.
pub fn signature_attestation(data: &[u8]) {
    if let Ok(bundle::Content::Dsse { signatures, .. }) = bundle::envelope(data) {
        assert!(signatures.len() <= bundle::MAX_ENVELOPE_SIGNATURES);
    }
    let _ = payload::statement(data);
    for form in [
        Form::Envelope {
            certificate: None,
            chain: None,
        },
        Form::Bundle,
    ] {
        let layer = SignatureLayer {
            digest: String::new(),
            size: data.len() as u64,
            form,
        };
        let _ = attestation::check(&layer, data, &[SUBJECT], key_policy(), SLSA_PROVENANCE);
    }
}

/// A transparency-log entry of a bundle (`tlogEntries[]`): its body,
/// inclusion proof and checkpoint, checked under a key.
pub fn transparency_log(data: &[u8]) {
    let Ok(entry) = serde_json::from_slice::<tlog::LogEntry>(data) else {
        return;
    };
    let keys = &key_policy().keys;
    let _ = tlog::verify_entry(&entry, keys, b"{}", &[b"signature".to_vec()]);
    let _ = tlog::check(&[entry], keys, b"{}", &[]);
}

/// Certificates (PEM, or one DER document), checked as a chain against
/// themselves as roots.
pub fn signature_certificate(data: &[u8]) {
    let parsed =
        certificate::from_pem(data).or_else(|_| certificate::from_der_list(&[data.to_vec()]));
    let Ok(chain) = parsed else {
        return;
    };
    assert!(!chain.is_empty() && chain.len() <= certificate::MAX_CHAIN);
    let policy = CertificatePolicy {
        issuer: "https://issuer.example".into(),
        subject: SubjectMatch::Exact("dev@example.com".into()),
        roots: chain.last().cloned().into_iter().collect(),
    };
    let _ = certificate::trusted_key(&policy, &chain);
}

/// A public key file (PEM, or DER), and a signature checked with it.
pub fn signature_key(data: &[u8]) {
    let parsed = PublicKey::from_pem(data).or_else(|_| PublicKey::from_der(data));
    if let Ok(key) = parsed {
        let _ = key.verifies(b"payload", data);
    }
}

/// A registry's tag list, one tag a line; the first line is the running
/// tag. Each tag parses within its bounds, the order within a flavour is
/// antisymmetric and transitive, and the answer is one of the tags.
pub fn tag(data: &[u8]) {
    use container_image_pusher::versions::{compare, freshness, Overrides, Tag};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(running) = lines.next() else {
        return;
    };
    let tags: Vec<Tag> = lines.take(256).filter_map(Tag::parse).collect();
    for tag in &tags {
        assert!(tag.as_str().len() <= container_image_pusher::versions::tag::MAX_TAG_LENGTH);
        assert!((1..=4).contains(&tag.release().len()));
        for other in tags.iter().take(16) {
            let ab = compare::total_order(tag, other);
            assert_eq!(ab, compare::total_order(other, tag).reverse());
            assert_eq!(ab.is_eq(), tag.as_str() == other.as_str());
            for third in tags.iter().take(16) {
                let bc = compare::total_order(other, third);
                if ab.is_lt() && bc.is_lt() {
                    assert!(compare::total_order(tag, third).is_lt());
                }
            }
        }
    }
    if let Some(answer) = freshness(running, &tags, &Overrides::default()) {
        let listed = tags.iter().any(|t| t.as_str() == &*answer.latest);
        assert_eq!(answer.is_latest, answer.latest == answer.current || !listed);
        assert!(answer.is_latest || listed);
    }
}

/// The on-disk cache's file (`--cache-dir`), damaged or hostile: as is,
/// and framed under a valid header (so the checksum holds and the records
/// are reached). Either one refusal, or entries within the image limits
/// whose metadata writes back and reads again the same, and signature
/// verdicts that write back and read again the same.
pub fn disk_cache(data: &[u8]) {
    use container_image_pusher::image_facts::limits::ImageLimits;
    use container_image_pusher::registry::disk_cache::format;
    const SETTINGS: &str = "0123456789abcdef";
    let limits = ImageLimits::default();
    let _ = format::parse(data, SETTINGS, &limits);
    let framed = format::file(SETTINGS, data);
    let Ok(parsed) = format::parse(&framed, SETTINGS, &limits) else {
        return;
    };
    assert!(parsed.images.len() <= format::MAX_ENTRIES);
    assert!(parsed.verdicts.len() <= format::MAX_VERDICTS);
    for entry in parsed.images {
        let metadata = &entry.metadata;
        assert!(metadata.labels.len() <= limits.max_labels);
        assert!(metadata.annotations.len() <= limits.max_annotations);
        assert!(reference::check_digest(&metadata.digest).is_ok());
        let line = format::record(&entry.reference, entry.login, entry.used, metadata);
        if line.len() > format::MAX_RECORD_BYTES {
            continue;
        }
        let again = format::parse(&format::file(SETTINGS, &line), SETTINGS, &limits)
            .expect("a written record reads back");
        assert_eq!(&again.images[0].metadata, metadata);
    }
    for verdict in parsed.verdicts {
        assert!(reference::check_digest(&verdict.key.artifact).is_ok());
        let line = format::verdict_record(&verdict);
        let again = format::parse(&format::file(SETTINGS, &line), SETTINGS, &limits)
            .expect("a written verdict reads back");
        assert_eq!(again.verdicts, [verdict]);
    }
}
