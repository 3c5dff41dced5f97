//! Certificate policies against real cosign as the oracle: a self-made CA
//! (the `openssl` CLI), a signing certificate with the Fulcio issuer
//! extension and an e-mail SAN, `cosign sign --certificate …
//! --certificate-chain …`; the right identity verifies, a wrong subject or
//! a chain to another CA does not, as `cosign verify --certificate-identity
//! … --ca-roots …` says offline.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::signing::{cosign, digest_of, dry_run, image, verdicts, write_pods};
use support::Registry;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-made CA `<ca>.pem`, and a signing certificate `<ca>-leaf.pem`
/// it issued with the Fulcio issuer extensions (v1 and v2) and an e-mail
/// SAN, whose key cosign holds as `<ca>-signer.key`.
fn certificate_authority(dir: &Path, ca: &str, email: &str, issuer: &str) {
    let ca_key = format!("{ca}.key");
    let ca_pem = format!("{ca}.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "3650",
            "-subj",
            &format!("/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    let leaf_key = format!("{ca}-leaf.key");
    let csr = format!("{ca}-leaf.csr");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &leaf_key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &leaf_key,
            "-subj",
            "/CN=signer",
            "-out",
            &csr,
        ],
    );
    let raw_issuer: Vec<String> = issuer.bytes().map(|b| format!("{b:02X}")).collect();
    let extensions = format!(
        "subjectAltName=email:{email}\n\
         1.3.6.1.4.1.57264.1.1=DER:{}\n\
         1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:{issuer}\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=codeSigning\n\
         basicConstraints=CA:FALSE\n",
        raw_issuer.join(":")
    );
    let ext = format!("{ca}-ext.cnf");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &format!("{ca}-leaf.pem"),
            "-days",
            "365",
            "-extfile",
            &ext,
        ],
    );
    assert!(cosign(
        dir,
        &[
            "import-key-pair",
            "--key",
            &leaf_key,
            "--output-key-prefix",
            &format!("{ca}-signer")
        ]
    ));
}

fn sign_with_certificate(dir: &Path, ca: &str, image: &str, legacy: bool) {
    let mut args = vec![
        "sign".to_owned(),
        "--key".into(),
        format!("{ca}-signer.key"),
        "--certificate".into(),
        format!("{ca}-leaf.pem"),
        "--certificate-chain".into(),
        format!("{ca}.pem"),
        "--tlog-upload=false".into(),
        "--use-signing-config=false".into(),
        "--allow-http-registry".into(),
        "--yes".into(),
    ];
    if legacy {
        args.push("--new-bundle-format=false".into());
    }
    args.push(image.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(cosign(dir, &args), "cosign {args:?} failed");
}

/// cosign's verdict with a certificate identity (`identity` exact, or a
/// regexp) and roots, offline.
fn cosign_verifies_identity(dir: &Path, identity: (&str, &str), roots: &str, image: &str) -> bool {
    cosign(
        dir,
        &[
            "verify",
            identity.0,
            identity.1,
            "--certificate-oidc-issuer",
            "https://issuer.example",
            "--ca-roots",
            roots,
            "--insecure-ignore-tlog=true",
            "--insecure-ignore-sct",
            "--allow-insecure-registry",
            image,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_policies_agree_with_real_cosign() {
    let registry = Registry::start().await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificate_authority(d, "ca", "dev@example.com", "https://issuer.example");
    certificate_authority(d, "otherca", "dev@example.com", "https://issuer.example");
    let (trusted, _) = image(&registry, "trusted", "1").await;
    sign_with_certificate(d, "ca", &trusted, true);
    let (other_ca, _) = image(&registry, "otherca", "1").await;
    sign_with_certificate(d, "otherca", &other_ca, true);
    let (bundled, _) = image(&registry, "bundled", "1").await;
    sign_with_certificate(d, "ca", &bundled, false);
    let roots = d.join("ca.pem");
    let rule = |subject: &str| {
        format!(
            "issuer=https://issuer.example,{subject},roots={}",
            roots.display()
        )
    };
    let policies = [
        format!("exact={}", rule("subject=dev@example.com")),
        format!("pattern={}", rule(r"subject-regexp=.*@example\.com")),
    ];
    // The third policy comes from a --verify-config file.
    let config = d.join("verify.yaml");
    std::fs::write(
        &config,
        format!(
            "policies:\n- name: someone\n  certificates:\n  - issuer: https://issuer.example\n    subject: ops@example.com\n    roots: {}\n",
            roots.display()
        ),
    )
    .unwrap();
    let pods = write_pods(d, &[trusted.clone(), other_ca.clone(), bundled.clone()]);
    let text = dry_run(
        &pods,
        &host,
        &[
            "--verify-certificate",
            &policies[0],
            "--verify-certificate",
            &policies[1],
            "--verify-config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let verdicts = verdicts(&text);
    let oracle_identities = [
        ("exact", ("--certificate-identity", "dev@example.com")),
        (
            "pattern",
            ("--certificate-identity-regexp", r"^.*@example\.com$"),
        ),
        ("someone", ("--certificate-identity", "ops@example.com")),
    ];
    // cosign 3 reads certificate roots for bundles only from a trusted-root
    // file: the legacy format is the oracle's.
    for pinned in [&trusted, &other_ca] {
        for (policy, identity) in oracle_identities {
            let oracle = cosign_verifies_identity(d, identity, "ca.pem", pinned);
            let (verified, reason) = verdicts[&(digest_of(pinned), policy.to_owned())].clone();
            assert_eq!(
                verified == 1.0,
                oracle,
                "{pinned} under {policy}: pusher says {verified} ({reason:?}), cosign says {oracle}"
            );
        }
    }
    let reason =
        |pinned: &str, policy: &str| verdicts[&(digest_of(pinned), policy.to_owned())].1.clone();
    assert_eq!(reason(&trusted, "exact"), None);
    assert_eq!(
        reason(&trusted, "someone").as_deref(),
        Some("wrong_identity")
    );
    assert_eq!(
        reason(&other_ca, "exact").as_deref(),
        Some("untrusted_chain")
    );
    assert_eq!(reason(&bundled, "exact"), None, "a bundle's certificate");
    assert_eq!(
        reason(&bundled, "someone").as_deref(),
        Some("wrong_identity")
    );
}
