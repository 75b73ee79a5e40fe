//! Shared by the install_* tests: deploy/ rendered by `kubectl kustomize`, the chart rendered
//! by real Helm binaries, and an evaluator of the rendered RBAC that answers as the API
//! server's authorizer would (`kubectl auth can-i`), without a cluster.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

pub fn chart_dir() -> PathBuf {
    root().join("charts/sluice")
}

/// A stream of YAML documents as objects, empty documents left out.
pub fn documents(text: &str, what: &str) -> Vec<Value> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// `kubectl kustomize DIR` as objects, or `None` when kubectl is missing.
pub fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("kubectl not on PATH: skipping the kustomize check of {dir:?}");
            return None;
        }
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {dir:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    Some(documents(&text, &format!("{dir:?}")))
}

/// deploy/ itself and every overlay.
pub fn installs() -> Vec<PathBuf> {
    let mut dirs = vec![deploy_dir()];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    assert!(!overlays.is_empty());
    dirs.extend(overlays);
    dirs
}

/// The Helm binaries to render the chart with, by major version: `SLUICE_HELM3` and
/// `SLUICE_HELM4`, which `.ci/helm` sets up from PyPI. Under CI both must be there; elsewhere
/// a missing one is skipped with a notice.
pub fn helms() -> Vec<(&'static str, PathBuf)> {
    let mut found = Vec::new();
    for (name, variable) in [("helm 3", "SLUICE_HELM3"), ("helm 4", "SLUICE_HELM4")] {
        match std::env::var_os(variable).map(PathBuf::from) {
            Some(path) if path.is_file() => found.push((name, path)),
            _ if std::env::var_os("CI").is_some() => {
                panic!("{variable} must name a {name} binary under CI (.ci/helm installs it)")
            }
            _ => eprintln!("{variable} not set: skipping the {name} checks"),
        }
    }
    found
}

/// `helm lint --strict` then `helm template`, release `sluice` in `namespace`, with `--set`
/// arguments; the rendered objects.
pub fn helm_template(helm: &Path, namespace: &str, set: &[&str]) -> Vec<Value> {
    let mut values = Vec::new();
    for assignment in set {
        values.push("--set".to_owned());
        values.push((*assignment).to_owned());
    }
    let lint = Command::new(helm)
        .args(["lint", "--strict", "--namespace", namespace])
        .arg(chart_dir())
        .args(&values)
        .output()
        .unwrap_or_else(|e| panic!("{helm:?}: {e}"));
    assert!(
        lint.status.success(),
        "{helm:?} lint --strict {set:?}: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let output = Command::new(helm)
        .args(["template", "sluice", "--namespace", namespace])
        .arg(chart_dir())
        .args(&values)
        .output()
        .unwrap_or_else(|e| panic!("{helm:?}: {e}"));
    assert!(
        output.status.success(),
        "{helm:?} template {set:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    documents(&text, &format!("{helm:?} template {set:?}"))
}

pub fn find<'a>(
    objects: &'a [Value],
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> &'a Value {
    try_find(objects, kind, namespace, name)
        .unwrap_or_else(|| panic!("no {kind} {namespace:?}/{name}"))
}

pub fn try_find<'a>(
    objects: &'a [Value],
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a Value> {
    objects.iter().find(|o| {
        o["kind"] == kind
            && o["metadata"]["name"] == name
            && o["metadata"]["namespace"].as_str() == namespace
    })
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One request, as the authorizer sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// `pods`, or with a subresource `nodes/proxy`.
    pub resource: &'a str,
    /// `None`: cluster-scoped, or across all namespaces.
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Whether a ServiceAccount may make the request under the RBAC objects among `objects`:
/// the rules of every Role and ClusterRole bound to it (directly, or through the groups every
/// ServiceAccount is in), a RoleBinding counting only in its own namespace. A binding to a
/// role the objects do not contain fails the test: its rules would be unknown here.
pub fn can(objects: &[Value], account: (&str, &str), request: Request<'_>) -> bool {
    objects.iter().any(|binding| {
        let in_scope = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => true,
            Some("RoleBinding") => {
                request.namespace.is_some()
                    && binding["metadata"]["namespace"].as_str() == request.namespace
            }
            _ => false,
        };
        if !in_scope || !subjects_include(binding, account) {
            return false;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let role_namespace = match role_kind {
            "Role" => binding["metadata"]["namespace"].as_str(),
            _ => None,
        };
        let role = try_find(objects, role_kind, role_namespace, role_name).unwrap_or_else(|| {
            panic!("a binding names {role_kind} {role_name}, which the install does not contain")
        });
        assert!(
            role["aggregationRule"].is_null(),
            "aggregated ClusterRole {role_name}: its rules are not in the install"
        );
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule_allows(rule, &request))
    })
}

fn subjects_include(binding: &Value, (namespace, name): (&str, &str)) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|subject| match subject["kind"].as_str() {
            Some("ServiceAccount") => subject["namespace"] == namespace && subject["name"] == name,
            Some("User") => {
                subject["name"] == format!("system:serviceaccount:{namespace}:{name}").as_str()
            }
            Some("Group") => [
                "system:authenticated".to_owned(),
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ]
            .iter()
            .any(|group| subject["name"] == group.as_str()),
            _ => false,
        })
}

fn rule_allows(rule: &Value, request: &Request<'_>) -> bool {
    let any = |list: &Value, wanted: &str| strings(list).iter().any(|x| x == wanted || x == "*");
    let resource_matches = strings(&rule["resources"]).iter().any(|r| {
        r == request.resource
            || r == "*"
            || request
                .resource
                .split_once('/')
                .is_some_and(|(_, sub)| r == &format!("*/{sub}"))
    });
    let names = strings(&rule["resourceNames"]);
    any(&rule["apiGroups"], request.group)
        && resource_matches
        && any(&rule["verbs"], request.verb)
        && (names.is_empty() || request.name.is_some_and(|n| names.iter().any(|x| x == n)))
}

/// The operator's Deployment (the only one an install has), its namespace and ServiceAccount.
pub fn operator_deployment(objects: &[Value]) -> (&Value, String, String) {
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 1, "one operator Deployment");
    let deployment = deployments[0];
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_owned();
    (deployment, namespace, account)
}

/// The operator's options, through its own flag parser, from the Deployment's args.
pub fn operator_options(deployment: &Value, namespace: &str) -> sluice::controller::Options {
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    sluice::cli::run::container_options(&args, namespace)
        .unwrap_or_else(|e| panic!("the Deployment's args: {e}"))
}
