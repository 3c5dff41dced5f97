use super::*;
use crate::discovery::manifests::split_documents;

use crate::discovery::Kind;

fn parse(text: &str) -> Vec<Workload> {
    parse_manifests(text.as_bytes(), &Selection::default()).workloads
}

fn names(file: &ManifestFile) -> Vec<&str> {
    file.workloads.iter().map(|w| &*w.name).collect()
}

fn reasons(file: &ManifestFile) -> Vec<(usize, &'static str)> {
    file.skipped
        .iter()
        .map(|s| (s.document, s.reason.as_str()))
        .collect()
}

fn pod(name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n")
}

#[test]
fn kinds_not_read_are_skipped_before_they_are_built() {
    // Neither body can be built into a tree: a key that is a sequence
    // has no JSON form, and a repeated key is refused when keys are
    // remembered. Ignored kinds are never built, so neither fails.
    let unbuildable = ["data:\n  ? [a, b]\n  : c\n", "data:\n  k: 1\n  k: 2\n"];
    for body in unbuildable {
        let config_map = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n{body}");
        let text = format!("{config_map}---\n{}", pod("p"));
        let file = parse_manifests(text.as_bytes(), &Selection::default());
        assert_eq!(reasons(&file), [], "{body}");
        assert_eq!(names(&file), ["p"]);
        // The same body in a kind that is read is built, and refused.
        let read = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n{body}");
        let file = parse_manifests(read.as_bytes(), &Selection::default());
        assert_eq!(reasons(&file), [(0, "unparsable")], "{body}");
    }
    // A kind that a merge key or an alias would change is read in full.
    let merged = "base: &b {apiVersion: v1, kind: Pod}\n<<: *b\nmetadata: {name: m}\nspec: {containers: [{name: c, image: i}]}\n";
    assert_eq!(
        names(&parse_manifests(merged.as_bytes(), &Selection::default())),
        ["m"]
    );
}

#[test]
fn multi_document_yaml_json_and_lists() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: cj}
  spec:
    schedule: "@hourly"
    jobTemplate: {spec: {template: {spec: {containers: [{name: r, image: report}]}}}}
---
"#;
    let got = parse(yaml);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].kind, &*got[0].name), (Kind::Pod, "a"));
    assert_eq!(
        (got[1].kind, &*got[1].namespace),
        (Kind::CronJob, "default")
    );

    let json = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c","image":"app"}]}}}}"#;
    assert_eq!(parse(json)[0].kind, Kind::Deployment);
}

#[test]
fn configured_kinds_lists_and_the_label_selector() {
    let selection = Selection {
        kinds: vec![KindSpec::parse("argo-rollouts").unwrap()],
        selector: Some(crate::discovery::LabelSelector::parse("team=shop").unwrap()),
        ..Selection::default()
    };
    let yaml = r#"
apiVersion: argoproj.io/v1alpha1
kind: RolloutList
items:
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: {name: web, labels: {team: shop}}
  spec: {template: {spec: {containers: [{name: app, image: "web:1"}]}}}
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: {name: theirs, labels: {team: search}}
  spec: {template: {spec: {containers: [{name: app, image: "x:1"}]}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: broken, namespace: shop, labels: {team: shop}}
spec: {template: {spec: {containers: {name: app}}}}
---
apiVersion: argoproj.io/v1beta1
kind: Rollout
metadata: {name: other-version, labels: {team: shop}}
spec: {template: {spec: {containers: [{name: app, image: "x:1"}]}}}
---
apiVersion: v1
kind: Pod
metadata: {name: unlabelled}
spec: {containers: [{name: c, image: i}]}
"#;
    let file = parse_manifests(yaml.as_bytes(), &selection);
    assert_eq!(names(&file), ["web"]);
    let w = &file.workloads[0];
    assert_eq!(
        (w.kind.group(), w.kind.as_str()),
        ("argoproj.io", "Rollout")
    );
    assert_eq!(&*w.namespace, "default");
    assert_eq!(
        &*w.containers[0].jsonpath,
        "{.spec.template.spec.containers[0]}"
    );
    assert_eq!(reasons(&file), [(1, "invalid_object")]);
    assert!(
        file.skipped[0].detail.contains("shop/broken"),
        "{:?}",
        file.skipped
    );
    assert_eq!(
        names(&parse_manifests(yaml.as_bytes(), &Selection::default())),
        ["unlabelled"],
        "kinds not configured are ignored"
    );
}

#[test]
fn bad_documents_are_skipped_not_fatal() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: good}
spec: {containers: [{name: c, image: ok}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec: {containers: "not a list"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: also-good}
spec: {selector: {}, template: {spec: {containers: [{name: c, image: ok}]}}}
"#;
    let file = parse_manifests(yaml.as_bytes(), &Selection::default());
    assert_eq!(names(&file), ["good", "also-good"]);
    assert_eq!(reasons(&file), [(1, "invalid_object")]);
    let broken = parse_manifests(b"kind: [unclosed", &Selection::default());
    assert_eq!(reasons(&broken), [(0, "unparsable")]);
    assert!(broken.workloads.is_empty());
}

#[test]
fn a_bad_document_costs_only_itself() {
    let mut text = Vec::new();
    text.extend_from_slice(pod("first").as_bytes());
    text.extend_from_slice(b"---\nkind: [unclosed\n---\n");
    text.extend_from_slice(pod("after-syntax-error").as_bytes());
    text.extend_from_slice(b"---\nmetadata: {name: \"\xff\xfe\"}\n---\n");
    text.extend_from_slice(pod("after-non-utf8").as_bytes());
    let file = parse_manifests(&text, &Selection::default());
    assert_eq!(
        names(&file),
        ["first", "after-syntax-error", "after-non-utf8"]
    );
    assert_eq!(reasons(&file), [(1, "unparsable"), (3, "not_utf8")]);
    assert!(
        !file.skipped[1].detail.contains('\u{fffd}'),
        "{:?}",
        file.skipped
    );
}

#[test]
fn deep_nesting_and_alias_bombs_are_skipped_quickly() {
    let started = std::time::Instant::now();
    let deep = format!("{}{}\n", "[".repeat(200_000), "]".repeat(200_000));
    let block_deep: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    // Eleven levels of ten aliases each: 10^12 nodes once expanded.
    let mut bomb = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        bomb.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    let text = [
        pod("before"),
        deep,
        pod("between"),
        block_deep,
        pod("after-block"),
        bomb,
        pod("last"),
    ]
    .join("---\n");
    let file = parse_manifests(text.as_bytes(), &Selection::default());
    assert_eq!(names(&file), ["before", "between", "after-block", "last"]);
    assert_eq!(
        reasons(&file),
        [(1, "too_deep"), (3, "too_deep"), (5, "alias_expansion")]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn shared_anchors_and_yaml_1_2_scalars_still_work() {
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: shared, namespace: "0755", labels: {on: yes}}
spec:
  selector: {}
  template:
    spec:
      containers:
      - &c {name: a, image: "app:1", env: [{name: E, value: yes}]}
      - <<: *c
        name: b
"#;
    let file = parse_manifests(yaml.as_bytes(), &Selection::default());
    assert!(file.skipped.is_empty(), "{:?}", file.skipped);
    let w = &file.workloads[0];
    let got: Vec<_> = w.containers.iter().map(|c| (&*c.name, &*c.image)).collect();
    assert_eq!(got, [("a", "app:1"), ("b", "app:1")]);
    assert_eq!(&*w.namespace, "0755");
}

#[test]
fn documents_are_cut_at_markers_only_at_line_starts() {
    let text = b"%YAML 1.2\n---\na: 1\n...\n# c\n--- {b: 2}\nc: \"x\n --- y\"\n---\r\nd: 4\n";
    let docs: Vec<&[u8]> = split_documents(text);
    assert_eq!(
        docs,
        [
            &b"%YAML 1.2\n---\na: 1\n...\n"[..],
            &b"# c\n--- {b: 2}\nc: \"x\n --- y\"\n"[..],
            &b"---\r\nd: 4\n"[..],
        ]
    );
}

#[tokio::test]
async fn directories_are_read_recursively_and_filtered_by_namespace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let pod = |name: &str, ns: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n")
    };
    std::fs::write(dir.path().join("a.yaml"), pod("a", "keep")).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), pod("b", "drop")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let all = FileSource::new(
        vec![dir.path().into()],
        Selection::default(),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    );
    assert_eq!(all.snapshot().await.unwrap().workloads.len(), 2);
    let some = FileSource::new(
        vec![dir.path().into()],
        Selection::namespaces(vec!["keep".into()]),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    );
    let got = some.snapshot().await.unwrap().workloads;
    assert_eq!((got.len(), &*got[0].name), (1, "a"));

    let missing = FileSource::new(
        vec![dir.path().join("nope.yaml")],
        Selection::default(),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    );
    let err = missing.snapshot().await.unwrap_err().to_string();
    assert!(err.contains("nope.yaml"), "{err}");
}

#[tokio::test]
async fn files_and_kinds_share_strings_and_let_go_of_those_of_files_gone() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |name: &str, image: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{containers: [{{name: app, image: {image}}}]}}\n")
    };
    let rollout = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r, namespace: shop}\nspec: {template: {spec: {containers: [{name: app, image: app:1}]}}}\n";
    std::fs::write(dir.path().join("a.yaml"), pod("a", "app:1")).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        format!("{}---\n{rollout}", pod("b", "only-in-b:1")),
    )
    .unwrap();
    let files = FileSource::new(
        vec![dir.path().into()],
        Selection {
            kinds: vec![KindSpec::parse("argo-rollouts").unwrap()],
            ..Selection::default()
        },
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    );
    let first = files.snapshot().await.unwrap().workloads;
    let of = |name: &str| first.iter().find(|w| &*w.name == name).unwrap();
    let (a, b, r) = (of("a"), of("b"), of("r"));
    assert!(Arc::ptr_eq(&a.containers[0].image, &r.containers[0].image));
    assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
    assert!(Arc::ptr_eq(&a.namespace, &r.namespace));
    assert!(Arc::ptr_eq(&a.containers[0].name, &r.containers[0].name));
    assert!(Arc::ptr_eq(
        &a.containers[0].jsonpath,
        &b.containers[0].jsonpath
    ));
    let held = files.inner.strings.len();
    let a = a.clone();
    drop(first);

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let second = files.snapshot().await.unwrap().workloads;
    assert_eq!(second.len(), 1);
    assert!(
        Arc::ptr_eq(&a, &second[0]),
        "an unchanged file's workload is the same Arc in every snapshot"
    );
    assert_eq!(
        files.inner.strings.len(),
        held - 2,
        "only-in-b:1 and the Rollout's jsonpath are let go"
    );
}

#[tokio::test]
async fn a_bad_file_is_skipped_counted_and_parsed_again_only_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), pod("a")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), b"\xff\xfe not UTF-8").unwrap();
    std::fs::write(dir.path().join("c.json"), pod("c")).unwrap();
    let metrics = Metrics::new(&prometheus::Registry::new());
    let source = FileSource::new(
        vec![dir.path().into()],
        Selection::default(),
        metrics.clone(),
        MetadataAllowlist::default(),
    );
    let not_utf8 = || {
        metrics
            .errors
            .with_label_values(&["manifest", "not_utf8"])
            .get()
    };
    let parsed = |name: &str| match &source.inner.lock_files()[&dir.path().join(name)] {
        FileState::Parsed { content, .. } => content.clone(),
        FileState::Refused(e) => panic!("{name} not read: {e:?}"),
    };
    let names = |snapshot: FileSnapshot| -> Vec<String> {
        snapshot
            .workloads
            .into_iter()
            .map(|w| w.name.to_string())
            .collect()
    };
    assert_eq!(names(source.snapshot().await.unwrap()), ["a", "c"]);
    assert_eq!((source.skipped(), not_utf8()), (1, 1));
    let first = parsed("a.yaml");
    assert_eq!(names(source.snapshot().await.unwrap()), ["a", "c"]);
    assert_eq!(
        (source.skipped(), not_utf8()),
        (1, 2),
        "counted at every snapshot while it is bad"
    );
    assert!(
        Arc::ptr_eq(&first, &parsed("a.yaml")),
        "an unchanged file is not parsed again"
    );

    std::fs::write(dir.path().join("a.yaml"), pod("a2")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), pod("b")).unwrap();
    assert_eq!(names(source.snapshot().await.unwrap()), ["a2", "b", "c"]);
    assert_eq!((source.skipped(), not_utf8()), (0, 2));
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    assert_eq!(names(source.snapshot().await.unwrap()), ["a2", "c"]);
    assert_eq!(
        source.inner.lock_files().len(),
        2,
        "removed files are forgotten"
    );
}
