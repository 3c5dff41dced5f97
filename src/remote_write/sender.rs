//! Long-running delivery to one endpoint, in a task of its own.
//!
//! An inventory is a state, not a log: only the newest snapshot matters.
//! Each sender holds at most one waiting snapshot; a newer one replaces it,
//! and a push stuck in retries gives way to it. So a slow or failing
//! endpoint delays no other, and a long outage costs no memory: when the
//! receiver comes back, the newest snapshot lands. A pause the receiver
//! asks for (`Retry-After`) holds every push until it ends, across ticks.
//!
//! The sender also remembers which series the endpoint holds — those it
//! accepted, nothing else — so that a series that disappears (pod deleted,
//! tag moved, label removed) is sent once more as a stale marker and
//! vanishes from queries at once instead of lingering for Prometheus'
//! 5-minute lookback. A failed push adds nothing to that set, so an outage
//! with churn costs no memory either. The set holds each series' 64-bit
//! label-set hash, not its labels: the labels of a series that is gone are
//! taken from the last snapshot, which is alive anyway (published, or the
//! one being pushed), so remembering 160k series costs a few MB.
//!
//! The push task is supervised: should it end (a panic), it is restarted
//! with an ERROR line, `container_image_pusher_sender_restarts_total`, and
//! the readiness condition `sender:<endpoint>` failing until the next push
//! is accepted. Failures are logged when they start, change kind or end,
//! and summarised every [`SUMMARY_EVERY`] while they last.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;
use super::outcome::FailureClass;
use super::{Endpoint, PushError, PushReport, Settled};
use crate::readiness::Readiness;
use crate::series::{LabelSet, Series, Snapshot};

/// How often a failure that goes on is summarised in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(600);

/// A slot for one snapshot: putting a new one in replaces the old.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Option<Arc<Snapshot>>>,
    notify: Notify,
    closed: AtomicBool,
    /// Wakes a sender waiting out a receiver's pause at shutdown.
    closing: Notify,
}

impl Mailbox {
    /// The slot. A panic while it was locked (there is none: it only
    /// moves an `Arc`) could not leave it half-changed, so a poisoned lock
    /// is used as it is.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, snapshot: Arc<Snapshot>) -> bool {
        let replaced = self.slot().replace(snapshot).is_some();
        self.notify.notify_one();
        replaced
    }

    fn waiting(&self) -> bool {
        self.slot().is_some()
    }

    /// The next snapshot; `None` once closed and empty.
    async fn take(&self) -> Option<Arc<Snapshot>> {
        loop {
            if let Some(snapshot) = self.slot().take() {
                return Some(snapshot);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.notify.notified().await;
        }
    }

    /// The waiting snapshot, if any, without waiting for one.
    fn try_take(&self) -> Option<Arc<Snapshot>> {
        self.slot().take()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sleeps for `pause`; false when the mailbox was closed meanwhile.
    async fn sleep_unless_closed(&self, pause: Duration) -> bool {
        if self.is_closed() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = self.closing.notified() => false,
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
        self.closing.notify_one();
    }
}

/// Handle to the task that pushes to one endpoint.
pub struct Sender {
    name: String,
    mailbox: Arc<Mailbox>,
    task: JoinHandle<()>,
    metrics: Metrics,
}

impl Sender {
    /// Starts pushing to `endpoint`; `readiness` fails while its push task
    /// was restarted and has not pushed since.
    pub fn spawn(endpoint: Endpoint, metrics: Metrics, readiness: Arc<Readiness>) -> Sender {
        let mailbox = Arc::new(Mailbox::default());
        let name = endpoint.name().to_owned();
        let endpoint = Arc::new(endpoint);
        let start = {
            let (mailbox, metrics, readiness) =
                (mailbox.clone(), metrics.clone(), readiness.clone());
            move || {
                tokio::spawn(run(
                    endpoint.clone(),
                    mailbox.clone(),
                    metrics.clone(),
                    readiness.clone(),
                ))
            }
        };
        let task = tokio::spawn(supervise(
            name.clone(),
            mailbox.clone(),
            metrics.clone(),
            readiness.clone(),
            start,
        ));
        Sender {
            name,
            mailbox,
            task,
            metrics,
        }
    }

    /// Hands over a snapshot; one still waiting is dropped in its favour.
    pub fn send(&self, snapshot: Arc<Snapshot>) {
        if self.mailbox.put(snapshot) {
            self.metrics
                .snapshots_superseded
                .with_label_values(&[&self.name])
                .inc();
        }
    }

    /// Lets the push in flight (and a waiting snapshot) finish, for at most
    /// `grace`; a snapshot held back by a receiver's pause is not pushed,
    /// and a request that fails is not retried (each is tried at most once
    /// more, so a dead receiver costs one connect timeout, not the grace).
    pub async fn shutdown(self, grace: Duration) {
        self.mailbox.close();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            warn!(
                endpoint = self.name,
                "push still in flight at shutdown; abandoned"
            );
        }
    }
}

/// The readiness condition of one endpoint's sender.
fn condition(endpoint: &str) -> String {
    format!("sender:{endpoint}")
}

/// Runs the push task started by `start` until the mailbox closes; a task
/// that ends before (a panic: the push loop itself never returns early) is
/// restarted, counted, and fails readiness until a push is accepted again.
/// A restarted task has forgotten which series the endpoint holds, so those
/// that disappear meanwhile go stale by Prometheus' lookback instead of by
/// marker, as after a restart of the process.
async fn supervise(
    name: String,
    mailbox: Arc<Mailbox>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    start: impl Fn() -> JoinHandle<()>,
) {
    loop {
        let why = match start().await {
            Ok(()) if mailbox.is_closed() => return,
            Ok(()) => "it returned".to_owned(),
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                format!("it panicked: {message}")
            }
            Err(e) => format!("it was cancelled: {e}"),
        };
        error!(
            endpoint = name,
            why, "the push task ended unexpectedly; restarting it"
        );
        metrics.sender_restarts.with_label_values(&[&name]).inc();
        readiness.fail(
            &condition(&name),
            format!("the push task ended ({why}) and was restarted; ready again once a push is accepted"),
        );
        if mailbox.is_closed() {
            return;
        }
    }
}

/// What the log says about a run of failures: its start, a change of
/// kind, a periodic summary, its end. Everything else is debug.
#[derive(Debug, PartialEq)]
enum LogLine {
    Started,
    Changed { from: FailureClass },
    Summary { failed: u64 },
    Recovered { failed: u64, lasted: Duration },
}

/// A run of failed pushes to one endpoint.
struct Failing {
    class: FailureClass,
    since: Instant,
    failed: u64,
    summarised_at: Instant,
    failed_since_summary: u64,
}

#[derive(Default)]
struct FailureLog {
    failing: Option<Failing>,
}

impl FailureLog {
    /// Records a push outcome at `now`: `None` for success, else the class
    /// of the failure. Returns the line to log, if any.
    fn record(&mut self, failure: Option<FailureClass>, now: Instant) -> Option<LogLine> {
        let Some(class) = failure else {
            let failing = self.failing.take()?;
            return Some(LogLine::Recovered {
                failed: failing.failed,
                lasted: now.saturating_duration_since(failing.since),
            });
        };
        let Some(failing) = &mut self.failing else {
            self.failing = Some(Failing {
                class,
                since: now,
                failed: 1,
                summarised_at: now,
                failed_since_summary: 0,
            });
            return Some(LogLine::Started);
        };
        failing.failed = failing.failed.saturating_add(1);
        failing.failed_since_summary = failing.failed_since_summary.saturating_add(1);
        if failing.class != class {
            let from = std::mem::replace(&mut failing.class, class);
            return Some(LogLine::Changed { from });
        }
        if now.saturating_duration_since(failing.summarised_at) >= SUMMARY_EVERY {
            let failed = std::mem::take(&mut failing.failed_since_summary);
            failing.summarised_at = now;
            return Some(LogLine::Summary { failed });
        }
        None
    }
}

/// Hashes the label-set hashes (already random-keyed 64-bit values) no
/// further.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashIds = BuildHasherDefault<PassThrough>;

/// The series an endpoint holds (it accepted them and no stale marker
/// for them since), by label-set hash, and the labels of those that left
/// the snapshots: the stale markers still to send.
///
/// Every held hash is a series of `last` or of `gone`, so a stale marker's
/// labels are always at hand without keeping any series twice.
#[derive(Default)]
struct Held {
    held: HashSet<u64, HashIds>,
    gone: HashMap<u64, LabelSet, HashIds>,
    /// Series the receiver refused one by one (and stored the rest of
    /// their request): not sent to it again while they are unchanged.
    refused: HashSet<u64, HashIds>,
    /// The snapshot pushed last.
    last: Option<Arc<Snapshot>>,
}

impl Held {
    /// Takes `snapshot` as the one to push: returns the stale markers to
    /// push with it, for held series it no longer has.
    fn next(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Series> {
        // A warm tick's snapshot is the last one's label sets, in the same
        // order: then no series left or came back, and `gone` and `refused`
        // (which the last `next` made disjoint from, and a subset of, the
        // last snapshot's series) stay as they are, without a set of 160k
        // hashes built to find that out.
        let unchanged = self.last.as_ref().is_some_and(|last| {
            last.series.len() == snapshot.series.len()
                && last
                    .series
                    .iter()
                    .zip(&snapshot.series)
                    .all(|(a, b)| a.labels.ptr_eq(&b.labels))
        });
        if unchanged {
            self.last = Some(snapshot.clone());
            return self.gone.values().cloned().map(Series::stale).collect();
        }
        let current: HashSet<u64, HashIds> =
            snapshot.series.iter().map(|s| s.labels.hash()).collect();
        if let Some(last) = self.last.take() {
            for series in &last.series {
                let hash = series.labels.hash();
                if self.held.contains(&hash) && !current.contains(&hash) {
                    self.gone.insert(hash, series.labels.clone());
                }
            }
        }
        // A series that came back is pushed as a series again.
        self.gone.retain(|hash, _| !current.contains(hash));
        // A refused series that changed or left is forgotten.
        self.refused.retain(|hash| current.contains(hash));
        self.last = Some(snapshot.clone());
        self.gone.values().cloned().map(Series::stale).collect()
    }

    /// Only what the receiver accepted changes what it holds: a series it
    /// took is held, a stale marker it took releases its series. A stale
    /// marker it refuses for good is not sent again (the series goes stale
    /// by Prometheus' lookback), or every push would repeat it, and the set
    /// would grow with churn.
    fn settle(&mut self, batch: &[&Series], settled: Settled) {
        for series in batch {
            let hash = series.labels.hash();
            match (settled, series.is_stale()) {
                (Settled::Accepted, false) => {
                    self.held.insert(hash);
                }
                (Settled::Offending, false) => {
                    self.held.remove(&hash);
                    self.refused.insert(hash);
                }
                (_, true) => {
                    self.held.remove(&hash);
                    self.gone.remove(&hash);
                }
                (Settled::Refused, false) => {}
            }
        }
    }

    fn len(&self) -> usize {
        self.held.len()
    }
}

async fn run(
    endpoint: Arc<Endpoint>,
    mailbox: Arc<Mailbox>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
) {
    let name = endpoint.name().to_owned();
    let mut held = Held::default();
    let mut log = FailureLog::default();
    let mut refusals = Refusals::default();
    let mut first = true;
    while let Some(mut snapshot) = mailbox.take().await {
        if let Some(pause) = endpoint.pause_left() {
            debug!(
                endpoint = name,
                ?pause,
                "waiting for the receiver's pause to end"
            );
            if !mailbox.sleep_unless_closed(pause).await {
                info!(
                    endpoint = name,
                    "shutting down during the receiver's pause; the waiting snapshot is not pushed"
                );
                return;
            }
            if let Some(newer) = mailbox.try_take() {
                metrics
                    .snapshots_superseded
                    .with_label_values(&[&name])
                    .inc();
                snapshot = newer;
            }
        }
        let stale = held.next(&snapshot);
        // At shutdown a request is tried once, not retried: a dead receiver
        // must not hold the pod for the whole grace period.
        let superseded = || mailbox.waiting() || mailbox.is_closed();
        let refused = held.refused.clone();
        let skip = move |s: &Series| refused.contains(&s.labels.hash());
        let mut settle = |batch: &[&Series], settled: Settled| held.settle(batch, settled);
        let result = endpoint
            .push(&snapshot, &stale, &metrics, &superseded, &skip, &mut settle)
            .await;
        metrics
            .held_series
            .with_label_values(&[&name])
            .set(held.len() as i64);
        let class = |e: &PushError| e.class().unwrap_or(FailureClass::Local);
        let line = log.record(result.as_ref().err().map(class), Instant::now());
        match result {
            Ok(report) => {
                refusals.record(&name, &report, held.refused.len());
                log_accepted(&name, &report, line, stale.len(), first);
                readiness.clear(&condition(&name));
                first = false;
            }
            Err(PushError::Superseded { last, .. }) if mailbox.is_closed() => {
                warn!(
                    endpoint = name,
                    error = %last,
                    "shutting down: the last push failed and is not retried"
                );
            }
            Err(e) => {
                if matches!(e, PushError::Superseded { .. }) {
                    metrics
                        .snapshots_superseded
                        .with_label_values(&[&name])
                        .inc();
                }
                log_failure(&name, &e, line);
            }
        }
    }
}

/// What the log says of an accepted push: the end of a run of failures,
/// the first success, and every push at debug level.
fn log_accepted(name: &str, report: &PushReport, line: Option<LogLine>, stale: usize, first: bool) {
    if let Some(LogLine::Recovered { failed, lasted }) = line {
        info!(
            endpoint = name,
            failed_pushes = failed,
            lasted = %humantime::format_duration(round(lasted)),
            series = report.series,
            stale = stale,
            "pushing again: the receiver accepted a snapshot"
        );
    } else if first {
        // Every tick's success is news only once.
        info!(
            endpoint = name,
            requests = report.requests,
            series = report.series,
            bytes = report.bytes,
            "first push accepted; later ones are logged at debug level"
        );
    }
    // Every push, for whoever measures them (the scale harness).
    debug!(
        endpoint = name,
        requests = report.requests,
        series = report.series,
        stale = stale,
        bytes = report.bytes,
        "pushed"
    );
}

/// What the log says of a failed push: a run of failures' start, change
/// of kind or summary; every failure at debug level.
fn log_failure(name: &str, e: &PushError, line: Option<LogLine>) {
    match line {
        Some(LogLine::Started) => {
            warn!(endpoint = name, error = %e, "pushes are failing; logging again when this changes or ends, with a summary every 10m")
        }
        Some(LogLine::Changed { from }) => {
            warn!(endpoint = name, error = %e, was = %from, "pushes are now failing differently")
        }
        Some(LogLine::Summary { failed }) => {
            warn!(endpoint = name, failed_pushes = failed, last_error = %e, "pushes still failing (summary of the last 10m)")
        }
        _ => debug!(endpoint = name, error = %e, "push failed"),
    }
}

/// The receiver's partial refusals and overlaps, logged when they start,
/// change text or end, not at every push.
#[derive(Default)]
struct Refusals {
    partial: Option<String>,
    overlap: bool,
}

impl Refusals {
    fn record(&mut self, endpoint: &str, report: &PushReport, refused: usize) {
        match (&report.partial, &self.partial) {
            (Some(now), Some(was)) if same_refusal(now, was) => {}
            (Some(now), _) => warn!(
                endpoint,
                refused_series = report.refused,
                receiver_said = %now,
                "the receiver refused some series and stored the rest of their requests; those series are not sent to it again until they change (container_image_pusher_series_refused_total)"
            ),
            (None, Some(_)) if refused == 0 => {
                info!(endpoint, "the receiver refuses no series any more")
            }
            (None, _) => {}
        }
        if report.partial.is_some() || refused == 0 {
            self.partial = report.partial.clone();
        }
        match (&report.overlap, self.overlap) {
            (Some(message), false) => warn!(
                endpoint,
                receiver_said = %message,
                "the receiver holds newer samples than this push's: another pusher of the cluster writes to it too; the older samples are dropped for this endpoint, the push is not failed"
            ),
            (None, true) => info!(
                endpoint,
                "no more samples refused as older than the receiver's"
            ),
            _ => {}
        }
        self.overlap = report.overlap.is_some();
    }
}

/// Whether two refusals say the same: Mimir names the offending series,
/// which differs from one to the next; its error ID (the text before
/// `series`) does not.
fn same_refusal(a: &str, b: &str) -> bool {
    let reason = |t: &str| match t.find("err-mimir-") {
        Some(at) => t[at..].split(')').next().unwrap_or_default().to_owned(),
        None => t.split("series: ").next().unwrap_or(t).to_owned(),
    };
    reason(a) == reason(b)
}

/// Whole seconds, for log lines.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::fixtures::{common, pod};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn what_the_receiver_accepted_and_left_is_marked_stale_until_it_is_taken() {
        let common = common("j", &[]);
        let (a, b, c) = (
            pod(&common, "a", "x"),
            pod(&common, "b", "x"),
            pod(&common, "c", "x"),
        );
        let snapshot = |series: &[&Series]| {
            Arc::new(Snapshot {
                series: series.iter().map(|s| (*s).clone()).collect(),
                ..Default::default()
            })
        };
        let refs = |s: &Arc<Snapshot>| -> Vec<Series> { s.series.clone() };
        let mut held = Held::default();

        let first = snapshot(&[&a, &b]);
        assert!(held.next(&first).is_empty());
        let series = refs(&first);
        // The receiver took a, and refused b for good.
        held.settle(&[&series[0]], Settled::Accepted);
        held.settle(&[&series[1]], Settled::Refused);
        assert_eq!(held.len(), 1);

        // Both gone: only a, which the receiver holds, gets a marker.
        let second = snapshot(&[&c]);
        let stale = held.next(&second);
        assert_eq!(stale.len(), 1);
        assert!(stale[0].is_stale());
        assert_eq!(stale[0].labels, a.labels);
        // The push failed (no answer): nothing settled, the marker waits.
        let third = snapshot(&[&c]);
        let stale = held.next(&third);
        assert_eq!(stale.len(), 1, "sent again with the next snapshot");
        let pushed: Vec<&Series> = third.series.iter().chain(&stale).collect();
        held.settle(&pushed, Settled::Accepted);
        assert_eq!(held.len(), 1, "c held, a released");
        assert!(
            held.next(&snapshot(&[&c])).is_empty(),
            "a marker is sent until taken, then never"
        );

        // A series that leaves and comes back before its marker is taken
        // is a series again, not a marker.
        let without_c = snapshot(&[]);
        assert_eq!(held.next(&without_c).len(), 1);
        assert!(held.next(&snapshot(&[&c])).is_empty());
        assert!(held.gone.is_empty());

        // A marker refused for good is not sent again.
        assert_eq!(held.next(&snapshot(&[])).len(), 1);
        held.settle(&[&Series::stale(c.labels.clone())], Settled::Refused);
        assert!(held.next(&snapshot(&[])).is_empty());
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn series_refused_one_by_one_are_not_held_and_forgotten_once_gone() {
        let common = common("j", &[]);
        let (a, b) = (pod(&common, "a", "x"), pod(&common, "b", "x"));
        let snapshot = |series: &[&Series]| {
            Arc::new(Snapshot {
                series: series.iter().map(|s| (*s).clone()).collect(),
                ..Default::default()
            })
        };
        let mut held = Held::default();
        let first = snapshot(&[&a, &b]);
        assert!(held.next(&first).is_empty());
        held.settle(&[&first.series[0]], Settled::Accepted);
        held.settle(&[&first.series[1]], Settled::Offending);
        assert_eq!(held.len(), 1);
        assert!(held.refused.contains(&b.labels.hash()));
        // Still in the snapshot: still refused, and no marker when it goes.
        assert!(held.next(&snapshot(&[&a, &b])).is_empty());
        assert!(held.refused.contains(&b.labels.hash()));
        let stale = held.next(&snapshot(&[&a]));
        assert!(stale.is_empty(), "b was never held: {stale:?}");
        assert!(held.refused.is_empty(), "forgotten once gone");
    }

    #[test]
    fn failures_are_logged_when_they_start_change_and_end() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(log.record(None, at(0)), None, "success is no news");
        let refused = Some(FailureClass::Refused(400));
        assert_eq!(log.record(refused, at(1)), Some(LogLine::Started));
        for tick in 2..100 {
            assert_eq!(log.record(refused, at(tick)), None, "tick {tick}");
        }
        assert_eq!(
            log.record(Some(FailureClass::ServerError), at(100)),
            Some(LogLine::Changed {
                from: FailureClass::Refused(400)
            })
        );
        assert_eq!(
            log.record(Some(FailureClass::Network), at(101)),
            Some(LogLine::Changed {
                from: FailureClass::ServerError
            })
        );
        for tick in 102..601 {
            assert_eq!(log.record(Some(FailureClass::Network), at(tick)), None);
        }
        assert_eq!(
            log.record(Some(FailureClass::Network), at(601)),
            Some(LogLine::Summary { failed: 600 })
        );
        assert_eq!(log.record(Some(FailureClass::Network), at(602)), None);
        assert_eq!(
            log.record(None, at(611)),
            Some(LogLine::Recovered {
                failed: 602,
                lasted: Duration::from_secs(610)
            })
        );
        assert_eq!(log.record(None, at(612)), None);
        assert_eq!(log.record(refused, at(613)), Some(LogLine::Started));
    }

    #[tokio::test]
    async fn a_push_task_that_panics_is_restarted_and_fails_readiness() {
        let mailbox = Arc::new(Mailbox::default());
        let metrics = Metrics::new(&prometheus::Registry::new());
        let readiness = Arc::new(Readiness::default());
        let starts = Arc::new(AtomicUsize::new(0));
        let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = {
            let (mailbox, starts) = (mailbox.clone(), starts.clone());
            move || {
                let (mailbox, pushed) = (mailbox.clone(), pushed_tx.clone());
                let first = starts.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(async move {
                    while let Some(snapshot) = mailbox.take().await {
                        assert!(!first, "the first task dies on its first snapshot");
                        pushed.send(snapshot.timestamp_ms).unwrap();
                    }
                })
            }
        };
        let supervisor = tokio::spawn(supervise(
            "http://r/push".into(),
            mailbox.clone(),
            metrics.clone(),
            readiness.clone(),
            start,
        ));
        let snapshot = |timestamp_ms| {
            Arc::new(Snapshot {
                timestamp_ms,
                ..Default::default()
            })
        };
        mailbox.put(snapshot(1));
        // The first snapshot died with the task; the next one is pushed.
        tokio::time::timeout(Duration::from_secs(5), async {
            while starts.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the task is restarted");
        mailbox.put(snapshot(2));
        assert_eq!(pushed_rx.recv().await, Some(2));
        assert_eq!(
            metrics
                .sender_restarts
                .with_label_values(&["http://r/push"])
                .get(),
            1
        );
        let failing = readiness.failing();
        assert!(
            failing
                .iter()
                .any(|(c, r)| c == "sender:http://r/push" && r.contains("panicked")),
            "{failing:?}"
        );
        mailbox.close();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor ends with the mailbox")
            .unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 2, "no restart at shutdown");
    }
}
