//! The taps in the data paths, not measured themselves: one in front of
//! the remote-write receiver, one in front of the exporter's `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::measure::lock;
use super::results::WireCounts;

/// Every remote-write request and scrape passes through a tap; this bounds
/// how long one may take.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// A remote-write proxy in front of the receiver that counts what passes.
pub(crate) struct WriteTap {
    pub(crate) url: String,
    pub(crate) state: Arc<TapState>,
    pub(crate) _server: AbortOnDrop,
}

pub(crate) struct TapState {
    pub(crate) upstream: String,
    pub(crate) http: reqwest::Client,
    pub(crate) totals: Mutex<WireCounts>,
    /// Per sample timestamp (one per push or scrape): what its samples cost,
    /// a request's bytes shared out by sample count.
    pub(crate) by_timestamp: Mutex<BTreeMap<i64, Share>>,
    /// Decompressed bodies by sample timestamp, for the last two pushes.
    pub(crate) keep_bodies: bool,
    pub(crate) bodies: Mutex<BTreeMap<i64, Vec<Vec<u8>>>>,
}

pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WriteTap {
    pub(crate) async fn start(upstream: String, keep_bodies: bool) -> anyhow::Result<WriteTap> {
        let state = Arc::new(TapState {
            upstream,
            http: reqwest::Client::builder()
                .timeout(UPSTREAM_TIMEOUT)
                .build()?,
            totals: Mutex::default(),
            by_timestamp: Mutex::default(),
            keep_bodies,
            bodies: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(tap_write)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/api/v1/write", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WriteTap {
            url,
            state,
            _server: AbortOnDrop(server),
        })
    }

    pub(crate) fn totals(&self) -> WireCounts {
        lock(&self.state.totals).clone()
    }

    /// What the samples with timestamps in `[from_ms, to_ms]` cost, and how
    /// many distinct timestamps (pushes or scrapes) that is.
    pub(crate) fn between(&self, from_ms: i64, to_ms: i64) -> (Share, usize) {
        let shares = lock(&self.state.by_timestamp);
        let mut sum = Share::default();
        let mut groups = 0;
        for share in shares.range(from_ms..=to_ms).map(|(_, share)| share) {
            sum.samples += share.samples;
            sum.compressed += share.compressed;
            sum.raw += share.raw;
            sum.requests += share.requests;
            groups += 1;
        }
        (sum, groups)
    }

    /// The newest (scrape) timestamp of the samples that arrived, in ms.
    pub(crate) fn newest_timestamp(&self) -> Option<i64> {
        lock(&self.state.by_timestamp).keys().next_back().copied()
    }

    /// The decompressed bodies of the newest push whose series add up to `series`.
    pub(crate) fn bodies_of_push(&self, series: u64) -> Vec<Vec<u8>> {
        let bodies = lock(&self.state.bodies);
        bodies
            .values()
            .rev()
            .find(|group| {
                group
                    .iter()
                    .map(Vec::as_slice)
                    .map(count_series)
                    .sum::<u64>()
                    == series
            })
            .cloned()
            .unwrap_or_default()
    }
}

/// The cost of the samples of one timestamp.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Share {
    pub samples: u64,
    pub compressed: f64,
    pub raw: f64,
    pub requests: f64,
}

/// Distinct label sets in some decompressed remote-write bodies.
pub(crate) fn distinct_series(bodies: &[Vec<u8>]) -> usize {
    use prost::Message as _;
    let mut seen = std::collections::HashSet::new();
    for body in bodies {
        if let Ok(request) =
            container_image_pusher::encode::remote_write_v1::proto::WriteRequest::decode(
                body.as_slice(),
            )
        {
            for series in request.timeseries {
                let labels: Vec<(String, String)> = series
                    .labels
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect();
                seen.insert(labels);
            }
        }
    }
    seen.len()
}

pub(crate) fn count_series(raw: &[u8]) -> u64 {
    use prost::Message as _;
    container_image_pusher::encode::remote_write_v1::proto::WriteRequest::decode(raw)
        .map_or(0, |r| r.timeseries.len() as u64)
}

pub(crate) async fn tap_write(
    axum::extract::State(tap): axum::extract::State<Arc<TapState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use prost::Message as _;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .unwrap_or_default();
    let decoded =
        container_image_pusher::encode::remote_write_v1::proto::WriteRequest::decode(&raw[..]).ok();
    let mut request = tap.http.post(&tap.upstream).body(body.clone());
    for (name, value) in &headers {
        let name = name.as_str();
        if matches!(
            name,
            "content-type"
                | "content-encoding"
                | "user-agent"
                | "x-prometheus-remote-write-version"
        ) {
            request = request.header(name, value.as_bytes());
        }
    }
    let (status, reply) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(e) => (502, Bytes::from(e.to_string())),
    };
    {
        let mut totals = lock(&tap.totals);
        totals.requests += 1;
        totals.compressed_bytes += body.len() as u64;
        totals.raw_bytes += raw.len() as u64;
        if let Some(request) = &decoded {
            totals.series += request.timeseries.len() as u64;
            totals.samples += request
                .timeseries
                .iter()
                .map(|ts| ts.samples.len() as u64)
                .sum::<u64>();
            totals.metadata += request.metadata.len() as u64;
        }
        if !(200..300).contains(&status) {
            totals.failed_requests += 1;
        }
    }
    if let Some(request) = &decoded {
        let mut per_timestamp: BTreeMap<i64, u64> = BTreeMap::new();
        for sample in request.timeseries.iter().flat_map(|ts| &ts.samples) {
            *per_timestamp.entry(sample.timestamp).or_default() += 1;
        }
        let total = per_timestamp.values().sum::<u64>() as f64;
        let mut shares = lock(&tap.by_timestamp);
        for (timestamp, samples) in per_timestamp {
            let part = samples as f64 / total;
            let share = shares.entry(timestamp).or_default();
            share.samples += samples;
            share.compressed += body.len() as f64 * part;
            share.raw += raw.len() as f64 * part;
            share.requests += part;
        }
    }
    if tap.keep_bodies {
        let timestamp = decoded
            .as_ref()
            .and_then(|r| r.timeseries.first()?.samples.first().map(|s| s.timestamp));
        if let Some(timestamp) = timestamp {
            let mut bodies = lock(&tap.bodies);
            bodies.entry(timestamp).or_default().push(raw);
            while bodies.len() > 2 {
                bodies.pop_first();
            }
        }
    }
    axum::response::Response::builder()
        .status(status)
        .body(axum::body::Body::from(reply))
        .expect("a plain response")
}

/// A proxy in front of the exporter's `/metrics` that counts scrapes.
pub(crate) struct ScrapeTap {
    pub(crate) url: String,
    pub(crate) state: Arc<ScrapeState>,
    pub(crate) _server: AbortOnDrop,
}

pub(crate) struct ScrapeState {
    pub(crate) upstream: String,
    pub(crate) http: reqwest::Client,
    /// Successful scrapes: (arrival in Unix ms, bytes, seconds), counted by
    /// arrival because the agent stamps samples with the scrape's start.
    pub(crate) scrapes: Mutex<Vec<(i64, u64, f64)>>,
}

impl ScrapeTap {
    pub(crate) async fn start(upstream: String) -> anyhow::Result<ScrapeTap> {
        let state = Arc::new(ScrapeState {
            upstream,
            http: reqwest::Client::builder()
                .timeout(UPSTREAM_TIMEOUT)
                .build()?,
            scrapes: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(tap_scrape)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ScrapeTap {
            url,
            state,
            _server: AbortOnDrop(server),
        })
    }

    /// (scrapes, bytes, seconds) of the scrapes that arrived in `[from_ms, to_ms]`.
    pub(crate) fn between(&self, from_ms: i64, to_ms: i64) -> (usize, u64, f64) {
        lock(&self.state.scrapes)
            .iter()
            .filter(|(at, _, _)| (from_ms..=to_ms).contains(at))
            .fold((0, 0, 0.0), |(n, bytes, seconds), (_, b, s)| {
                (n + 1, bytes + b, seconds + s)
            })
    }
}

pub(crate) async fn tap_scrape(
    axum::extract::State(tap): axum::extract::State<Arc<ScrapeState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let started = Instant::now();
    let arrived_ms = chrono::Utc::now().timestamp_millis();
    let mut request = tap.http.get(&tap.upstream);
    for (name, value) in &headers {
        if matches!(
            name.as_str(),
            "accept" | "accept-encoding" | "user-agent" | "x-prometheus-scrape-timeout-seconds"
        ) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let mut builder = axum::response::Response::builder();
    let (status, body) = match request.send().await {
        Ok(response) => {
            for name in ["content-type", "content-encoding"] {
                if let Some(value) = response.headers().get(name) {
                    builder = builder.header(name, value.as_bytes());
                }
            }
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(e) => (502, Bytes::from(e.to_string())),
    };
    if (200..300).contains(&status) {
        lock(&tap.scrapes).push((
            arrived_ms,
            body.len() as u64,
            started.elapsed().as_secs_f64(),
        ));
    }
    builder
        .status(status)
        .body(axum::body::Body::from(body))
        .expect("a plain response")
}
