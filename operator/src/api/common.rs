use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key inside a Secret. Sluice never accepts a secret value inline in a spec.
/// Outputs and ClusterOutputs can never name a Secret Sluice manages (its CA, TLS, shared-key,
/// config and credentials Secrets, or those a Logging names for its TLS). Whoever may create
/// an Output in a namespace can send that namespace's Secrets to an endpoint of their choice:
/// grant that only to those who may read them. A Secret that cannot be read degrades only
/// the object naming it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret. For namespaced kinds it lives in the object's own namespace;
    /// for cluster-scoped kinds and the Logging it lives in the Logging's `controlNamespace`.
    /// A Kubernetes object name (DNS subdomain: lowercase letters, digits, `-` and `.`).
    /// Outputs and ClusterOutputs can never name a Secret Sluice manages.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key inside the Secret's `data` (letters, digits, `-`, `_` and `.`, as the API server
    /// allows for Secret keys).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Selects namespaces by their labels, as in a Kubernetes `LabelSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Every listed label must be present with exactly this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 63>)]
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`NamespaceSelector`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: LabelSelectorOperator,
    /// Values for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// Operators of a [`LabelSelectorRequirement`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Status shared by every Sluice kind. It is computed deterministically from the spec and
/// the cluster, and patched only when it differs from what is stored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Degraded` (something to fix) and `Warning` (nothing to fix, worth knowing)
    /// on every kind, plus kind-specific types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Human-readable problems found in this object, warnings included; empty when all is
    /// well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Scheduling knobs shared by the agent and the aggregator pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodScheduling {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 63>)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// A Kubernetes `Affinity`, passed through unchanged. Its schema is not embedded to keep
    /// the CRD small; the API server validates it when the workload is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::raw_object_schema")]
    pub affinity: Option<serde_json::Value>,
    /// Name of a PriorityClass for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Schema for an object Sluice passes through without describing its fields.
pub fn raw_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Container resource requests and limits, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Minimum resources, e.g. `{cpu: 100m, memory: 64Mi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<16, 64>)]
    pub requests: BTreeMap<String, String>,
    /// Maximum resources, e.g. `{memory: 256Mi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<16, 64>)]
    pub limits: BTreeMap<String, String>,
}
