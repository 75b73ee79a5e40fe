//! The objects Sluice builds for the examples: golden, plus the properties that matter when
//! they are applied (owner references, hash annotations, HPA-friendly replicas, mounts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sluice::build::{self, Child, ChildKind};
use sluice::cli::input;
use sluice::model::{self, Pipeline};
use sluice::pki::PkiPlan;

fn examples_pipeline() -> Pipeline {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = input::load(&[examples]).unwrap();
    model::resolve(&loaded.objects.inventory())
        .pipelines
        .remove(0)
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

fn workloads(children: &[Child]) -> Vec<&serde_json::Value> {
    children
        .iter()
        .filter(|c| matches!(c.kind, ChildKind::DaemonSet | ChildKind::StatefulSet))
        .map(|c| &c.object.data)
        .collect()
}

/// Names of the Secrets whose data differ between two builds.
fn changed_secrets(before: &[Child], after: &[Child]) -> Vec<String> {
    let data = |children: &[Child]| -> BTreeMap<String, serde_json::Value> {
        children
            .iter()
            .filter(|c| c.kind == ChildKind::Secret)
            .map(|c| {
                (
                    c.object.metadata.name.clone().unwrap_or_default(),
                    c.object.data.clone(),
                )
            })
            .collect()
    };
    let (before, after) = (data(before), data(after));
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .cloned()
        .collect()
}

/// The files of a bundle held by these Secrets, decoded, by name.
fn bundle_files(children: &[Child], secrets: &[String]) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let mut files = BTreeMap::new();
    for name in secrets {
        let secret = find(children, ChildKind::Secret, name);
        for (key, value) in secret["data"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap();
            files.insert(key.clone(), bytes);
        }
    }
    files
}

#[test]
fn only_a_tls_change_rolls_the_pods() {
    let pipeline = examples_pipeline();
    let annotations = |children: &[Child], kind, name| -> serde_json::Value {
        find(children, kind, name)["spec"]["template"]["metadata"]["annotations"].clone()
    };
    let before = build::objects(&pipeline, &pki()).unwrap();
    let mut rotated = pki();
    rotated.material_hash = "fedcba9876543210".to_owned();
    let after = build::objects(&pipeline, &rotated).unwrap();
    for (kind, name) in [
        (ChildKind::DaemonSet, "main-agent"),
        (ChildKind::StatefulSet, "main-aggregator"),
    ] {
        let (before, after) = (
            annotations(&before, kind, name),
            annotations(&after, kind, name),
        );
        assert_ne!(
            before["logging.sluice.dev/tls-hash"],
            after["logging.sluice.dev/tls-hash"]
        );
        // Nothing else is hashed into the pod template: config reaches pods by reload.
        assert_eq!(before.as_object().unwrap().len(), 1, "{before}");
    }

    // A new credential value is a new content-addressed file: the credentials Secret and the
    // manifest change, no workload does.
    let mut changed = pipeline.clone();
    let credential = changed
        .output_secret_data
        .keys()
        .find(|name| name.ends_with("payments_payments-es_password"))
        .cloned()
        .expect("the examples reference a password");
    changed.output_secret_data.remove(&credential);
    let rotated_name =
        sluice::bundle::content_addressed_name("payments_payments-es_password", b"rotated");
    changed
        .output_secret_data
        .insert(rotated_name.clone(), b"rotated".to_vec());
    for output in changed.outputs.values_mut() {
        for file in output.secret_files.values_mut() {
            if *file == credential {
                *file = rotated_name.clone();
            }
        }
    }
    let after = build::objects(&changed, &pki()).unwrap();
    assert_eq!(workloads(&before), workloads(&after));
    let mut changed_secrets = changed_secrets(&before, &after);
    changed_secrets.retain(|name| !name.starts_with("main-aggregator-config-"));
    assert_eq!(
        changed_secrets,
        ["main-aggregator-config", "main-aggregator-credentials"]
    );
}

#[test]
fn a_flow_edit_rewrites_one_slot_and_the_manifest_and_no_workload() {
    let pipeline = examples_pipeline();
    let before = build::objects(&pipeline, &pki()).unwrap();
    let mut changed = pipeline.clone();
    let flow = changed
        .flows
        .iter_mut()
        .find(|f| !f.outputs.is_empty())
        .expect("the examples have flows with outputs");
    *std::sync::Arc::make_mut(&mut flow.filters) = serde_json::from_value(serde_json::json!([
        {"recordTransformer": {"records": {"edited": "yes"}}}
    ]))
    .unwrap();
    let slot = sluice::render::fluentd::config_slot(&flow.key);
    let after = build::objects(&changed, &pki()).unwrap();
    assert_eq!(
        workloads(&before),
        workloads(&after),
        "no pod template changes"
    );
    assert_eq!(
        changed_secrets(&before, &after),
        [
            "main-aggregator-config".to_owned(),
            format!("main-aggregator-config-{slot:02}")
        ]
    );
}

#[test]
fn each_bundle_manifest_verifies_against_its_secrets_and_names_every_shared_path() {
    let pipeline = examples_pipeline();
    let children = build::objects(&pipeline, &pki()).unwrap();
    let names = &pipeline.names;
    for component in [
        sluice::layout::AGENT_COMPONENT,
        sluice::layout::AGGREGATOR_COMPONENT,
    ] {
        let secrets = names.candidate_bundle_secrets(component);
        let files = bundle_files(&children, &secrets);
        let manifest =
            sluice::bundle::Manifest::from_json(&files[sluice::bundle::MANIFEST_FILE]).unwrap();
        manifest.verify(|name| files.get(name).cloned()).unwrap();
        // Every absolute path into the shared directory is a shared file of the same bundle.
        let prefix = format!("{}/", sluice::layout::RELOAD_SHARED_DIR);
        for content in files.values() {
            let text = String::from_utf8_lossy(content);
            for (at, _) in text.match_indices(&prefix) {
                let name: String = text[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                assert!(
                    manifest.shared_files.contains_key(&name),
                    "{component}: {name} is named but not shipped"
                );
            }
        }
        // Every candidate Secret is labelled as such, and mounted through the projected volume.
        for secret in &secrets {
            let child = children
                .iter()
                .find(|c| c.object.metadata.name.as_deref() == Some(secret.as_str()))
                .unwrap();
            let labels = child.object.metadata.labels.clone().unwrap_or_default();
            assert_eq!(labels[sluice::layout::CONFIG_SET_LABEL], "candidate");
        }
    }
    // The manifest is applied after every file it names.
    let order: Vec<String> = children
        .iter()
        .filter(|c| c.kind == ChildKind::Secret)
        .map(|c| c.object.metadata.name.clone().unwrap_or_default())
        .collect();
    let main = order
        .iter()
        .position(|n| n == "main-aggregator-config")
        .unwrap();
    let last_slot = order
        .iter()
        .position(|n| n == "main-aggregator-config-32")
        .unwrap();
    let credentials = order
        .iter()
        .position(|n| n == "main-aggregator-credentials")
        .unwrap();
    assert!(main > last_slot && main > credentials, "{order:?}");
}

#[test]
fn pods_read_config_only_through_the_reloader() {
    let pipeline = examples_pipeline();
    let children = build::objects(&pipeline, &pki()).unwrap();
    for (kind, name, component) in [
        (
            ChildKind::DaemonSet,
            "main-agent",
            sluice::layout::AGENT_COMPONENT,
        ),
        (
            ChildKind::StatefulSet,
            "main-aggregator",
            sluice::layout::AGGREGATOR_COMPONENT,
        ),
    ] {
        let pod = &find(&children, kind, name)["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().unwrap();
        let projected = |volume: &str| -> Vec<(String, bool)> {
            volumes.iter().find(|v| v["name"] == volume).unwrap()["projected"]["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["secret"]["name"].as_str().unwrap().to_owned(),
                        s["secret"]["optional"].as_bool().unwrap(),
                    )
                })
                .collect()
        };
        let candidates = pipeline.names.candidate_bundle_secrets(component);
        let candidate = projected("config-candidate");
        assert_eq!(
            candidate.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            candidates.iter().collect::<Vec<_>>()
        );
        assert!(!candidate[0].1, "the manifest's Secret is required");
        let accepted = projected("config-accepted");
        assert!(
            accepted
                .iter()
                .all(|(n, optional)| *optional && n.contains("-accepted"))
        );
        assert_eq!(accepted.len(), candidates.len());
        // No volume of a config Secret other than through those two.
        for volume in volumes {
            let secret = volume["secret"]["secretName"].as_str().unwrap_or_default();
            assert!(
                !candidates.iter().any(|c| c == secret),
                "{secret} mounted directly"
            );
        }
        let init: Vec<&str> = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(init, ["install-reloader", "config-init"]);
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers[1]["name"], "config-reloader");
        // The reloader runs in the data-plane image, next to the binary that checks.
        assert_eq!(containers[1]["image"], containers[0]["image"]);
        let command: Vec<&str> = containers[1]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(command[..2], [sluice::layout::SLUICE_BINARY, "reload"]);
        assert!(command.contains(&"--dry-run"), "{command:?}");
        let data_plane = serde_json::to_string(&containers[0]).unwrap();
        assert!(
            data_plane.contains(sluice::layout::RELOAD_CURRENT_LINK),
            "{data_plane}"
        );
    }
}

#[test]
fn a_routing_change_updates_the_agents_table_without_rolling_them() {
    let pipeline = examples_pipeline();
    let before = build::objects(&pipeline, &pki()).unwrap();
    // A label selector edit: the most common Flow change.
    let mut changed = pipeline.clone();
    let rule = changed
        .flows
        .iter_mut()
        .flat_map(|f| std::sync::Arc::make_mut(&mut f.matcher).rules.iter_mut())
        .find(|r| !r.selector.labels.is_empty())
        .expect("the examples select by label");
    for (_, value) in rule.selector.labels.iter_mut() {
        *value = "changed".to_owned();
    }
    let edited = changed
        .flows
        .iter()
        .find(|f| {
            f.matcher
                .rules
                .iter()
                .any(|r| r.selector.labels.values().any(|v| v == "changed"))
        })
        .unwrap();
    let slot = sluice::render::fluentd::config_slot(&edited.key);
    let after = build::objects(&changed, &pki()).unwrap();
    // Only the edited flow's slot of the table carries the change: not the index, not the
    // other slots, not the aggregator's configuration.
    assert_eq!(
        changed_secrets(&before, &after),
        [format!("main-agent-routes-{slot:02}")],
        "the table's slot Secret carries the change"
    );
    assert_eq!(
        workloads(&before),
        workloads(&after),
        "a Flow edit must not restart every agent"
    );

    // The table is mounted as one directory (never subPath), so kubelet updates reach the
    // pod: the index and every slot, none optional.
    let daemon_set = find(&after, ChildKind::DaemonSet, "main-agent");
    let pod = &daemon_set["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["projected"]["sources"][0]["secret"]["name"] == "main-agent-routes")
        .expect("the table Secrets are a volume");
    let sources: Vec<&str> = volume["projected"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["secret"]["optional"], false);
            s["secret"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(sources, pipeline.names.agent_routes_secrets());
    for name in &sources {
        find(&after, ChildKind::Secret, name);
    }
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("and mounted");
    assert_eq!(mount["mountPath"], sluice::layout::AGENT_ROUTES_DIR);
    assert!(mount.get("subPath").is_none());

    // A change of what the agent tails is agent config: its bundle Secret, still no restart.
    let mut agent_changed = pipeline.clone();
    agent_changed
        .spec
        .agent
        .get_or_insert_default()
        .filesystem_buffer_limit = Some("5G".to_owned());
    let reloaded = build::objects(&agent_changed, &pki()).unwrap();
    assert_eq!(workloads(&before), workloads(&reloaded));
    assert_eq!(changed_secrets(&before, &reloaded), ["main-agent-config"]);
}

#[test]
fn routes_the_agents_may_not_emit_yet_are_left_out_of_every_routing_secret() {
    use sluice::render::edge::{DEFAULT_ROUTE, flow_route};
    use sluice::render::fluentd::flow_label;
    let pipeline = examples_pipeline();
    assert!(pipeline.default_flow.is_some() && pipeline.flows.len() > 2);
    let route = |flow: &sluice::model::FlowPlan| flow_route(&flow_label(&flow.key)).to_owned();
    let held = route(&pipeline.flows[1]);
    let withheld = BTreeSet::from([held.clone(), DEFAULT_ROUTE.to_owned()]);
    let gated =
        build::agent_routes_children(&pipeline, &|route| !withheld.contains(route)).unwrap();

    // The same Secrets as a pipeline that never had the withheld flows.
    let mut without = pipeline.clone();
    without.flows.remove(1);
    without.default_flow = None;
    let expected = build::agent_routes_children(&without, &|_| true).unwrap();
    let data = |children: &[Child]| -> Vec<serde_json::Value> {
        children.iter().map(|c| c.object.data.clone()).collect()
    };
    assert_eq!(data(&gated), data(&expected));

    // Nowhere in the index, the route list or a slot; every other route is there.
    let names = pipeline.names.agent_routes_secrets();
    let text = |children: &[Child]| -> String {
        bundle_files(children, &names)
            .into_values()
            .map(|bytes| String::from_utf8(bytes).unwrap())
            .collect()
    };
    let gated_text = text(&gated);
    let everything = text(&build::agent_routes_children(&pipeline, &|_| true).unwrap());
    assert!(everything.contains(&held) && everything.contains(DEFAULT_ROUTE));
    assert!(!gated_text.contains(&held), "{gated_text}");
    let default_entry = format!("d={}", sluice::render::edge::lua_string(DEFAULT_ROUTE));
    assert!(everything.contains(&default_entry));
    assert!(!gated_text.contains(&default_entry), "{gated_text}");
    assert!(!gated_text.lines().any(|line| line == DEFAULT_ROUTE));
    for flow in pipeline.flows.iter().filter(|f| route(f) != held) {
        assert!(gated_text.contains(&route(flow)), "{}", route(flow));
    }
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
    // Loaded by fluentd's `-r` from the running revision, which carries the file.
    let at = args.iter().position(|a| *a == "-r").unwrap();
    assert_eq!(args[at + 1], "/sluice/active/current/regexp-timeout.rb");
    let secret = find(&children, ChildKind::Secret, "main-aggregator-config");
    use base64::Engine;
    let encoded = secret["data"]["regexp-timeout.rb"].as_str().unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(script.contains("Regexp.timeout = 1.0"), "{script}");
}

/// The agents run as the ServiceAccount the install binds (deploy/rbac/agent-rbac.yaml), and
/// only kubelet-reading agents as the one bound to `nodes/proxy`; the operator builds no
/// cluster-scoped RBAC.
#[test]
fn the_agent_runs_as_the_service_account_the_install_binds() {
    use sluice::layout;
    let mut pipeline = examples_pipeline();
    for (use_kubelet, account) in [
        (false, layout::AGENT_SERVICE_ACCOUNT),
        (true, layout::AGENT_KUBELET_SERVICE_ACCOUNT),
    ] {
        pipeline
            .spec
            .agent
            .get_or_insert_with(Default::default)
            .kubernetes_metadata
            .get_or_insert_with(Default::default)
            .use_kubelet = Some(use_kubelet);
        let children = build::objects(&pipeline, &pki()).unwrap();
        let pod = &find(&children, ChildKind::DaemonSet, "main-agent")["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], account);
        let accounts: BTreeSet<String> = children
            .iter()
            .filter(|c| c.kind == ChildKind::ServiceAccount)
            .filter_map(|c| c.object.metadata.name.clone())
            .collect();
        assert_eq!(
            accounts,
            BTreeSet::from([account.to_owned(), "main-aggregator".to_owned()])
        );
        assert!(children.iter().all(|c| {
            c.object
                .types
                .as_ref()
                .is_some_and(|t| !t.kind.starts_with("ClusterRole"))
        }));
    }
}

/// A Logging that sizes nothing gets an agent that holds what real fluent-bit used with
/// 1,000 routes active on one node (up to 429 MB; benches/README.md): at the old 256Mi such
/// an agent was killed under load. A Logging's own resources replace the default.
#[test]
fn the_agents_default_memory_limit_fits_a_thousand_active_routes() {
    let mut pipeline = examples_pipeline();
    let agent_limits = |pipeline: &Pipeline| {
        let children = build::objects(pipeline, &pki()).unwrap();
        find(&children, ChildKind::DaemonSet, "main-agent")["spec"]["template"]["spec"]
            ["containers"][0]["resources"]["limits"]
            .clone()
    };
    pipeline
        .spec
        .agent
        .get_or_insert_with(Default::default)
        .resources = None;
    assert_eq!(agent_limits(&pipeline)["memory"], "512Mi");
    pipeline
        .spec
        .agent
        .get_or_insert_with(Default::default)
        .resources =
        Some(serde_json::from_value(serde_json::json!({"limits": {"memory": "1Gi"}})).unwrap());
    assert_eq!(agent_limits(&pipeline)["memory"], "1Gi");
}

/// fluentd listens only after the supervisor and the worker configured every plugin: no
/// probe may kill it meanwhile. The startup probe allows twice the check timeout and a
/// minute (a configuration the capacity model admits checks within half the timeout), and
/// the check's limits are the Logging's.
#[test]
fn the_aggregator_may_load_its_configuration_and_the_check_has_the_loggings_limits() {
    let aggregator_pod = |pipeline: &Pipeline| {
        let children = build::objects(pipeline, &pki()).unwrap();
        let set = find(
            &children,
            ChildKind::StatefulSet,
            &pipeline.names.aggregator(),
        );
        set["spec"]["template"]["spec"].clone()
    };
    let container = |pod: &serde_json::Value, name: &str| {
        pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no container {name}"))
    };
    let budget = |probe: &serde_json::Value| {
        probe["periodSeconds"].as_i64().unwrap_or(10)
            * probe["failureThreshold"].as_i64().unwrap_or(3)
            + probe["initialDelaySeconds"].as_i64().unwrap_or(0)
    };
    let mut pipeline = examples_pipeline();
    for (settings, memory, timeout) in [
        (None, "512Mi", 120),
        (
            Some(serde_json::json!({"memoryLimit": "2Gi", "timeoutSeconds": 300})),
            "2Gi",
            300,
        ),
    ] {
        if let Some(settings) = settings {
            pipeline
                .spec
                .aggregator
                .get_or_insert_with(Default::default)
                .config_check = Some(serde_json::from_value(settings).unwrap());
        }
        let pod = aggregator_pod(&pipeline);
        let fluentd = container(&pod, "fluentd");
        assert_eq!(fluentd["startupProbe"]["tcpSocket"]["port"], "metrics");
        assert!(
            budget(&fluentd["startupProbe"]) >= 2 * timeout + 60,
            "{fluentd}"
        );
        assert!(fluentd["livenessProbe"]["initialDelaySeconds"].is_null());
        for name in ["config-init", "config-reloader"] {
            let reloader = container(&pod, name);
            assert_eq!(reloader["resources"]["limits"]["memory"], memory);
            let flag = format!("--validate-timeout={timeout}s");
            assert!(
                reloader["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == flag.as_str()),
                "{reloader}"
            );
        }
    }
}
