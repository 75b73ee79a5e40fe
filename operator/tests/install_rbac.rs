//! Least privilege you can show: the RBAC of every install (deploy/ and each overlay through
//! `kubectl kustomize`, the chart over a matrix of values through real Helm 3 and Helm 4),
//! evaluated as the API server's authorizer would (`kubectl auth can-i`). The operator holds
//! no verb on Roles, ClusterRoles or their bindings (so it can neither delete nor rewrite
//! anyone's ClusterRoleBinding), reads Secrets only in its control namespaces and where the
//! install's tenant Secret choice says, and each control namespace's agents can read what
//! they need. The chart renders the same RBAC and Deployment as the matching kustomize install.

mod install_support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use sluice::controller::ControlNamespaces;
use sluice::layout;

use install_support::{
    Request, can, deploy_dir, find, helm_template, helms, installs, kustomize, operator_deployment,
    operator_options,
};

/// Where the admin chose to let the operator read tenant Secrets.
#[derive(Clone, Debug)]
enum TenantSecrets {
    Everywhere,
    Only(&'static [&'static str]),
}

/// What each kustomize install chose; a new overlay must be added here.
fn kustomize_choice(dir: &Path) -> TenantSecrets {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("deploy" | "example" | "all-namespaces") => TenantSecrets::Everywhere,
        Some("tenant-secret-namespaces") => {
            TenantSecrets::Only(&["payments", "storefront", "data"])
        }
        other => panic!("{other:?}: say which tenant Secrets this overlay lets the operator read"),
    }
}

const RBAC_RESOURCES: [&str; 4] = [
    "clusterrolebindings",
    "clusterroles",
    "rolebindings",
    "roles",
];
const EVERY_VERB: [&str; 10] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "bind",
    "escalate",
];
/// Namespaces no install names, kube-system first.
const ELSEWHERE: [&str; 3] = ["kube-system", "default", "someone-else"];

fn request<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
) -> Request<'a> {
    Request {
        verb,
        group,
        resource,
        namespace,
        name,
    }
}

/// Every property this file promises, for one rendered install.
fn check_least_privilege(what: &str, objects: &[Value], choice: &TenantSecrets) {
    let (deployment, namespace, account) = operator_deployment(objects);
    let operator = (namespace.as_str(), account.as_str());
    let options = operator_options(deployment, &namespace);
    let control: Vec<String> = match &options.control_namespaces {
        ControlNamespaces::Only(names) => names.clone(),
        ControlNamespaces::All => Vec::new(),
    };
    let all = options.control_namespaces == ControlNamespaces::All;
    let mut namespaces: BTreeSet<String> = control.iter().cloned().collect();
    namespaces.extend(ELSEWHERE.map(str::to_owned));
    namespaces.extend(["payments", "storefront", "data"].map(str::to_owned));
    let scopes: Vec<Option<&str>> = std::iter::once(None)
        .chain(namespaces.iter().map(|n| Some(n.as_str())))
        .collect();

    // No verb at all on RBAC objects: not on cluster-admin's binding, not on the agents'.
    for resource in RBAC_RESOURCES {
        for verb in EVERY_VERB {
            for scope in &scopes {
                for name in [
                    None,
                    Some("cluster-admin"),
                    Some("sluice-agent:sluice-system"),
                ] {
                    let asked = request(verb, "rbac.authorization.k8s.io", resource, *scope, name);
                    assert!(
                        !can(objects, operator, asked),
                        "{what}: the operator may {verb} {resource} {name:?} in {scope:?}"
                    );
                }
            }
        }
    }

    // Secrets: read and written in the control namespaces; tenant Secrets read by name where
    // the install chose; never listed elsewhere.
    for namespace in &namespaces {
        let in_control = all || control.contains(namespace);
        let tenant = match choice {
            TenantSecrets::Everywhere => true,
            TenantSecrets::Only(listed) => listed.contains(&namespace.as_str()),
        };
        let get = request("get", "", "secrets", Some(namespace), Some("any"));
        assert_eq!(
            can(objects, operator, get),
            in_control || tenant,
            "{what}: get Secrets in {namespace}"
        );
        for verb in ["list", "watch", "create", "patch", "delete"] {
            let asked = request(verb, "", "secrets", Some(namespace), None);
            assert_eq!(
                can(objects, operator, asked),
                in_control,
                "{what}: {verb} Secrets in {namespace}"
            );
        }
    }
    if let TenantSecrets::Only(_) = choice
        && !all
    {
        assert!(
            !can(
                objects,
                operator,
                request("get", "", "secrets", Some("kube-system"), Some("any"))
            ),
            "{what}: kube-system's Secrets readable though not listed"
        );
    }

    // What only the agents may do, and what the agents of each control namespace need.
    for (group, resource, verb) in [("", "pods", "list"), ("", "nodes/proxy", "get")] {
        assert!(
            !can(
                objects,
                operator,
                request(verb, group, resource, None, None)
            ),
            "{what}: the operator may {verb} {resource}"
        );
    }
    for namespace in &control {
        let agent = (namespace.as_str(), layout::AGENT_SERVICE_ACCOUNT);
        let kubelet_agent = (namespace.as_str(), layout::AGENT_KUBELET_SERVICE_ACCOUNT);
        for account in [agent, kubelet_agent] {
            for resource in ["pods", "namespaces"] {
                for verb in ["get", "list", "watch"] {
                    assert!(
                        can(objects, account, request(verb, "", resource, None, None)),
                        "{what}: agents {account:?} cannot {verb} {resource}"
                    );
                }
            }
        }
        let proxy = request("get", "", "nodes/proxy", None, Some("node-1"));
        assert!(
            can(objects, kubelet_agent, proxy),
            "{what}: {kubelet_agent:?}"
        );
        assert!(
            !can(objects, agent, proxy),
            "{what}: {agent:?} holds nodes/proxy"
        );
        find(
            objects,
            "ClusterRoleBinding",
            None,
            &layout::agent_cluster_role_binding(layout::AGENT_CLUSTER_ROLE, namespace),
        );
    }
}

#[test]
fn every_kustomize_install_holds_least_privilege() {
    for dir in installs() {
        let Some(objects) = kustomize(&dir) else {
            return;
        };
        check_least_privilege(&format!("{dir:?}"), &objects, &kustomize_choice(&dir));
    }
}

/// The evaluator itself: it must see what today's cluster-admin-deleting RBAC allowed, or the
/// checks above prove nothing.
#[test]
fn the_evaluator_sees_a_forbidden_grant() {
    let Some(mut objects) = kustomize(&deploy_dir()) else {
        return;
    };
    let operator = ("sluice-system", "sluice-operator");
    let delete = request(
        "delete",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        None,
        Some("cluster-admin"),
    );
    assert!(!can(&objects, operator, delete));
    let role = objects
        .iter_mut()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "sluice-operator")
        .unwrap();
    role["rules"].as_array_mut().unwrap().push(json!({
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterrolebindings"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"]
    }));
    assert!(can(&objects, operator, delete));
    // A RoleBinding counts only in its namespace; resourceNames only for those names.
    let lease =
        |namespace, name| request("patch", "coordination.k8s.io", "leases", namespace, name);
    assert!(can(
        &objects,
        operator,
        lease(Some("sluice-system"), Some("sluice-operator"))
    ));
    assert!(!can(
        &objects,
        operator,
        lease(Some("sluice-system"), Some("other"))
    ));
    assert!(!can(
        &objects,
        operator,
        lease(Some("kube-system"), Some("sluice-operator"))
    ));
}

/// One chart configuration: the namespace, the `--set` values, the tenant Secret choice they
/// make and the kustomize install that must carry the same RBAC (and Deployment), if any.
struct Case {
    name: &'static str,
    namespace: &'static str,
    set: &'static [&'static str],
    choice: TenantSecrets,
    same_as: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "defaults",
            namespace: "sluice-system",
            set: &[],
            choice: TenantSecrets::Everywhere,
            same_as: Some(""),
        },
        Case {
            name: "ServiceMonitor",
            namespace: "sluice-system",
            set: &["metrics.serviceMonitor.enabled=true"],
            choice: TenantSecrets::Everywhere,
            same_as: Some(""),
        },
        Case {
            name: "extra control namespaces",
            namespace: "sluice-system",
            set: &[
                "controlNamespaces={sluice-system,logging}",
                "logFormat=json",
            ],
            choice: TenantSecrets::Everywhere,
            same_as: Some("overlays/example"),
        },
        Case {
            name: "any namespace",
            namespace: "sluice-system",
            set: &["controlNamespaces={*}"],
            choice: TenantSecrets::Everywhere,
            same_as: Some("overlays/all-namespaces"),
        },
        Case {
            name: "listed tenant Secret namespaces",
            namespace: "sluice-system",
            set: &["rbac.tenantSecretNamespaces={payments,storefront,data}"],
            choice: TenantSecrets::Only(&["payments", "storefront", "data"]),
            same_as: Some("overlays/tenant-secret-namespaces"),
        },
        Case {
            name: "image digest",
            namespace: "sluice-system",
            set: &[
                "image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            choice: TenantSecrets::Everywhere,
            same_as: None,
        },
        Case {
            name: "release namespace other than sluice-system",
            namespace: "observability",
            set: &["controlNamespaces={observability,logs}"],
            choice: TenantSecrets::Everywhere,
            same_as: None,
        },
    ]
}

/// RBAC objects without their labels (Helm adds its own), sorted.
fn rbac(objects: &[Value]) -> Vec<Value> {
    let mut found: Vec<Value> = objects
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding")
            )
        })
        .map(|o| {
            json!({
                "kind": o["kind"],
                "namespace": o["metadata"]["namespace"],
                "name": o["metadata"]["name"],
                "rules": o["rules"],
                "roleRef": o["roleRef"],
                "subjects": o["subjects"],
            })
        })
        .collect();
    found.sort_by_key(|o| o.to_string());
    found
}

/// The Deployment's spec with the flags replaced by what the operator makes of them.
fn deployment_spec(objects: &[Value]) -> Value {
    let (deployment, namespace, _) = operator_deployment(objects);
    let options = operator_options(deployment, &namespace);
    let mut spec = deployment["spec"].clone();
    spec["template"]["spec"]["containers"][0]["args"] = json!(format!(
        "{:?} {:?} {:?}",
        options.control_namespaces,
        options.listen,
        options.lease.map(|l| (l.namespace, l.name))
    ));
    spec
}

#[test]
fn the_chart_rendered_by_helm_3_and_4_holds_least_privilege_and_matches_kustomize() {
    let helms = helms();
    for (version, helm) in &helms {
        for case in cases() {
            let what = format!("{version}, {}", case.name);
            let objects = helm_template(helm, case.namespace, case.set);
            check_least_privilege(&what, &objects, &case.choice);
            let (deployment, namespace, _) = operator_deployment(&objects);
            assert_eq!(namespace, case.namespace, "{what}");
            for object in &objects {
                if let Some(ns) = object["metadata"]["namespace"].as_str()
                    && matches!(
                        object["kind"].as_str(),
                        Some("Deployment" | "ServiceAccount" | "Service" | "PodDisruptionBudget")
                    )
                {
                    assert_eq!(ns, case.namespace, "{what}: {}", object["kind"]);
                }
            }
            let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap();
            if case.set.iter().any(|s| s.starts_with("image.digest=")) {
                assert!(
                    image.ends_with(
                        "@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    ),
                    "{what}: {image}"
                );
            } else {
                assert_eq!(
                    image,
                    format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION")),
                    "{what}"
                );
            }
            if case.set.contains(&"metrics.serviceMonitor.enabled=true") {
                let monitor = find(
                    &objects,
                    "ServiceMonitor",
                    Some(case.namespace),
                    "sluice-operator",
                );
                let service = find(
                    &objects,
                    "Service",
                    Some(case.namespace),
                    "sluice-operator-metrics",
                );
                for (key, value) in monitor["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .unwrap()
                {
                    assert_eq!(&service["metadata"]["labels"][key], value, "{what}: {key}");
                }
            }
            let Some(overlay) = case.same_as else {
                continue;
            };
            let Some(kustomized) = kustomize(&deploy_dir().join(overlay)) else {
                continue;
            };
            let (chart, ours) = (rbac(&objects), rbac(&kustomized));
            let only = |a: &[Value], b: &[Value]| -> Vec<Value> {
                a.iter().filter(|o| !b.contains(o)).cloned().collect()
            };
            assert!(
                chart == ours,
                "{what}: RBAC differs from deploy/{overlay}: only in the chart {:#}; only in deploy/ {:#}",
                Value::from(only(&chart, &ours)),
                Value::from(only(&ours, &chart))
            );
            assert_eq!(
                deployment_spec(&objects),
                deployment_spec(&kustomized),
                "{what}: the Deployment differs from deploy/{overlay}"
            );
            if case.set.is_empty() {
                // Literally the same pod template: Helm taking over a kustomize install (and
                // back) rolls no pod.
                let template =
                    |objects: &[Value]| operator_deployment(objects).0["spec"]["template"].clone();
                assert_eq!(template(&objects), template(&kustomized), "{what}");
            }
        }
    }
    if !helms.is_empty() {
        eprintln!(
            "rendered {} cases with {} Helm versions",
            cases().len(),
            helms.len()
        );
    }
}

/// Selectors are immutable: the chart and deploy/ must select the operator's pods by the same
/// labels, or Helm could never take over a kustomize install's Deployment.
#[test]
fn the_chart_and_kustomize_select_the_same_pods() {
    for (version, helm) in helms() {
        let objects = helm_template(&helm, "sluice-system", &[]);
        let Some(kustomized) = kustomize(&deploy_dir()) else {
            return;
        };
        for kind in ["Deployment", "PodDisruptionBudget"] {
            let selector = |objects: &[Value]| {
                find(objects, kind, Some("sluice-system"), "sluice-operator")["spec"]["selector"]
                    .clone()
            };
            assert_eq!(
                selector(&objects),
                selector(&kustomized),
                "{version}: {kind}"
            );
        }
        let service = |objects: &[Value]| {
            find(
                objects,
                "Service",
                Some("sluice-system"),
                "sluice-operator-metrics",
            )["spec"]["selector"]
                .clone()
        };
        assert_eq!(service(&objects), service(&kustomized), "{version}");
    }
}
