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
//!
//! Any tenant who can create a Secret writes these patterns, so they are
//! compiled once, matched without backtracking, and refused past
//! [`MAX_LOCATION_BYTES`].

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use super::Login;

/// The host Docker Hub credentials are stored under, whatever the spelling.
const DOCKER_HUB: &str = "index.docker.io";

/// Longest location (an `auths` key) taken; real ones are a host and a
/// short path.
pub const MAX_LOCATION_BYTES: usize = 1024;

/// Why a docker config cannot be read. Says where it came from and where
/// in it the problem is, never what it holds: serde's own messages quote
/// the offending value, which may be a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin} is neither a docker config.json nor a .dockercfg ({problem} at line {line}, column {column})")]
pub struct DockerConfigError {
    /// e.g. `secret shop/regcred` or `--docker-config`.
    pub origin: String,
    problem: &'static str,
    line: usize,
    column: usize,
}

impl DockerConfigError {
    fn new(origin: &str, error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        DockerConfigError {
            origin: origin.to_owned(),
            problem: match error.classify() {
                Category::Syntax => "not JSON",
                Category::Eof => "JSON cut short",
                Category::Data => "a value of the wrong type",
                Category::Io => "unreadable",
            },
            line: error.line(),
            column: error.column(),
        }
    }
}

/// A set of docker configs, looked up by image.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Location key (`host[:port][/path]`) → its pattern and logins, in
    /// the order added.
    entries: BTreeMap<String, Entry>,
    /// Locations refused for their length, for the caller to report.
    refused: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None` when the key is no valid pattern: it never matches.
    location: Option<Location>,
    logins: Vec<Login>,
}

impl Entry {
    fn new(key: &str) -> Entry {
        Entry {
            location: Location::parse(key),
            logins: Vec::new(),
        }
    }
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
    pub fn add_docker_config(
        &mut self,
        json: &[u8],
        source: &str,
    ) -> Result<(), DockerConfigError> {
        let auths = match serde_json::from_slice::<DockerConfigJson>(json) {
            Ok(config) => config.auths,
            Err(_) => serde_json::from_slice::<BTreeMap<String, AuthEntry>>(json)
                .map_err(|e| DockerConfigError::new(source, &e))?,
        };
        for (location, entry) in auths {
            if location.len() > MAX_LOCATION_BYTES {
                self.refused += 1;
                continue;
            }
            let Some((username, password)) = login(&entry) else {
                tracing::debug!(
                    source,
                    location,
                    "docker config entry without credentials; ignored"
                );
                continue;
            };
            let key = location_key(&location);
            let entry = self
                .entries
                .entry(key)
                .or_insert_with_key(|key| Entry::new(key));
            if entry.location.is_none() {
                tracing::debug!(
                    source,
                    location,
                    "docker config location is not a valid pattern; it matches no image"
                );
            }
            entry.logins.push(Login {
                username,
                password,
                source: source.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds another keyring's logins after this one's.
    pub fn extend(&mut self, other: &Keyring) {
        for (key, entry) in &other.entries {
            self.entries
                .entry(key.clone())
                .or_insert_with(|| Entry {
                    location: entry.location.clone(),
                    logins: Vec::new(),
                })
                .logins
                .extend(entry.logins.iter().cloned());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many locations [`Keyring::add_docker_config`] refused for being
    /// longer than [`MAX_LOCATION_BYTES`]: the caller says so, once, without
    /// repeating them.
    pub fn refused_locations(&self) -> usize {
        self.refused
    }

    /// The logins to try for an image at `registry/repository`, most specific first.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<&Login> {
        let host = if is_docker_hub(registry) {
            DOCKER_HUB
        } else {
            registry
        };
        self.entries
            .values()
            .rev()
            .filter(|entry| {
                entry
                    .location
                    .as_ref()
                    .is_some_and(|l| l.covers(host, repository))
            })
            .flat_map(|entry| &entry.logins)
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

/// A location as the kubelet compares it (`URLsMatch`): host labels, port
/// and path, each matched on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    labels: Vec<Glob>,
    port: String,
    path: String,
}

impl Location {
    /// `None` when the key is not a pattern the kubelet could match with:
    /// a bad glob (`filepath.Match` fails with `ErrBadPattern`, and the
    /// kubelet skips the entry) or a port that is not a number.
    fn parse(key: &str) -> Option<Location> {
        let (host, port, path) = split_location(key)?;
        let labels = host.split('.').map(Glob::parse).collect::<Option<_>>()?;
        Some(Location {
            labels,
            port: port.to_owned(),
            path: path.to_owned(),
        })
    }

    /// Whether the location covers `host[:port]` and `repository`: same port,
    /// as many labels, each label matching its glob, and the location's path
    /// a prefix of the repository (a string prefix, as in the kubelet).
    fn covers(&self, registry: &str, repository: &str) -> bool {
        let Some((host, port, _)) = split_location(registry) else {
            return false;
        };
        port == self.port
            && repository.starts_with(&self.path)
            && host.split('.').count() == self.labels.len()
            && host
                .split('.')
                .zip(&self.labels)
                .all(|(label, glob)| glob.matches(&label.to_ascii_lowercase()))
    }
}

/// `host[:port][/path]` split into its parts. The port, when present, must
/// be digits (the kubelet parses locations as URLs, and a URL port is a
/// number); an IPv6 host is bracketed. `None` for anything else.
fn split_location(location: &str) -> Option<(&str, &str, &str)> {
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':').unwrap_or(after))
        }
        None => match authority.split_once(':') {
            // Several colons without brackets: net.SplitHostPort fails, and
            // the kubelet takes the whole authority as the host.
            Some((_, rest)) if rest.contains(':') => (authority, ""),
            Some((host, port)) => (host, port),
            None => (authority, ""),
        },
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port, path))
}

/// One host label of a location, as Go's `filepath.Match` reads it (the
/// kubelet matches each label with it): `*` for any run of characters, `?`
/// for one, `[a-z]`/`[^a-z]` classes and `\` escapes. Compiled once, when
/// the docker config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    chunks: Vec<Chunk>,
}

/// The atoms between two stars; each matches exactly one character, so a
/// chunk matches a fixed number of them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    /// Preceded by one or more `*`.
    star: bool,
    atoms: Vec<Atom>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Any,
    Char(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Any => true,
            Atom::Char(want) => *want == c,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&&c)) != *negated
            }
        }
    }
}

impl Glob {
    /// `None` for a pattern `filepath.Match` refuses (`ErrBadPattern`): an
    /// unclosed or empty class, a range missing an end, a trailing `\`.
    fn parse(pattern: &str) -> Option<Glob> {
        let mut chars = pattern.chars().peekable();
        let mut chunks = Vec::new();
        while chars.peek().is_some() {
            let mut star = false;
            while chars.next_if_eq(&'*').is_some() {
                star = true;
            }
            let mut atoms = Vec::new();
            while let Some(c) = chars.next_if(|&c| c != '*') {
                atoms.push(match c {
                    '?' => Atom::Any,
                    '\\' => Atom::Char(chars.next()?),
                    '[' => parse_class(&mut chars)?,
                    c => Atom::Char(c),
                });
            }
            chunks.push(Chunk { star, atoms });
        }
        Some(Glob { chunks })
    }

    /// Go's algorithm: each chunk at the leftmost place it fits after the
    /// previous one, the last flush with the end. No backtracking beyond
    /// that (chunks have fixed lengths, so the leftmost fit is never worse),
    /// hence at most |label| × |pattern| steps, however many stars.
    fn matches(&self, label: &str) -> bool {
        let text: Vec<char> = label.chars().collect();
        let mut rest = &text[..];
        for (i, chunk) in self.chunks.iter().enumerate() {
            let last = i + 1 == self.chunks.len();
            let width = chunk.atoms.len();
            if rest.len() < width {
                return false;
            }
            let fits = |at: usize| {
                chunk
                    .atoms
                    .iter()
                    .zip(&rest[at..at + width])
                    .all(|(atom, &c)| atom.matches(c))
            };
            let at = match (chunk.star, last) {
                (false, true) if rest.len() != width => return false,
                (false, _) => 0,
                // A trailing star takes the rest; a trailing starred chunk
                // can only sit flush with the end.
                (true, true) if width == 0 => return true,
                (true, true) => rest.len() - width,
                (true, false) => match (0..=rest.len() - width).find(|&at| fits(at)) {
                    Some(at) => at,
                    None => return false,
                },
            };
            if !fits(at) {
                return false;
            }
            rest = &rest[at + width..];
        }
        rest.is_empty()
    }
}

/// A `[...]` class, its `[` already read: optional `^`, then at least one
/// `c` or `lo-hi` (either end may be `\`-escaped), then `]`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Atom> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Some(Atom::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            class_char(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// One end of a class range; `-` and `]` must be escaped there.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    match chars.next()? {
        '-' | ']' => None,
        '\\' => chars.next(),
        c => Some(c),
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
    }

    fn glob(pattern: &str, label: &str) -> Option<bool> {
        Glob::parse(pattern).map(|g| g.matches(label))
    }

    #[test]
    fn labels_match_as_go_filepath_match_does() {
        // Some(true/false): a valid pattern that matches or not; None: a
        // pattern Go refuses with ErrBadPattern, which the kubelet skips.
        for (pattern, label, want) in [
            ("us-*", "us-east1", Some(true)),
            ("us-*", "eu-west1", Some(false)),
            ("r?g", "reg", Some(true)),
            ("r?g", "rg", Some(false)),
            ("*", "", Some(true)),
            ("*", "anything", Some(true)),
            ("", "", Some(true)),
            ("", "a", Some(false)),
            ("a*b*c", "axxbyyc", Some(true)),
            ("a*b*c", "abc", Some(true)),
            ("a*b*c", "acb", Some(false)),
            ("a*b", "abab", Some(true)),
            ("*ab", "aab", Some(true)),
            ("*a*", "bab", Some(true)),
            ("**z", "z", Some(true)),
            ("eu*", "e", Some(false)),
            ("registry-[0-9]", "registry-7", Some(true)),
            ("registry-[0-9]", "registry-x", Some(false)),
            ("[^a]b", "ab", Some(false)),
            ("[^a]b", "cb", Some(true)),
            ("[ab-d]x", "cx", Some(true)),
            ("[*]x", "*x", Some(true)),
            ("[\\]]x", "]x", Some(true)),
            ("\\*x", "*x", Some(true)),
            ("\\*x", "ax", Some(false)),
            ("[a-", "a", None),
            ("[", "a", None),
            ("[]a]", "a", None),
            ("[^]", "a", None),
            ("[-a]", "a", None),
            ("a\\", "a", None),
            ("x[", "y", None),
        ] {
            assert_eq!(glob(pattern, label), want, "{pattern:?} on {label:?}");
        }
    }

    #[test]
    fn what_the_kubelet_accepts_and_refuses() {
        let k = keyring(
            r#"{"auths": {
                "*": {"username": "single-label", "password": "pw"},
                "registry.example.com/team*": {"username": "literal-path", "password": "pw"},
                "registry.example.com:*": {"username": "wild-port", "password": "pw"},
                "[.example.com": {"username": "bad-glob", "password": "pw"},
                "a*b*c.example.com": {"username": "stars", "password": "pw"},
                "*.example.org:5000": {"username": "port", "password": "pw"}
            }}"#,
        );
        assert_eq!(users(&k, "localhost", "x"), ["single-label"]);
        assert!(
            users(&k, "localhost:5000", "x").is_empty(),
            "a port must be named to match"
        );
        assert!(
            users(&k, "registry.example.com", "team/app").is_empty(),
            "no wildcards in paths: team* is a literal prefix"
        );
        assert_eq!(
            users(&k, "registry.example.com", "team*/app"),
            ["literal-path"]
        );
        assert!(
            users(&k, "registry.example.com:5000", "x").is_empty(),
            "no wildcards in ports"
        );
        assert!(
            users(&k, "[.example.com", "x").is_empty()
                && users(&k, "a.example.com", "x").is_empty(),
            "a bad pattern matches nothing"
        );
        assert_eq!(
            users(&k, "axxbyyc.example.com", "x"),
            ["stars"],
            "several stars in one label, as filepath.Match allows"
        );
        assert_eq!(users(&k, "eu.example.org:5000", "x"), ["port"]);
        assert!(users(&k, "eu.example.org", "x").is_empty());
        assert!(users(&k, "eu.example.org:6000", "x").is_empty());
    }

    #[test]
    fn hostile_locations_match_in_bounded_time() {
        let started = std::time::Instant::now();
        // The issue's reproducer: forty stars before `z:1`, for localhost:1/x/y.
        let forty = format!("{}z:1", "*".repeat(40));
        // 1 KiB variants: many chunks, long chunks, classes, against a
        // label long enough to make backtracking hurt.
        let hostile = [
            forty,
            format!("{}z:1", "*".repeat(MAX_LOCATION_BYTES - 3)),
            format!("{}b:1", "*a".repeat((MAX_LOCATION_BYTES - 3) / 2)),
            format!("{}:1", "?*".repeat((MAX_LOCATION_BYTES - 2) / 2)),
            format!("{}b:1", "*[a-z]".repeat((MAX_LOCATION_BYTES - 3) / 6)),
            format!("*{}*b:1", "a".repeat(MAX_LOCATION_BYTES - 5)),
        ];
        let long_label = "a".repeat(MAX_LOCATION_BYTES);
        for location in &hostile {
            assert!(location.len() <= MAX_LOCATION_BYTES, "{}", location.len());
            let k = keyring(
                &serde_json::json!({"auths": {location: {"username": "u", "password": "pw"}}})
                    .to_string(),
            );
            assert_eq!(k.refused_locations(), 0);
            assert!(users(&k, "localhost:1", "x/y").is_empty());
            for _ in 0..10 {
                assert!(users(&k, &format!("{long_label}:1"), "x/y").len() <= 1);
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn overlong_locations_are_refused_and_counted() {
        let path = "x".repeat(MAX_LOCATION_BYTES - "localhost:1/".len());
        let fits = format!("localhost:1/{path}");
        let too_long = format!("{fits}x");
        let k = keyring(
            &serde_json::json!({"auths": {
                &fits: {"username": "fits", "password": "pw"},
                &too_long: {"username": "too-long", "password": "pw"},
                "*": {"username": "other", "password": "pw"}
            }})
            .to_string(),
        );
        assert_eq!(k.refused_locations(), 1);
        assert_eq!(
            users(&k, "localhost:1", &format!("{path}x")),
            ["fits"],
            "the 1 KiB location is taken, the longer one is not"
        );
        assert_eq!(users(&k, "localhost", "x"), ["other"]);
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
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret ns/bad"), "{err}");
        let err = k
            .add_docker_config(br#"{"auths": "hunter2"}"#, "secret ns/bad")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wrong type") && !err.contains("hunter2"),
            "a value in a docker config never reaches an error: {err}"
        );
        let k =
            keyring(r#"{"auths": {"r.example.com": {"username": "u", "password": "hunter2"}}}"#);
        assert!(!format!("{k:?}").contains("hunter2"));
        let c = k.lookup("r.example.com", "x")[0];
        assert_ne!(c.id(), 0);
        assert_eq!(c.id(), c.clone().id());
    }
}
