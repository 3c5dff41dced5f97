//! The report: the machine it ran on, medians over runs, and the
//! markdown table.

use std::fmt::Write as _;
use std::process::Command;

use serde::Serialize;

use super::measure::clock_ticks;
use super::results::{Agent, DirectResult, Machine, Report, RunResult, ScrapeResult, Window};
use super::support::process::require_binary;

impl Machine {
    pub(crate) fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let version = |binary: &str, package: &str| {
            Command::new(require_binary(binary, package))
                .arg("--version")
                .output()
                .map(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr);
                    text.lines().next().unwrap_or_default().trim().to_owned()
                })
                .unwrap_or_default()
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            mem_total_bytes: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            clock_ticks_per_second: clock_ticks(),
            prometheus_version: version("prometheus", "prometheus"),
            registry_version: version("docker-registry", "docker-registry"),
            harness_optimized: !cfg!(debug_assertions),
            source: source_revision(),
        }
    }
}

pub(crate) fn source_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let changed = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .map_or(0, |out| out.lines().count());
    if changed == 0 {
        head
    } else {
        format!("{head} + {changed} changed file(s) under src/")
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The numbers the table shows, each the median over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub first_push_seconds: f64,
    /// Registry requests before the first push, and in the whole cold
    /// window (to the first complete push).
    pub first_push_requests: f64,
    pub cold_requests: f64,
    pub metadata_push_seconds: f64,
    pub complete_push_seconds: f64,
    pub cold_cpu_seconds: f64,
    pub warm_cpu_seconds_per_tick: f64,
    pub warm_snapshot_wall_seconds: f64,
    pub warm_push_wall_seconds: f64,
    pub peak_rss_mb: f64,
    pub steady_rss_mb: f64,
    pub warm_max_rss_mb: f64,
    pub series_per_push: f64,
    pub requests_per_push: f64,
    pub compressed_bytes_per_push: f64,
    pub raw_bytes_per_push: f64,
    pub snappy_seconds: f64,
    pub cold_head: f64,
    pub cold_get: f64,
    pub cold_version_checks: f64,
    pub warm_head_per_tick: f64,
    pub warm_get_per_tick: f64,
    pub expiry_head: f64,
    pub expiry_get: f64,
    pub expiry_version_checks: f64,
    pub warm_version_checks_per_tick: f64,
    pub warm_other_per_tick: f64,
    pub head_per_tagged_reference: f64,
    pub api_lists_per_tick: f64,
    pub api_watches_per_tick: f64,
    pub api_other_per_tick: f64,
    /// Tag listings (`GET /v2/<name>/tags/list`) in the cold tick and per
    /// warm tick: one per repository, then none.
    pub cold_tag_lists: f64,
    pub warm_tag_lists_per_tick: f64,
    /// With `--verify`: signature verifications computed in the cold tick,
    /// and after it (warm-up, warm and tag-expiry ticks together).
    pub cold_signature_verifications: Option<f64>,
    pub later_signature_verifications: Option<f64>,
    /// Of all the verifications, those whose result was `verified`.
    pub signatures_verified: Option<f64>,
    /// Exporter + Prometheus agent.
    pub scrape: Option<ScrapeSummary>,
    /// Exporter + vmagent.
    pub vmagent: Option<ScrapeSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScrapeSummary {
    pub agent_kind: Agent,
    pub exporter_cpu_seconds_per_interval: f64,
    pub agent_cpu_seconds_per_interval: f64,
    pub exporter_steady_rss_mb: f64,
    pub agent_steady_rss_mb: f64,
    pub exporter_peak_rss_mb: f64,
    pub agent_peak_rss_mb: f64,
    pub scrape_mb: f64,
    pub scrape_seconds: f64,
    pub wire_compressed_bytes_per_interval: f64,
    pub wire_raw_bytes_per_interval: f64,
    pub agent_bytes_metric_per_interval: f64,
    pub samples_per_scrape: f64,
    pub requests_per_scrape: f64,
    pub cpu_ratio: f64,
    pub memory_ratio: f64,
    pub bytes_ratio: f64,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let m =
            |f: &dyn Fn(&RunResult) -> f64| median(&self.runs.iter().map(f).collect::<Vec<_>>());
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let per_tick = |w: &Window, v: f64| {
            if w.ticks > 0 {
                v / w.ticks as f64
            } else {
                f64::NAN
            }
        };
        let tagged = self.dataset.tagged_references.max(1) as f64;
        let scrape = self.scrape_summary(Agent::Prometheus, |r| r.scrape.as_ref());
        let vmagent = self.scrape_summary(Agent::Vmagent, |r| r.vmagent.as_ref());
        Summary {
            runs: self.runs.len(),
            first_push_seconds: m(&|r| r.direct.first_push_seconds),
            first_push_requests: m(&|r| r.direct.first_push_registry.total() as f64),
            cold_requests: m(&|r| r.direct.cold.registry.total() as f64),
            metadata_push_seconds: m(&|r| r.direct.metadata_push_seconds),
            complete_push_seconds: m(&|r| r.direct.complete_push_seconds),
            cold_cpu_seconds: m(&|r| r.direct.cold.cpu_seconds),
            warm_cpu_seconds_per_tick: m(&|r| r.direct.warm.cpu_seconds_per_tick),
            warm_snapshot_wall_seconds: m(&|r| r.direct.warm.snapshot_wall_seconds),
            warm_push_wall_seconds: m(&|r| r.direct.warm.push_wall_seconds),
            peak_rss_mb: m(&|r| mb(r.direct.peak_rss_bytes)),
            steady_rss_mb: m(&|r| mb(r.direct.steady_rss_bytes)),
            warm_max_rss_mb: m(&|r| mb(r.direct.warm_max_rss_bytes)),
            series_per_push: m(&|r| r.direct.warm.series_per_push as f64),
            requests_per_push: m(&|r| per_tick(&r.direct.warm, r.direct.warm.wire.requests as f64)),
            compressed_bytes_per_push: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.wire.compressed_bytes as f64)
            }),
            raw_bytes_per_push: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.wire.raw_bytes as f64)
            }),
            snappy_seconds: m(&|r| r.snappy.as_ref().map_or(f64::NAN, |s| s.seconds)),
            cold_head: m(&|r| r.direct.cold.registry.heads() as f64),
            cold_get: m(&|r| r.direct.cold.registry.gets() as f64),
            cold_version_checks: m(&|r| r.direct.cold.registry.get_version_checks as f64),
            warm_head_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.heads() as f64)
            }),
            warm_get_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.gets() as f64)
            }),
            expiry_head: m(&|r| r.direct.expiry.registry.heads() as f64),
            expiry_get: m(&|r| r.direct.expiry.registry.gets() as f64),
            expiry_version_checks: m(&|r| r.direct.expiry.registry.get_version_checks as f64),
            warm_version_checks_per_tick: m(&|r| {
                per_tick(
                    &r.direct.warm,
                    r.direct.warm.registry.get_version_checks as f64,
                )
            }),
            warm_other_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.other as f64)
            }),
            head_per_tagged_reference: m(&|r| r.direct.expiry.registry.heads() as f64 / tagged),
            api_lists_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.list as f64)),
            api_watches_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.watch as f64)),
            api_other_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.other as f64)),
            cold_tag_lists: m(&|r| r.direct.cold.registry.tag_lists as f64),
            warm_tag_lists_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.tag_lists as f64)
            }),
            cold_signature_verifications: self
                .options
                .verify
                .then(|| m(&|r| r.direct.cold_signature_verifications.unwrap_or(f64::NAN))),
            later_signature_verifications: self.options.verify.then(|| {
                m(&|r| {
                    r.direct.self_metrics.signature_verifications
                        - r.direct.cold_signature_verifications.unwrap_or(f64::NAN)
                })
            }),
            signatures_verified: self
                .options
                .verify
                .then(|| m(&|r| r.direct.self_metrics.signatures_verified)),
            scrape,
            vmagent,
        }
    }

    /// Medians over the runs of one alternative, if every run measured it.
    pub(crate) fn scrape_summary(
        &self,
        kind: Agent,
        pick: fn(&RunResult) -> Option<&ScrapeResult>,
    ) -> Option<ScrapeSummary> {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let per_tick = |w: &Window, v: f64| {
            if w.ticks > 0 {
                v / w.ticks as f64
            } else {
                f64::NAN
            }
        };
        self.runs.iter().all(|r| pick(r).is_some()).then(|| {
            let s = |f: &dyn Fn(&ScrapeResult, &DirectResult) -> f64| {
                median(
                    &self
                        .runs
                        .iter()
                        .filter_map(|r| Some(f(pick(r)?, &r.direct)))
                        .collect::<Vec<_>>(),
                )
            };
            ScrapeSummary {
                agent_kind: kind,
                exporter_cpu_seconds_per_interval: s(&|s, _| s.exporter.cpu_seconds_per_interval),
                agent_cpu_seconds_per_interval: s(&|s, _| s.agent.cpu_seconds_per_interval),
                exporter_steady_rss_mb: s(&|s, _| mb(s.exporter.steady_rss_bytes)),
                agent_steady_rss_mb: s(&|s, _| mb(s.agent.steady_rss_bytes)),
                exporter_peak_rss_mb: s(&|s, _| mb(s.exporter.peak_rss_bytes)),
                agent_peak_rss_mb: s(&|s, _| mb(s.agent.peak_rss_bytes)),
                scrape_mb: s(&|s, _| s.scrape_bytes / 1e6),
                scrape_seconds: s(&|s, _| s.scrape_seconds),
                wire_compressed_bytes_per_interval: s(&|s, _| s.wire_compressed_bytes_per_interval),
                wire_raw_bytes_per_interval: s(&|s, _| s.wire_raw_bytes_per_interval),
                agent_bytes_metric_per_interval: s(&|s, _| s.agent_bytes_per_scrape),
                samples_per_scrape: s(&|s, _| s.samples_per_scrape),
                requests_per_scrape: s(&|s, _| s.wire_requests_per_interval),
                cpu_ratio: s(&|s, d| {
                    d.warm.cpu_seconds_per_tick
                        / (s.exporter.cpu_seconds_per_interval + s.agent.cpu_seconds_per_interval)
                }),
                memory_ratio: s(&|s, d| {
                    d.steady_rss_bytes as f64
                        / (s.exporter.steady_rss_bytes + s.agent.steady_rss_bytes) as f64
                }),
                bytes_ratio: s(&|s, d| {
                    per_tick(&d.warm, d.warm.wire.compressed_bytes as f64)
                        / s.wire_compressed_bytes_per_interval
                }),
            }
        })
    }

    /// The results as markdown: the setup, then one table per question.
    pub fn markdown(&self) -> String {
        let s = self.summary();
        let d = &self.dataset;
        let o = &self.options;
        let mut out = String::new();
        let runs = if s.runs == 1 {
            "1 run".to_owned()
        } else {
            format!("median of {} runs", s.runs)
        };
        let objects = d
            .objects
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "{} containers ({} init, {} ephemeral) over {} images: {} referenced, {} by tag and {} \
             pinned by digest, {} multi-arch. {} objects ({objects}) in {} namespaces, {:.1} MB of \
             JSON per full list. Interval {}, cache duration {}, {} warm ticks per window, {runs}.",
            d.containers,
            d.init_containers,
            d.ephemeral_containers,
            o.images,
            d.distinct_images,
            d.tagged_references,
            d.pinned_references,
            d.multi_arch_images,
            d.objects.values().sum::<usize>(),
            d.namespaces,
            d.api_json_bytes as f64 / 1e6,
            humantime::format_duration(o.interval),
            humantime::format_duration(o.cache_duration),
            o.warm_ticks,
        );
        let _ = writeln!(
            out,
            "\nService accounts: {}. Pusher flags: `--interval {} --cache-duration {} \
             --registry-rps {} --registry-concurrency {}{}{}{}`.",
            if o.service_account_per_workload {
                "one per Deployment and StatefulSet (their pods use it too), `default` for the rest"
            } else {
                "`default` everywhere"
            },
            humantime::format_duration(o.interval),
            humantime::format_duration(o.cache_duration),
            o.registry_rps,
            o.registry_concurrency,
            if o.custom_kinds {
                " --workload-kind argo-rollouts --workload-kind openkruise-cloneset"
            } else {
                ""
            },
            if o.verify {
                " --verify-key scale=KEY (every image signed)"
            } else {
                ""
            },
            o.pusher_args
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>(),
        );
        let loads = self
            .runs
            .iter()
            .map(|r| format!("{:.2}→{:.2}", r.load_before[0], r.load_after[0]))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "\nMachine: {} × {}, {:.1} GB RAM, Linux {}; 1-minute load before→after each run: {loads}. \
             Source: {}.\n",
            self.machine.nproc,
            self.machine.cpu_model,
            self.machine.mem_total_bytes as f64 / 1e9,
            self.machine.kernel,
            self.machine.source,
        );

        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut rows: Vec<[String; 3]> = Vec::new();
        let mut row = |name: &str, value: String, target: String| {
            rows.push([name.to_owned(), value, target]);
        };
        // What --registry-rps alone allows: the requests made by then,
        // one per 1/rps seconds.
        let floor = |requests: f64| secs(requests / self.options.registry_rps);
        row(
            "Time to the first push (every container with its digest)",
            format!(
                "{} (floor {}: {:.0} requests)",
                secs(s.first_push_seconds),
                floor(s.first_push_requests),
                s.first_push_requests
            ),
            format!("≤ 20 s: {}", verdict(s.first_push_seconds <= 20.0)),
        );
        row(
            "Time to the first push with every image's metadata",
            secs(s.metadata_push_seconds),
            String::new(),
        );
        row(
            "Time to first complete push (attachments, bases, verdicts, versions too)",
            format!(
                "{} (floor {}: {:.0} requests)",
                secs(s.complete_push_seconds),
                floor(s.cold_requests),
                s.cold_requests
            ),
            String::new(),
        );
        row(
            "CPU until then (startup + cold tick)",
            secs(s.cold_cpu_seconds),
            String::new(),
        );
        row(
            "CPU per warm tick (whole process)",
            secs(s.warm_cpu_seconds_per_tick),
            format!("≤ 0.25 s: {}", verdict(s.warm_cpu_seconds_per_tick <= 0.25)),
        );
        row(
            "Wall time of a warm tick: snapshot, then push",
            format!(
                "{} + {}",
                secs(s.warm_snapshot_wall_seconds),
                secs(s.warm_push_wall_seconds)
            ),
            String::new(),
        );
        row(
            "Steady RSS (between warm ticks)",
            format!("{:.0} MB", s.steady_rss_mb),
            format!("≤ 120 MB: {}", verdict(s.steady_rss_mb <= 120.0)),
        );
        row(
            "Highest RSS in warm ticks / peak (VmHWM)",
            format!("{:.0} MB / {:.0} MB", s.warm_max_rss_mb, s.peak_rss_mb),
            String::new(),
        );
        row(
            "Series / requests per push",
            format!("{:.0} / {:.0}", s.series_per_push, s.requests_per_push),
            String::new(),
        );
        row(
            "Bytes per push: raw → compressed",
            format!(
                "{} → {}",
                megabytes(s.raw_bytes_per_push),
                megabytes(s.compressed_bytes_per_push)
            ),
            String::new(),
        );
        row(
            "snappy alone on one push's bytes (same batches)",
            secs(s.snappy_seconds),
            String::new(),
        );
        row(
            "Registry requests in the cold tick: HEAD / GET / `GET /v2/`",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.cold_head, s.cold_get, s.cold_version_checks
            ),
            String::new(),
        );
        row(
            "Registry requests per warm tick: HEAD / GET / `GET /v2/`",
            format!(
                "{:.1} / {:.1} / {:.1}",
                s.warm_head_per_tick, s.warm_get_per_tick, s.warm_version_checks_per_tick
            ),
            format!(
                "none: {}",
                verdict(
                    s.warm_head_per_tick == 0.0
                        && s.warm_get_per_tick == 0.0
                        && s.warm_version_checks_per_tick == 0.0
                        && s.warm_other_per_tick == 0.0
                )
            ),
        );
        row(
            "Tag listings in the cold tick / per warm tick",
            format!("{:.0} / {:.1}", s.cold_tag_lists, s.warm_tag_lists_per_tick),
            format!(
                "one per repository, then none: {}",
                verdict(s.warm_tag_lists_per_tick == 0.0)
            ),
        );
        if let (Some(cold), Some(later), Some(verified)) = (
            s.cold_signature_verifications,
            s.later_signature_verifications,
            s.signatures_verified,
        ) {
            row(
                "Signature verifications computed in the cold tick / after it",
                format!("{cold:.0} / {later:.0} ({verified:.0} verified)"),
                format!("one per image digest, then none: {}", verdict(later == 0.0)),
            );
        }
        if self.options.expiry {
            row(
                "Registry requests when the tag cache expires: HEAD / GET / `GET /v2/`",
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    s.expiry_head, s.expiry_get, s.expiry_version_checks
                ),
                format!(
                    "one HEAD per tag ({}), none per pinned digest, no GET of a manifest or blob: {}",
                    d.tagged_references,
                    verdict(s.head_per_tagged_reference == 1.0 && s.expiry_get == 0.0)
                ),
            );
        }
        row(
            "API requests per warm tick: list / watch / other",
            format!(
                "{:.1} / {:.1} / {:.1}",
                s.api_lists_per_tick, s.api_watches_per_tick, s.api_other_per_tick
            ),
            String::new(),
        );
        let _ = writeln!(out, "| Direct push | {runs} | Target |");
        let _ = writeln!(out, "| --- | ---: | --- |");
        for [name, value, target] in rows {
            let _ = writeln!(out, "| {name} | {value} | {target} |");
        }

        for a in [&s.scrape, &s.vmagent].into_iter().flatten() {
            alternative_table(&mut out, &s, a);
        }
        out
    }
}

/// Direct push against one scrape + agent alternative, per interval.
pub(crate) fn alternative_table(out: &mut String, s: &Summary, a: &ScrapeSummary) {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let agent = a.agent_kind.name();
    let alt_cpu = a.exporter_cpu_seconds_per_interval + a.agent_cpu_seconds_per_interval;
    let alt_rss = a.exporter_steady_rss_mb + a.agent_steady_rss_mb;
    let alt_peak = a.exporter_peak_rss_mb + a.agent_peak_rss_mb;
    let _ = writeln!(
        out,
        "\n| Per interval | Direct push | Exporter + {agent} | Ratio | Target |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
    let _ = writeln!(
        out,
        "| CPU | {} | {} + {} = {} | {:.2}× | ≤ 0.25×: {} |",
        secs(s.warm_cpu_seconds_per_tick),
        secs(a.exporter_cpu_seconds_per_interval),
        secs(a.agent_cpu_seconds_per_interval),
        secs(alt_cpu),
        a.cpu_ratio,
        verdict(a.cpu_ratio <= 0.25)
    );
    let _ = writeln!(
        out,
        "| Steady RSS | {:.0} MB | {:.0} MB + {:.0} MB = {alt_rss:.0} MB | {:.2}× | ≤ 0.15×: {} |",
        s.steady_rss_mb,
        a.exporter_steady_rss_mb,
        a.agent_steady_rss_mb,
        a.memory_ratio,
        verdict(a.memory_ratio <= 0.15)
    );
    let _ = writeln!(
        out,
        "| Peak RSS (VmHWM) | {:.0} MB | {:.0} MB + {:.0} MB = {alt_peak:.0} MB | {:.2}× | |",
        s.peak_rss_mb,
        a.exporter_peak_rss_mb,
        a.agent_peak_rss_mb,
        s.peak_rss_mb / alt_peak
    );
    let _ = writeln!(
        out,
        "| Samples sent | {:.0} | {:.0} | | |",
        s.series_per_push, a.samples_per_scrape
    );
    let _ = writeln!(
        out,
        "| Remote-write requests | {:.0} | {:.0} | | |",
        s.requests_per_push, a.requests_per_scrape
    );
    let _ = writeln!(
        out,
        "| Bytes on the wire, compressed | {} | {} | {:.2}× | ≤ 1×: {} |",
        megabytes(s.compressed_bytes_per_push),
        megabytes(a.wire_compressed_bytes_per_interval),
        a.bytes_ratio,
        verdict(a.bytes_ratio <= 1.0)
    );
    let _ = writeln!(
        out,
        "| Bytes on the wire, raw protobuf | {} | {} | {:.2}× | |",
        megabytes(s.raw_bytes_per_push),
        megabytes(a.wire_raw_bytes_per_interval),
        s.raw_bytes_per_push / a.wire_raw_bytes_per_interval
    );
    let _ = writeln!(
        out,
        "| Agent's own count (`{}`) | | {} | | |",
        a.agent_kind.sent_counters().0[0],
        megabytes(a.agent_bytes_metric_per_interval)
    );
    let _ = writeln!(
        out,
        "| Scrape of the exporter's /metrics | | {}, {} | | |",
        megabytes(a.scrape_mb * 1e6),
        secs(a.scrape_seconds)
    );
}

/// Seconds, in ms below one second.
pub(crate) fn secs(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value < 0.01 {
        format!("{:.1} ms", value * 1e3)
    } else if value < 1.0 {
        format!("{:.0} ms", value * 1e3)
    } else {
        format!("{value:.2} s")
    }
}

pub(crate) fn megabytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        "n/a".to_owned()
    } else if bytes < 1e6 {
        format!("{:.0} kB", bytes / 1e3)
    } else {
        format!("{:.2} MB", bytes / 1e6)
    }
}
