//! Pipelines shared by the benches.

use std::collections::BTreeMap;

use sluice::api::{LoggingSpec, OutputSpec};
use sluice::layout::Names;
use sluice::model::{FlowPlan, Kind, ObjectKey, OutputPlan, Pipeline};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector, Watched};

/// `n` teams, each with a Flow in its own namespace selecting `app=web` to its own
/// Elasticsearch Output.
pub fn simple_flows(n: usize) -> Pipeline {
    let spec: LoggingSpec =
        serde_json::from_value(serde_json::json!({"controlNamespace": "logging"}))
            .expect("valid spec");
    let mut flows = Vec::new();
    let mut outputs = BTreeMap::new();
    for i in 0..n {
        let ns = format!("team-{i}");
        let out = ObjectKey::namespaced(Kind::Output, &ns, "es");
        let output: OutputSpec = serde_json::from_value(serde_json::json!({
            "elasticsearch": {"hosts": ["https://es.logging:9200"], "indexName": ns}
        }))
        .expect("valid output");
        outputs.insert(
            out.clone(),
            OutputPlan {
                key: out.clone(),
                spec: output,
                secret_files: BTreeMap::new(),
            },
        );
        flows.push(FlowPlan::new(
            ObjectKey::namespaced(Kind::Flow, &ns, "web"),
            FlowMatcher {
                scope: Scope::Namespace(ns.clone()),
                rules: vec![Rule {
                    action: Action::Select,
                    selector: Selector {
                        labels: [("app".to_owned(), "web".to_owned())].into_iter().collect(),
                        ..Default::default()
                    },
                }],
            },
            Vec::new(),
            vec![out],
        ));
    }
    Pipeline {
        logging: "main".to_owned(),
        logging_uid: None,
        names: Names::new("main", "logging"),
        spec,
        watched: Watched::All,
        flows,
        default_flow: None,
        error_output: None,
        outputs,
        output_secret_data: BTreeMap::new(),
        problems: BTreeMap::new(),
        buffers: Default::default(),
        capacity: Default::default(),
    }
}
