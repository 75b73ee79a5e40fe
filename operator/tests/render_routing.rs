//! The rendered configuration routes exactly as the routing contract says: for generated
//! flows and records, the agent's Lua filter running under a real LuaJIT, the agent's
//! rewrite_tag rule and the aggregator's dispatch together deliver a record to exactly the
//! flows `routing::route` names (and the agent's tail globs never prune one of them).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice::model::instances::OutputInstances;
use sluice::model::{Kind, ObjectKey};
use sluice::render::edge;
use sluice::render::fluentd::{flow_label, instance_label, plugin_id};
use sluice::routing::{Action, FlowMatcher, Record, Routed, Rule, Scope, Selector, Watched};
use support::*;

const NAMESPACES: [&str; 4] = ["a", "b", "c", "d"];
const CONTAINERS: [&str; 3] = ["web", "db", "web-sidecar"];

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = BTreeSet<String>> {
    proptest::sample::subsequence(pool.to_vec(), 0..=2)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        prop_oneof![
            Just("app".to_owned()),
            Just("app.kubernetes.io/name".to_owned())
        ],
        prop_oneof![Just("x".to_owned()), Just("y".to_owned())],
        0..=2,
    )
}

fn selector() -> impl Strategy<Value = Selector> {
    (
        subset(&NAMESPACES[..3]),
        labels(),
        labels(),
        subset(&["n1", "n2"]),
        subset(&CONTAINERS),
    )
        .prop_map(
            |(namespaces, namespace_labels, labels, hosts, container_names)| Selector {
                namespaces,
                namespace_labels: namespace_labels.into_iter().collect(),
                labels: labels.into_iter().collect(),
                hosts,
                container_names,
            },
        )
}

fn matcher() -> impl Strategy<Value = FlowMatcher> {
    (
        prop_oneof![
            Just(Scope::Cluster),
            proptest::sample::select(&NAMESPACES[..3])
                .prop_map(|ns| Scope::Namespace(ns.to_owned()))
        ],
        proptest::collection::vec(
            (any::<bool>(), selector()).prop_map(|(select, selector)| Rule {
                action: if select {
                    Action::Select
                } else {
                    Action::Exclude
                },
                selector,
            }),
            0..4,
        ),
    )
        .prop_map(|(scope, rules)| FlowMatcher { scope, rules })
}

fn record() -> impl Strategy<Value = Record> {
    (
        proptest::sample::select(&NAMESPACES[..]),
        labels(),
        labels(),
        proptest::sample::select(&["n1", "n2", "n3"][..]),
        proptest::sample::select(&CONTAINERS[..]),
    )
        .prop_map(|(ns, namespace_labels, labels, host, container)| Record {
            namespace: ns.to_owned(),
            namespace_labels,
            labels,
            host: host.to_owned(),
            container: container.to_owned(),
        })
}

fn watched_strategy() -> impl Strategy<Value = Watched> {
    prop_oneof![
        Just(Watched::All),
        subset(&NAMESPACES[..]).prop_map(Watched::Only)
    ]
}

/// Flows on the `matchers`, with filters and outputs varied by their index: every flow
/// sends to ClusterOutput `out`; a namespaced flow also to its namespace's Output `local`
/// (index even) and to `same` (index a multiple of 3), an Output equal to `local`, so they
/// share one instance; odd flows have a filter of their own. One global filter.
fn build(matchers: &[FlowMatcher], default: bool, watched: Watched) -> sluice::model::Pipeline {
    let out = cluster_output_key("out");
    let mut outputs = vec![output_plan(
        out.clone(),
        output_spec(serde_json::json!({"stdout": {}})),
    )];
    let grep: sluice::api::Filter = serde_json::from_value(
        serde_json::json!({"grep": {"exclude": [{"key": "log", "pattern": "debug"}]}}),
    )
    .unwrap();
    let flows = matchers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (key, mut refs) = match &m.scope {
                Scope::Namespace(ns) => {
                    let mut refs = vec![out.clone()];
                    for (name, wanted) in [("local", i % 2 == 0), ("same", i % 3 == 0)] {
                        let local = ObjectKey::namespaced(Kind::Output, ns, name);
                        if wanted {
                            refs.push(local.clone());
                        }
                        if !outputs.iter().any(|o| o.key == local) {
                            outputs.push(output_plan(
                                local,
                                output_spec(serde_json::json!({"nullOutput": {}})),
                            ));
                        }
                    }
                    (
                        ObjectKey::namespaced(Kind::Flow, ns, &format!("f{i}")),
                        refs,
                    )
                }
                Scope::Cluster => (
                    ObjectKey::cluster(Kind::ClusterFlow, &format!("f{i}")),
                    vec![out.clone()],
                ),
            };
            refs.dedup();
            let mut plan = flow(key, m.clone(), refs);
            if i % 2 == 1 {
                std::sync::Arc::make_mut(&mut plan.filters).push(grep.clone());
            }
            plan
        })
        .collect();
    let mut p = pipeline(
        logging_spec(serde_json::json!({"globalFilters": [{"dedot": {}}]})),
        flows,
        outputs,
    );
    p.watched = watched;
    if default {
        p.default_flow = Some(flow(
            ObjectKey::cluster(Kind::Logging, "main"),
            FlowMatcher {
                scope: Scope::Cluster,
                rules: vec![],
            },
            vec![out],
        ));
    }
    p
}

/// The rewrite_tag rule of the rendered agent: (record key, regex, tag template).
fn rewrite_rule(p: &sluice::model::Pipeline) -> (String, regex::Regex, String) {
    let files = sluice::render::agent(p);
    let yaml: serde_json::Value = serde_saphyr::from_str(&files[0].content).unwrap();
    let filters = yaml["pipeline"]["filters"].as_array().unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    // The router runs after the metadata is attached and before the re-tagging.
    assert_eq!(
        names,
        ["kubernetes", "lua", "rewrite_tag", "record_modifier"]
    );
    let rule = filters[2]["rule"].as_str().unwrap();
    let parts: Vec<&str> = rule.split(' ').collect();
    assert_eq!(parts.len(), 4, "{rule}");
    assert_eq!(parts[3], "false", "the untagged original is dropped");
    let key = parts[0].strip_prefix('$').unwrap().to_owned();
    (
        key,
        regex::Regex::new(parts[1]).unwrap(),
        parts[2].to_owned(),
    )
}

/// What the rendered agent and aggregator do with the record: the Lua filter's routes,
/// turned into tags by the rewrite_tag rule, routed through the aggregator's configuration
/// as fluentd routes them, mapped back to the flows whose tags they are. Each copy must reach
/// exactly its flow's output instances (the namespace's own, never another's), once each,
/// after exactly the global filters and its flow's own.
fn rendered_route(
    p: &sluice::model::Pipeline,
    router: &support::EdgeRouter,
    record: &Record,
) -> Option<Routed> {
    let routes = router.routes(record);
    let (key, pattern, template) = rewrite_rule(p);
    assert_eq!(key, edge::ROUTE_KEY);
    let root = parse_aggregator(&sluice::render::aggregator(p));
    let instances = OutputInstances::of(p);
    let mut takers = Vec::new();
    let mut default = false;
    for route in &routes {
        let captures = pattern
            .captures(route)
            .expect("rewrite_tag accepts every route");
        let tag = template.replace("$1", &captures[1]);
        let flow = if route == edge::DEFAULT_ROUTE {
            default = true;
            p.default_flow
                .as_ref()
                .expect("a default route needs a default flow")
        } else {
            let index = p
                .flows
                .iter()
                .position(|f| edge::flow_route(&flow_label(&f.key)) == route)
                .expect("the route names a flow");
            takers.push(index);
            &p.flows[index]
        };
        let mut expected: Vec<String> = instances
            .of_flow(flow)
            .into_iter()
            .map(|i| plugin_id(&instance_label(&instances.instances[i])).to_owned())
            .collect();
        expected.sort();
        let deliveries = route_through(&root, &tag);
        let reached: Vec<String> = deliveries.iter().map(|d| d.output.clone()).collect();
        assert_eq!(
            reached, expected,
            "{tag} reaches its flow's instances, once each"
        );
        for delivery in &deliveries {
            let global = p.spec.global_filters.len();
            assert_eq!(
                delivery.filters.len(),
                global + flow.filters.len(),
                "{tag}: {:?}",
                delivery.filters
            );
            let own = if route == edge::DEFAULT_ROUTE {
                "**"
            } else {
                tag.as_str()
            };
            for (n, filter) in delivery.filters.iter().enumerate() {
                let arg = if n < global { "**" } else { own };
                assert!(
                    filter.starts_with(&format!("<filter {arg}>")),
                    "{tag} passes only its own filters: {filter}"
                );
            }
        }
    }
    takers.sort();
    assert!(
        takers.windows(2).all(|w| w[0] != w[1]),
        "one copy per flow: {takers:?}"
    );
    match (takers.is_empty(), default) {
        (true, false) => None,
        (true, true) => Some(Routed::Default),
        (false, false) => Some(Routed::Flows(takers)),
        (false, true) => panic!("the default flow took a record a flow took"),
    }
}

/// Whether the agent reads the log file of such a record.
fn agent_tails(p: &sluice::model::Pipeline, record: &Record) -> bool {
    let files = sluice::render::agent(p);
    let yaml: serde_json::Value = serde_saphyr::from_str(&files[0].content).unwrap();
    let Some(tail) = yaml["pipeline"]["inputs"]
        .as_array()
        .and_then(|inputs| inputs.iter().find(|i| i["name"] == "tail"))
    else {
        return false;
    };
    let file = format!(
        "/var/log/containers/pod-1.x_{}_{}-{}.log",
        record.namespace,
        record.container,
        "0123456789abcdef".repeat(4)
    );
    let paths = tail["path"].as_str().unwrap();
    let excluded = tail["exclude_path"].as_str().unwrap_or("");
    paths.split(',').any(|g| glob_matches(g, &file))
        && !excluded
            .split(',')
            .filter(|g| !g.is_empty())
            .any(|g| glob_matches(g, &file))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn edge_routing_agrees_with_contract(
        matchers in proptest::collection::vec(matcher(), 0..5),
        default in any::<bool>(),
        watched in watched_strategy(),
        records in proptest::collection::vec(record(), 1..6),
    ) {
        let p = build(&matchers, default, watched);
        let router = support::EdgeRouter::new(&p);
        for record in &records {
            let expected = sluice::routing::route(p.flows.iter().map(|f| &*f.matcher), &p.watched, record);
            // What leaves the node: nothing for unwatched records and for records only a
            // missing default flow would take.
            let leaves = match &expected {
                Routed::Unwatched => None,
                Routed::Default if p.default_flow.is_none() => None,
                other => Some(other.clone()),
            };
            prop_assert_eq!(&rendered_route(&p, &router, record), &leaves, "record {:?}", record);
            let tailed = agent_tails(&p, record);
            if leaves.is_some() {
                prop_assert!(tailed, "agent prunes a record that {:?} receives: {:?}", expected, record);
            }
            if expected == Routed::Unwatched {
                prop_assert!(!tailed, "agent reads an unwatched namespace: {:?}", record);
            }
        }
    }
}

#[test]
fn exclude_only_flow_takes_everything_else() {
    let m = FlowMatcher {
        scope: Scope::Cluster,
        rules: vec![Rule {
            action: Action::Exclude,
            selector: Selector {
                container_names: BTreeSet::from(["db".to_owned()]),
                ..Default::default()
            },
        }],
    };
    let p = build(&[m], false, Watched::All);
    let router = support::EdgeRouter::new(&p);
    let web = Record {
        namespace: "a".into(),
        container: "web".into(),
        ..Default::default()
    };
    let db = Record {
        container: "db".into(),
        ..web.clone()
    };
    assert_eq!(
        rendered_route(&p, &router, &web),
        Some(Routed::Flows(vec![0]))
    );
    // Nobody takes `db`: dropped on the node.
    assert_eq!(rendered_route(&p, &router, &db), None);
    // No flow can take `db` and there is no default flow: the agent does not even read it.
    assert!(agent_tails(&p, &web));
    assert!(!agent_tails(&p, &db));
}

#[test]
fn a_record_two_flows_take_leaves_as_two_tagged_copies() {
    let all = FlowMatcher {
        scope: Scope::Cluster,
        rules: vec![],
    };
    let local = FlowMatcher {
        scope: Scope::Namespace("a".into()),
        rules: vec![],
    };
    let p = build(&[all, local], true, Watched::All);
    let router = support::EdgeRouter::new(&p);
    let record = Record {
        namespace: "a".into(),
        ..Default::default()
    };
    let routes = router.routes(&record);
    assert_eq!(routes.len(), 2);
    assert_eq!(
        rendered_route(&p, &router, &record),
        Some(Routed::Flows(vec![0, 1]))
    );
}

fn one_flow_table(container: &str) -> sluice::render::edge::AgentRoutes {
    let m = FlowMatcher {
        scope: Scope::Cluster,
        rules: vec![Rule {
            action: Action::Select,
            selector: Selector {
                container_names: BTreeSet::from([container.to_owned()]),
                ..Default::default()
            },
        }],
    };
    sluice::render::agent_routes(&build(&[m], false, Watched::All))
}

/// The one slot that holds a flow of `routes` (the others are empty).
fn used_slot(routes: &sluice::render::edge::AgentRoutes) -> &sluice::render::ConfigFile {
    routes
        .slots
        .iter()
        .find(|slot| slot.content.contains("flow-"))
        .expect("a slot holds the flow")
}

#[test]
fn the_filter_rereads_a_changed_table_every_few_seconds() {
    let router = support::EdgeRouter::with_routes(&one_flow_table("web")).unwrap();
    let web = Record {
        namespace: "a".into(),
        container: "web".into(),
        ..Default::default()
    };
    let db = Record {
        container: "db".into(),
        ..web.clone()
    };
    assert_eq!(router.routes(&web).len(), 1);
    assert!(router.routes(&db).is_empty());

    let changed = one_flow_table("db");
    // The kubelet updates the one Secret whose slot changed; nothing else is rewritten.
    let slot = used_slot(&changed);
    router.write_file(&slot.name, &slot.content);
    // Within the check interval the loaded table still holds, decisions kept per container
    // included.
    router.set_time(4);
    assert_eq!(router.routes(&web).len(), 1);
    router.set_time(5);
    assert!(router.routes(&web).is_empty());
    assert_eq!(router.routes(&db).len(), 1);

    // A broken slot is reported and the last good one kept.
    router.write_file(&slot.name, "-- sluice-routes-slot broken\nreturn {");
    router.set_time(10);
    assert_eq!(router.routes(&db).len(), 1);
    // So is one that tries to reach outside its empty environment.
    router.write_file(
        &slot.name,
        "-- sluice-routes-slot hostile\nreturn os.exit(1)",
    );
    router.set_time(15);
    assert_eq!(router.routes(&db).len(), 1);
    // And one that is not shaped like a routing slot, or an index that is not one.
    router.write_file(&slot.name, "-- sluice-routes-slot odd\nreturn {w=true}");
    router.write_file(
        sluice::layout::AGENT_ROUTES_FILE,
        "-- sluice-routes odd\nreturn {c={}}",
    );
    router.set_time(20);
    assert_eq!(router.routes(&db).len(), 1);
    // A slot that disappeared keeps its last version too.
    std::fs::remove_file(router.dir.path().join(&slot.name)).unwrap();
    router.set_time(25);
    assert_eq!(router.routes(&db).len(), 1);
}

#[test]
fn the_filter_refuses_to_start_without_a_complete_table() {
    let error = support::EdgeRouter::with_files(&[])
        .err()
        .expect("start-up fails");
    assert!(error.to_string().contains("no routing table"), "{error}");
    // An index without its slots is not a table either.
    let routes = one_flow_table("web");
    let index = [(routes.index.name.clone(), routes.index.content.clone())];
    let error = support::EdgeRouter::with_files(&index)
        .err()
        .expect("start-up fails");
    assert!(error.to_string().contains("slot-01.lua"), "{error}");
}

#[test]
fn the_agent_runs_the_rendered_script() {
    let p = build(&[], true, Watched::All);
    let files = sluice::render::agent(&p);
    let script = files
        .iter()
        .find(|f| {
            f.name
                .ends_with(&format!("-{}", sluice::layout::AGENT_ROUTER_SCRIPT))
        })
        .expect("the script ships with the agent config");
    assert_eq!(
        script.content,
        edge::filter_script(sluice::layout::AGENT_ROUTES_DIR)
    );
    let yaml: serde_json::Value = serde_saphyr::from_str(&files[0].content).unwrap();
    let lua = &yaml["pipeline"]["filters"][1];
    // The bundle's shared files are installed under their content-addressed names.
    assert_eq!(
        lua["script"],
        format!("{}/{}", sluice::layout::RELOAD_SHARED_DIR, script.name).as_str()
    );
    assert_eq!(lua["call"], edge::LUA_FUNCTION);
    // Only routed records are forwarded, and without the route key.
    assert_eq!(yaml["pipeline"]["outputs"][0]["match"], "sluice.*");
    assert_eq!(yaml["pipeline"]["filters"][3]["match"], "sluice.*");
    assert_eq!(
        yaml["pipeline"]["filters"][3]["remove_key"],
        edge::ROUTE_KEY
    );
}

/// The routes the contract gives `record` under pipeline `p`, as the filter names them.
fn expected_routes(p: &sluice::model::Pipeline, record: &Record) -> BTreeSet<String> {
    let routed = sluice::routing::route(p.flows.iter().map(|f| &*f.matcher), &p.watched, record);
    match routed {
        Routed::Unwatched => BTreeSet::new(),
        Routed::Default if p.default_flow.is_none() => BTreeSet::new(),
        Routed::Default => BTreeSet::from([edge::DEFAULT_ROUTE.to_owned()]),
        Routed::Flows(indices) => indices
            .into_iter()
            .map(|i| edge::flow_route(&flow_label(&p.flows[i].key)).to_owned())
            .collect(),
    }
}

fn tag(container_instance: usize) -> String {
    format!("kube.ns.pod-{container_instance}.app.{}", "0".repeat(64))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The filter decides once per container and reuses the decision: records arriving under
    /// the same tag with other labels (a pod relabelled), another namespace, host or
    /// container, and a table that changes between them, are routed exactly as the contract
    /// says, every time.
    #[test]
    fn cached_decisions_agree_with_contract(
        before in proptest::collection::vec(matcher(), 0..5),
        after in proptest::collection::vec(matcher(), 0..5),
        default in any::<bool>(),
        watched in watched_strategy(),
        steps in proptest::collection::vec((0..3usize, record(), 0..4u8), 1..24),
    ) {
        let tables = [build(&before, default, watched.clone()), build(&after, !default, watched)];
        let router = support::EdgeRouter::new(&tables[0]);
        let mut current = 0;
        let mut now = 0;
        for (instance, record, action) in &steps {
            // One step in four swaps the table; the filter sees it at its next check.
            if *action == 0 {
                current = 1 - current;
                router.write_routes(&sluice::render::agent_routes(&tables[current]));
                now += 5;
                router.set_time(now);
            }
            let routes: BTreeSet<String> =
                router.routes_tagged(&tag(*instance), record).into_iter().collect();
            prop_assert_eq!(
                &routes,
                &expected_routes(&tables[current], record),
                "record {:?} under {} with table {}", record, tag(*instance), current
            );
        }
    }

    /// The kubelet updates the routing Secrets one at a time, so a pod may see some slots
    /// new and the rest old. Each flow lives in one slot, so every flow is then routed by
    /// one version of itself: as if the flows of the new slots had been edited and no
    /// others. Flows keep their names across the edit (f0, f1, ... in both versions).
    #[test]
    fn a_table_half_updated_routes_each_flow_by_one_version(
        before in proptest::collection::vec(matcher(), 1..6),
        after in proptest::collection::vec(matcher(), 1..6),
        default in any::<bool>(),
        updated in proptest::collection::btree_set(1..=sluice::layout::AGGREGATOR_CONFIG_SLOTS, 0..32),
        records in proptest::collection::vec(record(), 1..6),
    ) {
        let old = build(&before, default, Watched::All);
        let new = build(&after, default, Watched::All);
        let router = support::EdgeRouter::new(&old);
        let routes = sluice::render::agent_routes(&new);
        for slot in &updated {
            let file = &routes.slots[slot - 1];
            router.write_file(&file.name, &file.content);
        }
        router.set_time(5);
        let slot_of = |f: &sluice::model::FlowPlan| sluice::render::fluentd::config_slot(&f.key);
        let mut mixed = old.clone();
        mixed.flows = old
            .flows
            .iter()
            .filter(|f| !updated.contains(&slot_of(f)))
            .chain(new.flows.iter().filter(|f| updated.contains(&slot_of(f))))
            .cloned()
            .collect();
        for record in &records {
            let got: BTreeSet<String> = router.routes(record).into_iter().collect();
            prop_assert_eq!(&got, &expected_routes(&mixed, record), "record {:?}", record);
        }
    }
}

#[test]
fn a_relabelled_pod_is_decided_again() {
    let web = FlowMatcher {
        scope: Scope::Namespace("a".into()),
        rules: vec![Rule {
            action: Action::Select,
            selector: Selector {
                labels: [("app".to_owned(), "x".to_owned())].into_iter().collect(),
                ..Default::default()
            },
        }],
    };
    let p = build(&[web], false, Watched::All);
    let router = support::EdgeRouter::new(&p);
    let mut record = Record {
        namespace: "a".into(),
        container: "web".into(),
        labels: BTreeMap::from([("app".to_owned(), "x".to_owned())]),
        ..Default::default()
    };
    assert_eq!(router.routes(&record).len(), 1);
    // Same container, same tag: a label taken away, one added, one changed.
    record.labels.clear();
    assert!(router.routes(&record).is_empty());
    record.labels.insert("app".into(), "x".into());
    record.labels.insert("extra".into(), "1".into());
    assert_eq!(router.routes(&record).len(), 1);
    record.labels.insert("app".into(), "y".into());
    assert!(router.routes(&record).is_empty());
}
