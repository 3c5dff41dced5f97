//! Long-running delivery to one endpoint, in a task of its own.
//!
//! An inventory is a state, not a log: only the newest snapshot matters.
//! Each sender holds at most one waiting snapshot; a newer one replaces it,
//! and a push stuck in retries gives way to it. So a slow or failing
//! endpoint delays no other, and a long outage costs no memory: when the
//! receiver comes back, the newest snapshot lands.
//!
//! The sender also remembers which series the endpoint holds, so that a
//! series that disappears (pod deleted, tag moved, label removed) is sent
//! once more as a stale marker and vanishes from queries at once instead of
//! lingering for Prometheus' 5-minute lookback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{Endpoint, PushError};
use crate::inventory::{Family, Series, Snapshot};
use crate::telemetry::Telemetry;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A slot for one snapshot: putting a new one in replaces the old.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Option<Arc<Snapshot>>>,
    notify: Notify,
    closed: AtomicBool,
}

impl Mailbox {
    fn put(&self, snapshot: Arc<Snapshot>) -> bool {
        let replaced = self
            .slot
            .lock()
            .expect("mailbox poisoned")
            .replace(snapshot)
            .is_some();
        self.notify.notify_one();
        replaced
    }

    fn waiting(&self) -> bool {
        self.slot.lock().expect("mailbox poisoned").is_some()
    }

    /// The next snapshot; `None` once closed and empty.
    async fn take(&self) -> Option<Arc<Snapshot>> {
        loop {
            if let Some(snapshot) = self.slot.lock().expect("mailbox poisoned").take() {
                return Some(snapshot);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.notify.notified().await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Handle to the task that pushes to one endpoint.
pub struct Sender {
    name: String,
    mailbox: Arc<Mailbox>,
    task: JoinHandle<()>,
    telemetry: Arc<Telemetry>,
}

impl Sender {
    pub fn spawn(endpoint: Endpoint, telemetry: Arc<Telemetry>) -> Sender {
        let mailbox = Arc::new(Mailbox::default());
        let name = endpoint.name().to_owned();
        let task = tokio::spawn(run(endpoint, mailbox.clone(), telemetry.clone()));
        Sender {
            name,
            mailbox,
            task,
            telemetry,
        }
    }

    /// Hands over a snapshot; one still waiting is dropped in its favour.
    pub fn send(&self, snapshot: Arc<Snapshot>) {
        if self.mailbox.put(snapshot) {
            self.telemetry
                .snapshots_superseded
                .with_label_values(&[&self.name])
                .inc();
        }
    }

    /// Lets the push in flight (and a waiting snapshot) finish, for at most `grace`.
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

async fn run(endpoint: Endpoint, mailbox: Arc<Mailbox>, telemetry: Arc<Telemetry>) {
    // Series the endpoint may hold, by encoded label set: what to mark stale.
    let mut held: HashMap<Bytes, Family> = HashMap::new();
    while let Some(snapshot) = mailbox.take().await {
        let current: HashMap<Bytes, Family> = snapshot
            .series
            .iter()
            .map(|s| (s.labels.clone(), s.family))
            .collect();
        let stale: Vec<Series> = held
            .iter()
            .filter(|(labels, _)| !current.contains_key(*labels))
            .map(|(labels, family)| Series {
                family: *family,
                labels: labels.clone(),
                value: f64::from_bits(STALE_NAN),
            })
            .collect();
        let superseded = || mailbox.waiting();
        match endpoint
            .push(&snapshot, &stale, &telemetry, &superseded)
            .await
        {
            Ok(report) => {
                info!(
                    endpoint = endpoint.name(),
                    requests = report.requests,
                    series = report.series,
                    stale = stale.len(),
                    bytes = report.bytes,
                    "pushed"
                );
                held = current;
            }
            Err(e) => {
                if matches!(e, PushError::Superseded { .. }) {
                    telemetry
                        .snapshots_superseded
                        .with_label_values(&[endpoint.name()])
                        .inc();
                    info!(
                        endpoint = endpoint.name(),
                        "push abandoned for a newer snapshot"
                    );
                } else {
                    error!(error = %e, "push failed");
                }
                // Some batches may have landed: keep everything that might be
                // held, so it is marked stale once it really is gone.
                held.extend(current);
            }
        }
    }
}
