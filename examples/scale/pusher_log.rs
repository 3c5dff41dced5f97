//! The pusher's JSON log: tick ends (`snapshot taken`, `pushed`) without
//! reading its `/metrics` during a run.

use serde_json::Value;

use super::support::process::ChildGuard;

/// `snapshot taken` and `pushed` lines of the pusher's JSON log.
#[derive(Default)]
pub(crate) struct PusherLog {
    pub(crate) offset: usize,
    pub(crate) snapshots: Vec<SnapshotLine>,
    pub(crate) pushes: Vec<PushLine>,
    /// The background stages of a cold start (`looked up …` lines): the
    /// message, when it was logged and how long the stage took.
    pub(crate) stages: Vec<(String, f64, f64)>,
    pub(crate) warnings: usize,
    pub(crate) first_warnings: Vec<String>,
}

pub(crate) struct SnapshotLine {
    pub(crate) at: f64,
    pub(crate) took: f64,
    pub(crate) series: u64,
    /// Lookups whose attachments, base, verdicts or versions this snapshot
    /// left out, to be looked up after the first push (0 from pushers
    /// that wait for everything).
    pub(crate) left_out: u64,
    /// Lookups whose metadata (manifests, config) this snapshot left out:
    /// their images have no series of their own yet, only their
    /// containers' digests (0 from pushers that wait for the metadata).
    pub(crate) pending: u64,
    /// Seconds the snapshot waited for the first lists (watch readiness,
    /// pull secrets), then resolving its images (0 from older pushers).
    pub(crate) ready_after: f64,
    pub(crate) resolved_in: f64,
}

pub(crate) struct PushLine {
    pub(crate) at: f64,
    pub(crate) series: u64,
    pub(crate) requests: u64,
    pub(crate) stale: u64,
    pub(crate) bytes: u64,
}

impl PusherLog {
    /// Whether a snapshot that left nothing out has been pushed: the first
    /// complete push. Each tick pushes its snapshot once, in order.
    pub(crate) fn pushed_complete(&self) -> bool {
        self.pushed_first(|s| s.left_out == 0)
    }

    /// Whether a snapshot with every image's metadata has been pushed.
    pub(crate) fn pushed_metadata(&self) -> bool {
        self.pushed_first(|s| s.pending == 0)
    }

    /// Whether the first snapshot that `done` accepts has been pushed.
    fn pushed_first(&self, done: impl Fn(&SnapshotLine) -> bool) -> bool {
        self.snapshots
            .iter()
            .position(done)
            .is_some_and(|i| self.pushes.len() > i)
    }

    pub(crate) fn poll(&mut self, child: &ChildGuard) {
        let logs = child.logs();
        let Some(end) = logs.rfind('\n').map(|i| i + 1) else {
            return;
        };
        if end <= self.offset {
            return;
        }
        for line in logs[self.offset..end].lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let fields = entry.get("fields").unwrap_or(&entry);
            let at = entry["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0.0, |t| t.timestamp_micros() as f64 / 1e6);
            let number = |key: &str| fields[key].as_u64().unwrap_or(0);
            let seconds = |key: &str| fields[key].as_str().map_or(0.0, parse_debug_duration);
            match fields["message"].as_str() {
                Some("snapshot taken") => self.snapshots.push(SnapshotLine {
                    at,
                    took: seconds("took"),
                    series: number("series"),
                    left_out: number("left_out"),
                    pending: number("pending"),
                    ready_after: seconds("ready_after"),
                    resolved_in: seconds("resolved_in"),
                }),
                Some("pushed") => self.pushes.push(PushLine {
                    at,
                    series: number("series"),
                    requests: number("requests"),
                    stale: number("stale"),
                    bytes: number("bytes"),
                }),
                Some(message) if message.starts_with("looked up") => {
                    self.stages.push((message.to_owned(), at, seconds("took")));
                }
                _ => {}
            }
            if matches!(entry["level"].as_str(), Some("WARN" | "ERROR")) {
                self.warnings += 1;
                if self.first_warnings.len() < 5 {
                    self.first_warnings.push(line.chars().take(400).collect());
                }
            }
        }
        self.offset = end;
    }
}

/// `Duration`'s Debug format: `1.5s`, `12.3ms`, `45µs`, `7ns`.
pub(crate) fn parse_debug_duration(text: &str) -> f64 {
    let units = [
        ("ms", 1e-3),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ns", 1e-9),
        ("s", 1.0),
    ];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().map_or(0.0, |n| n * scale);
        }
    }
    0.0
}
