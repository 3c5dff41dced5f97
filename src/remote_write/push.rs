//! Pushing a snapshot to one endpoint: in batches, each tried even if an
//! earlier one failed, with the series a receiver refuses one by one found
//! by halving (see [`refusal`](super::refusal)), and the push's cost and
//! outcome counted in the endpoint's metrics.

use std::ops::Range;
use std::time::Instant;

use super::endpoint::Endpoint;
use super::metrics::Metrics;
use super::outcome::{Attempt, Failure, FailureClass, PushError, PushReport, Settled};
use super::refusal::MAX_ISOLATING_REQUESTS;
use crate::encode::Buffers;
use crate::series::{Series, Snapshot};

/// What became of a push's batches so far.
struct Tally {
    report: PushReport,
    /// Batches not accepted, and their series.
    failed: usize,
    dropped: usize,
    /// The first batch's failure: the root cause.
    first_failure: Option<Failure>,
}

impl Endpoint {
    /// Sends a snapshot (plus `extra` series, such as stale markers) in
    /// requests of at most `max_series_per_request` series. Every batch is
    /// tried even if an earlier one failed, so one rejected batch does not
    /// lose the rest. `superseded` tells when a newer snapshot is waiting:
    /// then retrying this one is pointless and the push stops. `settled`
    /// is called with each batch the receiver accepted or refused for good,
    /// so the caller knows what the receiver holds even when the push as a
    /// whole failed. Series `skip` picks (refused one by one before) are
    /// not sent.
    pub async fn push(
        &self,
        snapshot: &Snapshot,
        extra: &[Series],
        metrics: &Metrics,
        superseded: &(dyn Fn() -> bool + Sync),
        skip: &(dyn Fn(&Series) -> bool + Sync),
        settled: &mut (dyn FnMut(&[&Series], Settled) + Send),
    ) -> Result<PushReport, PushError> {
        let started = Instant::now();
        let mut report = PushReport::default();
        let (mut failed, mut dropped) = (0, 0);
        let mut first_failure: Option<Failure> = None;
        let all: Vec<&Series> = snapshot
            .series
            .iter()
            .filter(|s| !skip(s))
            .chain(extra)
            .collect();
        let batches: Vec<&[&Series]> = all.chunks(self.config.max_series_per_request).collect();
        let mut buffers = Buffers::default();
        for batch in &batches {
            let outcome = self
                .attempt(
                    batch,
                    snapshot.timestamp_ms,
                    &mut buffers,
                    metrics,
                    superseded,
                )
                .await;
            match outcome {
                (Attempt::Partial { failure, written }, bytes) => {
                    self.outcome(metrics, "partial");
                    let (good, bad) = self
                        .split_refused(
                            batch,
                            written,
                            snapshot.timestamp_ms,
                            &mut buffers,
                            metrics,
                            superseded,
                        )
                        .await;
                    settled(&good, Settled::Accepted);
                    settled(&bad, Settled::Offending);
                    metrics
                        .series_refused
                        .with_label_values(&[&self.name])
                        .inc_by(bad.len() as u64);
                    report.requests += 1;
                    report.series += good.len();
                    report.bytes += bytes;
                    report.refused += bad.len();
                    report.partial.get_or_insert(failure.reason);
                }
                (Attempt::Overlap(failure), _) => {
                    self.outcome(metrics, "overlap");
                    // The receiver holds these series: newer samples of them.
                    settled(batch, Settled::Accepted);
                    report.requests += 1;
                    report.overlap.get_or_insert(failure.reason);
                }
                (Attempt::Accepted, bytes) => {
                    self.outcome(metrics, "success");
                    report.requests += 1;
                    report.series += batch.len();
                    report.bytes += bytes;
                    settled(batch, Settled::Accepted);
                }
                (Attempt::Superseded(failure), _) => {
                    self.outcome(metrics, "superseded");
                    return Err(PushError::Superseded {
                        endpoint: self.name.clone(),
                        class: failure.class,
                        last: failure.reason,
                    });
                }
                (Attempt::Rejected(failure), _) => {
                    if matches!(failure.class, FailureClass::Refused(_)) {
                        settled(batch, Settled::Refused);
                    }
                    self.outcome(metrics, "failed");
                    (failed, dropped) = (failed + 1, dropped + batch.len());
                    first_failure.get_or_insert(failure);
                }
                (Attempt::FallBack, _) => unreachable!("handled in the loop"),
            }
        }
        let tally = Tally {
            report,
            failed,
            dropped,
            first_failure,
        };
        self.conclude(metrics, started, batches.len(), tally)
    }

    /// The push's result from what became of its batches, counted in the
    /// endpoint's metrics.
    fn conclude(
        &self,
        metrics: &Metrics,
        started: Instant,
        batches: usize,
        tally: Tally,
    ) -> Result<PushReport, PushError> {
        let Tally {
            report,
            failed,
            dropped,
            first_failure,
        } = tally;
        self.count(metrics, started, &report);
        let Some(first) = first_failure else {
            metrics
                .last_success
                .with_label_values(&[&self.name])
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
            return Ok(report);
        };
        metrics
            .series_dropped
            .with_label_values(&[&self.name])
            .inc_by(dropped as u64);
        Err(PushError::Rejected {
            endpoint: self.name.clone(),
            batches,
            failed,
            series: dropped,
            class: first.class,
            first: first.reason,
        })
    }

    /// Counts one request's outcome in `container_image_pusher_pushes_total`.
    fn outcome(&self, metrics: &Metrics, outcome: &str) {
        metrics
            .pushes
            .with_label_values(&[&self.name, outcome])
            .inc();
    }

    /// What one push cost and delivered, in the endpoint's metrics.
    fn count(&self, metrics: &Metrics, started: Instant, report: &PushReport) {
        metrics
            .push_duration
            .with_label_values(&[&self.name])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .series_sent
            .with_label_values(&[&self.name])
            .inc_by(report.series as u64);
        metrics
            .bytes_sent
            .with_label_values(&[&self.name])
            .inc_by(report.bytes as u64);
    }

    /// A batch the receiver stored in part: its series stored and those
    /// refused, as [`Endpoint::isolate`] finds them (`written`: what a 2.0
    /// receiver said it wrote).
    async fn split_refused<'a>(
        &self,
        batch: &[&'a Series],
        written: Option<u64>,
        timestamp_ms: i64,
        buffers: &mut Buffers,
        metrics: &Metrics,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> (Vec<&'a Series>, Vec<&'a Series>) {
        // A receiver cannot write more than it was sent.
        let refused = written.map(|w| {
            batch
                .len()
                .saturating_sub(usize::try_from(w).unwrap_or(usize::MAX))
        });
        let offenders = self
            .isolate(batch, refused, timestamp_ms, buffers, metrics, superseded)
            .await;
        let mut bad = Vec::with_capacity(offenders.len());
        let mut good = Vec::with_capacity(batch.len());
        let mut next = offenders.iter().peekable();
        for (i, series) in batch.iter().enumerate() {
            if next.next_if_eq(&&i).is_some() {
                bad.push(*series);
            } else {
                good.push(*series);
            }
        }
        (good, bad)
    }

    /// The positions in `batch` of the series the receiver refuses, found
    /// by halving: each half answered 2xx holds none, each half refused
    /// again is halved again. Stops at `refused` found when the receiver
    /// said how many it wrote, at [`MAX_ISOLATING_REQUESTS`], or at any
    /// other answer (the series not looked at are taken as stored).
    async fn isolate(
        &self,
        batch: &[&Series],
        refused: Option<usize>,
        timestamp_ms: i64,
        buffers: &mut Buffers,
        metrics: &Metrics,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Vec<usize> {
        let mut offenders = Vec::new();
        // Ranges refused as a whole, the whole batch first.
        let mut refused_ranges: Vec<Range<usize>> = Vec::new();
        refused_ranges.push(0..batch.len());
        let mut requests = 0;
        while let Some(range) = refused_ranges.pop() {
            if refused.is_some_and(|n| offenders.len() >= n) {
                break;
            }
            if range.len() == 1 {
                offenders.push(range.start);
                continue;
            }
            let middle = range.start + range.len() / 2;
            for half in [range.start..middle, middle..range.end] {
                if requests >= MAX_ISOLATING_REQUESTS {
                    return offenders;
                }
                requests += 1;
                let (attempt, _) = self
                    .attempt(
                        &batch[half.clone()],
                        timestamp_ms,
                        buffers,
                        metrics,
                        superseded,
                    )
                    .await;
                match attempt {
                    Attempt::Accepted => {}
                    Attempt::Partial { .. } | Attempt::Overlap(_) => refused_ranges.push(half),
                    _ => return offenders,
                }
            }
        }
        offenders.sort_unstable();
        offenders
    }
}
