//! Capacity (model::capacity): a configuration the aggregator's pods could not check or run
//! is never rendered. Flows beyond it are left out with their own problem, fairly across
//! namespaces, and the Logging names the numbers and the limits; 10,000 simple flows fit
//! the defaults.

use serde_json::{Value, json};
use sluice::model::{self, Kind, ObjectKey, Objects, Resolution};

const NAMESPACES: usize = 10;

/// A Logging with `aggregator` settings and a buffer volume large enough for every buffer,
/// watching ten namespaces.
fn logging(mut aggregator: Value) -> Objects {
    aggregator["bufferVolume"] = json!({"persistentVolumeClaim": {"size": "1Ti"}});
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("team-{i}")).collect();
    let mut objects = Objects {
        loggings: vec![
            serde_json::from_value(json!({
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
                "metadata": {"name": "main"},
                "spec": {
                    "controlNamespace": "logging",
                    "watchNamespaces": namespaces,
                    "tenantLimits": {"maxOutputsPerNamespace": 1000},
                    "aggregator": aggregator,
                },
            }))
            .unwrap(),
        ],
        ..Default::default()
    };
    for namespace in namespaces {
        objects.namespaces.push(
            serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            )
            .unwrap(),
        );
    }
    objects
}

/// A Flow in `namespace` named `name` sending to Output `output`.
fn flow(objects: &mut Objects, namespace: &str, name: &str, output: &str) {
    objects.flows.push(
        serde_json::from_value(json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"match": [{"select": {"labels": {"app": "web"}}}], "localOutputRefs": [output]},
        }))
        .unwrap(),
    );
}

fn output(objects: &mut Objects, namespace: &str, name: &str, spec: Value) {
    objects.outputs.push(
        serde_json::from_value(json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Output",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
        }))
        .unwrap(),
    );
}

fn es(index: &str) -> Value {
    json!({"elasticsearch": {"hosts": ["https://es.logging:9200"], "indexName": index}})
}

fn reasons(resolution: &Resolution, key: &ObjectKey) -> Vec<&'static str> {
    resolution
        .problems
        .get(key)
        .map(|problems| problems.iter().map(|p| p.reason).collect())
        .unwrap_or_default()
}

/// `n` Flows over the ten namespaces, each sending to an Output of its own made by `spec`.
fn own_outputs(aggregator: Value, n: usize, spec: impl Fn(usize) -> Value) -> Objects {
    let mut objects = logging(aggregator);
    for i in 0..n {
        let namespace = format!("team-{}", i % NAMESPACES);
        let name = format!("flow-{i:05}");
        output(&mut objects, &namespace, &name, spec(i));
        flow(&mut objects, &namespace, &name, &name);
    }
    objects
}

#[test]
fn ten_thousand_simple_flows_fit_the_default_limits() {
    let mut shared = logging(json!({}));
    for n in 0..NAMESPACES {
        output(&mut shared, &format!("team-{n}"), "es", es("logs"));
    }
    for i in 0..10_000 {
        flow(
            &mut shared,
            &format!("team-{}", i % NAMESPACES),
            &format!("flow-{i:05}"),
            "es",
        );
    }
    for (shape, objects) in [
        ("one Output per namespace", shared),
        (
            "an equal Elasticsearch Output each",
            own_outputs(json!({}), 10_000, |_| es("logs")),
        ),
        (
            "a null Output each",
            own_outputs(json!({}), 10_000, |_| json!({"nullOutput": {}})),
        ),
    ] {
        let resolution = model::resolve(&objects.inventory());
        let pipeline = &resolution.pipelines[0];
        assert_eq!(pipeline.flows.len(), 10_000, "{shape}");
        assert_eq!(resolution.problems, Default::default(), "{shape}");
        let status = pipeline.capacity.status();
        assert_eq!(status.flows_left_out, 0);
        eprintln!("{shape}: {status:?}");
    }
}

#[test]
fn flows_beyond_capacity_are_left_out_fairly_and_the_logging_names_the_numbers() {
    // Every Flow with an Elasticsearch Output of its own index: an output plugin each, so
    // the 1Gi of fluentd's container holds a few hundred.
    let objects = own_outputs(json!({}), 2_000, |i| es(&format!("index-{i}")));
    let resolution = model::resolve(&objects.inventory());
    let pipeline = &resolution.pipelines[0];
    let kept = pipeline.flows.len();
    assert!(kept > 100 && kept < 2_000, "{kept} flows kept");
    let status = pipeline.capacity.status();
    assert_eq!(status.flows_left_out, i64::try_from(2_000 - kept).unwrap());

    let logging = ObjectKey::cluster(Kind::Logging, "main");
    let problems = &resolution.problems[&logging];
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].reason, "AggregatorCapacityExceeded");
    let message = &problems[0].message;
    assert!(
        message.contains(&format!("{} of 2000 flows are left out", 2_000 - kept)),
        "{message}"
    );
    for limit in ["512Mi", "120 s", "1Gi"] {
        assert!(message.contains(limit), "{message}");
    }

    // Round-robin: every namespace keeps the same number of flows (give or take one), and
    // within a namespace its first flows by name.
    let mut per_namespace = vec![0usize; NAMESPACES];
    for flow in &pipeline.flows {
        let namespace = flow.key.namespace.as_deref().unwrap();
        per_namespace[namespace
            .trim_start_matches("team-")
            .parse::<usize>()
            .unwrap()] += 1;
    }
    let (min, max) = (
        per_namespace.iter().min().unwrap(),
        per_namespace.iter().max().unwrap(),
    );
    assert!(max - min <= 1, "{per_namespace:?}");
    let left_out = ObjectKey::namespaced(Kind::Flow, "team-0", "flow-01990");
    assert_eq!(
        reasons(&resolution, &left_out),
        ["AggregatorCapacityExceeded"]
    );
    assert!(
        resolution.problems[&left_out][0]
            .message
            .contains("spec.aggregator.resources.limits.memory"),
        "{:?}",
        resolution.problems[&left_out]
    );
    let first = ObjectKey::namespaced(Kind::Flow, "team-0", "flow-00000");
    assert_eq!(reasons(&resolution, &first), Vec::<&str>::new());

    // Nothing left out reaches the rendered configuration or the agents' routing table.
    let aggregator: String = sluice::render::aggregator(pipeline)
        .all()
        .map(|f| f.content.clone())
        .collect();
    let routes: String = sluice::render::agent_routes(pipeline)
        .files()
        .map(|f| f.content.clone())
        .collect();
    let route = |key: &ObjectKey| {
        sluice::render::edge::flow_route(&sluice::render::fluentd::flow_label(key)).to_owned()
    };
    let hash = |key: &ObjectKey| route(key).trim_start_matches("flow-").to_owned();
    assert!(!aggregator.contains(&hash(&left_out)));
    assert!(!routes.contains(&route(&left_out)));
    assert!(aggregator.contains(&hash(&first)));
    assert!(routes.contains(&route(&first)));

    // Raising the limits the message names admits them all.
    let objects = own_outputs(
        json!({"resources": {"limits": {"memory": "16Gi"}},
               "configCheck": {"memoryLimit": "4Gi", "timeoutSeconds": 600}}),
        2_000,
        |i| es(&format!("index-{i}")),
    );
    let resolution = model::resolve(&objects.inventory());
    assert_eq!(resolution.pipelines[0].flows.len(), 2_000);
    assert_eq!(resolution.problems, Default::default());
}

#[test]
fn the_check_timeout_bounds_the_configuration_too() {
    // Unlimited memory: the check's time is what is left, each flow with a filter of its
    // own (a plugin each).
    let mut objects = logging(json!({
        "resources": {"limits": {"cpu": "2"}},
        "configCheck": {"memoryLimit": "64Gi", "timeoutSeconds": 10},
    }));
    for n in 0..NAMESPACES {
        output(&mut objects, &format!("team-{n}"), "es", es("logs"));
    }
    for i in 0..5_000 {
        flow(
            &mut objects,
            &format!("team-{}", i % NAMESPACES),
            &format!("flow-{i:05}"),
            "es",
        );
        objects.flows.last_mut().unwrap().spec.filters = serde_json::from_value(json!([
            {"grep": {"exclude": [{"key": "log", "pattern": "debug"}]}}
        ]))
        .unwrap();
    }
    let resolution = model::resolve(&objects.inventory());
    let pipeline = &resolution.pipelines[0];
    assert!(pipeline.flows.len() < 5_000);
    let logging = ObjectKey::cluster(Kind::Logging, "main");
    assert!(
        resolution.problems[&logging][0]
            .message
            .contains("of a 10 s timeout"),
        "{:?}",
        resolution.problems[&logging]
    );
    let left_out = resolution
        .problems
        .iter()
        .find(|(key, _)| key.kind == Kind::Flow)
        .map(|(_, problems)| problems[0].message.clone())
        .unwrap();
    assert!(left_out.contains("timeoutSeconds"), "{left_out}");
}

#[test]
fn an_unreadable_check_memory_limit_is_a_problem_and_the_default_applies() {
    let objects = own_outputs(
        json!({"configCheck": {"memoryLimit": "lots"}}),
        10,
        |_| json!({"nullOutput": {}}),
    );
    let resolution = model::resolve(&objects.inventory());
    let logging = ObjectKey::cluster(Kind::Logging, "main");
    assert_eq!(reasons(&resolution, &logging), ["InvalidQuantity"]);
    assert_eq!(
        resolution.pipelines[0].capacity.status().check_memory_limit,
        "512Mi"
    );
    let children =
        sluice::build::objects(&resolution.pipelines[0], &sluice::pki::PkiPlan::default()).unwrap();
    let text =
        serde_json::to_string(&children.iter().map(|c| &c.object).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("lots"));
}
