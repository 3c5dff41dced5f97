//! Checks the Grafana dashboards in `dashboards/` without a Grafana: the
//! JSON model (stable uids, the data source variable on every panel and
//! query, descriptions, layout) and every PromQL expression, parsed with
//! promql-parser after its template variables are substituted, and then
//! read: only series and labels the pusher sends, inventory series always
//! read through `last_over_time(…[$window])` and filtered by job and
//! cluster, joins on `(cluster, digest)`.

use crate::dashboard_queries;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use container_image_pusher::series::Family;
use dashboard_queries::{
    all_panel_queries, dashboards, panels, raw_panel_queries, substitute, variables_used,
    DEFAULT_VALUES,
};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorMatchCardinality, VectorSelector};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// The dashboards shipped, by file: a uid must never change once published
/// (links and provisioned copies point at it).
const DASHBOARDS: &[(&str, &str)] = &[
    ("base-images.json", "cip-base-images"),
    ("freshness.json", "cip-freshness"),
    ("inventory.json", "cip-inventory"),
    ("pusher-health.json", "cip-pusher-health"),
    ("sizes.json", "cip-sizes"),
    ("supply-chain.json", "cip-supply-chain"),
];

/// The pushed inventory series and their own labels (besides `job` and
/// `cluster`), from the one table the pusher builds its series with. The
/// pusher's own health families, pushed as well, are read like the scraped
/// self-metrics below (the Pusher health dashboard's job is the scrape's).
fn inventory() -> Vec<(&'static str, &'static [&'static str])> {
    Family::ALL
        .iter()
        .filter(|f| !f.is_self_metric())
        .map(|f| (f.name(), f.label_names()))
        .collect()
}

/// Labels every pushed series carries: `--job` and the `cluster` external label.
const PUSHED_LABELS: &[&str] = &["job", "cluster"];

/// Whether `label` is one of the labels `container_image_workload_labels`
/// carries besides those of the table: a `--workload-labels` key
/// (`label_*`) or `--workload-annotations` key (`annotation_*`).
fn owner_label(label: &str) -> bool {
    label.starts_with("label_") || label.starts_with("annotation_")
}

/// The pusher's own metrics (scraped from its /metrics) and their labels.
const SELF_METRICS: &[(&str, &[&str])] = &[
    (
        "container_image_pusher_pushes_total",
        &["endpoint", "outcome"],
    ),
    (
        "container_image_pusher_push_duration_seconds_bucket",
        &["endpoint", "le"],
    ),
    (
        "container_image_pusher_push_duration_seconds_sum",
        &["endpoint"],
    ),
    (
        "container_image_pusher_push_duration_seconds_count",
        &["endpoint"],
    ),
    ("container_image_pusher_series_sent_total", &["endpoint"]),
    ("container_image_pusher_bytes_sent_total", &["endpoint"]),
    ("container_image_pusher_series_dropped_total", &["endpoint"]),
    (
        "container_image_pusher_last_success_timestamp_seconds",
        &["endpoint"],
    ),
    ("container_image_pusher_resolve_failures_total", &["class"]),
    (
        "container_image_pusher_cache_lookups_total",
        &["cache", "result"],
    ),
    (
        "container_image_pusher_discovery_errors_total",
        &["kind", "reason"],
    ),
    ("container_image_pusher_snapshot_containers", &[]),
    ("container_image_pusher_snapshot_images", &[]),
    ("container_image_pusher_snapshot_series", &[]),
    (
        "container_image_pusher_snapshot_duration_seconds_bucket",
        &["le"],
    ),
    ("container_image_pusher_snapshot_duration_seconds_sum", &[]),
    (
        "container_image_pusher_snapshot_duration_seconds_count",
        &[],
    ),
    (
        "container_image_pusher_registry_requests_total",
        &["host", "method", "code"],
    ),
    ("container_image_pusher_leader", &[]),
];

/// Label values the pusher can produce, for labels with a closed set.
const VALUES: &[(&str, &[&str])] = &[
    (
        "kind",
        &[
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            // container_image_referrer's kind of artifact.
            "signature",
            "sbom",
            "attestation",
            "other",
        ],
    ),
    ("outcome", &["success", "failed", "rejected"]),
    ("result", &["hit", "miss"]),
    (
        "class",
        &[
            "not_found",
            "unauthorized",
            "forbidden",
            "rate_limited",
            "unavailable",
            "bad_format",
            "invalid_reference",
            "timeout",
            "other",
        ],
    ),
];

/// Sentinel values, so that the checks can tell `[$window]` from a range
/// that merely happens to equal the default.
const WINDOW: Duration = Duration::from_secs(3 * 3600 + 7 * 60);
const RATE_INTERVAL: Duration = Duration::from_secs(4 * 60 + 3);

fn sentinel_values() -> Vec<(&'static str, &'static str)> {
    DEFAULT_VALUES
        .iter()
        .map(|&(name, value)| match name {
            "window" => (name, "3h7m"),
            "__rate_interval" => (name, "4m3s"),
            _ => (name, value),
        })
        .collect()
}

/// Panels whose inventory selectors may skip a rule, and why.
fn exempt(dashboard: &str, panel: &str) -> bool {
    // Reads the newest sample timestamp per cluster through a subquery, for
    // every namespace on purpose: it measures the pusher, not a namespace.
    dashboard == "pusher-health.json" && panel == "Last pushed snapshot, by cluster"
}

// ---------------------------------------------------------------------------
// The JSON model
// ---------------------------------------------------------------------------

#[test]
fn dashboards_directory_holds_exactly_the_shipped_dashboards() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("dashboards/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let expected: Vec<&str> = DASHBOARDS.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        files, expected,
        "add a new dashboard to DASHBOARDS, with its uid"
    );
    // And every one parses (dashboards() panics with the file name if not).
    assert_eq!(dashboards(&dir()).len(), DASHBOARDS.len());
}

#[test]
fn uids_are_stable_and_ids_null() {
    let mut titles = BTreeSet::new();
    for (file, dashboard) in dashboards(&dir()) {
        let expected = DASHBOARDS.iter().find(|(f, _)| *f == file).unwrap().1;
        assert_eq!(dashboard["uid"], expected, "{file}: uid changed");
        // Grafana assigns ids per instance; a fixed one clashes on import.
        assert!(
            dashboard.get("id").is_some_and(Value::is_null),
            "{file}: id must be null"
        );
        assert!(
            dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}"
        );
        let title = dashboard["title"].as_str().unwrap_or_default();
        assert!(
            titles.insert(title.to_owned()),
            "{file}: duplicate or empty title {title:?}"
        );
        let description = dashboard["description"].as_str().unwrap_or_default();
        // Each dashboard explains why it reads through last_over_time.
        assert!(
            description.contains("last_over_time") && description.contains("$window"),
            "{file}: the description must explain the $window choice"
        );
    }
    let uids: BTreeSet<&str> = DASHBOARDS.iter().map(|(_, u)| *u).collect();
    assert_eq!(uids.len(), DASHBOARDS.len(), "uids must be unique");
    assert!(
        uids.iter().all(|u| u.len() <= 40),
        "Grafana uids are at most 40 characters"
    );
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> Option<&'a Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn template_variables() {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    for (file, dashboard) in dashboards(&dir()) {
        let ds = variable(&dashboard, "datasource")
            .unwrap_or_else(|| panic!("{file}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");

        let cluster =
            variable(&dashboard, "cluster").unwrap_or_else(|| panic!("{file}: no cluster"));
        assert_eq!(cluster["type"], "query", "{file}");
        assert_eq!(
            cluster["query"], "label_values(container_image_container_info, cluster)",
            "{file}"
        );
        let namespace =
            variable(&dashboard, "namespace").unwrap_or_else(|| panic!("{file}: no namespace"));
        assert_eq!(namespace["type"], "query", "{file}");
        assert_eq!(
            namespace["query"],
            r#"label_values(container_image_container_info{cluster=~"$cluster"}, namespace)"#,
            "{file}: namespaces of the selected clusters"
        );
        for var in [cluster, namespace] {
            assert_eq!(var["datasource"], datasource, "{file}: {}", var["name"]);
            // What the editor shows must be what runs.
            assert_eq!(var["definition"], var["query"], "{file}: {}", var["name"]);
            // "All" must match series where the label is empty too.
            assert_eq!(var["allValue"], ".*", "{file}: {}", var["name"]);
            assert_eq!(var["includeAll"], true, "{file}");
            assert_eq!(var["multi"], true, "{file}");
            // Re-read on time range change: a cluster may push only hourly.
            assert_eq!(var["refresh"], 2, "{file}");
        }

        let window = variable(&dashboard, "window").unwrap_or_else(|| panic!("{file}: no window"));
        assert!(
            ["interval", "custom"].contains(&window["type"].as_str().unwrap()),
            "{file}"
        );
        let options: Vec<&str> = window["query"].as_str().unwrap().split(',').collect();
        assert!(
            options.contains(&"1h") && options.contains(&"1d"),
            "{file}: {options:?}"
        );
        assert_eq!(window["current"]["value"], "1h", "{file}");
        // Longer than the CronJob's 15 minutes, always.
        assert!(
            !options.iter().any(|o| ["1m", "5m", "10m"].contains(o)),
            "{file}: {options:?}"
        );

        let job = variable(&dashboard, "job").unwrap_or_else(|| panic!("{file}: no job"));
        assert_eq!(job["current"]["value"], "container-image-pusher", "{file}");

        for var in dashboard["templating"]["list"].as_array().unwrap() {
            assert!(
                var["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{file}: variable {} has no description",
                var["name"]
            );
        }
    }
}

#[test]
fn every_panel_and_query_uses_the_datasource_variable_and_is_described() {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    for (file, dashboard) in dashboards(&dir()) {
        let mut ids = BTreeSet::new();
        let all = panels(&dashboard);
        assert!(!all.is_empty(), "{file}: no panels");
        for panel in all {
            let title = panel["title"].as_str().unwrap_or_default();
            let what = format!("{file} / {title:?}");
            assert!(!title.is_empty(), "{what}: no title");
            assert!(
                ids.insert(panel["id"].as_u64().expect("numeric id")),
                "{what}: duplicate id"
            );
            assert!(
                panel["description"].as_str().is_some_and(|d| d.len() > 20),
                "{what}: needs a description"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"], datasource, "{what}");
            let targets = panel["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no targets"));
            assert!(!targets.is_empty(), "{what}: no targets");
            let mut refs = BTreeSet::new();
            for target in targets {
                assert_eq!(
                    target["datasource"], datasource,
                    "{what}: target {}",
                    target["refId"]
                );
                assert!(
                    refs.insert(target["refId"].as_str().unwrap()),
                    "{what}: duplicate refId"
                );
                assert!(
                    target["expr"]
                        .as_str()
                        .is_some_and(|e| !e.trim().is_empty()),
                    "{what}"
                );
                if panel["type"] == "table" {
                    // Tables merge instant queries row by row.
                    assert_eq!(target["format"], "table", "{what}");
                    assert_eq!(target["instant"], true, "{what}");
                }
            }
        }
    }
}

#[test]
fn panels_fit_the_grid_without_overlapping() {
    for (file, dashboard) in dashboards(&dir()) {
        let mut cells = BTreeMap::new();
        for panel in panels(&dashboard) {
            let pos = &panel["gridPos"];
            let (x, y, w, h) = (
                pos["x"].as_u64().unwrap(),
                pos["y"].as_u64().unwrap(),
                pos["w"].as_u64().unwrap(),
                pos["h"].as_u64().unwrap(),
            );
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{file}: {} is off the grid",
                panel["title"]
            );
            for cx in x..x + w {
                for cy in y..y + h {
                    if let Some(other) = cells.insert((cx, cy), panel["title"].clone()) {
                        panic!("{file}: {} overlaps {other}", panel["title"]);
                    }
                }
            }
        }
    }
}

#[test]
fn no_exported_namespace_anywhere() {
    // Our series carry `namespace` themselves; `exported_namespace` is what
    // a scrape makes of it, and pushed data never has it.
    for (file, _) in DASHBOARDS {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        assert!(!text.contains("exported_namespace"), "{file}");
        assert!(!text.contains("[["), "{file}: legacy [[variable]] syntax");
    }
}

// ---------------------------------------------------------------------------
// The queries
// ---------------------------------------------------------------------------

#[test]
fn every_query_parses_after_substitution() {
    let queries = all_panel_queries(&dir());
    assert!(queries.len() > 50, "only {} queries?", queries.len());
    let mut failures = Vec::new();
    for (dashboard, panel, expr) in &queries {
        assert!(
            !expr.contains('$'),
            "{dashboard} / {panel}: left unsubstituted: {expr}"
        );
        if let Err(e) = parser::parse(expr) {
            failures.push(format!("{dashboard} / {panel}: {e}\n    {expr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "queries that do not parse:\n{}",
        failures.join("\n")
    );
}

#[test]
fn variable_queries_parse_and_read_the_inventory() {
    for (file, dashboard) in dashboards(&dir()) {
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            if var["type"] != "query" {
                continue;
            }
            let query = var["query"]
                .as_str()
                .expect("query variables use the string form");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: {query} is not label_values(selector, label)"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let expr = parse(&substitute(selector, DEFAULT_VALUES).unwrap());
            let Expr::VectorSelector(vs) = expr else {
                panic!("{file}: {selector} is not a selector")
            };
            // The owner variable lists the values of the owner label the
            // dashboard is told to use.
            let (series, own_label) = if var["name"] == "owner" {
                ("container_image_workload_labels", "$owner_label")
            } else if var["name"] == "policy" {
                // The verification policies the pusher was given.
                ("container_image_signature_verified", "policy")
            } else {
                (
                    "container_image_container_info",
                    var["name"].as_str().unwrap(),
                )
            };
            assert_eq!(vs.name.as_deref(), Some(series), "{file}");
            assert_eq!(
                label.trim(),
                own_label,
                "{file}: a variable lists its own label"
            );
        }
    }
}

#[test]
fn queries_use_only_defined_variables_and_regex_for_multi_values() {
    for (file, dashboard) in dashboards(&dir()) {
        let vars = dashboard["templating"]["list"].as_array().unwrap();
        let defined: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        let multi: Vec<&str> = vars
            .iter()
            .filter(|v| v["multi"] == true || v["includeAll"] == true)
            .filter_map(|v| v["name"].as_str())
            .collect();
        let mut texts: Vec<(String, String)> = raw_panel_queries(&dir())
            .into_iter()
            .filter(|q| q.dashboard == file)
            .map(|q| (q.panel, q.expr))
            .collect();
        for var in vars {
            texts.push((
                format!("variable {}", var["name"]),
                var["query"].as_str().unwrap_or_default().into(),
            ));
        }
        for panel in panels(&dashboard) {
            // Titles and descriptions may show variables too.
            for key in ["title", "description"] {
                texts.push((
                    format!("{} {key}", panel["title"]),
                    panel[key].as_str().unwrap_or_default().into(),
                ));
            }
        }
        for (what, text) in texts {
            for name in variables_used(&text) {
                assert!(
                    defined.contains(name.as_str()) || name.starts_with("__"),
                    "{file} / {what}: ${name} is not a variable of this dashboard"
                );
            }
            // A multi-value variable expands to a regex alternation: only a
            // regex matcher can take it.
            for name in &multi {
                for form in [format!("${name}"), format!("${{{name}}}")] {
                    for (i, _) in text.match_indices(&form) {
                        let next = text[i + form.len()..].chars().next();
                        if form.ends_with(name)
                            && next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            continue; // a longer name
                        }
                        let before = &text[..i];
                        assert!(
                            before.ends_with("=~\"")
                                || before.ends_with("!~\"")
                                || what.ends_with("title")
                                || what.ends_with("description"),
                            "{file} / {what}: ${name} outside a regex matcher"
                        );
                    }
                }
            }
        }
    }
}

/// One selector in an expression, with what surrounds it.
struct Use<'a> {
    vs: &'a VectorSelector,
    /// The range, when the selector is a range vector.
    range: Option<Duration>,
    /// The function whose argument the selector is.
    function: Option<&'static str>,
    /// The range of the enclosing subquery, if any.
    subquery: Option<Duration>,
}

/// A binary operation that matches vectors on labels.
struct Join {
    /// The `on (...)` labels; None for `ignoring (...)`.
    on: Option<Vec<String>>,
    /// The `group_left/right (...)` labels, for many-to-one joins.
    group: Option<Vec<String>>,
}

#[derive(Default)]
struct Found<'a> {
    uses: Vec<Use<'a>>,
    joins: Vec<Join>,
    groupings: Vec<Vec<String>>,
}

fn walk<'a>(
    expr: &'a Expr,
    function: Option<&'static str>,
    subquery: Option<Duration>,
    found: &mut Found<'a>,
) {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(m) = &a.modifier {
                found.groupings.push(m.labels().labels.clone());
            }
            if let Some(p) = &a.param {
                walk(p, None, subquery, found);
            }
            walk(&a.expr, None, subquery, found);
        }
        Expr::Unary(u) => walk(&u.expr, None, subquery, found),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                let on = m
                    .matching
                    .as_ref()
                    .map(|l| (l.is_include(), l.labels().labels.clone()));
                let group = match &m.card {
                    VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                        Some(l.labels.clone())
                    }
                    _ => None,
                };
                match on {
                    Some((true, labels)) => found.joins.push(Join {
                        on: Some(labels),
                        group,
                    }),
                    Some((false, _)) => found.joins.push(Join { on: None, group }),
                    None if group.is_some() => found.joins.push(Join {
                        on: Some(vec![]),
                        group,
                    }),
                    None => {}
                }
            }
            walk(&b.lhs, None, subquery, found);
            walk(&b.rhs, None, subquery, found);
        }
        Expr::Paren(p) => walk(&p.expr, None, subquery, found),
        Expr::Subquery(s) => walk(&s.expr, None, Some(s.range), found),
        Expr::Call(c) => {
            for arg in &c.args.args {
                walk(arg, Some(c.func.name), subquery, found);
            }
        }
        Expr::VectorSelector(vs) => found.uses.push(Use {
            vs,
            range: None,
            function,
            subquery,
        }),
        Expr::MatrixSelector(ms) => found.uses.push(Use {
            vs: &ms.vs,
            range: Some(ms.range),
            function,
            subquery,
        }),
        _ => {}
    }
}

fn parse(expr: &str) -> Expr {
    parser::parse(expr).unwrap_or_else(|e| panic!("{e}: {expr}"))
}

fn matcher<'a>(vs: &'a VectorSelector, name: &str) -> Option<&'a promql_parser::label::Matcher> {
    vs.matchers.matchers.iter().find(|m| m.name == name)
}

#[test]
fn queries_read_only_pushed_series_and_their_labels() {
    let inventory: BTreeMap<&str, &[&str]> = inventory().into_iter().collect();
    let self_metrics: BTreeMap<&str, &[&str]> = SELF_METRICS.iter().copied().collect();
    let all_labels: BTreeSet<&str> = inventory
        .iter()
        .map(|(name, labels)| (*name, *labels))
        .chain(SELF_METRICS.iter().copied())
        .flat_map(|(_, labels)| labels.iter().copied())
        .chain(PUSHED_LABELS.iter().copied())
        .collect();
    let values: BTreeMap<&str, &[&str]> = VALUES.iter().copied().collect();
    let sentinels = sentinel_values();
    let mut problems = Vec::new();

    for q in raw_panel_queries(&dir()) {
        let what = format!("{} / {} / {}", q.dashboard, q.panel, q.ref_id);
        let mut problem = |p: String| problems.push(format!("{what}: {p}"));
        let expr = parse(&substitute(&q.expr, &sentinels).unwrap());
        let mut found = Found::default();
        walk(&expr, None, None, &mut found);
        assert!(!found.uses.is_empty(), "{what}: reads no series");

        for u in &found.uses {
            let Some(name) = u.vs.name.as_deref() else {
                problem("a selector without a metric name".into());
                continue;
            };
            if !u.vs.matchers.or_matchers.is_empty() {
                problem(format!("{name}: `or` inside a selector"));
            }
            for m in &u.vs.matchers.matchers {
                if let (MatchOp::Equal | MatchOp::NotEqual, Some(allowed)) =
                    (&m.op, values.get(m.name.as_str()))
                {
                    if !m.value.is_empty() && !allowed.contains(&m.value.as_str()) {
                        problem(format!("{name}: {}={:?} is never sent", m.name, m.value));
                    }
                }
            }
            if let Some(labels) = inventory.get(name) {
                let owners = name == Family::WorkloadLabels.name();
                for m in &u.vs.matchers.matchers {
                    let known = labels.contains(&m.name.as_str())
                        || PUSHED_LABELS.contains(&m.name.as_str())
                        || (owners && owner_label(&m.name));
                    if !known {
                        problem(format!("{name} has no label {}", m.name));
                    }
                }
                // Only the pushed copy: a scrape of /metrics has another job.
                match matcher(u.vs, "job") {
                    Some(m)
                        if matches!(m.op, MatchOp::Equal)
                            && m.value == "container-image-pusher" => {}
                    _ => problem(format!("{name}: no job=\"$job\" matcher")),
                }
                if !matcher(u.vs, "cluster")
                    .is_some_and(|m| matches!(m.op, MatchOp::Re(_)) && m.value == ".*")
                {
                    problem(format!("{name}: no cluster=~\"$cluster\" matcher"));
                }
                let exempt = exempt(&q.dashboard, &q.panel);
                if name == "container_image_container_info"
                    && !exempt
                    && !matcher(u.vs, "namespace")
                        .is_some_and(|m| matches!(m.op, MatchOp::Re(_)) && m.value == ".*")
                {
                    problem(format!("{name}: no namespace=~\"$namespace\" matcher"));
                }
                // Sparse pushes (a CronJob every 15 minutes) need a look-back.
                let windowed = u.function == Some("last_over_time") && u.range == Some(WINDOW);
                // The freshness panel reads recent samples exactly (a plain
                // selector under timestamp()) and older ones by subquery.
                let sub = exempt
                    && (u.subquery == Some(WINDOW) || (u.subquery.is_none() && u.range.is_none()));
                if !windowed && !sub {
                    problem(format!(
                        "{name}: not read through last_over_time(...[$window])"
                    ));
                }
            } else if let Some(labels) = self_metrics.get(name) {
                for m in &u.vs.matchers.matchers {
                    // Scraped: job and namespace are the scrape's, so they are
                    // not filtered on; cluster comes from external labels.
                    if !labels.contains(&m.name.as_str()) && m.name != "cluster" {
                        problem(format!(
                            "{name}: matcher on {}, which the pusher does not set",
                            m.name
                        ));
                    }
                }
                if !matcher(u.vs, "cluster").is_some_and(|m| matches!(m.op, MatchOp::Re(_))) {
                    problem(format!("{name}: no cluster=~\"$cluster\" matcher"));
                }
                if name.ends_with("_total") || name.ends_with("_bucket") {
                    let counted = matches!(u.function, Some("rate" | "increase"))
                        && u.range == Some(RATE_INTERVAL);
                    if !counted {
                        problem(format!(
                            "{name}: a counter outside rate/increase(...[$__rate_interval])"
                        ));
                    }
                }
            } else {
                problem(format!("unknown series {name}"));
            }
        }

        for Join { on, group } in &found.joins {
            match on {
                None => problem("`ignoring` matches on whatever else differs: use on (...)".into()),
                Some(on) => {
                    if !on.iter().any(|l| l == "cluster") {
                        problem(format!(
                            "on ({}) without cluster: clusters would collide",
                            on.join(", ")
                        ));
                    }
                    // Image series join on their digest; owners on the
                    // workload (a Pod's drift has no kind: it is a Pod's).
                    let by_digest = on.len() == 2 && on.iter().any(|l| l == "digest");
                    let by_workload = group.iter().flatten().all(|l| owner_label(l))
                        && [
                            &["cluster", "namespace", "kind", "name"][..],
                            &["cluster", "namespace", "name"],
                        ]
                        .iter()
                        .any(|w| on.iter().map(String::as_str).eq(w.iter().copied()));
                    // Version answers are per image (as resolve errors).
                    let by_image = on.iter().map(String::as_str).eq(["cluster", "image"])
                        && group.as_ref().is_some_and(|g| g.is_empty());
                    if group.is_some() && !by_digest && !by_workload && !by_image {
                        problem(format!(
                            "group_left/right on ({}), not on (cluster, digest) nor on a workload for its owner",
                            on.join(", ")
                        ));
                    }
                    for l in on {
                        if !all_labels.contains(l.as_str()) {
                            problem(format!("on ({l}): no series has it"));
                        }
                    }
                }
            }
            for l in group.iter().flatten() {
                if !all_labels.contains(l.as_str()) && !owner_label(l) {
                    problem(format!("group_left ({l}): no series has it"));
                }
            }
        }
        for grouping in &found.groupings {
            for l in grouping {
                if !all_labels.contains(l.as_str()) && !owner_label(l) {
                    problem(format!("by ({l}): no series has it"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The upstream exporter's two example queries are there, rewritten for
/// pushed data.
#[test]
fn upstream_example_queries_are_kept() {
    let queries = raw_panel_queries(&dir());
    let find = |file: &str, needle: &[&str]| {
        queries
            .iter()
            .any(|q| q.dashboard == file && needle.iter().all(|n| q.expr.contains(n)))
    };
    assert!(find(
        "base-images.json",
        &[
            r#"kind!="Pod""#,
            "* on (cluster, digest) group_left (value)",
            r#"key="dev.chainguard.package.main""#,
            "*\n  100",
        ]
    ));
    assert!(find(
        "freshness.json",
        &[
            "time()",
            "max by (cluster, namespace, digest, image)",
            "group_left ()",
            "container_image_created",
            "86400 * $age_days"
        ]
    ));
    assert!(find(
        "base-images.json",
        &[r#"key="org.opencontainers.image.base.name""#]
    ));
    assert!(find(
        "base-images.json",
        &[r#"key="org.opencontainers.image.source""#]
    ));
    assert!(find(
        "pusher-health.json",
        &["container_image_resolve_error"]
    ));
}

#[test]
fn all_panel_queries_lists_every_target() {
    let raw = raw_panel_queries(&dir());
    let substituted = all_panel_queries(&dir());
    assert_eq!(raw.len(), substituted.len());
    for (file, dashboard) in dashboards(&dir()) {
        let targets: usize = panels(&dashboard)
            .iter()
            .map(|p| p["targets"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            substituted.iter().filter(|(d, _, _)| *d == file).count(),
            targets,
            "{file}"
        );
    }
    assert_eq!(
        substitute(
            r#"x{a=~"$cluster", b="${job}"}[$window] $__rate_interval ${namespace:regex}"#,
            DEFAULT_VALUES
        ),
        Ok(r#"x{a=~".*", b="container-image-pusher"}[1h] 5m .*"#.to_string())
    );
    assert!(substitute("$nope", DEFAULT_VALUES).is_err());
}
