//! A front for a plain-HTTP registry that speaks both TLS and plain HTTP
//! on one 127.0.0.1 port, for redirect tests: over TLS (with a
//! certificate for `localhost` signed by a CA of its own, made with the
//! `openssl` CLI) it answers every request with a redirect to `http://` on
//! the same host and port; over plain HTTP it forwards the request to the
//! registry and records the `Authorization` header it carried. One port
//! for both makes the downgrade the one a real registry would do from 443
//! to 80: same host, only the scheme weaker.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use super::process::{install_crypto_provider, require_binary};

/// What the plain-HTTP side received: method, path and the
/// `Authorization` header, if any.
#[derive(Debug, Clone)]
pub struct PlainRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

/// A running front; its task ends with the test's runtime.
pub struct TlsFront {
    port: u16,
    ca: PathBuf,
    plain: Arc<Mutex<Vec<PlainRequest>>>,
    tls_requests: Arc<Mutex<usize>>,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// A front for the plain-HTTP registry at `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> TlsFront {
        install_crypto_provider();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (chain, key) = make_certificate(dir.path());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the certificate and key match");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let plain = Arc::new(Mutex::new(Vec::new()));
        let tls_requests = Arc::new(Mutex::new(0));
        let state = Shared {
            port,
            upstream: format!("http://{upstream}"),
            http: reqwest::Client::new(),
            plain: plain.clone(),
            tls_requests: tls_requests.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, acceptor.clone(), state.clone()));
            }
        });
        TlsFront {
            port,
            ca: dir.path().join("ca.pem"),
            plain,
            tls_requests,
            _dir: dir,
        }
    }

    /// `localhost:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The CA certificate to trust (`SSL_CERT_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// Requests that reached the plain-HTTP side.
    pub fn plain_requests(&self) -> Vec<PlainRequest> {
        self.plain.lock().unwrap().clone()
    }

    /// How many requests came over TLS (each answered with a redirect).
    pub fn tls_requests(&self) -> usize {
        *self.tls_requests.lock().unwrap()
    }
}

#[derive(Clone)]
struct Shared {
    port: u16,
    upstream: String,
    http: reqwest::Client,
    plain: Arc<Mutex<Vec<PlainRequest>>>,
    tls_requests: Arc<Mutex<usize>>,
}

async fn serve(stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor, state: Shared) {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await.unwrap_or(0) == 0 {
        return;
    }
    let builder = hyper::server::conn::http1::Builder::new();
    // 0x16: a TLS handshake record.
    if first[0] == 0x16 {
        let Ok(tls) = acceptor.accept(stream).await else {
            return;
        };
        let service = service_fn(move |request| redirect(request, state.clone()));
        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
    } else {
        let service = service_fn(move |request| forward(request, state.clone()));
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

async fn redirect(
    request: Request<hyper::body::Incoming>,
    state: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    *state.tls_requests.lock().unwrap() += 1;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let location = format!("http://localhost:{}{path}", state.port);
    Ok(Response::builder()
        .status(307)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .unwrap())
}

async fn forward(
    request: Request<hyper::body::Incoming>,
    state: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers = request.headers().clone();
    state.plain.lock().unwrap().push(PlainRequest {
        method: method.to_string(),
        path: path.clone(),
        authorization: headers
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    });
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut upstream = state
        .http
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return Ok(Response::builder()
            .status(502)
            .body(Full::new(Bytes::new()))
            .unwrap());
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "content-length" {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    Ok(response.body(Full::new(body)).unwrap())
}

/// A CA and a certificate it signs for `localhost` and 127.0.0.1, in
/// `dir`; returns the chain and key for the server.
fn make_certificate(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let openssl = require_binary("openssl", "openssl");
    let run = |args: &[&str]| {
        let output = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
        ][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[
        &["req", "-nodes", "-subj", "/CN=localhost"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr"],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("a PEM file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("a private key");
    (chain, key)
}
