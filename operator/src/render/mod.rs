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

/// The agent's configuration files, its config bundle: first `fluent-bit.yaml` (installed per
/// revision), then the files it names by absolute path under `layout::RELOAD_SHARED_DIR`.
pub fn agent(pipeline: &Pipeline) -> Vec<ConfigFile> {
    fluentbit::agent(pipeline)
}

/// The agent's routing table: an index and slots, each in a Secret of its own, mounted
/// together at `layout::AGENT_ROUTES_DIR`; agents re-read them without restarting.
pub fn agent_routes(pipeline: &Pipeline) -> edge::AgentRoutes {
    edge::routes_table(pipeline)
}

/// The aggregator's configuration: a main file and fixed slots (see [`fluentd::AggregatorFiles`]).
pub fn aggregator(pipeline: &Pipeline) -> fluentd::AggregatorFiles {
    fluentd::aggregator(pipeline)
}
