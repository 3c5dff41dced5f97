//! The flags checked together and turned into the typed settings each stage is built from.

use std::net::SocketAddr;

use reqwest::Url;

use crate::discovery::watch::WatchOptions;
use crate::discovery::Selection;
use crate::leader::{self, LeaderSettings};
use crate::pipeline::{PipelineSettings, SourceSettings};
use crate::registry::{FilterError, ResolverConfig, VersionSettings};
use crate::remote_write::{EndpointConfig, EndpointError, EndpointsFileError, Protocol, PushUrl};
use crate::schedule::Schedule;
use crate::series::{self, CommonLabels, ExternalLabelError, LimitsError};

use super::*;

/// Everything the service is built from, checked: each stage takes its part.
#[derive(Debug)]
pub struct Settings {
    /// Take one snapshot, deliver it and exit.
    pub once: bool,
    /// Print snapshots instead of pushing them.
    pub dry_run: bool,
    pub schedule: Schedule,
    pub pipeline: PipelineSettings,
    /// Every endpoint to push to: the --remote-write-url and --otlp-url
    /// ones with the shared flags, then those of --remote-write-config.
    pub endpoints: Vec<EndpointConfig>,
    /// `None` without --leader-election.
    pub leader_election: Option<LeaderSettings>,
    pub metrics_address: SocketAddr,
    pub telemetry_address: SocketAddr,
}

/// Flags that clap accepts one by one but that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--once needs --remote-write-url, --otlp-url or --dry-run: there is nowhere to send the snapshot")]
    NowhereToSend,
    #[error("--external-label: {0}")]
    ExternalLabel(#[from] ExternalLabelError),
    #[error("--job or --external-label: {0}")]
    SeriesLimits(#[from] LimitsError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    EndpointsFile(#[from] EndpointsFileError),
    #[error("--image-labels or --image-annotations: {0}")]
    ImageFilter(#[from] FilterError),
    #[error(transparent)]
    Verification(#[from] crate::verify::policy::PolicyError),
}

impl Config {
    /// Checks what clap cannot (combinations of flags, label names, the
    /// endpoints, the --remote-write-config file, read here and only here)
    /// and builds the settings of every stage.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (sources, schedule) = (&self.sources, &self.schedule);
        let remote_write = &self.remote_write;
        if schedule.once
            && !schedule.dry_run
            && remote_write.remote_write_urls.is_empty()
            && remote_write.otlp_urls.is_empty()
            && remote_write.remote_write_config.is_none()
        {
            return Err(ConfigError::NowhereToSend);
        }
        series::check_external_labels(&self.series.external_labels, &self.series.replica_label)?;
        let common_labels = CommonLabels::new(&self.series.job, &self.series.external_labels)
            .with_limits(self.series.series_limits())?;
        let resource_labels: Vec<String> = common_labels.names().map(str::to_owned).collect();
        let endpoints = self.endpoints(&resource_labels)?;
        let interval = schedule.interval;
        let source = if sources.manifests.is_empty() {
            SourceSettings::Cluster {
                selection: self.selection(),
                // A CronJob run lists once; a long-running service keeps watches.
                watch: (!schedule.once).then(|| WatchOptions {
                    grace_period: sources.watch_grace_period,
                    max_backoff: WatchOptions::max_backoff_for(interval),
                    watch_timeout: sources.watch_timeout,
                }),
            }
        } else {
            SourceSettings::Files {
                paths: sources.manifests.clone(),
                selection: self.selection(),
                limits: crate::discovery::files::FileLimits {
                    max_file_bytes: sources.manifests_max_file_bytes,
                    max_total_bytes: sources.manifests_max_total_bytes,
                },
            }
        };
        let registry = &self.registry;
        let pipeline = PipelineSettings {
            source,
            credentials: self.credentials.settings(),
            resolver: ResolverConfig {
                platform: registry.platform.clone(),
                cache_duration: registry.cache_duration,
                error_cache_duration: registry.error_cache_duration,
                insecure_registries: registry.insecure_registries.clone(),
                timeout: registry.registry_timeout,
                registry_concurrency: registry.registry_concurrency as usize,
                registry_rps: registry.registry_rps,
                image_limits: self.series.image_limits(),
                referrers: self.supply_chain.referrers,
                referrers_cache_duration: self.supply_chain.referrers_cache_duration,
                image_filter: self.metadata.image_filter()?,
                verify: std::sync::Arc::new(crate::verify::policy::policies(
                    &self.verification.verify_key,
                    &self.verification.verify_certificate,
                    self.verification.verify_config.as_deref(),
                )?),
                versions: self.versions.versions.then(|| VersionSettings {
                    cache_duration: self.versions.versions_cache_duration,
                    include: self.versions.versions_include.clone(),
                    exclude: self.versions.versions_exclude.clone(),
                }),
                disk_cache: registry.cache_dir.clone().map(|dir| {
                    crate::registry::disk_cache::DiskCache::new(dir, registry.cache_dir_max_bytes)
                }),
            },
            resolve_concurrency: registry.resolve_concurrency as usize,
            common_labels,
            workload_metadata: self.metadata.workload_metadata(),
            push_self_metrics: self.server.push_self_metrics,
        };
        let leader = &self.leader_election;
        let leader_election = leader.leader_election.then(|| LeaderSettings {
            lease_name: leader.lease_name.clone(),
            lease_namespace: leader.lease_namespace.clone(),
            pod_namespace: leader.pod_namespace.clone(),
            identity: leader::identity_of_this_process(leader.pod_name.as_deref()),
            lease_duration: leader.lease_duration,
        });
        Ok(Settings {
            once: schedule.once,
            dry_run: schedule.dry_run,
            schedule: schedule
                .schedule
                .clone()
                .unwrap_or(Schedule::Interval(interval)),
            pipeline,
            endpoints,
            leader_election,
            metrics_address: self.server.metrics_address,
            telemetry_address: self.server.telemetry_address,
        })
    }

    /// The --remote-write-url and --otlp-url endpoints with the shared
    /// settings, then those of --remote-write-config, which take the shared
    /// settings they do not give themselves.
    pub(super) fn endpoints(
        &self,
        resource_labels: &[String],
    ) -> Result<Vec<EndpointConfig>, ConfigError> {
        let remote_write = &self.remote_write;
        let endpoint = |url: Url, protocol: Protocol| EndpointConfig {
            url,
            protocol,
            auth: self.remote_write_auth.clone(),
            headers: remote_write.remote_write_headers.clone(),
            tls: self.remote_write_tls.clone(),
            timeout: remote_write.remote_write_timeout,
            max_series_per_request: remote_write.max_series_per_request as usize,
            retry: self.retry,
            resource_labels: resource_labels.to_vec(),
        };
        let protocol = remote_write.remote_write_protocol;
        let urls = remote_write.remote_write_urls.iter().map(|u| (u, protocol));
        let otlp = remote_write.otlp_urls.iter().map(|u| (u, Protocol::Otlp));
        let mut endpoints: Vec<EndpointConfig> = urls
            .chain(otlp)
            .map(|(PushUrl(url), protocol)| endpoint(url.clone(), protocol))
            .collect();
        for endpoint in &endpoints {
            endpoint.validate()?;
        }
        if let Some(path) = &remote_write.remote_write_config {
            let defaults = endpoint(
                Url::parse("http://localhost/").expect("a valid URL"),
                protocol,
            );
            endpoints.extend(EndpointConfig::from_file(path, &defaults)?);
        }
        Ok(endpoints)
    }
}

impl Config {
    /// What discovery reads: the namespaces, kinds and filters.
    pub(super) fn selection(&self) -> Selection {
        Selection {
            namespaces: self.sources.namespaces.clone(),
            kinds: self.workloads.kinds.clone(),
            exclude_namespaces: self.workloads.exclude_namespaces.clone(),
            selector: self.workloads.selector.clone(),
            exclude_images: self.workloads.exclude_images.clone(),
        }
    }
}
