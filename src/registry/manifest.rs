//! The registry documents we read — manifests, indexes and image configs —
//! and the choice of one platform from a multi-arch index. Pure functions
//! over bytes, so every rule is unit-tested without a registry.
//!
//! OCI (`application/vnd.oci.image.*`) and Docker schema 2
//! (`application/vnd.docker.distribution.manifest.*`) share one JSON shape,
//! so one set of types reads both.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What we ask registries for. Schema 1 is accepted only to say clearly
/// that it is not supported, instead of a confusing 404.
pub const ACCEPTED: &[&str] = &[
    OCI_INDEX,
    DOCKER_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
];

/// Largest manifest or config we parse; real ones are a few KiB.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Why a document a registry sent cannot be read. The registry is named by
/// the caller, which knows the reference.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("manifest of {size} bytes is larger than the {MAX_DOCUMENT_BYTES} bytes allowed")]
    TooLarge { size: usize },
    #[error("manifest is not valid JSON: {0}")]
    ManifestJson(#[source] serde_json::Error),
    #[error("Docker schema 1 manifests are not supported (deprecated since 2017); push the image again with a current client")]
    Schema1,
    #[error("manifest of media type {media_type:?} is neither an image nor an index")]
    NeitherImageNorIndex { media_type: String },
    #[error("image config is not valid JSON: {0}")]
    ConfigJson(#[source] serde_json::Error),
}

/// A `--platform` that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a platform like linux/amd64 or linux/arm64/v8")]
pub struct PlatformError {
    given: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A parsed manifest document.
#[derive(Debug)]
pub enum Manifest {
    Index {
        manifests: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    },
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    },
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, DocumentError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge { size: bytes.len() });
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(DocumentError::ManifestJson)?;
        if raw.schema_version == Some(1) || raw.media_type.as_deref() == Some(DOCKER_SCHEMA1) {
            return Err(DocumentError::Schema1);
        }
        match (raw.manifests, raw.config) {
            (Some(manifests), _) => Ok(Manifest::Index {
                manifests,
                annotations: raw.annotations,
            }),
            (None, Some(config)) => Ok(Manifest::Image {
                config,
                layers: raw.layers.unwrap_or_default(),
                annotations: raw.annotations,
            }),
            (None, None) => Err(DocumentError::NeitherImageNorIndex {
                media_type: raw.media_type.unwrap_or_default(),
            }),
        }
    }
}

/// The part of an image config the series need.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfig {
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, DocumentError> {
        serde_json::from_slice(bytes).map_err(DocumentError::ConfigJson)
    }

    /// Unix seconds of `created`. Images built reproducibly often carry the
    /// epoch or Go's zero time (year 1): the latter means "unknown", and so
    /// does an unparsable value; neither is a real creation date.
    pub fn created_unix(&self) -> Option<i64> {
        let created = chrono::DateTime::parse_from_rfc3339(self.created.as_deref()?).ok()?;
        let seconds = created.timestamp();
        (seconds
            > chrono::DateTime::parse_from_rfc3339("0001-01-02T00:00:00Z")
                .ok()?
                .timestamp())
        .then_some(seconds)
    }

    pub fn labels(self) -> BTreeMap<String, String> {
        self.config.and_then(|c| c.labels).unwrap_or_default()
    }
}

/// A platform as `--platform` takes it: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.into(),
                    architecture: arch.into(),
                    variant: Some(variant.into()),
                })
            }
            _ => Err(PlatformError {
                given: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Whether an index entry runs on this platform. A variant the user left
    /// out matches any; the implied default variants (arm64 → v8, arm → v7)
    /// match an entry that leaves them out, as containerd's matcher does.
    fn matches(&self, entry: &DescriptorPlatform) -> bool {
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        let Some(wanted) = &self.variant else {
            return true;
        };
        let default_variant = match self.architecture.as_str() {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        };
        let have = entry.variant.as_deref().or(default_variant);
        have == Some(wanted.as_str())
    }
}

/// Whether an index entry is a runnable image, not an attestation or
/// signature that tools like BuildKit put next to the images.
fn is_image(entry: &Descriptor) -> bool {
    let image_type = matches!(
        entry.media_type.as_str(),
        OCI_MANIFEST | DOCKER_MANIFEST | ""
    );
    let attestation = entry
        .annotations
        .get("vnd.docker.reference.type")
        .map(String::as_str)
        == Some("attestation-manifest");
    let unknown = entry
        .platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown");
    image_type && !attestation && !unknown
}

/// Picks the entry of an index to describe: the wanted platform, else
/// linux/amd64, else the first real image. `None` when the index holds no
/// image at all (only attestations, or nothing).
pub fn choose_platform<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Option<&'a Descriptor> {
    let images = || entries.iter().filter(|e| is_image(e));
    let matching =
        |p: &Platform| images().find(|e| e.platform.as_ref().is_some_and(|ep| p.matches(ep)));
    matching(wanted)
        .or_else(|| matching(&Platform::linux_amd64()))
        .or_else(|| images().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        serde_json::from_value(json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": 100,
            "platform": {"os": os, "architecture": arch, "variant": variant}
        }))
        .unwrap()
    }

    fn attestation(digest: &str) -> Descriptor {
        serde_json::from_value(json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": 100,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "sha256:x"}
        }))
        .unwrap()
    }

    fn pick<'a>(entries: &'a [Descriptor], platform: &str) -> Option<&'a str> {
        choose_platform(entries, &platform.parse().unwrap()).map(|d| d.digest.as_str())
    }

    #[test]
    fn exact_platform_wins() {
        let index = [
            entry("linux", "amd64", None, "amd"),
            entry("linux", "arm64", Some("v8"), "arm"),
        ];
        assert_eq!(pick(&index, "linux/amd64"), Some("amd"));
        assert_eq!(
            pick(&index, "linux/arm64"),
            Some("arm"),
            "no variant asked: any variant matches"
        );
        assert_eq!(pick(&index, "linux/arm64/v8"), Some("arm"));
    }

    #[test]
    fn implied_default_variants_match() {
        let index = [
            entry("linux", "amd64", None, "amd"),
            entry("linux", "arm64", None, "arm"),
        ];
        assert_eq!(pick(&index, "linux/arm64/v8"), Some("arm"));
        let index = [
            entry("linux", "arm", Some("v6"), "v6"),
            entry("linux", "arm", Some("v7"), "v7"),
        ];
        assert_eq!(pick(&index, "linux/arm/v7"), Some("v7"));
    }

    #[test]
    fn falls_back_to_amd64_then_first_image() {
        let index = [
            attestation("att"),
            entry("linux", "arm64", None, "arm"),
            entry("linux", "amd64", None, "amd"),
        ];
        assert_eq!(pick(&index, "linux/s390x"), Some("amd"));
        let index = [
            attestation("att"),
            entry("linux", "arm64", None, "arm"),
            entry("linux", "ppc64le", None, "ppc"),
        ];
        assert_eq!(
            pick(&index, "linux/s390x"),
            Some("arm"),
            "first real image, never the attestation"
        );
    }

    #[test]
    fn attestations_and_platformless_entries() {
        assert_eq!(pick(&[attestation("att")], "linux/amd64"), None);
        let no_platform: Descriptor =
            serde_json::from_value(json!({"mediaType": OCI_MANIFEST, "digest": "np", "size": 1}))
                .unwrap();
        assert_eq!(
            pick(&[attestation("att"), no_platform], "linux/amd64"),
            Some("np")
        );
        let nested_index: Descriptor =
            serde_json::from_value(json!({"mediaType": OCI_INDEX, "digest": "idx", "size": 1}))
                .unwrap();
        assert_eq!(pick(&[nested_index], "linux/amd64"), None);
    }

    #[test]
    fn parses_indexes_and_images_of_both_formats() {
        let index = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": "sha256:a", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}
        ]});
        assert!(matches!(
            Manifest::parse(index.to_string().as_bytes()),
            Ok(Manifest::Index { .. })
        ));
        let image = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:c", "size": 10},
            "layers": [{"mediaType": "x", "digest": "sha256:l", "size": 32}],
            "annotations": {"org.opencontainers.image.base.name": "cgr.dev/chainguard/static"}});
        let Ok(Manifest::Image {
            config,
            layers,
            annotations,
        }) = Manifest::parse(image.to_string().as_bytes())
        else {
            panic!("image manifest expected")
        };
        assert_eq!((config.size, layers[0].size), (10, 32));
        assert_eq!(
            annotations["org.opencontainers.image.base.name"],
            "cgr.dev/chainguard/static"
        );
    }

    #[test]
    fn rejects_schema1_garbage_and_huge_documents() {
        let schema1 = json!({"schemaVersion": 1, "name": "x", "fsLayers": []});
        let error = |bytes: &[u8]| Manifest::parse(bytes).unwrap_err().to_string();
        assert!(error(schema1.to_string().as_bytes()).contains("schema 1"));
        assert!(error(b"<html>").contains("not valid JSON"));
        assert!(error(b"{\"schemaVersion\": 2}").contains("neither"));
        let negative = json!({"config": {"digest": "sha256:c", "size": -1}});
        assert!(Manifest::parse(negative.to_string().as_bytes()).is_err());
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(error(&huge).contains("larger"));
    }

    #[test]
    fn config_created_and_labels() {
        let c = ImageConfig::parse(
            br#"{"created":"2024-01-02T03:04:05Z","config":{"Labels":{"a":"b"}}}"#,
        )
        .unwrap();
        assert_eq!(c.created_unix(), Some(1704164645));
        assert_eq!(c.labels()["a"], "b");
        for missing in [
            r#"{}"#,
            r#"{"created":"0001-01-01T00:00:00Z"}"#,
            r#"{"created":"yesterday"}"#,
            r#"{"config":{"Labels":null}}"#,
        ] {
            let c = ImageConfig::parse(missing.as_bytes()).unwrap();
            assert_eq!(c.created_unix(), None, "{missing}");
            assert!(c.labels().is_empty());
        }
        let epoch = ImageConfig::parse(br#"{"created":"1970-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(
            epoch.created_unix(),
            Some(0),
            "reproducible builds set the epoch: that is a real value"
        );
    }
}
