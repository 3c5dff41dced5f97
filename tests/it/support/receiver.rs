//! A strict remote-write receiver of our own.
//!
//! Real Prometheus is lenient: it sorts labels itself and drops empty
//! values, so a sloppy sender still "works" against it. This receiver
//! checks every request byte by byte against the remote-write 1.0 spec —
//! headers, snappy *block* format, protobuf, label order and uniqueness —
//! and answers from a script, so tests can play any receiver behaviour.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use container_image_pusher::encode::remote_write_v1::proto::WriteRequest;
use container_image_pusher::encode::remote_write_v2::proto as proto_v2;
use prost::Message;

/// One scripted answer, of this receiver and of the OTLP one
/// ([`super::otlp_receiver`] adds its protobuf answers).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (to play a hanging receiver).
    pub delay: Duration,
}

impl Reply {
    /// `status` with a text body (empty until [`Reply::body`]).
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What arrived, decoded, with every spec violation found.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub request: WriteRequest,
    pub violations: Vec<String>,
}

impl Received {
    /// The series as sorted (name, value) label lists with their sample value.
    pub fn series(&self) -> Vec<(Vec<(String, String)>, f64)> {
        self.request
            .timeseries
            .iter()
            .map(|ts| {
                let labels = ts
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                (labels, ts.samples.first().map_or(f64::NAN, |s| s.value))
            })
            .collect()
    }
}

/// Picks the answer from what a request holds (and its headers: tenant,
/// protocol); `None` leaves it to the script.
type Rule = Arc<dyn Fn(&HeaderMap, &WriteRequest) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// Consulted first: answers by content (e.g. refuse stale markers).
    rule: Option<Rule>,
    script: VecDeque<Reply>,
    /// Answer once the script is used up.
    fallback: Option<Reply>,
    /// Accept remote-write 2.0 (and say how much was written, as 2.0 receivers must).
    speaks_v2: bool,
    received: Vec<Received>,
}

/// The receiver; clones share state.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Starts on a free loopback port, answering 204 unless scripted.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{*path}", post(handle))
            .with_state(inner.clone());
        let addr = super::process::serve(app).await;
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// The answer once the script is used up (default 204).
    pub fn set_fallback(&self, reply: Reply) {
        self.inner.lock().unwrap().fallback = Some(reply);
    }

    /// Answers requests `rule` picks a reply for by that reply, before the
    /// script and the fallback.
    pub fn answer_by(&self, rule: impl Fn(&WriteRequest) -> Option<Reply> + Send + Sync + 'static) {
        self.answer_with_headers(move |_, request| rule(request));
    }

    /// [`Receiver::answer_by`] with the request's headers too. A reply
    /// that sets the 2.0 written count keeps it.
    pub fn answer_with_headers(
        &self,
        rule: impl Fn(&HeaderMap, &WriteRequest) -> Option<Reply> + Send + Sync + 'static,
    ) {
        self.inner.lock().unwrap().rule = Some(Arc::new(rule));
    }

    /// Makes the receiver accept 2.0 bodies, as Prometheus 3 does.
    pub fn speak_v2(&self) {
        self.inner.lock().unwrap().speaks_v2 = true;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Panics with every violation found in any request so far.
    pub fn assert_valid(&self) {
        let violations: Vec<String> = self
            .received()
            .iter()
            .flat_map(|r| r.violations.clone())
            .collect();
        assert!(
            violations.is_empty(),
            "remote-write spec violations:\n{}",
            violations.join("\n")
        );
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, violations) = validate(&headers, &body);
    let v2 = is_v2(&headers);
    let series = request.timeseries.len();
    let reply = {
        let mut inner = inner.lock().unwrap();
        let by_rule = inner
            .rule
            .as_ref()
            .and_then(|rule| rule(&headers, &request));
        inner.received.push(Received {
            at: Instant::now(),
            headers,
            request,
            violations,
        });
        let reply = by_rule
            .or_else(|| inner.script.pop_front())
            .or_else(|| inner.fallback.clone())
            .unwrap_or_else(|| Reply::status(204));
        let counted = reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(SAMPLES_WRITTEN));
        if v2 && inner.speaks_v2 && (200..300).contains(&reply.status) && !counted {
            reply.header(SAMPLES_WRITTEN, &series.to_string())
        } else {
            reply
        }
    };
    respond(reply).await
}

/// Answers with `reply`, after its delay.
pub async fn respond(reply: Reply) -> Response {
    // A slow receiver, when the script asks for one: the delay is the
    // peer's behaviour under test, not a wait.
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).expect("valid status"),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::try_from(name).expect("valid header name"),
            value.parse().expect("valid header value"),
        );
    }
    response
}

/// What a 2.0 receiver says it wrote.
pub const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";

pub fn is_v2(headers: &HeaderMap) -> bool {
    headers.get("content-type").and_then(|v| v.to_str().ok())
        == Some("application/x-protobuf;proto=io.prometheus.write.v2.Request")
}

/// Checks one request against the spec; returns what it decoded (a 2.0
/// request in the 1.0 shape) and what is wrong.
fn validate(headers: &HeaderMap, body: &[u8]) -> (WriteRequest, Vec<String>) {
    let mut violations = Vec::new();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let v2 = is_v2(headers);
    let (content_type, version) = if v2 {
        (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        )
    } else {
        ("application/x-protobuf", "0.1.0")
    };
    for (name, expected) in [
        ("content-encoding", "snappy"),
        ("content-type", content_type),
        ("x-prometheus-remote-write-version", version),
    ] {
        if header(name) != expected {
            violations.push(format!(
                "header {name} is {:?}, expected {expected:?}",
                header(name)
            ));
        }
    }
    if !header("user-agent").starts_with("container-image-pusher/") {
        violations.push(format!("user-agent is {:?}", header("user-agent")));
    }
    // The framed format starts with a stream identifier chunk (0xff); the
    // block format starts with the uncompressed length as a varint.
    if body.first() == Some(&0xff) {
        violations.push("body uses the snappy framed format, not the block format".into());
    }
    let decoded = match snap::raw::Decoder::new().decompress_vec(body) {
        Ok(d) => d,
        Err(e) => {
            violations.push(format!("body is not snappy block format: {e}"));
            return (WriteRequest::default(), violations);
        }
    };
    let request = if v2 {
        from_v2(&decoded, &mut violations)
    } else {
        WriteRequest::decode(decoded.as_slice())
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            violations.push(format!("body is not a WriteRequest: {e}"));
            return (WriteRequest::default(), violations);
        }
    };
    for ts in &request.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        if !names.contains(&"__name__") {
            violations.push(format!("series without __name__: {names:?}"));
        }
        if names.windows(2).any(|w| w[0] >= w[1]) {
            violations.push(format!(
                "labels not sorted by name or not unique: {names:?}"
            ));
        }
        if let Some(l) = ts
            .labels
            .iter()
            .find(|l| l.value.is_empty() || l.name.is_empty())
        {
            violations.push(format!(
                "empty label name or value: {:?} in {names:?}",
                l.name
            ));
        }
        if ts.samples.len() != 1 {
            violations.push(format!(
                "series with {} samples: {names:?}",
                ts.samples.len()
            ));
        }
    }
    (request, violations)
}

/// Decodes a 2.0 request into the 1.0 shape, checking the symbols table.
fn from_v2(body: &[u8], violations: &mut Vec<String>) -> Result<WriteRequest, prost::DecodeError> {
    use container_image_pusher::encode::remote_write_v1::proto::{Label, Sample, TimeSeries};
    let request = proto_v2::Request::decode(body)?;
    if request.symbols.first().map(String::as_str) != Some("") {
        violations.push("2.0 symbols table does not start with \"\"".into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = request.symbols.iter().find(|s| !seen.insert(*s)) {
        violations.push(format!("2.0 symbol {dup:?} appears twice"));
    }
    let symbol = |i: u32| {
        request
            .symbols
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("<bad ref {i}>"))
    };
    let timeseries = request
        .timeseries
        .iter()
        .map(|ts| {
            if ts.labels_refs.len() % 2 != 0 {
                violations.push("2.0 labels_refs of odd length".into());
            }
            if ts.metadata.as_ref().is_none_or(|m| m.r#type == 0) {
                violations.push("2.0 series without a metric type".into());
            }
            TimeSeries {
                labels: ts
                    .labels_refs
                    .chunks(2)
                    .map(|p| Label {
                        name: symbol(p[0]),
                        value: symbol(*p.get(1).unwrap_or(&0)),
                    })
                    .collect(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(WriteRequest {
        timeseries,
        metadata: vec![],
    })
}
