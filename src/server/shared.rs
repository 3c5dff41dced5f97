//! What the endpoints show: the last snapshot, rendered for each reader
//! in chunks as it takes them, and the service's own metrics, current at
//! every scrape.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::body::Bytes;
use futures::Stream;
use prometheus::{Encoder, TextEncoder};
use tokio::task::JoinError;

use super::connections::Metrics;
use crate::encode::exposition;
use crate::readiness::FIRST_SNAPSHOT;
use crate::series::Snapshot;
use crate::telemetry::Telemetry;

/// The inventory part of `/metrics` in pieces, rendered as they are taken.
pub(super) type InventoryChunks = Box<dyn Iterator<Item = Bytes> + Send>;

/// What the endpoints show; shared with the tick loop that updates it.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    /// The listeners' connection counters.
    pub metrics: Metrics,
    snapshot: RwLock<Published>,
    /// The generation whose rendering failed (a panic in the encoder):
    /// every scrape of it answers 500 at once, and it is logged once.
    failed: Mutex<Option<u64>>,
    /// Labels left out of `/metrics` (job and external labels).
    omit: Vec<String>,
    /// The snapshot's text: [`render_inventory`], but for the tests of a
    /// failed rendering and of how many chunks a scrape holds.
    pub(super) render: fn(Arc<Snapshot>, Vec<String>) -> InventoryChunks,
}

#[derive(Default)]
struct Published {
    /// Counts publications, so a failed rendering knows which snapshot
    /// it was of.
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
            failed: Mutex::new(None),
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
        self.telemetry.readiness.clear(FIRST_SNAPSHOT);
    }

    /// The current snapshot's series in the text format, as a stream of
    /// chunks each rendered when the reader has taken the one before (so
    /// a slow reader holds the snapshot and a few chunks, and one that
    /// goes away stops the rendering); `None` if rendering it failed. The
    /// first chunk is rendered before this returns, so that a failing
    /// encoder answers 500 rather than a 200 that looks like an empty
    /// inventory.
    pub(super) async fn inventory_chunks(
        self: &Arc<Self>,
    ) -> Option<impl Stream<Item = Result<Bytes, JoinError>> + Send + 'static> {
        let (generation, snapshot) = {
            let published = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
            (published.generation, published.snapshot.clone())
        };
        if *self.failed.lock().unwrap_or_else(PoisonError::into_inner) == Some(generation) {
            return None;
        }
        let chunks = (self.render)(snapshot, self.omit.clone());
        let (first, chunks) = match next_chunk(chunks).await {
            Ok(next) => next,
            Err(e) => {
                self.failed(generation, &e);
                return None;
            }
        };
        let shared = self.clone();
        let rest = futures::stream::unfold(first.is_some().then_some(chunks), move |chunks| {
            let shared = shared.clone();
            async move {
                match next_chunk(chunks?).await {
                    Ok((Some(chunk), chunks)) => Some((Ok(chunk), Some(chunks))),
                    Ok((None, _)) => None,
                    Err(e) => {
                        // The reader sees the body cut short, not an end.
                        shared.failed(generation, &e);
                        Some((Err(e), None))
                    }
                }
            }
        });
        Some(futures::StreamExt::chain(
            futures::stream::iter(first.map(Ok)),
            rest,
        ))
    }

    /// Remembers that `generation` cannot be rendered.
    fn failed(&self, generation: u64, error: &JoinError) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if *failed != Some(generation) {
            tracing::error!(error = %error, "failed to render the snapshot for /metrics; answering 500 until the next snapshot");
            *failed = Some(generation);
        }
    }

    /// The service's own metrics: small, and current at every scrape.
    pub(super) fn telemetry_text(&self) -> Result<Bytes, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.telemetry.registry.gather(), &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// The next chunk, rendered off the async workers (with the chunks, to
/// take the one after); an error if the encoder panicked.
async fn next_chunk(
    mut chunks: InventoryChunks,
) -> Result<(Option<Bytes>, InventoryChunks), JoinError> {
    tokio::task::spawn_blocking(move || (chunks.next(), chunks)).await
}

/// The snapshot without the health series pushed with it: `/metrics`
/// serves those from the registry, current at every scrape (and a family
/// twice would make the text invalid).
fn render_inventory(snapshot: Arc<Snapshot>, omit: Vec<String>) -> InventoryChunks {
    let chunks = exposition::Chunks::new(snapshot, omit, |family| !family.is_self_metric());
    Box::new(chunks.map(Bytes::from))
}
