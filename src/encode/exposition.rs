//! The Prometheus text exposition format (version 0.0.4), for `/metrics`
//! and `--dry-run`: an encoder over the [`series`](crate::series) model,
//! writing each label set straight into the text.
//!
//! Spec: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write as _;

use crate::series::{symbols, Family, Series, Snapshot, Symbols, NAME_LABEL};

/// Where [`Chunks`] ends a chunk: after the first line that takes it to
/// this many bytes. `/metrics` holds a few chunks per scrape whatever the
/// snapshot's size, instead of its whole text (~60 MB at 100k containers).
pub const CHUNK_BYTES: usize = 64 * 1024;

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
    let mut cursor = Cursor::new(keep);
    cursor.fill(snapshot, omit, usize::MAX).unwrap_or_default()
}

/// [`render_families`] in pieces of about [`CHUNK_BYTES`] (each ends
/// with a whole line), rendered one at a time as they are asked for: a
/// reader that takes them slowly holds the snapshot, not its text.
pub struct Chunks<S> {
    snapshot: S,
    omit: Vec<String>,
    cursor: Cursor,
    limit: usize,
}

impl<S: std::ops::Deref<Target = Snapshot>> Chunks<S> {
    pub fn new(snapshot: S, omit: Vec<String>, keep: fn(Family) -> bool) -> Self {
        Chunks::with_limit(snapshot, omit, keep, CHUNK_BYTES)
    }

    fn with_limit(snapshot: S, omit: Vec<String>, keep: fn(Family) -> bool, limit: usize) -> Self {
        Chunks {
            snapshot,
            omit,
            cursor: Cursor::new(keep),
            limit,
        }
    }
}

impl<S: std::ops::Deref<Target = Snapshot>> Iterator for Chunks<S> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.cursor.fill(&self.snapshot, &self.omit, self.limit)
    }
}

/// How far a rendering has got: the family being written and the next
/// series to look at.
struct Cursor {
    keep: fn(Family) -> bool,
    /// Each series' family (its [`Family::ALL`] position), or `SKIP` for
    /// one `keep` leaves out: a byte a series, so that finding a family's
    /// series again at every chunk does not read every label set.
    families: Option<Box<[u8]>>,
    /// The [`Family::ALL`] position being written.
    family: usize,
    /// The series position to look from.
    next: usize,
    /// Whether the family's HELP and TYPE lines are written.
    started: bool,
}

const SKIP: u8 = u8::MAX;

impl Cursor {
    fn new(keep: fn(Family) -> bool) -> Self {
        Cursor {
            keep,
            families: None,
            family: 0,
            next: 0,
            started: false,
        }
    }

    /// The next lines, until they reach `limit` bytes or the text ends;
    /// `None` once it has ended.
    fn fill(
        &mut self,
        snapshot: &Snapshot,
        omit: &[impl AsRef<str>],
        limit: usize,
    ) -> Option<String> {
        let keep = self.keep;
        let families = self.families.get_or_insert_with(|| {
            let kept = |s: &Series| keep(s.family()).then(|| s.family() as u8);
            snapshot
                .series
                .iter()
                .map(|s| kept(s).unwrap_or(SKIP))
                .collect()
        });
        let remaining = families.len().saturating_sub(self.next);
        let mut out = String::with_capacity(limit.min(remaining.saturating_mul(256)));
        while let Some(&family) = Family::ALL.get(self.family) {
            // Taken per family and chunk, not for the whole text: a label
            // set being made meanwhile waits for a chunk at most.
            let symbols = symbols::table().read();
            let wanted = self.family as u8;
            while let Some(offset) = families[self.next..].iter().position(|f| *f == wanted) {
                let series = &snapshot.series[self.next + offset];
                self.next += offset + 1;
                if !self.started {
                    self.started = true;
                    write_header(&mut out, family);
                }
                write_series(&mut out, family, series, omit, &symbols);
                if out.len() >= limit {
                    return Some(out);
                }
            }
            self.family += 1;
            self.next = 0;
            self.started = false;
        }
        (!out.is_empty()).then_some(out)
    }
}

/// A family's HELP and TYPE lines.
fn write_header(out: &mut String, family: Family) {
    out.push_str("# HELP ");
    out.push_str(family.name());
    out.push(' ');
    escape(out, family.help(), false);
    out.push_str("\n# TYPE ");
    out.push_str(family.name());
    out.push_str(" gauge\n");
}

/// One series' line.
fn write_series(
    out: &mut String,
    family: Family,
    series: &Series,
    omit: &[impl AsRef<str>],
    symbols: &Symbols<'_>,
) {
    out.push_str(family.name());
    let mut separator = '{';
    for (name, value) in series.labels.iter(symbols) {
        if name == NAME_LABEL || omit.iter().any(|o| o.as_ref() == name) {
            continue;
        }
        out.push(separator);
        out.push_str(name);
        out.push_str("=\"");
        escape(out, value, true);
        out.push('"');
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
    out.push(' ');
    write_value(out, series.value);
    out.push('\n');
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

    /// `/metrics` streams the text in chunks: whatever their size, they
    /// are whole lines and add up to the text rendered in one piece
    /// (which the tests above check byte for byte).
    #[test]
    fn chunks_are_whole_lines_adding_up_to_the_text() {
        let common = common("pusher", &[("cluster", "a")]);
        // Families interleaved, as a snapshot's are.
        let mut series = Vec::new();
        for i in 0..2000 {
            // Few distinct values: the table of values is the process'
            // one, and its tests count the ids it frees.
            let name = format!("p{}", i % 10);
            series.push(pod(&common, &name, "quote\"me\\and\nme"));
            if i % 100 == 0 {
                series.extend(every_family(&common));
            }
        }
        let snap = std::sync::Arc::new(Snapshot {
            series,
            ..Default::default()
        });
        let inventory = |f: Family| !f.is_self_metric();
        let whole = render_families(&snap, &["job", "cluster"], inventory);
        assert!(whole.len() > 4 * CHUNK_BYTES, "{}", whole.len());
        for limit in [1, 100, 4096, CHUNK_BYTES, usize::MAX] {
            let omit = vec!["job".to_owned(), "cluster".to_owned()];
            let chunks: Vec<String> =
                Chunks::with_limit(snap.clone(), omit, inventory, limit).collect();
            // Past the limit by one line at most (and its family's HELP
            // and TYPE lines): none here is 1 KiB.
            assert!(chunks
                .iter()
                .all(|c| c.ends_with('\n') && c.len() < limit.saturating_add(1024)));
            assert_eq!(chunks.concat(), whole, "chunks of {limit} bytes");
        }
        let nothing = Snapshot::default();
        assert_eq!(Chunks::new(&nothing, vec![], |_| true).count(), 0);
    }
}
