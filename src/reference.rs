//! Image references as written in pod specs, normalised the way the
//! container runtime reads them (`nginx` is `docker.io/library/nginx:latest`),
//! and the digests content is verified against. A leaf: credentials match
//! logins to references, the registry resolves them.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use oci_client::Reference;

/// Images are parsed per container at every tick, and oci-client parses
/// with a large regex whose per-thread match caches (a few MB each) pile up
/// when many threads parse at once: parsed references are remembered while
/// in use, and new ones are parsed one at a time.
static PARSED: LazyLock<moka::sync::Cache<String, Result<Reference, ReferenceError>>> =
    LazyLock::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(3600))
            .build()
    });
static PARSING: Mutex<()> = Mutex::new(());

/// Why an image string from a pod spec is no reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the image is empty")]
    Empty,
    #[error("{image:?} has leading or trailing whitespace")]
    Whitespace { image: String },
    /// oci-client's grammar refused it (its error is not cloneable, and
    /// parses are cached: kept as text).
    #[error("{image:?} is not a valid image reference: {reason}")]
    Grammar { image: String, reason: String },
    #[error("{image:?} is pinned to {digest}")]
    Digest { image: String, digest: DigestError },
}

/// A digest content cannot be verified against. Holds at most 80
/// characters of it: the text comes from a registry or a pod spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?}{more} is not a sha256 or sha512 digest (64 or 128 lowercase hex digits)", more = if *.truncated { "…" } else { "" })]
pub struct DigestError {
    shown: String,
    truncated: bool,
}

/// Whether `digest` is one content can be verified against: `sha256:` and
/// 64, or `sha512:` and 128, lowercase hex digits — the algorithms the OCI
/// digest grammar registers, with their encodings. Anything else (another
/// algorithm, upper case, a wrong length) could not be checked, so it is
/// refused rather than taken on trust.
pub fn check_digest(digest: &str) -> Result<(), DigestError> {
    let valid = match digest.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64 && is_lower_hex(hex),
        Some(("sha512", hex)) => hex.len() == 128 && is_lower_hex(hex),
        _ => false,
    };
    if valid {
        return Ok(());
    }
    let shown: String = digest.chars().take(80).collect();
    Err(DigestError {
        truncated: shown.len() < digest.len(),
        shown,
    })
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses an image string from a pod spec. Leading/trailing whitespace is an
/// error, as it is for the kubelet; so is an empty string, and so is a pin
/// to a digest that content cannot be verified against (the container
/// runtime refuses those too).
pub fn parse(image: &str) -> Result<Reference, ReferenceError> {
    if let Some(parsed) = PARSED.get(image) {
        return parsed;
    }
    let parsed = {
        let _one_at_a_time = PARSING.lock().unwrap_or_else(|e| e.into_inner());
        parse_uncached(image)
    };
    PARSED.insert(image.to_owned(), parsed.clone());
    parsed
}

fn parse_uncached(image: &str) -> Result<Reference, ReferenceError> {
    if image.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if image.trim() != image {
        return Err(ReferenceError::Whitespace {
            image: image.to_owned(),
        });
    }
    let reference = image
        .parse::<Reference>()
        .map_err(|e| ReferenceError::Grammar {
            image: image.to_owned(),
            reason: e.to_string(),
        })?;
    if let Some(digest) = reference.digest() {
        check_digest(digest).map_err(|digest| ReferenceError::Digest {
            image: image.to_owned(),
            digest,
        })?;
    }
    Ok(reference)
}

/// The same repository, pinned to `digest`.
pub fn with_digest(reference: &Reference, digest: &str) -> Reference {
    Reference::with_digest(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        digest.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(image: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(image).unwrap();
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(str::to_owned),
        )
    }

    #[test]
    fn docker_hub_shorthands() {
        assert_eq!(
            parts("nginx"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("nginx:1.27"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Some("1.27".into()),
                None
            )
        );
        assert_eq!(parts("bitnami/redis:7").1, "bitnami/redis");
        assert_eq!(parts("docker.io/library/nginx:1").1, "library/nginx");
    }

    #[test]
    fn registries_with_ports_and_paths() {
        assert_eq!(
            parts("127.0.0.1:5000/team/app:v2"),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("v2".into()),
                None
            )
        );
        assert_eq!(parts("cgr.dev/chainguard/static").0, "cgr.dev");
        assert_eq!(parts("localhost/app:1").0, "localhost");
    }

    #[test]
    fn digest_pinned_with_and_without_tag() {
        assert_eq!(
            parts(&format!("gcr.io/distroless/static@{DIGEST}"))
                .3
                .as_deref(),
            Some(DIGEST)
        );
        let (_, repo, tag, digest) = parts(&format!("gcr.io/distroless/static:nonroot@{DIGEST}"));
        assert_eq!(
            (repo.as_str(), tag.as_deref(), digest.as_deref()),
            ("distroless/static", Some("nonroot"), Some(DIGEST))
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "",
            " nginx",
            "nginx ",
            "Nginx:1",
            "nginx:",
            "nginx@sha256:abc",
            "nginx@evil:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
            "nginx@sha256:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
            "nginx@sha256:abababababababababababababababababababab",
            "nginx@sha512:abababababababababababababababababababababababababababababababab",
            "a//b",
            "registry:5000/app:tag:extra",
            "::",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn only_sha256_and_sha512_digests_of_the_right_shape() {
        let sha256 = format!("sha256:{}", "ab".repeat(32));
        let sha512 = format!("sha512:{}", "cd".repeat(64));
        assert_eq!(check_digest(&sha256), Ok(()));
        assert_eq!(check_digest(&sha512), Ok(()));
        for bad in [
            format!("evil:{}", "cd".repeat(32)),
            format!("blake3:{}", "ab".repeat(32)),
            format!("sha384:{}", "ab".repeat(48)),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}", "ab".repeat(64)),
            format!("sha512:{}", "ab".repeat(32)),
            format!("sha256:{}g", "a".repeat(63)),
            format!("SHA256:{}", "ab".repeat(32)),
            format!("sha256+x:{}", "ab".repeat(32)),
            format!(" sha256:{}", "ab".repeat(32)),
            "sha256:".to_owned(),
            "sha256".to_owned(),
            "sha256:../../v2/other/blobs".to_owned(),
            String::new(),
        ] {
            let err = check_digest(&bad).unwrap_err().to_string();
            assert!(
                err.contains("not a sha256 or sha512 digest"),
                "{bad}: {err}"
            );
        }
        let long = format!("evil:{}", "a".repeat(10_000));
        assert!(
            check_digest(&long).unwrap_err().to_string().len() < 200,
            "a registry's junk is not repeated whole"
        );
    }

    #[test]
    fn reference_errors_say_what_is_wrong_with_which_image() {
        assert_eq!(parse("").unwrap_err(), ReferenceError::Empty);
        assert!(matches!(
            parse(" nginx").unwrap_err(),
            ReferenceError::Whitespace { .. }
        ));
        let image = format!("nginx@sha256:{}", "AB".repeat(32));
        let pinned = parse(&image).unwrap_err();
        assert!(
            matches!(pinned, ReferenceError::Digest { .. })
                && pinned.to_string().contains("not a sha256 or sha512 digest"),
            "{pinned}"
        );
    }

    #[test]
    fn pinning_keeps_registry_and_repository() {
        let r = parse("127.0.0.1:5000/team/app:v2").unwrap();
        let pinned = with_digest(&r, DIGEST);
        assert_eq!(pinned.whole(), format!("127.0.0.1:5000/team/app@{DIGEST}"));
    }
}
