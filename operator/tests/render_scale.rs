//! Size limits: a simple flow costs at most 1 KB of configuration, and large configurations
//! are split into shards that each fit a Secret, without changing what fluentd reads.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use sluice::model::{Kind, ObjectKey, Pipeline};
use sluice::render::fluentd::{SHARD_BUDGET, aggregator_with_budget};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector};
use support::*;

/// `n` teams, each with a Flow selecting `app=web` to its own Elasticsearch Output.
pub fn simple_flows(n: usize) -> Pipeline {
    let mut flows = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..n {
        let ns = format!("team-{i}");
        let out = ObjectKey::namespaced(Kind::Output, &ns, "es");
        outputs.push(output_plan(
            out.clone(),
            output_spec(
                json!({"elasticsearch": {"hosts": ["https://es.logging:9200"], "indexName": ns}}),
            ),
        ));
        flows.push(flow(
            ObjectKey::namespaced(Kind::Flow, &ns, "web"),
            FlowMatcher {
                scope: Scope::Namespace(ns.clone()),
                rules: vec![Rule {
                    action: Action::Select,
                    selector: Selector {
                        labels: [("app".to_owned(), "web".to_owned())].into(),
                        ..Default::default()
                    },
                }],
            },
            vec![out],
        ));
    }
    pipeline(logging_spec(json!({})), flows, outputs)
}

fn total(shards: &[Vec<sluice::render::ConfigFile>]) -> usize {
    shards.iter().flatten().map(|f| f.content.len()).sum()
}

#[test]
fn simple_flow_costs_at_most_one_kilobyte() {
    let base = total(&sluice::render::aggregator(&simple_flows(0)));
    let hundred = total(&sluice::render::aggregator(&simple_flows(100)));
    let per_flow = (hundred - base) / 100;
    eprintln!("{per_flow} bytes per simple flow");
    assert!(per_flow <= 1024, "{per_flow} bytes per simple flow");
}

/// What a flow costs the aggregator besides its outputs: its dispatch `<match>` and its
/// `<label>`. The routing rules live in the agent's table, not here.
#[test]
fn a_flow_costs_the_aggregator_at_most_300_bytes_besides_its_outputs() {
    let without_outputs = |n| {
        let mut p = simple_flows(n);
        for flow in &mut p.flows {
            flow.outputs.clear();
        }
        total(&sluice::render::aggregator(&p))
    };
    let per_flow = (without_outputs(100) - without_outputs(0)) / 100;
    eprintln!("{per_flow} bytes per flow besides outputs");
    assert!(per_flow <= 300, "{per_flow} bytes per flow");
}

/// The agent's table for 10,000 flows fits one Secret and loads in LuaJIT.
#[test]
fn ten_thousand_flows_fit_the_agents_routing_table() {
    let p = simple_flows(10_000);
    let table = sluice::render::agent_routes(&p);
    eprintln!("{} bytes of routing table", table.content.len());
    assert!(
        table.content.len() < 1024 * 1024,
        "{} bytes",
        table.content.len()
    );
    let router = EdgeRouter::new(&p);
    let record = sluice::routing::Record {
        namespace: "team-9999".into(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(router.routes(&record).len(), 1);
}

#[test]
fn ten_thousand_flows_are_sharded_into_secrets() {
    let p = simple_flows(10_000);
    let shards = sluice::render::aggregator(&p);
    assert!(shards.len() > 1, "expected several shards");
    for (index, shard) in shards.iter().enumerate() {
        let size: usize = shard.iter().map(|f| f.content.len()).sum();
        assert!(size <= SHARD_BUDGET, "shard {index} holds {size} bytes");
    }
    let root = parse_aggregator(&shards);
    assert_eq!(dispatch(&root).len(), 10_000);
    let labels: BTreeSet<&str> = root
        .children
        .iter()
        .filter(|e| e.name == "label" && e.arg.starts_with("@flow-"))
        .map(|e| e.arg.as_str())
        .collect();
    assert_eq!(labels.len(), 10_000);
}

#[test]
fn sharding_does_not_change_what_fluentd_reads() {
    let mut p = simple_flows(40);
    p.default_flow = Some(flow(
        ObjectKey::cluster(Kind::Logging, "main"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![],
        },
        vec![],
    ));
    let whole = aggregator_with_budget(&p, usize::MAX);
    let split = aggregator_with_budget(&p, 24 * 1024);
    assert_eq!(whole.len(), 1);
    assert!(split.len() >= 3, "{} shards", split.len());
    assert_eq!(parse_aggregator(&whole), parse_aggregator(&split));
    // Shard 0 holds the main file and the verifier, every other shard routes and flows.
    assert_eq!(split[0][0].name, sluice::layout::AGGREGATOR_CONFIG_FILE);
    for shard in &split[1..] {
        let names: Vec<&str> = shard.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["routes.conf", "flows.conf"]);
    }
}
