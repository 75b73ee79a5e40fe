//! Rendering time for 1,000 and 10,000 simple flows (goal: 10,000 in at most 50 ms), and
//! resolving the load scenario's objects into a pipeline (the operator does it on every
//! reconcile, with the flows' rules kept from the last one: `_kept`; goal: 10,000 flows in
//! at most 100 ms), and building every Kubernetes object of
//! that pipeline (also on every reconcile; goal: 10,000 flows in at most 100 ms).
//! Run with `cargo bench -p sluice --bench render`.

mod common;

use std::hint::black_box;

use common::simple_flows;
use criterion::{Criterion, criterion_group, criterion_main};

fn render(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        let pipeline = simple_flows(n);
        c.bench_function(&format!("aggregator_{n}_flows"), |b| {
            b.iter(|| sluice::render::aggregator(black_box(&pipeline)))
        });
        c.bench_function(&format!("agent_{n}_flows"), |b| {
            b.iter(|| sluice::render::agent(black_box(&pipeline)))
        });
        let objects = load_objects(n);
        let inventory = objects.inventory();
        c.bench_function(&format!("resolve_{n}_flows"), |b| {
            b.iter(|| sluice::model::resolve(black_box(&inventory)))
        });
        // As the operator resolves after an edit: every flow's rules kept from the last time.
        let memo = sluice::model::FlowMemo::default();
        let mut remembering = objects.inventory();
        remembering.flow_memo = Some(&memo);
        c.bench_function(&format!("resolve_{n}_flows_kept"), |b| {
            b.iter(|| sluice::model::resolve(black_box(&remembering)))
        });
        let resolution = sluice::model::resolve(&inventory);
        let pipeline = &resolution.pipelines[0];
        let plan = sluice::pki::plan(&sluice::pki::PkiRequest {
            names: &pipeline.names,
            tls: &pipeline.spec.tls_or_default(),
            now: jiff::Timestamp::now(),
            existing: &Default::default(),
            rollout: sluice::pki::Rollout::Unobserved,
        })
        .expect("a PKI plan for a fresh Logging");
        c.bench_function(&format!("build_{n}_flows"), |b| {
            b.iter(|| sluice::build::objects(black_box(pipeline), &plan))
        });
    }
}

/// The load scenario's objects (`e2e` `sluice-load`): one Logging watching 10 namespaces and
/// `n` Flows spread over them, each with an exclude and a label-select rule and its own
/// null Output.
pub fn load_objects(n: usize) -> sluice::model::Objects {
    use serde_json::json;
    let namespaces: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
    let logging = serde_json::from_value(json!({
        "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
        "metadata": {"name": "main", "uid": "u-main"},
        "spec": {
            "controlNamespace": "logging",
            "watchNamespaces": namespaces,
            "tenantLimits": {"maxOutputsPerNamespace": 1000},
        },
    }))
    .expect("valid Logging");
    let mut inventory = sluice::model::Objects {
        loggings: vec![logging],
        ..Default::default()
    };
    for namespace in &namespaces {
        inventory
            .namespaces
            .push(k8s_openapi::api::core::v1::Namespace {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            });
    }
    for i in 0..n {
        let namespace = &namespaces[i % namespaces.len()];
        let name = format!("flow-{i:05}");
        let metadata =
            json!({"name": name, "namespace": namespace, "uid": format!("u-{i}"), "generation": 1});
        inventory.outputs.push(
            serde_json::from_value(json!({
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Output",
                "metadata": metadata, "spec": {"nullOutput": {}},
            }))
            .expect("valid Output"),
        );
        inventory.flows.push(
            serde_json::from_value(json!({
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow",
                "metadata": metadata,
                "spec": {
                    "match": [
                        {"exclude": {"labels": {"noise": "true"}}},
                        {"select": {"labels": {"app": "web"}}},
                    ],
                    "localOutputRefs": [name],
                },
            }))
            .expect("valid Flow"),
        );
    }
    inventory
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = render
}
criterion_main!(benches);
