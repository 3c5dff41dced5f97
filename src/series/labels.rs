//! Walking a label set's labels: sorted by name, the empty ones left out,
//! their values as text read from the table of values ([`Labels`]) or as
//! ids ([`RawLabels`], for an encoder with a table of its own).

use super::symbols::{self, Symbol, Symbols};
use super::{LabelSetData, Slot, NAME_LABEL};

/// The labels of a [`LabelSet`](super::LabelSet), in order: see [`LabelSet::iter`](super::LabelSet::iter).
pub struct Labels<'a> {
    pub(super) raw: RawLabels<'a>,
    pub(super) symbols: &'a Symbols<'a>,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.raw.next()?;
        Some((name, value.text(self.symbols)))
    }
}

/// A label's value as [`LabelSet::raw`](super::LabelSet::raw) gives it: an id in the table of
/// values, or text the label set holds itself (`__name__`, the common
/// labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Symbol(Symbol),
    Text(&'a str),
}

impl<'a> Value<'a> {
    /// The text, read from `symbols` if it is an id.
    pub fn text(self, symbols: &'a Symbols<'_>) -> &'a str {
        match self {
            Value::Symbol(id) => symbols.get(id),
            Value::Text(text) => text,
        }
    }

    fn is_empty(self) -> bool {
        match self {
            Value::Symbol(id) => id == symbols::EMPTY,
            Value::Text(text) => text.is_empty(),
        }
    }
}

/// The labels of a [`LabelSet`](super::LabelSet), in order, their values as ids where they
/// are in the table: see [`LabelSet::raw`](super::LabelSet::raw).
pub struct RawLabels<'a> {
    pub(super) data: &'a LabelSetData,
    pub(super) slots: std::iter::Peekable<std::slice::Iter<'a, Slot>>,
    /// Name and value ids, merged in name order with the slots.
    pub(super) extra: std::iter::Peekable<std::slice::ChunksExact<'a, Symbol>>,
    /// Where the extra labels' names are read.
    pub(super) symbols: &'a Symbols<'a>,
}

impl<'a> RawLabels<'a> {
    fn label(&self, slot: Slot) -> (&'a str, Value<'a>) {
        let data = self.data;
        match slot {
            Slot::Name => (NAME_LABEL, Value::Text(data.family.name())),
            Slot::Common(i) => {
                let (name, value) = &data.common.pairs[i];
                (name.as_str(), Value::Text(value.as_str()))
            }
            Slot::Value(i) => (data.family.label_names()[i], Value::Symbol(data.values[i])),
        }
    }
}

impl<'a> Iterator for RawLabels<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let slot = self.slots.peek().copied().copied();
            let slot = slot.map(|slot| self.label(slot));
            let symbols = self.symbols;
            let extra = self
                .extra
                .peek()
                .map(|pair| (symbols.get(pair[0]), Value::Symbol(pair[1])));
            let label = match (slot, extra) {
                (Some(s), Some(e)) if e.0 < s.0 => {
                    self.extra.next();
                    e
                }
                (Some(s), _) => {
                    self.slots.next();
                    s
                }
                (None, Some(e)) => {
                    self.extra.next();
                    e
                }
                (None, None) => return None,
            };
            if !label.1.is_empty() {
                return Some(label);
            }
        }
    }
}
