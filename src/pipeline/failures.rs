//! What the log says about images that cannot be resolved.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::credentials::Scope;
use crate::image_facts::{ErrorClass, Resolution};

/// How often the log sums up the images that still cannot be resolved.
const FAILURE_SUMMARY_EVERY: Duration = Duration::from_secs(600);

/// What the log has said about images that cannot be resolved. Failures
/// are cached and their metrics carry the rest, so a failure is logged
/// when it starts, when its class changes and when it ends, and all are
/// summed up every [`FAILURE_SUMMARY_EVERY`] while any lasts. Holds only
/// the failing images of the last snapshot.
#[derive(Default)]
pub(super) struct FailureLog {
    /// Class of each failing image, by credential scope.
    failing: HashMap<Scope, HashMap<String, ErrorClass>>,
    /// When failures were last summed up, or began; `None` while none fail.
    last_summary: Option<Instant>,
}

/// One thing [`FailureLog`] has to say.
#[derive(Debug, PartialEq)]
pub(super) enum FailureNote<'a> {
    Started {
        image: &'a str,
        class: ErrorClass,
        message: &'a str,
    },
    Changed {
        image: &'a str,
        previous: ErrorClass,
        class: ErrorClass,
        message: &'a str,
    },
    Ended {
        image: &'a str,
        previous: ErrorClass,
    },
    Summary {
        failing: usize,
        /// `class=count` pairs, in class order.
        by_class: String,
    },
}

impl FailureLog {
    /// Compares one snapshot's resolutions with the previous one's; images
    /// no longer in the inventory are forgotten silently.
    pub(super) fn update<'r>(
        &mut self,
        results: &'r [(Scope, String, Resolution)],
        now: Instant,
    ) -> Vec<FailureNote<'r>> {
        let mut notes = Vec::new();
        let mut failing: HashMap<Scope, HashMap<String, ErrorClass>> = HashMap::new();
        for (scope, image, resolution) in results {
            let before = self
                .failing
                .get(scope)
                .and_then(|images| images.get(image))
                .copied();
            match (resolution, before) {
                (Ok(_), None) => {}
                (Ok(_), Some(previous)) => notes.push(FailureNote::Ended { image, previous }),
                (Err(e), before) => {
                    match before {
                        None => notes.push(FailureNote::Started {
                            image,
                            class: e.class,
                            message: &e.message,
                        }),
                        Some(previous) if previous != e.class => notes.push(FailureNote::Changed {
                            image,
                            previous,
                            class: e.class,
                            message: &e.message,
                        }),
                        Some(_) => {}
                    }
                    failing
                        .entry(*scope)
                        .or_default()
                        .insert(image.clone(), e.class);
                }
            }
        }
        self.failing = failing;
        if self.failing.is_empty() {
            self.last_summary = None;
        } else {
            let last = *self.last_summary.get_or_insert(now);
            if now.saturating_duration_since(last) >= FAILURE_SUMMARY_EVERY {
                notes.push(self.summary());
                self.last_summary = Some(now);
            }
        }
        notes
    }

    fn summary(&self) -> FailureNote<'static> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for class in self.failing.values().flat_map(HashMap::values) {
            *counts.entry(class.as_str()).or_default() += 1;
        }
        FailureNote::Summary {
            failing: counts.values().sum(),
            by_class: counts
                .iter()
                .map(|(class, n)| format!("{class}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl FailureNote<'_> {
    pub(super) fn log(&self) {
        match self {
            FailureNote::Started {
                image,
                class,
                message,
            } => warn!(
                image,
                class = class.as_str(),
                error = message,
                "cannot resolve image; its containers get an empty digest (logged again when this changes)"
            ),
            FailureNote::Changed {
                image,
                previous,
                class,
                message,
            } => warn!(
                image,
                class = class.as_str(),
                previous = previous.as_str(),
                error = message,
                "image still cannot be resolved, for another reason"
            ),
            FailureNote::Ended { image, previous } => {
                info!(image, previous = previous.as_str(), "image resolves again")
            }
            FailureNote::Summary { failing, by_class } => warn!(
                failing,
                by_class = by_class.as_str(),
                "images still cannot be resolved (see container_image_resolve_error)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::image_facts::{ImageMetadata, ResolveError};

    fn failed(scope: u64, image: &str, class: ErrorClass) -> (Scope, String, Resolution) {
        let error = ResolveError {
            class,
            message: format!("{image} failed"),
        };
        (Scope::for_test(scope), image.to_owned(), Err(error))
    }

    fn resolved(scope: u64, image: &str) -> (Scope, String, Resolution) {
        let metadata = ImageMetadata {
            digest: "sha256:aa".into(),
            size: 1,
            created: None,
            labels: Default::default(),
            annotations: Default::default(),
            dropped: Default::default(),
            supply_chain: Default::default(),
            platform_digests: Vec::new(),
            pending: false,
        };
        (
            Scope::for_test(scope),
            image.to_owned(),
            Ok(Arc::new(metadata)),
        )
    }

    #[test]
    fn a_failure_is_logged_when_it_starts_changes_and_ends() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let first = [
            failed(0, "gone:1", ErrorClass::NotFound),
            resolved(0, "ok:1"),
        ];
        assert_eq!(
            log.update(&first, at(0)),
            [FailureNote::Started {
                image: "gone:1",
                class: ErrorClass::NotFound,
                message: "gone:1 failed"
            }]
        );
        for tick in 1..100 {
            assert_eq!(log.update(&first, at(tick)), [], "tick {tick}");
        }
        let changed = [
            failed(0, "gone:1", ErrorClass::Unauthorized),
            resolved(0, "ok:1"),
        ];
        assert_eq!(
            log.update(&changed, at(100)),
            [FailureNote::Changed {
                image: "gone:1",
                previous: ErrorClass::NotFound,
                class: ErrorClass::Unauthorized,
                message: "gone:1 failed"
            }]
        );
        let back = [resolved(0, "gone:1"), resolved(0, "ok:1")];
        assert_eq!(
            log.update(&back, at(101)),
            [FailureNote::Ended {
                image: "gone:1",
                previous: ErrorClass::Unauthorized
            }]
        );
        assert_eq!(log.update(&back, at(102)), []);
    }

    #[test]
    fn failures_are_summed_up_while_they_last() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        let failing = [
            failed(0, "a:1", ErrorClass::NotFound),
            failed(0, "b:1", ErrorClass::NotFound),
            failed(7, "a:1", ErrorClass::Unauthorized),
        ];
        assert_eq!(log.update(&failing, start).len(), 3);
        let every = FAILURE_SUMMARY_EVERY;
        assert_eq!(log.update(&failing, start + every / 2), []);
        let summary = FailureNote::Summary {
            failing: 3,
            by_class: "not_found=2 unauthorized=1".into(),
        };
        assert_eq!(log.update(&failing, start + every), [summary]);
        assert_eq!(log.update(&failing, start + every * 3 / 2), []);
        assert_eq!(log.update(&failing, start + every * 2).len(), 1);
        // Nothing failing: no summary, and the next failure starts afresh.
        assert_eq!(log.update(&[], start + every * 5), []);
        assert_eq!(log.update(&failing[..1], start + every * 6).len(), 1);
        assert_eq!(log.update(&failing[..1], start + every * 6 + every / 2), []);
    }

    #[test]
    fn images_that_left_the_inventory_are_forgotten() {
        let mut log = FailureLog::default();
        let now = Instant::now();
        let images: Vec<_> = (0..1000)
            .map(|i| failed(0, &format!("gone:{i}"), ErrorClass::NotFound))
            .collect();
        assert_eq!(log.update(&images, now).len(), 1000);
        let one = [failed(0, "other:1", ErrorClass::NotFound)];
        assert_eq!(log.update(&one, now).len(), 1);
        assert_eq!(log.failing.values().map(HashMap::len).sum::<usize>(), 1);
        // Back in the inventory, still failing: it starts again.
        assert_eq!(log.update(&images[..1], now).len(), 1);
    }

    #[test]
    fn each_credential_scope_is_its_own_failure() {
        let mut log = FailureLog::default();
        let now = Instant::now();
        let both = [
            failed(1, "private:1", ErrorClass::Unauthorized),
            resolved(2, "private:1"),
        ];
        assert_eq!(log.update(&both, now).len(), 1);
        assert_eq!(log.update(&both, now), []);
        let swapped = [
            resolved(1, "private:1"),
            failed(2, "private:1", ErrorClass::Unauthorized),
        ];
        let notes = log.update(&swapped, now);
        assert!(
            matches!(
                notes[..],
                [FailureNote::Ended { .. }, FailureNote::Started { .. }]
            ),
            "{notes:?}"
        );
    }
}
