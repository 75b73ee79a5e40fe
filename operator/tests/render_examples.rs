//! Golden agent and aggregator configs of `examples/` (through `input::load` and
//! `model::resolve`), plus what `sluice explain` says about typical records there.

mod support;

use std::path::PathBuf;

use sluice::cli::input;
use sluice::model::{self, Pipeline};
use sluice::routing::{Record, Routed};

fn examples() -> Vec<Pipeline> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = input::load(&[dir]).expect("examples load");
    model::resolve(&loaded.objects.inventory()).pipelines
}

#[test]
fn examples_agent_config() {
    for p in examples() {
        let mut files = sluice::render::agent(&p);
        let routes = sluice::render::agent_routes(&p);
        // Empty slots say nothing about the examples.
        files.extend(
            routes
                .files()
                .filter(|f| f.content.contains("flow-") || f.name == routes.index.name)
                .cloned(),
        );
        for file in files {
            insta::assert_snapshot!(
                format!(
                    "examples_{}_agent_{}",
                    p.logging,
                    support::stable_name(&file.name)
                ),
                file.content
            );
        }
    }
}

#[test]
fn examples_aggregator_config() {
    for p in examples() {
        let shards = sluice::render::aggregator(&p);
        for (name, content) in support::aggregator_snapshots(&shards) {
            insta::assert_snapshot!(format!("examples_{}_aggregator_{name}", p.logging), content);
        }
        // Every flow of the examples (and the default flow) reaches one output per
        // instance it sends to.
        let root = support::parse_aggregator(&shards);
        let instances = sluice::model::instances::OutputInstances::of(&p);
        let routes = p
            .flows
            .iter()
            .map(|flow| {
                let label = sluice::render::fluentd::flow_label(&flow.key);
                (flow, sluice::render::edge::flow_route(&label).to_owned())
            })
            .chain(
                p.default_flow
                    .iter()
                    .map(|flow| (flow, sluice::render::edge::DEFAULT_ROUTE.to_owned())),
            );
        for (flow, route) in routes {
            let reached = support::route_through(&root, &sluice::render::edge::route_tag(&route));
            assert_eq!(reached.len(), instances.of_flow(flow).len(), "{}", flow.key);
            assert!(!reached.is_empty(), "{}", flow.key);
        }
    }
}

#[test]
fn explain_over_the_examples() {
    let pipelines = examples();
    let mut text = String::new();
    for p in &pipelines {
        for flow in &p.flows {
            if let sluice::routing::Scope::Namespace(ns) = &flow.matcher.scope {
                let record = Record {
                    namespace: ns.clone(),
                    ..Default::default()
                };
                let routed = sluice::routing::route(
                    p.flows.iter().map(|f| &*f.matcher),
                    &p.watched,
                    &record,
                );
                assert_ne!(routed, Routed::Unwatched);
            }
        }
    }
    for namespace in ["payments", "storefront", "kube-system"] {
        let record = Record {
            namespace: namespace.to_owned(),
            labels: [("app".to_owned(), "api".to_owned())].into_iter().collect(),
            container: "api".to_owned(),
            host: "node-1".to_owned(),
            ..Default::default()
        };
        text.push_str(&sluice::cli::explain::explain(&pipelines, &record));
        text.push('\n');
    }
    insta::assert_snapshot!("examples_explain", text);
}
