//! deploy/rbac/operator.yaml grants exactly what the controller needs: every kind it applies,
//! prunes and watches, and never a cluster-wide Secret list or watch.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use sluice::build::ChildKind;
use sluice::controller::apply::api_resource;

fn cluster_roles() -> Vec<ClusterRole> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac/operator.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split("\n---\n")
        .filter(|doc| doc.lines().any(|line| line == "kind: ClusterRole"))
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}")))
        .collect()
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
        rule.api_groups.iter().flatten().any(|g| g == group)
            && rule.resources.iter().flatten().any(|r| r == resource)
            && rule.verbs.iter().any(|v| v == verb)
            && rule.resource_names.is_none()
    })
}

#[test]
fn every_child_kind_can_be_applied_watched_and_pruned() {
    let operator = role("sluice-operator");
    let control = role("sluice-operator-control-namespace");
    for kind in ChildKind::ALL {
        let (resource, _) = api_resource(kind);
        let rules = if kind == ChildKind::Secret {
            &control
        } else {
            &operator
        };
        let mut verbs = vec!["get", "list", "watch", "create", "patch"];
        if kind.is_pruned() {
            verbs.push("delete");
        }
        for verb in verbs {
            assert!(
                allows(rules, &resource.group, &resource.plural, verb),
                "{kind:?}: {verb} on {}/{} missing",
                resource.group,
                resource.plural
            );
        }
    }
}

#[test]
fn no_cluster_wide_secret_list_or_watch() {
    for verb in ["list", "watch"] {
        assert!(!allows(&role("sluice-operator"), "", "secrets", verb));
    }
    assert!(allows(&role("sluice-operator"), "", "secrets", "get"));
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
