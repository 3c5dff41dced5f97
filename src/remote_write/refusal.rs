//! What a 400 means for the series of a request, receiver by receiver.
//!
//! The Mimir family (Mimir, Cortex, Grafana Cloud) checks every series of
//! a request, stores the valid ones and answers 400 for the whole request,
//! naming only the first series it refused. Such a refusal is a partial
//! success: the pusher finds which series were refused by sending halves
//! of the request again (a sample sent again with the same timestamp and
//! value is stored once, so the series already stored cost nothing), at
//! most [`MAX_ISOLATING_REQUESTS`] requests per request refused, and does
//! not send those series to that receiver again until they change.
//!
//! A 400 for samples older than what the receiver holds (out of order, or
//! another value at the same timestamp) is an overlap: another pusher of
//! the same cluster wrote newer samples. The request is dropped for that
//! endpoint, and the push is not counted as failed.
//!
//! Prometheus and VictoriaMetrics answer otherwise (README, "Mimir and
//! Grafana Cloud"): Prometheus 3 stores the valid rest of a 2.0 request and
//! says how many it wrote (`X-Prometheus-Remote-Write-Samples-Written`),
//! which marks its 400 as partial too; to a 1.0 request it answers 400 and
//! stores nothing, or skips invalid series and answers 204.

use reqwest::header::HeaderMap;

/// Most requests sent to find the refused series of one refused request:
/// one refused series among 2,000 takes about 22.
pub const MAX_ISOLATING_REQUESTS: usize = 64;

/// What a 2.0 receiver says it wrote: samples, histograms and exemplars.
const WRITTEN: [&str; 3] = [
    "x-prometheus-remote-write-samples-written",
    "x-prometheus-remote-write-histograms-written",
    "x-prometheus-remote-write-exemplars-written",
];

/// Texts of the Mimir family's per-series refusals (Mimir's error IDs,
/// Cortex's messages): the rest of the request was stored.
const PER_SERIES: [&str; 12] = [
    "err-mimir-",
    "series has too many labels",
    "label value too long",
    "label name too long",
    "invalid label",
    "duplicate label name",
    "labels not sorted",
    "invalid metric name",
    "missing metric name",
    "per-user series limit",
    "per-metric series limit",
    "sample timestamp too",
];

/// Texts of refusals for samples older than what the receiver holds.
const OVERLAP: [&str; 5] = [
    "out of order sample",
    "out-of-order",
    "sample-out-of-order",
    "duplicate sample for timestamp",
    "sample-duplicate-timestamp",
];

/// What a 400 says about the series of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request as a whole: nothing was stored.
    Whole,
    /// Some series, the rest stored.
    PerSeries,
    /// Samples older than the receiver's: another pusher wrote newer ones.
    Overlap,
}

impl Refusal {
    /// Reads the receiver's text and, for a 2.0 request, what it says it
    /// wrote. An overlap is checked first: Mimir's out-of-order IDs are
    /// per-series IDs too.
    pub fn of(text: &str, written: Option<u64>) -> Refusal {
        let text = text.to_ascii_lowercase();
        if OVERLAP.iter().any(|m| text.contains(m)) {
            Refusal::Overlap
        } else if PER_SERIES.iter().any(|m| text.contains(m)) || written.is_some_and(|n| n > 0) {
            Refusal::PerSeries
        } else {
            Refusal::Whole
        }
    }
}

/// The sum of the written-count headers of a 2.0 answer; `None` when it
/// has none. A receiver's number: parsed strictly, summed saturating.
pub fn written(headers: &HeaderMap) -> Option<u64> {
    let mut any = false;
    let mut total: u64 = 0;
    for name in WRITTEN {
        if let Some(n) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            any = true;
            total = total.saturating_add(n);
        }
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_by_the_receivers_text() {
        let mimir = "received a series whose number of labels exceeds the limit (actual: 48, limit: 30) series: 'container_image_workload_labels{…' (err-mimir-max-label-names-per-series)";
        assert_eq!(Refusal::of(mimir, None), Refusal::PerSeries);
        let cortex = "series has too many labels (actual: 48, limit: 30) series: '…'";
        assert_eq!(Refusal::of(cortex, None), Refusal::PerSeries);
        let ooo = "the sample has been rejected because another sample with a more recent timestamp has already been ingested and out-of-order samples are not allowed (err-mimir-sample-out-of-order)";
        assert_eq!(Refusal::of(ooo, None), Refusal::Overlap);
        assert_eq!(
            Refusal::of("user=a: err: out of order sample. timestamp=…", None),
            Refusal::Overlap
        );
        assert_eq!(Refusal::of("snappy: corrupt input", None), Refusal::Whole);
        assert_eq!(
            Refusal::of("snappy: corrupt input", Some(0)),
            Refusal::Whole
        );
        assert_eq!(Refusal::of("invalid labels", Some(43)), Refusal::PerSeries);
    }

    #[test]
    fn written_counts_are_summed_and_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(written(&headers), None);
        headers.insert(WRITTEN[0], "43".parse().unwrap());
        headers.insert(WRITTEN[1], "2".parse().unwrap());
        assert_eq!(written(&headers), Some(45));
        headers.insert(WRITTEN[2], u64::MAX.to_string().parse().unwrap());
        assert_eq!(written(&headers), Some(u64::MAX), "saturates");
        headers.insert(WRITTEN[0], "-1".parse().unwrap());
        headers.insert(WRITTEN[2], "many".parse().unwrap());
        assert_eq!(written(&headers), Some(2));
    }
}
