//! A stand-in for the Mimir family's distributor (Mimir, Cortex, Grafana
//! Cloud), on the strict receiver's plumbing ([`Receiver`]: every request
//! is still checked against the spec and recorded). It behaves as Cortex
//! 1.21 was seen to:
//!
//! - every series is validated with the default limits (30 label names,
//!   2,048-byte values, 1,024-byte names); the valid ones are stored, and
//!   the request is answered 400 naming only the first offender, with
//!   Mimir's error IDs;
//! - a sample older than the series' newest is refused as out of order, one
//!   at the same timestamp with another value as a duplicate; the same
//!   sample again is taken and stored once;
//! - 2.0 requests are answered with the written counts, 400 or not;
//! - with HA dedupe, the first replica (`__replica__`) seen for a tenant's
//!   `cluster` is elected and the others' requests are answered 202 (with
//!   no written counts, 2.0 or not) and dropped; the replica label is
//!   removed from what is stored;
//! - tenants (`X-Scope-OrgID`) are stored apart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use container_image_pusher::encode::remote_write_v1::proto::WriteRequest;

use super::fixtures::{unreachable_image, write_manifest};
use super::receiver::{is_v2, Receiver, Reply, SAMPLES_WRITTEN};

pub const MAX_LABEL_NAMES: usize = 30;
pub const MAX_VALUE_BYTES: usize = 2048;
pub const MAX_NAME_BYTES: usize = 1024;
const REPLICA: &str = "__replica__";
const NO_TENANT: &str = "anonymous";

/// A series' labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// Every sample stored of one series, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub samples: Vec<(i64, f64)>,
}

impl Stored {
    /// The newest sample's value.
    pub fn last(&self) -> Option<f64> {
        self.samples.last().map(|(_, v)| *v)
    }

    pub fn is_stale(&self) -> bool {
        self.last()
            .is_some_and(|v| v.to_bits() == container_image_pusher::remote_write::STALE_NAN)
    }
}

#[derive(Default)]
struct Store {
    /// By tenant, then labels.
    tenants: HashMap<String, HashMap<Labels, Stored>>,
    /// Elected replica by (tenant, cluster).
    elected: HashMap<(String, String), String>,
    /// 400s answered, and 202s for replicas not elected.
    refusals: usize,
    dropped_replicas: usize,
}

/// The stand-in; clones share state.
#[derive(Clone)]
pub struct Mimir {
    pub receiver: Receiver,
    store: Arc<Mutex<Store>>,
}

impl Mimir {
    pub async fn start() -> Mimir {
        let receiver = Receiver::start().await;
        receiver.speak_v2();
        let store = Arc::new(Mutex::new(Store::default()));
        let shared = store.clone();
        receiver.answer_with_headers(move |headers, request| {
            Some(shared.lock().unwrap().ingest(headers, request))
        });
        Mimir { receiver, store }
    }

    pub fn url(&self) -> String {
        self.receiver.url().replace("/api/v1/write", "/api/v1/push")
    }

    /// The series of `tenant` (`None`: requests without a tenant header).
    pub fn series(&self, tenant: Option<&str>) -> HashMap<Labels, Stored> {
        let store = self.store.lock().unwrap();
        store
            .tenants
            .get(tenant.unwrap_or(NO_TENANT))
            .cloned()
            .unwrap_or_default()
    }

    /// Series of `tenant` with the label `name="value"`.
    pub fn find(&self, tenant: Option<&str>, name: &str, value: &str) -> Vec<(Labels, Stored)> {
        self.series(tenant)
            .into_iter()
            .filter(|(labels, _)| labels.iter().any(|(n, v)| n == name && v == value))
            .collect()
    }

    /// How many requests were answered 400.
    pub fn refusals(&self) -> usize {
        self.store.lock().unwrap().refusals
    }

    /// How many requests of replicas not elected were dropped (202).
    pub fn dropped_replicas(&self) -> usize {
        self.store.lock().unwrap().dropped_replicas
    }

    /// Plays another pusher of the same cluster that wrote newer samples:
    /// every stored series of `tenant` gets one `ahead_ms` after its newest.
    pub fn write_ahead(&self, tenant: Option<&str>, ahead_ms: i64) {
        let mut store = self.store.lock().unwrap();
        for stored in store
            .tenants
            .entry(tenant.unwrap_or(NO_TENANT).to_owned())
            .or_default()
            .values_mut()
        {
            if let Some(&(t, v)) = stored.samples.last() {
                stored.samples.push((t + ahead_ms, v));
            }
        }
    }
}

/// Why one series was refused, as Mimir words it.
fn validate(labels: &Labels) -> Option<String> {
    let series = || {
        let text: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
        let text = format!("{{{}}}", text.join(", "));
        text.chars().take(200).collect::<String>()
    };
    if labels.len() > MAX_LABEL_NAMES {
        return Some(format!(
            "received a series whose number of labels exceeds the limit (actual: {}, limit: {MAX_LABEL_NAMES}) series: '{}' (err-mimir-max-label-names-per-series)",
            labels.len(),
            series()
        ));
    }
    if let Some((name, _)) = labels.iter().find(|(n, _)| n.len() > MAX_NAME_BYTES) {
        let name: String = name.chars().take(200).collect();
        return Some(format!(
            "received a series whose label name length exceeds the limit, label: '{name}' series: '{}' (err-mimir-label-name-too-long)",
            series()
        ));
    }
    if let Some((name, value)) = labels.iter().find(|(_, v)| v.len() > MAX_VALUE_BYTES) {
        let value: String = value.chars().take(200).collect();
        return Some(format!(
            "received a series whose label value length exceeds the limit, value: '{value}' (truncated) label: '{name}' series: '{}' (err-mimir-label-value-too-long)",
            series()
        ));
    }
    None
}

impl Store {
    fn ingest(&mut self, headers: &HeaderMap, request: &WriteRequest) -> Reply {
        let tenant = headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(NO_TENANT)
            .to_owned();
        let v2 = is_v2(headers);
        let written = |reply: Reply, n: usize| {
            if v2 {
                reply
                    .header(SAMPLES_WRITTEN, &n.to_string())
                    .header("X-Prometheus-Remote-Write-Histograms-Written", "0")
                    .header("X-Prometheus-Remote-Write-Exemplars-Written", "0")
            } else {
                reply
            }
        };
        // The HA tracker answers before anything is written: no counts.
        if let Some(reply) = self.ha_dedupe(&tenant, request) {
            return reply;
        }
        let mut first_error: Option<String> = None;
        let mut stored = 0;
        let series = self.tenants.entry(tenant.clone()).or_default();
        for ts in &request.timeseries {
            let labels: Labels = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            if let Some(error) = validate(&labels) {
                first_error.get_or_insert(error);
                continue;
            }
            let labels: Labels = labels.into_iter().filter(|(n, _)| n != REPLICA).collect();
            let entry = series.entry(labels).or_default();
            let mut ok = true;
            for sample in &ts.samples {
                match entry.samples.last() {
                    Some(&(t, _)) if sample.timestamp < t => {
                        first_error.get_or_insert_with(|| format!("user={tenant}: the sample has been rejected because another sample with a more recent timestamp has already been ingested and out-of-order samples are not allowed (err-mimir-sample-out-of-order). The affected sample has timestamp {} and is from series {:?}", sample.timestamp, ts.labels.first().map(|l| &l.value)));
                        ok = false;
                    }
                    Some(&(t, v))
                        if sample.timestamp == t && v.to_bits() != sample.value.to_bits() =>
                    {
                        first_error.get_or_insert_with(|| format!("user={tenant}: the sample has been rejected because another sample with the same timestamp, but a different value, has already been ingested (err-mimir-sample-duplicate-timestamp)"));
                        ok = false;
                    }
                    Some(&(t, _)) if sample.timestamp == t => {}
                    _ => entry.samples.push((sample.timestamp, sample.value)),
                }
            }
            if entry.samples.is_empty() {
                series.retain(|_, s| !s.samples.is_empty());
            }
            stored += usize::from(ok);
        }
        match first_error {
            Some(error) => {
                self.refusals += 1;
                written(Reply::status(400).body(&error), stored)
            }
            None => written(Reply::status(200), stored),
        }
    }

    /// Mimir's HA tracker: `Some(202)` for a replica that is not elected.
    fn ha_dedupe(&mut self, tenant: &str, request: &WriteRequest) -> Option<Reply> {
        let first = request.timeseries.first()?;
        let label = |name: &str| {
            first
                .labels
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.clone())
        };
        let replica = label(REPLICA)?;
        let cluster = label("cluster").unwrap_or_default();
        let elected = self
            .elected
            .entry((tenant.to_owned(), cluster))
            .or_insert_with(|| replica.clone());
        if *elected == replica {
            return None;
        }
        self.dropped_replicas += 1;
        Some(Reply::status(202))
    }
}

impl Mimir {
    /// Elects `replica` for `tenant`'s `cluster`, as the HA tracker does
    /// when the elected one stops pushing.
    pub fn fail_over(&self, tenant: Option<&str>, cluster: &str, replica: &str) {
        self.store.lock().unwrap().elected.insert(
            (tenant.unwrap_or(NO_TENANT).to_owned(), cluster.to_owned()),
            replica.to_owned(),
        );
    }
}

/// A workload whose series break Mimir's default limits: a Pod whose image
/// is 3,000 bytes (Kubernetes does not bound it) and a Deployment with 40
/// labels; beside them, two plain Pods.
pub fn hostile_manifests(dir: &Path, plain: &[&str]) -> String {
    let long_image = format!("127.0.0.1:1/{}:1", "a".repeat(3000));
    let labels: Vec<String> = (0..40)
        .map(|i| format!("    team-{i:02}: owner-{i}\n"))
        .collect();
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: wide\n  namespace: ns\n  labels:\n{}spec:\n  template:\n    spec:\n      containers: [{{name: c, image: \"{}\"}}]\n",
        labels.concat(),
        unreachable_image("wide")
    );
    let mut documents = vec![
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: long, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"{long_image}\"}}]}}\n"),
        deployment,
    ];
    documents.extend(plain.iter().map(|name| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"{}\"}}]}}\n",
            unreachable_image(name)
        )
    }));
    write_manifest(dir, "workloads.yaml", &documents)
        .to_str()
        .unwrap()
        .to_owned()
}
