//! The PromQL of the Grafana dashboards in `dashboards/`, with Grafana's
//! template variables replaced by values a test can run.
//!
//! Shared by `tests/it/dashboards.rs` and the end-to-end test
//! (`tests/it/e2e.rs`), which runs every panel's query against real data.
#![allow(dead_code)] // each includer uses a part

use std::path::Path;

use serde_json::Value;

/// What each template variable becomes in [`all_panel_queries`]: every
/// cluster, namespace and owner (the dashboards only use these inside `=~`
/// regex matchers), `label_team` as the owner label, the default job, a one-hour look-back, 14 days for the
/// freshness threshold, `ours` as the verification policy (the end-to-end
/// test configures it), and fixed values for Grafana's built-ins.
pub const DEFAULT_VALUES: &[(&str, &str)] = &[
    ("datasource", "prometheus"),
    ("job", "container-image-pusher"),
    ("cluster", ".*"),
    ("namespace", ".*"),
    ("owner_label", "label_team"),
    ("owner", ".*"),
    ("window", "1h"),
    ("age_days", "14"),
    ("policy", "ours"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__interval_ms", "60000"),
];

/// One query of one panel, as written in the dashboard.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// File name, e.g. `inventory.json`.
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

/// Every dashboard in `dir` (`*.json`, sorted by file name), parsed.
/// Panics on a file that is not JSON: the dashboards are the point.
pub fn dashboards(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// The panels of a dashboard, including those inside (collapsed) rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn collect<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            collect(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

/// Every query of every panel, unsubstituted.
pub fn raw_panel_queries(dir: &Path) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for (name, dashboard) in dashboards(dir) {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                queries.push(PanelQuery {
                    dashboard: name.clone(),
                    panel: panel["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    queries
}

/// (dashboard file, panel title, expression with [`DEFAULT_VALUES`]
/// substituted) for every query of every panel in `dir`.
pub fn all_panel_queries(dir: &Path) -> Vec<(String, String, String)> {
    raw_panel_queries(dir)
        .into_iter()
        .map(|q| {
            let expr = substitute(&q.expr, DEFAULT_VALUES).unwrap_or_else(|e| {
                panic!("{} / {}: {e}", q.dashboard, q.panel);
            });
            (q.dashboard, q.panel, expr)
        })
        .collect()
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`) with
/// `values`. An unknown variable is an error, so that a typo in a
/// dashboard, or a variable the tests do not know yet, is noticed.
pub fn substitute(expr: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
            let inner = &braced[..end];
            let name = inner.split(':').next().unwrap_or_default();
            (name, end + 2)
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..len], len)
        };
        if name.is_empty() {
            return Err(format!("a lone $ in {expr:?}"));
        }
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown variable ${name} in {expr:?}"))?;
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable names an expression uses (`$name`, `${name}`, `${name:…}`).
pub fn variables_used(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let name: String = after
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
        rest = after;
    }
    names
}
