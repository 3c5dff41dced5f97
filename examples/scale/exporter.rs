//! The alternative on the same data: the pusher as a scrape exporter,
//! scraped by a Prometheus agent or vmagent that remote-writes.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::json;

use super::measure::{memory, Monitor};
use super::options::Options;
use super::phase::{container_series, fetch_text, mark, metric_sum, pusher_command, wait_log};
use super::pusher_log::PusherLog;
use super::results::{Agent, ProcessCost, ScrapeResult};
use super::support::process::{free_port, require_binary, ChildGuard};
use super::support::receiver;
use super::support::wait::wait_until;
use super::taps::{ScrapeTap, WriteTap};
use super::Env;

/// The same binary as a scrape exporter, scraped by `kind` of agent that
/// remote-writes to a fresh receiver.
pub(crate) async fn scrape_phase(
    options: &Options,
    env: &Env,
    kind: Agent,
) -> anyhow::Result<ScrapeResult> {
    progress!(
        options,
        "scrape + {}: starting the receiver, the exporter and the agent",
        kind.name()
    );
    let receiver = receiver::Prometheus::start().await;
    let tap = WriteTap::start(receiver.write_url(), false).await?;
    let address = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut exporter = ChildGuard::spawn(
        "container-image-pusher (exporter)",
        &mut pusher_command(options, env, &address),
    );
    let scrape_tap = ScrapeTap::start(format!("http://{address}/metrics")).await?;
    let agent_dir = tempfile::Builder::new().prefix("scale-agent-").tempdir()?;
    let interval = format!("{}ms", options.interval.as_millis());
    let mut config = json!({
        "global": { "scrape_interval": interval, "scrape_timeout": interval },
        "scrape_configs": [{
            "job_name": "container-image-exporter",
            "static_configs": [{ "targets": [scrape_tap.url] }],
            // The exporter's self-metrics are not part of the inventory the
            // pusher pushes: compare the same series.
            "metric_relabel_configs": [{
                "source_labels": ["__name__"],
                "regex": "container_image_pusher_.*",
                "action": "drop",
            }],
        }],
    });
    let config_path = agent_dir.path().join("agent.yml");
    let data_dir = agent_dir.path().join("data");
    let agent_port = free_port();
    let agent_url = format!("http://127.0.0.1:{agent_port}");
    let (mut agent, ready_path) = match kind {
        Agent::Prometheus => {
            config["remote_write"] = json!([{ "url": tap.url }]);
            std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
            let agent = ChildGuard::spawn(
                "prometheus (agent)",
                Command::new(require_binary("prometheus", "prometheus"))
                    .arg("--enable-feature=agent")
                    .arg(format!("--config.file={}", config_path.display()))
                    .arg(format!("--storage.agent.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{agent_port}"))
                    .arg("--log.level=warn"),
            );
            (agent, "/-/ready")
        }
        Agent::Vmagent => {
            // vmagent takes its remote write from flags, and rejects
            // unknown fields in the scrape config.
            std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
            let binary = env.vmagent.as_ref().context("vmagent is not measured")?;
            let agent = ChildGuard::spawn(
                "vmagent",
                Command::new(binary)
                    .arg(format!("-promscrape.config={}", config_path.display()))
                    .arg(format!("-remoteWrite.url={}", tap.url))
                    // The receiver (Prometheus 2.42) knows only Prometheus'
                    // protocol; vmagent would otherwise try its own first.
                    .arg("-remoteWrite.forcePromProto=true")
                    .arg(format!("-remoteWrite.tmpDataPath={}", data_dir.display()))
                    // The exporter's /metrics is ~42 MB at 100k containers;
                    // the default limit is 16 MiB (Prometheus has none).
                    .arg("-promscrape.maxScrapeSize=1GiB")
                    .arg(format!("-httpListenAddr=127.0.0.1:{agent_port}"))
                    .arg("-loggerLevel=WARN"),
            );
            (agent, "/health")
        }
    };
    agent
        .wait_until_http(
            &format!("{agent_url}{ready_path}"),
            Duration::from_secs(60),
            |s| s.is_success(),
        )
        .await
        .map_err(|e| anyhow!(e))?;
    let monitor = Monitor::start(vec![exporter.id(), agent.id()]);
    let mut log = PusherLog::default();
    wait_log(
        &mut exporter,
        &mut log,
        Duration::from_secs(1800).max(options.interval * 4),
        "the exporter's first snapshot",
        |log| !log.snapshots.is_empty(),
    )
    .await?;
    let first_snapshot_seconds = started.elapsed().as_secs_f64();
    progress!(
        options,
        "  first snapshot after {first_snapshot_seconds:.1}s"
    );
    // Warm up: two more ticks and two scrapes of the full inventory.
    let since = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + options.interval * 8 + Duration::from_secs(240);
    loop {
        log.poll(&exporter);
        exporter.check_running().map_err(|e| anyhow!(e))?;
        agent.check_running().map_err(|e| anyhow!(e))?;
        if log.snapshots.len() >= 3 && scrape_tap.between(since, i64::MAX).0 >= 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the exporter or the agent did not warm up within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counters_before = agent_counters(&agent_url, kind).await;
    let start = mark(options, &monitor, &exporter, &mut log, env, &tap).await;
    // End at an idle moment after `warm_ticks` ticks and as many scrapes.
    let deadline = Instant::now() + options.interval * (options.warm_ticks as u32 * 3 + 4);
    let end = loop {
        tokio::time::sleep(options.interval / 4).await;
        log.poll(&exporter);
        exporter.check_running().map_err(|e| anyhow!(e))?;
        agent.check_running().map_err(|e| anyhow!(e))?;
        let ticks = log.snapshots.len() - start.snapshots;
        let scrapes = scrape_tap.between(start.wall_ms, i64::MAX).0;
        if ticks < options.warm_ticks || scrapes < options.warm_ticks {
            if Instant::now() > deadline {
                bail!("only {ticks} ticks and {scrapes} scrapes in the window");
            }
            continue;
        }
        let candidate = mark(options, &monitor, &exporter, &mut log, env, &tap).await;
        let ticks = candidate.snapshots - start.snapshots;
        let scrapes = scrape_tap.between(start.wall_ms, candidate.wall_ms).0;
        if ticks == scrapes || Instant::now() > deadline {
            break candidate;
        }
    };
    // The Prometheus agent sends a partial batch only after its
    // batch_send_deadline (5s), vmagent after its flush interval (1s): wait
    // until samples of a scrape after the window arrive (an agent sends in
    // scrape order), then count the samples by their (scrape) timestamps,
    // not by arrival.
    let arrived = wait_until(options.interval * 2 + Duration::from_secs(30), || {
        tap.newest_timestamp().is_some_and(|ms| ms > end.wall_ms)
    })
    .await;
    if !arrived {
        bail!("no samples scraped after the window arrived at the receiver");
    }
    let (share, scrape_groups) = tap.between(start.wall_ms, end.wall_ms);
    let counters_after = agent_counters(&agent_url, kind).await;
    let ticks = end.snapshots - start.snapshots;
    let (scrapes, scraped_bytes, scraped_seconds) = scrape_tap.between(start.wall_ms, end.wall_ms);
    let intervals = ticks.max(1);
    let per = |value: f64| value / intervals as f64;
    let max_rss = monitor.max_rss(start.at, end.at);
    let cost = |p: usize, pid: u32| ProcessCost {
        cpu_seconds_per_interval: per(end.cpu[p] - start.cpu[p]),
        steady_rss_bytes: end.rss[p],
        max_rss_bytes: max_rss[p],
        peak_rss_bytes: memory(pid).1,
    };
    let wire = end.wire.minus(&start.wire);
    let agent_metrics: BTreeMap<String, f64> = counters_after
        .iter()
        .map(|(name, after)| {
            let before = counters_before.get(name).copied().unwrap_or(0.0);
            (name.clone(), after - before)
        })
        .collect();
    let per_scrape = |value: f64| value / scrape_groups.max(1) as f64;
    let samples_per_scrape = per_scrape(share.samples as f64);
    // The agent's own count, as bytes per sample it sent times the samples
    // of one scrape (its counters also move after the window).
    let (bytes_counters, samples_counter) = kind.sent_counters();
    let agent_bytes_per_scrape = match (
        bytes_counters
            .iter()
            .find_map(|name| agent_metrics.get(*name)),
        agent_metrics.get(samples_counter),
    ) {
        (Some(bytes), Some(samples)) if *samples > 0.0 => bytes / samples * samples_per_scrape,
        _ => f64::NAN,
    };
    let result = ScrapeResult {
        agent_kind: kind,
        first_snapshot_seconds,
        window_seconds: end.at.duration_since(start.at).as_secs_f64(),
        aligned: start.aligned && end.aligned,
        intervals,
        ticks,
        scrapes,
        exporter: cost(0, exporter.id()),
        agent: cost(1, agent.id()),
        scrape_bytes: scraped_bytes as f64 / scrapes.max(1) as f64,
        scrape_seconds: scraped_seconds / scrapes.max(1) as f64,
        scrape_groups,
        samples_per_scrape,
        wire_compressed_bytes_per_interval: per_scrape(share.compressed),
        wire_raw_bytes_per_interval: per_scrape(share.raw),
        wire_requests_per_interval: per_scrape(share.requests),
        agent_bytes_per_scrape,
        wire,
        agent_metrics,
        receiver_container_series: container_series(&receiver, options.containers).await,
    };
    progress!(
        options,
        "  exporter {:.3} + {} {:.3} CPU s/interval over {} ticks and {} scrapes",
        result.exporter.cpu_seconds_per_interval,
        kind.name(),
        result.agent.cpu_seconds_per_interval,
        ticks,
        scrapes
    );
    drop(monitor);
    let _ = agent.terminate(Duration::from_secs(30)).await;
    let _ = exporter.terminate(Duration::from_secs(30)).await;
    Ok(result)
}

/// The agent's remote-write and scrape counters that exist in this version.
pub(crate) async fn agent_counters(url: &str, kind: Agent) -> BTreeMap<String, f64> {
    let text = fetch_text(&format!("{url}/metrics")).await;
    kind.counters()
        .iter()
        .copied()
        .filter(|name| {
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#'))
        })
        .map(|name| (name.to_owned(), metric_sum(&text, name, &[])))
        .collect()
}
