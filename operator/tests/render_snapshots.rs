//! Golden files: each output kind, each filter kind, and whole agent and aggregator configs.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use sluice::api::Filter;
use sluice::model::{Kind, ObjectKey, Pipeline};
use sluice::render::fluentd::{DEFAULT_FLOW_LABEL, filters_snippet, output_snippet};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector, Watched};
use support::*;

fn secret(name: &str, key: &str) -> serde_json::Value {
    json!({"name": name, "key": key})
}

fn snippet(spec: serde_json::Value) -> String {
    output_snippet(&output_plan(
        ObjectKey::namespaced(Kind::Output, "team-a", "out"),
        output_spec(spec),
    ))
}

#[test]
fn output_kinds() {
    let tls = json!({"caSecretRef": secret("tls", "ca.crt"), "certSecretRef": secret("tls", "tls.crt"), "keySecretRef": secret("tls", "tls.key")});
    let auth = json!({"username": "writer", "passwordSecretRef": secret("creds", "password")});
    let kinds = [
        (
            "file",
            json!({"file": {"path": "archive/team-a", "append": true}}),
        ),
        ("null", json!({"nullOutput": {}})),
        ("stdout", json!({"stdout": {}})),
        (
            "forward",
            json!({"forward": {"servers": [{"host": "fluentd.example", "port": 24224}, {"host": "fluentd-2.example"}], "tls": tls, "sharedKeySecretRef": secret("fwd", "shared")}}),
        ),
        (
            "http",
            json!({"http": {"endpoint": "https://logs.example/ingest", "headers": {"X-Team": "a"}, "basicAuth": auth, "tls": tls}}),
        ),
        (
            "elasticsearch",
            json!({"elasticsearch": {"hosts": ["https://es-1:9200", "https://es-2:9200"], "indexName": "team-a", "basicAuth": auth, "tls": {"caSecretRef": secret("tls", "ca.crt")}}}),
        ),
        (
            "opensearch",
            json!({"opensearch": {"hosts": ["https://os:9200"], "basicAuth": auth, "tls": {"insecureSkipVerify": true}}}),
        ),
        (
            "loki",
            json!({"loki": {"url": "https://loki.example", "labels": {"namespace": "$.kubernetes.namespace_name", "app": "$['kubernetes']['labels']['app.kubernetes.io/name']"}, "tenant": "team-a", "basicAuth": auth}}),
        ),
        (
            "s3",
            json!({"s3": {"bucket": "team-a-logs", "region": "eu-west-1", "endpoint": "https://minio.example", "accessKeyIdSecretRef": secret("s3", "id"), "secretAccessKeySecretRef": secret("s3", "key")}, "buffer": {"chunkLimitSize": "64m", "retryForever": true, "overflowAction": "drop_oldest_chunk"}}),
        ),
        (
            "kafka",
            json!({"kafka": {"brokers": ["kafka-0:9093", "kafka-1:9093"], "topic": "logs.team-a", "sasl": {"scramMechanism": "sha512", "username": "team-a", "passwordSecretRef": secret("kafka", "password")}, "tls": {"caSecretRef": secret("kafka", "ca.crt")}}}),
        ),
        (
            "splunk_hec",
            json!({"splunkHec": {"host": "splunk.example", "tokenSecretRef": secret("splunk", "token"), "index": "main", "tls": {"caSecretRef": secret("splunk", "ca.crt")}}}),
        ),
    ];
    for (name, spec) in kinds {
        insta::assert_snapshot!(format!("output_{name}"), snippet(spec));
    }
}

/// Lines of the rendered output that must be there for a dead or unresolvable endpoint to
/// back up only its own buffer (parameter names as declared by the pinned plugin versions,
/// docs/dataplane.md).
#[test]
fn outputs_cannot_take_the_aggregator_down() {
    let has = |spec: serde_json::Value, lines: &[&str]| {
        let text = snippet(spec);
        for line in lines {
            assert!(
                text.lines().any(|l| l.trim() == *line),
                "missing {line:?} in\n{text}"
            );
        }
    };
    // out_forward resolves every server in `configure` and raises unless told otherwise.
    has(
        json!({"forward": {"servers": [{"host": "does-not-resolve.invalid"}], "tls": {"caSecretRef": secret("fwd", "ca.crt")}}}),
        &[
            "ignore_network_errors_at_startup true",
            "tls_ca_cert_path \"/sluice/active/shared/fwd-ca.crt\"",
        ],
    );
    // Version detection retries with sleeps inside `configure` while the server is down.
    has(
        json!({"elasticsearch": {"hosts": ["https://es:9200"]}}),
        &[
            "verify_es_version_at_startup false",
            "default_elasticsearch_version 8",
        ],
    );
    has(
        json!({"elasticsearch": {"hosts": ["https://es:9200"], "serverMajorVersion": 7}}),
        &["default_elasticsearch_version 7"],
    );
    has(
        json!({"opensearch": {"hosts": ["https://os:9200"]}}),
        &[
            "verify_os_version_at_startup false",
            "default_opensearch_version 2",
        ],
    );
    // S3 calls the API in `start` and raises; parallel flushes need distinct keys.
    has(
        json!({"s3": {"bucket": "b", "region": "eu-west-1"}}),
        &[
            "s3_object_key_format \"%{path}%{time_slice}_${chunk_id}.%{file_extension}\"",
            "check_apikey_on_start false",
            "check_bucket false",
            "auto_create_bucket false",
            "flush_mode interval",
        ],
    );
    // Time-keyed buffers ignore flush_interval unless the mode says interval.
    has(
        json!({"file": {"path": "x"}}),
        &["flush_mode interval", "flush_interval 10s"],
    );
    has(
        json!({"http": {"endpoint": "https://h"}}),
        &[
            "flush_mode interval",
            "flush_thread_count 1",
            "retryable_response_codes [429, 500, 502, 503, 504]",
        ],
    );
    // ruby-kafka enables TLS only when it has a CA to verify with.
    has(
        json!({"kafka": {"brokers": ["k:9093"], "topic": "t", "tls": {}}}),
        &["ssl_ca_certs_from_system true"],
    );
}

#[test]
fn filter_kinds() {
    let kinds = [
        (
            "grep",
            json!({"grep": {"regexp": [{"key": "$.kubernetes.labels.app", "pattern": "^web$"}], "exclude": [{"key": "level", "pattern": "debug"}]}}),
        ),
        (
            "record_transformer",
            json!({"recordTransformer": {"records": {"cluster": "prod", "team": "a"}, "removeKeys": ["password", "$.kubernetes.annotations"]}}),
        ),
        (
            "parser_json",
            json!({"parser": {"keyName": "log", "format": "json", "reserveData": true}}),
        ),
        (
            "parser_regexp",
            json!({"parser": {"keyName": "log", "format": "regexp", "expression": "^(?<level>\\w+) (?<message>.*)$", "removeKeyNameField": true}}),
        ),
        ("dedot", json!({"dedot": {"separator": "_"}})),
    ];
    for (name, spec) in kinds {
        let filter: Filter = serde_json::from_value(spec).unwrap();
        insta::assert_snapshot!(format!("filter_{name}"), filters_snippet(&[filter]));
    }
}

/// A typical small cluster: a team Flow with ordered rules, an exclude-only ClusterFlow,
/// a namespace-label ClusterFlow, a default flow and an error output.
pub fn typical() -> Pipeline {
    let es = ObjectKey::namespaced(Kind::Output, "team-a", "es");
    let archive = cluster_output_key("archive");
    let errors = cluster_output_key("errors");
    let team_flow = {
        let mut f = flow(
            ObjectKey::namespaced(Kind::Flow, "team-a", "web"),
            FlowMatcher {
                scope: Scope::Namespace("team-a".into()),
                rules: vec![
                    Rule {
                        action: Action::Exclude,
                        selector: Selector {
                            container_names: BTreeSet::from(["istio-proxy".into()]),
                            ..Default::default()
                        },
                    },
                    Rule {
                        action: Action::Select,
                        selector: Selector {
                            labels: [("app".into(), "web".into())].into_iter().collect(),
                            ..Default::default()
                        },
                    },
                ],
            },
            vec![es.clone(), archive.clone()],
        );
        *std::sync::Arc::make_mut(&mut f.filters) = serde_json::from_value(
            json!([{"parser": {"keyName": "log", "format": "json", "reserveData": true}}]),
        )
        .unwrap();
        f
    };
    let all_but_system = flow(
        ObjectKey::cluster(Kind::ClusterFlow, "all-but-system"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![Rule {
                action: Action::Exclude,
                selector: Selector {
                    namespaces: BTreeSet::from(["kube-system".into()]),
                    ..Default::default()
                },
            }],
        },
        vec![archive.clone()],
    );
    let prod = flow(
        ObjectKey::cluster(Kind::ClusterFlow, "prod"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![Rule {
                action: Action::Select,
                selector: Selector {
                    namespace_labels: [("env".into(), "prod".into())].into_iter().collect(),
                    ..Default::default()
                },
            }],
        },
        vec![archive.clone()],
    );
    let spec = logging_spec(json!({
        "agent": {"kubernetesMetadata": {"cacheTtl": "5m"}, "filesystemBufferLimit": "2G"},
        "tls": {"allowedClientNames": "fluent-bit(-[a-z0-9-]+)?"},
        "globalFilters": [{"dedot": {}}],
    }));
    let mut p = pipeline(
        spec,
        vec![all_but_system, prod, team_flow],
        vec![
            output_plan(
                es,
                output_spec(
                    json!({"elasticsearch": {"hosts": ["https://es:9200"], "indexName": "team-a", "basicAuth": {"username": "a", "passwordSecretRef": {"name": "es", "key": "password"}}}}),
                ),
            ),
            output_plan(
                archive.clone(),
                output_spec(json!({"s3": {"bucket": "archive", "region": "eu-west-1"}})),
            ),
            output_plan(
                errors.clone(),
                output_spec(json!({"file": {"path": "errors"}})),
            ),
        ],
    );
    p.watched = Watched::Only(BTreeSet::from([
        "team-a".into(),
        "team-b".into(),
        "kube-system".into(),
    ]));
    p.default_flow = Some(flow(
        ObjectKey::cluster(Kind::Logging, "main"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![],
        },
        vec![archive],
    ));
    p.error_output = Some(errors);
    p
}

#[test]
fn typical_cluster_aggregator() {
    let files = sluice::render::aggregator(&typical());
    for (name, content) in support::aggregator_snapshots(&files) {
        insta::assert_snapshot!(format!("typical_aggregator_{name}"), content);
    }
}

#[test]
fn typical_cluster_agent() {
    let p = typical();
    let files = sluice::render::agent(&p);
    assert_eq!(files.len(), 2, "fluent-bit.yaml and the routing filter");
    insta::assert_snapshot!("typical_agent", files[0].content);
    let routes = sluice::render::agent_routes(&p);
    insta::assert_snapshot!("typical_agent_routes", routes.index.content);
    let used: Vec<String> = routes
        .slots
        .iter()
        .filter(|slot| slot.content.contains("flow-"))
        .map(|slot| format!("# {}\n{}", slot.name, slot.content))
        .collect();
    insta::assert_snapshot!("typical_agent_route_slots", used.join("\n"));
}

/// The aggregator routes by tag only: no label_router, no Ruby run per record, fluentd's own
/// events captured before they could reach a flow, and any other tag dropped.
#[test]
fn aggregator_dispatches_by_tag_without_per_record_ruby() {
    let p = typical();
    let shards = sluice::render::aggregator(&p);
    let root = parse_aggregator(&shards);
    for element in root.walk() {
        assert_ne!(element.param_text("@type").as_deref(), Some("label_router"));
        assert_ne!(element.param_text("enable_ruby").as_deref(), Some("true"));
    }
    let top: Vec<(&str, &str)> = root
        .children
        .iter()
        .filter(|e| e.name == "filter" || e.name == "match")
        .map(|e| (e.name.as_str(), e.arg.as_str()))
        .collect();
    assert!(
        top.iter().all(|(name, _)| *name == "match"),
        "no top-level filter: {top:?}"
    );
    // One relabel per slot holding flows and the default flow's, then a route this revision
    // does not dispatch to the error output (copies still in flight for a flow just
    // removed), then any other tag nowhere.
    let slots: BTreeSet<usize> = p
        .flows
        .iter()
        .map(|f| sluice::render::fluentd::config_slot(&f.key))
        .collect();
    assert_eq!(top.len(), slots.len() + 3);
    assert_eq!(top[top.len() - 2], ("match", "sluice.**"));
    let unknown_routes = &root.children.iter().rev().find(|e| e.arg == "sluice.**");
    let unknown_routes = unknown_routes.expect("a catch-all for sluice tags");
    assert_eq!(
        unknown_routes.param_text("@type").as_deref(),
        Some("relabel")
    );
    assert_eq!(
        unknown_routes.param_text("@label").as_deref(),
        Some(sluice::render::fluentd::ERROR_OUTPUT_LABEL)
    );
    assert_eq!(top.last(), Some(&("match", "**")));
    assert_eq!(dispatch(&root).len(), slots.len() + 1);
    let fluent_log = root
        .children
        .iter()
        .find(|e| e.name == "label" && e.arg == "@FLUENT_LOG")
        .expect("fluentd's own events have their label");
    assert_eq!(fluent_log.children[0].arg, "fluent.**");
}

/// fluentd configures `<label @ERROR>` after every other label (`RootAgent#configure`), so a
/// `@label @ERROR` inside another label is refused ("@ERROR label not found") and the whole
/// configuration with it. Records Sluice sends to the error output go to its own label; only
/// `@ERROR` itself and top-level matches may name `@ERROR`.
#[test]
fn no_label_but_error_names_the_error_label() {
    for error_output in [true, false] {
        let mut p = typical();
        if !error_output {
            p.error_output = None;
        }
        let root = parse_aggregator(&sluice::render::aggregator(&p));
        let labels: Vec<&str> = root
            .children
            .iter()
            .filter(|e| e.name == "label")
            .map(|e| e.arg.as_str())
            .collect();
        assert!(
            labels.iter().any(|l| l.starts_with("@sluice-slot-")),
            "{labels:?}"
        );
        for label in root.children.iter().filter(|e| e.name == "label") {
            if label.arg == "@ERROR" {
                continue;
            }
            for element in label.walk() {
                assert_ne!(
                    element.param_text("@label").as_deref(),
                    Some("@ERROR"),
                    "<label {}> names @ERROR (error output: {error_output})",
                    label.arg
                );
            }
        }
        let error = root
            .children
            .iter()
            .find(|e| e.name == "label" && e.arg == "@ERROR")
            .expect("fluentd's error stream has its label");
        assert_eq!(
            error.children[0].param_text("@label").as_deref(),
            Some(sluice::render::fluentd::ERROR_OUTPUT_LABEL)
        );
        assert!(labels.contains(&sluice::render::fluentd::ERROR_OUTPUT_LABEL));
    }
}

#[test]
fn pruned_agent_without_default_flow() {
    let mut p = typical();
    p.default_flow = None;
    p.flows.retain(|f| f.key.kind == Kind::Flow);
    insta::assert_snapshot!("pruned_agent", sluice::render::agent(&p)[0].content);
}

/// The typical pipeline's rendered `fluent-bit.yaml`, parsed.
fn typical_agent_yaml() -> serde_json::Value {
    let agent = sluice::render::agent(&typical())[0].content.clone();
    serde_saphyr::from_str(&agent).unwrap()
}

fn tail_input(agent: &serde_json::Value) -> &serde_json::Value {
    agent["pipeline"]["inputs"]
        .as_array()
        .and_then(|inputs| inputs.iter().find(|i| i["name"] == "tail"))
        .expect("a tail input")
}

/// fluent-bit's tail input reads every file with data in one callback up to its batch size
/// (50M by default), and the same thread runs the flushes: with thousands of busy files that
/// held every copy back for 10-18 s (benches/README.md). The agent bounds both batches.
#[test]
fn agent_tail_returns_to_the_engine_between_small_batches() {
    let yaml = typical_agent_yaml();
    let tail = tail_input(&yaml);
    for key in ["static_batch_size", "event_batch_size"] {
        let value = tail[key].as_str().unwrap_or_else(|| panic!("{key} unset"));
        let (digits, unit) = value.split_at(value.len() - 1);
        let bytes = digits.parse::<u64>().unwrap()
            * match unit {
                "K" => 1 << 10,
                "M" => 1 << 20,
                other => panic!("{key}: unit {other}"),
            };
        assert!(
            (64 << 10..=1 << 20).contains(&bytes),
            "{key} {value}: a few thousand lines per callback"
        );
    }
}

/// Routed copies wait on disk in the emitter's chunks; the tail input's own chunks never
/// hold a record past the filters (each is re-tagged or dropped), so they stay in memory
/// instead of creating and deleting a chunk file on every read.
#[test]
fn agent_buffers_routed_copies_on_disk_and_reads_through_memory() {
    let yaml = typical_agent_yaml();
    let tail = tail_input(&yaml);
    assert_eq!(tail["storage.type"], "memory");
    let filters = yaml["pipeline"]["filters"].as_array().unwrap();
    let dispatch = filters
        .iter()
        .find(|f| f["name"] == "rewrite_tag")
        .expect("the dispatch filter");
    assert_eq!(dispatch["emitter_storage.type"], "filesystem");
    assert_eq!(dispatch["emitter_mem_buf_limit"], "0");
    // Every record the router keeps leaves the tail's chunks: the rule drops the original.
    assert!(dispatch["rule"].as_str().unwrap().ends_with(" false"));
    let outputs = yaml["pipeline"]["outputs"].as_array().unwrap();
    assert!(
        outputs
            .iter()
            .all(|o| o["match"] != "kube.*" && o["match"] != "*"),
        "no output takes the tail's own records"
    );
}

#[test]
fn tls_disabled() {
    let mut p = typical();
    p.spec = logging_spec(json!({"tls": {"mode": "Disabled"}}));
    let agent = sluice::render::agent(&p)[0].content.clone();
    assert!(
        agent.contains("tls: 'off'")
            || agent.contains("tls: \"off\"")
            || agent.contains("tls: off"),
        "{agent}"
    );
    assert!(!agent.contains("tls.ca_file"));
    assert!(agent.contains("shared_key"));
    let main = sluice::render::aggregator(&p).main_config().to_owned();
    assert!(!main.contains("<transport tls>"));
    assert!(main.contains("<security>"));
}

/// The router must see pod labels as collected: global filters (here a `dedot` that would
/// rename `app.kubernetes.io/name`) run after the dispatch, first in every slot's label and
/// in the default flow's, never in front of the router nor in an output instance.
#[test]
fn global_filters_run_after_routing_in_every_flow() {
    let p = typical();
    let root = parse_aggregator(&sluice::render::aggregator(&p));
    let top_level_dedot = root
        .children
        .iter()
        .any(|e| e.name == "filter" && e.param_text("@type").as_deref() == Some("dedot"));
    assert!(!top_level_dedot, "a global filter runs before the router");
    let flow_labels: Vec<_> = root
        .children
        .iter()
        .filter(|e| {
            e.name == "label" && (e.arg.starts_with("@sluice-slot-") || e.arg == DEFAULT_FLOW_LABEL)
        })
        .collect();
    assert!(flow_labels.len() >= 2, "{}", flow_labels.len());
    for label in flow_labels {
        let first = label.children.first().expect("label body");
        assert_eq!(first.name, "filter", "{}", label.arg);
        assert_eq!(first.arg, "**", "{}", label.arg);
        assert_eq!(
            first.param_text("@type").as_deref(),
            Some("dedot"),
            "{}",
            label.arg
        );
    }
    for instance in root
        .children
        .iter()
        .filter(|e| e.name == "label" && e.arg.starts_with("@out-"))
    {
        assert!(
            instance.children.iter().all(|e| e.name != "filter"),
            "{}",
            instance.arg
        );
    }
}
