//! `container_image_signature_verified` and `_verify_failure` of one
//! image, from the verdicts its registry lookup computed (none without
//! verification policies, or when the signatures could not be looked up).

use crate::image_facts::ImageMetadata;
use crate::series::{Family, Text};

pub(super) fn verification_series(
    image: &ImageMetadata,
    digest: Text<'_>,
    push: &mut impl FnMut(Family, &[Text<'_>], f64),
) {
    let Some(verdicts) = &image.supply_chain.verification else {
        return;
    };
    for (policy, outcome) in verdicts.iter() {
        let policy = Text::from(policy);
        let verified = outcome.is_ok();
        push(
            Family::SignatureVerified,
            &[digest, policy],
            f64::from(u8::from(verified)),
        );
        if let Err(reason) = outcome {
            let values = [digest, policy, reason.as_str().into()];
            push(Family::SignatureVerifyFailure, &values, 1.0);
        }
    }
}
