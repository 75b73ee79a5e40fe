//! Resolution: each object is validated on its own, and a broken one never takes the others
//! down with it.

use std::path::PathBuf;

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
    let resolution = model::resolve(&loaded.inventory);
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
    // Credentials are copied by reference, one file per Secret key.
    assert!(
        pipeline
            .output_secret_data
            .contains_key("payments_payments-es_password")
    );
    assert!(
        pipeline
            .output_secret_data
            .contains_key("sluice-system_siem-hec_token")
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
    let resolution = model::resolve(&load_with(broken).inventory);
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
    let without_output = original.split("---").next().unwrap();
    std::fs::write(
        dir.path().join("30-team-payments.yaml"),
        format!("{without_output}---{leaky}"),
    )
    .unwrap();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("30-team-payments.yaml"))
        .collect();
    paths.push(dir.path().to_owned());
    let resolution = model::resolve(&input::load(&paths).unwrap().inventory);

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
    let resolution = model::resolve(&load_with(stray).inventory);
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
    let resolution = model::resolve(&load_with(stray).inventory);
    let key = ObjectKey::cluster(Kind::ClusterFlow, "orphan");
    assert_eq!(resolution.problems[&key][0].reason, "LoggingNotFound");
}
