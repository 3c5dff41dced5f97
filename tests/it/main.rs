//! The integration tests, one binary: each former `tests/<name>.rs` is a
//! module here, so a test keeps its file's name as a prefix
//! (`./scripts/test watch::` runs what `tests/watch.rs` held), and
//! `support` — the real peers, the scripted receivers, the fixtures — is
//! compiled once instead of once per file.

mod dashboard_queries;
mod support;

mod chart;
mod cloud_credentials;
mod cluster_service;
mod dashboards;
mod deploy;
mod disk_cache;
mod e2e;
mod first_push;
mod fuzz_regressions;
mod hostile_inputs;
mod hostile_inputs_two;
mod invalid_series;
mod kustomize_version_rules;
mod label_sets;
mod layout;
mod leader;
mod long_running;
mod mimir;
mod otlp;
mod ownership;
mod pull_secrets;
mod readme;
mod receivers;
mod registry;
mod remote_write;
mod restart_measure;
mod rules;
mod running;
mod scale_smoke;
mod self_metrics;
mod series_limits;
mod shared_peers;
mod strict_receiver;
mod supply_chain;
mod verify;
mod verify_attestations;
mod verify_certificates;
mod verify_tlog;
mod version_annotations;
mod versions;
mod warm_tick;
mod watch;
mod workload_kinds;
