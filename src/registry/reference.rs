//! Image references as written in pod specs, normalised the way the
//! container runtime reads them (`nginx` is `docker.io/library/nginx:latest`).

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use oci_client::Reference;

/// Images are parsed per container at every tick, and oci-client parses
/// with a large regex whose per-thread match caches (a few MB each) pile up
/// when many threads parse at once: parsed references are remembered while
/// in use, and new ones are parsed one at a time.
static PARSED: LazyLock<moka::sync::Cache<String, Result<Reference, String>>> =
    LazyLock::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(3600))
            .build()
    });
static PARSING: Mutex<()> = Mutex::new(());

/// Parses an image string from a pod spec. Leading/trailing whitespace is an
/// error, as it is for the kubelet; so is an empty string, and so is a pin
/// to a digest that content cannot be verified against (the container
/// runtime refuses those too).
pub fn parse(image: &str) -> Result<Reference, String> {
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

fn parse_uncached(image: &str) -> Result<Reference, String> {
    if image.is_empty() {
        return Err("the image is empty".into());
    }
    if image.trim() != image {
        return Err(format!("{image:?} has leading or trailing whitespace"));
    }
    let reference = image
        .parse::<Reference>()
        .map_err(|e| format!("{image:?} is not a valid image reference: {e}"))?;
    if let Some(digest) = reference.digest() {
        super::manifest::check_digest(digest).map_err(|e| format!("{image:?} is pinned to {e}"))?;
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
    fn pinning_keeps_registry_and_repository() {
        let r = parse("127.0.0.1:5000/team/app:v2").unwrap();
        let pinned = with_digest(&r, DIGEST);
        assert_eq!(pinned.whole(), format!("127.0.0.1:5000/team/app@{DIGEST}"));
    }
}
