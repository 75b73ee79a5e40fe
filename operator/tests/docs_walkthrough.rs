//! What a new user applies as documented: examples/ in kubectl's order references nothing
//! that does not exist yet (so a fresh apply raises no Warning Event), and the kind
//! walkthrough's stdout demo in docs/install.md resolves next to examples/ without problems.

use std::path::PathBuf;

use serde_json::Value;
use sluice::cli::input;
use sluice::model::{self, Kind, ObjectKey};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// examples/ as `kubectl apply -f examples/` sends it: files by name, documents in order.
fn examples_in_apply_order() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            let documents: Vec<Value> =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file:?}: {e}"));
            documents
        })
        .filter(|d| !d.is_null())
        .collect()
}

/// (kind, namespace, name) of every object `object` refers to: its namespace, the Secrets its
/// `*SecretRef`s name, the Outputs and ClusterOutputs its flows send to.
fn references(object: &Value, control_namespace: &str) -> Vec<(String, String, String)> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut found = Vec::new();
    if !namespace.is_empty() && namespace != control_namespace {
        found.push(("Namespace".to_owned(), String::new(), namespace.to_owned()));
    }
    let secrets_in = if kind == "ClusterOutput" {
        control_namespace
    } else {
        namespace
    };
    fn walk(
        value: &Value,
        secrets_in: &str,
        namespace: &str,
        found: &mut Vec<(String, String, String)>,
    ) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let names = || -> Vec<String> {
                        match value {
                            Value::String(name) => vec![name.clone()],
                            Value::Array(items) => items
                                .iter()
                                .filter_map(|i| i.as_str().map(str::to_owned))
                                .collect(),
                            _ => Vec::new(),
                        }
                    };
                    if key.ends_with("SecretRef")
                        && let Some(name) = value["name"].as_str()
                    {
                        found.push(("Secret".to_owned(), secrets_in.to_owned(), name.to_owned()));
                    } else if key == "localOutputRefs" {
                        for name in names() {
                            found.push(("Output".to_owned(), namespace.to_owned(), name));
                        }
                    } else if key == "globalOutputRefs" || key == "errorOutputRef" {
                        for name in names() {
                            found.push(("ClusterOutput".to_owned(), String::new(), name));
                        }
                    }
                    walk(value, secrets_in, namespace, found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, secrets_in, namespace, found);
                }
            }
            _ => {}
        }
    }
    walk(&object["spec"], secrets_in, namespace, &mut found);
    found
}

#[test]
fn examples_reference_only_what_was_applied_before() {
    let objects = examples_in_apply_order();
    let control_namespace = objects
        .iter()
        .find(|o| o["kind"] == "Logging")
        .and_then(|l| l["spec"]["controlNamespace"].as_str())
        .unwrap()
        .to_owned();
    let mut applied: Vec<(String, String, String)> = Vec::new();
    let mut checked = 0;
    for object in &objects {
        for reference in references(object, &control_namespace) {
            checked += 1;
            assert!(
                applied.contains(&reference),
                "{} {} refers to {reference:?} before it is applied: a fresh `kubectl apply -f examples/` would raise a Warning",
                object["kind"],
                object["metadata"]["name"]
            );
        }
        applied.push((
            object["kind"].as_str().unwrap().to_owned(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            object["metadata"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    // Every kind of reference is exercised, so the check above can fail.
    assert!(checked > 20, "{checked}");
    assert_eq!(objects.last().unwrap()["kind"], "Logging");
}

/// Secrets written with `data`: kubectl keeps `stringData` in its last-applied annotation while
/// the API server stores only `data`, so every re-apply would report `configured`.
#[test]
fn example_secrets_use_data() {
    for object in examples_in_apply_order() {
        if object["kind"] == "Secret" {
            assert!(
                object["stringData"].is_null(),
                "{}",
                object["metadata"]["name"]
            );
            assert!(object["data"].is_object(), "{}", object["metadata"]["name"]);
        }
    }
}

/// The manifest the walkthrough applies with `kubectl apply -f - <<'EOF'`.
fn walkthrough_manifest() -> String {
    let doc = std::fs::read_to_string(root().join("docs/install.md")).unwrap();
    let section = &doc[doc
        .find("## Five minutes on kind")
        .expect("the kind walkthrough")..];
    let start = section
        .find("kubectl apply -f - <<'EOF'\n")
        .expect("its manifest")
        + 27;
    let end = start + section[start..].find("\nEOF\n").unwrap();
    section[start..end].to_owned()
}

#[test]
fn the_walkthrough_demo_reaches_its_stdout_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.yaml"), walkthrough_manifest()).unwrap();
    let loaded = input::load(&[root().join("examples"), dir.path().to_owned()]).unwrap();
    let resolution = model::resolve(&loaded.objects.inventory());
    let flow = ObjectKey::namespaced(Kind::Flow, "demo", "everything");
    let console = ObjectKey::cluster(Kind::ClusterOutput, "console");
    for key in [&flow, &console] {
        assert_eq!(resolution.problems.get(key), None, "{key:?}");
    }
    let pipeline = resolution
        .pipelines
        .iter()
        .find(|p| p.logging == "main")
        .unwrap();
    let plan = pipeline
        .flows
        .iter()
        .find(|f| f.key == flow)
        .expect("the Logging collects the demo namespace");
    assert_eq!(plan.outputs, [console]);
}
