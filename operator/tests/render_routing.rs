//! The rendered configuration routes exactly as the routing contract says: for generated
//! flows and records, the fluentd config read back with label-router's documented semantics
//! (and the agent's tail globs) agrees with `routing::route`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice::model::{Kind, ObjectKey};
use sluice::render::fluentd::flow_label;
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
                namespace_labels,
                labels,
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

fn build(matchers: &[FlowMatcher], default: bool, watched: Watched) -> sluice::model::Pipeline {
    let out = cluster_output_key("out");
    let flows = matchers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = match &m.scope {
                Scope::Namespace(ns) => ObjectKey::namespaced(Kind::Flow, ns, &format!("f{i}")),
                Scope::Cluster => ObjectKey::cluster(Kind::ClusterFlow, &format!("f{i}")),
            };
            flow(key, m.clone(), vec![out.clone()])
        })
        .collect();
    let mut p = pipeline(
        logging_spec(serde_json::json!({})),
        flows,
        vec![output_plan(
            out.clone(),
            output_spec(serde_json::json!({"stdout": {}})),
        )],
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

/// What the rendered aggregator does with the record, read back from its text.
fn rendered_route(p: &sluice::model::Pipeline, record: &Record) -> Routed {
    let root = parse_aggregator(&sluice::render::aggregator(p));
    if let Some(grep) = root
        .children
        .iter()
        .find(|e| e.param_text("@id").as_deref() == Some("sluice-watched-namespaces"))
    {
        let regexp = &grep.children[0];
        assert_eq!(
            regexp.param_text("key").as_deref(),
            Some("$.kubernetes.namespace_name")
        );
        let pattern = regexp.param_text("pattern").unwrap();
        let re = regex::Regex::new(&pattern).unwrap();
        if !re.is_match(&record.namespace) {
            return Routed::Unwatched;
        }
    }
    let router = router(&root);
    let md = Metadata {
        namespace: &record.namespace,
        namespace_labels: &record.namespace_labels,
        labels: &record.labels,
        host: &record.host,
        container: &record.container,
    };
    let mut takers = Vec::new();
    for route in router.children.iter().filter(|c| c.name == "route") {
        if route_takes(route, &md) {
            let label = route.param_text("@label").unwrap();
            let index = p
                .flows
                .iter()
                .position(|f| flow_label(&f.key) == label)
                .expect("route label names a flow");
            takers.push(index);
        }
    }
    takers.sort();
    if takers.is_empty() {
        assert_eq!(
            router.param("default_route").is_some(),
            p.default_flow.is_some()
        );
        Routed::Default
    } else {
        Routed::Flows(takers)
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
    fn rendered_routing_agrees_with_contract(
        matchers in proptest::collection::vec(matcher(), 0..5),
        default in any::<bool>(),
        watched in watched_strategy(),
        records in proptest::collection::vec(record(), 1..6),
    ) {
        let p = build(&matchers, default, watched);
        for record in &records {
            let expected = sluice::routing::route(p.flows.iter().map(|f| &f.matcher), &p.watched, record);
            prop_assert_eq!(&rendered_route(&p, record), &expected, "record {:?}", record);
            let received = match &expected {
                Routed::Unwatched => false,
                Routed::Flows(_) => true,
                Routed::Default => p.default_flow.is_some(),
            };
            let tailed = agent_tails(&p, record);
            if received {
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
    let web = Record {
        namespace: "a".into(),
        container: "web".into(),
        ..Default::default()
    };
    let db = Record {
        container: "db".into(),
        ..web.clone()
    };
    assert_eq!(rendered_route(&p, &web), Routed::Flows(vec![0]));
    assert_eq!(rendered_route(&p, &db), Routed::Default);
    // No flow can take `db` and there is no default flow: the agent does not even read it.
    assert!(agent_tails(&p, &web));
    assert!(!agent_tails(&p, &db));
}
