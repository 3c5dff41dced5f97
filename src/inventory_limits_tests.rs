//! A property of the inventory: whatever the workloads' labels and image
//! strings, and whatever the configured per-series limits, no series it
//! builds breaks them. Inputs are drawn from a seeded generator, so a
//! failure names the seed that reproduces it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::discovery::{Container, Kind, Workload};
use crate::image_facts::limits::ImageLimits;
use crate::image_facts::{ErrorClass, ImageMetadata, Resolution, ResolveError};
use crate::inventory::build_once;
use crate::series::{CommonLabels, SeriesLimits};

/// xorshift64*: small, seeded, good enough to vary lengths and characters.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Up to `max` characters, multi-byte ones among them, so that cuts
    /// must find character boundaries.
    fn text(&mut self, max: usize) -> String {
        const CHARS: [char; 8] = ['a', 'z', '0', '_', '.', 'é', '日', '🦀'];
        let len = self.below(max + 1);
        (0..len).map(|_| CHARS[self.below(CHARS.len())]).collect()
    }

    /// Mostly short, sometimes far beyond any limit.
    fn length(&mut self) -> usize {
        [8, 64, 1500, 5000][self.below(4)]
    }
}

fn workload(draw: &mut Draw, index: usize) -> Workload {
    let containers = (0..1 + draw.below(3))
        .map(|c| {
            let length = draw.length();
            Container {
                name: Arc::from(format!("c{c}")),
                image: Arc::from(format!("reg.example/{}:{index}", draw.text(length))),
                jsonpath: Arc::from(format!("{{.spec.containers[{c}]}}")),
                image_id: None,
                versions: None,
            }
        })
        .collect();
    let metadata_labels = (0..draw.below(80))
        .map(|i| {
            let (name_len, value_len) = (draw.length(), draw.length());
            let name = format!(
                "label_{i}_{}",
                draw.text(name_len)
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            (Arc::from(name), Arc::from(draw.text(value_len)))
        })
        .collect();
    let length = draw.length();
    Workload {
        kind: Kind::Deployment,
        namespace: Arc::from(format!("ns-{}", draw.text(length))),
        name: Arc::from(format!("w{index}")),
        containers,
        pull: Default::default(),
        metadata_labels,
    }
}

/// Each image resolved (with labels of any length), failed, or unknown.
fn resolution(draw: &mut Draw, index: usize) -> Option<Resolution> {
    match draw.below(3) {
        0 => {
            let labels: BTreeMap<String, String> = (0..draw.below(5))
                .map(|i| {
                    let length = draw.length();
                    (format!("key{i}"), draw.text(length))
                })
                .collect();
            let digest = format!("sha256:{index:064}");
            let metadata = ImageMetadata::bounded(
                digest,
                1,
                None,
                labels,
                BTreeMap::new(),
                &ImageLimits::default(),
            );
            Some(Ok(Arc::new(metadata)))
        }
        1 => Some(Err(ResolveError {
            class: ErrorClass::Unavailable,
            message: "not found".into(),
        })),
        _ => None,
    }
}

#[test]
fn no_series_breaks_the_per_series_limits_whatever_the_input() {
    for seed in 1..=60u64 {
        let mut draw = Draw(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let external: Vec<(String, String)> = (0..draw.below(3))
            .map(|i| (format!("ext{i}"), "x".repeat(draw.below(16))))
            .collect();
        let limits = SeriesLimits {
            max_label_names: 15 + draw.below(30),
            max_value_bytes: 64 + draw.below(3000),
            max_name_bytes: 32 + draw.below(1500),
        };
        let common = CommonLabels::new("job", &external)
            .with_limits(limits)
            .expect("job and external labels within the limits");
        let workloads: Vec<Workload> = (0..4).map(|i| workload(&mut draw, i)).collect();
        let mut resolutions: HashMap<String, Resolution> = HashMap::new();
        for (i, w) in workloads.iter().enumerate() {
            for container in &w.containers {
                if let Some(r) = resolution(&mut draw, i) {
                    resolutions.insert(container.image.to_string(), r);
                }
            }
        }
        let snapshot = build_once(&workloads, &resolutions, &common, 1);
        assert!(!snapshot.series.is_empty());
        let symbols = crate::series::symbols::table().read();
        for series in &snapshot.series {
            let labels: Vec<(&str, &str)> = series.labels.iter(&symbols).collect();
            assert!(
                labels.len() <= limits.max_label_names,
                "seed {seed}: {} labels > {}",
                labels.len(),
                limits.max_label_names
            );
            for (name, value) in labels {
                assert!(
                    name.len() <= limits.max_name_bytes,
                    "seed {seed}: name {name}"
                );
                assert!(
                    value.len() <= limits.max_value_bytes,
                    "seed {seed}: {name} has {} bytes > {}",
                    value.len(),
                    limits.max_value_bytes
                );
            }
        }
    }
}
