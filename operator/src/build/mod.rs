//! Turns a [`Pipeline`] and a [`PkiPlan`] into the complete Kubernetes objects Sluice applies,
//! rendering the configuration on the way. The CLI (`sluice render`) and the controller both
//! call [`objects`]: there is no second way to build them.

mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Namespace, Secret, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use sha2::{Digest, Sha256};

use crate::api::API_VERSION;
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
    ClusterRoleBinding,
    Secret,
    Service,
    PodDisruptionBudget,
    DaemonSet,
    StatefulSet,
}

impl ChildKind {
    /// Every kind, in apply order.
    pub const ALL: [ChildKind; 8] = [
        ChildKind::Namespace,
        ChildKind::ServiceAccount,
        ChildKind::ClusterRoleBinding,
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
    let agent_config = render::agent(pipeline);
    // Deliberately not in any hash: agents re-read the table, so a Flow edit must not roll
    // every agent (docs/routing.md, "Routing data, not restarts").
    let agent_routes = render::agent_routes(pipeline);
    let aggregator_shards = render::aggregator(pipeline);
    let hashes = Hashes {
        agent_config: hash_files(agent_config.iter()),
        aggregator_config: hash_aggregator(&aggregator_shards, &pipeline.output_secret_data),
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
    for component in [workloads::AGENT, workloads::AGGREGATOR] {
        push(
            ChildKind::ServiceAccount,
            serde_json::to_value(service_account(names, component, &owner)),
        )?;
    }
    for binding in agent_role_bindings(pipeline, &owner) {
        push(ChildKind::ClusterRoleBinding, serde_json::to_value(binding))?;
    }
    push(
        ChildKind::Secret,
        serde_json::to_value(config_secret(
            names,
            names.agent_config_secret(),
            workloads::AGENT,
            &agent_config,
            &owner,
        )),
    )?;
    push(
        ChildKind::Secret,
        serde_json::to_value(config_secret(
            names,
            names.agent_routes_secret(),
            workloads::AGENT,
            std::slice::from_ref(&agent_routes),
            &owner,
        )),
    )?;
    for (index, shard) in aggregator_shards.iter().enumerate() {
        push(
            ChildKind::Secret,
            serde_json::to_value(config_secret(
                names,
                names.aggregator_config_secret(index),
                workloads::AGGREGATOR,
                shard,
                &owner,
            )),
        )?;
    }
    if !pipeline.output_secret_data.is_empty() {
        push(
            ChildKind::Secret,
            serde_json::to_value(output_credentials(pipeline, &owner)),
        )?;
    }
    for secret in &pki.secrets {
        let mut secret = secret.clone();
        secret.metadata.namespace = Some(names.control_namespace.clone());
        secret.metadata.owner_references = owner.clone().map(|o| vec![o]);
        push(ChildKind::Secret, serde_json::to_value(secret))?;
    }
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
            pipeline,
            aggregator_shards.len(),
            &hashes,
            &owner,
        )),
    )?;

    children.sort_by(|a, b| {
        (
            a.kind,
            &a.object.metadata.namespace,
            &a.object.metadata.name,
        )
            .cmp(&(
                b.kind,
                &b.object.metadata.namespace,
                &b.object.metadata.name,
            ))
    });
    Ok(children)
}

/// Hashes put on pod templates so that any change of what the pods read rolls them.
pub(crate) struct Hashes {
    pub agent_config: String,
    pub aggregator_config: String,
    pub tls: String,
}

fn hash_files<'a>(files: impl Iterator<Item = &'a ConfigFile>) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hash_entry(&mut hasher, file.name.as_bytes(), file.content.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn hash_aggregator(shards: &[Vec<ConfigFile>], credentials: &BTreeMap<String, Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    for file in shards.iter().flatten() {
        hash_entry(&mut hasher, file.name.as_bytes(), file.content.as_bytes());
    }
    for (name, value) in credentials {
        hash_entry(&mut hasher, name.as_bytes(), value);
    }
    hex::encode(hasher.finalize())
}

/// Length-prefixed, so that moving bytes between a name and its value changes the hash.
fn hash_entry(hasher: &mut Sha256, name: &[u8], value: &[u8]) {
    hasher.update((name.len() as u64).to_be_bytes());
    hasher.update(name);
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
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
    names: &Names,
    component: &str,
    owner: &Option<OwnerReference>,
) -> ServiceAccount {
    let name = if component == workloads::AGENT {
        names.agent()
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

fn agent_role_bindings(
    pipeline: &Pipeline,
    owner: &Option<OwnerReference>,
) -> Vec<ClusterRoleBinding> {
    let names = &pipeline.names;
    let use_kubelet = pipeline
        .spec
        .agent
        .as_ref()
        .and_then(|a| a.kubernetes_metadata.as_ref())
        .and_then(|m| m.use_kubelet)
        .unwrap_or(false);
    let mut roles = vec![(
        names.agent_cluster_role_binding(),
        layout::AGENT_CLUSTER_ROLE,
    )];
    if use_kubelet {
        roles.push((
            names.agent_kubelet_cluster_role_binding(),
            layout::AGENT_KUBELET_CLUSTER_ROLE,
        ));
    }
    roles
        .into_iter()
        .map(|(name, role)| {
            let mut meta = metadata(names, name, workloads::AGENT, owner);
            meta.namespace = None;
            ClusterRoleBinding {
                metadata: meta,
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "ClusterRole".to_owned(),
                    name: role.to_owned(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".to_owned(),
                    name: names.agent(),
                    namespace: Some(names.control_namespace.clone()),
                    ..Subject::default()
                }]),
            }
        })
        .collect()
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

fn output_credentials(pipeline: &Pipeline, owner: &Option<OwnerReference>) -> Secret {
    let names = &pipeline.names;
    Secret {
        metadata: metadata(
            names,
            names.aggregator_output_secret(),
            workloads::AGGREGATOR,
            owner,
        ),
        type_: Some("Opaque".to_owned()),
        data: Some(
            pipeline
                .output_secret_data
                .iter()
                .map(|(file, value)| (file.clone(), ByteString(value.clone())))
                .collect(),
        ),
        ..Secret::default()
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
                ports: Some(vec![forward, metrics]),
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
