//! The one table of label values: each distinct value once, named by a
//! 32-bit id that label sets keep instead of a pointer to it.
//!
//! At 100k containers a label set of `container_info` has ten values, and
//! most are values other series have too (namespaces, images, digests):
//! as ids they cost 4 bytes each instead of a 16-byte shared pointer. The
//! table is one per process and every sink reads it, so an encoder turns
//! an id into text by indexing, and a remote-write 2.0 request's own
//! symbol table is filled from it.
//!
//! The table keeps only what is in use: each id counts the label sets
//! that use it, and [`Table::prune`] frees the ids no label set uses any
//! more, for a later value to take. A label set holds its ids until it is
//! dropped, so an id is never freed, let alone given to another value,
//! while a series that names it can still be read: pruning cannot rename
//! a live series. The table also prunes itself after as many new values
//! as it held, so churn (pods come and go) cannot grow it however rarely
//! its owner prunes.
//!
//! Two locks, so that dropping a label set never waits for a reader: the
//! strings (read by encoders for a whole request, written when values are
//! added or freed) and the counts (written when a label set is made or
//! dropped). A dropped label set takes only the counts, so one dropped
//! while its thread reads the strings cannot deadlock.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use hashbrown::HashTable;

/// A label value's id in the [`Table`].
pub type Symbol = u32;

/// The id of "", which every table has and never frees.
pub const EMPTY: Symbol = 0;

/// New values after which the table prunes itself however long it is:
/// small enough to bound a small table, large enough to cost little.
const PRUNE_AFTER_MIN: usize = 4096;

/// A label value given to a label set: text to copy into the table if it
/// is new, or a string someone already shares (a workload's namespace, an
/// image), which the table then shares rather than copies.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    Str(&'a str),
    Shared(&'a Arc<str>),
}

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Str(s) => s,
            Text::Shared(s) => s,
        }
    }

    fn to_shared(self) -> Arc<str> {
        match self {
            Text::Str(s) => Arc::from(s),
            Text::Shared(s) => s.clone(),
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(value: &'a str) -> Self {
        Text::Str(value)
    }
}

impl<'a> From<&'a String> for Text<'a> {
    fn from(value: &'a String) -> Self {
        Text::Str(value)
    }
}

impl<'a> From<&'a Arc<str>> for Text<'a> {
    fn from(value: &'a Arc<str>) -> Self {
        Text::Shared(value)
    }
}

/// The values and their ids.
#[derive(Debug)]
struct Strings {
    /// By id; a freed id holds "" until a value takes it again.
    by_id: Vec<Arc<str>>,
    /// The ids by value: 4 bytes an entry (the value is `by_id`'s), where
    /// a map keyed by the value would take 20 more.
    index: HashTable<Symbol>,
    /// Keyed at random: values come from registries and clusters.
    hasher: RandomState,
    /// Freed ids, taken before the table grows.
    free: Vec<Symbol>,
    /// Values added since the last prune.
    added: usize,
    /// Values the last prune kept.
    kept: usize,
}

/// Label sets using each id, by id; a count that reached `u32::MAX` stays
/// there (its id is never freed).
#[derive(Debug, Default)]
struct Counts {
    by_id: Vec<u32>,
    /// Whether a count reached 0 since the last prune: when none did, a
    /// prune (every tick's) has nothing to free and costs nothing.
    released: bool,
}

/// The table of label values; see the module docs.
#[derive(Debug)]
pub struct Table {
    strings: RwLock<Strings>,
    counts: Mutex<Counts>,
}

impl Default for Table {
    fn default() -> Self {
        let hasher = RandomState::new();
        let mut index = HashTable::new();
        index.insert_unique(hasher.hash_one(""), EMPTY, |_| hasher.hash_one(""));
        Table {
            strings: RwLock::new(Strings {
                by_id: vec![Arc::from("")],
                index,
                hasher,
                free: Vec::new(),
                added: 0,
                kept: 0,
            }),
            counts: Mutex::new(Counts {
                by_id: vec![0],
                released: false,
            }),
        }
    }
}

/// The process' table, which every label set's ids are in.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

/// The strings, readable by id while this is held; see [`Table::read`].
pub struct Symbols<'t>(RwLockReadGuard<'t, Strings>);

impl Symbols<'_> {
    /// The value of `id`.
    ///
    /// # Panics
    /// If `id` was never given out: ids come only from this table.
    pub(crate) fn get(&self, id: Symbol) -> &str {
        &self.0.by_id[id as usize]
    }

    /// One more than the highest id given out so far.
    pub(crate) fn bound(&self) -> usize {
        self.0.by_id.len()
    }
}

impl Table {
    // Every update of either half is a few plain operations that cannot
    // panic halfway, so a lock left by a panic elsewhere is used as it is
    // (the project's one policy).
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The strings, for reading many values (one request's) under one lock.
    /// Hold it briefly and take no second one in the same thread: a label
    /// set being made waits for it.
    pub fn read(&self) -> Symbols<'_> {
        Symbols(self.strings.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The ids of `values`, each counted once more as used by the label set
    /// that will hold them (until [`Table::release`]).
    pub(crate) fn intern(&self, values: &[Text<'_>]) -> Box<[Symbol]> {
        let mut strings = self.strings.write().unwrap_or_else(PoisonError::into_inner);
        let mut counts = self.counts();
        values
            .iter()
            .map(|text| {
                let id = match strings.find(text.as_str()) {
                    Some(id) => id,
                    None => {
                        // Pruning after as many additions as the last prune
                        // kept costs O(1) per addition, and keeps the table
                        // within about twice what is in use. The ids this
                        // call took are already counted, so stay.
                        if strings.added >= PRUNE_AFTER_MIN.max(strings.kept) {
                            prune(&mut strings, &mut counts);
                        }
                        add(&mut strings, &mut counts, text.to_shared())
                    }
                };
                let count = &mut counts.by_id[id as usize];
                *count = count.saturating_add(1);
                id
            })
            .collect()
    }

    /// Counts `ids` as no longer used by one label set (dropped).
    pub(crate) fn release(&self, ids: &[Symbol]) {
        let mut counts = self.counts();
        for &id in ids {
            let count = &mut counts.by_id[id as usize];
            if *count != u32::MAX {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.released = true;
                }
            }
        }
    }

    /// Frees the ids no label set uses, for later values to take.
    pub fn prune(&self) {
        let mut strings = self.strings.write().unwrap_or_else(PoisonError::into_inner);
        let mut counts = self.counts();
        if counts.released || strings.added > 0 {
            prune(&mut strings, &mut counts);
        }
    }

    /// Distinct values held besides "".
    pub fn len(&self) -> usize {
        self.read().0.index.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `value` is in the table.
    #[cfg(test)]
    pub(crate) fn contains(&self, value: &str) -> bool {
        self.read().0.find(value).is_some()
    }
}

impl Strings {
    fn find(&self, value: &str) -> Option<Symbol> {
        let hash = self.hasher.hash_one(value);
        self.index
            .find(hash, |&id| &*self.by_id[id as usize] == value)
            .copied()
    }
}

/// Takes a free id for `value`, or a new one.
fn add(strings: &mut Strings, counts: &mut Counts, value: Arc<str>) -> Symbol {
    strings.added += 1;
    let id = match strings.free.pop() {
        Some(id) => {
            strings.by_id[id as usize] = value.clone();
            id
        }
        None => {
            // More than 4 billion distinct values in use cannot fit in
            // memory: each takes a label set's slot of 4 bytes at least.
            let id = Symbol::try_from(strings.by_id.len()).expect("fewer than 2^32 label values");
            strings.by_id.push(value.clone());
            counts.by_id.push(0);
            id
        }
    };
    let Strings {
        by_id,
        index,
        hasher,
        ..
    } = strings;
    index.insert_unique(hasher.hash_one(&*value), id, |&id| {
        hasher.hash_one(&*by_id[id as usize])
    });
    id
}

fn prune(strings: &mut Strings, counts: &mut Counts) {
    let Strings {
        by_id,
        index,
        hasher,
        free,
        ..
    } = strings;
    let empty = by_id[EMPTY as usize].clone();
    for (id, count) in counts.by_id.iter().enumerate().skip(1) {
        let value = &mut by_id[id];
        if *count == 0 && !value.is_empty() {
            let id = id as Symbol;
            if let Ok(entry) = index.find_entry(hasher.hash_one(&**value), |&x| x == id) {
                entry.remove();
            }
            *value = empty.clone();
            free.push(id);
        }
    }
    // The lowest ids first, so that the table's top ends up unused.
    strings.free.sort_unstable_by(|a, b| b.cmp(a));
    counts.released = false;
    strings.added = 0;
    strings.kept = strings.index.len();
    if strings.index.capacity() > 2 * strings.index.len() + 64 {
        let Strings {
            by_id,
            index,
            hasher,
            ..
        } = strings;
        index.shrink_to_fit(|&id| hasher.hash_one(&*by_id[id as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(table: &Table, ids: &[Symbol]) -> Vec<String> {
        let symbols = table.read();
        ids.iter().map(|&id| symbols.get(id).to_owned()).collect()
    }

    #[test]
    fn equal_values_share_one_id_and_empty_is_always_zero() {
        let table = Table::default();
        let a = table.intern(&["shop".into(), "".into(), "shop".into()]);
        assert_eq!(a[0], a[2]);
        assert_eq!(a[1], EMPTY);
        let shared: Arc<str> = Arc::from("shop");
        assert_eq!(table.intern(&[(&shared).into()])[0], a[0]);
        assert_eq!(table.len(), 1);
    }

    /// An id is freed only once no label set holds it, and a freed id
    /// taken by a new value leaves every held id naming what it named.
    #[test]
    fn a_pruned_and_reused_id_never_renames_a_held_one() {
        let table = Table::default();
        let kept = table.intern(&["kept".into(), "both".into()]);
        let gone = table.intern(&["gone".into(), "both".into()]);
        table.prune();
        assert_eq!(text(&table, &gone), ["gone", "both"], "still held");
        table.release(&gone);
        table.prune();
        assert_eq!(table.len(), 2, "kept and both");
        let new = table.intern(&["new".into()]);
        assert_eq!(new[0], gone[0], "the freed id is taken again");
        assert_eq!(text(&table, &kept), ["kept", "both"]);
        assert_eq!(text(&table, &new), ["new"]);
        // Held twice, released once: still held.
        let again = table.intern(&["kept".into()]);
        table.release(&again);
        table.prune();
        assert_eq!(text(&table, &kept), ["kept", "both"]);
    }

    #[test]
    fn churn_does_not_grow_the_table() {
        let table = Table::default();
        let kept: Vec<Box<[Symbol]>> = (0..10)
            .map(|i| table.intern(&[format!("kept-{i}").as_str().into()]))
            .collect();
        for i in 0..100_000 {
            // Used for a moment, then never again, and never pruned by hand.
            let ids = table.intern(&[format!("churn-{i}").as_str().into()]);
            table.release(&ids);
        }
        assert!(
            table.len() <= kept.len() + PRUNE_AFTER_MIN + 1,
            "{} values held",
            table.len()
        );
        assert!(table.read().bound() <= 1 + kept.len() + PRUNE_AFTER_MIN + 1);
        for (i, ids) in kept.iter().enumerate() {
            assert_eq!(text(&table, ids), [format!("kept-{i}")]);
        }
    }
}
