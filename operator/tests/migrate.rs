//! `sluice migrate`'s conversion: golden conversions per object kind and per output kind,
//! the report's lines for what does not carry, and a property test that the converted
//! objects route records as logging-operator's own rules (`migrate::incumbent`) do.

use std::collections::BTreeMap;

use proptest::prelude::*;

use sluice::cli::input::split_documents;
use sluice::migrate::report::{Destination, Status};
use sluice::migrate::{self, Document, Migration, incumbent, yaml};
use sluice::model::{self, ObjectKey};
use sluice::routing::{self, Record, Routed};

const LOGGING: &str = r#"
apiVersion: logging.banzaicloud.io/v1beta1
kind: Logging
metadata:
  name: main
spec:
  controlNamespace: logging
"#;

fn documents(file: &str, text: &str) -> Vec<Document> {
    split_documents(text)
        .into_iter()
        .enumerate()
        .map(|(index, (line, chunk))| Document {
            file: file.to_owned(),
            index: index + 1,
            line,
            root: yaml::parse(&chunk, line).expect("test YAML parses"),
        })
        .collect()
}

fn convert(text: &str) -> Migration {
    match migrate::migrate(&documents("source.yaml", text)) {
        Ok(migration) => migration,
        Err(errors) => panic!("migration failed: {errors:?}"),
    }
}

/// The converted files and the report, as one text to compare.
fn golden(text: &str) -> String {
    let migration = convert(text);
    let mut out = String::new();
    for file in migration.files().expect("files") {
        out.push_str(&format!("=== {}\n{}", file.name, file.content));
    }
    out.push_str("=== report\n");
    out.push_str(&migration.report.text());
    out
}

/// Report lines (`field: message`) of `status` for the object labelled `source`.
fn lines(migration: &Migration, source: &str, status: Status) -> Vec<String> {
    migration
        .report
        .objects
        .iter()
        .filter(|o| o.source.to_string() == source)
        .flat_map(|o| &o.entries)
        .filter(|e| e.status == status)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

#[test]
fn logging_with_agent_and_aggregator() {
    insta::assert_snapshot!(golden(
        r#"
apiVersion: logging.banzaicloud.io/v1beta1
kind: Logging
metadata:
  name: main
spec:
  controlNamespace: logging
  watchNamespaces: [team-a, team-b]
  skipInvalidResources: true
  flowConfigOverride: "<match **>\n  @type null\n</match>"
  fluentd:
    scaling:
      replicas: 3
      drain:
        enabled: true
    workers: 2
    resources:
      requests: {cpu: 200m, memory: 256Mi}
    nodeSelector: {pool: logging}
    bufferStorageVolume:
      pvc:
        spec:
          storageClassName: standard
          resources:
            requests: {storage: 30Gi}
    pdb:
      maxUnavailable: 1
    tls:
      enabled: true
      secretName: fluentd-tls
    logLevel: debug
  defaultFlow:
    globalOutputRefs: [archive, missing]
  errorOutputRef: archive
  globalFilters:
    - dedot:
        de_dot_nested: true
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: FluentbitAgent
metadata:
  name: agent
spec:
  filterKubernetes:
    Use_Kubelet: "On"
    Annotations: "Off"
    K8S-Logging.Exclude: "On"
  updateStrategy:
    rollingUpdate:
      maxUnavailable: 20%
  inputTail:
    Mem_Buf_Limit: 5MB
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: FluentbitAgent
metadata:
  name: second-agent
spec:
  nodeSelector: {pool: gpu}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata:
  name: archive
  namespace: logging
spec:
  nullout: {}
"#
    ));
}

#[test]
fn flow_rules_refs_and_filters() {
    insta::assert_snapshot!(golden(&format!(
        r#"{LOGGING}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Flow
metadata:
  name: web
  namespace: team-a
spec:
  match:
    - exclude:
        container_names: [istio-proxy]
        namespace_labels: {{tier: system}}
    - select:
        labels: {{app: web}}
        hosts: [node-1]
  filters:
    - grep:
        regexp:
          - key: message
            pattern: /error/
        and:
          - regexp:
              - key: $.kubernetes.container_name
                pattern: /^web$/
    - record_transformer:
        records:
          - cluster: prod
            origin: "${{tag}}"
        remove_keys: stream,time
    - parser:
        parse:
          type: regexp
          expression: /^(?<level>\w+) (?<msg>.*)$/
    - dedot:
        de_dot_separator: _
    - tag_normaliser: {{}}
  localOutputRefs: [sink, gone]
  globalOutputRefs: [archive, secured]
  outputRefs: [old]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Output
metadata:
  name: sink
  namespace: team-a
spec:
  nullout: {{}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata:
  name: archive
  namespace: logging
spec:
  nullout: {{}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata:
  name: secured
  namespace: logging
spec:
  protected: true
  nullout: {{}}
"#
    )));
}

#[test]
fn cluster_flows_exclude_only_regex_and_selectors() {
    insta::assert_snapshot!(golden(&format!(
        r#"{LOGGING}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-a, labels: {{env: prod}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: team-b}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: ops}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata:
  name: all-but-system
  namespace: logging
spec:
  match:
    - exclude:
        namespaces: [kube-system]
  globalOutputRefs: [archive]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata:
  name: teams
  namespace: logging
spec:
  match:
    - select:
        namespaces_regex: ["^team-"]
        namespace_labels: {{env: prod}}
  globalOutputRefs: [archive]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata:
  name: legacy
  namespace: logging
spec:
  selectors: {{app: legacy}}
  globalOutputRefs: [archive]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata:
  name: elsewhere
  namespace: team-a
spec:
  globalOutputRefs: [archive]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata:
  name: both
  namespace: logging
spec:
  selectors: {{app: x}}
  match:
    - select: {{}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata:
  name: archive
  namespace: logging
spec:
  nullout: {{}}
"#
    )));
}

/// One ClusterOutput of the given kind body, converted.
fn output(kind_body: &str) -> String {
    golden(&format!(
        "{LOGGING}\n---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: Output\nmetadata:\n  name: out\n  namespace: team-a\nspec:\n{kind_body}"
    ))
}

#[test]
fn output_elasticsearch() {
    insta::assert_snapshot!(output(
        r#"  elasticsearch:
    host: es.example.com
    port: 9243
    scheme: https
    path: /es
    user: fluent
    password:
      valueFrom:
        secretKeyRef: {name: es, key: password}
    ca_file:
      mountFrom:
        secretKeyRef: {name: es, key: ca.crt}
    index_name: app-logs
    logstash_format: true
    suppress_type_name: true
    buffer:
      chunk_limit_size: 16MB
      total_limit_size: 2g
      flush_interval: 15s
      flush_thread_count: 8
      overflow_action: block
      retry_max_times: 10
      timekey: 1m
      type: file
"#
    ));
}

#[test]
fn output_opensearch() {
    insta::assert_snapshot!(output(
        r#"  opensearch:
    hosts: https://os-1:9200,os-2:9200
    scheme: https
    index_name: ${tag}
    ssl_verify: false
    default_opensearch_version: 1
    endpoint:
      url: https://search.eu-west-1.es.amazonaws.com
"#
    ));
}

#[test]
fn output_loki() {
    insta::assert_snapshot!(output(
        r#"  loki:
    url: https://loki.example.com
    username:
      valueFrom:
        secretKeyRef: {name: loki, key: user}
    password:
      value: hunter2
    configure_kubernetes_labels: true
    extra_labels: {cluster: prod}
    remove_keys: [kubernetes]
"#
    ));
}

#[test]
fn output_s3() {
    insta::assert_snapshot!(output(
        r#"  s3:
    s3_bucket: logs-bucket
    s3_endpoint: https://minio.example.com
    force_path_style: "true"
    aws_key_id:
      valueFrom:
        secretKeyRef: {name: s3, key: id}
    aws_sec_key:
      valueFrom:
        secretKeyRef: {name: s3, key: key}
    s3_object_key_format: "%{path}%{time_slice}_%{index}.%{file_extension}"
    store_as: lzo
"#
    ));
}

#[test]
fn output_kafka() {
    insta::assert_snapshot!(output(
        r#"  kafka:
    brokers: kafka-0:9092,kafka-1:9092
    default_topic: logs
    username:
      value: producer
    password:
      valueFrom:
        secretKeyRef: {name: kafka, key: password}
    scram_mechanism: sha256
    ssl_ca_cert:
      valueFrom:
        secretKeyRef: {name: kafka, key: ca.crt}
    required_acks: -1
    format:
      type: json
"#
    ));
}

#[test]
fn output_splunk_hec() {
    insta::assert_snapshot!(output(
        r#"  splunkHec:
    hec_host: splunk.example.com
    hec_port: 8088
    protocol: http
    hec_token:
      valueFrom:
        secretKeyRef: {name: splunk, key: token}
    index: main
    insecure_ssl: true
    sourcetype: kube
"#
    ));
}

#[test]
fn output_forward() {
    insta::assert_snapshot!(output(
        r#"  forward:
    servers:
      - host: fluentd-0.example.com
        port: 24224
        shared_key:
          valueFrom:
            secretKeyRef: {name: fwd, key: key}
      - host: fluentd-1.example.com
        standby: true
    transport: tls
    tls_cert_path:
      valueFrom:
        secretKeyRef: {name: fwd, key: ca.crt}
    tls_verify_hostname: false
"#
    ));
}

#[test]
fn output_http() {
    insta::assert_snapshot!(output(
        r#"  http:
    endpoint: https://collector.example.com/logs
    http_method: put
    headers: {X-Source: k8s}
    auth:
      username:
        valueFrom:
          secretKeyRef: {name: http, key: user}
      password:
        valueFrom:
          secretKeyRef: {name: http, key: password}
    tls_verify_mode: peer
"#
    ));
}

#[test]
fn output_file() {
    insta::assert_snapshot!(output(
        r#"  file:
    path: /tmp/logs/app
    append: true
    buffer:
      retry_forever: false
"#
    ));
}

#[test]
fn output_null_and_unsupported_kinds() {
    insta::assert_snapshot!(golden(&format!(
        r#"{LOGGING}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata:
  name: discard
  namespace: logging
spec:
  nullout:
    never_flush: true
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Output
metadata:
  name: dd
  namespace: team-a
spec:
  datadog:
    api_key:
      valueFrom:
        secretKeyRef: {{name: dd, key: key}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Flow
metadata:
  name: to-datadog
  namespace: team-a
spec:
  localOutputRefs: [dd]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: SyslogNGFlow
metadata:
  name: syslog
  namespace: team-a
spec: {{}}
"#
    )));
}

#[test]
fn unsupported_items_are_named_in_the_report() {
    let migration = convert(&format!(
        r#"{LOGGING}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Flow
metadata:
  name: web
  namespace: team-a
spec:
  filters:
    - raw:
        config: "<filter **>"
    - concat:
        key: message
    - parser:
        parse:
          type: nginx
  localOutputRefs: [es]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Output
metadata:
  name: es
  namespace: team-a
spec:
  elasticsearch:
    host: es
    logstash_format: true
    index_name: ${{tag}}
    client_key_pass:
      value: secret
"#
    ));
    let flow = lines(&migration, "Flow team-a/web", Status::NotConverted);
    assert!(
        flow.iter()
            .any(|l| l.starts_with("spec.filters[0].raw: Sluice never renders raw")),
        "{flow:?}"
    );
    assert!(
        flow.iter()
            .any(|l| l.starts_with("spec.filters[1].concat: Sluice has no concat filter")),
        "{flow:?}"
    );
    assert!(
        flow.iter().any(|l| l.starts_with(
            "spec.filters[2].parser.parse.type: Sluice's parser reads json or regexp, not nginx"
        )),
        "{flow:?}"
    );
    let output = lines(&migration, "Output team-a/es", Status::NotConverted);
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("spec.elasticsearch.logstash_format:")),
        "{output:?}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("spec.elasticsearch.index_name:")),
        "{output:?}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("spec.elasticsearch.client_key_pass:")),
        "{output:?}"
    );
    assert!(migration.report.loses_anything());
    // Every line carries the source line it is about.
    let report = migration.report.text();
    assert!(
        report.contains("source.yaml:17   NOT CONVERTED spec.filters[0].raw"),
        "{report}"
    );
}

#[test]
fn every_source_field_is_reported() {
    let migration = convert(&format!(
        r#"{LOGGING}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Output
metadata:
  name: es
  namespace: team-a
spec:
  elasticsearch:
    host: es
    made_up_option: 1
    reload_connections: false
"#
    ));
    let lost = lines(&migration, "Output team-a/es", Status::NotConverted);
    assert!(
        lost.contains(&"spec.elasticsearch.made_up_option: Sluice has no equivalent".to_owned()),
        "{lost:?}"
    );
    assert!(
        lost.contains(
            &"spec.elasticsearch.reload_connections: Sluice has no equivalent".to_owned()
        ),
        "{lost:?}"
    );
}

// --- Routing equivalence -------------------------------------------------------------------

/// Where Sluice's resolved pipeline (what `sluice explain` evaluates) sends `record`, named
/// by the logging-operator objects the flows and outputs came from.
fn sluice_destination(migration: &Migration, record: &Record) -> Destination {
    let objects = migration.objects();
    let resolution = model::resolve(&objects.inventory());
    let sources: BTreeMap<ObjectKey, String> = migration
        .converted
        .iter()
        .filter_map(|c| c.object.key().map(|k| (k, c.source.to_string())))
        .collect();
    let mut destination = Destination::default();
    let Some(pipeline) = resolution.pipelines.first() else {
        return destination;
    };
    let outputs_of = |flow: &model::FlowPlan| {
        flow.outputs
            .iter()
            .filter_map(|o| sources.get(o).cloned())
            .collect()
    };
    match routing::route(
        pipeline.flows.iter().map(|f| &*f.matcher),
        &pipeline.watched,
        record,
    ) {
        Routed::Flows(indices) => {
            for index in indices {
                let flow = &pipeline.flows[index];
                destination
                    .0
                    .insert(sources[&flow.key].clone(), outputs_of(flow));
            }
        }
        Routed::Default => {
            if let Some(default) = &pipeline.default_flow {
                destination
                    .0
                    .insert(incumbent::default_flow_label("main"), outputs_of(default));
            }
        }
        Routed::Unwatched => {}
    }
    destination
}

const NAMESPACES: [&str; 3] = ["team-a", "team-b", "ops"];
const APPS: [&str; 3] = ["web", "db", "batch"];
const CONTAINERS: [&str; 3] = ["app", "istio-proxy", "sidecar"];
const HOSTS: [&str; 2] = ["node-1", "node-2"];

#[derive(Clone, Debug)]
struct Selector {
    app: Option<usize>,
    container: Option<usize>,
    host: Option<usize>,
    namespace: Option<usize>,
    env: Option<bool>,
    regex: Option<usize>,
}

fn selector() -> impl Strategy<Value = Selector> {
    (
        proptest::option::of(0..APPS.len()),
        proptest::option::of(0..CONTAINERS.len()),
        proptest::option::of(0..HOSTS.len()),
        proptest::option::of(0..NAMESPACES.len()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0..2usize),
    )
        .prop_map(|(app, container, host, namespace, env, regex)| Selector {
            app,
            container,
            host,
            namespace,
            env,
            regex,
        })
}

/// A flow: cluster or not, `None` for no `match` at all, else the entries (select?, body).
#[derive(Clone, Debug)]
struct FlowCase {
    cluster: bool,
    namespace: usize,
    rules: Option<Vec<(bool, Selector)>>,
    /// The deprecated `selectors` (an app label), used when there is no `match`.
    selectors: Option<usize>,
}

fn flow_case() -> impl Strategy<Value = FlowCase> {
    (
        any::<bool>(),
        0..NAMESPACES.len(),
        proptest::option::weighted(
            0.85,
            proptest::collection::vec((any::<bool>(), selector()), 0..4),
        ),
        proptest::option::of(0..APPS.len()),
    )
        .prop_map(|(cluster, namespace, rules, selectors)| FlowCase {
            cluster,
            namespace,
            rules,
            selectors,
        })
}

fn yaml_of(case: &FlowCase, index: usize) -> String {
    let kind = if case.cluster { "ClusterFlow" } else { "Flow" };
    let namespace = if case.cluster {
        "logging"
    } else {
        NAMESPACES[case.namespace]
    };
    let mut text = format!(
        "---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: {kind}\nmetadata:\n  name: f{index}\n  namespace: {namespace}\nspec:\n  globalOutputRefs: [sink]\n"
    );
    if let (None, Some(app)) = (&case.rules, case.selectors) {
        text.push_str(&format!("  selectors: {{app: {}}}\n", APPS[app]));
    }
    if let Some(rules) = &case.rules {
        text.push_str("  match:\n");
        if rules.is_empty() {
            text.push_str("    []\n");
        }
        for (select, s) in rules {
            let mut body = Vec::new();
            if let Some(app) = s.app {
                body.push(format!("labels: {{app: {}}}", APPS[app]));
            }
            if let Some(container) = s.container {
                body.push(format!("container_names: [{}]", CONTAINERS[container]));
            }
            if let Some(host) = s.host {
                body.push(format!("hosts: [{}]", HOSTS[host]));
            }
            if case.cluster {
                if let Some(ns) = s.namespace {
                    body.push(format!("namespaces: [{}]", NAMESPACES[ns]));
                }
                if let Some(env) = s.env {
                    body.push(format!(
                        "namespace_labels: {{env: {}}}",
                        if env { "prod" } else { "dev" }
                    ));
                }
                if let Some(regex) = s.regex {
                    body.push(format!(
                        "namespaces_regex: [\"{}\"]",
                        ["^team-", "s$"][regex]
                    ));
                }
            }
            let action = if *select { "select" } else { "exclude" };
            if body.is_empty() {
                text.push_str(&format!("    - {action}: {{}}\n"));
            } else {
                text.push_str(&format!("    - {action}:\n"));
                for line in body {
                    text.push_str(&format!("        {line}\n"));
                }
            }
        }
    }
    text
}

fn source(cases: &[FlowCase], default_flow: bool) -> String {
    let mut text = String::from(LOGGING);
    if default_flow {
        text.push_str("  defaultFlow:\n    globalOutputRefs: [sink]\n");
    }
    text.push_str(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {env: prod}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-b, labels: {env: dev}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ops}\n---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: ClusterOutput\nmetadata: {name: sink, namespace: logging}\nspec:\n  nullout: {}\n",
    );
    for (index, case) in cases.iter().enumerate() {
        text.push_str(&yaml_of(case, index));
    }
    text
}

fn record() -> impl Strategy<Value = Record> {
    (
        0..NAMESPACES.len(),
        proptest::option::of(0..APPS.len()),
        0..CONTAINERS.len(),
        0..HOSTS.len(),
    )
        .prop_map(|(namespace, app, container, host)| Record {
            namespace: NAMESPACES[namespace].to_owned(),
            namespace_labels: match namespace {
                0 => BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
                1 => BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
                _ => BTreeMap::new(),
            },
            labels: app
                .map(|a| BTreeMap::from([("app".to_owned(), APPS[a].to_owned())]))
                .unwrap_or_default(),
            host: HOSTS[host].to_owned(),
            container: CONTAINERS[container].to_owned(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// For any logging-operator flows, the converted objects send every record to the flows
    /// and outputs logging-operator's own rules send it to.
    #[test]
    fn converted_routing_agrees_with_logging_operator(
        cases in proptest::collection::vec(flow_case(), 1..6),
        default_flow in any::<bool>(),
        records in proptest::collection::vec(record(), 1..24),
    ) {
        let text = source(&cases, default_flow);
        let documents = documents("source.yaml", &text);
        let migration = migrate::migrate(&documents).expect("converts");
        let input = migrate::source::read(&documents).expect("reads");
        let domains = migrate::domains(&input);
        let router = incumbent::router(&domains[0]);
        for record in &records {
            let expected = router.destination(record);
            let actual = sluice_destination(&migration, record);
            prop_assert_eq!(&actual, &expected, "record {:?}\nsource:\n{}", record, text);
        }
        // The check built into the report agrees with this test.
        prop_assert!(migration.report.checks.iter().all(|c| c.divergences.is_empty()), "{}", migration.report.text());
    }
}

#[test]
fn exclude_only_flows_take_nothing_after_conversion_too() {
    let migration = convert(&format!(
        "{LOGGING}\n  defaultFlow:\n    globalOutputRefs: [sink]\n---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: ClusterOutput\nmetadata: {{name: sink, namespace: logging}}\nspec:\n  nullout: {{}}\n---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: Flow\nmetadata: {{name: web, namespace: team-a}}\nspec:\n  match:\n    - exclude:\n        container_names: [istio-proxy]\n  globalOutputRefs: [sink]\n"
    ));
    let record = Record {
        namespace: "team-a".into(),
        container: "web".into(),
        ..Record::default()
    };
    let destination = sluice_destination(&migration, &record);
    assert_eq!(
        destination.0.keys().collect::<Vec<_>>(),
        vec!["Logging main (defaultFlow)"],
        "the exclude-only Flow must not take the record: {destination}"
    );
}

#[test]
fn cluster_objects_of_one_name_in_two_namespaces_are_renamed() {
    let migration = convert(
        r#"
apiVersion: logging.banzaicloud.io/v1beta1
kind: Logging
metadata:
  name: main
spec:
  controlNamespace: logging
  allowClusterResourcesFromAllNamespaces: true
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata: {name: es, namespace: logging}
spec:
  nullout: {}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata: {name: es, namespace: team-a}
spec:
  nullout: {}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterFlow
metadata: {name: all, namespace: team-a}
spec:
  globalOutputRefs: [es]
"#,
    );
    let labels: Vec<String> = migration
        .converted
        .iter()
        .map(|c| c.object.label())
        .collect();
    assert!(
        labels.contains(&"ClusterOutput logging-es".to_owned()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"ClusterOutput team-a-es".to_owned()),
        "{labels:?}"
    );
    assert!(labels.contains(&"ClusterFlow all".to_owned()), "{labels:?}");
    let renamed = lines(&migration, "ClusterOutput team-a/es", Status::Changed);
    assert!(
        renamed
            .iter()
            .any(|l| l.starts_with("metadata.name: ClusterOutputs are cluster-scoped")),
        "{renamed:?}"
    );
    // logging-operator finds the first ClusterOutput of the name (by namespace): logging/es.
    let flow = lines(&migration, "ClusterFlow team-a/all", Status::Converted);
    assert!(
        flow.iter()
            .any(|l| l.starts_with("spec.globalOutputRefs[0]")),
        "{flow:?}"
    );
    let refs = migration.converted.iter().find_map(|c| match &c.object {
        migrate::SluiceObject::ClusterFlow(f) => Some(f.spec.global_output_refs.clone()),
        _ => None,
    });
    assert_eq!(refs, Some(vec!["logging-es".to_owned()]));
    assert!(
        migration
            .report
            .checks
            .iter()
            .all(|c| c.divergences.is_empty()),
        "{}",
        migration.report.text()
    );
}

#[test]
fn logging_route_tenants_keep_their_watched_namespaces() {
    let migration = convert(
        r#"
apiVersion: logging.banzaicloud.io/v1beta1
kind: Logging
metadata:
  name: tenant-a
  labels: {tenant: a}
spec:
  controlNamespace: tenant-a-logging
  watchNamespaces: [team-a]
  defaultFlow:
    globalOutputRefs: [sink]
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: ClusterOutput
metadata: {name: sink, namespace: tenant-a-logging}
spec:
  nullout: {}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: LoggingRoute
metadata: {name: tenants}
spec:
  source: ops
  targets:
    matchLabels: {tenant: a}
"#,
    );
    let logging = migration.converted.iter().find_map(|c| match &c.object {
        migrate::SluiceObject::Logging(l) => Some(l.spec.watch_namespaces.clone()),
        _ => None,
    });
    // A tenant only ever got its watched namespaces' logs: the watch carries as it is.
    assert_eq!(logging, Some(vec!["team-a".to_owned()]));
    let route = lines(&migration, "LoggingRoute tenants", Status::Changed);
    assert!(
        route
            .iter()
            .any(|l| l.contains("Sluice has no shared collector")),
        "{route:?}"
    );
    assert!(
        migration
            .report
            .checks
            .iter()
            .all(|c| c.divergences.is_empty()),
        "{}",
        migration.report.text()
    );
}

#[test]
fn buffers_the_tenant_limits_lower_are_reported() {
    let migration = convert(&format!(
        r#"{LOGGING}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Output
metadata: {{name: big, namespace: team-a}}
spec:
  http:
    endpoint: https://collector.example.com
    json_array: true
    buffer:
      chunk_limit_size: 512m
      flush_thread_count: 16
  nullout: {{}}
---
apiVersion: logging.banzaicloud.io/v1beta1
kind: Flow
metadata: {{name: all, namespace: team-a}}
spec:
  localOutputRefs: [big]
"#
    ));
    let changed = lines(&migration, "Output team-a/big", Status::Changed);
    for field in ["spec.buffer.chunkLimitSize", "spec.buffer.flushThreadCount"] {
        assert!(
            changed.iter().any(
                |l| l.starts_with(&format!("(Sluice Output team-a/big) {field}"))
                    && l.contains("BufferLimitLowered")
            ),
            "{field}: {changed:?}"
        );
    }
    let lost = lines(&migration, "Output team-a/big", Status::NotConverted);
    assert!(
        lost.iter()
            .any(|l| l.starts_with("spec.nullout: a second output kind (nullout) in one object")),
        "{lost:?}"
    );
}

#[test]
fn a_selector_that_is_not_one_is_an_input_error() {
    let errors = migrate::migrate(&documents(
        "logging.yaml",
        "apiVersion: logging.banzaicloud.io/v1beta1\nkind: Logging\nmetadata:\n  name: main\nspec:\n  controlNamespace: logging\n  watchNamespaceSelector:\n    matchExpressions:\n      - {key: team, operator: Sometimes}\n",
    ))
    .expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "logging.yaml");
    assert_eq!(errors[0].line, 7);
    assert_eq!(errors[0].object.as_deref(), Some("Logging main"));
    assert_eq!(
        errors[0].field.as_deref(),
        Some("spec.watchNamespaceSelector")
    );
    assert!(errors[0].message.contains("Sometimes"), "{errors:?}");
}

#[test]
fn lists_as_kubectl_writes_them_are_read_item_by_item() {
    let migration = convert(&format!(
        r#"{LOGGING}
---
apiVersion: v1
kind: List
items:
  - apiVersion: logging.banzaicloud.io/v1beta1
    kind: Output
    metadata: {{name: sink, namespace: team-a}}
    spec:
      nullout: {{}}
  - apiVersion: logging.banzaicloud.io/v1beta1
    kind: Flow
    metadata: {{name: all, namespace: team-a}}
    spec:
      localOutputRefs: [sink]
"#
    ));
    let labels: Vec<String> = migration
        .converted
        .iter()
        .map(|c| c.object.label())
        .collect();
    assert!(labels.contains(&"Flow team-a/all".to_owned()), "{labels:?}");
    assert!(
        labels.contains(&"Output team-a/sink".to_owned()),
        "{labels:?}"
    );
    assert_eq!(migration.report.skipped_documents, 0);
    // Each item's lines are its own.
    let flow = migration
        .report
        .objects
        .iter()
        .find(|o| o.source.to_string() == "Flow team-a/all")
        .expect("reported");
    assert_eq!(flow.line, 18);
}

#[test]
fn a_regex_over_more_namespaces_than_a_selector_lists_becomes_several_rules() {
    let mut text = LOGGING.to_owned();
    for index in 0..300 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: team-{index}}}\n"
        ));
    }
    text.push_str(
        "---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: ClusterOutput\nmetadata: {name: sink, namespace: logging}\nspec:\n  nullout: {}\n---\napiVersion: logging.banzaicloud.io/v1beta1\nkind: ClusterFlow\nmetadata: {name: teams, namespace: logging}\nspec:\n  match:\n    - select:\n        namespaces_regex: [\"^team-\"]\n  globalOutputRefs: [sink]\n",
    );
    let migration = convert(&text);
    let rules = migration.converted.iter().find_map(|c| match &c.object {
        migrate::SluiceObject::ClusterFlow(f) => Some(f.spec.match_rules.clone()),
        _ => None,
    });
    let sizes: Vec<usize> = rules
        .expect("converted")
        .iter()
        .map(|r| r.select.as_ref().map_or(0, |s| s.namespaces.len()))
        .collect();
    assert_eq!(sizes, vec![256, 44]);
    assert!(
        migration
            .report
            .checks
            .iter()
            .all(|c| c.divergences.is_empty()),
        "{}",
        migration.report.text()
    );
}
