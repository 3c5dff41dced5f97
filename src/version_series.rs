//! The version freshness series of a snapshot, for the inventory:
//! `container_image_is_latest_version`, `_latest_version_created` and
//! `_versions_behind`.
//!
//! One set per image, joined to containers by `image` like
//! `container_image_resolve_error`. A container whose annotations override
//! how its versions are looked up gets a set of its own that also carries
//! its `namespace`, `name` (the workload) and `container`, so containers
//! sharing an image with different overrides each get their own answer
//! and the common case stays one set per image (see README, "Coming from
//! version-checker").

use std::collections::HashMap;
use std::sync::Arc;

use crate::image_facts::VersionInfo;
use crate::series::{CommonLabels, Family, LabelSet, Series, Text};

pub use crate::image_facts::Owner;

/// The families built here.
pub const FAMILIES: [Family; 3] = [
    Family::IsLatestVersion,
    Family::LatestVersionCreated,
    Family::VersionsBehind,
];

/// The levels of `container_image_versions_behind`, always all three.
pub const LEVELS: [&str; 3] = ["major", "minor", "patch"];

/// Series of the previous snapshot by answer, so an unchanged answer costs
/// a warm tick only pointer copies.
#[derive(Default)]
pub struct VersionSeries {
    cached: HashMap<(usize, Option<Owner>), Cached>,
}

/// An answer and the series built from it.
type Cached = (Arc<VersionInfo>, Vec<Series>);

impl VersionSeries {
    /// Appends the series of every answer to `out`; answers are given in a
    /// stable order by the caller.
    pub fn build<'a>(
        &mut self,
        common: &Arc<CommonLabels>,
        answers: impl IntoIterator<Item = (&'a str, Option<Owner>, &'a Arc<VersionInfo>)>,
        out: &mut Vec<Series>,
    ) {
        let mut cached = HashMap::with_capacity(self.cached.len());
        for (image, owner, info) in answers {
            let key = (Arc::as_ptr(info) as usize, owner);
            let entry = match self.cached.remove(&key) {
                Some(entry) if Arc::ptr_eq(&entry.0, info) => entry,
                _ => {
                    let series = series(common, image, key.1.as_ref(), info);
                    (info.clone(), series)
                }
            };
            out.extend(entry.1.iter().cloned());
            cached.insert(key, entry);
        }
        self.cached = cached;
    }
}

fn series(
    common: &Arc<CommonLabels>,
    image: &str,
    owner: Option<&Owner>,
    info: &VersionInfo,
) -> Vec<Series> {
    let image = Text::from(image);
    let (current, latest) = (
        Text::from(&info.freshness.current),
        Text::from(&info.freshness.latest),
    );
    let [namespace, name, container] = match owner {
        Some((ns, name, container)) => [ns, name, container].map(Text::from),
        None => [Text::Str(""); 3],
    };
    let mut out = Vec::with_capacity(5);
    let mut push = |family: Family, head: &[Text<'_>], value: f64| {
        let mut values = head.to_vec();
        values.extend([namespace, name, container]);
        out.push(Series {
            labels: LabelSet::new(family, common, &values),
            value,
        });
    };
    let is_latest = f64::from(u8::from(info.freshness.is_latest));
    push(
        Family::IsLatestVersion,
        &[image, current, latest],
        is_latest,
    );
    if let Some(created) = info.latest_created {
        push(
            Family::LatestVersionCreated,
            &[image, latest],
            created as f64,
        );
    }
    let behind = info.freshness.behind;
    for (level, count) in LEVELS
        .into_iter()
        .zip([behind.major, behind.minor, behind.patch])
    {
        push(Family::VersionsBehind, &[image, level.into()], count as f64);
    }
    out
}

/// An answer for tests of the series: `1.2.3` running, `2.0.0` out.
#[cfg(test)]
pub(crate) fn example() -> VersionInfo {
    use crate::versions::{Behind, Freshness};
    VersionInfo {
        freshness: Freshness {
            current: "1.2.3".into(),
            latest: "2.0.0".into(),
            is_latest: false,
            behind: Behind {
                major: 1,
                minor: 0,
                patch: 2,
            },
        },
        latest_created: Some(1_700_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::fixtures::{common, pairs};

    #[test]
    fn one_answer_makes_all_three_levels_and_an_owner_only_with_overrides() {
        let common = common("j", &[]);
        let info = Arc::new(example());
        let owner: Owner = ("ns".into(), "web".into(), "app".into());
        let mut out = Vec::new();
        let mut series = VersionSeries::default();
        let answers = [
            ("app:1.2.3", None, &info),
            ("app:1.2.3", Some(owner), &info),
        ];
        series.build(&common, answers.clone(), &mut out);
        assert_eq!(out.len(), 10);
        let text: Vec<Vec<(String, String)>> = out.iter().map(pairs).collect();
        assert_eq!(
            text[0],
            [
                ("__name__", "container_image_is_latest_version"),
                ("current_version", "1.2.3"),
                ("image", "app:1.2.3"),
                ("job", "j"),
                ("latest_version", "2.0.0"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        let levels: Vec<(&str, f64)> = text[2..5]
            .iter()
            .zip(&out[2..5])
            .map(|(labels, s)| {
                let level = labels.iter().find(|(n, _)| n == "level").unwrap();
                (level.1.as_str(), s.value)
            })
            .collect();
        assert_eq!(levels, [("major", 1.0), ("minor", 0.0), ("patch", 2.0)]);
        assert!(text[5].contains(&("container".to_owned(), "app".to_owned())));
        assert!(text[5].contains(&("namespace".to_owned(), "ns".to_owned())));
        // A warm tick reuses the label sets.
        let mut again = Vec::new();
        series.build(&common, answers, &mut again);
        assert!(out
            .iter()
            .zip(&again)
            .all(|(a, b)| a.labels.ptr_eq(&b.labels)));
    }
}
