//! Turns a [`Pipeline`] and a [`PkiPlan`] into the complete Kubernetes objects Sluice applies,
//! rendering the configuration on the way. The CLI (`sluice render`) and the controller both
//! call [`objects`]: there is no second way to build them.

mod workloads;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Namespace, Secret, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;

use crate::api::API_VERSION;
use crate::bundle::{self, BundleFile, Manifest, Placement};
use crate::layout::{self, Names};
use crate::model::Pipeline;
use crate::pki::PkiPlan;
use crate::render::{self, ConfigFile};

/// The kinds of objects Sluice creates, in the order they are applied: anything a pod mounts
/// exists before the workload that mounts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    Namespace,
    ServiceAccount,
    Secret,
    Service,
    PodDisruptionBudget,
    DaemonSet,
    StatefulSet,
}

impl ChildKind {
    /// Every kind, in apply order.
    pub const ALL: [ChildKind; 7] = [
        ChildKind::Namespace,
        ChildKind::ServiceAccount,
        ChildKind::Secret,
        ChildKind::Service,
        ChildKind::PodDisruptionBudget,
        ChildKind::DaemonSet,
        ChildKind::StatefulSet,
    ];

    /// Kinds Sluice deletes when it no longer builds them. Namespaces are never deleted:
    /// the control namespace may hold things Sluice does not own.
    pub fn is_pruned(self) -> bool {
        self != ChildKind::Namespace
    }
}

/// One object to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    /// Complete object with apiVersion, kind, metadata (name, namespace, labels, owner
    /// references) and its spec or data.
    pub object: DynamicObject,
}

/// Errors turning typed objects into dynamic ones; only a bug can cause them.
#[derive(Debug, thiserror::Error)]
#[error("cannot convert a built {kind:?} into a dynamic object: {source}")]
pub struct BuildError {
    kind: ChildKind,
    source: serde_json::Error,
}

/// Every object for one Logging, sorted by apply order then namespace and name.
pub fn objects(pipeline: &Pipeline, pki: &PkiPlan) -> Result<Vec<Child>, BuildError> {
    let names = &pipeline.names;
    let owner = owner_reference(pipeline);
    // The agent's routing table is data the running filter re-reads, and the config bundles
    // reach running pods through the reloader (docs/architecture.md, "Config reload"): no
    // Flow or Output edit changes a pod template. Only the TLS material rolls pods.
    let routes = render::edge::routes(pipeline);
    // The agents' side beside the aggregator's (about 30 and 60 % of the build at 10,000
    // flows), for every flow: what the agents get unless the aggregator left flows out,
    // which a Logging within its limits never does.
    let (agent, (aggregator_bundle, overflowed)) = join(
        || {
            (
                agent_bundle(pipeline),
                routes_secrets(pipeline, &|_| true, &routes),
            )
        },
        || aggregator_bundle(pipeline, &routes),
    );
    // A flow its full slot left out of the aggregator has no dispatch there, so its records
    // would cross the network only to be dropped: agents route as if it did not exist.
    let (agent_bundle, agent_routes) = if overflowed.is_empty() {
        agent
    } else {
        let mut routed = pipeline.clone();
        routed.flows.retain(|flow| !overflowed.contains(&flow.key));
        let routes = render::edge::routes(&routed);
        (
            agent_bundle(&routed),
            routes_secrets(&routed, &|_| true, &routes),
        )
    };
    let hashes = Hashes {
        tls: pki.material_hash.clone(),
    };

    let mut children = Vec::new();
    let mut push = |kind: ChildKind,
                    object: Result<serde_json::Value, serde_json::Error>|
     -> Result<(), BuildError> {
        let object = object
            .and_then(serde_json::from_value::<DynamicObject>)
            .map_err(|source| BuildError { kind, source })?;
        children.push(Child { kind, object });
        Ok(())
    };

    push(
        ChildKind::Namespace,
        serde_json::to_value(control_namespace(names)),
    )?;
    // The agents' ClusterRoleBindings come with the install, one per control namespace: the
    // operator only creates the ServiceAccount they name.
    for component in [workloads::AGENT, workloads::AGGREGATOR] {
        push(
            ChildKind::ServiceAccount,
            serde_json::to_value(service_account(pipeline, component, &owner)),
        )?;
    }
    for (name, component, files) in agent_bundle.into_iter().chain(aggregator_bundle) {
        push(
            ChildKind::Secret,
            serde_json::to_value(bundle_secret(names, name, component, files, &owner)),
        )?;
    }
    // One Secret per routing file: a select-label edit rewrites its flow's slot only.
    for secret in agent_routes {
        push(ChildKind::Secret, serde_json::to_value(secret))?;
    }
    for secret in &pki.secrets {
        let mut secret = secret.clone();
        secret.metadata.namespace = Some(names.control_namespace.clone());
        secret.metadata.owner_references = owner.clone().map(|o| vec![o]);
        push(ChildKind::Secret, serde_json::to_value(secret))?;
    }
    push(
        ChildKind::Service,
        serde_json::to_value(agent_headless_service(pipeline, &owner)),
    )?;
    for service in aggregator_services(pipeline, &owner) {
        push(ChildKind::Service, serde_json::to_value(service))?;
    }
    if let Some(pdb) = aggregator_pdb(pipeline, &owner) {
        push(ChildKind::PodDisruptionBudget, serde_json::to_value(pdb))?;
    }
    push(
        ChildKind::DaemonSet,
        serde_json::to_value(workloads::agent_daemon_set(pipeline, &hashes, &owner)),
    )?;
    push(
        ChildKind::StatefulSet,
        serde_json::to_value(workloads::aggregator_stateful_set(
            pipeline, &hashes, &owner,
        )),
    )?;

    children.sort_by(|a, b| {
        (
            a.kind,
            holds_manifest(a),
            &a.object.metadata.namespace,
            &a.object.metadata.name,
        )
            .cmp(&(
                b.kind,
                holds_manifest(b),
                &b.object.metadata.namespace,
                &b.object.metadata.name,
            ))
    });
    Ok(children)
}

/// Runs `left` on a thread of its own while `right` runs on this one, and answers both: an
/// edit at 10,000 flows waits for the whole build, and on the operator's usual two cores two
/// independent parts of it finish in about the time of the longer one. Without a thread to
/// spare, `left` runs here after `right`: the same answers, later. A panic in `left` is
/// raised here, as if it had run on this thread.
fn join<A: Send, B>(left: impl Fn() -> A + Sync, right: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("sluice-build".to_owned())
            .spawn_scoped(scope, &left);
        let b = right();
        let a = match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => left(),
        };
        (a, b)
    })
}

/// The agents' routing table Secrets for `pipeline`, holding only the routes `emits` lets
/// through: the index (`routes.lua`, with the routes the table emits in `routes.list`) and
/// every slot. The operator builds them again with only the routes every aggregator pod
/// dispatches (docs/architecture.md, "Config reload").
pub fn agent_routes_children(
    pipeline: &Pipeline,
    emits: render::edge::Emits<'_>,
) -> Result<Vec<Child>, BuildError> {
    let kind = ChildKind::Secret;
    let routes = render::edge::routes_emitting(pipeline, emits);
    routes_secrets(pipeline, emits, &routes)
        .into_iter()
        .map(|secret| {
            let object = serde_json::to_value(secret)
                .and_then(serde_json::from_value::<DynamicObject>)
                .map_err(|source| BuildError { kind, source })?;
            Ok(Child { kind, object })
        })
        .collect()
}

/// `routes` are the routes `emits` lets through ([`render::edge::routes_emitting`]).
fn routes_secrets(
    pipeline: &Pipeline,
    emits: render::edge::Emits<'_>,
    routes: &BTreeSet<String>,
) -> Vec<Secret> {
    let names = &pipeline.names;
    let owner = owner_reference(pipeline);
    let table =
        render::edge::routes_table_emitting(pipeline, emits, render::edge::ROUTES_SLOT_BUDGET);
    let routes = render::edge::routes_list(routes);
    names
        .agent_routes_secrets()
        .into_iter()
        .zip(table.files())
        .enumerate()
        .map(|(position, (name, file))| {
            // The route list is copied for the index's Secret only: at 10,000 flows it is
            // 180 KB, and a copy made and dropped for every slot cost 6 MB per build.
            let index;
            let files: &[ConfigFile] = if position == 0 {
                index = [file.clone(), routes.clone()];
                &index
            } else {
                std::slice::from_ref(file)
            };
            config_secret(names, name, workloads::AGENT, files, &owner)
        })
        .collect()
}

/// Hashes put on pod templates: what the pods read that no reload can carry (the TLS
/// material is read when fluentd and fluent-bit start), so a change rolls them.
pub(crate) struct Hashes {
    pub tls: String,
}

/// A Secret of a config bundle holding the manifest sorts after the others of its kind: the
/// reloader acts on a manifest only once every file it names is in place, so writing the
/// manifest last means a pod never waits on a half-written bundle for long.
fn holds_manifest(child: &Child) -> bool {
    child.kind == ChildKind::Secret
        && child
            .object
            .data
            .get("data")
            .and_then(|data| data.get(bundle::MANIFEST_FILE))
            .is_some()
}

/// A config bundle split into its Secrets: name, component and files (the manifest in the
/// first).
type BundleSecrets = Vec<(String, &'static str, Vec<BundleFile>)>;

/// Rendered text becomes bundle bytes without a copy: at 10,000 flows the aggregator's
/// configuration is megabytes, built on every reconcile.
fn bundle_file(file: ConfigFile, placement: Placement) -> BundleFile {
    BundleFile {
        name: file.name,
        content: file.content.into_bytes(),
        placement,
    }
}

fn manifest_file<'a>(files: impl IntoIterator<Item = &'a BundleFile>) -> BundleFile {
    BundleFile {
        name: bundle::MANIFEST_FILE.to_owned(),
        content: Manifest::of(files).to_json().into_bytes(),
        placement: Placement::Revision,
    }
}

/// The agent's bundle: `fluent-bit.yaml` and the router script, one Secret.
fn agent_bundle(pipeline: &Pipeline) -> BundleSecrets {
    let mut files: Vec<BundleFile> = render::agent(pipeline)
        .into_iter()
        .enumerate()
        .map(|(index, file)| {
            let placement = if index == 0 {
                Placement::Revision
            } else {
                Placement::Shared
            };
            bundle_file(file, placement)
        })
        .collect();
    files.push(manifest_file(&files));
    vec![(
        pipeline.names.agent_config_secret(),
        workloads::AGENT,
        files,
    )]
}

/// The aggregator's bundle: the main Secret (with the manifest), one Secret per slot, and
/// the output credentials; and the flows left out because their slot is full. `routes`:
/// every flow's route ([`render::edge::routes`]); the bundle lists those it dispatches.
fn aggregator_bundle(
    pipeline: &Pipeline,
    routes: &BTreeSet<String>,
) -> (BundleSecrets, Vec<crate::model::ObjectKey>) {
    let names = &pipeline.names;
    let rendered = render::aggregator(pipeline);
    let overflowed = rendered.overflowed;
    // The routes this configuration dispatches travel in its bundle, so the operator knows
    // them for every revision a pod reports (controller/rollout.rs, `gate_routes`).
    let mut dispatched = routes.clone();
    for key in &overflowed {
        dispatched.remove(render::edge::flow_route(&render::fluentd::flow_label(key)));
    }
    let buffers = ConfigFile {
        name: layout::BUFFERS_LIST_FILE.to_owned(),
        content: rendered
            .buffers
            .iter()
            .map(|path| format!("{path}\n"))
            .collect(),
    };
    let mut main: Vec<BundleFile> = rendered
        .main
        .into_iter()
        .chain([render::edge::routes_list(&dispatched), buffers])
        .map(|file| bundle_file(file, Placement::Revision))
        .chain(
            rendered
                .shared
                .into_iter()
                .map(|file| bundle_file(file, Placement::Shared)),
        )
        .collect();
    let slots: Vec<BundleFile> = rendered
        .slots
        .into_iter()
        .map(|file| bundle_file(file, Placement::Revision))
        .collect();
    let credentials: Vec<BundleFile> = pipeline
        .output_secret_data
        .iter()
        .map(|(name, value)| BundleFile {
            name: name.clone(),
            content: value.clone(),
            placement: Placement::Shared,
        })
        .collect();
    let manifest = manifest_file(main.iter().chain(&slots).chain(&credentials));
    main.push(manifest);

    let mut secrets = vec![(
        names.aggregator_config_secret(),
        workloads::AGGREGATOR,
        main,
    )];
    for (index, slot) in slots.into_iter().enumerate() {
        secrets.push((
            names.aggregator_config_slot_secret(index + 1),
            workloads::AGGREGATOR,
            vec![slot],
        ));
    }
    secrets.push((
        names.aggregator_credentials_secret(),
        workloads::AGGREGATOR,
        credentials,
    ));
    (secrets, overflowed)
}

/// Owner reference to the Logging; absent offline, where the Logging has no uid yet.
fn owner_reference(pipeline: &Pipeline) -> Option<OwnerReference> {
    pipeline.logging_uid.as_ref().map(|uid| OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: "Logging".to_owned(),
        name: pipeline.logging.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

pub(crate) fn metadata(
    names: &Names,
    name: String,
    component: &str,
    owner: &Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.control_namespace.clone()),
        labels: Some(names.labels(component)),
        owner_references: owner.clone().map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn control_namespace(names: &Names) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(names.control_namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn service_account(
    pipeline: &Pipeline,
    component: &str,
    owner: &Option<OwnerReference>,
) -> ServiceAccount {
    let names = &pipeline.names;
    let name = if component == workloads::AGENT {
        agent_service_account(pipeline).to_owned()
    } else {
        names.aggregator()
    };
    ServiceAccount {
        metadata: metadata(names, name, component, owner),
        // The aggregator never calls the API server; only the agent's kubernetes filter does.
        automount_service_account_token: Some(component == workloads::AGENT),
        ..ServiceAccount::default()
    }
}

/// The agent's ServiceAccount: the one bound to the kubelet ClusterRole only when the agent
/// asks the kubelet.
pub(crate) fn agent_service_account(pipeline: &Pipeline) -> &'static str {
    let use_kubelet = pipeline
        .spec
        .agent
        .as_ref()
        .and_then(|a| a.kubernetes_metadata.as_ref())
        .and_then(|m| m.use_kubelet)
        .unwrap_or(false);
    layout::agent_service_account(use_kubelet)
}

fn config_secret(
    names: &Names,
    name: String,
    component: &str,
    files: &[ConfigFile],
    owner: &Option<OwnerReference>,
) -> Secret {
    Secret {
        metadata: metadata(names, name, component, owner),
        type_: Some("Opaque".to_owned()),
        data: Some(
            files
                .iter()
                .map(|file| {
                    (
                        file.name.clone(),
                        ByteString(file.content.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Secret::default()
    }
}

/// One Secret of a candidate config bundle.
fn bundle_secret(
    names: &Names,
    name: String,
    component: &str,
    files: Vec<BundleFile>,
    owner: &Option<OwnerReference>,
) -> Secret {
    let mut metadata = metadata(names, name, component, owner);
    metadata.labels.get_or_insert_with(BTreeMap::new).insert(
        layout::CONFIG_SET_LABEL.to_owned(),
        layout::CONFIG_SET_CANDIDATE.to_owned(),
    );
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(
            files
                .into_iter()
                .map(|file| (file.name, ByteString(file.content)))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn reloader_port() -> ServicePort {
    ServicePort {
        name: Some("reloader".to_owned()),
        port: layout::RELOADER_PORT,
        target_port: Some(IntOrString::String("reloader".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// Nothing connects through it: its DNS name lists the agent pods, whose reloaders the
/// operator asks what they accepted (docs/architecture.md, "Config reload").
fn agent_headless_service(pipeline: &Pipeline, owner: &Option<OwnerReference>) -> Service {
    let names = &pipeline.names;
    Service {
        metadata: metadata(
            names,
            names.agent_headless_service(),
            workloads::AGENT,
            owner,
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(names.selector_labels(workloads::AGENT)),
            ports: Some(vec![reloader_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn aggregator_services(pipeline: &Pipeline, owner: &Option<OwnerReference>) -> Vec<Service> {
    let names = &pipeline.names;
    let port = workloads::aggregator_port(pipeline);
    let forward = ServicePort {
        name: Some("forward".to_owned()),
        port,
        target_port: Some(IntOrString::String("forward".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let metrics = ServicePort {
        name: Some("metrics".to_owned()),
        port: layout::AGGREGATOR_METRICS_PORT,
        target_port: Some(IntOrString::String("metrics".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let selector = Some(names.selector_labels(workloads::AGGREGATOR));
    vec![
        Service {
            metadata: metadata(names, names.aggregator(), workloads::AGGREGATOR, owner),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_owned()),
                selector: selector.clone(),
                ports: Some(vec![forward.clone()]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
        Service {
            metadata: metadata(
                names,
                names.aggregator_headless_service(),
                workloads::AGGREGATOR,
                owner,
            ),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_owned()),
                selector,
                ports: Some(vec![forward, metrics, reloader_port()]),
                // A draining pod is not ready, and the operator still reaches it by name.
                publish_not_ready_addresses: Some(true),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    ]
}

fn aggregator_pdb(
    pipeline: &Pipeline,
    owner: &Option<OwnerReference>,
) -> Option<PodDisruptionBudget> {
    let names = &pipeline.names;
    let spec = pipeline
        .spec
        .aggregator
        .as_ref()
        .and_then(|a| a.pod_disruption_budget.clone())
        .unwrap_or_default();
    if spec.enabled == Some(false) {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(names, names.aggregator(), workloads::AGGREGATOR, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(spec.max_unavailable.unwrap_or(IntOrString::Int(1))),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector_labels(workloads::AGGREGATOR)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn join_answers_both_and_runs_left_on_another_thread() {
        let here = std::thread::current().id();
        let (left, right) = join(
            || (std::thread::current().id(), 1 + 1),
            || (std::thread::current().id(), "right"),
        );
        assert_eq!(left.1, 2);
        assert_eq!(right, (here, "right"));
        assert_ne!(left.0, here);
    }
}
