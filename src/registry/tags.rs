//! A repository's tags (`GET /v2/<name>/tags/list`), read page by page.
//!
//! Registries paginate with `n` and `last` and say where the next page is
//! with `Link` (distribution does; Harbor, GitLab and others need it for
//! long lists). Everything about a tag list is the registry's to choose, so:
//! - at most [`MAX_TAG_PAGES`] pages of [`TAG_PAGE_SIZE`] tags are read; a
//!   longer list is incomplete, and a `Link` that leads back to a page
//!   already read ends it as incomplete too (a loop);
//! - a `Link` is only followed within the same repository on the same host
//!   (see `client::next_page`): credentials never follow it elsewhere;
//! - for versions, only tags that read as versions are kept, parsed
//!   ([`Tag`], tags longer than 128 characters are not), at most
//!   [`MAX_VERSION_TAGS`] per repository; the cache of parsed lists is
//!   bounded by the total number of tags it holds ([`MAX_CACHED_TAGS`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use oci_client::Reference;
use serde::Deserialize;
use tracing::debug;

use super::client::RegistryClient;
use super::expiry::{AtStamp, Stamped};
use super::keys::{Key, Keys};
use super::{ErrorClass, ImageMetadata, ResolveError, Resolver, Ttl};
use crate::credentials::Login;
use crate::glob::Glob;
use crate::image_facts::VersionInfo;
use crate::reference;
use crate::versions::{Overrides, Tag};

/// Tags asked for per page.
pub const TAG_PAGE_SIZE: usize = 1000;
/// Pages of one tag list read before it is taken for incomplete.
pub const MAX_TAG_PAGES: usize = 20;
/// Version tags kept per repository; a list with more is incomplete.
pub const MAX_VERSION_TAGS: usize = 20_000;
/// Tags held by the cache of parsed lists, all repositories together
/// (each about 80 bytes): bounds its memory near 80 MB whatever registries
/// send.
pub const MAX_CACHED_TAGS: u64 = 1_000_000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// How a listing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Every page was read.
    Complete,
    /// The bounds or a loop stopped the reading first.
    Incomplete,
}

/// Reads `pinned`'s repository's tag list, handing each tag to `each`
/// until it answers `false` (then the list is incomplete).
pub(crate) async fn list(
    client: &RegistryClient,
    pinned: &Reference,
    credential: Option<&Login>,
    mut each: impl FnMut(&str) -> bool,
) -> Result<Listed, ResolveError> {
    let mut path = Some(format!("tags/list?n={TAG_PAGE_SIZE}"));
    let mut read = HashSet::new();
    for _ in 0..MAX_TAG_PAGES {
        let Some(current) = path.take() else {
            return Ok(Listed::Complete);
        };
        if !read.insert(current.clone()) {
            debug!(image = %pinned, page = current, "tag list pages loop; read as incomplete");
            return Ok(Listed::Incomplete);
        }
        let page = client.get_page(pinned, current, None, credential).await?;
        let list = serde_json::from_slice::<TagList>(&page.body).map_err(|e| {
            ResolveError::new(
                ErrorClass::BadFormat,
                format!("{}: tag list: {e}", pinned.repository()),
            )
        })?;
        for tag in list.tags.unwrap_or_default() {
            if !each(&tag) {
                return Ok(Listed::Incomplete);
            }
        }
        path = page.next;
    }
    Ok(match path {
        None => Listed::Complete,
        Some(_) => Listed::Incomplete,
    })
}

/// What one listing of a repository keeps: its version tags, parsed, and
/// its attachment tags (cosign's `sha256-….sig`, the referrers tag
/// schema's), for the supply-chain lookups.
#[derive(Debug, Default)]
pub struct Listing {
    pub versions: Box<[Tag]>,
    /// Whether the whole list was read within [`MAX_VERSION_TAGS`]: an
    /// incomplete one may lack the newest release, so no version is told
    /// from it.
    pub versions_complete: bool,
    pub attachments: HashSet<String>,
    /// Whether every attachment tag is known (else they are asked for).
    pub attachments_complete: bool,
}

/// Attachment tags kept per repository.
const MAX_ATTACHMENT_TAGS: usize = 20_000;

/// Tag lists, one listing per repository and login per period, shared by
/// the version and the supply-chain lookups; and the version answers told
/// from them, so that a warm tick computes nothing.
pub(crate) struct TagLists {
    cache: Cache<Key, Result<Arc<Listing>, ResolveError>>,
    /// Which tags are attachment tags (see `referrers`).
    attachment: fn(&str) -> bool,
    /// (image, where its versions are looked up, login, overrides) → answer.
    answers: Cache<AnswerKey, Stamped<Option<Arc<VersionInfo>>>>,
    /// How long an answer is trusted: its listing's period.
    answer_valid: Duration,
    /// The strings the keys share with the resolver's.
    keys: Arc<Keys>,
}

/// (image, where its versions are looked up, login, overrides).
type AnswerKey = (Arc<str>, Arc<str>, u64, String);

/// Answers kept: one per running image and overrides.
const ANSWER_CAPACITY: u64 = 100_000;

impl TagLists {
    pub(crate) fn new(
        ok: Duration,
        err: Duration,
        attachment: fn(&str) -> bool,
        keys: Arc<Keys>,
    ) -> Self {
        TagLists {
            cache: Cache::builder()
                .max_capacity(MAX_CACHED_TAGS)
                .weigher(|_: &Key, v: &Result<Arc<Listing>, ResolveError>| {
                    let tags = v
                        .as_ref()
                        .map_or(0, |l| l.versions.len() + l.attachments.len());
                    u32::try_from(tags).unwrap_or(u32::MAX).max(1)
                })
                .expire_after(Ttl {
                    ok,
                    err,
                    idle: None,
                })
                .build(),
            attachment,
            answers: Cache::builder()
                .max_capacity(ANSWER_CAPACITY)
                .expire_after(AtStamp { idle: None })
                .build(),
            answer_valid: ok,
            keys,
        }
    }

    /// The listing of `reference`'s repository, from the cache or one
    /// paged `tags/list`.
    pub(crate) async fn listing(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        credential: Option<&Login>,
    ) -> Result<Arc<Listing>, ResolveError> {
        let key = self.keys.key(
            format_args!(
                "{}/{}",
                reference.resolve_registry(),
                reference.repository()
            ),
            credential,
        );
        self.cache
            .entry(key)
            .or_insert_with(async {
                let mut versions = Vec::new();
                let mut attachments = HashSet::new();
                let (mut versions_complete, mut attachments_complete) = (true, true);
                let listed = Box::pin(list(client, reference, credential, |tag| {
                    if (self.attachment)(tag) {
                        if attachments.len() < MAX_ATTACHMENT_TAGS {
                            attachments.insert(tag.to_owned());
                        } else {
                            attachments_complete = false;
                        }
                    } else if let Some(tag) = Tag::parse(tag) {
                        if versions.len() < MAX_VERSION_TAGS {
                            versions.push(tag);
                        } else {
                            versions_complete = false;
                        }
                    }
                    true
                }))
                .await?;
                if listed == Listed::Incomplete {
                    debug!(image = %reference, "tag list too long or looping; read as incomplete");
                    (versions_complete, attachments_complete) = (false, false);
                }
                if !versions_complete {
                    versions.clear();
                }
                let listing = Listing {
                    versions: versions.into_boxed_slice(),
                    versions_complete,
                    attachments,
                    attachments_complete,
                };
                Ok(Arc::new(listing))
            })
            .await
            .into_value()
    }
}

/// What `--versions` looks up, and for which repositories.
#[derive(Debug, Clone)]
pub struct VersionSettings {
    /// How long a repository's tag list is trusted.
    pub cache_duration: Duration,
    /// Repositories (`registry/repository`) looked up; all when empty.
    pub include: Vec<Glob>,
    /// Repositories never looked up, even when included.
    pub exclude: Vec<Glob>,
}

impl VersionSettings {
    fn allows(&self, repository: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(repository)))
            && !self.exclude.iter().any(|g| g.matches(repository))
    }
}

impl Resolver {
    /// Whether there is a newer release of the tag `image` names, among the
    /// tags of its repository (or of `lookup_in`, version-checker's
    /// `override-url`), tried with `logins` as [`Resolver::resolve`] does.
    /// `None` when versions are off, the repository is filtered out, the
    /// tag is not a version, or the list cannot be read in full. `running`
    /// is the image's own metadata when known: when it is the newest, its
    /// `created` is the answer's, with no request.
    pub async fn versions(
        &self,
        image: &str,
        lookup_in: Option<&str>,
        logins: &[&Login],
        overrides: &Overrides,
        running: Option<&ImageMetadata>,
    ) -> Option<Arc<VersionInfo>> {
        self.config.versions.as_ref()?;
        let lists = &self.tag_lists;
        let key = (
            lists.keys.of(image),
            lists.keys.of(lookup_in.unwrap_or_default()),
            logins.first().map_or(0, |l| l.id()),
            overrides.describe(),
        );
        lists
            .answers
            // Boxed: a listing and a resolution nest deep, and the
            // caller's future should not carry them inline.
            .get_with(key, async {
                let answer =
                    Box::pin(self.versions_uncached(image, lookup_in, logins, overrides, running))
                        .await
                        .map(Arc::new);
                Stamped::new(answer, Some(lists.answer_valid))
            })
            .await
            .used()
    }

    /// [`Resolver::versions`] without a request: `Some` when versions are
    /// off or the answer is cached, `None` when it has to be looked up.
    pub async fn known_versions(
        &self,
        image: &str,
        logins: &[&Login],
    ) -> Option<Option<Arc<VersionInfo>>> {
        if self.config.versions.is_none() {
            return Some(None);
        }
        let keys = &self.tag_lists.keys;
        let key = (
            keys.of(image),
            keys.of(""),
            logins.first().map_or(0, |l| l.id()),
            Overrides::default().describe(),
        );
        Some(self.tag_lists.answers.get(&key).await?.used())
    }

    async fn versions_uncached(
        &self,
        image: &str,
        lookup_in: Option<&str>,
        logins: &[&Login],
        overrides: &Overrides,
        metadata: Option<&ImageMetadata>,
    ) -> Option<VersionInfo> {
        let (settings, lists) = (self.config.versions.as_ref()?, &self.tag_lists);
        let running = reference::parse(image).ok()?;
        let tag = running.tag()?;
        let listed = match lookup_in {
            Some(other) => reference::parse(other).ok()?,
            None => running.clone(),
        };
        let repository = format!("{}/{}", listed.resolve_registry(), listed.repository());
        if !settings.allows(&repository) {
            return None;
        }
        let mut result = Err(None);
        for login in logins.iter().map(|l| Some(*l)).chain([None]) {
            match lists.listing(&self.client, &listed, login).await {
                Err(e) if matches!(e.class, ErrorClass::Unauthorized | ErrorClass::Forbidden) => {
                    result = Err(Some(e));
                }
                Ok(versions) => {
                    result = Ok(versions);
                    break;
                }
                Err(e) => {
                    result = Err(Some(e));
                    break;
                }
            }
        }
        let versions = match result {
            Ok(versions) if versions.versions_complete => versions,
            Ok(_) => return None,
            Err(e) => {
                debug!(image, repository, error = ?e, "cannot list the repository's tags");
                return None;
            }
        };
        let freshness = crate::versions::freshness(tag, &versions.versions, overrides)?;
        if let Some(metadata) = metadata.filter(|_| freshness.is_latest && lookup_in.is_none()) {
            return Some(VersionInfo {
                freshness,
                latest_created: metadata.created,
            });
        }
        let newest = format!("{repository}:{}", freshness.latest);
        // The newest release's config, through the metadata cache: once per digest.
        let latest_created = match Box::pin(self.resolve(&newest, logins)).await {
            Ok(metadata) => metadata.created,
            Err(e) => {
                debug!(image, newest, error = %e, "the newest release cannot be resolved");
                None
            }
        };
        Some(VersionInfo {
            freshness,
            latest_created,
        })
    }
}
