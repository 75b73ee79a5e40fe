//! Size limits: a simple flow costs at most 1 KB of configuration, and large configurations
//! are split into shards that each fit a Secret, without changing what fluentd reads.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use sluice::model::{Kind, ObjectKey, Pipeline};
use sluice::render::fluentd::{AggregatorFiles, SLOT_BUDGET, aggregator_with_budget, config_slot};
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

fn total(files: &AggregatorFiles) -> usize {
    files.all().map(|f| f.content.len()).sum()
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

/// The agent's table for 10,000 flows fits its slots, a few tens of KB each (what one
/// select-label edit rewrites), and loads in LuaJIT.
#[test]
fn ten_thousand_flows_fit_the_agents_routing_table() {
    let p = simple_flows(10_000);
    let table = sluice::render::agent_routes(&p);
    assert!(table.overflowed.is_empty());
    let total: usize = table.files().map(|f| f.content.len()).sum();
    let largest = table.slots.iter().map(|f| f.content.len()).max().unwrap();
    eprintln!("{total} bytes of routing table, largest slot {largest}");
    assert!(largest < 40 * 1024, "{largest} bytes");
    let router = EdgeRouter::new(&p);
    let record = sluice::routing::Record {
        namespace: "team-9999".into(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(router.routes(&record).len(), 1);
}

#[test]
fn ten_thousand_flows_fit_the_fixed_slots() {
    let p = simple_flows(10_000);
    let files = sluice::render::aggregator(&p);
    assert_eq!(files.slots.len(), sluice::layout::AGGREGATOR_CONFIG_SLOTS);
    assert!(files.overflowed.is_empty());
    for slot in &files.slots {
        assert!(
            slot.content.len() <= SLOT_BUDGET,
            "{} holds {} bytes",
            slot.name,
            slot.content.len()
        );
    }
    let root = parse_aggregator(&files);
    assert_eq!(dispatch(&root).len(), 10_000);
    let labels: BTreeSet<&str> = root
        .children
        .iter()
        .filter(|e| e.name == "label" && e.arg.starts_with("@flow-"))
        .map(|e| e.arg.as_str())
        .collect();
    assert_eq!(labels.len(), 10_000);
}

/// Stable assignment: a flow's slot depends on its key alone, so adding one flow to many
/// rewrites one slot, and the main file not at all.
#[test]
fn adding_a_flow_rewrites_only_its_own_slot() {
    let before = sluice::render::aggregator(&simple_flows(200));
    let after = sluice::render::aggregator(&simple_flows(201));
    assert_eq!(before.main, after.main);
    let changed: Vec<&str> = before
        .slots
        .iter()
        .zip(&after.slots)
        .filter(|(b, a)| b != a)
        .map(|(_, a)| a.name.as_str())
        .collect();
    let added = &simple_flows(201).flows[200];
    assert_eq!(
        changed,
        [sluice::render::fluentd::slot_file(config_slot(&added.key))]
    );
}

#[test]
fn slots_spread_flows_evenly_enough() {
    let p = simple_flows(3_200);
    let mut counts = vec![0usize; sluice::layout::AGGREGATOR_CONFIG_SLOTS];
    for flow in &p.flows {
        counts[config_slot(&flow.key) - 1] += 1;
    }
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*min > 50 && *max < 150, "{counts:?}");
}

/// A full slot leaves out its last flows by key, and only them; the rest still renders.
#[test]
fn a_full_slot_leaves_out_only_its_last_flows() {
    let p = simple_flows(400);
    let files = aggregator_with_budget(&p, 4 * 1024);
    assert!(!files.overflowed.is_empty());
    let root = parse_aggregator(&files);
    let routed = dispatch(&root).len();
    assert_eq!(routed + files.overflowed.len(), 400);
    for left_out in &files.overflowed {
        let slot = config_slot(left_out);
        // Every flow of the same slot that sorts after a left-out flow is left out too.
        for flow in p
            .flows
            .iter()
            .filter(|f| config_slot(&f.key) == slot && f.key > *left_out)
        {
            assert!(files.overflowed.contains(&flow.key), "{:?}", flow.key);
        }
    }
}

/// The routing table's size guard: a slot that would exceed its budget leaves out its last
/// flows by key (reported as overflowed, so the controller degrades them with
/// `ConfigSlotFull`), never writes a Secret the API server refuses, and keeps every other flow.
#[test]
fn a_full_routing_slot_leaves_out_its_last_flows_only() {
    let p = simple_flows(400);
    let budget = 400;
    let routes = sluice::render::edge::routes_table_with_budget(&p, budget);
    assert!(!routes.overflowed.is_empty());
    assert!(routes.overflowed.len() < p.flows.len());
    for flow in &p.flows {
        let route =
            sluice::render::edge::flow_route(&sluice::render::fluentd::flow_label(&flow.key))
                .to_owned();
        let slot = &routes.slots[sluice::render::fluentd::config_slot(&flow.key) - 1];
        assert_eq!(
            slot.content.contains(&route),
            !routes.overflowed.contains(&flow.key),
            "{route}"
        );
    }
    // In each slot the flows left out come after every flow kept, by key.
    for left_out in &routes.overflowed {
        let slot = sluice::render::fluentd::config_slot(left_out);
        assert!(p.flows.iter().all(|f| {
            sluice::render::fluentd::config_slot(&f.key) != slot
                || routes.overflowed.contains(&f.key)
                || f.key < *left_out
        }));
    }
    for slot in &routes.slots {
        // The budget counts the flows; the revision line and the braces come on top.
        assert!(slot.content.len() < budget + 100, "{}", slot.content.len());
    }
}
