//! `container_image_signature_verified` and `_verify_failure` of one
//! image, from the verdicts its registry lookup computed (none without
//! verification policies, or when the signatures could not be looked up).

use std::sync::Arc;

use crate::image_facts::ImageMetadata;
use crate::interner::Interner;
use crate::series::Family;

pub(super) fn verification_series(
    strings: &mut Interner,
    image: &ImageMetadata,
    digest: &Arc<str>,
    push: &mut impl FnMut(Family, Box<[Arc<str>]>, f64),
) {
    let Some(verdicts) = &image.supply_chain.verification else {
        return;
    };
    for (policy, outcome) in verdicts.iter() {
        let policy = strings.intern(policy);
        let verified = outcome.is_ok();
        push(
            Family::SignatureVerified,
            Box::new([digest.clone(), policy.clone()]),
            f64::from(u8::from(verified)),
        );
        if let Err(reason) = outcome {
            let values = [digest.clone(), policy, strings.intern(reason.as_str())];
            push(Family::SignatureVerifyFailure, Box::new(values), 1.0);
        }
    }
}
