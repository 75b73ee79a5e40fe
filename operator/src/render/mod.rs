//! Renders fluent-bit (YAML) and fluentd configuration text from a [`Pipeline`].
//! Deterministic, and every user string is validated or escaped (see [`escape`]).

pub mod edge;
pub mod escape;
pub mod filters;
pub mod fluentbit;
pub mod fluentd;
pub mod outputs;
mod writer;

use crate::model::Pipeline;

/// One file of rendered configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    /// File name inside the mounted config directory.
    pub name: String,
    pub content: String,
}

/// The agent's configuration files (placed in one Secret mounted at `layout::AGENT_CONFIG_DIR`).
pub fn agent(pipeline: &Pipeline) -> Vec<ConfigFile> {
    fluentbit::agent(pipeline)
}

/// The agent's routing table (placed in its own Secret mounted at `layout::AGENT_ROUTES_DIR`,
/// which agents re-read without restarting).
pub fn agent_routes(pipeline: &Pipeline) -> ConfigFile {
    edge::routes_table(pipeline)
}

/// The aggregator's configuration, as shards: each inner `Vec` becomes one Secret, shard 0
/// holding `layout::AGGREGATOR_CONFIG_FILE` (mounted at `layout::AGGREGATOR_CONFIG_DIR`),
/// shard `i ≥ 1` mounted at `layout::aggregator_shard_dir(i)`.
pub fn aggregator(pipeline: &Pipeline) -> Vec<Vec<ConfigFile>> {
    fluentd::aggregator(pipeline)
}
