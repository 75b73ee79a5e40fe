//! Hostile strings in every string field of every kind cannot change the structure of the
//! rendered configuration: the fluentd config read back has the same directives and keys as
//! with a harmless string, values round-trip exactly, the only embedded Ruby is Sluice's own,
//! and the fluent-bit YAML keeps its keys.

mod support;

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;
use sluice::api::Filter;
use sluice::model::{Kind, ObjectKey, Pipeline};
use sluice::render::edge;
use sluice::render::fluentd::flow_label;
use sluice::routing::{Action, FlowMatcher, Record, Routed, Rule, Scope, Selector, Watched};
use support::*;

fn secret(s: &str) -> serde_json::Value {
    json!({"name": s, "key": s})
}

fn tls(s: &str) -> serde_json::Value {
    json!({"caSecretRef": secret(s), "certSecretRef": secret(s), "keySecretRef": secret(s)})
}

fn filters(s: &str) -> Vec<Filter> {
    serde_json::from_value(json!([
        {"grep": {"regexp": [{"key": s, "pattern": s}], "exclude": [{"key": s, "pattern": s}]}},
        {"recordTransformer": {"records": {"team": s}, "removeKeys": [s, s]}},
        {"parser": {"keyName": s, "format": "regexp", "expression": s, "reserveData": true}},
        {"dedot": {"separator": s}},
    ]))
    .unwrap()
}

fn outputs(s: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"file": {"path": s}}),
        json!({"nullOutput": {}}),
        json!({"stdout": {}}),
        json!({"forward": {"servers": [{"host": s, "port": 24224}], "tls": tls(s), "sharedKeySecretRef": secret(s)}}),
        json!({"http": {"endpoint": s, "headers": {s: s}, "basicAuth": {"username": s, "passwordSecretRef": secret(s)}, "tls": tls(s)}}),
        json!({"elasticsearch": {"hosts": [s, s], "indexName": s, "basicAuth": {"username": s, "passwordSecretRef": secret(s)}, "tls": tls(s)}}),
        json!({"opensearch": {"hosts": [s], "indexName": s, "tls": tls(s)}}),
        json!({"loki": {"url": s, "labels": {"app": s}, "tenant": s, "basicAuth": {"username": s, "passwordSecretRef": secret(s)}, "tls": tls(s)}}),
        json!({"s3": {"bucket": s, "region": s, "path": s, "endpoint": s, "accessKeyIdSecretRef": secret(s), "secretAccessKeySecretRef": secret(s)}}),
        json!({"kafka": {"brokers": [s], "topic": s, "sasl": {"scramMechanism": "sha512", "username": s, "passwordSecretRef": secret(s)}, "tls": tls(s)}}),
        json!({"splunkHec": {"host": s, "tokenSecretRef": secret(s), "index": s, "tls": tls(s)}}),
    ]
}

fn selector(s: &str) -> Selector {
    Selector {
        namespaces: BTreeSet::from([s.to_owned()]),
        namespace_labels: [(s.to_owned(), s.to_owned())].into_iter().collect(),
        labels: [(s.to_owned(), s.to_owned())].into_iter().collect(),
        hosts: BTreeSet::from([s.to_owned()]),
        container_names: BTreeSet::from([s.to_owned()]),
    }
}

/// Every string field set to `s`. Secret files get a fixed safe name (the mount names come
/// from the model); hostile file names are covered separately.
fn hostile_pipeline(s: &str) -> Pipeline {
    let mut plans = Vec::new();
    for (i, spec) in outputs(s).into_iter().enumerate() {
        let key = ObjectKey::namespaced(Kind::Output, "a", &format!("o{i}"));
        let mut plan = output_plan(key, output_spec(spec));
        for file in plan.secret_files.values_mut() {
            *file = "credential-1".to_owned();
        }
        plans.push(plan);
    }
    let keys: Vec<ObjectKey> = plans.iter().map(|p| p.key.clone()).collect();
    let mut ns_flow = flow(
        ObjectKey::namespaced(Kind::Flow, "a", "f"),
        FlowMatcher {
            scope: Scope::Namespace(s.to_owned()),
            rules: vec![Rule {
                action: Action::Exclude,
                selector: Selector {
                    container_names: BTreeSet::from([s.to_owned()]),
                    ..Default::default()
                },
            }],
        },
        keys.clone(),
    );
    ns_flow.filters = filters(s).into();
    let cluster_flow = flow(
        ObjectKey::cluster(Kind::ClusterFlow, "c"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![
                Rule {
                    action: Action::Exclude,
                    selector: selector(s),
                },
                Rule {
                    action: Action::Select,
                    selector: selector(s),
                },
            ],
        },
        keys,
    );
    let spec = logging_spec(json!({
        "tls": {"allowedClientNames": s},
        "globalFilters": serde_json::to_value(filters(s)).unwrap(),
    }));
    let mut p = pipeline(spec, vec![ns_flow, cluster_flow], plans);
    p.logging = s.to_owned();
    p.watched = Watched::Only(BTreeSet::from([s.to_owned(), "a".to_owned()]));
    p.default_flow = Some(flow(
        ObjectKey::cluster(Kind::Logging, "main"),
        FlowMatcher {
            scope: Scope::Cluster,
            rules: vec![],
        },
        vec![ObjectKey::namespaced(Kind::Output, "a", "o0")],
    ));
    p.default_flow.as_mut().unwrap().filters = filters(s).into();
    p.error_output = Some(ObjectKey::namespaced(Kind::Output, "a", "o3"));
    p
}

fn allowed_ruby(code: &str) -> bool {
    let file = regex::Regex::new(r"^File\.read\('/sluice/active/shared/[A-Za-z0-9._-]+'\)\.chomp$")
        .unwrap();
    code == "ENV['SLUICE_SHARED_KEY']" || code == "Socket.gethostname" || file.is_match(code)
}

/// Decodes the Ruby single-quoted literal of the verifier's pattern.
fn verifier_pattern(verifier: &str) -> String {
    let start = "allowed = Regexp.new('\\A(?:' + '";
    let end = "' + ')\\z')\nProc.new do";
    let from = verifier.find(start).expect("allowed line") + start.len();
    let to = verifier.rfind(end).expect("end of allowed line");
    let inner = &verifier[from..to];
    let line = inner;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('\'') => out.push('\''),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => panic!("dangling backslash"),
            },
            '\'' => panic!("unescaped quote ends the literal early: {line}"),
            c => out.push(c),
        }
    }
    out
}

fn yaml_shape(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}:{{{}}}", yaml_shape(v)))
            .collect::<Vec<_>>()
            .join(","),
        serde_json::Value::Array(items) => {
            items.iter().map(yaml_shape).collect::<Vec<_>>().join(";")
        }
        _ => String::new(),
    }
}

fn hostile() -> impl Strategy<Value = String> {
    let fragments = proptest::sample::select(vec![
        "\"",
        "\\",
        "#{",
        "}",
        "\n",
        "\r",
        "</match>",
        "<match **>",
        "</label>",
        "@include /etc/passwd",
        "${HOME}",
        "'",
        "[",
        "]",
        "{",
        ",",
        ":",
        "\n- name: exec",
        "#",
        "@type exec",
        "*",
        "?",
        "%{",
        "\u{2028}",
        "\\#{`id`}",
        "\\\"",
        "}\n<source>",
        "key: value",
    ]);
    proptest::collection::vec(
        prop_oneof![
            fragments.prop_map(str::to_owned),
            any::<String>(),
            "[a-z]{1,8}"
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

fn check(s: &str) {
    let benign = hostile_pipeline("benign");
    let evil = hostile_pipeline(s);

    let benign_root = parse_aggregator(&sluice::render::aggregator(&benign));
    let evil_shards = sluice::render::aggregator(&evil);
    let evil_root = parse_aggregator(&evil_shards);
    assert_eq!(
        benign_root.shape(),
        evil_root.shape(),
        "structure changed by {s:?}"
    );

    for element in evil_root.walk() {
        for (key, value) in &element.params {
            if let Value::Str { ruby, .. } = value {
                for code in ruby {
                    assert!(allowed_ruby(code), "{key} embeds Ruby {code:?} for {s:?}");
                }
            }
        }
    }
    // Values arrive intact.
    let grep = evil_root
        .walk()
        .into_iter()
        .find(|e| e.name == "regexp" && e.param_text("pattern").as_deref() == Some(s));
    assert!(grep.is_some(), "grep pattern did not round-trip");
    let index = evil_root
        .walk()
        .into_iter()
        .filter_map(|e| e.param_text("index_name"))
        .next();
    assert_eq!(index.as_deref(), Some(s));
    // Selectors reach the agent's routing table intact: the filter, under LuaJIT, routes
    // records carrying the hostile string exactly as the contract does.
    let router = EdgeRouter::new(&evil);
    for container in [s, "x"] {
        let record = Record {
            namespace: s.to_owned(),
            namespace_labels: [(s.to_owned(), s.to_owned())].into_iter().collect(),
            labels: [(s.to_owned(), s.to_owned())].into_iter().collect(),
            host: s.to_owned(),
            container: container.to_owned(),
        };
        let expected: Vec<String> = match sluice::routing::route(
            evil.flows.iter().map(|f| &*f.matcher),
            &evil.watched,
            &record,
        ) {
            Routed::Flows(indices) => indices
                .iter()
                .map(|&i| edge::flow_route(&flow_label(&evil.flows[i].key)).to_owned())
                .collect(),
            Routed::Default => vec![edge::DEFAULT_ROUTE.to_owned()],
            Routed::Unwatched => Vec::new(),
        };
        assert_eq!(router.routes(&record), expected, "container {container:?}");
    }

    let verifier = evil_shards
        .shared
        .iter()
        .find(|f| f.name.ends_with("-cert-verifier.rb"))
        .unwrap();
    assert_eq!(verifier_pattern(&verifier.content), s);

    let agent = |p: &Pipeline| -> serde_json::Value {
        serde_saphyr::from_str(&sluice::render::agent(p)[0].content).unwrap()
    };
    let (benign_agent, evil_agent) = (agent(&benign), agent(&evil));
    // The hostile namespace is not a Kubernetes name, so it is never tailed: the benign
    // pipeline tails namespaces {a, benign}, the hostile one only {a}.
    assert_eq!(yaml_shape(&benign_agent), yaml_shape(&evil_agent));
    let tail = &evil_agent["pipeline"]["inputs"][0];
    let expected = if sluice::render::escape::is_dns_label(s) {
        BTreeSet::from(["a".to_owned(), s.to_owned()])
            .iter()
            .map(|ns| format!("/var/log/containers/*_{ns}_*.log"))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "/var/log/containers/*_a_*.log".to_owned()
    };
    assert_eq!(tail["path"], expected.as_str());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_strings_keep_structure(s in hostile()) {
        check(&s);
    }
}

#[test]
fn known_attacks_keep_structure() {
    for s in [
        "x\"\n</match>\n<match **>\n  @type exec",
        "#{`rm -rf /`}",
        "\\#{ENV}",
        "a\\",
        "@include /etc/passwd",
        "'); system('id'); ('",
        "${SLUICE_SHARED_KEY}",
        "]\"}{",
    ] {
        check(s);
    }
}

#[test]
fn hostile_secret_file_names_are_not_rendered() {
    let mut p = hostile_pipeline("benign");
    for plan in p.outputs.values_mut() {
        for file in plan.secret_files.values_mut() {
            *file = "x').chomp}#{`id`}".to_owned();
        }
    }
    let shards = sluice::render::aggregator(&p);
    let root = parse_aggregator(&shards);
    for element in root.walk() {
        for (_, value) in &element.params {
            if let Value::Str { ruby, .. } = value {
                assert!(ruby.iter().all(|code| allowed_ruby(code)), "{ruby:?}");
            }
        }
    }
    assert!(shards.all().all(|f| !f.content.contains("`id`")));
}

#[test]
fn hostile_param_keys_are_skipped() {
    let mut p = hostile_pipeline("benign");
    *std::sync::Arc::make_mut(&mut p.flows[0].filters) = serde_json::from_value(json!([
        {"recordTransformer": {"records": {"ok": "1", "bad key\n</record>": "2"}}}
    ]))
    .unwrap();
    let root = parse_aggregator(&sluice::render::aggregator(&p));
    let record = root
        .walk()
        .into_iter()
        .find(|e| e.name == "record" && e.param("ok").is_some())
        .expect("record section");
    assert_eq!(record.params.len(), 1);
}

#[test]
fn file_outputs_of_different_tenants_never_share_a_path() {
    let spec = || output_spec(json!({"file": {"path": "/buffers/../shared/app.log"}}));
    let keys = [
        ObjectKey::namespaced(Kind::Output, "team-a", "archive"),
        ObjectKey::namespaced(Kind::Output, "team-b", "archive"),
        ObjectKey::cluster(Kind::ClusterOutput, "archive"),
    ];
    let paths: Vec<String> = keys
        .iter()
        .map(|key| {
            let snippet =
                sluice::render::fluentd::output_snippet(&output_plan(key.clone(), spec()));
            let root = parse_fluentd(&snippet, &Default::default()).unwrap();
            root.walk()
                .into_iter()
                .find_map(|e| {
                    (e.param_text("@type").as_deref() == Some("file")).then(|| e.param_text("path"))
                })
                .flatten()
                .unwrap()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "/buffers/files/team-a/archive/buffers/_/shared/app.log",
            "/buffers/files/team-b/archive/buffers/_/shared/app.log",
            "/buffers/files/_cluster/archive/buffers/_/shared/app.log",
        ]
    );
}
