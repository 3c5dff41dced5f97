//! Base images: what an image says it was built on
//! (`org.opencontainers.image.base.name` and `.base.digest`, written by
//! buildah, ko, Jib and Docker's official images), and whether that base's
//! tag has moved since.
//!
//! The base tag is resolved with the resolver's own tag cache: one HEAD per
//! base tag per `--cache-duration`, however many images share the base. Its
//! digest is compared with `base.digest` as they are: a multi-arch base is
//! named by its index digest, which is what the tag's HEAD answers. When
//! the tag has moved, the image it points at now is read once (its
//! metadata is cached by digest like any image's) for its `created` time:
//! about when the base moved.

use crate::image_facts::limits::TRUNCATED;
use crate::image_facts::supply_chain::BaseImage;
use crate::image_facts::Pairs;
use crate::reference::check_digest;

pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The base `annotations` declare, if any. A name cut by the annotation
/// limits is not a name, so it is left out.
pub fn declared(annotations: &Pairs) -> Option<BaseImage> {
    let name = annotations.get(BASE_NAME)?.trim();
    if name.is_empty() || name.ends_with(TRUNCATED) {
        return None;
    }
    let digest = annotations
        .get(BASE_DIGEST)
        .map(|d| d.trim())
        .filter(|d| check_digest(d).is_ok())
        .map(str::to_owned);
    Some(BaseImage {
        name: name.to_owned(),
        digest,
        outdated: None,
        current_created: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> Pairs {
        let map: std::collections::BTreeMap<String, String> = (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.into()
    }

    #[test]
    fn the_declared_base_with_a_usable_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            declared(&annotations(&[
                (BASE_NAME, "docker.io/library/alpine:3.20"),
                (BASE_DIGEST, &digest)
            ])),
            Some(BaseImage {
                name: "docker.io/library/alpine:3.20".into(),
                digest: Some(digest),
                outdated: None,
                current_created: None
            })
        );
        let no_digest = declared(&annotations(&[
            (BASE_NAME, "alpine"),
            (BASE_DIGEST, "sha256:short"),
        ]))
        .unwrap();
        assert_eq!(no_digest.digest, None);
        assert_eq!(declared(&annotations(&[(BASE_DIGEST, "x")])), None);
        assert_eq!(declared(&annotations(&[(BASE_NAME, "")])), None);
        let cut = format!("registry.example/{}{TRUNCATED}", "a".repeat(40));
        assert_eq!(declared(&annotations(&[(BASE_NAME, &cut)])), None);
    }
}
