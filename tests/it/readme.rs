//! The README's PromQL — example queries and alert rules — must parse, so a
//! user who copies it gets a working query. Its flag tables are those of
//! `--help`.

use std::collections::{BTreeMap, BTreeSet};

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

/// The README's flag tables list exactly the flags of `--help`, under the
/// same headings, each with the environment variable `--help` names.
#[test]
fn the_flag_tables_match_help() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_container-image-pusher"))
        .arg("--help")
        .output()
        .expect("the pusher runs");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let env_name = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let flag_names = |text: &str| -> Vec<String> {
        text.match_indices("--")
            .map(|(i, _)| {
                let name: String = text[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                format!("--{name}")
            })
            .collect()
    };

    // Heading -> flag -> env, as `--help` prints them.
    let mut in_help = Tables::new();
    let (mut heading, mut flag) = (String::new(), None::<String>);
    for line in help.lines() {
        if let Some(name) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            heading = name.to_owned();
        } else if let Some(rest) = line.trim_start().strip_prefix("--") {
            flag = flag_names(&format!("--{rest}")).into_iter().next();
        } else if let (Some(at), Some(name)) = (line.find("[env: "), &flag) {
            in_help
                .entry(heading.clone())
                .or_default()
                .insert(name.clone(), env_name(&line[at + 6..]));
        }
    }
    assert!(in_help.len() > 5, "no headings found in --help:\n{help}");

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Flags\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Flags section");
    let mut in_readme = Tables::new();
    let mut heading = String::new();
    for line in section.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            heading = name.trim().to_owned();
        } else if line.starts_with("| `--") {
            let cells: Vec<&str> = line.split(" | ").collect();
            let envs: Vec<String> = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(env_name)
                .collect();
            let flags = flag_names(cells[0]);
            assert_eq!(flags.len(), envs.len(), "one env per flag: {line}");
            let table = in_readme.entry(heading.clone()).or_default();
            for (flag, env) in flags.into_iter().zip(envs) {
                assert!(table.insert(flag, env).is_none(), "listed twice: {line}");
            }
        }
    }
    let rows = |tables: &Tables| -> BTreeSet<String> {
        tables
            .iter()
            .flat_map(|(heading, flags)| {
                flags
                    .iter()
                    .map(move |(flag, env)| format!("{heading}: {flag} [env: {env}]"))
            })
            .collect()
    };
    let (in_help, in_readme) = (rows(&in_help), rows(&in_readme));
    let missing: Vec<_> = in_help.difference(&in_readme).collect();
    let extra: Vec<_> = in_readme.difference(&in_help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README's flag tables differ from --help:\n  not in README: {missing:#?}\n  not in --help: {extra:#?}"
    );
}

type Tables = BTreeMap<String, BTreeMap<String, String>>;
