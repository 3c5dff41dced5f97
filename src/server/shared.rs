//! What the endpoints show: the last snapshot, rendered once for every
//! reader, and the service's own metrics, current at every scrape.

use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use prometheus::{Encoder, TextEncoder};

use super::connections::Metrics;
use crate::encode::exposition;
use crate::readiness::FIRST_SNAPSHOT;
use crate::series::Snapshot;
use crate::telemetry::Telemetry;

/// What the endpoints show; shared with the tick loop that updates it.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    /// The listeners' connection counters.
    pub metrics: Metrics,
    snapshot: RwLock<Published>,
    /// The inventory part of `/metrics` for the snapshot of that
    /// generation, rendered by the first scrape after it was published
    /// (`None` if rendering it failed: every scrape of it answers 500), and
    /// let go when the next one is published: at 100k containers it is
    /// ~40 MB that a scrape months ago should not keep.
    pub(super) rendered: tokio::sync::Mutex<Option<(u64, Option<Bytes>)>>,
    /// Labels left out of `/metrics` (job and external labels).
    omit: Vec<String>,
    /// The snapshot's text: [`exposition::render`], but for a test of
    /// what a failed rendering answers.
    pub(super) render: fn(&Snapshot, &[&str]) -> String,
}

#[derive(Default)]
struct Published {
    /// Counts publications, so a rendering knows which snapshot it shows.
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl Shared {
    /// What the listeners show, their counters registered in `telemetry`
    /// (so one per process).
    pub fn new(telemetry: Arc<Telemetry>, omit: Vec<String>) -> Self {
        Shared {
            metrics: Metrics::new(&telemetry.registry),
            telemetry,
            snapshot: RwLock::default(),
            rendered: tokio::sync::Mutex::new(None),
            omit,
            render: render_inventory,
        }
    }

    /// Publishes a new snapshot; the first one clears the
    /// [`FIRST_SNAPSHOT`] readiness condition.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        {
            // Replacing an `Arc` cannot leave the value half-written, so a
            // poisoned lock is used as it is (the project's one policy).
            let mut published = self
                .snapshot
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            published.generation += 1;
            published.snapshot = snapshot;
        }
        // A rendering in progress stores its text for its own (older)
        // generation only while no newer one is published; see below.
        if let Ok(mut rendered) = self.rendered.try_lock() {
            *rendered = None;
        }
        self.telemetry.readiness.clear(FIRST_SNAPSHOT);
    }

    /// The current snapshot's series in the text format, rendered once per
    /// snapshot however many scrapes ask at once; `None` if rendering
    /// failed (a panic in the encoder), logged once per snapshot.
    pub(super) async fn inventory_text(self: &Arc<Self>) -> Option<Bytes> {
        let (generation, snapshot) = {
            let published = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
            (published.generation, published.snapshot.clone())
        };
        // Scrapes that arrive during a rendering wait for it, rather than
        // each rendering (and holding) a copy of their own.
        let mut rendered = self.rendered.lock().await;
        if let Some((done, text)) = &*rendered {
            if *done >= generation {
                return text.clone();
            }
        }
        let shared = self.clone();
        // Rendering 100k series takes a while; keep it off the async workers.
        let text = tokio::task::spawn_blocking(move || {
            let omit: Vec<&str> = shared.omit.iter().map(String::as_str).collect();
            Bytes::from((shared.render)(&snapshot, &omit))
        })
        .await;
        let text = match text {
            Ok(text) => Some(text),
            Err(e) => {
                tracing::error!(error = %e, "failed to render the snapshot for /metrics; answering 500 until the next snapshot");
                None
            }
        };
        // Kept for the scrapes of the same snapshot, unless a newer one was
        // published meanwhile (which could not let go of it).
        let current = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation;
        *rendered = (current == generation).then(|| (generation, text.clone()));
        text
    }

    /// The service's own metrics: small, and current at every scrape.
    pub(super) fn telemetry_text(&self) -> Result<Bytes, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.telemetry.registry.gather(), &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// The snapshot without the health series pushed with it: `/metrics`
/// serves those from the registry, current at every scrape (and a family
/// twice would make the text invalid).
fn render_inventory(snapshot: &Snapshot, omit: &[&str]) -> String {
    exposition::render_families(snapshot, omit, |family| !family.is_self_metric())
}
