//! The "Workload kinds and filters" flags: which workloads are read, and which are left out.

use crate::discovery::{KindSpec, LabelSelector};
use crate::glob::Glob;

/// Which workloads are inventoried beyond the built-in kinds, and which
/// are left out.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Workload kinds and filters")]
#[deny(missing_docs)]
pub struct WorkloadArgs {
    /// Also inventory this kind (repeatable; ';' separates several in the
    /// variable): a preset (argo-rollouts, knative-serving, keda-scaledjob,
    /// openkruise-cloneset, replicaset, replicationcontroller) or
    /// GROUP/VERSION/KIND[=PATH,...] (VERSION/KIND for the core group),
    /// PATH being where a pod spec sits, default .spec.template.spec. Found
    /// with API discovery; a kind not installed is looked up again later.
    #[arg(
        long = "workload-kind",
        value_name = "KIND",
        env = "PUSHER_WORKLOAD_KINDS",
        value_delimiter = ';',
        value_parser = KindSpec::parse
    )]
    pub kinds: Vec<KindSpec>,

    /// Leave out workloads in namespaces matching this glob (repeatable;
    /// '*' matches any characters), e.g. kube-*.
    #[arg(
        long = "exclude-namespace",
        value_name = "GLOB",
        env = "PUSHER_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub exclude_namespaces: Vec<Glob>,

    /// Only workloads whose labels match this Kubernetes label selector,
    /// e.g. 'team=shop,tier!=test' (sent to the API server with each list
    /// and watch; evaluated on the files with --manifests).
    #[arg(long = "selector", value_name = "SELECTOR", env = "PUSHER_SELECTOR", value_parser = LabelSelector::parse)]
    pub selector: Option<LabelSelector>,

    /// Leave out containers whose image, as written in the spec, matches
    /// this glob (repeatable), e.g. '*/pause:*': no series, no registry
    /// request.
    #[arg(
        long = "exclude-image",
        value_name = "GLOB",
        env = "PUSHER_EXCLUDE_IMAGES",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub exclude_images: Vec<Glob>,
}
