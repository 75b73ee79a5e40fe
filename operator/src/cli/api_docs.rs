//! Generates `docs/api.md` from the CRD schemas, so the reference cannot drift from the code.

use std::fmt::Write;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// An example manifest for each kind, taken from the shipped examples.
const EXAMPLES: [(&str, &str); 5] = [
    ("Logging", include_str!("../../../examples/90-logging.yaml")),
    (
        "ClusterOutput",
        include_str!("../../../examples/10-cluster-outputs.yaml"),
    ),
    (
        "ClusterFlow",
        include_str!("../../../examples/20-cluster-flows.yaml"),
    ),
    (
        "Flow",
        include_str!("../../../examples/30-team-payments.yaml"),
    ),
    (
        "Output",
        include_str!("../../../examples/40-team-storefront.yaml"),
    ),
];

/// The Markdown reference for the given CRDs.
pub fn markdown(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::from(
        "# API reference: `logging.sluice.dev/v1alpha1`\n\n\
         Generated from the CRD schemas by `cargo run -p sluice -- crds --api-docs docs/api.md`; \
         a test fails when it is stale. Defaults are applied by Sluice in memory and never written \
         into your objects, so GitOps tools see no drift. Every kind is in the `sluice` category \
         (`kubectl get sluice`) and has a `status` with `observedGeneration`, `conditions` \
         (`Ready`, `Degraded`, `Warning`, and on Logging `CertificatesReady`, `AgentReady`, `AggregatorReady`) \
         and `problems`.\n\n",
    );
    for crd in crds {
        let names = &crd.spec.names;
        let _ = writeln!(out, "- [{}](#{})", names.kind, names.kind.to_lowercase());
    }
    for crd in crds {
        let names = &crd.spec.names;
        let version = &crd.spec.versions[0];
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            continue;
        };
        let schema = serde_json::to_value(schema).unwrap_or_default();
        let _ = write!(
            out,
            "\n## {}\n\n{}\n\nScope: {}. Short name: `{}`.\n\n",
            names.kind,
            schema["description"].as_str().unwrap_or_default(),
            crd.spec.scope,
            names
                .short_names
                .as_ref()
                .and_then(|s| s.first())
                .map(String::as_str)
                .unwrap_or("-"),
        );
        out.push_str("| Field | Type | Description |\n|---|---|---|\n");
        fields(&mut out, "spec", &schema["properties"]["spec"]);
        if let Some((_, example)) = EXAMPLES.iter().find(|(kind, _)| *kind == names.kind) {
            let _ = write!(
                out,
                "\nExample (from `examples/`):\n\n```yaml\n{}\n```\n",
                first_document_of_kind(example, &names.kind)
            );
        }
    }
    out
}

fn first_document_of_kind<'a>(text: &'a str, kind: &str) -> &'a str {
    text.split("\n---\n")
        .find(|doc| doc.contains(&format!("kind: {kind}\n")))
        .unwrap_or(text)
        .trim()
}

fn type_of(schema: &Value) -> String {
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
        return format!("one of {}", values.join(", "));
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        return "integer or string".to_owned();
    }
    match schema["type"].as_str() {
        Some("array") => format!("list of {}", type_of(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            format!("map of {}", type_of(&schema["additionalProperties"]))
        }
        Some(kind) => kind.to_owned(),
        None => "object".to_owned(),
    }
}

fn fields(out: &mut String, path: &str, schema: &Value) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        let field = format!("{path}.{name}");
        let description = property["description"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let marker = if required.contains(&name.as_str()) {
            " (required)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{field}`{marker} | {} | {description} |",
            type_of(property)
        );
        let nested = if property["type"] == "array" {
            &property["items"]
        } else {
            property
        };
        let child = if property["type"] == "array" {
            format!("{field}[]")
        } else {
            field
        };
        fields(out, &child, nested);
    }
}
