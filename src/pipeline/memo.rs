//! The last answer of each lookup, reused until a fact it used can have
//! changed: a warm tick asks the resolver only for new lookups and those
//! whose answer expired, and skips its caches for the rest.
//!
//! An answer is valid until the earliest expiry of the cached facts the
//! resolver used for it ([`crate::registry::expiry`]: a tag's digest, a
//! cached failure, what is attached, a version answer), exact rather than
//! guessed from now, and at most [`MAX_REUSE`]. Entries are kept in the
//! order they expire, so a tick finds the expired ones without walking the
//! others. An entry holds the ids of the lookup's logins: a changed pull
//! secret does not match them, so it is asked. An unchanged lookup is
//! found by what it holds already (its scope and shared image) and its
//! logins compared in place, so a warm tick builds no key. Lookups absent
//! from a snapshot are forgotten, so the memo holds no more than the
//! current lookups.
//! The pod's cloud login is not among those ids: it is asked for per lookup by
//! the resolver's caller, and what it can read expires with the facts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::{Login, Lookup, Scope};
use crate::image_facts::{Resolution, VersionInfo};
use crate::registry::Facts;

use super::Resolved;

/// Longest an answer is reused, even one whose facts never change (pinned
/// by digest, nothing attached looked up): the resolver's caches that keep
/// what is read (metadata, the on-disk cache's use order) are read again
/// well within their idle periods.
pub const MAX_REUSE: Duration = Duration::from_secs(3600);

/// (scope, image).
type Key = (Scope, Arc<str>);
/// A lookup asked: its scope and the ids of its logins in order.
type AskedKey = (Scope, Box<[u64]>);

struct Entry {
    /// The ids of the logins the answer was obtained with, in order.
    logins: Box<[u64]>,
    resolution: Resolution,
    versions: Option<Arc<VersionInfo>>,
    /// Its place in [`Memo::expiries`].
    expires: (Instant, u64),
    /// The last snapshot that had this lookup.
    seen: u64,
}

/// The answers of the last snapshots' lookups.
#[derive(Default)]
pub struct Memo {
    entries: HashMap<Key, Entry>,
    /// The answers that expired this snapshot, until their lookups are
    /// answered again: an equal answer keeps the old one's `Arc`s.
    expired: HashMap<Key, Answer>,
    /// (expiry, sequence) → key: the entries in the order they expire.
    expiries: BTreeMap<(Instant, u64), Key>,
    sequence: u64,
    snapshot: u64,
    /// The keys of the lookups asked this snapshot, by image.
    asked: HashMap<Arc<str>, Vec<AskedKey>>,
}

/// A lookup answered by the resolver, and until when its answer is valid.
pub type Timed = (Resolved, Option<Instant>);

/// What an entry answers.
type Answer = (Resolution, Option<Arc<VersionInfo>>);

impl Memo {
    /// Splits a snapshot's lookups into the answers reused (valid at `now`)
    /// and the lookups to ask the resolver. Only complete answers are
    /// reused: with anything less than [`Facts::All`] everything is asked.
    pub fn split(
        &mut self,
        lookups: Vec<Lookup>,
        facts: Facts,
        now: Instant,
    ) -> (Vec<Resolved>, Vec<Lookup>) {
        self.asked.clear();
        self.expired.clear();
        if facts != Facts::All {
            return (Vec::new(), lookups);
        }
        self.snapshot += 1;
        self.expire(now);
        let mut reused = Vec::new();
        let mut asked = Vec::new();
        for lookup in lookups {
            let key = (lookup.scope, lookup.image);
            let logins = || lookup.logins.iter().map(Login::id);
            match self.entries.get_mut(&key) {
                // Answered with other logins (a pull secret changed): asked,
                // and forgotten below as not seen.
                Some(entry) if entry.logins.iter().copied().eq(logins()) => {
                    entry.seen = self.snapshot;
                    let answer = (entry.resolution.clone(), entry.versions.clone());
                    // The pipeline's answers own their image (`Resolutions`
                    // keys by `String`): the one copy left per lookup.
                    reused.push((key.0, key.1.to_string(), answer.0, answer.1, false));
                }
                _ => {
                    let (scope, image) = key;
                    let keys = self.asked.entry(image.clone()).or_default();
                    keys.push((scope, logins().collect()));
                    asked.push(Lookup {
                        scope,
                        image,
                        logins: lookup.logins,
                    });
                }
            }
        }
        self.forget_absent();
        (reused, asked)
    }

    /// Keeps the complete answers of the lookups just asked, and returns
    /// every answer of the snapshot.
    pub fn record(
        &mut self,
        reused: Vec<Resolved>,
        asked: Vec<Timed>,
        now: Instant,
    ) -> Vec<Resolved> {
        let mut all = reused;
        all.reserve(asked.len());
        for (mut resolved, until) in asked {
            self.keep_if_equal(&mut resolved);
            let (scope, image, resolution, versions, left_out) = &resolved;
            let keys = self.asked.get_mut(image.as_str());
            let position = keys
                .as_ref()
                .and_then(|keys| keys.iter().position(|(s, _)| s == scope));
            if let (Some(keys), Some(position), false) = (keys, position, *left_out) {
                let (scope, logins) = keys.swap_remove(position);
                let until = until.map_or(now + MAX_REUSE, |u| u.min(now + MAX_REUSE));
                let answer = (resolution.clone(), versions.clone());
                let image = (self.asked.get_key_value(image.as_str())).map(|(k, _)| k.clone());
                if let Some(image) = image {
                    self.insert((scope, image), logins, answer, until);
                }
            }
            all.push(resolved);
        }
        self.asked.clear();
        self.expired.clear();
        all
    }

    /// Gives an expired lookup's new answer the old answer's `Arc`s when
    /// they say the same: a tag whose cache period ended, asked again and
    /// still at its digest, then leaves its containers' label sets (the
    /// inventory and the version series compare answers by address) and
    /// the sender's held set as they are, instead of making them again.
    fn keep_if_equal(&mut self, resolved: &mut Resolved) {
        let (scope, image, resolution, versions, _) = resolved;
        let Some((image, _)) = self.asked.get_key_value(image.as_str()) else {
            return;
        };
        let Some((old_resolution, old_versions)) = self.expired.remove(&(*scope, image.clone()))
        else {
            return;
        };
        if let (Ok(old), Ok(new)) = (&old_resolution, &*resolution) {
            if old == new {
                *resolution = old_resolution;
            }
        }
        if old_versions == *versions {
            *versions = old_versions;
        }
    }

    fn insert(
        &mut self,
        key: Key,
        logins: Box<[u64]>,
        (resolution, versions): (Resolution, Option<Arc<VersionInfo>>),
        until: Instant,
    ) {
        self.sequence += 1;
        let expires = (until, self.sequence);
        self.expiries.insert(expires, key.clone());
        let entry = Entry {
            logins,
            resolution,
            versions,
            expires,
            seen: self.snapshot,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.expiries.remove(&old.expires);
        }
    }

    /// Drops the entries whose answer is no longer valid at `now`: the
    /// first ones in expiry order, and no others.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(entry) = self.entries.remove(&key) {
                self.expired.insert(key, (entry.resolution, entry.versions));
            }
        }
    }

    /// Drops the entries of lookups the current snapshot does not have.
    fn forget_absent(&mut self) {
        let (snapshot, expiries) = (self.snapshot, &mut self.expiries);
        self.entries.retain(|_, entry| {
            let keep = entry.seen == snapshot;
            if !keep {
                expiries.remove(&entry.expires);
            }
            keep
        });
    }
}

#[cfg(test)]
#[path = "memo_tests.rs"]
mod tests;
