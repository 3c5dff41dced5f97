//! CPU cost of one warm tick: series for every container and image, then
//! remote-write encoding and snappy compression of every batch.
//!
//! Run with `cargo bench --bench tick` (defaults: 100k containers over 10k
//! distinct images) or `cargo bench --bench tick -- CONTAINERS IMAGES RUNS`.
//! Resolution is taken as already cached: the resolutions map stands for
//! what the registry caches return on a warm tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container_image_pusher::discovery::{Container, Kind, Workload};
use container_image_pusher::encode::Buffers;
use container_image_pusher::image_facts::{ImageMetadata, Pairs, Resolution, Resolutions};
use container_image_pusher::interner::StringPool;
use container_image_pusher::inventory::Inventory;
use container_image_pusher::pipeline::Metrics;
use container_image_pusher::series::CommonLabels;
use container_image_pusher::telemetry::Telemetry;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let containers = args.first().copied().unwrap_or(100_000);
    let images = args.get(1).copied().unwrap_or(10_000);
    let runs = args.get(2).copied().unwrap_or(7);

    let (workloads, resolutions) = fixture(containers, images);
    let resolutions = Resolutions::from(resolutions);
    let common = CommonLabels::new(
        "container-image-pusher",
        &[("cluster".into(), "prod-eu-1".into())],
    );

    // The first tick encodes every label set; later ticks over an unchanged
    // inventory reuse them. Both are reported.
    let dropped = Metrics::new(&Telemetry::new().registry).labels_dropped;
    let mut inventory = Inventory::new(common, dropped);
    let started = Instant::now();
    let first = inventory.build(&workloads, &resolutions, 1_700_000_000_000);
    let cold = started.elapsed();
    drop(first);

    let mut build_times = Vec::new();
    let mut encode_times = Vec::new();
    let (mut series, mut raw, mut compressed) = (0, 0, 0);
    for run in 0..runs {
        let started = Instant::now();
        let snapshot = inventory.build(&workloads, &resolutions, 1_700_000_060_000 + run as i64);
        build_times.push(started.elapsed());
        let started = Instant::now();
        (raw, compressed) = (0, 0);
        // As a push does: one set of buffers for all its requests.
        let mut buffers = Buffers::default();
        for batch in snapshot.series.chunks(2000) {
            let body = buffers.v1(batch, snapshot.timestamp_ms);
            compressed += body.expect("compressible").len();
            raw += buffers.raw_len();
        }
        encode_times.push(started.elapsed());
        series = snapshot.series.len();
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (b, e) = (median(&mut build_times), median(&mut encode_times));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("containers={containers} images={images} series={series} runs={runs}");
    println!(
        "first tick: series  {:>8.1} ms (every label set encoded)",
        ms(cold)
    );
    println!("warm tick:  series  median {:>8.1} ms", ms(b));
    println!("warm tick:  encode + compress  median {:>8.1} ms", ms(e));
    println!("warm tick:  total   median {:>8.1} ms", ms(b + e));
    println!(
        "bytes per push      {raw} raw, {compressed} compressed ({:.1}x)",
        raw as f64 / compressed as f64
    );
    if let Some(rss) = resident_memory() {
        println!("resident memory     {:.1} MB", rss as f64 / 1e6);
    }
}

/// VmRSS of this process, from /proc (Linux).
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Deployments of 3 containers (one init) spread over namespaces, over
/// `images` distinct images, each with a few labels and annotations.
fn fixture(containers: usize, images: usize) -> (Vec<Arc<Workload>>, HashMap<String, Resolution>) {
    let image = |i: usize| {
        format!(
            "registry.example.com/team-{}/service-{i}:v1.{}",
            i % 50,
            i % 7
        )
    };
    let resolutions = (0..images)
        .map(|i| {
            let metadata = ImageMetadata {
                digest: format!("sha256:{:064x}", i),
                size: 20_000_000 + i as u64,
                created: Some(1_700_000_000 + i as i64),
                labels: Pairs::from(BTreeMap::from([
                    (
                        "org.opencontainers.image.source".into(),
                        format!("https://github.com/example/service-{i}"),
                    ),
                    (
                        "org.opencontainers.image.revision".into(),
                        format!("{:040x}", i),
                    ),
                    ("dev.chainguard.package.main".into(), "static".into()),
                ])),
                annotations: Pairs::from(BTreeMap::from([(
                    "org.opencontainers.image.base.name".into(),
                    "cgr.dev/chainguard/static:latest".into(),
                )])),
                dropped: Default::default(),
                supply_chain: Default::default(),
                platform_digests: Vec::new(),
                pending: false,
            };
            (image(i), Ok(Arc::new(metadata)))
        })
        .collect();
    // Repeated strings shared as a source shares them.
    let pool = StringPool::default();
    let mut strings = pool.lock();
    let workloads = (0..containers.div_ceil(3))
        .map(|w| {
            Arc::new(Workload {
                kind: Kind::Deployment,
                namespace: strings.intern(&format!("namespace-{}", w % 200)),
                name: format!("deployment-{w}").into(),
                containers: (0..3)
                    .map(|c| Container {
                        name: strings.intern(&format!("container-{c}")),
                        image: strings.intern(&image((w * 3 + c) % images)),
                        jsonpath: if c == 0 {
                            strings.intern("{.spec.template.spec.initContainers[0]}")
                        } else {
                            strings
                                .intern(&format!("{{.spec.template.spec.containers[{}]}}", c - 1))
                        },
                        image_id: None,
                        versions: None,
                    })
                    .collect(),
                pull: Default::default(),
                metadata_labels: Vec::new(),
            })
        })
        .collect();
    (workloads, resolutions)
}
