//! The Prometheus text exposition format (version 0.0.4), for `/metrics`
//! and `--dry-run`: an encoder over the [`series`](crate::series) model,
//! writing each label set straight into the text.
//!
//! Spec: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write as _;

use crate::series::{symbols, Family, Series, Snapshot, NAME_LABEL};

/// The snapshot's series in the text format, grouped by family, each
/// family with its HELP and TYPE lines. Labels named in `omit` are left
/// out: `/metrics` drops `job` and the external labels, which the scraping
/// Prometheus would otherwise rename to `exported_job` and so on.
pub fn render(snapshot: &Snapshot, omit: &[&str]) -> String {
    render_families(snapshot, omit, |_| true)
}

/// [`render`] of the families `keep` picks only (without copying the
/// snapshot's series to leave the others out).
pub fn render_families(snapshot: &Snapshot, omit: &[&str], keep: fn(Family) -> bool) -> String {
    let mut by_family: Vec<Vec<&Series>> = vec![Vec::new(); Family::ALL.len()];
    let mut estimate = 0;
    for series in snapshot.series.iter().filter(|s| keep(s.family())) {
        by_family[series.family() as usize].push(series);
        estimate += 256;
    }
    let mut out = String::with_capacity(estimate);
    for (family, series) in Family::ALL.into_iter().zip(by_family) {
        if series.is_empty() {
            continue;
        }
        // Taken per family, not for the whole text: a label set being made
        // meanwhile waits for one family at most.
        let symbols = symbols::table().read();
        out.push_str("# HELP ");
        out.push_str(family.name());
        out.push(' ');
        escape(&mut out, family.help(), false);
        out.push_str("\n# TYPE ");
        out.push_str(family.name());
        out.push_str(" gauge\n");
        for s in series {
            out.push_str(family.name());
            let mut separator = '{';
            for (name, value) in s.labels.iter(&symbols) {
                if name == NAME_LABEL || omit.contains(&name) {
                    continue;
                }
                out.push(separator);
                out.push_str(name);
                out.push_str("=\"");
                escape(&mut out, value, true);
                out.push('"');
                separator = ',';
            }
            if separator == ',' {
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, s.value);
            out.push('\n');
        }
    }
    // The text is kept (for every scrape of its snapshot): not the spare
    // room of a guess that was too large, or of a doubling.
    if out.capacity() > out.len() + out.len() / 8 {
        out.shrink_to_fit();
    }
    out
}

/// Backslash and line feed escaped (and, in label values, the double
/// quote), as the format requires.
fn escape(out: &mut String, text: &str, quote: bool) {
    if !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A sample value as the format spells it: Go's float syntax, `+Inf`,
/// `-Inf` and `NaN`.
fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing into a String cannot fail.
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::fixtures::{common, every_family, pod};

    #[test]
    fn renders_gauges_escapes_values_and_omits_labels() {
        let common = common("pusher", &[("cluster", "a")]);
        let snap = Snapshot {
            series: vec![pod(&common, "p", "quote\"me\\and\nme")],
            ..Default::default()
        };
        let full = render(&snap, &[]);
        assert_eq!(
            full,
            concat!(
                "# HELP container_image_container_info Details about containers configured in the cluster, including the image digest resolved by the pusher.\n",
                "# TYPE container_image_container_info gauge\n",
                r#"container_image_container_info{cluster="a",container="c",image="quote\"me\\and\nme",job="pusher",jsonpath="{.spec.containers[0]}",kind="Pod",name="p",namespace="ns",version="v1"} 1"#,
                "\n"
            )
        );
        let local = render(&snap, &["job", "cluster"]);
        assert!(
            !local.contains("job=") && !local.contains("cluster="),
            "{local}"
        );
        assert!(local.contains(r#"container_image_container_info{container="c",image="quote\"me\\and\nme",jsonpath="{.spec.containers[0]}",kind="Pod",name="p",namespace="ns",version="v1"} 1"#), "{local}");
    }

    #[test]
    fn values_are_written_as_the_format_spells_them() {
        let mut out = String::new();
        for value in [
            1.0,
            0.0,
            123_456_789.0,
            1_700_000_000.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            write_value(&mut out, value);
            out.push(' ');
        }
        assert_eq!(out, "1 0 123456789 1700000000 0.5 NaN +Inf -Inf ");
    }

    #[test]
    fn a_series_with_every_label_omitted_has_no_braces() {
        let common = common("pusher", &[]);
        let snap = Snapshot {
            series: vec![crate::series::fixtures::series(
                &common,
                Family::SizeBytes,
                &[""],
                5.0,
            )],
            ..Default::default()
        };
        assert!(render(&snap, &["job"]).ends_with("\ncontainer_image_size_bytes 5\n"));
    }

    #[test]
    fn local_metrics_show_each_family_its_own_labels_only() {
        let common = common("pusher", &[("cluster", "a")]);
        let snap = Snapshot {
            series: every_family(&common),
            ..Default::default()
        };
        let omit: Vec<&str> = common.names().collect();
        let text = render(&snap, &omit);
        let mut seen = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, rest) = line.split_once('{').expect("every series has labels");
            let family = Family::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{line}"));
            seen.push(family);
            let labels = rest.rsplit_once('}').unwrap().0;
            for pair in labels.split("\",") {
                let label = pair.split_once('=').unwrap().0;
                // A workload's own labels, besides the table's.
                let owner = family == Family::WorkloadLabels && label.starts_with("label_");
                assert!(
                    family.label_names().contains(&label) || owner,
                    "{label} on {}: {line}",
                    family.name()
                );
            }
        }
        seen.dedup();
        // The inventory's families; the pusher's own are pushed from
        // src/self_metrics.rs and served from the registry.
        let inventory: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| !f.is_self_metric())
            .collect();
        assert_eq!(seen, inventory, "{text}");
        for family in inventory {
            assert_eq!(
                text.matches(&format!("# TYPE {} gauge\n", family.name()))
                    .count(),
                1,
                "a family is one group: {text}"
            );
        }
    }
}
