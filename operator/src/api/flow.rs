use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Filter, ObjectStatus};

/// Routes logs of its own namespace through filters to outputs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "logging.sluice.dev",
    version = "v1alpha1",
    kind = "Flow",
    namespaced,
    status = "ObjectStatus",
    shortname = "sflow",
    category = "sluice",
    derive = "PartialEq",
    doc = "Routes logs of its own namespace, chosen by ordered select/exclude rules, through filters to Outputs and ClusterOutputs.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FlowSpec {
    /// Name of the Logging this flow belongs to. Unset: every Logging that watches this namespace.
    /// A Logging's name (DNS subdomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub logging_ref: Option<String>,
    /// Ordered rules; the first rule that matches a record decides whether the flow takes it.
    /// No rule matching means the flow does not take it; an empty list takes everything.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub match_rules: Vec<FlowMatch>,
    /// Filters applied in order to the records this flow takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub filters: Vec<Filter>,
    /// Outputs in this namespace receiving the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub local_output_refs: Vec<String>,
    /// ClusterOutputs (not `protected` ones) receiving the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub global_output_refs: Vec<String>,
}

/// One rule of a Flow: exactly one of `select` or `exclude`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("has(self.select) != has(self.exclude)").message("a match entry holds exactly one of select or exclude"))]
pub struct FlowMatch {
    /// Records matching this selector are taken by the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<FlowSelector>,
    /// Records matching this selector are not taken by the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<FlowSelector>,
}

/// What a Flow rule matches. Every field that is set must match; an empty selector matches
/// every record of the flow's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowSelector {
    /// Pod labels; every listed pair must be present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 63>)]
    pub labels: BTreeMap<String, String>,
    /// Node names; any one must equal the record's node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 253)))]
    pub hosts: Vec<String>,
    /// Container names; any one must equal the record's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub container_names: Vec<String>,
}

/// Routes logs of any watched namespace through filters to ClusterOutputs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "logging.sluice.dev",
    version = "v1alpha1",
    kind = "ClusterFlow",
    status = "ObjectStatus",
    shortname = "scflow",
    category = "sluice",
    derive = "PartialEq",
    doc = "Routes logs of every watched namespace, chosen by ordered select/exclude rules, through filters to ClusterOutputs.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFlowSpec {
    /// Name of the Logging this flow belongs to. Unset: every Logging.
    /// A Logging's name (DNS subdomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub logging_ref: Option<String>,
    /// Ordered rules; the first rule that matches a record decides whether the flow takes it.
    /// No rule matching means the flow does not take it; an empty list takes everything.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub match_rules: Vec<ClusterFlowMatch>,
    /// Filters applied in order to the records this flow takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub filters: Vec<Filter>,
    /// ClusterOutputs receiving the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub global_output_refs: Vec<String>,
}

/// One rule of a ClusterFlow: exactly one of `select` or `exclude`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("has(self.select) != has(self.exclude)").message("a match entry holds exactly one of select or exclude"))]
pub struct ClusterFlowMatch {
    /// Records matching this selector are taken by the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<ClusterFlowSelector>,
    /// Records matching this selector are not taken by the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<ClusterFlowSelector>,
}

/// What a ClusterFlow rule matches. Every field that is set must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFlowSelector {
    /// Namespaces; any one must equal the record's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Namespace labels; every listed pair must be present on the record's namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 63>)]
    pub namespace_labels: BTreeMap<String, String>,
    /// Pod labels; every listed pair must be present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<64, 63>)]
    pub labels: BTreeMap<String, String>,
    /// Node names; any one must equal the record's node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 253)))]
    pub hosts: Vec<String>,
    /// Container names; any one must equal the record's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub container_names: Vec<String>,
}
