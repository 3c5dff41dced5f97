//! Registry credentials matched to images the way the kubelet does it
//! (`pkg/credentialprovider/keyring.go`), so an image resolves with exactly
//! the credentials its pods would be pulled with.
//!
//! A docker config maps locations to logins. A location is a host with an
//! optional port and path prefix (`registry.example.com:5000/team`); host
//! labels may be globs (`*.gcr.io`); `docker.io`, `index.docker.io` and
//! `https://index.docker.io/v1/` all mean Docker Hub. When several
//! locations match, the most specific (reverse lexicographic order) is
//! tried first.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine;
use serde::Deserialize;

/// The host Docker Hub credentials are stored under, whatever the spelling.
const DOCKER_HUB: &str = "index.docker.io";

/// One login, and where it came from (for messages: never the secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// e.g. `secret shop/regcred` or `--docker-config`.
    pub source: String,
}

impl Credential {
    /// A stable identity for cache keys: equal for equal logins, without
    /// holding the secret in the key.
    pub fn id(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.username, &self.password).hash(&mut hasher);
        hasher.finish() | 1 // 0 is reserved for anonymous access
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// A set of docker configs, looked up by image.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Location key (`host[:port][/path]`) → logins, in the order added.
    entries: BTreeMap<String, Vec<Credential>>,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Keyring {
    /// Adds a `config.json` (`{"auths": {...}}`, as in a
    /// `kubernetes.io/dockerconfigjson` Secret) or a legacy `.dockercfg`
    /// (the map itself, as in a `kubernetes.io/dockercfg` Secret).
    pub fn add_docker_config(&mut self, json: &[u8], source: &str) -> Result<(), String> {
        let auths = match serde_json::from_slice::<DockerConfigJson>(json) {
            Ok(config) => config.auths,
            Err(_) => serde_json::from_slice::<BTreeMap<String, AuthEntry>>(json).map_err(|e| {
                format!("{source} is neither a docker config.json nor a .dockercfg: {e}")
            })?,
        };
        for (location, entry) in auths {
            let Some((username, password)) = login(&entry) else {
                tracing::debug!(
                    source,
                    location,
                    "docker config entry without credentials; ignored"
                );
                continue;
            };
            let key = location_key(&location);
            self.entries.entry(key).or_default().push(Credential {
                username,
                password,
                source: source.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds another keyring's logins after this one's.
    pub fn extend(&mut self, other: &Keyring) {
        for (key, credentials) in &other.entries {
            self.entries
                .entry(key.clone())
                .or_default()
                .extend(credentials.iter().cloned());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The logins to try for an image at `registry/repository`, most specific first.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<&Credential> {
        let host = if is_docker_hub(registry) {
            DOCKER_HUB
        } else {
            registry
        };
        let target = format!("{host}/{repository}");
        self.entries
            .iter()
            .rev()
            .filter(|(key, _)| location_matches(key, &target))
            .flat_map(|(_, credentials)| credentials)
            .collect()
    }
}

/// (user, password) from `auth` (base64 of `user:password`) or the fields.
fn login(entry: &AuthEntry) -> Option<(String, String)> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some((user.to_owned(), password.to_owned()));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.clone())),
        _ => None,
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `host[:port][/path]` of a config location: scheme dropped, `/v1/` and
/// `/v2/` (API prefixes) dropped, Docker Hub spelled one way.
fn location_key(location: &str) -> String {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = if is_docker_hub(host) {
        DOCKER_HUB
    } else {
        host
    };
    let path = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v2/"))
        .unwrap_or(path);
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path.trim_end_matches('/')
    };
    if path.is_empty() {
        host.to_ascii_lowercase()
    } else {
        format!("{}/{path}", host.to_ascii_lowercase())
    }
}

/// Whether a location key covers `target` (`host[:port]/repository`): the
/// same port, host labels matched one by one as globs, path as a prefix.
fn location_matches(key: &str, target: &str) -> bool {
    let (key_host, key_path) = key.split_once('/').map_or((key, ""), |(h, p)| (h, p));
    let (target_host, target_path) = target.split_once('/').map_or((target, ""), |(h, p)| (h, p));
    let (key_name, key_port) = key_host
        .split_once(':')
        .map_or((key_host, ""), |(h, p)| (h, p));
    let (target_name, target_port) = target_host
        .split_once(':')
        .map_or((target_host, ""), |(h, p)| (h, p));
    if key_port != target_port {
        return false;
    }
    let key_labels: Vec<&str> = key_name.split('.').collect();
    let target_labels: Vec<&str> = target_name.split('.').collect();
    key_labels.len() == target_labels.len()
        && key_labels
            .iter()
            .zip(&target_labels)
            .all(|(glob, label)| glob_match(glob, &label.to_ascii_lowercase()))
        && target_path.starts_with(key_path)
}

/// Shell-style `*` and `?` within one host label.
fn glob_match(glob: &str, text: &str) -> bool {
    match glob.split_once('*') {
        None => {
            glob.len() == text.len()
                && glob
                    .chars()
                    .zip(text.chars())
                    .all(|(g, t)| g == '?' || g == t)
        }
        Some((prefix, rest)) => {
            text.len() >= prefix.len()
                && glob_match(prefix, &text[..prefix.len()])
                && (prefix.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && glob_match(rest, &text[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(json: &str) -> Keyring {
        let mut k = Keyring::default();
        k.add_docker_config(json.as_bytes(), "test").unwrap();
        k
    }

    fn users(k: &Keyring, registry: &str, repository: &str) -> Vec<String> {
        k.lookup(registry, repository)
            .iter()
            .map(|c| c.username.clone())
            .collect()
    }

    #[test]
    fn auth_field_or_username_and_password() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let k = keyring(&format!(
            r#"{{"auths": {{"a.example.com": {{"auth": "{auth}"}}, "b.example.com": {{"username": "bob", "password": "pw"}}, "c.example.com": {{}}}}}}"#
        ));
        let a = k.lookup("a.example.com", "app");
        assert_eq!(
            (a[0].username.as_str(), a[0].password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(users(&k, "b.example.com", "app"), ["bob"]);
        assert!(
            k.lookup("c.example.com", "app").is_empty(),
            "an entry without credentials is ignored"
        );
    }

    #[test]
    fn legacy_dockercfg_format() {
        let k = keyring(
            r#"{"https://registry.example.com": {"username": "old", "password": "pw", "email": "x@y"}}"#,
        );
        assert_eq!(users(&k, "registry.example.com", "team/app"), ["old"]);
    }

    #[test]
    fn docker_hub_spellings_are_one_registry() {
        for location in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            let k = keyring(&format!(
                r#"{{"auths": {{"{location}": {{"username": "hub", "password": "pw"}}}}}}"#
            ));
            assert_eq!(
                users(&k, "docker.io", "library/nginx"),
                ["hub"],
                "{location}"
            );
            assert_eq!(
                users(&k, "index.docker.io", "me/app"),
                ["hub"],
                "{location}"
            );
            assert!(users(&k, "ghcr.io", "me/app").is_empty(), "{location}");
        }
    }

    #[test]
    fn wildcards_match_one_label_each() {
        let k = keyring(
            r#"{"auths": {"*.gcr.io": {"username": "wild", "password": "pw"}, "*.*.example.com": {"username": "two", "password": "pw"}}}"#,
        );
        assert_eq!(users(&k, "eu.gcr.io", "project/app"), ["wild"]);
        assert!(
            users(&k, "gcr.io", "project/app").is_empty(),
            "* needs a label to match"
        );
        assert!(
            users(&k, "a.b.gcr.io", "project/app").is_empty(),
            "label counts must agree"
        );
        assert_eq!(users(&k, "a.b.example.com", "x"), ["two"]);
        assert!(
            glob_match("us-*", "us-east1")
                && !glob_match("us-*", "eu-west1")
                && glob_match("r?g", "reg")
        );
    }

    #[test]
    fn ports_must_agree() {
        let k = keyring(
            r#"{"auths": {"registry.local:5000": {"username": "p5000", "password": "pw"}, "registry.local": {"username": "noport", "password": "pw"}}}"#,
        );
        assert_eq!(users(&k, "registry.local:5000", "app"), ["p5000"]);
        assert_eq!(users(&k, "registry.local", "app"), ["noport"]);
        assert!(users(&k, "registry.local:6000", "app").is_empty());
    }

    #[test]
    fn path_prefixes_most_specific_first() {
        let k = keyring(
            r#"{"auths": {
                "registry.example.com": {"username": "host", "password": "pw"},
                "registry.example.com/team": {"username": "team", "password": "pw"},
                "registry.example.com/team/app": {"username": "app", "password": "pw"},
                "https://registry.example.com/v2/other": {"username": "other", "password": "pw"}
            }}"#,
        );
        assert_eq!(
            users(&k, "registry.example.com", "team/app"),
            ["app", "team", "host"]
        );
        assert_eq!(
            users(&k, "registry.example.com", "team/web"),
            ["team", "host"]
        );
        assert_eq!(
            users(&k, "registry.example.com", "other/x"),
            ["other", "host"],
            "/v2/ is the API prefix, not a path"
        );
        assert_eq!(users(&k, "registry.example.com", "solo"), ["host"]);
    }

    #[test]
    fn several_configs_keep_their_order_per_location() {
        let mut k =
            keyring(r#"{"auths": {"r.example.com": {"username": "first", "password": "1"}}}"#);
        let mut other = Keyring::default();
        other
            .add_docker_config(
                br#"{"auths": {"r.example.com": {"username": "second", "password": "2"}}}"#,
                "other",
            )
            .unwrap();
        k.extend(&other);
        assert_eq!(users(&k, "r.example.com", "x"), ["first", "second"]);
    }

    #[test]
    fn garbage_is_an_error_and_secrets_stay_out_of_debug_output() {
        let mut k = Keyring::default();
        let err = k
            .add_docker_config(b"not json", "secret ns/bad")
            .unwrap_err();
        assert!(err.contains("secret ns/bad"), "{err}");
        let k =
            keyring(r#"{"auths": {"r.example.com": {"username": "u", "password": "hunter2"}}}"#);
        assert!(!format!("{k:?}").contains("hunter2"));
        let c = k.lookup("r.example.com", "x")[0];
        assert_ne!(c.id(), 0);
        assert_eq!(c.id(), c.clone().id());
    }
}
