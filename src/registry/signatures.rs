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
use super::{ErrorClass, ResolveError};
use crate::credentials::Login;
use crate::reference;
use crate::telemetry::Telemetry;
use crate::verify::artifact::{self, SignatureLayer};
use crate::verify::policy::Policy;
use crate::verify::verdict::{combine, Outcome, Reason};

/// Signature artifacts verified per image; the referrer lookups already
/// bound what they list (`referrers::MAX_ARTIFACTS`).
pub const MAX_SIGNATURES: usize = 16;
const VERDICT_CAPACITY: u64 = 200_000;
const VERDICT_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Each policy's verdict for one image, in the policies' order.
pub type Verdicts = Vec<(String, Outcome)>;

/// The policies and the verdicts computed under them.
pub(crate) struct SignatureVerifier {
    policies: Arc<Vec<Policy>>,
    /// (subjects, artifact digest) → each policy's outcome.
    verdicts: Cache<(String, String), Arc<Vec<Outcome>>>,
    verifications: IntCounterVec,
}

impl SignatureVerifier {
    pub(crate) fn new(policies: Arc<Vec<Policy>>, telemetry: &Telemetry) -> Option<Self> {
        if policies.is_empty() {
            return None;
        }
        let verifications = IntCounterVec::new(
            prometheus::Opts::new(
                "container_image_pusher_signature_verifications_total",
                "Signature verifications computed (cached verdicts are not counted), by policy and result.",
            ),
            &["policy", "result"],
        )
        .expect("valid counter definition");
        telemetry
            .registry
            .register(Box::new(verifications.clone()))
            .expect("metric registered once");
        Some(SignatureVerifier {
            policies,
            verdicts: Cache::builder()
                .max_capacity(VERDICT_CAPACITY)
                .time_to_idle(VERDICT_IDLE)
                .build(),
            verifications,
        })
    }

    /// Each policy's verdict for the image `pinned`, whose signatures are
    /// the artifacts `signatures` and may name any of `subjects`. `None`
    /// when a registry did not answer and no signature verified.
    pub(crate) async fn verify(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subjects: &[&str],
        signatures: &[String],
        credential: Option<&Login>,
    ) -> Option<Verdicts> {
        let mut per_policy: Vec<Vec<Outcome>> = vec![Vec::new(); self.policies.len()];
        let mut unknown = false;
        for digest in signatures.iter().take(MAX_SIGNATURES) {
            let key = (subjects.join(","), digest.clone());
            let computed = self
                .verdicts
                .try_get_with(key, async {
                    let outcomes = self
                        .compute(client, pinned, subjects, digest, credential)
                        .await?;
                    Ok::<_, ResolveError>(Arc::new(outcomes))
                })
                .await;
            match computed {
                Ok(outcomes) => {
                    for (all, outcome) in per_policy.iter_mut().zip(outcomes.iter()) {
                        all.push(*outcome);
                    }
                }
                Err(e) => {
                    debug!(image = %pinned, signature = digest, error = %e, "signature not verified this time");
                    unknown = true;
                }
            }
        }
        let verdicts: Verdicts = self
            .policies
            .iter()
            .zip(per_policy)
            .map(|(policy, outcomes)| (policy.name.clone(), combine(outcomes)))
            .collect();
        if unknown && verdicts.iter().any(|(_, outcome)| outcome.is_err()) {
            return None;
        }
        Some(verdicts)
    }

    /// Fetches one signature artifact and checks it under every policy. An
    /// error only when the registry did not answer (not cached).
    async fn compute(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subjects: &[&str],
        digest: &str,
        credential: Option<&Login>,
    ) -> Result<Vec<Outcome>, ResolveError> {
        let fetched = self.fetch(client, pinned, digest, credential).await?;
        let outcomes: Vec<Outcome> = self
            .policies
            .iter()
            .map(|policy| match &fetched {
                Err(reason) => Err(*reason),
                Ok(layers) => combine(layers.iter().map(|(layer, blob)| match blob {
                    Ok(blob) => artifact::check(layer, blob, subjects, policy),
                    Err(reason) => Err(*reason),
                })),
            })
            .map(|outcome| match outcome {
                // An artifact without a signature layer signs nothing.
                Err(Reason::NoSignature) => Err(Reason::Malformed),
                other => other,
            })
            .collect();
        for (policy, outcome) in self.policies.iter().zip(&outcomes) {
            let result = match outcome {
                Ok(()) => "verified",
                Err(reason) => reason.as_str(),
            };
            self.verifications
                .with_label_values(&[policy.name.as_str(), result])
                .inc();
        }
        Ok(outcomes)
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

/// Errors that say what the content is (unreadable, absent, too large), as
/// opposed to a registry that did not answer.
fn is_content_error(error: &ResolveError) -> bool {
    matches!(error.class, ErrorClass::BadFormat | ErrorClass::NotFound)
}
