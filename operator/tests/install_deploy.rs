//! deploy/ as `kubectl kustomize` renders it (the default install and every overlay): the
//! objects an install needs, a Deployment whose flags, parsed by the operator's own parser,
//! agree with the RBAC beside it, and a pod that meets Pod Security "restricted".
//! Skipped, with a notice, when kubectl is not on PATH.

mod install_support;

use serde_json::Value;
use sluice::build::ChildKind;
use sluice::controller::ControlNamespaces;
use sluice::controller::apply::api_resource;

use install_support::{deploy_dir, find, installs, kustomize, strings};

/// Whether `rules` allow `verb` on `group`/`resource` (by name when `name` is given).
fn allows(rules: &Value, group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    rules.as_array().into_iter().flatten().any(|rule| {
        let names = strings(&rule["resourceNames"]);
        strings(&rule["apiGroups"]).iter().any(|g| g == group)
            && strings(&rule["resources"]).iter().any(|r| r == resource)
            && strings(&rule["verbs"]).iter().any(|v| v == verb)
            && (names.is_empty() || name.is_some_and(|n| names.iter().any(|x| x == n)))
    })
}

/// Whether a binding (RoleBinding or ClusterRoleBinding) gives `role` to the service account.
fn binds(binding: &Value, role_kind: &str, role: &str, account: (&str, &str)) -> bool {
    binding["roleRef"]["kind"] == role_kind
        && binding["roleRef"]["name"] == role
        && binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["namespace"] == account.0
                    && s["name"] == account.1
            })
}

/// The rules the objects grant the service account in `namespace` (`None`: cluster-wide).
fn granted(objects: &[Value], namespace: Option<&str>, account: (&str, &str)) -> Vec<Value> {
    let mut rules = Vec::new();
    for binding in objects {
        let cluster_wide = binding["kind"] == "ClusterRoleBinding";
        let here = binding["kind"] == "RoleBinding"
            && namespace.is_some()
            && binding["metadata"]["namespace"].as_str() == namespace;
        if !(cluster_wide || here) {
            continue;
        }
        for (kind, role_namespace) in [("ClusterRole", None), ("Role", namespace)] {
            let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            if binds(binding, kind, name, account) {
                let role = find(objects, kind, role_namespace, name);
                rules.extend(role["rules"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    rules
}

struct Operator<'a> {
    deployment: &'a Value,
    namespace: String,
    account: String,
    options: sluice::controller::Options,
}

fn operator(objects: &[Value]) -> Operator<'_> {
    let deployment = find(
        objects,
        "Deployment",
        Some("sluice-system"),
        "sluice-operator",
    );
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // The flags are all the configuration: no SLUICE_* variables hide settings from this test.
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("POD_NAMESPACE", "metadata.namespace"),
            ("POD_NAME", "metadata.name")
        ]
    );
    let options = sluice::cli::run::container_options(&strings(&container["args"]), &namespace)
        .unwrap_or_else(|e| panic!("the Deployment's args: {e}"));
    Operator {
        deployment,
        namespace,
        account: pod["serviceAccountName"].as_str().unwrap().to_owned(),
        options,
    }
}

#[test]
fn every_install_has_the_objects_an_operator_needs() {
    for dir in installs() {
        let Some(objects) = kustomize(&dir) else {
            return;
        };
        let op = operator(&objects);
        find(&objects, "Namespace", None, &op.namespace);
        find(&objects, "ServiceAccount", Some(&op.namespace), &op.account);
        for crd in sluice::api::crds() {
            find(
                &objects,
                "CustomResourceDefinition",
                None,
                crd.metadata.name.as_deref().unwrap(),
            );
        }
        for role in [
            sluice::layout::AGENT_CLUSTER_ROLE,
            sluice::layout::AGENT_KUBELET_CLUSTER_ROLE,
        ] {
            find(&objects, "ClusterRole", None, role);
        }
        let operator_binding = find(&objects, "ClusterRoleBinding", None, "sluice-operator");
        assert!(binds(
            operator_binding,
            "ClusterRole",
            "sluice-operator",
            (&op.namespace, &op.account)
        ));
        find(
            &objects,
            "PodDisruptionBudget",
            Some(&op.namespace),
            "sluice-operator",
        );
        find(
            &objects,
            "Service",
            Some(&op.namespace),
            "sluice-operator-metrics",
        );
        // The operator prunes what carries its managed-by label; its own install must not.
        for object in &objects {
            assert_ne!(
                object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                sluice::layout::MANAGED_BY,
                "{dir:?}: {} {} would be pruned by the operator",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
}

/// Every namespaced child kind with the verbs the operator uses on it.
fn namespaced_children() -> Vec<(String, String, Vec<&'static str>)> {
    ChildKind::ALL
        .into_iter()
        .filter(|kind| api_resource(*kind).1)
        .map(|kind| {
            let (resource, _) = api_resource(kind);
            let mut verbs = vec!["get", "list", "watch", "create", "patch"];
            if kind.is_pruned() {
                verbs.push("delete");
            }
            (resource.group, resource.plural, verbs)
        })
        .collect()
}

#[test]
fn every_control_namespace_grants_the_verbs_the_operator_uses() {
    let children = namespaced_children();
    assert!(children.iter().any(|(_, plural, _)| plural == "daemonsets"));
    let mut widened = false;
    for dir in installs() {
        let Some(objects) = kustomize(&dir) else {
            return;
        };
        let op = operator(&objects);
        let account = (op.namespace.as_str(), op.account.as_str());
        let cluster = Value::from(granted(&objects, None, account));
        match &op.options.control_namespaces {
            ControlNamespaces::Only(namespaces) => {
                if dir == deploy_dir() {
                    // The default install needs no access beyond its own namespace.
                    assert_eq!(namespaces, std::slice::from_ref(&op.namespace));
                } else if namespaces.len() > 1 {
                    widened = true;
                }
                for namespace in namespaces {
                    // A RoleBinding needs its namespace; the operator does not create it first.
                    find(&objects, "Namespace", None, namespace);
                    let rules = Value::from(granted(&objects, Some(namespace), account));
                    for (group, plural, verbs) in &children {
                        for verb in verbs {
                            assert!(
                                allows(&rules, group, plural, verb, None),
                                "{dir:?}: no {verb} on {group}/{plural} in control namespace {namespace}"
                            );
                        }
                    }
                }
                // Control namespaces exist: no Namespace is ever written.
                for verb in ["create", "patch", "update", "delete"] {
                    assert!(!allows(&cluster, "", "namespaces", verb, None), "{dir:?}");
                }
            }
            ControlNamespaces::All => {
                for (group, plural, verbs) in &children {
                    for verb in verbs {
                        assert!(
                            allows(&cluster, group, plural, verb, None),
                            "{dir:?}: --control-namespaces=* without cluster-wide {verb} on {group}/{plural}"
                        );
                    }
                }
                // A Logging may name a control namespace that does not exist yet.
                for verb in ["create", "patch"] {
                    assert!(allows(&cluster, "", "namespaces", verb, None), "{dir:?}");
                }
            }
        }
        // Only the all-namespaces variant may hold cluster-wide list/watch/write on anything
        // the operator creates in a namespace.
        let all = op.options.control_namespaces == ControlNamespaces::All;
        for (group, plural, _) in &children {
            for verb in ["list", "watch", "create", "patch", "delete"] {
                assert_eq!(
                    allows(&cluster, group, plural, verb, None),
                    all,
                    "{dir:?}: cluster-wide {verb} on {group}/{plural}"
                );
            }
        }
    }
    assert!(widened, "no overlay shows extra control namespaces");
}

#[test]
fn leader_election_has_its_lease_rbac_and_two_replicas() {
    for dir in installs() {
        let Some(objects) = kustomize(&dir) else {
            return;
        };
        let op = operator(&objects);
        assert_eq!(op.deployment["spec"]["replicas"], 2, "{dir:?}");
        let lease = op
            .options
            .lease
            .as_ref()
            .unwrap_or_else(|| panic!("{dir:?}: two replicas without --leader-elect"));
        let rules = Value::from(granted(
            &objects,
            Some(&lease.namespace),
            (&op.namespace, &op.account),
        ));
        assert!(allows(
            &rules,
            "coordination.k8s.io",
            "leases",
            "create",
            None
        ));
        for verb in ["get", "patch"] {
            assert!(
                allows(
                    &rules,
                    "coordination.k8s.io",
                    "leases",
                    verb,
                    Some(&lease.name)
                ),
                "{dir:?}: {verb} on Lease {}/{}",
                lease.namespace,
                lease.name
            );
        }
    }
}

#[test]
fn the_pod_is_restricted_probed_and_bounded() {
    for dir in installs() {
        let Some(objects) = kustomize(&dir) else {
            return;
        };
        let op = operator(&objects);
        let template = &op.deployment["spec"]["template"];
        let pod = &template["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["image"],
            format!("ghcr.io/sluice-dev/sluice:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(security["capabilities"]["add"], Value::Null);
        assert_eq!(security["privileged"], Value::Null);
        for kind in ["requests", "limits"] {
            assert!(
                container["resources"][kind]["memory"].is_string(),
                "{dir:?}: memory {kind}"
            );
        }
        assert!(container["resources"]["requests"]["cpu"].is_string());

        // Probes and the metrics Service reach the port the operator listens on.
        let listen = op.options.listen.port();
        let port_of = |port: &Value| -> u16 {
            match port {
                Value::Number(n) => n.as_u64().unwrap() as u16,
                Value::String(name) => container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .and_then(|p| p["containerPort"].as_u64())
                    .unwrap_or_else(|| panic!("{dir:?}: no container port {name}"))
                    as u16,
                _ => panic!("{dir:?}: port {port}"),
            }
        };
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{dir:?}");
            assert_eq!(port_of(&container[probe]["httpGet"]["port"]), listen);
        }
        let service = find(
            &objects,
            "Service",
            Some(&op.namespace),
            "sluice-operator-metrics",
        );
        assert_eq!(port_of(&service["spec"]["ports"][0]["targetPort"]), listen);

        // The PodDisruptionBudget and the Service select exactly the operator's pods.
        let labels = &template["metadata"]["labels"];
        let pdb = find(
            &objects,
            "PodDisruptionBudget",
            Some(&op.namespace),
            "sluice-operator",
        );
        for selector in [
            &pdb["spec"]["selector"]["matchLabels"],
            &service["spec"]["selector"],
            &op.deployment["spec"]["selector"]["matchLabels"],
        ] {
            let selector = selector.as_object().unwrap();
            assert!(!selector.is_empty());
            for (key, value) in selector {
                assert_eq!(&labels[key], value, "{dir:?}: selector {key}");
            }
        }
    }
}

#[test]
fn the_json_logs_component_switches_the_log_format() {
    let Some(objects) = kustomize(&deploy_dir().join("overlays/example")) else {
        return;
    };
    let op = operator(&objects);
    let args = strings(&op.deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
}

/// The release builds the image deploy/ names, with the toolchain and lockfile CI tests.
#[test]
fn the_operator_image_is_built_as_deploy_expects() {
    let root = install_support::root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let rust_version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert!(dockerfile.contains(&format!("/rust:{rust_version}-")));
    assert!(dockerfile.contains("cargo build --release --locked"));
    // Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert!(dockerfile.lines().any(|l| l == "USER 65532:65532"));
    // The same binary runs as the reloader inside the fluentd and fluent-bit images, which
    // carry different C libraries: it must be static (musl), on a base with no libc.
    assert!(dockerfile.contains("/rust:") && dockerfile.contains("-alpine AS build"));
    assert!(dockerfile.contains("FROM gcr.io/distroless/static-"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l == r#"ENTRYPOINT ["/usr/local/bin/sluice", "run"]"#)
    );
    // Every directory the build reads (include_str! of examples) is copied in.
    for dir in ["operator", "e2e", "examples"] {
        assert!(dockerfile.contains(&format!("COPY {dir} {dir}")), "{dir}");
    }
    let release = std::fs::read_to_string(root.join(".github/workflows/release.yaml")).unwrap();
    assert!(release.contains("tags: [\"v*\"]"));
    assert!(release.contains("file: Dockerfile"));
    assert!(release.contains("/sluice:${{ steps.version.outputs.version }}"));
}
