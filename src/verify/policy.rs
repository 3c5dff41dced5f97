//! Verification policies from `--verify-key NAME=PATH` and
//! `--verify-certificate NAME=issuer=…,subject=…|subject-regexp=…,roots=PATH`,
//! read and validated once: several keys or certificate rules under one
//! name mean "any of them" (a rotation).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::certificate::{self, CertificatePolicy, SubjectMatch};
use super::signature::{KeyError, PublicKey, MAX_KEY_FILE};

/// Longest `subject-regexp` accepted.
const MAX_PATTERN: usize = 1024;
/// Predicate types one policy may ask attestations for.
pub const MAX_ATTESTATION_TYPES: usize = 8;
/// Longest predicate type accepted.
const MAX_PREDICATE_TYPE: usize = 256;
/// Keys one transparency log may have (a rotation).
const MAX_LOG_KEYS: usize = 4;
/// Largest `--verify-config` file read.
pub const MAX_CONFIG_FILE: usize = 64 * 1024;

/// One named policy: a signature verifies under it when a key of it, or a
/// certificate that one of its rules trusts, verifies the signature. An
/// image verifies under it when a signature does and, for each of its
/// `attestations` (in-toto predicate types), a DSSE attestation of that
/// type verifies the same way (see the attestation module).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub keys: Vec<PublicKey>,
    pub certificates: Vec<CertificatePolicy>,
    pub attestations: Vec<String>,
    /// A transparency log's keys, to check the proofs bundles carry.
    pub transparency_log: Option<LogPolicy>,
}

/// A transparency log (Rekor-style) the proofs of a policy's signatures
/// are checked against.
#[derive(Debug, Clone)]
pub struct LogPolicy {
    /// The log's public keys (any of them).
    pub keys: Vec<PublicKey>,
    /// Whether a signature verifies only with a proof that checks.
    pub required: bool,
}

/// Why the verification flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{flag} {value:?}: expected NAME=…")]
    NoName { flag: &'static str, value: String },
    #[error("policy name {0:?}: use 1 to 63 letters, digits, '-', '_' or '.'")]
    Name(String),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: usize },
    #[error("public key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("--verify-certificate {name}: {message}")]
    Certificate { name: String, message: String },
    #[error("--verify-config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("roots {path}: {source}")]
    Roots {
        path: PathBuf,
        #[source]
        source: certificate::CertificateError,
    },
}

fn split_name(flag: &'static str, value: &str) -> Result<(String, String), PolicyError> {
    let (name, rest) = value.split_once('=').ok_or_else(|| PolicyError::NoName {
        flag,
        value: value.to_owned(),
    })?;
    check_name(name)?;
    Ok((name.to_owned(), rest.to_owned()))
}

fn read_bounded(what: &'static str, path: &str, limit: usize) -> Result<Vec<u8>, PolicyError> {
    let path = PathBuf::from(path);
    let bytes = std::fs::read(&path).map_err(|source| PolicyError::Read {
        what,
        path: path.clone(),
        source,
    })?;
    if bytes.len() > limit {
        return Err(PolicyError::TooLarge { path, limit });
    }
    Ok(bytes)
}

/// A certificate rule as written, before its roots are read.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleSpec {
    issuer: Option<String>,
    subject: Option<String>,
    subject_regexp: Option<String>,
    roots: Option<String>,
}

/// `issuer=…,subject=…|subject-regexp=…,roots=…`.
fn rule_spec(name: &str, rule: &str) -> Result<RuleSpec, PolicyError> {
    let mut spec = RuleSpec::default();
    for part in rule.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| PolicyError::Certificate {
                name: name.to_owned(),
                message: format!("{part:?} is not key=value"),
            })?;
        let slot = match key.trim() {
            "issuer" => &mut spec.issuer,
            "subject" => &mut spec.subject,
            "subject-regexp" => &mut spec.subject_regexp,
            "roots" => &mut spec.roots,
            other => {
                return Err(PolicyError::Certificate {
                    name: name.to_owned(),
                    message: format!("unknown key {other:?}"),
                })
            }
        };
        *slot = Some(value.to_owned());
    }
    Ok(spec)
}

fn certificate_rule(name: &str, spec: RuleSpec) -> Result<CertificatePolicy, PolicyError> {
    let fail = |message: String| PolicyError::Certificate {
        name: name.to_owned(),
        message,
    };
    let subject = match (spec.subject, spec.subject_regexp) {
        (Some(exact), None) => SubjectMatch::Exact(exact),
        (None, Some(pattern)) => {
            if pattern.len() > MAX_PATTERN {
                return Err(fail(format!("subject-regexp longer than {MAX_PATTERN}")));
            }
            let pattern = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| fail(format!("subject-regexp: {e}")))?;
            SubjectMatch::Pattern(pattern)
        }
        _ => {
            return Err(fail(
                "one of subject= or subject-regexp= is required".into(),
            ))
        }
    };
    let issuer = spec
        .issuer
        .ok_or_else(|| fail("issuer= is required".into()))?;
    let path = spec
        .roots
        .ok_or_else(|| fail("roots= is required".into()))?;
    let limit = certificate::MAX_CERTIFICATE * certificate::MAX_CHAIN;
    let pem = read_bounded("roots", &path, limit)?;
    let roots = certificate::from_pem(&pem).map_err(|source| PolicyError::Roots {
        path: path.into(),
        source,
    })?;
    Ok(CertificatePolicy {
        issuer,
        subject,
        roots,
    })
}

/// A `--verify-config` file: the same policies as the flags, in YAML.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    policies: Vec<PolicySpec>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    name: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    certificates: Vec<RuleSpec>,
    #[serde(default)]
    attestations: Vec<String>,
    #[serde(default, rename = "transparencyLog")]
    transparency_log: Option<LogSpec>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSpec {
    keys: Vec<String>,
    #[serde(default)]
    required: bool,
}

fn key(path: &str) -> Result<PublicKey, PolicyError> {
    let pem = read_bounded("public key", path, MAX_KEY_FILE)?;
    PublicKey::from_pem(&pem).map_err(|source| PolicyError::Key {
        path: path.into(),
        source,
    })
}

fn check_name(name: &str) -> Result<(), PolicyError> {
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(PolicyError::Name(name.chars().take(80).collect()))
    }
}

fn entry(named: &mut BTreeMap<String, Policy>, name: String) -> &mut Policy {
    named.entry(name.clone()).or_insert_with(|| Policy {
        name,
        keys: Vec::new(),
        certificates: Vec::new(),
        attestations: Vec::new(),
        transparency_log: None,
    })
}

/// Adds the policies of a `--verify-config` file.
fn from_file(named: &mut BTreeMap<String, Policy>, path: &str) -> Result<(), PolicyError> {
    let text = read_bounded("--verify-config", path, MAX_CONFIG_FILE)?;
    let fail = |message: String| PolicyError::Config {
        path: path.into(),
        message,
    };
    let text = std::str::from_utf8(&text).map_err(|_| fail("not UTF-8".into()))?;
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| fail(e.to_string()))?;
    for spec in file.policies {
        check_name(&spec.name)?;
        for path in &spec.keys {
            let key = key(path)?;
            entry(named, spec.name.clone()).keys.push(key);
        }
        for rule in spec.certificates {
            let rule = certificate_rule(&spec.name, rule)?;
            entry(named, spec.name.clone()).certificates.push(rule);
        }
        for predicate_type in spec.attestations {
            let policy = entry(named, spec.name.clone());
            if !policy.attestations.contains(&predicate_type) {
                policy.attestations.push(predicate_type);
            }
        }
        if let Some(log) = spec.transparency_log {
            add_log(entry(named, spec.name.clone()), log).map_err(|e| match e {
                PolicyError::Config { message, .. } => fail(message),
                other => other,
            })?;
        }
    }
    for policy in named.values() {
        check_attestations(policy).map_err(fail)?;
    }
    Ok(())
}

/// Adds a `transparencyLog` to a policy: its keys, and whether it is
/// required (when any of the file's entries for the policy says so).
fn add_log(policy: &mut Policy, log: LogSpec) -> Result<(), PolicyError> {
    if log.keys.is_empty() || log.keys.len() > MAX_LOG_KEYS {
        return Err(PolicyError::Config {
            path: PathBuf::new(),
            message: format!(
                "policy {}: transparencyLog needs 1 to {MAX_LOG_KEYS} keys",
                policy.name
            ),
        });
    }
    let keys = log
        .keys
        .iter()
        .map(|p| key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = policy.transparency_log.get_or_insert(LogPolicy {
        keys: Vec::new(),
        required: false,
    });
    merged.keys.extend(keys);
    merged.required |= log.required;
    Ok(())
}

/// A policy asking for attestations or a log has keys or certificates to
/// check signatures with, and few predicate types, each a URI-like string.
fn check_attestations(policy: &Policy) -> Result<(), String> {
    let name = &policy.name;
    let unsigned = policy.keys.is_empty() && policy.certificates.is_empty();
    if unsigned && policy.transparency_log.is_some() {
        return Err(format!(
            "policy {name} has a transparencyLog but no keys or certificates"
        ));
    }
    if policy.attestations.is_empty() {
        return Ok(());
    }
    if unsigned {
        return Err(format!(
            "policy {name} asks for attestations but has no keys or certificates"
        ));
    }
    if policy.attestations.len() > MAX_ATTESTATION_TYPES {
        return Err(format!(
            "policy {name} asks for more than {MAX_ATTESTATION_TYPES} attestation types"
        ));
    }
    for predicate_type in &policy.attestations {
        let valid = (1..=MAX_PREDICATE_TYPE).contains(&predicate_type.len())
            && predicate_type.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(format!(
                "policy {name}: attestation type {:?} is not 1 to {MAX_PREDICATE_TYPE} printable ASCII characters",
                predicate_type.chars().take(80).collect::<String>()
            ));
        }
    }
    Ok(())
}

/// A fingerprint of everything that decides a verdict under `policies`:
/// each policy's name, keys, certificate issuers, subjects and roots,
/// attestation types and transparency log. A verdict stored under one
/// fingerprint is never reused under another (a changed key or root).
pub fn fingerprint(policies: &[Policy]) -> String {
    use der::Encode as _;
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for policy in policies {
        field(policy.name.as_bytes());
        policy.keys.iter().for_each(|k| field(k.hint()));
        for certificates in &policy.certificates {
            field(certificates.issuer.as_bytes());
            match &certificates.subject {
                SubjectMatch::Exact(subject) => field(subject.as_bytes()),
                SubjectMatch::Pattern(pattern) => {
                    field(format!("~{}", pattern.as_str()).as_bytes())
                }
            }
            for root in &certificates.roots {
                field(&root.to_der().unwrap_or_default());
            }
            field(b"/roots");
        }
        field(b"/certificates");
        policy.attestations.iter().for_each(|a| field(a.as_bytes()));
        field(b"/attestations");
        if let Some(log) = &policy.transparency_log {
            field(&[u8::from(log.required)]);
            log.keys.iter().for_each(|k| field(k.hint()));
        }
        field(b"/policy");
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The policies the flags and the `--verify-config` file describe, in
/// name order; a name in both gets the keys and rules of both.
pub fn policies(
    keys: &[String],
    certificates: &[String],
    config: Option<&str>,
) -> Result<Vec<Policy>, PolicyError> {
    let mut named: BTreeMap<String, Policy> = BTreeMap::new();
    for value in keys {
        let (name, path) = split_name("--verify-key", value)?;
        let key = key(&path)?;
        entry(&mut named, name).keys.push(key);
    }
    for value in certificates {
        let (name, rule) = split_name("--verify-certificate", value)?;
        let rule = certificate_rule(&name, rule_spec(&name, &rule)?)?;
        entry(&mut named, name).certificates.push(rule);
    }
    if let Some(path) = config {
        from_file(&mut named, path)?;
    }
    Ok(named.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rules_are_validated() {
        assert!(matches!(
            policies(&["nokey".into()], &[], None),
            Err(PolicyError::NoName { .. })
        ));
        assert!(matches!(
            policies(&["bad name=/x".into()], &[], None),
            Err(PolicyError::Name(_))
        ));
        assert!(matches!(
            policies(&["ours=/nonexistent/cosign.pub".into()], &[], None),
            Err(PolicyError::Read { .. })
        ));
        let missing_roots = policies(&[], &["ours=issuer=https://i,subject=a@b".into()], None);
        assert!(matches!(
            missing_roots,
            Err(PolicyError::Certificate { .. })
        ));
        let bad_pattern = policies(
            &[],
            &["ours=issuer=i,subject-regexp=(,roots=/x".into()],
            None,
        );
        assert!(matches!(bad_pattern, Err(PolicyError::Certificate { .. })));
        assert!(policies(&[], &[], None).unwrap().is_empty());
    }

    #[test]
    fn the_fingerprint_changes_with_any_key_name_or_option() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (name, pem) in [
            ("p384.pub", include_str!("testdata/p384.pub")),
            ("ed25519.pub", include_str!("testdata/ed25519.pub")),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            paths.push(path.display().to_string());
        }
        let of = |keys: &[String], config: Option<&str>| {
            let config = config.map(|yaml| {
                let path = dir.path().join("verify.yaml");
                std::fs::write(&path, yaml).unwrap();
                path.display().to_string()
            });
            fingerprint(&policies(keys, &[], config.as_deref()).unwrap())
        };
        let ours = of(&[format!("ours={}", paths[0])], None);
        assert_eq!(ours, of(&[format!("ours={}", paths[0])], None), "stable");
        assert_eq!(ours.len(), 32);
        let others = [
            of(&[format!("ours={}", paths[1])], None),
            of(&[format!("theirs={}", paths[0])], None),
            of(&[format!("ours={}", paths[0]), format!("ours={}", paths[1])], None),
            of(
                &[],
                Some(&format!(
                    "policies:\n  - name: ours\n    keys: [{}]\n    transparencyLog: {{keys: [{}], required: true}}\n",
                    paths[0], paths[0]
                )),
            ),
            fingerprint(&[]),
        ];
        for other in others {
            assert_ne!(other, ours);
        }
    }

    #[test]
    fn a_config_file_adds_keys_under_the_flags_names() {
        let dir = std::env::temp_dir().join(format!("verify-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("p384.pub");
        std::fs::write(&key, include_str!("testdata/p384.pub")).unwrap();
        let config = dir.join("verify.yaml");
        let yaml = format!("policies:\n  - name: ours\n    keys: [{}]\n", key.display());
        std::fs::write(&config, yaml).unwrap();
        let flag = format!("ours={}", key.display());
        let config = config.to_str().unwrap();
        let policies = policies(&[flag], &[], Some(config)).unwrap();
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].keys.len(), 2);
        let with = |extra: &str| {
            let yaml = format!("policies:\n  - name: ours\n{extra}");
            std::fs::write(dir.join("extra.yaml"), yaml).unwrap();
            super::policies(&[], &[], dir.join("extra.yaml").to_str())
        };
        let key_line = format!("    keys: [{}]\n", key.display());
        let log = format!(
            "    transparencyLog: {{keys: [{}], required: true}}\n",
            key.display()
        );
        let full = with(&format!(
            "{key_line}    attestations: [https://slsa.dev/provenance/v1]\n{log}"
        ))
        .unwrap();
        assert_eq!(full[0].attestations, ["https://slsa.dev/provenance/v1"]);
        assert!(full[0]
            .transparency_log
            .as_ref()
            .is_some_and(|l| l.required));
        // Attestations or a log need keys to check signatures with.
        assert!(with("    attestations: [https://slsa.dev/provenance/v1]\n").is_err());
        assert!(with(&log).is_err());
        assert!(with(&format!("{key_line}    transparencyLog: {{keys: []}}\n")).is_err());
        assert!(with(&format!("{key_line}    attestations: [\"two words\"]\n")).is_err());
        std::fs::write(dir.join("bad.yaml"), "policies: [{name: ours, keyz: []}]").unwrap();
        let bad = dir.join("bad.yaml");
        assert!(matches!(
            super::policies(&[], &[], bad.to_str()),
            Err(PolicyError::Config { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
