//! Fetches the signatures the referrer lookups found and verifies them
//! under the configured policies ([`crate::verify`]).
//!
//! A verdict for (image digest, signature artifact) never changes: the
//! artifact and its layers are fetched by digest, and the policies are
//! fixed for the process's life. So it is computed once and cached; warm
//! ticks do no cryptography and no requests, which
//! `container_image_pusher_signature_verifications_total{policy, result}`
//! (counting verifications actually computed) shows. An artifact that
//! cannot be read, or is larger than the bounds, is `malformed` and costs
//! only that image's verdict; a registry that does not answer leaves the
//! image without a verdict until the next lookup.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use oci_client::Reference;
use prometheus::IntCounterVec;
use tracing::debug;

use super::client::{Content, RegistryClient};
use super::disk_cache::format::VerdictKey;
use super::disk_cache::DiskCache;
use super::metrics::Metrics;
use super::{ErrorClass, ResolveError};
use crate::credentials::Login;
use crate::image_facts::supply_chain::Verdicts;
use crate::reference;
use crate::verify::artifact::{self, SignatureLayer};
use crate::verify::attestation;
use crate::verify::policy::Policy;
use crate::verify::verdict::{combine, Outcome, Reason};

/// Signature artifacts verified per image; the referrer lookups already
/// bound what they list (`referrers::MAX_ARTIFACTS`).
pub const MAX_SIGNATURES: usize = 16;
const VERDICT_CAPACITY: u64 = 200_000;
const VERDICT_IDLE: Duration = Duration::from_secs(24 * 3600);

/// The attached artifacts the referrer lookups found that are checked
/// here, by digest: signatures, and attestations (SBOMs included, which
/// are attestations of an SPDX or CycloneDX predicate type when signed).
#[derive(Debug, Default)]
pub(crate) struct Attached {
    pub(crate) signatures: Vec<String>,
    pub(crate) attestations: Vec<String>,
}

/// One artifact's outcomes: per policy, per check (the signature, or each
/// of the policy's attestation types).
type Checked = Arc<Vec<Vec<Outcome>>>;

/// What an artifact is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum As {
    Signature,
    Attestation,
}

/// The policies and the verdicts computed under them.
pub(crate) struct SignatureVerifier {
    policies: Arc<Vec<Policy>>,
    /// (subjects, artifact digest, what it is checked as) → outcomes.
    verdicts: Cache<(String, String, As), Checked>,
    verifications: IntCounterVec,
    /// Transparency-log proofs checked, for policies with a log's keys.
    log_proofs: IntCounterVec,
    /// `--cache-dir`: verdicts by digest outlive the process.
    disk: Option<Arc<DiskCache>>,
}

impl SignatureVerifier {
    pub(crate) fn new(
        policies: Arc<Vec<Policy>>,
        metrics: &Metrics,
        disk: Option<Arc<DiskCache>>,
    ) -> Option<Self> {
        if policies.is_empty() {
            return None;
        }
        let verifications = metrics.signature_verifications.clone();
        let log_proofs = metrics.log_proofs.clone();
        Some(SignatureVerifier {
            policies,
            verdicts: Cache::builder()
                .max_capacity(VERDICT_CAPACITY)
                .time_to_idle(VERDICT_IDLE)
                .build(),
            verifications,
            log_proofs,
            disk,
        })
    }

    /// Each policy's verdict for the image `pinned`, whose signatures and
    /// attestations are the artifacts `attached` and may name any of
    /// `subjects`. `None` when a registry did not answer and the image did
    /// not verify.
    pub(crate) async fn verify(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subjects: &[&str],
        attached: &Attached,
        credential: Option<&Login>,
    ) -> Option<Verdicts> {
        let lookup = Lookup {
            client,
            pinned,
            subjects,
            credential,
        };
        let (signatures, mut unknown) = self
            .checked(&lookup, &attached.signatures, As::Signature)
            .await;
        let wanted = self.policies.iter().any(|p| !p.attestations.is_empty());
        let attestations = if wanted {
            let (found, failed) = self
                .checked(&lookup, &attached.attestations, As::Attestation)
                .await;
            unknown |= failed;
            found
        } else {
            Vec::new()
        };
        let verdicts: Verdicts = self
            .policies
            .iter()
            .enumerate()
            .map(|(i, policy)| {
                let signed = combine(signatures.iter().map(|c| c[i][0]));
                let attested = (0..policy.attestations.len())
                    .map(|t| combine(attestations.iter().map(|c| c[i][t])))
                    .filter_map(Result::err)
                    .max();
                let outcome = signed.and(attested.map_or(Ok(()), Err));
                (policy.name.clone(), outcome)
            })
            .collect();
        if unknown && verdicts.iter().any(|(_, outcome)| outcome.is_err()) {
            return None;
        }
        Some(verdicts)
    }

    /// The cached or computed outcomes of the artifacts `digests` checked
    /// `as_`, and whether a registry did not answer for some.
    async fn checked(
        &self,
        lookup: &Lookup<'_>,
        digests: &[String],
        as_: As,
    ) -> (Vec<Checked>, bool) {
        let mut found = Vec::new();
        let mut unknown = false;
        for digest in digests.iter().take(MAX_SIGNATURES) {
            let key = (lookup.subjects.join(","), digest.clone(), as_);
            let computed = self
                .verdicts
                .try_get_with(key.clone(), self.remembered(lookup, key))
                .await;
            match computed {
                Ok(outcomes) => found.push(outcomes),
                Err(e) => {
                    debug!(image = %lookup.pinned, artifact = digest, error = %e, "signature or attestation not verified this time");
                    unknown = true;
                }
            }
        }
        (found, unknown)
    }

    /// The outcomes of the artifact `key` names: from `--cache-dir` when
    /// computed there before under the same policies, else computed (and
    /// kept there).
    async fn remembered(
        &self,
        lookup: &Lookup<'_>,
        (subjects, digest, as_): (String, String, As),
    ) -> Result<Checked, ResolveError> {
        let Some(disk) = &self.disk else {
            return self.compute(lookup, &digest, as_).await;
        };
        let key = VerdictKey {
            subjects,
            artifact: digest,
            attestation: as_ == As::Attestation,
            login: lookup.credential.map_or(0, Login::id),
        };
        if let Some(outcomes) = disk.verdict(&key).filter(|o| self.fits(o, as_)) {
            return Ok(outcomes);
        }
        let outcomes = self.compute(lookup, &key.artifact, as_).await?;
        disk.insert_verdict(key, outcomes.clone());
        Ok(outcomes)
    }

    /// Whether stored outcomes have the shape of these policies' (one
    /// list per policy, one outcome per check): a file is hostile input.
    fn fits(&self, outcomes: &[Vec<Outcome>], as_: As) -> bool {
        outcomes.len() == self.policies.len()
            && (self.policies.iter().zip(outcomes)).all(|(policy, checks)| {
                checks.len()
                    == match as_ {
                        As::Signature => 1,
                        As::Attestation => policy.attestations.len(),
                    }
            })
    }

    /// Fetches one artifact and checks it under every policy. An error
    /// only when the registry did not answer (not cached).
    async fn compute(
        &self,
        lookup: &Lookup<'_>,
        digest: &str,
        as_: As,
    ) -> Result<Checked, ResolveError> {
        let fetched = self
            .fetch(lookup.client, lookup.pinned, digest, lookup.credential)
            .await?;
        let subjects = lookup.subjects;
        let outcomes: Vec<Vec<Outcome>> = self
            .policies
            .iter()
            .map(|policy| {
                let check = |layer: &SignatureLayer, blob: &[u8], check: usize| match as_ {
                    As::Signature => artifact::check(layer, blob, subjects, policy),
                    As::Attestation => {
                        let wanted = &policy.attestations[check];
                        attestation::check(layer, blob, subjects, policy, wanted)
                    }
                };
                let checks = match as_ {
                    As::Signature => 1,
                    As::Attestation => policy.attestations.len(),
                };
                (0..checks)
                    .map(|i| match &fetched {
                        Err(reason) => Err(*reason),
                        Ok(layers) => combine(layers.iter().map(|(layer, blob)| match blob {
                            Ok(blob) => check(layer, blob, i),
                            Err(reason) => Err(*reason),
                        })),
                    })
                    .map(|outcome| match (outcome, as_) {
                        // An artifact without a signature layer signs nothing.
                        (Err(Reason::NoSignature), As::Signature) => Err(Reason::Malformed),
                        (other, _) => other,
                    })
                    .collect()
            })
            .collect();
        if let (As::Signature, Ok(layers)) = (as_, &fetched) {
            self.count_log_proofs(layers);
        }
        for (policy, checks) in self.policies.iter().zip(&outcomes) {
            for outcome in checks {
                let result = match outcome {
                    Ok(()) => "verified",
                    Err(reason) => reason.as_str(),
                };
                self.verifications
                    .with_label_values(&[policy.name.as_str(), result])
                    .inc();
            }
        }
        Ok(Arc::new(outcomes))
    }

    /// Counts what the transparency log proves of each signature layer,
    /// under each policy that has a log's keys.
    fn count_log_proofs(&self, layers: &[(SignatureLayer, Result<bytes::Bytes, Reason>)]) {
        for policy in self.policies.iter() {
            for (layer, blob) in layers {
                let Ok(blob) = blob else { continue };
                if let Some(logged) = artifact::logged(layer, blob, policy) {
                    self.log_proofs
                        .with_label_values(&[policy.name.as_str(), logged.as_str()])
                        .inc();
                }
            }
        }
    }

    /// The artifact's signature layers with their content, or why the
    /// artifact cannot be checked at all.
    #[allow(clippy::type_complexity)]
    async fn fetch(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        digest: &str,
        credential: Option<&Login>,
    ) -> Result<Result<Vec<(SignatureLayer, Result<bytes::Bytes, Reason>)>, Reason>, ResolveError>
    {
        let child = reference::with_digest(pinned, digest);
        let manifest = match client
            .fetch(&child, Content::Manifest, digest, credential)
            .await
        {
            Ok(body) => body,
            Err(e) if is_content_error(&e) => return Ok(Err(Reason::Malformed)),
            Err(e) => return Err(e),
        };
        let layers = match artifact::signature_layers(&manifest) {
            Ok(layers) => layers,
            Err(reason) => return Ok(Err(reason)),
        };
        let mut fetched = Vec::with_capacity(layers.len());
        for layer in layers {
            let blob = if matches!(layer.form, artifact::Form::Other) {
                Err(Reason::Unsupported)
            } else if !layer.fits() {
                Err(Reason::Malformed)
            } else {
                match client
                    .fetch(&child, Content::Blob, &layer.digest, credential)
                    .await
                {
                    Ok(body) => Ok(body),
                    Err(e) if is_content_error(&e) => Err(Reason::Malformed),
                    Err(e) => return Err(e),
                }
            };
            fetched.push((layer, blob));
        }
        Ok(Ok(fetched))
    }
}

/// Where the artifacts of one image are fetched from.
struct Lookup<'a> {
    client: &'a RegistryClient,
    pinned: &'a Reference,
    subjects: &'a [&'a str],
    credential: Option<&'a Login>,
}

/// Errors that say what the content is (unreadable, absent, too large), as
/// opposed to a registry that did not answer.
fn is_content_error(error: &ResolveError) -> bool {
    matches!(error.class, ErrorClass::BadFormat | ErrorClass::NotFound)
}
