//! Rendering time for 1,000 and 10,000 simple flows (goal: 10,000 in at most 50 ms).
//! Run with `cargo bench -p sluice --bench render`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::api::{LoggingSpec, OutputSpec};
use sluice::layout::Names;
use sluice::model::{FlowPlan, Kind, ObjectKey, OutputPlan, Pipeline};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector, Watched};

fn simple_flows(n: usize) -> Pipeline {
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
        flows.push(FlowPlan {
            key: ObjectKey::namespaced(Kind::Flow, &ns, "web"),
            matcher: FlowMatcher {
                scope: Scope::Namespace(ns.clone()),
                rules: vec![Rule {
                    action: Action::Select,
                    selector: Selector {
                        labels: [("app".to_owned(), "web".to_owned())].into(),
                        ..Default::default()
                    },
                }],
            },
            filters: Vec::new(),
            outputs: vec![out],
        });
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
    }
}

fn render(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        let pipeline = simple_flows(n);
        c.bench_function(&format!("aggregator_{n}_flows"), |b| {
            b.iter(|| sluice::render::aggregator(black_box(&pipeline)))
        });
        c.bench_function(&format!("agent_{n}_flows"), |b| {
            b.iter(|| sluice::render::agent(black_box(&pipeline)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = render
}
criterion_main!(benches);
