//! Size limits: a simple flow costs at most 1 KB of configuration, and large configurations
//! are split into shards that each fit a Secret, without changing what fluentd reads.
//! Flows sending to one output share its instance: a flow adds a tag to a hand-off, not a
//! plugin.

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
                        labels: [("app".to_owned(), "web".to_owned())].into_iter().collect(),
                        ..Default::default()
                    },
                }],
            },
            vec![out],
        ));
    }
    pipeline(logging_spec(json!({})), flows, outputs)
}

/// `n` Flows spread over ten namespaces, each sending to its namespace's Elasticsearch
/// Output (one Output shared by many flows).
pub fn shared_flows(n: usize) -> Pipeline {
    let mut p = simple_flows(10);
    p.flows.clear();
    for i in 0..n {
        let ns = format!("team-{}", i % 10);
        p.flows.push(flow(
            ObjectKey::namespaced(Kind::Flow, &ns, &format!("flow-{i:05}")),
            FlowMatcher {
                scope: Scope::Namespace(ns.clone()),
                rules: Vec::new(),
            },
            vec![ObjectKey::namespaced(Kind::Output, &ns, "es")],
        ));
    }
    p
}

/// Whether each flow's tag reaches an output in the rendered configuration.
fn routed(p: &Pipeline, files: &AggregatorFiles) -> Vec<bool> {
    let root = parse_aggregator(files);
    p.flows
        .iter()
        .map(|flow| {
            let label = sluice::render::fluentd::flow_label(&flow.key);
            let tag = sluice::render::edge::route_tag(sluice::render::edge::flow_route(&label));
            !route_through(&root, &tag).is_empty()
        })
        .collect()
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

/// What a flow costs the aggregator besides its outputs and filters: its tag in its
/// hand-off and the comment naming it. The routing rules live in the agent's table, not here.
#[test]
fn a_flow_sharing_an_output_costs_the_aggregator_at_most_100_bytes() {
    let size = |n| total(&sluice::render::aggregator(&shared_flows(n)));
    let per_flow = (size(1_100) - size(100)) / 1_000;
    eprintln!("{per_flow} bytes per flow sharing an output");
    assert!(per_flow <= 100, "{per_flow} bytes per flow");
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
        labels: [("app".to_owned(), "web".to_owned())].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(router.routes(&record).len(), 1);
}

#[test]
fn ten_thousand_flows_fit_the_fixed_slots() {
    for p in [simple_flows(10_000), shared_flows(10_000)] {
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
        assert!(routed(&p, &files).iter().all(|r| *r));
    }
    // Shared: ten output plugins in all, whatever the number of flows, and one hand-off per
    // output and slot.
    let files = sluice::render::aggregator(&shared_flows(10_000));
    let root = parse_aggregator(&files);
    let plugins = root
        .walk()
        .into_iter()
        .filter(|e| e.param_text("@type").as_deref() == Some("elasticsearch"))
        .count();
    assert_eq!(plugins, 10);
    let handoffs = root
        .walk()
        .into_iter()
        .filter(|e| e.name == "match" && e.param_text("@type").as_deref() == Some("relabel"))
        // The catch-alls of routes a revision does not dispatch lead to the error output.
        .filter(|e| {
            e.param_text("@label").as_deref() != Some(sluice::render::fluentd::ERROR_OUTPUT_LABEL)
        })
        .count();
    assert!(handoffs <= 32 * 10 + 32, "{handoffs} relabels");
}

/// Stable assignment: a flow's slot depends on its key alone, so adding a flow that sends to
/// an output already in use rewrites one slot, and the main file not at all; a flow with an
/// output of its own also writes that output's instance, in the instance's slot.
#[test]
fn adding_a_flow_rewrites_only_its_own_slot() {
    let changed = |before: &AggregatorFiles, after: &AggregatorFiles| -> BTreeSet<String> {
        before
            .slots
            .iter()
            .zip(&after.slots)
            .filter(|(b, a)| b != a)
            .map(|(_, a)| a.name.clone())
            .collect()
    };
    let before = sluice::render::aggregator(&shared_flows(200));
    let after = sluice::render::aggregator(&shared_flows(201));
    assert_eq!(before.main, after.main);
    let added = &shared_flows(201).flows[200];
    assert_eq!(
        changed(&before, &after),
        BTreeSet::from([sluice::render::fluentd::slot_file(config_slot(&added.key))])
    );

    let p = simple_flows(201);
    let before = sluice::render::aggregator(&simple_flows(200));
    let after = sluice::render::aggregator(&p);
    assert_eq!(before.main, after.main);
    let instances = sluice::model::instances::OutputInstances::of(&p);
    let instance = &instances.instances[instances.of_flow(&p.flows[200])[0]];
    let label = sluice::render::fluentd::instance_label(instance);
    assert_eq!(
        changed(&before, &after),
        BTreeSet::from([
            sluice::render::fluentd::slot_file(config_slot(&p.flows[200].key)),
            sluice::render::fluentd::slot_file(sluice::render::fluentd::instance_slot(&label)),
        ])
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
    let p = shared_flows(2_000);
    let files = aggregator_with_budget(&p, 4 * 1024);
    assert!(!files.overflowed.is_empty());
    let routed = routed(&p, &files);
    for (flow, routed) in p.flows.iter().zip(&routed) {
        assert_eq!(
            *routed,
            !files.overflowed.contains(&flow.key),
            "{:?}",
            flow.key
        );
    }
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

/// A tag no flow of this configuration has (an agent still routing by an older table) reaches
/// no flow, only the error output, whether its slot holds flows or not.
#[test]
fn tags_of_unknown_flows_reach_only_the_error_output() {
    let mut p = shared_flows(100);
    let es = ObjectKey::namespaced(Kind::Output, "team-0", "es");
    assert!(p.outputs.contains_key(&es));
    let to_error = |p: &Pipeline, tag: &str| {
        let root = parse_aggregator(&sluice::render::aggregator(p));
        let deliveries = route_through(&root, tag);
        assert!(
            deliveries
                .iter()
                .all(|d| d.output.starts_with("sluice-error-")),
            "{tag}: {deliveries:?}"
        );
        !deliveries.is_empty()
    };
    let unknown = [
        "sluice.flow-000000000000",
        "sluice.flow-7fffffffffff",
        "sluice.flow-ffffffffffff",
        "sluice.flow-3a0000000000",
    ];
    for tag in unknown {
        assert!(!to_error(&p, tag), "no error output: dropped");
    }
    p.error_output = Some(es);
    for tag in unknown {
        assert!(to_error(&p, tag), "{tag} reaches the error output");
    }
    let root = parse_aggregator(&sluice::render::aggregator(&p));
    assert_eq!(route_through(&root, "kube.var.log"), Vec::new());
}
