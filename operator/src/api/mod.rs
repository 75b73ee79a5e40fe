//! The `logging.sluice.dev/v1alpha1` API: types and schemas only, no behaviour beyond
//! small accessors. Defaults live in code (see `build`), never in the schema, so GitOps
//! tools never see drift between what a user wrote and what the API server stores.

// kube's derive takes one `printcolumn(...)` per column, which clippy reads as repeated attributes.
#![allow(clippy::duplicated_attributes)]

mod common;
mod filter;
mod flow;
mod logging;
mod output;

pub use common::*;
pub use filter::*;
pub use flow::*;
pub use logging::*;
pub use output::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Sluice kind.
pub const GROUP: &str = "logging.sluice.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "logging.sluice.dev/v1alpha1";

/// Declares a string-to-string map's size: API servers price CEL rules by the declared sizes
/// of everything a rule can reach, and refuse rules over unbounded data (operator/tests/crd_budgets.rs).
pub fn bounded_map<const ENTRIES: u64, const VALUE_LENGTH: u64>(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".to_owned(), ENTRIES.into());
    if let Some(values) = schema
        .get_mut("additionalProperties")
        .and_then(serde_json::Value::as_object_mut)
    {
        values.insert("maxLength".to_owned(), VALUE_LENGTH.into());
    }
}

/// Every CRD Sluice serves, in a stable order (the order `sluice crds` writes them).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Logging::crd(),
        Flow::crd(),
        ClusterFlow::crd(),
        Output::crd(),
        ClusterOutput::crd(),
    ]
}
