//! Unit tests of [`super`]: families, label sets, the interner and
//! snapshots.

use super::*;

fn common(external: &[(&str, &str)]) -> Arc<CommonLabels> {
    let external: Vec<(String, String)> = external
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Arc::new(CommonLabels::new("j", &external))
}

fn values<'a>(values: &[&'a str]) -> Vec<Text<'a>> {
    values.iter().map(|v| Text::from(*v)).collect()
}

/// The labels as text, read under a lock of the table taken and let go
/// here (a label set made while this thread holds one would wait forever).
fn text(labels: &LabelSet) -> Vec<(String, String)> {
    let symbols = symbols::table().read();
    labels
        .iter(&symbols)
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn get(labels: &LabelSet, name: &str) -> Option<String> {
    labels
        .get(name, &symbols::table().read())
        .map(str::to_owned)
}

#[test]
fn labels_are_sorted_unique_and_without_empty_values() {
    let common = common(&[("cluster", "prod"), ("a_first", "x")]);
    let labels = LabelSet::new(
        Family::ContainerInfo,
        &common,
        &values(&["", "v1", "Pod", "ns", "p", "c", "{}", "img", "", ""]),
    );
    assert_eq!(
        text(&labels),
        owned(&[
            ("__name__", "container_image_container_info"),
            ("a_first", "x"),
            ("cluster", "prod"),
            ("container", "c"),
            ("image", "img"),
            ("job", "j"),
            ("jsonpath", "{}"),
            ("kind", "Pod"),
            ("name", "p"),
            ("namespace", "ns"),
            ("version", "v1"),
        ])
    );
    assert_eq!(get(&labels, "digest").as_deref(), Some(""));
    assert_eq!(get(&labels, "kind").as_deref(), Some("Pod"));
    assert_eq!(get(&labels, "job"), None, "not one of the family's own");
}

#[test]
fn extra_labels_merge_in_name_order_and_never_repeat_a_name() {
    let common = common(&[("label_team", "platform")]);
    let extra = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, v)| (Arc::from(*n), Arc::from(*v)))
            .collect::<Vec<_>>()
    };
    let labels = LabelSet::with_extra(
        Family::WorkloadLabels,
        &common,
        &values(&["apps", "v1", "Deployment", "ns", "d"]),
        extra(&[
            ("label_zone", "eu"),
            ("annotation_owner", "alice"),
            ("label_team", "payments"),
            ("kind", "Forged"),
            ("label_empty", ""),
        ]),
    );
    assert_eq!(
        text(&labels),
        owned(&[
            ("__name__", "container_image_workload_labels"),
            ("annotation_owner", "alice"),
            ("group", "apps"),
            ("job", "j"),
            ("kind", "Deployment"),
            ("label_team", "platform"),
            ("label_zone", "eu"),
            ("name", "d"),
            ("namespace", "ns"),
            ("version", "v1"),
        ])
    );
    let other = LabelSet::with_extra(
        Family::WorkloadLabels,
        &common,
        &values(&["apps", "v1", "Deployment", "ns", "d"]),
        extra(&[("label_zone", "us")]),
    );
    assert_ne!(labels, other);
    assert_ne!(labels.hash(), other.hash());
}

/// A workload's extra labels are ids in the table like the other values:
/// two workloads' copies of a name or value are one string, and a label
/// set with extra labels is one allocation (plus its ids).
#[test]
fn extra_labels_are_ids_in_the_table_one_copy_each() {
    let common = common(&[]);
    let make = || {
        let extra = vec![(
            Arc::from("label_extra_ids_test"),
            Arc::from("value-extra-ids-test"),
        )];
        let own = values(&["apps", "v1", "Deployment", "ns", "d"]);
        LabelSet::with_extra(Family::WorkloadLabels, &common, &own, extra)
    };
    let (a, b) = (make(), make());
    let symbols = symbols::table().read();
    fn find<'a>(set: &'a LabelSet, symbols: &'a Symbols<'_>) -> (&'a str, &'a str) {
        set.iter(symbols)
            .find(|(n, _)| *n == "label_extra_ids_test")
            .unwrap()
    }
    let ((a_name, a_value), (b_name, b_value)) = (find(&a, &symbols), find(&b, &symbols));
    assert_eq!(a_value, "value-extra-ids-test");
    assert!(std::ptr::eq(a_name, b_name) && std::ptr::eq(a_value, b_value));
    let raw = a.raw(&symbols).find(|(n, _)| *n == "label_extra_ids_test");
    assert!(matches!(raw, Some((_, Value::Symbol(_)))), "{raw:?}");
}

#[test]
fn equal_label_sets_hash_alike_and_different_ones_do_not() {
    let common = common(&[]);
    let a = LabelSet::new(Family::SizeBytes, &common, &values(&["sha256:aa"]));
    let again = LabelSet::new(Family::SizeBytes, &common, &values(&["sha256:aa"]));
    let created = LabelSet::new(Family::Created, &common, &values(&["sha256:aa"]));
    let other = LabelSet::new(Family::SizeBytes, &common, &values(&["sha256:bb"]));
    let other_job = LabelSet::new(
        Family::SizeBytes,
        &Arc::new(CommonLabels::new("k", &[])),
        &values(&["sha256:aa"]),
    );
    assert!(!a.ptr_eq(&again));
    assert_eq!(a, again);
    assert_eq!(a.hash(), again.hash());
    for different in [&created, &other, &other_job] {
        assert_ne!(&a, different);
        assert_ne!(a.hash(), different.hash());
    }
    // Two values that concatenate alike are still two label sets.
    let ab = LabelSet::new(Family::ResolveError, &common, &values(&["ab", "c"]));
    let a_bc = LabelSet::new(Family::ResolveError, &common, &values(&["a", "bc"]));
    assert_ne!(ab.hash(), a_bc.hash());
}

#[test]
#[should_panic(expected = "one value per label name")]
fn a_builder_that_disagrees_with_the_table_is_caught() {
    LabelSet::new(Family::SizeBytes, &common(&[]), &values(&["a", "b"]));
}

#[test]
fn stale_markers_are_the_series_with_prometheus_stale_nan() {
    let labels = LabelSet::new(Family::SizeBytes, &common(&[]), &values(&["d"]));
    let stale = Series::stale(labels.clone());
    assert!(stale.is_stale());
    assert_eq!(stale.value.to_bits(), STALE_NAN);
    assert!(!Series { labels, value: 1.0 }.is_stale());
}

#[test]
fn no_family_can_carry_a_label_name_twice() {
    let external = [("cluster".to_owned(), "a".to_owned())];
    check_external_labels(&external, "__replica__").unwrap();
    let common = CommonLabels::new("j", &external);
    for family in Family::ALL {
        let mut names: Vec<&str> = vec![NAME_LABEL];
        names.extend(common.names());
        names.extend(family.label_names());
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{} repeats a name", family.name());
        assert_eq!(common.layout(family).len(), count);
        // No external label can add one of its names again.
        for name in family.label_names() {
            let err = check_external_labels(&[(name.to_string(), "x".into())], "__replica__")
                .unwrap_err();
            assert!(
                matches!(&err, ExternalLabelError::FamilyLabel { families, .. } if families.contains(family.name())),
                "{name}: {err}"
            );
        }
    }
    for name in [NAME_LABEL, "__anything"] {
        assert_eq!(
            check_external_labels(&[(name.into(), "x".into())], "__replica__"),
            Err(ExternalLabelError::Reserved(name.into()))
        );
    }
    assert_eq!(
        check_external_labels(&[(JOB_LABEL.into(), "x".into())], "__replica__"),
        Err(ExternalLabelError::Job(JOB_LABEL.into()))
    );
    for name in ["", "1a", "a-b", "a.b", "é"] {
        assert_eq!(
            check_external_labels(&[(name.into(), "x".into())], "__replica__"),
            Err(ExternalLabelError::Invalid(name.into()))
        );
    }
    assert_eq!(
        check_external_labels(
            &[("region".into(), "a".into()), ("region".into(), "b".into())],
            "__replica__"
        ),
        Err(ExternalLabelError::Duplicate("region".into()))
    );
}

/// Mimir's and Grafana Cloud's HA tracker dedupes on `__replica__`
/// (or whatever the operator named it): it is an external label.
#[test]
fn the_ha_replica_label_is_accepted_though_reserved() {
    let replica = [("__replica__".to_owned(), "a".to_owned())];
    assert_eq!(check_external_labels(&replica, "__replica__"), Ok(()));
    let own = [("__ha__".to_owned(), "a".to_owned())];
    assert_eq!(check_external_labels(&own, "__ha__"), Ok(()));
    assert!(check_external_labels(&replica, "__ha__").is_err());
}

#[test]
fn label_sets_keep_the_limits_and_count_what_they_cut() {
    let limits = SeriesLimits {
        max_label_names: 14,
        max_value_bytes: 64,
        max_name_bytes: 32,
    };
    let common = Arc::new(
        CommonLabels::new("j", &[("cluster".into(), "c".into())])
            .with_limits(limits)
            .unwrap(),
    );
    let long: Arc<str> = Arc::from("x".repeat(100));
    let values: Vec<Text<'_>> = (0..5).map(|_| Text::from(&long)).collect();
    let extra: Vec<(Arc<str>, Arc<str>)> = (0..20)
        .map(|i| (Arc::from(format!("label_{i:02}")), long.clone()))
        .chain([(
            Arc::from(format!("label_{}", "n".repeat(40))),
            Arc::from("v"),
        )])
        .collect();
    let set = LabelSet::with_extra(Family::WorkloadLabels, &common, &values, extra);
    let labels = text(&set);
    assert_eq!(labels.len(), 14, "{labels:?}");
    assert!(labels.iter().all(|(n, v)| n.len() <= 32 && v.len() <= 64));
    let kept: Vec<&str> = labels
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("label_"))
        .collect();
    assert_eq!(
        kept,
        ["label_00", "label_01", "label_02", "label_03", "label_04", "label_05"],
        "the first by name"
    );
    assert_eq!(get(&set, "name").unwrap(), format!("{}…", "x".repeat(61)));
    let drops: Vec<(LimitDrop, u64)> = common.take_drops().collect();
    assert_eq!(
        drops,
        [
            (LimitDrop::SeriesValueTooLong, 11),
            (LimitDrop::SeriesNameTooLong, 1),
            (LimitDrop::SeriesTooManyLabels, 14)
        ]
    );
    assert!(common.take_drops().all(|(_, n)| n == 0), "taken once");
    // Fixed labels that cannot keep the limits are refused at start.
    let many: Vec<(String, String)> = (0..3).map(|i| (format!("e{i}"), "v".into())).collect();
    assert!(matches!(
        CommonLabels::new("j", &many).with_limits(limits),
        Err(LimitsError::TooManyLabels { needed: 15, .. })
    ));
    let long_job = CommonLabels::new(&"j".repeat(65), &[]).with_limits(limits);
    assert!(matches!(long_job, Err(LimitsError::ValueTooLong { .. })));
}

/// Ids that pruning frees are taken by later values, but never while a
/// label set names them: however values come and go, a live series reads
/// as it was made.
#[test]
fn a_pruned_and_reused_symbol_never_renames_a_live_series() {
    let common = common(&[]);
    let live: Vec<LabelSet> = (0..100)
        .map(|i| {
            let image = format!("live-{i}");
            LabelSet::new(Family::ResolveError, &common, &values(&[&image, "kept"]))
        })
        .collect();
    let before: Vec<Vec<(String, String)>> = live.iter().map(text).collect();
    for round in 0..20 {
        let gone: Vec<LabelSet> = (0..500)
            .map(|i| {
                let image = format!("gone-{round}-{i}");
                LabelSet::new(Family::ResolveError, &common, &values(&[&image, "c"]))
            })
            .collect();
        let freed: HashSet<Symbol> = gone.iter().map(|l| l.0.values[0]).collect();
        drop(gone);
        symbols::table().prune();
        let new: Vec<LabelSet> = (0..500)
            .map(|i| {
                let image = format!("new-{round}-{i}");
                LabelSet::new(Family::ResolveError, &common, &values(&[&image, "c"]))
            })
            .collect();
        assert!(
            new.iter().any(|l| freed.contains(&l.0.values[0])),
            "freed ids are taken again (round {round})"
        );
        assert_eq!(text(&new[7])[2], ("image".into(), format!("new-{round}-7")));
        drop(new);
        symbols::table().prune();
    }
    assert_eq!(live.iter().map(text).collect::<Vec<_>>(), before);
}

/// What a label set costs: its allocation (with `Arc`'s two counts) fits
/// jemalloc's 64-byte size class.
#[test]
fn a_label_set_fits_64_bytes() {
    assert!(std::mem::size_of::<LabelSetData>() + 16 <= 64);
}
