//! One strict, scripted receiver for everything the pusher sends: remote
//! write 1.0 and 2.0 ([`RemoteWrite`]) and OTLP/HTTP metrics ([`Otlp`]).
//!
//! Real receivers are lenient (Prometheus sorts labels itself and drops
//! empty values, collectors skip unknown fields), so a sloppy sender still
//! "works" against them. This one keeps every request byte for byte, checks
//! it strictly against its protocol's spec (the protocol's part: headers,
//! compression, protobuf, label and attribute rules) and answers from a
//! script, so tests can play any receiver behaviour. What is common — the
//! capture, the script, rules that answer by content, delays — lives here
//! once; a protocol adds only its decoding and its answers.

mod otlp;
mod remote_write;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

pub use otlp::Otlp;
pub use remote_write::{has, is_v2, label, RemoteWrite, SAMPLES_WRITTEN};

/// What a protocol adds to the receiver: where it listens, how a request
/// is decoded and checked, and how it answers by default.
pub trait Protocol: Clone + Default + Send + 'static {
    /// A decoded request.
    type Request: Clone + Debug + Default + Send + 'static;
    /// The endpoint's path (the receiver answers on any path).
    const PATH: &'static str;

    /// Decodes one request, with every violation of the spec found.
    fn decode(headers: &HeaderMap, body: &[u8]) -> (Self::Request, Vec<String>);

    /// The answer when neither a rule nor the script gives one.
    fn default_reply() -> Reply;

    /// The protocol's last touch on an answer (e.g. 2.0's written counts).
    fn finish(&self, _headers: &HeaderMap, _request: &Self::Request, reply: Reply) -> Reply {
        reply
    }
}

/// One scripted answer.
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

/// What arrived: the bytes as sent, decoded, with every violation found.
#[derive(Debug, Clone)]
pub struct Received<P: Protocol = RemoteWrite> {
    pub at: Instant,
    pub headers: HeaderMap,
    /// The body as it came over the wire (still compressed).
    pub body: Bytes,
    pub request: P::Request,
    pub violations: Vec<String>,
}

/// Picks the answer from what a request holds (and its headers: tenant,
/// protocol); `None` leaves it to the script.
type Rule<P> = Arc<dyn Fn(&HeaderMap, &<P as Protocol>::Request) -> Option<Reply> + Send + Sync>;

struct Inner<P: Protocol> {
    protocol: P,
    /// Consulted first: answers by content (e.g. refuse stale markers).
    rule: Option<Rule<P>>,
    script: VecDeque<Reply>,
    /// Answer once the script is used up.
    fallback: Option<Reply>,
    received: Vec<Received<P>>,
}

/// The receiver of protocol `P`; clones share state.
pub struct Receiver<P: Protocol = RemoteWrite> {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner<P>>>,
}

impl<P: Protocol> Clone for Receiver<P> {
    fn clone(&self) -> Self {
        Receiver {
            addr: self.addr,
            inner: self.inner.clone(),
        }
    }
}

impl<P: Protocol> Receiver<P> {
    /// Starts on a free loopback port, answering by the protocol's default
    /// unless scripted.
    async fn launch() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            protocol: P::default(),
            rule: None,
            script: VecDeque::new(),
            fallback: None,
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/{*path}", post(handle::<P>))
            .with_state(inner.clone());
        let addr = super::process::serve(app).await;
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, P::PATH)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// The answer once the script is used up (default: the protocol's).
    pub fn set_fallback(&self, reply: Reply) {
        self.inner.lock().unwrap().fallback = Some(reply);
    }

    /// Answers requests `rule` picks a reply for by that reply, before the
    /// script and the fallback.
    pub fn answer_by(&self, rule: impl Fn(&P::Request) -> Option<Reply> + Send + Sync + 'static) {
        self.answer_with_headers(move |_, request| rule(request));
    }

    /// [`Receiver::answer_by`] with the request's headers too. A reply
    /// that sets the 2.0 written count keeps it.
    pub fn answer_with_headers(
        &self,
        rule: impl Fn(&HeaderMap, &P::Request) -> Option<Reply> + Send + Sync + 'static,
    ) {
        self.inner.lock().unwrap().rule = Some(Arc::new(rule));
    }

    pub fn received(&self) -> Vec<Received<P>> {
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
            "{} violations:\n{}",
            std::any::type_name::<P>()
                .rsplit("::")
                .next()
                .unwrap_or("protocol"),
            violations.join("\n")
        );
    }
}

impl Receiver<RemoteWrite> {
    /// A remote-write receiver (1.0 only until [`Receiver::speak_v2`]),
    /// answering 204 unless scripted.
    pub async fn start() -> Self {
        Receiver::launch().await
    }

    /// Makes the receiver accept 2.0 bodies, as Prometheus 3 does.
    pub fn speak_v2(&self) {
        self.inner.lock().unwrap().protocol.speaks_v2 = true;
    }
}

impl Receiver<Otlp> {
    /// An OTLP/HTTP metrics receiver, answering [`Reply::ok`] unless scripted.
    pub async fn start_otlp() -> Self {
        Receiver::launch().await
    }
}

async fn handle<P: Protocol>(
    State(inner): State<Arc<Mutex<Inner<P>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, violations) = P::decode(&headers, &body);
    let reply = {
        let mut inner = inner.lock().unwrap();
        let by_rule = inner
            .rule
            .as_ref()
            .and_then(|rule| rule(&headers, &request));
        let reply = by_rule
            .or_else(|| inner.script.pop_front())
            .or_else(|| inner.fallback.clone())
            .unwrap_or_else(P::default_reply);
        let reply = inner.protocol.finish(&headers, &request, reply);
        inner.received.push(Received {
            at: Instant::now(),
            headers,
            body,
            request,
            violations,
        });
        reply
    };
    respond(reply).await
}

/// Answers with `reply`, after its delay.
async fn respond(reply: Reply) -> Response {
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
