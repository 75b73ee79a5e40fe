//! The committed CRDs: fresh, small enough for client-side apply, free of schema defaults,
//! and their CEL rules accept and reject what they should, evaluated against the committed
//! schema the way the API server would.

use std::path::PathBuf;

use kube::core::cel::Validator;
use serde_json::{Value, json};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

fn committed(file: &str) -> Value {
    let text = std::fs::read_to_string(crds_dir().join(file)).expect("committed CRD exists");
    serde_saphyr::from_str(&text).expect("committed CRD parses")
}

fn schema(file: &str) -> Value {
    committed(file)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crds_match_the_code() {
    let crds = sluice::api::crds();
    let mut expected_files: Vec<String> = crds.iter().map(sluice::cli::crd_file_name).collect();
    expected_files.push("Kustomization".to_owned());
    let kustomization = std::fs::read_to_string(crds_dir().join("Kustomization"));
    assert!(
        kustomization.is_ok_and(|text| text == sluice::cli::crds_kustomization(&crds)),
        "crds/Kustomization is stale: run `cargo run -p sluice -- crds --out-dir crds --api-docs docs/api.md`"
    );
    for crd in &crds {
        let file = sluice::cli::crd_file_name(crd);
        let on_disk = std::fs::read_to_string(crds_dir().join(&file)).unwrap_or_default();
        assert!(
            on_disk == sluice::cli::crd_yaml(crd).unwrap(),
            "crds/{file} is stale: run `cargo run -p sluice -- crds --out-dir crds --api-docs docs/api.md`"
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(crds_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    expected_files.sort();
    assert_eq!(
        files, expected_files,
        "crds/ holds exactly the generated CRDs"
    );
}

#[test]
fn every_crd_fits_the_client_side_apply_annotation_limit() {
    for crd in sluice::api::crds() {
        // kubectl's last-applied annotation holds the object as JSON; annotations are capped at 256 KiB.
        let size = serde_json::to_vec(&crd).unwrap().len();
        assert!(size < 256 * 1024, "{:?} is {size} bytes", crd.metadata.name);
    }
}

#[test]
fn no_crd_writes_defaults_into_specs() {
    fn find_default(value: &Value, path: &str) -> Option<String> {
        match value {
            Value::Object(map) => {
                if map.contains_key("default") {
                    return Some(path.to_owned());
                }
                map.iter()
                    .find_map(|(k, v)| find_default(v, &format!("{path}.{k}")))
            }
            Value::Array(items) => items.iter().find_map(|v| find_default(v, path)),
            _ => None,
        }
    }
    for crd in sluice::api::crds() {
        let value = serde_json::to_value(&crd).unwrap();
        assert_eq!(
            find_default(&value, ""),
            None,
            "{:?} has a schema default",
            crd.metadata.name
        );
    }
}

#[test]
fn every_kind_has_status_subresource_category_short_name_and_columns() {
    for crd in sluice::api::crds() {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        assert!(
            crd.spec
                .names
                .categories
                .as_ref()
                .unwrap()
                .contains(&"sluice".to_owned())
        );
        assert_eq!(crd.spec.names.short_names.as_ref().map(Vec::len), Some(1));
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(
            columns.iter().any(|c| c.name == "Ready"),
            "{:?}",
            crd.metadata.name
        );
    }
}

fn assert_accepts(file: &str, object: Value) {
    if let Err(errors) = Validator::new().validate(&schema(file), &object, None) {
        panic!("{file} rejected {object}: {errors:?}");
    }
}

fn assert_rejects(file: &str, object: Value, message: &str) {
    match Validator::new().validate(&schema(file), &object, None) {
        Ok(()) => panic!("{file} accepted {object}"),
        Err(errors) => assert!(
            errors
                .as_slice()
                .iter()
                .any(|e| e.message.contains(message)),
            "{file}: expected {message:?}, got {errors:?}"
        ),
    }
}

fn flow(spec: Value) -> Value {
    json!({"apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow", "metadata": {"name": "f", "namespace": "n"}, "spec": spec})
}

fn cluster_flow(spec: Value) -> Value {
    json!({"apiVersion": "logging.sluice.dev/v1alpha1", "kind": "ClusterFlow", "metadata": {"name": "f"}, "spec": spec})
}

fn output(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "logging.sluice.dev/v1alpha1", "kind": kind, "metadata": {"name": "o", "namespace": "n"}, "spec": spec})
}

fn logging(spec: Value) -> Value {
    json!({"apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging", "metadata": {"name": "main"}, "spec": spec})
}

const FLOWS: &str = "flows.logging.sluice.dev.yaml";
const CLUSTER_FLOWS: &str = "clusterflows.logging.sluice.dev.yaml";
const OUTPUTS: &str = "outputs.logging.sluice.dev.yaml";
const CLUSTER_OUTPUTS: &str = "clusteroutputs.logging.sluice.dev.yaml";
const LOGGINGS: &str = "loggings.logging.sluice.dev.yaml";

#[test]
fn a_match_entry_holds_exactly_one_of_select_or_exclude() {
    let message = "exactly one of select or exclude";
    for (file, wrap) in [
        (FLOWS, flow as fn(Value) -> Value),
        (CLUSTER_FLOWS, cluster_flow),
    ] {
        assert_accepts(
            file,
            wrap(json!({"match": [{"select": {"labels": {"app": "a"}}}, {"exclude": {}}]})),
        );
        assert_rejects(
            file,
            wrap(json!({"match": [{"select": {}, "exclude": {}}]})),
            message,
        );
        assert_rejects(file, wrap(json!({"match": [{}]})), message);
    }
}

#[test]
fn a_filter_sets_exactly_one_kind() {
    let message = "exactly one of grep, recordTransformer, parser or dedot";
    assert_accepts(
        FLOWS,
        flow(
            json!({"filters": [{"dedot": {}}, {"grep": {"regexp": [{"key": "a", "pattern": "b"}]}}]}),
        ),
    );
    assert_rejects(
        FLOWS,
        flow(json!({"filters": [{"dedot": {}, "grep": {}}]})),
        message,
    );
    assert_rejects(FLOWS, flow(json!({"filters": [{}]})), message);
}

#[test]
fn a_regexp_parser_needs_an_expression() {
    let message = "format regexp needs an expression";
    assert_accepts(
        FLOWS,
        flow(json!({"filters": [{"parser": {"keyName": "m", "format": "json"}}]})),
    );
    assert_accepts(
        FLOWS,
        flow(
            json!({"filters": [{"parser": {"keyName": "m", "format": "regexp", "expression": "^(?<a>.*)$"}}]}),
        ),
    );
    assert_rejects(
        FLOWS,
        flow(json!({"filters": [{"parser": {"keyName": "m", "format": "regexp"}}]})),
        message,
    );
}

/// How many branches of the spec's `oneOf` the object's spec satisfies. The branches hold
/// nothing but `required` (checked here), so presence of the named fields decides.
fn one_of_branches_matched(file: &str, object: &Value) -> usize {
    let branches = schema(file)["properties"]["spec"]["oneOf"].clone();
    let branches = branches.as_array().expect("spec has a oneOf");
    branches
        .iter()
        .filter(|branch| {
            let keys: Vec<&String> = branch.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["required"], "{branch}");
            branch["required"]
                .as_array()
                .unwrap()
                .iter()
                .all(|name| object["spec"].get(name.as_str().unwrap()).is_some())
        })
        .count()
}

#[test]
fn an_output_sets_exactly_one_kind() {
    for (file, kind) in [(OUTPUTS, "Output"), (CLUSTER_OUTPUTS, "ClusterOutput")] {
        let branches = schema(file)["properties"]["spec"]["oneOf"].clone();
        let required: Vec<&str> = branches
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["required"].as_array().unwrap())
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(required, sluice::api::OutputSpec::KINDS, "{file}");
        for one in [
            json!({"nullOutput": {}}),
            json!({"stdout": {}, "buffer": {"flushInterval": "5s"}}),
            json!({"file": {"path": "/buffers/x"}, "loggingRef": "main"}),
        ] {
            let object = output(kind, one);
            assert_eq!(one_of_branches_matched(file, &object), 1, "{object}");
            assert_accepts(file, object);
        }
        for wrong in [
            json!({"nullOutput": {}, "stdout": {}}),
            json!({"buffer": {}}),
        ] {
            assert_ne!(
                one_of_branches_matched(file, &output(kind, wrong.clone())),
                1,
                "{wrong}"
            );
        }
    }
}

#[test]
fn the_buffer_volume_is_one_of_pvc_or_empty_dir() {
    let message = "exactly one of persistentVolumeClaim or emptyDir";
    let with_volume = |volume: Value| {
        logging(json!({"controlNamespace": "logging", "aggregator": {"bufferVolume": volume}}))
    };
    assert_accepts(LOGGINGS, with_volume(json!({"emptyDir": {}})));
    assert_accepts(
        LOGGINGS,
        with_volume(json!({"persistentVolumeClaim": {"size": "5Gi"}})),
    );
    assert_rejects(
        LOGGINGS,
        with_volume(json!({"emptyDir": {}, "persistentVolumeClaim": {}})),
        message,
    );
    assert_rejects(LOGGINGS, with_volume(json!({})), message);
}

#[test]
fn existing_tls_secrets_go_with_mode_existing_only() {
    let with_tls = |tls: Value| logging(json!({"controlNamespace": "logging", "tls": tls}));
    let existing = json!({"serverSecretName": "s", "clientSecretName": "c"});
    assert_accepts(
        LOGGINGS,
        with_tls(json!({"mode": "Existing", "existing": existing})),
    );
    assert_accepts(LOGGINGS, with_tls(json!({"mode": "Disabled"})));
    assert_rejects(
        LOGGINGS,
        with_tls(json!({"mode": "Managed", "existing": existing})),
        "only used with mode Existing",
    );
    assert_rejects(
        LOGGINGS,
        with_tls(json!({"mode": "Existing"})),
        "needs the existing Secret names",
    );
}

#[test]
fn the_control_namespace_is_immutable() {
    let old = logging(json!({"controlNamespace": "logging"}));
    let same = logging(json!({"controlNamespace": "logging", "watchNamespaces": ["a"]}));
    let moved = logging(json!({"controlNamespace": "elsewhere"}));
    let validator = Validator::new();
    assert!(
        validator
            .validate(&schema(LOGGINGS), &same, Some(&old))
            .is_ok()
    );
    let errors = validator
        .validate(&schema(LOGGINGS), &moved, Some(&old))
        .unwrap_err();
    assert!(
        errors
            .as_slice()
            .iter()
            .any(|e| e.message.contains("controlNamespace is immutable")),
        "{errors:?}"
    );
}

#[test]
fn enumerations_are_closed_in_the_schema() {
    let tls = &schema(LOGGINGS)["properties"]["spec"]["properties"]["tls"]["properties"];
    let values = |field: &str| -> Vec<String> {
        tls[field]["enum"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(values("mode"), ["Managed", "Existing", "Disabled"]);
    assert_eq!(
        values("keyAlgorithm"),
        [
            "EcdsaP256",
            "EcdsaP384",
            "Rsa2048",
            "Rsa3072",
            "Rsa4096",
            "Ed25519"
        ]
    );
    assert_eq!(values("minVersion"), ["TLS1_2", "TLS1_3"]);
}

#[test]
fn api_reference_matches_the_schemas() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == sluice::cli::api_docs::markdown(&sluice::api::crds()),
        "docs/api.md is stale: run `cargo run -p sluice -- crds --out-dir crds --api-docs docs/api.md`"
    );
}

/// Every `…SecretRef.name` in every CRD, with its schema.
fn secret_ref_names(value: &Value, path: &str, found: &mut Vec<(String, Value)>) {
    if let Some(properties) = value.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            let at = format!("{path}.{key}");
            if key.ends_with("SecretRef") {
                found.push((at.clone(), child["properties"]["name"].clone()));
            }
            secret_ref_names(child, &at, found);
        }
    }
    if let Some(items) = value.get("items") {
        secret_ref_names(items, &format!("{path}[]"), found);
    }
}

#[test]
fn secret_names_are_names_the_api_server_accepts() {
    let mut found = Vec::new();
    for file in [OUTPUTS, CLUSTER_OUTPUTS, LOGGINGS] {
        secret_ref_names(&schema(file), file, &mut found);
    }
    assert!(found.len() > 10, "{found:?}");
    for (path, name) in found {
        assert_eq!(name["maxLength"], 253, "{path}");
        let pattern = name["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no pattern"));
        let regex = regex::Regex::new(pattern).unwrap();
        for good in ["creds", "a.b-c", "0"] {
            assert!(regex.is_match(good), "{path}: {good}");
        }
        // A space is what made every Logging's reconcile fail (`invalid uri character`).
        for bad in ["a b", "Creds", "-a", "a.", "a/b", ""] {
            assert!(!regex.is_match(bad), "{path}: {bad}");
        }
    }
}

/// Every property schema whose name satisfies `wanted`, anywhere in a CRD schema.
fn properties_where(
    value: &Value,
    path: &str,
    wanted: &dyn Fn(&str) -> bool,
    found: &mut Vec<(String, Value)>,
) {
    if let Some(properties) = value.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            let at = format!("{path}.{key}");
            if wanted(key) {
                found.push((at.clone(), child.clone()));
            }
            properties_where(child, &at, wanted, found);
        }
    }
    if let Some(items) = value.get("items") {
        properties_where(items, &format!("{path}[]"), wanted, found);
    }
}

/// Asserts `schema` is bounded to 253 characters and its pattern takes `good`, refuses `bad`.
fn assert_patterned(path: &str, schema: &Value, good: &[&str], bad: &[&str]) {
    assert_eq!(schema["maxLength"], 253, "{path}");
    let pattern = schema["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no pattern"));
    let regex = regex::Regex::new(pattern).unwrap();
    for value in good {
        assert!(regex.is_match(value), "{path}: {value}");
    }
    for value in bad {
        assert!(!regex.is_match(value), "{path}: {value}");
    }
}

#[test]
fn secret_keys_are_keys_the_api_server_accepts() {
    let mut found = Vec::new();
    for file in [OUTPUTS, CLUSTER_OUTPUTS, LOGGINGS] {
        properties_where(
            &schema(file),
            file,
            &|k| k.ends_with("SecretRef"),
            &mut found,
        );
    }
    assert!(found.len() > 10, "{found:?}");
    for (path, reference) in found {
        assert_patterned(
            &format!("{path}.key"),
            &reference["properties"]["key"],
            &["password", "tls.crt", "AWS_KEY-1"],
            &["a b", "a/b", "", "ключ"],
        );
    }
}

#[test]
fn existing_tls_secret_names_and_logging_refs_are_object_names() {
    let mut found = Vec::new();
    properties_where(
        &schema(LOGGINGS),
        LOGGINGS,
        &|k| k == "serverSecretName" || k == "clientSecretName",
        &mut found,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    let mut refs = Vec::new();
    for file in [FLOWS, CLUSTER_FLOWS, OUTPUTS, CLUSTER_OUTPUTS] {
        let before = refs.len();
        properties_where(&schema(file), file, &|k| k == "loggingRef", &mut refs);
        assert_eq!(refs.len(), before + 1, "{file}: loggingRef");
    }
    for (path, name) in found.iter().chain(&refs) {
        assert_patterned(
            path,
            name,
            &["main", "a.b-c", "0"],
            &["a b", "Main", "-a", "a.", "a/b", ""],
        );
    }
}
