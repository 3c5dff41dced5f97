//! The optional on-disk cache (`--cache-dir`): the image metadata the
//! registries returned, by digest, so that a restarted container (an
//! `emptyDir` outlives it) starts warm instead of asking for every
//! manifest and config again.
//!
//! Only immutable facts are kept: metadata fetched by digest, under the
//! same key as the in-memory metadata cache (digest-pinned reference and
//! login id), so an image read with one tenant's pull secret is never
//! answered from disk for another; and signature verdicts, by image
//! digests, artifact digest and login, under the fingerprint of the
//! verification policies they were computed under (a verdict of other
//! policies is not loaded). Tags (mutable) and failures are not.
//!
//! The file keeps the name of its first format: a file of an older format
//! is found, refused as a whole with one warning, and replaced.
//!
//! Bounded: the file holds at most `--cache-dir-max-bytes`; when the
//! images do not all fit, the least recently used are left out (and
//! forgotten). A larger file is not read at all. A file that cannot be
//! read, is truncated, corrupted, of another version, written under other
//! settings or hostile is refused as a whole with one warning: it costs a
//! cold start, nothing more (see [`format`]).
//!
//! Written atomically (a temporary file in the same directory, fsynced,
//! then renamed) on a blocking thread, never within a tick: after the
//! first successful snapshot that fetched something new, then at most
//! every [`SAVE_INTERVAL`], and on shutdown.

pub mod format;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::ImageMetadata;
use crate::image_facts::limits::ImageLimits;
use crate::verify::verdict::Outcome;
use format::{VerdictEntry, VerdictKey};

/// The file's name in `--cache-dir` (that of the first format; the
/// version is in the header).
pub const FILE_NAME: &str = "image-metadata.v1";
/// How often the file is written at most while the service runs.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Default of `--cache-dir-max-bytes`: about 25k real images.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The in-memory metadata cache's key: digest-pinned reference, login id;
/// the reference the resolver's caches share (see [`DiskCache::share_keys`]).
pub type Key = (Arc<str>, u64);

/// Why the file was not loaded; logged once.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("it is larger than --cache-dir-max-bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("it cannot be read: {0}")]
    Read(#[source] io::Error),
    #[error("{0}")]
    Format(#[from] format::FormatError),
}

/// The on-disk cache: what was loaded and fetched since, with when each
/// image was last used.
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// A write is in progress: the next one waits for the next snapshot.
    saving: AtomicBool,
    /// Held while the file is written: one writer of the temporary file.
    writing: Mutex<()>,
    /// The last write failed and said so: the next failures are quiet.
    warned: AtomicBool,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Slot>,
    /// The current period of use; bumped at each write, so that what is
    /// used afterwards is more recent than everything written.
    clock: u64,
    /// Fetched something that is not on disk yet.
    dirty: bool,
    saved_at: Option<Instant>,
    /// Fingerprint of the settings the metadata was made under.
    settings: String,
    /// Signature verdicts by digest, under the current policies.
    verdicts: HashMap<VerdictKey, VerdictSlot>,
    /// Fingerprint of the verification policies.
    policies: String,
}

/// Per policy, per check, the outcome of one artifact.
pub type Outcomes = Arc<Vec<Vec<Outcome>>>;

struct VerdictSlot {
    outcomes: Outcomes,
    used: u64,
}

struct Slot {
    metadata: Arc<ImageMetadata>,
    used: u64,
}

impl fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl DiskCache {
    /// A cache in `dir`, empty until [`DiskCache::load`].
    pub fn new(dir: PathBuf, max_bytes: u64) -> Arc<Self> {
        Arc::new(DiskCache {
            dir,
            max_bytes,
            state: Mutex::default(),
            saving: AtomicBool::new(false),
            writing: Mutex::new(()),
            warned: AtomicBool::new(false),
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the file written under the same `settings` (a
    /// [`format::settings_fingerprint`]), each entry bounded by `limits`;
    /// logs what it loaded or why it refused the file, and returns how many
    /// images it loaded.
    /// Verdicts are loaded when computed under `policies` (a
    /// `verify::policy::fingerprint`), the others left out.
    pub fn load(&self, settings: String, policies: String, limits: &ImageLimits) -> usize {
        {
            let mut state = self.lock();
            state.settings = settings.clone();
            state.policies = policies.clone();
        }
        let path = self.path();
        let parsed = match self.read(&settings, limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                info!(path = %path.display(), "no disk cache yet; starting cold");
                return 0;
            }
            Err(e) => {
                warn!(path = %path.display(), reason = %e, "refusing the disk cache file; starting cold");
                return 0;
            }
        };
        let mut state = self.lock();
        let loaded = parsed.images.len();
        for entry in parsed.verdicts {
            if entry.policies != policies {
                continue;
            }
            state.clock = state.clock.max(entry.used.saturating_add(1));
            let slot = VerdictSlot {
                outcomes: Arc::new(entry.outcomes),
                used: entry.used,
            };
            state.verdicts.insert(entry.key, slot);
        }
        let verdicts = state.verdicts.len();
        for entry in parsed.images {
            state.clock = state.clock.max(entry.used.saturating_add(1));
            let slot = Slot {
                metadata: Arc::new(entry.metadata),
                used: entry.used,
            };
            state
                .entries
                .insert((entry.reference.into(), entry.login), slot);
        }
        info!(path = %path.display(), images = loaded, verdicts, "loaded image metadata from the disk cache");
        loaded
    }

    /// Makes the loaded images' keys the shared copies `intern` gives (the
    /// resolver's), so an image's reference is one allocation however many
    /// caches hold it.
    pub fn share_keys(&self, intern: impl Fn(&str) -> Arc<str>) {
        let mut state = self.lock();
        let entries = std::mem::take(&mut state.entries);
        state.entries = (entries.into_iter())
            .map(|((reference, login), slot)| ((intern(&reference), login), slot))
            .collect();
    }

    /// The keys of the images held.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.lock().entries.keys().cloned().collect()
    }

    /// The file's entries; `None` when there is no file yet.
    fn read(
        &self,
        settings: &str,
        limits: &ImageLimits,
    ) -> Result<Option<format::Parsed>, LoadError> {
        let file = match File::open(self.path()) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Read(e)),
        };
        let too_large = LoadError::TooLarge {
            limit: self.max_bytes,
        };
        if file.metadata().map_err(LoadError::Read)?.len() > self.max_bytes {
            return Err(too_large);
        }
        let mut bytes = Vec::new();
        // The file may grow after the check: never read past the bound.
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(LoadError::Read)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large);
        }
        Ok(Some(format::parse(&bytes, settings, limits)?))
    }

    /// The metadata cached under `key`, marked as used now.
    pub fn get(&self, key: &Key) -> Option<Arc<ImageMetadata>> {
        let mut state = self.lock();
        let clock = state.clock;
        let slot = state.entries.get_mut(key)?;
        slot.used = clock;
        Some(slot.metadata.clone())
    }

    /// Marks the image under `key` as used now, if it is cached.
    pub fn touch(&self, key: &Key) {
        let mut state = self.lock();
        let clock = state.clock;
        if let Some(slot) = state.entries.get_mut(key) {
            slot.used = clock;
        }
    }

    /// Remembers metadata just fetched from a registry.
    pub fn insert(&self, key: Key, metadata: Arc<ImageMetadata>) {
        let mut state = self.lock();
        let used = state.clock;
        state.entries.insert(key, Slot { metadata, used });
        state.dirty = true;
        if state.entries.len() > format::MAX_ENTRIES {
            forget_least_used(&mut state.entries, format::MAX_ENTRIES * 9 / 10);
        }
    }

    /// The verdict kept under `key`, marked as used now.
    pub fn verdict(&self, key: &VerdictKey) -> Option<Outcomes> {
        let mut state = self.lock();
        let clock = state.clock;
        let slot = state.verdicts.get_mut(key)?;
        slot.used = clock;
        Some(slot.outcomes.clone())
    }

    /// Remembers a verdict just computed under the current policies.
    pub fn insert_verdict(&self, key: VerdictKey, outcomes: Outcomes) {
        let mut state = self.lock();
        let used = state.clock;
        state.verdicts.insert(key, VerdictSlot { outcomes, used });
        state.dirty = true;
        if state.verdicts.len() > format::MAX_VERDICTS {
            let keep = format::MAX_VERDICTS * 9 / 10;
            let mut by_use: Vec<(u64, VerdictKey)> = (state.verdicts.iter())
                .map(|(k, v)| (v.used, k.clone()))
                .collect();
            by_use.sort_unstable_by(|a, b| b.cmp(a));
            for (_, key) in by_use.into_iter().skip(keep) {
                state.verdicts.remove(&key);
            }
        }
    }

    /// After a successful snapshot: writes the file in the background if
    /// something new was fetched and the last write is old enough.
    pub fn save_after_snapshot(self: &Arc<Self>) {
        {
            let state = self.lock();
            let due = state
                .saved_at
                .is_none_or(|at| at.elapsed() >= SAVE_INTERVAL);
            if !state.dirty || !due {
                return;
            }
        }
        self.save_in_background();
    }

    /// Writes the file in the background if something new was fetched,
    /// however recent the last write: after the background lookup of what
    /// a cold start's first snapshot left out, which learns most of what a
    /// restart would otherwise fetch again.
    pub fn save_in_background(self: &Arc<Self>) {
        if !self.lock().dirty || self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            cache.save_now();
            cache.saving.store(false, Ordering::Release);
        });
    }

    /// On shutdown: waits for a write in progress, then writes what is
    /// not on disk yet.
    pub async fn save(self: &Arc<Self>) {
        let cache = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            drop(cache.writing.lock().unwrap_or_else(|e| e.into_inner()));
            if cache.lock().dirty {
                cache.save_now();
            }
        })
        .await;
    }

    /// Writes the file, logging a failure once until a write succeeds.
    fn save_now(&self) {
        let path = self.path();
        match self.write() {
            Ok(images) => {
                debug!(path = %path.display(), images, "disk cache written");
                if self.warned.swap(false, Ordering::AcqRel) {
                    info!(path = %path.display(), "the disk cache is written again");
                }
            }
            Err(e) => {
                // Tried again after the next interval.
                self.lock().dirty = true;
                if !self.warned.swap(true, Ordering::AcqRel) {
                    warn!(path = %path.display(), error = %e, "cannot write the disk cache (--cache-dir); a restart will start cold");
                }
            }
        }
    }

    /// Writes the most recently used images that fit in the bound,
    /// forgets the others, and returns how many were written.
    pub fn write(&self) -> io::Result<usize> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let (settings, mut images, mut verdicts) = {
            let mut state = self.lock();
            state.clock = state.clock.saturating_add(1);
            state.dirty = false;
            state.saved_at = Some(Instant::now());
            let images: Vec<(Key, u64, Arc<ImageMetadata>)> = state
                .entries
                .iter()
                .map(|(key, slot)| (key.clone(), slot.used, slot.metadata.clone()))
                .collect();
            let verdicts: Vec<VerdictEntry> = (state.verdicts.iter())
                .map(|(key, slot)| VerdictEntry {
                    key: key.clone(),
                    policies: state.policies.clone(),
                    used: slot.used,
                    outcomes: slot.outcomes.to_vec(),
                })
                .collect();
            (state.settings.clone(), images, verdicts)
        };
        images.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        verdicts.sort_unstable_by(|a, b| b.used.cmp(&a.used).then_with(|| a.key.cmp(&b.key)));
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let omitted = match self.write_file(&temporary, &settings, &images, &verdicts) {
            Ok(omitted) => omitted,
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(e);
            }
        };
        std::fs::rename(&temporary, self.path())?;
        // The rename is durable once the directory is; best effort.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let mut state = self.lock();
        let (omitted, omitted_verdicts) = omitted;
        for &index in &omitted_verdicts {
            let entry = &verdicts[index];
            let slot = state.verdicts.get(&entry.key);
            if slot.is_some_and(|slot| slot.used <= entry.used) {
                state.verdicts.remove(&entry.key);
            }
        }
        for &index in &omitted {
            let (key, used, _) = &images[index];
            if state
                .entries
                .get(key)
                .is_some_and(|slot| slot.used <= *used)
            {
                state.entries.remove(key);
            }
        }
        Ok(images.len() - omitted.len())
    }

    /// Writes the header (with a placeholder checksum), then the records
    /// while they fit in the bound, then the real header; returns the
    /// indexes of the images and of the verdicts left out.
    fn write_file(
        &self,
        path: &Path,
        settings: &str,
        images: &[(Key, u64, Arc<ImageMetadata>)],
        verdicts: &[VerdictEntry],
    ) -> io::Result<(Vec<usize>, Vec<usize>)> {
        let mut file = io::BufWriter::new(File::create(path)?);
        let placeholder = format::header(settings, &[0; 32]);
        file.write_all(placeholder.as_bytes())?;
        let mut size = placeholder.len() as u64;
        let mut hasher = Sha256::new();
        let mut omitted = (Vec::new(), Vec::new());
        let lines = (images.iter())
            .map(|((reference, login), used, metadata)| {
                format::record(reference, *login, *used, metadata)
            })
            .enumerate()
            .map(|(index, line)| (index, line, false));
        let verdict_lines = (verdicts.iter().map(format::verdict_record))
            .enumerate()
            .map(|(index, line)| (index, line, true));
        for (index, line, verdict) in lines.chain(verdict_lines) {
            // A record the reader would refuse (labels full of escapes)
            // is left out rather than costing the whole file.
            let fits = size.saturating_add(line.len() as u64) <= self.max_bytes;
            if line.len() > format::MAX_RECORD_BYTES || !fits {
                match verdict {
                    false => omitted.0.push(index),
                    true => omitted.1.push(index),
                }
                continue;
            }
            size += line.len() as u64;
            hasher.update(&line);
            file.write_all(&line)?;
        }
        let header = format::header(settings, &hasher.finalize());
        let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        file.write_all(header.as_bytes())?;
        file.sync_all()?;
        Ok(omitted)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: each
        // update is one insert or one field.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the `keep` most recently used entries.
fn forget_least_used(entries: &mut HashMap<Key, Slot>, keep: usize) {
    let Some(excess) = entries.len().checked_sub(keep).filter(|&n| n > 0) else {
        return;
    };
    let mut by_use: Vec<(u64, Key)> = entries
        .iter()
        .map(|(key, slot)| (slot.used, key.clone()))
        .collect();
    by_use.select_nth_unstable_by_key(excess - 1, |(used, _)| *used);
    for (_, key) in &by_use[..excess] {
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verdict::Reason;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key(name: &str, login: u64) -> Key {
        (format!("registry.example/{name}@{DIGEST}").into(), login)
    }

    fn image() -> Arc<ImageMetadata> {
        let limits = ImageLimits::default();
        let labels = [("a".to_owned(), "b".to_owned())].into();
        Arc::new(ImageMetadata::bounded(
            DIGEST.into(),
            1,
            None,
            labels,
            Default::default(),
            &limits,
        ))
    }

    fn reopened(dir: &Path, max_bytes: u64) -> (Arc<DiskCache>, usize) {
        let cache = DiskCache::new(dir.to_owned(), max_bytes);
        let loaded = cache.load("s".into(), String::new(), &ImageLimits::default());
        (cache, loaded)
    }

    #[test]
    fn a_written_image_is_answered_after_a_restart_for_its_login_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, loaded) = reopened(dir.path(), DEFAULT_MAX_BYTES);
        assert_eq!(loaded, 0);
        cache.insert(key("a", 7), image());
        assert_eq!(cache.write().unwrap(), 1);
        let (cache, loaded) = reopened(dir.path(), DEFAULT_MAX_BYTES);
        assert_eq!(loaded, 1);
        assert_eq!(cache.get(&key("a", 7)).as_deref(), Some(&*image()));
        assert!(cache.get(&key("a", 0)).is_none(), "another login's image");
        let other_settings = DiskCache::new(dir.path().to_owned(), DEFAULT_MAX_BYTES);
        assert_eq!(
            other_settings.load("t".into(), String::new(), &ImageLimits::default()),
            0
        );
    }

    #[test]
    fn verdicts_are_answered_after_a_restart_under_the_same_policies_only() {
        let dir = tempfile::tempdir().unwrap();
        let policies = "0123456789abcdef0123456789abcdef";
        let open = |policies: &str| {
            let cache = DiskCache::new(dir.path().to_owned(), DEFAULT_MAX_BYTES);
            cache.load("s".into(), policies.into(), &ImageLimits::default());
            cache
        };
        let verdict = |login| VerdictKey {
            subjects: DIGEST.into(),
            artifact: DIGEST.into(),
            attestation: false,
            login,
        };
        let outcomes: Outcomes = Arc::new(vec![vec![Ok(())], vec![Err(Reason::Malformed)]]);
        let cache = open(policies);
        cache.insert_verdict(verdict(3), outcomes.clone());
        cache.write().unwrap();
        let cache = open(policies);
        assert_eq!(cache.verdict(&verdict(3)), Some(outcomes.clone()));
        assert_eq!(cache.verdict(&verdict(4)), None, "another login's verdict");
        // Another key or root: another fingerprint, nothing reused.
        let changed = open("ffffffffffffffffffffffffffffffff");
        assert_eq!(changed.verdict(&verdict(3)), None);
        // And what it writes holds none of the old policies' verdicts.
        changed.insert(key("a", 0), image());
        changed.write().unwrap();
        assert_eq!(open(policies).verdict(&verdict(3)), None);
    }

    #[test]
    fn the_least_recently_used_images_are_left_out_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let line = format::record(&key("a", 0).0, 0, 9, &image()).len() as u64;
        let header = format::header("s", &[0; 32]).len() as u64;
        let (cache, _) = reopened(dir.path(), header + 2 * line);
        cache.insert(key("a", 0), image());
        cache.write().unwrap();
        cache.insert(key("b", 0), image());
        assert_eq!(cache.write().unwrap(), 2);
        cache.insert(key("c", 0), image());
        cache.touch(&key("a", 0));
        // b was used longest ago: left out, and forgotten.
        assert_eq!(cache.write().unwrap(), 2);
        assert!(cache.get(&key("b", 0)).is_none());
        let (cache, loaded) = reopened(dir.path(), header + 2 * line);
        assert_eq!(loaded, 2);
        assert!(cache.get(&key("a", 0)).is_some());
        assert!(cache.get(&key("c", 0)).is_some());
    }

    #[test]
    fn a_file_over_the_bound_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = reopened(dir.path(), DEFAULT_MAX_BYTES);
        cache.insert(key("a", 0), image());
        cache.write().unwrap();
        let small = DiskCache::new(dir.path().to_owned(), 100);
        let refused = small.read("s", &ImageLimits::default()).unwrap_err();
        assert!(
            matches!(refused, LoadError::TooLarge { limit: 100 }),
            "{refused}"
        );
        assert_eq!(
            small.load("s".into(), String::new(), &ImageLimits::default()),
            0
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let (cache, loaded) = reopened(&file.join("cache"), DEFAULT_MAX_BYTES);
        assert_eq!(loaded, 0);
        cache.insert(key("a", 0), image());
        assert!(cache.write().is_err());
        cache.save_now();
        assert!(cache.lock().dirty, "tried again later");
    }

    #[test]
    fn concurrent_writes_leave_one_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = reopened(dir.path(), DEFAULT_MAX_BYTES);
        cache.insert(key("a", 0), image());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| cache.write().unwrap());
            }
        });
        assert_eq!(reopened(dir.path(), DEFAULT_MAX_BYTES).1, 1);
    }

    #[test]
    fn past_the_entry_cap_the_least_used_are_forgotten() {
        let mut entries = HashMap::new();
        for (i, used) in [5, 1, 3, 1, 4].into_iter().enumerate() {
            let slot = Slot {
                metadata: image(),
                used,
            };
            entries.insert(key(&format!("i{i}"), 0), slot);
        }
        forget_least_used(&mut entries, 3);
        let mut kept: Vec<u64> = entries.values().map(|s| s.used).collect();
        kept.sort_unstable();
        assert_eq!(kept, [3, 4, 5]);
    }
}
