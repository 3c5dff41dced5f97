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

/// One named policy: a signature verifies under it when a key of it, or a
/// certificate that one of its rules trusts, verifies the signature.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub keys: Vec<PublicKey>,
    pub certificates: Vec<CertificatePolicy>,
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
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(PolicyError::Name(name.chars().take(80).collect()));
    }
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

fn certificate_rule(name: &str, rule: &str) -> Result<CertificatePolicy, PolicyError> {
    let fail = |message: String| PolicyError::Certificate {
        name: name.to_owned(),
        message,
    };
    let (mut issuer, mut subject, mut roots) = (None, None, None);
    for part in rule.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| fail(format!("{part:?} is not key=value")))?;
        match key.trim() {
            "issuer" => issuer = Some(value.to_owned()),
            "subject" => subject = Some(SubjectMatch::Exact(value.to_owned())),
            "subject-regexp" => {
                if value.len() > MAX_PATTERN {
                    return Err(fail(format!("subject-regexp longer than {MAX_PATTERN}")));
                }
                let pattern = regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| fail(format!("subject-regexp: {e}")))?;
                subject = Some(SubjectMatch::Pattern(pattern));
            }
            "roots" => roots = Some(value.to_owned()),
            other => return Err(fail(format!("unknown key {other:?}"))),
        }
    }
    let issuer = issuer.ok_or_else(|| fail("issuer= is required".into()))?;
    let subject = subject.ok_or_else(|| fail("subject= or subject-regexp= is required".into()))?;
    let path = roots.ok_or_else(|| fail("roots= is required".into()))?;
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

/// The policies the flags describe, in name order.
pub fn policies(keys: &[String], certificates: &[String]) -> Result<Vec<Policy>, PolicyError> {
    let mut named: BTreeMap<String, Policy> = BTreeMap::new();
    fn entry(named: &mut BTreeMap<String, Policy>, name: String) -> &mut Policy {
        named.entry(name.clone()).or_insert_with(|| Policy {
            name,
            keys: Vec::new(),
            certificates: Vec::new(),
        })
    }
    for value in keys {
        let (name, path) = split_name("--verify-key", value)?;
        let pem = read_bounded("public key", &path, MAX_KEY_FILE)?;
        let key = PublicKey::from_pem(&pem).map_err(|source| PolicyError::Key {
            path: path.into(),
            source,
        })?;
        entry(&mut named, name).keys.push(key);
    }
    for value in certificates {
        let (name, rule) = split_name("--verify-certificate", value)?;
        let rule = certificate_rule(&name, &rule)?;
        entry(&mut named, name).certificates.push(rule);
    }
    Ok(named.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rules_are_validated() {
        assert!(matches!(
            policies(&["nokey".into()], &[]),
            Err(PolicyError::NoName { .. })
        ));
        assert!(matches!(
            policies(&["bad name=/x".into()], &[]),
            Err(PolicyError::Name(_))
        ));
        assert!(matches!(
            policies(&["ours=/nonexistent/cosign.pub".into()], &[]),
            Err(PolicyError::Read { .. })
        ));
        let missing_roots = policies(&[], &["ours=issuer=https://i,subject=a@b".into()]);
        assert!(matches!(
            missing_roots,
            Err(PolicyError::Certificate { .. })
        ));
        let bad_pattern = policies(&[], &["ours=issuer=i,subject-regexp=(,roots=/x".into()]);
        assert!(matches!(bad_pattern, Err(PolicyError::Certificate { .. })));
        assert!(policies(&[], &[]).unwrap().is_empty());
    }
}
