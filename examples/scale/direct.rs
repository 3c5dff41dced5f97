//! The direct push: the pusher remote-writing to Prometheus.

use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::measure::{memory, Monitor};
use super::options::Options;
use super::phase::{
    api_counts, container_series, mark, pusher_command, self_metrics, wait_log, window, Mark,
};
use super::pusher_log::PusherLog;
use super::results::DirectResult;
use super::support::process::{free_port, ChildGuard};
use super::support::receiver;
use super::taps::{distinct_series, WriteTap};
use super::Env;

/// The pusher with a remote-write URL: cold tick, warm ticks, tag expiry.
/// Also returns the raw bodies of one warm push, for the snappy measurement.
pub(crate) async fn direct_phase(
    options: &Options,
    env: &Env,
) -> anyhow::Result<(DirectResult, Vec<Vec<u8>>)> {
    progress!(options, "direct push: starting the receiver and the pusher");
    let receiver = receiver::Prometheus::start().await;
    let tap = WriteTap::start(receiver.write_url(), true).await?;
    let address = format!("127.0.0.1:{}", free_port());
    let mut command = pusher_command(options, env, &address);
    command.args(["--remote-write-url", &tap.url]);
    let started = Instant::now();
    let mut child = ChildGuard::spawn("container-image-pusher", &mut command);
    let monitor = Monitor::start(vec![child.id()]);
    let mut log = PusherLog::default();
    let zero = Mark {
        at: started,
        wall_ms: 0,
        aligned: true,
        cpu: vec![0.0],
        rss: vec![0],
        snapshots: 0,
        pushes: 0,
        registry: env.registry.counts(),
        api: api_counts(&env.api),
        wire: tap.totals(),
    };
    let first_timeout = Duration::from_secs(1800).max(options.interval * 4);
    wait_log(
        &mut child,
        &mut log,
        first_timeout,
        "the first push",
        |log| !log.pushes.is_empty(),
    )
    .await?;
    let first_push_seconds = started.elapsed().as_secs_f64();
    let first_push_registry = env.registry.counts().minus(&zero.registry);
    progress!(
        options,
        "  first push after {first_push_seconds:.1}s ({} registry requests by then)",
        first_push_registry.total()
    );
    if let Some(first) = log.snapshots.first() {
        progress!(
            options,
            "  first snapshot: {:.1}s waiting for the first lists, {:.1}s resolving, {:.1}s in all",
            first.ready_after,
            first.resolved_in,
            first.took
        );
    }
    // The seconds from the start until the log shows `what`.
    let mut seconds_until = async |what: &str, done: fn(&PusherLog) -> bool| {
        wait_log(&mut child, &mut log, first_timeout, what, done).await?;
        let seconds = started.elapsed().as_secs_f64();
        progress!(options, "  {what} after {seconds:.1}s");
        anyhow::Ok(seconds)
    };
    // The images' own series (manifests, configs) follow the digests;
    // attachments, bases, verdicts and versions follow the first push: the
    // cold tick ends with the first push that has them.
    let metadata_push_seconds = seconds_until(
        "the first push with every image's metadata",
        PusherLog::pushed_metadata,
    )
    .await?;
    let complete_push_seconds =
        seconds_until("the first complete push", PusherLog::pushed_complete).await?;
    let since_start = |at: f64| at - zero_unix(started);
    for (message, at, took) in &log.stages {
        let at = since_start(*at);
        progress!(options, "  at {at:.1}s, after {took:.1}s: {message}");
    }
    let cold_end = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let cold_registry = env.registry.counts();
    // With --verify, the verifications of the cold tick: read now, before
    // the warm-up tick, so the warm window does not pay for the page.
    let cold_signature_verifications = match env.verify_key {
        Some(_) => Some(
            self_metrics(&format!("http://{address}/metrics"))
                .await
                .signature_verifications,
        ),
        None => None,
    };
    progress!(
        options,
        "  cold: {} referrer listings, {} tag lists",
        cold_registry.referrer_listings,
        cold_registry.tag_lists
    );

    // One warm-up tick, then the measured ones.
    let n = cold_end.pushes;
    let tick_timeout = options.interval * 4 + Duration::from_secs(120);
    wait_log(
        &mut child,
        &mut log,
        tick_timeout,
        "a warm-up tick",
        |log| log.pushes.len() > n,
    )
    .await?;
    let warm_start = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let n = warm_start.pushes;
    let ticks = options.warm_ticks;
    wait_log(
        &mut child,
        &mut log,
        tick_timeout * ticks as u32,
        "the warm ticks",
        |log| log.pushes.len() >= n + ticks,
    )
    .await?;
    let warm_end = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let warm = window(&log, &warm_start, &warm_end);
    progress!(
        options,
        "  warm: {:.3} CPU s/tick, {} HEAD + {} GET + {} referrer listings + {} tag lists over {} ticks",
        warm.cpu_seconds_per_tick,
        warm.registry.heads(),
        warm.registry.gets(),
        warm.registry.referrer_listings,
        warm.registry.tag_lists,
        warm.ticks
    );
    let warm_max_rss = monitor.max_rss(warm_start.at, warm_end.at)[0];
    let bodies = tap.bodies_of_push(log.pushes.last().map_or(0, |p| p.series + p.stale));
    let distinct_series_per_push = distinct_series(&bodies);

    let expiry = if options.expiry {
        expiry_window(
            options,
            env,
            &tap,
            &monitor,
            &mut child,
            &mut log,
            started,
            complete_push_seconds,
            &warm_end,
        )
        .await?
    } else {
        window(&log, &warm_end, &warm_end)
    };
    let peak_rss = memory(child.id()).1;

    // Only now, with the measurements done, ask the pusher itself.
    let self_metrics = self_metrics(&format!("http://{address}/metrics")).await;
    let receiver_container_series = container_series(&receiver, options.containers).await;
    drop(monitor);
    let _ = child.terminate(Duration::from_secs(30)).await;
    let result = DirectResult {
        first_push_seconds,
        first_push_registry,
        metadata_push_seconds,
        complete_push_seconds,
        cold: window(&log, &zero, &cold_end),
        warm_window_overlapped_expiry: warm_end.at >= started + options.cache_duration,
        warm,
        expiry,
        peak_rss_bytes: peak_rss,
        steady_rss_bytes: warm_end.rss[0],
        warm_max_rss_bytes: warm_max_rss,
        self_metrics,
        cold_signature_verifications,
        receiver_container_series,
        distinct_series_per_push,
        warnings: log.warnings,
        first_warnings: log.first_warnings.clone(),
    };
    Ok((result, bodies))
}

/// The Unix time (seconds) of `started`, to place the pusher's log lines.
fn zero_unix(started: Instant) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    now - started.elapsed().as_secs_f64()
}

/// The ticks around the tag cache's expiry: every tag is asked again.
#[allow(clippy::too_many_arguments)]
async fn expiry_window(
    options: &Options,
    env: &Env,
    tap: &WriteTap,
    monitor: &Monitor,
    child: &mut ChildGuard,
    log: &mut PusherLog,
    started: Instant,
    complete_push_seconds: f64,
    warm_end: &Mark,
) -> anyhow::Result<super::results::Window> {
    let tick_timeout = options.interval * 4 + Duration::from_secs(120);
    // Every tag's digest expires within [start, first complete push] +
    // cache: wait past that, then for two more ticks, the second of which
    // started after it.
    let expiry_at =
        started + Duration::from_secs_f64(complete_push_seconds) + options.cache_duration;
    progress!(
        options,
        "  waiting {:.0}s for the tag cache to expire",
        expiry_at
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    );
    // A moment on the clock, not an event: waited for while the log is
    // read and the pusher watched.
    while Instant::now() < expiry_at {
        log.poll(child);
        child.check_running().map_err(|e| anyhow!(e))?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = log.pushes.len();
    wait_log(
        child,
        log,
        tick_timeout * 2,
        "the ticks after the tag cache expired",
        |log| log.pushes.len() >= n + 2,
    )
    .await?;
    let expiry_end = mark(options, monitor, child, log, env, tap).await;
    let expiry = window(log, warm_end, &expiry_end);
    progress!(
        options,
        "  expiry: {} HEAD + {} GET over {} ticks",
        expiry.registry.heads(),
        expiry.registry.gets(),
        expiry.ticks
    );
    Ok(expiry)
}
