//! The objects Sluice builds for the examples: golden, plus the properties that matter when
//! they are applied (owner references, hash annotations, HPA-friendly replicas, mounts).

use std::path::PathBuf;

use sluice::build::{self, Child, ChildKind};
use sluice::cli::input;
use sluice::model::{self, Pipeline};
use sluice::pki::PkiPlan;

fn examples_pipeline() -> Pipeline {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = input::load(&[examples]).unwrap();
    model::resolve(&loaded.inventory).pipelines.remove(0)
}

fn pki() -> PkiPlan {
    PkiPlan {
        material_hash: "0123456789abcdef".to_owned(),
        ..PkiPlan::default()
    }
}

fn find<'a>(children: &'a [Child], kind: ChildKind, name: &str) -> &'a serde_json::Value {
    &children
        .iter()
        .find(|c| c.kind == kind && c.object.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
        .object
        .data
}

#[test]
fn workloads_and_services_of_the_examples() {
    let children = build::objects(&examples_pipeline(), &pki()).unwrap();
    // Secrets carry rendered configuration and credentials, covered by their own tests.
    let objects: Vec<_> = children
        .iter()
        .filter(|c| c.kind != ChildKind::Secret)
        .map(|c| serde_json::to_value(&c.object).unwrap())
        .collect();
    insta::assert_yaml_snapshot!(objects, {
        "[].spec.template.metadata.annotations" => "[hashes]",
    });
}

#[test]
fn objects_come_in_apply_order_with_secrets_before_workloads() {
    let children = build::objects(&examples_pipeline(), &pki()).unwrap();
    let kinds: Vec<ChildKind> = children.iter().map(|c| c.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted);
    assert_eq!(kinds.last(), Some(&ChildKind::StatefulSet));
    assert!(kinds.contains(&ChildKind::Secret));
}

#[test]
fn owner_references_point_at_the_logging_when_it_has_a_uid() {
    let mut pipeline = examples_pipeline();
    let offline = build::objects(&pipeline, &pki()).unwrap();
    assert!(
        offline
            .iter()
            .all(|c| c.object.metadata.owner_references.is_none())
    );

    pipeline.logging_uid = Some("uid-1".to_owned());
    for child in build::objects(&pipeline, &pki()).unwrap() {
        let owners = child
            .object
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        if child.kind == ChildKind::Namespace {
            // Deleting a Logging must never take a namespace (and what else lives there) with it.
            assert!(owners.is_empty());
        } else {
            assert_eq!(owners.len(), 1, "{:?}", child.object.metadata.name);
            assert_eq!(
                (owners[0].kind.as_str(), owners[0].uid.as_str()),
                ("Logging", "uid-1")
            );
        }
    }
}

#[test]
fn any_config_or_certificate_change_rolls_the_pods() {
    let pipeline = examples_pipeline();
    let annotation = |children: &[Child], kind, name, key: &str| -> String {
        find(children, kind, name)["spec"]["template"]["metadata"]["annotations"][key]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = build::objects(&pipeline, &pki()).unwrap();
    let mut rotated = pki();
    rotated.material_hash = "fedcba9876543210".to_owned();
    let after = build::objects(&pipeline, &rotated).unwrap();
    for (kind, name) in [
        (ChildKind::DaemonSet, "main-agent"),
        (ChildKind::StatefulSet, "main-aggregator"),
    ] {
        let tls = "logging.sluice.dev/tls-hash";
        assert_ne!(
            annotation(&before, kind, name, tls),
            annotation(&after, kind, name, tls)
        );
    }

    let mut changed = pipeline.clone();
    changed
        .output_secret_data
        .insert("payments_payments-es_password".into(), b"rotated".to_vec());
    let after = build::objects(&changed, &pki()).unwrap();
    let config = "logging.sluice.dev/config-hash";
    assert_ne!(
        annotation(&before, ChildKind::StatefulSet, "main-aggregator", config),
        annotation(&after, ChildKind::StatefulSet, "main-aggregator", config),
        "a changed output credential rolls the aggregator"
    );
    assert_eq!(
        annotation(&before, ChildKind::DaemonSet, "main-agent", config),
        annotation(&after, ChildKind::DaemonSet, "main-agent", config),
        "but not the agents"
    );
}

#[test]
fn a_routing_change_updates_the_agents_table_without_rolling_them() {
    let pipeline = examples_pipeline();
    let config_hash = |children: &[Child]| -> String {
        find(children, ChildKind::DaemonSet, "main-agent")["spec"]["template"]["metadata"]
            ["annotations"]["logging.sluice.dev/config-hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let table = |children: &[Child]| find(children, ChildKind::Secret, "main-agent-routes").clone();
    let before = build::objects(&pipeline, &pki()).unwrap();
    // A label selector edit: the most common Flow change. (Edits that change which files the
    // agent tails, its edge pruning, are agent config and do roll it.)
    let mut changed = pipeline.clone();
    let rule = changed
        .flows
        .iter_mut()
        .flat_map(|f| f.matcher.rules.iter_mut())
        .find(|r| !r.selector.labels.is_empty())
        .expect("the examples select by label");
    for value in rule.selector.labels.values_mut() {
        *value = "changed".to_owned();
    }
    let after = build::objects(&changed, &pki()).unwrap();
    assert_ne!(
        table(&before),
        table(&after),
        "the table Secret carries the change"
    );
    assert_eq!(
        config_hash(&before),
        config_hash(&after),
        "a Flow edit must not restart every agent"
    );

    // The table is mounted as a directory (never subPath), so kubelet updates reach the pod.
    let daemon_set = find(&after, ChildKind::DaemonSet, "main-agent");
    let pod = &daemon_set["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "main-agent-routes")
        .expect("the table Secret is a volume");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("and mounted");
    assert_eq!(mount["mountPath"], sluice::layout::AGENT_ROUTES_DIR);
    assert!(mount.get("subPath").is_none());

    // The Lua code and fluent-bit.yaml stay hashed: a new agent config still rolls agents.
    let mut agent_changed = pipeline.clone();
    agent_changed
        .spec
        .agent
        .get_or_insert_default()
        .metrics_port = Some(2021);
    let rolled = build::objects(&agent_changed, &pki()).unwrap();
    assert_ne!(config_hash(&before), config_hash(&rolled));
}

#[test]
fn unset_replicas_are_left_to_an_autoscaler() {
    let mut pipeline = examples_pipeline();
    pipeline.spec.aggregator.as_mut().unwrap().replicas = None;
    let children = build::objects(&pipeline, &pki()).unwrap();
    assert!(
        find(&children, ChildKind::StatefulSet, "main-aggregator")["spec"]
            .get("replicas")
            .is_none()
    );
}

#[test]
fn tls_disabled_mounts_no_certificates_and_existing_mounts_the_users() {
    let mut pipeline = examples_pipeline();
    let tls = pipeline.spec.tls.get_or_insert_with(Default::default);
    tls.mode = Some(sluice::api::TlsMode::Disabled);
    let children = build::objects(&pipeline, &pki()).unwrap();
    let volumes = |children: &[Child], kind, name| -> String {
        find(children, kind, name)["spec"]["template"]["spec"]["volumes"].to_string()
    };
    assert!(!volumes(&children, ChildKind::DaemonSet, "main-agent").contains("tls"));

    let tls = pipeline.spec.tls.get_or_insert_with(Default::default);
    tls.mode = Some(sluice::api::TlsMode::Existing);
    tls.existing = Some(sluice::api::ExistingTlsSecrets {
        server_secret_name: "my-server".into(),
        client_secret_name: "my-client".into(),
    });
    let children = build::objects(&pipeline, &pki()).unwrap();
    assert!(
        volumes(&children, ChildKind::DaemonSet, "main-agent")
            .contains("\"secretName\":\"my-client\"")
    );
    assert!(
        volumes(&children, ChildKind::StatefulSet, "main-aggregator")
            .contains("\"secretName\":\"my-server\"")
    );
}

#[test]
fn an_empty_dir_buffer_replaces_the_claim_template() {
    let mut pipeline = examples_pipeline();
    pipeline.spec.aggregator.as_mut().unwrap().buffer_volume =
        Some(sluice::api::BufferVolumeSpec {
            persistent_volume_claim: None,
            empty_dir: Some(Default::default()),
        });
    let children = build::objects(&pipeline, &pki()).unwrap();
    let statefulset = find(&children, ChildKind::StatefulSet, "main-aggregator");
    assert!(statefulset["spec"].get("volumeClaimTemplates").is_none());
    assert!(
        statefulset["spec"]["template"]["spec"]["volumes"]
            .to_string()
            .contains("emptyDir")
    );
}

#[test]
fn the_agent_cluster_roles_the_builder_binds_are_shipped() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/agent-clusterroles.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let roles: Vec<k8s_openapi::api::rbac::v1::ClusterRole> =
        serde_saphyr::from_multiple(&text).unwrap();
    let names: Vec<&str> = roles
        .iter()
        .filter_map(|r| r.metadata.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            sluice::layout::AGENT_CLUSTER_ROLE,
            sluice::layout::AGENT_KUBELET_CLUSTER_ROLE
        ]
    );
}

#[test]
fn the_aggregator_bounds_every_regex_match() {
    let children = build::objects(&examples_pipeline(), &pki()).unwrap();
    let statefulset = find(&children, ChildKind::StatefulSet, "main-aggregator");
    let args = &statefulset["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // Loaded by fluentd's `-r` from shard 0's mount, which carries the file.
    let at = args.iter().position(|a| *a == "-r").unwrap();
    assert_eq!(args[at + 1], "/fluentd/etc/regexp-timeout.rb");
    let secret = find(&children, ChildKind::Secret, "main-aggregator-config");
    use base64::Engine;
    let encoded = secret["data"]["regexp-timeout.rb"].as_str().unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(script.contains("Regexp.timeout = 1.0"), "{script}");
}
