//! Transparency-log proofs: there is no Rekor here, so real cosign bundles
//! (`cosign sign --tlog-upload=false`) get an entry and inclusion proof of
//! a log of our own (`support::tlog`), then the pusher checks them under a
//! policy whose `transparencyLog` has that log's key: a proof that checks,
//! a tampered proof, a checkpoint signed by another log, a valid proof of
//! another entry, no proof at all, and a legacy `.sig`.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::pusher::Pusher;
use support::signing::{
    digest_of, generate_key, get, image, samples, sign, tag_of, verdicts, write_pods, OCI_INDEX,
    OCI_MANIFEST,
};
use support::tlog::{dsse_body, other_bodies, TestLog};
use support::Registry;

/// Replaces the bundle of the image `digest` in `repo` (its only referrer)
/// with `change` applied to it.
async fn rewrite_bundle(
    registry: &Registry,
    repo: &str,
    digest: &str,
    change: impl Fn(&mut Value),
) {
    let index_path = format!("/v2/{repo}/manifests/{}", tag_of(digest));
    let mut index: Value = serde_json::from_slice(&get(registry, &index_path).await).unwrap();
    let entry = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest_path = format!("/v2/{repo}/manifests/{entry}");
    let mut manifest: Value = serde_json::from_slice(&get(registry, &manifest_path).await).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = get(registry, &format!("/v2/{repo}/blobs/{layer}")).await;
    let mut bundle: Value = serde_json::from_slice(&blob).unwrap();
    change(&mut bundle);
    let pushed = registry
        .push_blob(repo, &serde_json::to_vec(&bundle).unwrap())
        .await;
    manifest["layers"][0]["digest"] = pushed.digest.clone().into();
    manifest["layers"][0]["size"] = pushed.size.into();
    let body = serde_json::to_vec(&manifest).unwrap();
    let tag = format!("logged-{}", &digest[7..19]);
    let new = registry
        .push_manifest(repo, &tag, OCI_MANIFEST, &body)
        .await;
    index["manifests"][0]["digest"] = new.into();
    index["manifests"][0]["size"] = body.len().into();
    let body = serde_json::to_vec(&index).unwrap();
    registry
        .push_manifest(repo, &tag_of(digest), OCI_INDEX, &body)
        .await;
}

/// Logs the bundle's envelope at position 3 of 7 entries of `log`, and
/// adds the entry for `logged` (an index among the 7) to the bundle.
fn add_entry(bundle: &mut Value, log: &TestLog, logged: usize, change: impl Fn(&mut Value)) {
    let mut bodies = other_bodies(6);
    bodies.insert(3, dsse_body(bundle));
    let mut entry = log.entry(&bodies, logged);
    change(&mut entry);
    bundle["verificationMaterial"]["tlogEntries"] = Value::Array(vec![entry]);
}

/// What is done to an image's bundle.
type Change<'a> = dyn Fn(&mut Value) + 'a;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_proofs_are_required_or_reported_per_policy() {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_key(d, "ours");
    let log = TestLog::new(7);
    let impostor = TestLog::new(8);
    let cases: [(&str, Option<&Change>); 5] = [
        ("logged", Some(&|b| add_entry(b, &log, 3, |_| {}))),
        (
            "tampered",
            Some(&|b| {
                add_entry(b, &log, 3, |e| {
                    e["inclusionProof"]["hashes"][0] =
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()
                })
            }),
        ),
        ("impostor", Some(&|b| add_entry(b, &impostor, 3, |_| {}))),
        ("another", Some(&|b| add_entry(b, &log, 5, |_| {}))),
        ("unlogged", None),
    ];
    let mut images = Vec::new();
    for (name, change) in cases {
        let (pinned, digest) = image(&registry, name, "1").await;
        sign(d, "ours.key", &pinned, false);
        if let Some(change) = change {
            rewrite_bundle(&registry, name, &digest, change).await;
        }
        images.push((name, pinned));
    }
    let (legacy, _) = image(&registry, "legacy", "1").await;
    sign(d, "ours.key", &legacy, true);
    images.push(("legacy", legacy));

    std::fs::write(d.join("log.pub"), log.public_pem()).unwrap();
    let yaml = format!(
        "policies:\n  - name: required\n    keys: [{0}/ours.pub]\n    transparencyLog: {{keys: [{0}/log.pub], required: true}}\n  - name: reported\n    keys: [{0}/ours.pub]\n    transparencyLog: {{keys: [{0}/log.pub]}}\n",
        d.display()
    );
    let config = d.join("verify.yaml");
    std::fs::write(&config, yaml).unwrap();
    let pinned: Vec<String> = images.iter().map(|(_, p)| p.clone()).collect();
    let pods = write_pods(d, &pinned);
    let host = registry.host();
    let pusher = Pusher::on_manifests(&pods, "1h")
        .registry(&host)
        .args(&["--verify-config", config.to_str().unwrap()])
        .start()
        .await;
    let text = pusher
        .metrics_when(Duration::from_secs(60), "every verdict", |page| {
            samples(page, "container_image_signature_verified").len() == 12
        })
        .await;
    let verdicts = verdicts(&text);
    let expected = [
        ("logged", None),
        ("tampered", Some("bad_signature")),
        ("impostor", Some("bad_signature")),
        ("another", Some("bad_signature")),
        ("unlogged", Some("unsupported")),
        ("legacy", Some("unsupported")),
    ];
    for ((name, pinned), (case, want)) in images.iter().zip(expected) {
        assert_eq!(*name, case);
        let digest = digest_of(pinned);
        let (verified, reason) = &verdicts[&(digest.clone(), "required".to_owned())];
        assert_eq!(reason.as_deref(), want, "{name} under required:\n{text}");
        assert_eq!(*verified == 1.0, want.is_none(), "{name} under required");
        // Without `required`, the log's verdict is only reported.
        let (verified, reason) = &verdicts[&(digest, "reported".to_owned())];
        assert_eq!(
            (*verified, reason.as_deref()),
            (1.0, None),
            "{name} under reported"
        );
    }
    let proofs: Vec<(String, f64)> = samples(
        &text,
        "container_image_pusher_transparency_log_proofs_total",
    )
    .into_iter()
    .filter(|(labels, _)| labels["policy"] == "reported")
    .map(|(labels, value)| (labels["result"].clone(), value))
    .collect();
    let mut proofs = proofs;
    proofs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        proofs,
        [
            ("failed".to_owned(), 3.0),
            ("missing".to_owned(), 2.0),
            ("verified".to_owned(), 1.0)
        ],
        "{text}"
    );
}
