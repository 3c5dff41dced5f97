use super::*;
use std::time::Duration;

use clap::Parser;

use crate::image_facts::limits::ImageLimits;
use crate::pipeline::SourceSettings;
use crate::remote_write::{EndpointsFileError, Protocol};
use crate::schedule::Schedule;

use super::logging::DEFAULT_LOG_FILTER;
use super::values::{parse_duration, ValueError};

use clap::CommandFactory;

fn config(args: &[&str]) -> Result<Config, String> {
    let mut argv = vec!["container-image-pusher"];
    argv.extend_from_slice(args);
    Config::try_parse_from(argv).map_err(|e| e.to_string())
}

fn parse(args: &[&str]) -> Result<Settings, String> {
    config(args)?.settings().map_err(|e| e.to_string())
}

#[test]
fn clap_definition_is_consistent() {
    Config::command().debug_assert();
}

#[test]
fn workload_and_image_metadata() {
    let s = parse(&[]).unwrap();
    assert!(s.pipeline.workload_metadata.is_empty());
    assert!(s.pipeline.resolver.image_filter.labels.keeps_all());
    assert!(s.pipeline.resolver.image_filter.annotations.keeps_all());
    let s = parse(&[
        "--workload-labels",
        "team,app.kubernetes.io/name",
        "--workload-annotations=*",
        "--image-labels",
        "org.opencontainers.*,!org.opencontainers.image.created",
    ])
    .unwrap();
    assert!(!s.pipeline.workload_metadata.is_empty());
    let labels = &s.pipeline.resolver.image_filter.labels;
    assert!(labels.keeps("org.opencontainers.image.source"));
    assert!(!labels.keeps("org.opencontainers.image.created"));
    assert!(!labels.keeps("maintainer"));
    let err = parse(&["--image-annotations", "!"]).unwrap_err();
    assert!(err.contains("empty pattern"), "{err}");
}

#[test]
fn defaults() {
    let s = parse(&[]).unwrap();
    assert!(matches!(s.schedule, Schedule::Interval(d) if d == Duration::from_secs(60)));
    assert!(!s.once && !s.dry_run);
    assert!(s.endpoints.is_empty() && s.leader_election.is_none());
    let resolver = &s.pipeline.resolver;
    assert_eq!(resolver.cache_duration, Duration::from_secs(3600));
    assert_eq!(resolver.platform.to_string(), "linux/amd64");
    assert_eq!(resolver.image_limits, ImageLimits::default());
    assert_eq!(
        s.pipeline.common_labels.pairs().collect::<Vec<_>>(),
        [("job", "container-image-pusher")]
    );
    assert_eq!(s.metrics_address.to_string(), "0.0.0.0:8080");
    assert_eq!(s.telemetry_address.to_string(), "0.0.0.0:8081");
}

#[test]
fn every_flag_is_under_a_help_heading_with_an_env_fallback() {
    let command = Config::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        assert!(arg.get_help_heading().is_some(), "--{id} has no heading");
        assert!(arg.get_env().is_some(), "--{id} has no env fallback");
        assert!(arg.get_help().is_some(), "--{id} has no help");
    }
}

#[test]
fn the_source_follows_the_mode() {
    let s = parse(&["--namespace", "a,b"]).unwrap();
    assert!(matches!(
        s.pipeline.source,
        SourceSettings::Cluster { ref selection, watch: Some(w) }
            if selection.namespaces == ["a", "b"] && w.max_backoff == Duration::from_secs(30)
    ));
    let s = parse(&["--once", "--dry-run"]).unwrap();
    assert!(matches!(
        s.pipeline.source,
        SourceSettings::Cluster { watch: None, .. }
    ));
    let s = parse(&["--manifests", "a.yaml,-"]).unwrap();
    assert!(matches!(
        s.pipeline.source,
        SourceSettings::Files { ref paths, .. } if paths.len() == 2
    ));
}

#[test]
fn once_needs_a_destination() {
    let err = parse(&["--once"]).unwrap_err();
    assert!(err.contains("--remote-write-url"), "{err}");
    assert!(matches!(
        config(&["--once"]).unwrap().settings(),
        Err(ConfigError::NowhereToSend)
    ));
    parse(&["--once", "--dry-run"]).unwrap();
    parse(&[
        "--once",
        "--remote-write-url",
        "http://localhost:9090/api/v1/write",
    ])
    .unwrap();
}

#[test]
fn otlp_urls_are_endpoints_with_the_shared_settings() {
    let s = parse(&[
        "--once",
        "--otlp-url",
        "http://collector:4318/v1/metrics",
        "--remote-write-url",
        "http://prometheus:9090/api/v1/write",
        "--remote-write-header",
        "X-Scope-OrgID: team-a",
        "--external-label",
        "cluster=prod",
        "--remote-write-protocol",
        "2.0",
        "--remote-write-bearer-token-file",
        "/token",
        "--retry-max-pause",
        "1m",
    ])
    .unwrap();
    let endpoints = s.endpoints;
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0].protocol, Protocol::V2);
    assert_eq!(endpoints[1].protocol, Protocol::Otlp);
    assert_eq!(
        endpoints[1].url.as_str(),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(endpoints[1].headers, endpoints[0].headers);
    assert_eq!(
        endpoints[1].auth.bearer_token_file.as_deref(),
        Some(std::path::Path::new("/token"))
    );
    assert_eq!(endpoints[1].retry.max_pause, Duration::from_secs(60));
    assert_eq!(endpoints[1].resource_labels, ["job", "cluster"]);
    let err = parse(&["--remote-write-protocol", "otlp"]).unwrap_err();
    assert!(err.contains("invalid value"), "OTLP is per endpoint: {err}");
}

#[test]
fn the_endpoints_file_is_read_once_with_the_flags_as_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.yaml");
    std::fs::write(
        &path,
        "endpoints:\n  - url: https://mimir.example.com/api/v1/push\n    protocol: otlp\n",
    )
    .unwrap();
    let config = config(&[
        "--remote-write-url",
        "http://prometheus:9090/api/v1/write",
        "--remote-write-config",
        path.to_str().unwrap(),
        "--remote-write-timeout",
        "7s",
    ])
    .unwrap();
    let settings = config.settings().unwrap();
    // The file is gone: the settings hold what it said.
    std::fs::remove_file(&path).unwrap();
    let endpoints = settings.endpoints;
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[1].protocol, Protocol::Otlp);
    assert_eq!(endpoints[1].timeout, Duration::from_secs(7));
    assert!(matches!(
        config.settings(),
        Err(ConfigError::EndpointsFile(EndpointsFileError::Read { .. }))
    ));
}

#[test]
fn interval_and_schedule_exclude_each_other() {
    assert!(parse(&["--interval", "5m", "--schedule", "*/5 * * * *"]).is_err());
    let s = parse(&["--schedule", "*/5 * * * *"]).unwrap();
    assert!(matches!(s.schedule, Schedule::Cron(_)));
}

#[test]
fn external_labels_are_validated() {
    let s = parse(&[
        "--external-label",
        "cluster=prod",
        "--external-label",
        "region=eu",
    ])
    .unwrap();
    assert_eq!(
        s.pipeline.common_labels.pairs().nth(1),
        Some(("cluster", "prod"))
    );
    assert!(parse(&["--external-label", "cluster"]).is_err());
    assert!(parse(&["--external-label", "1cluster=x"]).is_err());
    assert!(parse(&["--external-label", "__name__=x"]).is_err());
    assert!(parse(&["--external-label", "cluster="]).is_err());
    assert!(parse(&["--external-label", "namespace=x"])
        .unwrap_err()
        .contains("namespace"));
    assert!(
        parse(&["--external-label", "a=1", "--external-label", "a=2"])
            .unwrap_err()
            .contains("given twice")
    );
    assert!(parse(&["--external-label", "job=x"])
        .unwrap_err()
        .contains("--job"));
    assert!(parse(&["--external-label", "cluster-name=x"])
        .unwrap_err()
        .contains("not a valid label name"));
}

#[test]
fn an_external_label_named_like_a_series_label_names_its_family() {
    let err = parse(&["--external-label", "class=prod"]).unwrap_err();
    assert!(
        err.contains("\"class\"") && err.contains("container_image_resolve_error"),
        "{err}"
    );
}

#[test]
fn image_limits() {
    let s = parse(&[
        "--max-labels-per-image",
        "0",
        "--max-annotations-per-image",
        "5",
        "--max-label-value-length",
        "64",
    ])
    .unwrap();
    assert_eq!(
        s.pipeline.resolver.image_limits,
        ImageLimits {
            max_labels: 0,
            max_annotations: 5,
            max_value_length: 64
        }
    );
    assert!(parse(&["--max-label-value-length", "3"]).is_err());
}

#[test]
fn durations_are_humane() {
    assert_eq!(
        parse(&["--cache-duration", "6h"])
            .unwrap()
            .pipeline
            .resolver
            .cache_duration,
        Duration::from_secs(6 * 3600)
    );
    assert!(parse(&["--interval", "0s"]).is_err());
    assert!(parse(&["--interval", "soon"]).is_err());
    assert_eq!(parse_duration("0s"), Err(ValueError::ZeroDuration));
}

#[test]
fn remote_write_durations_are_bounded() {
    let s = parse(&["--remote-write-url", "http://x/"]).unwrap();
    assert_eq!(s.endpoints[0].retry.max_pause, Duration::from_secs(300));
    for flag in [
        "--remote-write-retry-for",
        "--remote-write-timeout",
        "--retry-max-backoff",
        "--retry-max-pause",
    ] {
        let err = parse(&[flag, "500000000000y"]).unwrap_err();
        assert!(err.contains(flag) && err.contains("1day"), "{err}");
        parse(&[flag, "1d"]).unwrap();
    }
}

#[test]
fn leader_election_settings_come_from_the_downward_api_flags() {
    let s = parse(&[
        "--leader-election",
        "--pod-namespace",
        "monitoring",
        "--pod-name",
        "pusher-0",
    ])
    .unwrap();
    let leader = s.leader_election.unwrap();
    assert_eq!(leader.identity, "pusher-0");
    assert_eq!(leader.pod_namespace.as_deref(), Some("monitoring"));
    assert_eq!(leader.lease_name, "container-image-pusher");
    assert_eq!(leader.lease_duration, Duration::from_secs(15));
    let args = Config::command();
    for (flag, env) in [("pod_namespace", "POD_NAMESPACE"), ("pod_name", "POD_NAME")] {
        let arg = args.get_arguments().find(|a| a.get_id() == flag).unwrap();
        assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(env)));
    }
}

#[test]
fn log_filters_are_checked_and_empty_means_the_default() {
    let c = config(&["--log-level", "debug,container_image_pusher=trace"]).unwrap();
    assert_eq!(c.logging.log_level, "debug,container_image_pusher=trace");
    assert!(config(&["--log-level", "=foo["]).is_err());
    assert_eq!(
        config(&["--log-level", ""]).unwrap().logging.log_level,
        DEFAULT_LOG_FILTER
    );
}

#[test]
fn malformed_remote_write_flags_do_not_echo_secrets() {
    for args in [
        ["--remote-write-url", "http://u:PASSWORD@[::1"],
        ["--remote-write-header", "X-Api-Key PASSWORD"],
    ] {
        let err = parse(&args).unwrap_err();
        assert!(err.contains(args[0]), "{err}");
        assert!(!err.contains("PASSWORD"), "{err}");
    }
    let c = config(&[
        "--remote-write-url",
        "https://u:PASSWORD@mimir.example.com/push",
        "--remote-write-header",
        "X-Api-Key: PASSWORD",
    ])
    .unwrap();
    let debug = format!("{c:?} {:?}", c.settings().unwrap());
    assert!(
        debug.contains("mimir.example.com") && !debug.contains("PASSWORD"),
        "{debug}"
    );
}

#[test]
fn workload_kinds_and_filters_reach_the_source() {
    let s = parse(&[
        "--namespace",
        "shop",
        "--workload-kind",
        "argo-rollouts",
        "--workload-kind",
        "example.com/v1/Thing=.spec.a,.spec.b",
        "--exclude-namespace",
        "kube-*,monitoring",
        "--selector",
        "team=shop",
        "--exclude-image",
        "*/pause:*",
    ])
    .unwrap();
    let SourceSettings::Cluster { selection, .. } = s.pipeline.source else {
        panic!("a cluster source");
    };
    assert_eq!(selection.namespaces, ["shop"]);
    let kinds: Vec<String> = selection.kinds.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        kinds,
        ["argoproj.io/v1alpha1/Rollout", "example.com/v1/Thing"]
    );
    assert_eq!(selection.exclude_namespaces.len(), 2);
    assert_eq!(selection.label_selector().as_deref(), Some("team=shop"));
    assert_eq!(selection.exclude_images[0].as_str(), "*/pause:*");
    assert!(parse(&["--workload-kind", "apps/v1/Deployment"]).is_err());
    assert!(parse(&["--selector", "team in shop"]).is_err());
}
