//! deploy/rbac/operator.yaml grants exactly what the controller needs: every kind it applies,
//! prunes and watches, and only in control namespaces for namespaced kinds (never a
//! cluster-wide write, list or watch of them in the default install), and the Lease requests
//! leader election really makes.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use sluice::build::ChildKind;
use sluice::controller::apply::api_resource;

fn cluster_roles() -> Vec<ClusterRole> {
    let mut roles = Vec::new();
    for file in [
        "rbac/operator.yaml",
        "rbac/tenant-secrets.yaml",
        "components/all-namespaces/clusterrolebinding.yaml",
    ] {
        let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        roles.extend(
            text.split("\n---\n")
                .filter(|doc| doc.lines().any(|line| line == "kind: ClusterRole"))
                .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))),
        );
    }
    roles
}

fn role(name: &str) -> Vec<PolicyRule> {
    cluster_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .and_then(|r| r.rules)
        .unwrap_or_else(|| panic!("no ClusterRole {name}"))
}

fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|rule| {
        rule.api_groups
            .iter()
            .flatten()
            .any(|g| g == group || g == "*")
            && rule
                .resources
                .iter()
                .flatten()
                .any(|r| r == resource || r == "*")
            && rule.verbs.iter().any(|v| v == verb || v == "*")
            && rule.resource_names.is_none()
    })
}

const WRITE_VERBS: [&str; 5] = ["create", "patch", "update", "delete", "deletecollection"];

/// Namespaced children in the per-control-namespace role; Namespaces, the only cluster-scoped
/// child, are read cluster-wide and only created by the all-namespaces variant.
#[test]
fn every_child_kind_can_be_applied_watched_and_pruned() {
    let operator = role("sluice-operator");
    let control = role("sluice-operator-control-namespace");
    let all_namespaces = role("sluice-operator-all-namespaces");
    for kind in ChildKind::ALL {
        let (resource, namespaced) = api_resource(kind);
        let mut verbs = vec!["get", "list", "watch", "create", "patch"];
        if kind.is_pruned() {
            verbs.push("delete");
        }
        for verb in verbs {
            let rules = match (kind, namespaced, verb) {
                (ChildKind::Namespace, _, "create" | "patch") => &all_namespaces,
                (_, true, _) => &control,
                (_, false, _) => &operator,
            };
            assert!(
                allows(rules, &resource.group, &resource.plural, verb),
                "{kind:?}: {verb} on {}/{} missing",
                resource.group,
                resource.plural
            );
        }
    }
}

/// A compromised operator of a default install cannot create a pod, a ServiceAccount token
/// or a Secret outside its control namespaces, nor create Namespaces.
#[test]
fn default_install_has_no_cluster_wide_writes_on_namespaced_kinds() {
    let operator = role("sluice-operator");
    for kind in ChildKind::ALL {
        let (resource, namespaced) = api_resource(kind);
        if !namespaced && kind != ChildKind::Namespace {
            continue;
        }
        let mut verbs = WRITE_VERBS.to_vec();
        if namespaced && kind != ChildKind::Secret {
            // Watched per control namespace, so not even read cluster-wide.
            verbs.extend(["get", "list", "watch"]);
        }
        for verb in verbs {
            assert!(
                !allows(&operator, &resource.group, &resource.plural, verb),
                "{kind:?}: cluster-wide {verb} on {}/{}",
                resource.group,
                resource.plural
            );
        }
    }
    // Workloads any namespace may hold that Sluice never creates.
    for (group, resource) in [
        ("", "pods"),
        ("apps", "deployments"),
        ("batch", "jobs"),
        ("", "serviceaccounts/token"),
    ] {
        for verb in WRITE_VERBS {
            assert!(
                !allows(&operator, group, resource, verb),
                "{verb} {resource}"
            );
        }
    }
}

#[test]
fn no_cluster_wide_secret_list_or_watch() {
    for verb in ["list", "watch", "get"] {
        assert!(!allows(&role("sluice-operator"), "", "secrets", verb));
    }
    // Tenant Secrets are read by name, through a role of their own the install binds where
    // the admin chose.
    let tenant = role("sluice-operator-tenant-secrets");
    assert!(allows(&tenant, "", "secrets", "get"));
    for verb in ["list", "watch", "create", "patch", "delete"] {
        assert!(!allows(&tenant, "", "secrets", verb));
    }
}

/// The operator creates no cluster-scoped RBAC: the agents' bindings come with the install.
#[test]
fn no_verb_on_roles_or_bindings() {
    for name in ["sluice-operator", "sluice-operator-tenant-secrets"] {
        let rules = role(name);
        for rule in &rules {
            assert!(
                !rule
                    .api_groups
                    .iter()
                    .flatten()
                    .any(|g| g == "rbac.authorization.k8s.io" || g == "*"),
                "{name}: {rule:?}"
            );
        }
    }
}

#[test]
fn sluice_kinds_are_read_only_except_status() {
    let operator = role("sluice-operator");
    for kind in [
        "loggings",
        "flows",
        "clusterflows",
        "outputs",
        "clusteroutputs",
    ] {
        for verb in ["get", "list", "watch"] {
            assert!(allows(&operator, "logging.sluice.dev", kind, verb));
        }
        for verb in ["create", "patch", "update", "delete"] {
            assert!(
                !allows(&operator, "logging.sluice.dev", kind, verb),
                "{verb} {kind}"
            );
        }
        assert!(allows(
            &operator,
            "logging.sluice.dev",
            &format!("{kind}/status"),
            "patch"
        ));
    }
}

/// Rules of the Role `name` in deploy/rbac/operator.yaml.
fn namespaced_role(name: &str) -> Vec<PolicyRule> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac/operator.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let roles: Vec<k8s_openapi::api::rbac::v1::Role> = text
        .split("\n---\n")
        .filter(|doc| doc.lines().any(|line| line == "kind: Role"))
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}")))
        .collect();
    roles
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .and_then(|r| r.rules)
        .unwrap_or_else(|| panic!("no Role {name}"))
}

/// Leader election against a scripted API server: every request it really makes (acquire,
/// renew, release) is allowed by the leader-election Role, by resource name where the Role
/// names one.
#[tokio::test]
async fn leader_election_needs_only_the_lease_role() {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use sluice::controller::leader::{LeaseSettings, elect};

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let server = {
        let requests = requests.clone();
        tokio::spawn(async move {
            let mut stored: Option<Value> = None;
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let method = parts.method.to_string();
                requests
                    .lock()
                    .unwrap()
                    .push((method.clone(), parts.uri.path().to_owned()));
                let (code, answer) = match (method.as_str(), &mut stored) {
                    ("GET", Some(lease)) => (200, lease.clone()),
                    ("GET", None) => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                    ("POST", _) => {
                        let mut lease = body.clone();
                        lease["metadata"]["namespace"] = json!("sluice-system");
                        lease["metadata"]["resourceVersion"] = json!("1");
                        stored = Some(lease.clone());
                        (201, lease)
                    }
                    ("PATCH", Some(lease)) => {
                        for (key, value) in body["spec"].as_object().into_iter().flatten() {
                            lease["spec"][key] = value.clone();
                        }
                        (200, lease.clone())
                    }
                    _ => (405, Value::Null),
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        })
    };

    let settings = LeaseSettings {
        namespace: "sluice-system".to_owned(),
        name: "sluice-operator".to_owned(),
        identity: "pod-a".to_owned(),
    };
    let (mut leading, holder) = elect(client, &settings).await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        leading.wait_for(|lead| *lead),
    )
    .await
    .expect("became leader")
    .unwrap();
    drop(leading);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), holder).await;
    server.abort();

    let rules = namespaced_role("sluice-operator-leader-election");
    let requests = requests.lock().unwrap().clone();
    let collection = "/apis/coordination.k8s.io/v1/namespaces/sluice-system/leases";
    let mut verbs = Vec::new();
    for (method, path) in &requests {
        let (verb, name) = match method.as_str() {
            "POST" if path == collection => ("create", None),
            "GET" => ("get", path.strip_prefix(&format!("{collection}/"))),
            "PATCH" => ("patch", path.strip_prefix(&format!("{collection}/"))),
            _ => panic!("unexpected {method} {path}"),
        };
        let allowed = rules.iter().any(|rule| {
            rule.api_groups
                .iter()
                .flatten()
                .any(|g| g == "coordination.k8s.io")
                && rule.resources.iter().flatten().any(|r| r == "leases")
                && rule.verbs.iter().any(|v| v == verb)
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| name.is_some_and(|n| names.iter().any(|x| x == n)))
        });
        assert!(allowed, "{method} {path} is not allowed by the Lease Role");
        verbs.push(verb);
    }
    // Acquired (create, patch) and released (patch) through the scripted server.
    assert!(
        verbs.contains(&"create") && verbs.contains(&"patch"),
        "{requests:?}"
    );
}
