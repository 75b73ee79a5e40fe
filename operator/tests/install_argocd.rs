//! deploy/argocd: the health check runs under LuaJIT (Lua 5.1, the dialect of Argo CD's
//! gopher-lua) the way Argo CD calls it, a global `obj` in and a `{status, message}` table
//! out, against statuses the operator writes; argocd-cm.yaml carries exactly that script for
//! every Sluice kind; the Applications use server-side apply and diff.

use std::path::PathBuf;

use mlua::{Lua, Table};
use serde_json::{Value, json};

fn argocd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/argocd")
}

fn script() -> String {
    std::fs::read_to_string(argocd().join("health.lua")).unwrap()
}

fn to_lua(lua: &Lua, value: &Value) -> mlua::Value {
    match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        // gopher-lua has only float numbers, as LuaJIT.
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap()),
        Value::String(s) => mlua::Value::String(lua.create_string(s).unwrap()),
        Value::Array(items) => {
            let table = lua.create_table().unwrap();
            for (i, item) in items.iter().enumerate() {
                table.set(i + 1, to_lua(lua, item)).unwrap();
            }
            mlua::Value::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table().unwrap();
            for (k, v) in map {
                table.set(k.as_str(), to_lua(lua, v)).unwrap();
            }
            mlua::Value::Table(table)
        }
    }
}

/// (status, message) the script gives for `object`.
fn health(object: Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("obj", to_lua(&lua, &object)).unwrap();
    let result: Table = lua.load(script()).set_name("health.lua").eval().unwrap();
    (
        result.get("status").unwrap(),
        result.get("message").unwrap(),
    )
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-12-01T00:00:00Z"})
}

fn logging(generation: i64, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
        "metadata": {"name": "main", "generation": generation},
        "spec": {"controlNamespace": "sluice-system"}
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn ready_logging() -> Vec<Value> {
    vec![
        condition(
            "Ready",
            "True",
            "PipelineReady",
            "agents and aggregator run",
        ),
        condition("Degraded", "False", "NoProblems", ""),
        condition("CertificatesReady", "True", "CertificatesValid", ""),
        condition("AgentReady", "True", "AllPodsReady", ""),
        condition("AggregatorReady", "True", "AllReplicasReady", ""),
    ]
}

#[test]
fn healthy_when_ready_for_the_current_generation() {
    let (status, message) = health(logging(
        3,
        Some(json!({"observedGeneration": 3, "conditions": ready_logging()})),
    ));
    assert_eq!(status, "Healthy");
    assert!(message.contains("PipelineReady"), "{message}");
}

#[test]
fn progressing_without_status_or_for_an_older_generation() {
    let (status, message) = health(logging(1, None));
    assert_eq!(status, "Progressing");
    assert!(!message.is_empty());

    // Ready, but for generation 2: the spec changed since.
    let (status, message) = health(logging(
        3,
        Some(json!({"observedGeneration": 2, "conditions": ready_logging()})),
    ));
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 3"), "{message}");

    // A stale Degraded is no verdict on the new spec either.
    let mut conditions = ready_logging();
    conditions[1] = condition("Degraded", "True", "SecretNotFound", "old problem");
    let (status, _) = health(logging(
        3,
        Some(json!({"observedGeneration": 2, "conditions": conditions})),
    ));
    assert_eq!(status, "Progressing");
}

#[test]
fn progressing_while_workloads_roll_out() {
    let mut conditions = ready_logging();
    conditions[0] = condition("Ready", "False", "AgentNotReady", "2 of 3 agent pods ready");
    conditions[3] = condition("AgentReady", "False", "PodsNotReady", "2 of 3");
    let (status, message) = health(logging(
        1,
        Some(json!({"observedGeneration": 1, "conditions": conditions})),
    ));
    assert_eq!(status, "Progressing");
    assert_eq!(message, "AgentNotReady: 2 of 3 agent pods ready");
}

#[test]
fn degraded_only_for_problems_someone_has_to_fix() {
    let mut conditions = ready_logging();
    conditions[0] = condition("Ready", "False", "SecretNotFound", "");
    conditions[1] = condition(
        "Degraded",
        "True",
        "SecretNotFound",
        "spec.aggregator.tls.secretName: Secret sluice-system/mine not found",
    );
    let (status, message) = health(logging(
        4,
        Some(json!({"observedGeneration": 4, "conditions": conditions})),
    ));
    assert_eq!(status, "Degraded");
    assert!(
        message.starts_with("SecretNotFound: spec.aggregator"),
        "{message}"
    );

    // A second Logging claiming a control namespace an older one holds.
    let mut conditions = ready_logging();
    conditions[0] = condition(
        "Ready",
        "False",
        "ControlNamespaceInUse",
        "nothing was applied",
    );
    conditions[1] = condition(
        "Degraded",
        "True",
        "ControlNamespaceInUse",
        "spec.controlNamespace: …",
    );
    let (status, _) = health(logging(
        1,
        Some(json!({"observedGeneration": 1, "conditions": conditions})),
    ));
    assert_eq!(status, "Degraded");

    // Certificates not issued yet, with no problem: the operator is still at work.
    let mut conditions = ready_logging();
    conditions[0] = condition("Ready", "False", "CertificatesNotReady", "");
    conditions[2] = condition("CertificatesReady", "False", "NotIssued", "CA missing");
    let (status, message) = health(logging(
        1,
        Some(json!({"observedGeneration": 1, "conditions": conditions})),
    ));
    assert_eq!(status, "Progressing");
    assert_eq!(message, "CertificatesNotReady");
}

/// Warnings are choices or notices, not faults: the resource stays Healthy and the message
/// carries the warning (TLS disabled used to show Degraded forever).
#[test]
fn warnings_leave_the_resource_healthy() {
    // TLS disabled, as the operator reports it.
    let mut conditions = ready_logging();
    conditions[2] = condition(
        "CertificatesReady",
        "False",
        "TlsDisabled",
        "TLS is disabled: agents send records to the aggregator in plain text",
    );
    conditions.push(condition(
        "Warning",
        "True",
        "TlsDisabled",
        "spec.tls.mode: TLS is disabled",
    ));
    let (status, message) = health(logging(
        2,
        Some(json!({"observedGeneration": 2, "conditions": conditions})),
    ));
    assert_eq!(status, "Healthy");
    assert!(message.contains("warning: TlsDisabled"), "{message}");

    // A deprecation, or any other warning, on any kind.
    for kind in ["Logging", "Flow", "ClusterFlow", "Output", "ClusterOutput"] {
        let object = json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x", "generation": 1},
            "status": {"observedGeneration": 1, "conditions": [
                condition("Ready", "True", "Accepted", "rendered by Logging main"),
                condition("Degraded", "False", "NoProblems", "nothing to fix; see the Warning condition"),
                condition("Warning", "True", "FieldDeprecated", "spec.old: use spec.new"),
            ]}
        });
        let (status, message) = health(object);
        assert_eq!(status, "Healthy", "{kind}");
        assert!(message.contains("FieldDeprecated"), "{kind}: {message}");
    }
}

#[test]
fn flows_and_outputs_use_ready_and_degraded() {
    for kind in ["Flow", "ClusterFlow", "Output", "ClusterOutput"] {
        let object = |conditions: Vec<Value>| {
            json!({
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": kind,
                "metadata": {"name": "x", "namespace": "team-a", "generation": 7},
                "spec": {},
                "status": {"observedGeneration": 7, "conditions": conditions}
            })
        };
        let accepted = object(vec![
            condition("Ready", "True", "Accepted", "rendered by Logging main"),
            condition("Degraded", "False", "NoProblems", ""),
        ]);
        assert_eq!(health(accepted).0, "Healthy", "{kind}");
        let broken = object(vec![
            condition("Ready", "False", "OutputNotFound", ""),
            condition(
                "Degraded",
                "True",
                "OutputNotFound",
                "spec.localOutputRefs[0]",
            ),
        ]);
        assert_eq!(health(broken).0, "Degraded", "{kind}");
        // Valid, but no applied Logging renders it: nothing runs it, and it waits for a change
        // elsewhere (a Logging collecting its namespace, a flow using it, its Logging fixed).
        for reason in sluice::controller::status::NOT_RENDERED_REASONS {
            let waiting = object(vec![
                condition(
                    "Ready",
                    "False",
                    reason,
                    "no applied Logging collects team-a",
                ),
                condition("Degraded", "False", "NoProblems", ""),
                condition("Warning", "False", "NoWarnings", ""),
            ]);
            assert_eq!(health(waiting).0, "Suspended", "{kind} {reason}");
        }
        let undecided = object(vec![condition("Degraded", "False", "NoProblems", "")]);
        assert_eq!(health(undecided).0, "Progressing", "{kind}");
    }
}

#[test]
fn the_argocd_cm_snippet_carries_exactly_the_script_for_every_kind() {
    let text = std::fs::read_to_string(argocd().join("argocd-cm.yaml")).unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(config["kind"], "ConfigMap");
    assert_eq!(config["metadata"]["name"], "argocd-cm");
    let data = config["data"].as_object().unwrap();
    let mut kinds: Vec<String> = sluice::api::crds()
        .iter()
        .map(|crd| {
            format!(
                "resource.customizations.health.{}_{}",
                crd.spec.group, crd.spec.names.kind
            )
        })
        .collect();
    kinds.sort();
    let mut keys: Vec<String> = data.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, kinds);
    for (key, lua) in data {
        assert_eq!(lua.as_str(), Some(script().as_str()), "{key}");
    }
}

#[test]
fn applications_apply_and_diff_server_side() {
    let text = std::fs::read_to_string(argocd().join("application.yaml")).unwrap();
    let applications: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert!(!applications.is_empty());
    for app in applications {
        assert_eq!(app["kind"], "Application");
        assert!(
            app["spec"]["syncPolicy"]["syncOptions"]
                .as_array()
                .unwrap()
                .contains(&json!("ServerSideApply=true"))
        );
        assert_eq!(
            app["metadata"]["annotations"]["argocd.argoproj.io/compare-options"],
            "ServerSideDiff=true"
        );
        let path = app["spec"]["source"]["path"].as_str().unwrap();
        assert!(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path)
                .is_dir(),
            "{path}"
        );
    }
}
