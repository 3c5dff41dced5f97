//! A real Prometheus for tests: Debian's `prometheus` (2.42) on 127.0.0.1
//! with the remote-write receiver enabled, so the product's remote-write
//! client is checked against the genuine decoder (snappy, protobuf, label
//! rules, out-of-order rejection) and the results are read back with PromQL.
//! [`Prometheus::start_binary`] starts another build instead, such as
//! Prometheus 3 from `super::peers`.
//!
//! The query client, [`QueryApi`], is shared with every store that speaks
//! Prometheus' HTTP API (VictoriaMetrics too), so one set of assertions
//! reads them all.
//!
//! It scrapes nothing (no scrape jobs, a 1h scrape interval), so the only
//! series are the ones written to [`Prometheus::write_url`]. TSDB data lives
//! in a tempdir removed on drop.
//!
//! What Prometheus 2.42's receiver does (checked by the support self-tests):
//! - It speaks remote write 1.0 only. A 2.0 request
//!   (`proto=io.prometheus.write.v2.Request`) is decoded as 1.0, yields no
//!   series, and is answered 204 with nothing stored: no 415 to trigger a
//!   sender's fallback.
//! - An out-of-order sample ("out of order sample") or a different value at
//!   an existing timestamp ("duplicate sample for timestamp") is answered
//!   400; resending an identical sample is accepted (204).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::Value;

use super::process::{free_port, install_crypto_provider, require_binary, ChildGuard};
use super::wait::wait_for_async;

/// How long Prometheus gets to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus; killed when dropped. Queried through its
/// [`QueryApi`] (`prometheus.query(...)`).
pub struct Prometheus {
    api: QueryApi,
    _child: ChildGuard,
    // Config and TSDB; removed after the child is killed (declaration order).
    _dir: tempfile::TempDir,
}

/// A client of Prometheus' HTTP query API (`/api/v1/query`,
/// `/api/v1/series`) at one base URL.
pub struct QueryApi {
    url: String,
    http: reqwest::Client,
    /// A label (name, value) every selector gets and every answer loses:
    /// a test's scope of a shared store (`super::shared`).
    scope: Option<(String, String)>,
}

/// One element of an instant-vector result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name` ("" when the series has none).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

impl Prometheus {
    /// Starts Prometheus with the default flags (including the default 5m
    /// `--query.lookback-delta`).
    pub async fn start() -> Prometheus {
        Prometheus::start_with_args(&[]).await
    }

    /// Starts Prometheus with extra command-line flags appended, e.g.
    /// `&["--query.lookback-delta=30s"]`.
    pub async fn start_with_args(extra_args: &[&str]) -> Prometheus {
        let binary = require_binary("prometheus", "prometheus");
        Prometheus::start_binary(&binary, extra_args).await
    }

    /// Starts the Prometheus program `binary` (any version from 2.33 on),
    /// receiving remote write and scraping nothing, with `extra_args`
    /// appended to the flags.
    pub async fn start_binary(binary: &Path, extra_args: &[&str]) -> Prometheus {
        // No scrape_configs: only remote-written data ends up in the TSDB.
        Prometheus::launch(
            binary,
            "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n",
            extra_args,
        )
        .await
    }

    /// Starts Prometheus also scraping `target` (host:port) every second as
    /// job `job`, with `labels` added: as a cluster's Prometheus or agent
    /// would scrape the pusher's own /metrics.
    pub async fn start_scraping(job: &str, target: &str, labels: &[(&str, &str)]) -> Prometheus {
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!("          {k}: {v:?}\n"))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1h\nscrape_configs:\n  - job_name: {job:?}\n    static_configs:\n      - targets: [{target:?}]\n        labels:\n{labels}"
        );
        let binary = require_binary("prometheus", "prometheus");
        Prometheus::launch(&binary, &config, &[]).await
    }

    async fn launch(binary: &Path, config: &str, extra_args: &[&str]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("create a tempdir for prometheus");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the prometheus config");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");

        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .args(extra_args);
        let mut child = ChildGuard::spawn("prometheus", &mut command);
        if let Err(message) = child
            .wait_until_http(&format!("{url}/-/ready"), START_TIMEOUT, |status| {
                status.is_success()
            })
            .await
        {
            panic!("{message}");
        }
        Prometheus {
            api: QueryApi::new(url),
            _child: child,
            _dir: dir,
        }
    }

    /// The remote-write receiver endpoint.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.api.url)
    }
}

impl Deref for Prometheus {
    type Target = QueryApi;

    fn deref(&self) -> &QueryApi {
        &self.api
    }
}

impl QueryApi {
    /// A client of the API served at `url` (`http://HOST:PORT`, no path).
    pub fn new(url: String) -> QueryApi {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the query API client");
        QueryApi {
            url,
            http,
            scope: None,
        }
    }

    /// A client that sees only the series labelled `name="value"`, and
    /// answers without that label.
    pub fn scoped(url: String, name: &str, value: &str) -> QueryApi {
        QueryApi {
            scope: Some((name.to_owned(), value.to_owned())),
            ..QueryApi::new(url)
        }
    }

    /// `promql` with the scope's matcher on every selector.
    fn in_scope(&self, promql: &str) -> Result<String, String> {
        let Some((name, value)) = &self.scope else {
            return Ok(promql.to_owned());
        };
        let mut expr = promql_parser::parser::parse(promql)
            .map_err(|e| format!("scope the query {promql:?}: {e}"))?;
        let matcher = Matcher::new(MatchOp::Equal, name, value);
        add_matcher(&mut expr, &matcher);
        Ok(expr.to_string())
    }

    /// `labels` without the scope's label.
    fn out_of_scope(&self, mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
        if let Some((name, _)) = &self.scope {
            labels.remove(name);
        }
        labels
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Evaluates `promql` at the current time through `/api/v1/query`.
    ///
    /// Panics with Prometheus's error if the query fails. A scalar result
    /// comes back as one sample with no labels; string and matrix results
    /// panic (use a range API directly for those).
    pub async fn query(&self, promql: &str) -> Vec<Sample> {
        match self.try_query(promql).await {
            Ok(samples) => samples,
            Err(message) => panic!("{message}"),
        }
    }

    /// Like [`Prometheus::query`], but an `Err` instead of a panic.
    pub async fn try_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let scoped = self.in_scope(promql)?;
        let data = self
            .api_post("/api/v1/query", &[("query", &scoped)])
            .await?;
        let samples =
            parse_query_data(&data).map_err(|e| format!("query {scoped:?}: {e} in {data}"))?;
        Ok(samples
            .into_iter()
            .map(|s| Sample {
                labels: self.out_of_scope(s.labels),
                value: s.value,
            })
            .collect())
    }

    /// Re-runs `promql` until `pred` accepts the samples and returns them;
    /// panics with the last result (or error) after `timeout`.
    pub async fn query_until(
        &self,
        promql: &str,
        pred: impl Fn(&[Sample]) -> bool,
        timeout: Duration,
    ) -> Vec<Sample> {
        let mut last = Err(String::from("not queried"));
        let matched = wait_for_async(timeout, async || {
            last = self.try_query(promql).await;
            last.as_ref().ok().filter(|samples| pred(samples)).cloned()
        })
        .await;
        matched.unwrap_or_else(|| {
            panic!("query {promql:?} did not satisfy the predicate within {timeout:?}; last result: {last:?}")
        })
    }

    /// The label sets of every series matching `matcher` (e.g.
    /// `{__name__=~"container_image.*"}`), via `/api/v1/series`.
    ///
    /// Prometheus's default time range for this API is all time, so series
    /// written with old timestamps are included.
    pub async fn series(&self, matcher: &str) -> Vec<BTreeMap<String, String>> {
        let scoped = self.in_scope(matcher).unwrap_or_else(|e| panic!("{e}"));
        let data = match self
            .api_post("/api/v1/series", &[("match[]", &scoped)])
            .await
        {
            Ok(data) => data,
            Err(message) => panic!("{message}"),
        };
        let Some(list) = data.as_array() else {
            panic!("series {matcher:?}: expected an array, got {data}");
        };
        list.iter()
            .map(|labels| {
                let labels =
                    parse_labels(labels).unwrap_or_else(|e| panic!("series {matcher:?}: {e}"));
                self.out_of_scope(labels)
            })
            .collect()
    }

    /// POSTs a form to an API endpoint and returns the `data` member of a
    /// successful answer, or a message holding the error body.
    async fn api_post(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_urlencode(form))
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("POST {path}: reading body: {e}"))?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("POST {path} answered {status} with non-JSON ({e}): {body}"))?;
        if !status.is_success() || json["status"] != "success" {
            return Err(format!("POST {path} {form:?} answered {status}: {body}"));
        }
        Ok(json["data"].clone())
    }
}

/// Adds `matcher` to every selector of `expr` (to each alternative of an
/// `or` selector).
fn add_matcher(expr: &mut Expr, matcher: &Matcher) {
    let select = |selector: &mut VectorSelector| {
        let matchers = &mut selector.matchers;
        matchers.matchers.push(matcher.clone());
        for alternative in &mut matchers.or_matchers {
            alternative.push(matcher.clone());
        }
    };
    match expr {
        Expr::Aggregate(a) => {
            add_matcher(&mut a.expr, matcher);
            if let Some(param) = &mut a.param {
                add_matcher(param, matcher);
            }
        }
        Expr::Unary(u) => add_matcher(&mut u.expr, matcher),
        Expr::Binary(b) => {
            add_matcher(&mut b.lhs, matcher);
            add_matcher(&mut b.rhs, matcher);
        }
        Expr::Paren(p) => add_matcher(&mut p.expr, matcher),
        Expr::Subquery(s) => add_matcher(&mut s.expr, matcher),
        Expr::VectorSelector(v) => select(v),
        Expr::MatrixSelector(m) => select(&mut m.vs),
        Expr::Call(c) => {
            for arg in &mut c.args.args {
                add_matcher(arg, matcher);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// `application/x-www-form-urlencoded` encoding (reqwest's `form` feature is
/// not enabled in this project, but its `Url` does the same encoding).
fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://localhost/").expect("a constant URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

fn parse_query_data(data: &Value) -> Result<Vec<Sample>, String> {
    match data["resultType"].as_str() {
        Some("vector") => {
            let items = data["result"]
                .as_array()
                .ok_or("vector result is not an array")?;
            items
                .iter()
                .map(|item| {
                    Ok(Sample {
                        labels: parse_labels(&item["metric"])?,
                        value: parse_sample_value(&item["value"])?,
                    })
                })
                .collect()
        }
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: parse_sample_value(&data["result"])?,
        }]),
        other => Err(format!("unsupported resultType {other:?}")),
    }
}

fn parse_labels(metric: &Value) -> Result<BTreeMap<String, String>, String> {
    let object = metric
        .as_object()
        .ok_or_else(|| format!("labels are not an object: {metric}"))?;
    object
        .iter()
        .map(|(name, value)| match value.as_str() {
            Some(value) => Ok((name.clone(), value.to_owned())),
            None => Err(format!("label {name} is not a string: {value}")),
        })
        .collect()
}

/// A `[unix_seconds, "value"]` pair; the value is a string so that NaN and
/// ±Inf survive JSON.
fn parse_sample_value(pair: &Value) -> Result<f64, String> {
    let text = pair
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("sample is not [time, \"value\"]: {pair}"))?;
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse()
            .map_err(|e| format!("sample value {text:?}: {e}")),
    }
}
