//! What the pusher asked Debian's `docker-registry`, read from its access
//! log: distribution logs one logfmt line per request,
//! `http.request.method=HEAD … http.request.uri=/v2/…`.

use super::registry::Registry;

impl Registry {
    /// Requests with `method` to `path` (a prefix when it ends with `/`).
    pub fn requests(&self, method: &str, path: &str) -> usize {
        self.uris(Some(method))
            .iter()
            .filter(|uri| {
                if path.ends_with('/') {
                    uri.starts_with(path)
                } else {
                    *uri == path
                }
            })
            .count()
    }

    /// Requests with any method to URIs under `prefix`.
    pub fn requests_under(&self, prefix: &str) -> usize {
        self.uris(None)
            .iter()
            .filter(|uri| uri.starts_with(prefix))
            .count()
    }

    /// The URI of each logged request with `method` (any when `None`).
    fn uris(&self, method: Option<&str>) -> Vec<String> {
        let method = method.map(|m| format!("http.request.method={m} "));
        self.logs()
            .lines()
            .filter(|line| line.contains(method.as_deref().unwrap_or("http.request.method=")))
            .filter_map(|line| line.split(" http.request.uri=").nth(1)?.split(' ').next())
            .map(|uri| uri.trim_matches('"').to_owned())
            .collect()
    }
}
