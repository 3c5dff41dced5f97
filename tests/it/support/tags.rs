//! One image under many tags, as version lookups see a repository.

use futures::StreamExt as _;

use super::registry::{push_image, ImageSpec, Registry, MANIFEST_ACCEPT, OCI_MANIFEST};

/// Pushes one image built at `created` to `repo` of `reg` and tags it with
/// every tag of `tags` (16 at a time).
pub async fn push_tags(reg: &Registry, repo: &str, created: &str, tags: &[impl AsRef<str> + Sync]) {
    let spec = ImageSpec::oci("linux", "amd64").created(created);
    let pushed = push_image(reg, repo, None, &spec).await;
    let body = reg
        .request(
            reqwest::Method::GET,
            &format!("/v2/{repo}/manifests/{}", pushed.digest),
        )
        .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
        .send()
        .await
        .expect("the registry answers")
        .bytes()
        .await
        .expect("a manifest");
    futures::stream::iter(tags)
        .for_each_concurrent(16, |tag| {
            let body = body.clone();
            async move {
                reg.push_manifest(repo, tag.as_ref(), OCI_MANIFEST, &body)
                    .await;
            }
        })
        .await;
}
