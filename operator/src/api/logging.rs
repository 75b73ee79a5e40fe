use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Filter, NamespaceSelector, ObjectStatus, OverflowAction, PodScheduling, Resources, SecretKeyRef,
};

/// A logging pipeline for a cluster: one fluent-bit agent on every node, one fluentd
/// aggregator StatefulSet in `controlNamespace`, and the mutual-TLS channel between them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "logging.sluice.dev",
    version = "v1alpha1",
    kind = "Logging",
    status = "LoggingStatus",
    shortname = "slg",
    category = "sluice",
    derive = "PartialEq",
    doc = "A cluster-wide logging pipeline: fluent-bit agents on every node shipping over mutual TLS to a fluentd aggregator.",
    printcolumn(
        name = "Control-Namespace",
        type_ = "string",
        json_path = ".spec.controlNamespace"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Certificates",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"CertificatesReady\")].status"
    ),
    printcolumn(
        name = "CA-Expires",
        type_ = "date",
        json_path = ".status.certificates.ca.notAfter",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// Namespace holding the aggregator, its Secrets and the TLS material. Cannot change
    /// once set: delete and recreate the Logging to move it. One Logging per namespace: of
    /// two naming the same one, the older keeps it and the other applies nothing.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("controlNamespace is immutable"))]
    #[schemars(length(min = 1, max = 63))]
    pub control_namespace: String,
    /// Namespaces whose logs this Logging collects. Together with
    /// `watchNamespaceSelector` the union is watched; both empty means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(max = 63)))]
    pub watch_namespaces: Vec<String>,
    /// Namespaces, chosen by their labels, whose logs this Logging collects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_namespace_selector: Option<NamespaceSelector>,
    /// The fluent-bit DaemonSet that tails container logs on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// The fluentd StatefulSet that routes records to outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<AggregatorSpec>,
    /// The mutual-TLS channel between agents and aggregator. Managed by Sluice unless set otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Where records go that no Flow or ClusterFlow took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_flow: Option<DefaultFlowSpec>,
    /// ClusterOutput receiving records that an output failed to deliver for good.
    /// Unset: such records are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_output_ref: Option<String>,
    /// Filters applied in the aggregator to every record, first in each flow (and the default
    /// flow), after routing: so routing always sees the original Kubernetes metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub global_filters: Vec<Filter>,
    /// What namespaced Outputs and pods may claim of the shared aggregator and agents.
    /// ClusterOutputs are the admin's own and are not capped. See docs/dataplane.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_limits: Option<TenantLimits>,
    /// The config reloader in every agent and aggregator pod (docs/architecture.md,
    /// "Config reload").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloader: Option<ReloaderSpec>,
}

/// The config reloader: an init container copies the `sluice` binary from this image into the
/// pod, and it runs next to fluent-bit and fluentd, inside their images.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloaderSpec {
    /// Image holding the `sluice` binary. Default: the operator's own image of the same
    /// version (set it when pulling through a mirror).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
}

/// Limits the Logging's admin sets on what tenants (namespaced Flows and Outputs, pods) may
/// use of shared resources. Sizes beyond a cap are lowered to the cap and reported on the
/// Output; choices not allowed leave the Output out; a Flow's pairs that do not fit the buffer
/// budget are left out of that Flow.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Largest `buffer.totalLimitSize` of an Output, a fluentd size such as `1g`; larger
    /// values are lowered to it. Default: the per-output default the buffer volume allows
    /// (`status.buffers.perOutputDefault`). Above that default, a pair of such an Output gets
    /// its buffer only after every pair of default size, while the budget still holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,15}[kmgtKMGT]?$"))]
    pub max_total_limit_size: Option<String>,
    /// Largest `buffer.chunkLimitSize` of an Output; larger values are lowered to it.
    /// Default: `64m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,15}[kmgtKMGT]?$"))]
    pub max_chunk_limit_size: Option<String>,
    /// Largest `buffer.flushThreadCount` of an Output; larger values are lowered to it.
    /// Default: 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_flush_thread_count: Option<i32>,
    /// The `buffer.overflowAction`s an Output may choose; an Output choosing another is left
    /// out. Default: `throw_exception` and `drop_oldest_chunk`. Allowing `block` lets one
    /// Output whose endpoint is down stall the aggregator's input for every agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 3))]
    pub allowed_overflow_actions: Option<Vec<OverflowAction>>,
    /// Whether an Output may write with the aggregator pod's own cloud identity (an `s3`
    /// Output without keys uses IRSA or the instance profile). Default: false, and such an
    /// Output is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_ambient_credentials: Option<bool>,
    /// Most buffered output instances the Flows of one namespace send to (each has a buffer
    /// and flush threads in every worker; docs/dataplane.md, "Output instances"): Flows
    /// sending to the same Output share one, equal Outputs of a namespace share one, and a
    /// ClusterOutput counts once per namespace using it. A namespace's outputs beyond it, in
    /// the order its Flows (by name) reference them, are left out of those Flows
    /// (`TooManyOutputs` on each). Default: 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_outputs_per_namespace: Option<i32>,
    /// Deprecated: a Flow sending to an output no longer gets a buffer of its own, so pairs
    /// cost nothing to count. Read as `maxOutputsPerNamespace` when that is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_flow_output_pairs_per_namespace: Option<i32>,
    /// Whether an Output may be of kind `file`. Its files are written to the buffer volume
    /// outside the buffer budget and never rotated, so one busy Output can fill the disk every
    /// buffer shares. Default: false, and such an Output is left out. ClusterOutputs may always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_file_outputs: Option<bool>,
    /// Whether an Output may be of kind `stdout`, which writes every record to the aggregator's
    /// log on the node (and back into the pipeline when the control namespace is watched).
    /// Default: false, and such an Output is left out. ClusterOutputs may always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_stdout_outputs: Option<bool>,
    /// Whether a pod annotated `fluentbit.io/exclude: "true"` is skipped by the agent, hiding
    /// its logs from every flow including the admin's ClusterFlows. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_pod_opt_out: Option<bool>,
}

/// The fluent-bit agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Container image. Default: the fluent-bit image documented in docs/dataplane.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resource requests and limits of the fluent-bit container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Where the agent pods may run.
    #[serde(default, flatten)]
    pub scheduling: PodScheduling,
    /// Host directories holding container logs and what they link to, mounted read-only.
    /// Default: `/var/log` (containerd and CRI-O). Add `/var/lib/docker/containers` on nodes
    /// that still run Docker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 1024)))]
    pub log_path_roots: Vec<String>,
    /// Host directory for tail positions and filesystem buffers, so a restarted agent resumes
    /// where it stopped. Default: `/var/lib/sluice/<logging name>`. No two Loggings may
    /// share it (nor nest one in the other): the older keeps it, the other applies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_host_path: Option<String>,
    /// Upper bound of the on-disk buffer per node, as a fluent-bit size such as `2G`.
    /// Default: `1G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[KMG]?$"))]
    pub filesystem_buffer_limit: Option<String>,
    /// What Kubernetes metadata the agent attaches to each record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_metadata: Option<KubernetesMetadataSpec>,
    /// Largest number (or percentage) of agent pods unavailable during a rolling update.
    /// Default: `10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// Serve fluent-bit's Prometheus metrics on this port. Default: 2020.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: Option<i32>,
}

/// Options of fluent-bit's kubernetes filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesMetadataSpec {
    /// Attach pod annotations to records. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<bool>,
    /// Ask the local kubelet for pod metadata instead of the API server. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_kubelet: Option<bool>,
    /// How long pod metadata is cached, e.g. `5m`, so label changes are picked up.
    /// Default: `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]?$"))]
    pub cache_ttl: Option<String>,
}

/// The fluentd aggregator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorSpec {
    /// Container image. It must contain the plugins of every output kind in use.
    /// Default: the fluentd image documented in docs/dataplane.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of replicas. Unset: Sluice leaves the field to a HorizontalPodAutoscaler
    /// (and Kubernetes starts one replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Resource requests and limits of the fluentd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Where the aggregator pods may run.
    #[serde(default, flatten)]
    pub scheduling: PodScheduling,
    /// The volume holding output buffers. Default: a 10Gi PersistentVolumeClaim per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_volume: Option<BufferVolumeSpec>,
    /// The PodDisruptionBudget of the aggregator. Default: `maxUnavailable: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,
    /// fluentd worker processes per pod. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub workers: Option<i32>,
    /// Port of the TLS forward input. Default: 24240.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The check every configuration passes before fluentd loads it (`fluentd --dry-run`,
    /// run by the config reloader), which also bounds how large a configuration the
    /// aggregator takes: flows whose configuration would not pass it within these limits,
    /// or not fit the fluentd container's memory limit, are left out
    /// (docs/dataplane.md, "Capacity").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_check: Option<ConfigCheckSpec>,
}

/// Limits of the aggregator's configuration check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigCheckSpec {
    /// Memory limit of the reloader containers (`config-init`, `config-reloader`), in which
    /// the check runs; a Kubernetes quantity. Default: `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub memory_limit: Option<String>,
    /// Seconds the check may run before it is killed and the revision counts as rejected.
    /// Default: 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 3600))]
    pub timeout_seconds: Option<i32>,
}

/// The aggregator's buffer volume: exactly one of `persistentVolumeClaim` or `emptyDir`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.persistentVolumeClaim) != has(self.emptyDir)").message("set exactly one of persistentVolumeClaim or emptyDir"))]
pub struct BufferVolumeSpec {
    /// A PersistentVolumeClaim per replica, kept when the aggregator is scaled down or recreated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentBufferSpec>,
    /// An emptyDir: buffered records are lost when a pod is deleted. Explicit opt-in only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirBufferSpec>,
}

/// A buffer PersistentVolumeClaim template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentBufferSpec {
    /// Requested size, a Kubernetes quantity. Default: `10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub size: Option<String>,
    /// StorageClass; unset uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// An emptyDir buffer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirBufferSpec {
    /// Size limit, a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub size_limit: Option<String>,
}

/// The aggregator's PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Create the budget. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Largest number of aggregator pods a voluntary disruption may take down. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
}

/// How the agent-to-aggregator channel is secured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.existing) || !has(self.mode) || self.mode == 'Existing'").message("existing is only used with mode Existing"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.mode) || self.mode != 'Existing' || has(self.existing)").message("mode Existing needs the existing Secret names"))]
pub struct TlsSpec {
    /// `Managed` (default): Sluice mints, renews and rotates everything. `Existing`: use the
    /// Secrets named in `existing`. `Disabled`: plain text, reported as the warning
    /// `TlsDisabled` (`Warning` condition, not `Degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    /// Key algorithm of minted keys. Default: `EcdsaP256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Lifetime of a minted CA, e.g. `43800h`. Default: `43800h` (5 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"), length(max = 32))]
    pub ca_validity: Option<String>,
    /// Lifetime of minted server and client certificates, e.g. `2160h`. Default: `2160h` (90 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"), length(max = 32))]
    pub leaf_validity: Option<String>,
    /// Percentage of a certificate's lifetime after which it is renewed. Default: 66.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 95))]
    pub renew_at_percent: Option<u8>,
    /// Lowest TLS version either side accepts. Default: `TLS1_2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version either side accepts. Default: `TLS1_3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
    /// Common name of the agents' client certificate. Default: `fluent-bit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$"),
        length(max = 63)
    )]
    pub client_common_name: Option<String>,
    /// Regular expression a client certificate's common name must fully match for the
    /// aggregator to accept it. Default: the exact `clientCommonName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub allowed_client_names: Option<String>,
    /// The Secret holding the shared key both sides prove knowledge of. Unset: Sluice
    /// generates one in `controlNamespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key_secret_ref: Option<SecretKeyRef>,
    /// Secrets in cert-manager format (`ca.crt`, `tls.crt`, `tls.key`) for mode `Existing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<ExistingTlsSecrets>,
}

/// How TLS material is obtained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    #[default]
    Managed,
    Existing,
    Disabled,
}

/// Key algorithms Sluice can mint.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
}

/// TLS protocol versions.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum TlsVersion {
    #[serde(rename = "TLS1_2")]
    Tls12,
    #[serde(rename = "TLS1_3")]
    Tls13,
}

/// User-provided TLS Secrets, each in the control namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingTlsSecrets {
    /// Secret with the aggregator's server certificate (`tls.crt`, `tls.key`) and the CA
    /// bundle that client certificates must chain to (`ca.crt`).
    /// A Kubernetes object name (DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub server_secret_name: String,
    /// Secret with the agents' client certificate (`tls.crt`, `tls.key`) and the CA bundle
    /// that the server certificate must chain to (`ca.crt`).
    /// A Kubernetes object name (DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub client_secret_name: String,
}

/// Records that no Flow or ClusterFlow took.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultFlowSpec {
    /// Filters applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub filters: Vec<Filter>,
    /// ClusterOutputs receiving the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub global_output_refs: Vec<String>,
}

/// Observed state of a Logging.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingStatus {
    /// Generation, conditions (`Ready`, `Degraded`, `Warning`, `CertificatesReady`,
    /// `AgentReady`, `AggregatorReady`) and problems.
    #[serde(flatten)]
    pub common: ObjectStatus,
    /// Validity of the TLS material in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,
    /// Namespaces whose logs are collected, sorted; absent when every namespace is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watched_namespaces: Option<Vec<String>>,
    /// How the output buffers of one aggregator pod share its buffer volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffers: Option<BuffersStatus>,
    /// How large the aggregator's configuration is, and what it costs against the limits
    /// of its check and of fluentd (docs/dataplane.md, "Capacity").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStatus>,
}

/// The estimated cost of the aggregator's configuration against its limits, from fluentd
/// 1.17's measured cost per flow, filter and output instance. Rounded up (memory to 32Mi,
/// time to 5 s) so that single edits do not rewrite the status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityStatus {
    /// Estimated peak memory of the configuration check, a Kubernetes quantity.
    pub check_memory: String,
    /// The reloader containers' memory limit the check runs within.
    pub check_memory_limit: String,
    /// Estimated seconds the check takes.
    pub check_seconds: i64,
    /// Seconds the check may take.
    pub check_timeout_seconds: i64,
    /// Estimated peak memory of the fluentd container while it reloads (supervisor and
    /// workers each holding the old and the new configuration).
    pub aggregator_memory: String,
    /// The fluentd container's memory limit; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator_memory_limit: Option<String>,
    /// Flows left out because the configuration would exceed a limit (each has the
    /// condition `AggregatorCapacityExceeded`).
    pub flows_left_out: i64,
}

/// The buffer budget of one aggregator pod: every output instance (and the error output)
/// has a file buffer per fluentd worker, each up to its `total_limit_size`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuffersStatus {
    /// Size of the buffer volume, a Kubernetes quantity.
    pub volume: String,
    /// Sum of the `total_limit_size` of every buffer of one pod, a Kubernetes quantity.
    pub allocated: String,
    /// `total_limit_size` of an output that sets none, a Kubernetes quantity.
    pub per_output_default: String,
    /// Number of buffers in one pod: output instances (and the error output) × workers.
    pub buffers: i64,
}

/// Expiry of each certificate and when Sluice will next change the TLS material.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// The CA that currently signs the leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateInfo>,
    /// The aggregator's server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<CertificateInfo>,
    /// The agents' client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<CertificateInfo>,
    /// Phase of a CA rotation in progress: `Stable`, `Introducing`, `Reissuing` or `Retiring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_phase: Option<String>,
    /// RFC 3339 instant of the next planned renewal or rotation step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
}

/// One certificate, as read back from its Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Hex serial number.
    pub serial: String,
    /// RFC 3339 expiry.
    pub not_after: String,
}

impl LoggingSpec {
    /// The TLS settings with every unset field still unset; an absent `tls` means all defaults.
    pub fn tls_or_default(&self) -> TlsSpec {
        self.tls.clone().unwrap_or_default()
    }
}

/// Labels are compared as sorted maps throughout Sluice.
pub type Labels = BTreeMap<String, String>;
