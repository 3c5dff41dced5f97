//! Image references as written in pod specs, normalised the way the
//! container runtime reads them (`nginx` is `docker.io/library/nginx:latest`),
//! and the digests content is verified against. A leaf: credentials match
//! logins to references, the registry resolves them.

use std::sync::LazyLock;
use std::time::Duration;

use oci_client::Reference;

/// Images are parsed per credential scope at every tick: parsed references
/// are remembered while in use.
static PARSED: LazyLock<moka::sync::Cache<String, Result<Reference, ReferenceError>>> =
    LazyLock::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(3600))
            .build()
    });

/// The longest repository path the distribution spec allows.
const NAME_MAX: usize = 255;

/// Why an image string from a pod spec is no reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the image is empty")]
    Empty,
    #[error("{image:?} has leading or trailing whitespace")]
    Whitespace { image: String },
    #[error("{image:?} is not a valid image reference: {reason}")]
    Grammar { image: String, reason: &'static str },
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
    let parsed = parse_uncached(image);
    PARSED.insert(image.to_owned(), parsed.clone());
    parsed
}

/// The grammar of distribution's `reference` package (what the container
/// runtime accepts), read left to right in one pass: oci-client's regex
/// for it keeps a 2.6 MB match cache per thread that ever parsed.
fn parse_uncached(image: &str) -> Result<Reference, ReferenceError> {
    if image.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if image.trim() != image {
        return Err(ReferenceError::Whitespace {
            image: image.to_owned(),
        });
    }
    let grammar = |reason| ReferenceError::Grammar {
        image: image.to_owned(),
        reason,
    };
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        if !is_digest_shaped(digest) {
            return Err(grammar("the part after '@' is not ALGORITHM:HEX"));
        }
        check_digest(digest).map_err(|digest| ReferenceError::Digest {
            image: image.to_owned(),
            digest,
        })?;
    }
    // A ':' after the last '/' starts the tag; one before it is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains('/') => (&rest[..colon], Some(&rest[colon + 1..])),
        _ => (rest, None),
    };
    if tag.is_some_and(|tag| !is_tag(tag)) {
        return Err(grammar(
            "the tag is not 1 to 128 of A-Z, a-z, 0-9, '_', '.', '-', starting with a letter, digit or '_'",
        ));
    }
    // Docker Hub's shorthands: a first component that names no host (no
    // '.' or ':', not `localhost`) is part of a path on `docker.io`, where a
    // one-component path is an official image under `library/`.
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
        _ => ("docker.io", name),
    };
    if !is_host(registry) || !is_path(path) {
        return Err(grammar(
            "the name is not [HOST[:PORT]/]PATH, PATH being lowercase letters and digits in components separated by '/' and joined by '.', '_', '__' or dashes",
        ));
    }
    let registry = match registry {
        "index.docker.io" => "docker.io",
        other => other,
    };
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    if repository.len() > NAME_MAX {
        return Err(grammar("the repository path is longer than 255 characters"));
    }
    let (tag, digest) = (tag.map(str::to_owned), digest.map(str::to_owned));
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry.to_owned(), repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry.to_owned(), repository, digest),
        (tag, None) => Reference::with_tag(
            registry.to_owned(),
            repository,
            tag.unwrap_or_else(|| "latest".to_owned()),
        ),
    })
}

/// `host[:port]`: dot-separated components of letters, digits and inner
/// dashes, then an optional decimal port.
fn is_host(text: &str) -> bool {
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let component = |c: &str| {
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    host.split('.').all(component)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Path components of lowercase letters and digits, joined within a
/// component by one '.', one '_', '__' or any number of '-'.
fn is_path(text: &str) -> bool {
    text.split('/').all(|component| {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
            return false;
        }
        // The separator being read: counts of '.', '_' and '-'.
        let (mut dots, mut underscores, mut dashes) = (0usize, 0usize, 0usize);
        for b in bytes {
            match b {
                b'.' => dots += 1,
                b'_' => underscores += 1,
                b'-' => dashes += 1,
                b if alnum(b) => {
                    let valid = match (dots, underscores, dashes) {
                        (0, 0, _) | (1, 0, 0) => true,
                        (0, 1..=2, 0) => true,
                        _ => false,
                    };
                    if !valid {
                        return false;
                    }
                    (dots, underscores, dashes) = (0, 0, 0);
                }
                _ => return false,
            }
        }
        true
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(word)
        && bytes.len() <= 128
        && bytes.iter().all(|b| word(b) || matches!(b, b'.' | b'-'))
}

/// `algorithm:hex`, as loosely as the grammar has it; [`check_digest`]
/// then decides whether content can be verified against it.
fn is_digest_shaped(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
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

    /// The hand-written grammar accepts what oci-client's regex accepts,
    /// with the same parts, but for what the runtime refuses too: non-ASCII
    /// tags, upper case in a Docker Hub path, a host with '_', and digests
    /// that content cannot be verified against.
    #[test]
    fn the_grammar_agrees_with_oci_clients_regex() {
        let hosts = [
            "",
            "localhost/",
            "localhost:5000/",
            "a.b/",
            "A-1.b2:80/",
            "-a.b/",
            "a..b/",
            "index.docker.io/",
            "docker.io/",
            "Foo/",
            "a_b.c/",
            "a.b:/",
        ];
        let paths = [
            "x",
            "x/y",
            "a.b",
            "a..b",
            "a__b",
            "a___b",
            "a--b",
            "a-.b",
            "a_b/c-d/e.f",
            "A",
            "a/",
            "/a",
            "9",
            "a//b",
            "ab-",
        ];
        let tags = [
            "",
            ":1",
            ":v1.2-rc_3",
            ":_x",
            ":.x",
            ":-x",
            ":",
            ":a:b",
            ":é",
        ];
        let digests = [
            "".to_owned(),
            format!("@{DIGEST}"),
            "@sha256:short".to_owned(),
            format!("@sha512:{}", "ab".repeat(64)),
            format!("@x+y:{}", "ab".repeat(32)),
        ];
        let long = format!("{}:1", "a".repeat(256));
        let mut checked = 0;
        for host in hosts {
            for path in paths {
                for tag in tags {
                    for digest in &digests {
                        let image = format!("{host}{path}{tag}{digest}");
                        let ours = parse_uncached(&image).ok().map(|r| {
                            (
                                r.registry().to_owned(),
                                r.repository().to_owned(),
                                r.tag().map(str::to_owned),
                                r.digest().map(str::to_owned),
                            )
                        });
                        let theirs = image.parse::<Reference>().ok().map(|r| {
                            (
                                r.registry().to_owned(),
                                r.repository().to_owned(),
                                r.tag().map(str::to_owned),
                                r.digest().map(str::to_owned),
                            )
                        });
                        let refused_on_purpose = tag == ":é"
                            || host == "Foo/"
                            || host == "a_b.c/"
                            || path == "A"
                            || digest.contains("x+y");
                        if !refused_on_purpose {
                            assert_eq!(ours, theirs, "{image:?}");
                        } else {
                            assert!(ours.is_none() || ours == theirs, "{image:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 7000);
        assert!(parse_uncached(&long).is_err() && long.parse::<Reference>().is_err());
    }

    #[test]
    fn pinning_keeps_registry_and_repository() {
        let r = parse("127.0.0.1:5000/team/app:v2").unwrap();
        let pinned = with_digest(&r, DIGEST);
        assert_eq!(pinned.whole(), format!("127.0.0.1:5000/team/app@{DIGEST}"));
    }
}
