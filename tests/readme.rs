//! The README's PromQL — example queries and alert rules — must parse, so a
//! user who copies it gets a working query.

#[test]
fn every_promql_snippet_in_the_readme_parses() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut queries = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in readme.lines() {
        match (&mut block, line.strip_prefix("```")) {
            (None, Some(lang)) => block = Some((lang.trim().to_owned(), String::new())),
            (Some((lang, text)), Some(_)) => {
                if lang == "promql" {
                    queries.push(text.clone());
                } else if lang == "yaml" {
                    let exprs = text.lines().filter_map(|l| l.trim().strip_prefix("expr:"));
                    queries.extend(exprs.map(|e| e.trim().to_owned()));
                }
                block = None;
            }
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(queries.len() >= 4, "found {queries:?}");
    for query in queries {
        if let Err(e) = promql_parser::parser::parse(&query) {
            panic!("README query does not parse: {e}\n{query}");
        }
    }
}

/// The README's first command — the no-cluster demo — shows a newcomer real
/// series: every container of `examples/workloads.yaml`. (Here and in CI the
/// public registries are out of reach, so digests stay empty; the series do not.)
#[tokio::test]
async fn the_no_cluster_demo_prints_the_example_workloads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let demo = "cargo run --release -- --manifests examples/workloads.yaml --once --dry-run";
    assert!(
        readme.contains(demo),
        "the README's demo command changed; update this test"
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_container-image-pusher"))
        .args([
            "--manifests",
            "examples/workloads.yaml",
            "--once",
            "--dry-run",
            "--registry-timeout",
            "5s",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("the pusher runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (kind, name) in [
        ("Deployment", "web"),
        ("Deployment", "api"),
        ("StatefulSet", "cache"),
        ("DaemonSet", "node-agent"),
        ("CronJob", "nightly-report"),
        ("Pod", "debug-me"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("container_image_container_info{")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains(&format!("name=\"{name}\""))),
            "{kind} {name} missing:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("jsonpath=\"{.spec.ephemeralContainers[0]}\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("job=\"container-image-pusher\""),
        "{stdout}"
    );
}
