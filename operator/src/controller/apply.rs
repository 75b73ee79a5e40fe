//! Server-side apply of built children, recreation of workloads whose immutable fields
//! changed, and deletion of labelled children no longer built.

use std::collections::BTreeSet;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::context::{Context, Error};
use crate::build::{Child, ChildKind};
use crate::layout::{FIELD_MANAGER, LOGGING_LABEL, MANAGED_BY};

/// Label every object Sluice creates carries besides [`LOGGING_LABEL`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The API resource of a child kind and whether it is namespaced.
pub fn api_resource(kind: ChildKind) -> (ApiResource, bool) {
    use k8s_openapi::api::{apps, core, policy, rbac};
    match kind {
        ChildKind::Namespace => (ApiResource::erase::<core::v1::Namespace>(&()), false),
        ChildKind::ServiceAccount => (ApiResource::erase::<core::v1::ServiceAccount>(&()), true),
        ChildKind::ClusterRoleBinding => (
            ApiResource::erase::<rbac::v1::ClusterRoleBinding>(&()),
            false,
        ),
        ChildKind::Secret => (ApiResource::erase::<core::v1::Secret>(&()), true),
        ChildKind::Service => (ApiResource::erase::<core::v1::Service>(&()), true),
        ChildKind::PodDisruptionBudget => (
            ApiResource::erase::<policy::v1::PodDisruptionBudget>(&()),
            true,
        ),
        ChildKind::DaemonSet => (ApiResource::erase::<apps::v1::DaemonSet>(&()), true),
        ChildKind::StatefulSet => (ApiResource::erase::<apps::v1::StatefulSet>(&()), true),
    }
}

fn api_for(ctx: &Context, kind: ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let (resource, namespaced) = api_resource(kind);
    match (namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
        _ => Api::all_with(ctx.client.clone(), &resource),
    }
}

/// What applying the children did, for Events and status.
#[derive(Debug, Default)]
pub struct Applied {
    /// Children that did not exist before.
    pub created: Vec<(ChildKind, String)>,
    /// Children that existed and were changed.
    pub updated: Vec<(ChildKind, String)>,
    /// Workloads deleted and re-created because an immutable field changed.
    pub recreated: Vec<(ChildKind, String)>,
    /// Children the API server refused as invalid (422), with its message: caused by
    /// something in the Logging that only the API server checks (an `affinity`, a quantity).
    /// Retrying cannot help, so they become problems of the Logging rather than errors.
    pub rejected: Vec<(ChildKind, String, String)>,
}

/// Identity of a child in memory and in the orphan scan.
type ChildId = (ChildKind, Option<String>, String);

fn child_id(child: &Child) -> ChildId {
    (
        child.kind,
        child.object.namespace(),
        child.object.name_any(),
    )
}

fn display(id: &ChildId) -> String {
    match &id.1 {
        Some(ns) => format!("{ns}/{}", id.2),
        None => id.2.clone(),
    }
}

/// SHA-256 of the JSON form: what is remembered of applied objects and written statuses,
/// instead of the objects themselves.
pub fn json_hash(value: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// True when every field `desired` sets has the same value in `live`: the API server adds
/// defaults and other managers' fields, never removes ours, except that it omits zero values
/// (`false`, `0`, `""`, `{}`, `[]`, like Go's `omitempty`), which therefore match a missing field.
pub fn contains(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, want)| match live.get(key) {
                Some(have) => contains(have, want),
                None => is_zero(want),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(h, w)| contains(h, w))
        }
        _ => live == desired,
    }
}

fn is_zero(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

/// The live object of a child, from the cache (Namespaces come from the metadata cache).
fn live_object(ctx: &Context, id: &ChildId) -> Option<serde_json::Value> {
    if id.0 == ChildKind::Namespace {
        let meta = ctx
            .stores
            .namespaces
            .state()
            .into_iter()
            .find(|ns| ns.name_any() == id.2)?;
        return Some(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": meta.metadata,
        }));
    }
    let object = ctx
        .stores
        .children_of(id.0)
        .into_iter()
        .find(|o| o.namespace() == id.1 && o.name_any() == id.2)?;
    let mut live = serde_json::to_value(&*object).ok()?;
    // Items of the initial list carry no apiVersion/kind; watch events do.
    let (resource, _) = api_resource(id.0);
    if let Some(map) = live.as_object_mut() {
        map.entry("apiVersion")
            .or_insert(resource.api_version.into());
        map.entry("kind").or_insert(resource.kind.into());
    }
    Some(live)
}

/// Whether a child must be sent: it is skipped only when we applied exactly this desired
/// object before and the live object still carries every field we set.
fn needs_apply(ctx: &Context, id: &ChildId, hash: &str, desired: &serde_json::Value) -> bool {
    if id.0 == ChildKind::Namespace {
        // The control namespace is built with nothing but its name, so an existing one is
        // always as built. Applying it anyway would need cluster-wide `patch` on Namespaces,
        // which only `--control-namespaces=*` grants: a listed control namespace exists
        // before the operator starts (its RoleBinding lives there).
        return live_object(ctx, id).is_none();
    }
    let remembered = ctx.memory().applied.get(id).cloned();
    if remembered.as_deref() != Some(hash) {
        return true;
    }
    match live_object(ctx, id) {
        Some(live) => !contains(&live, desired),
        None => true,
    }
}

/// Whether the API server refused the change because it touches an immutable field of a
/// workload, which only deleting and re-creating the workload can carry out.
fn is_immutable_field_change(kind: ChildKind, error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    matches!(kind, ChildKind::DaemonSet | ChildKind::StatefulSet)
        && status.code == 422
        && (status.message.contains("field is immutable")
            || status
                .message
                .contains("updates to statefulset spec for fields other than"))
}

/// Applies every child, in order, with server-side apply under one field manager.
pub async fn apply_children(ctx: &Context, children: &[Child]) -> Result<Applied, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Applied::default();
    for child in children {
        let id = child_id(child);
        let mut object = child.object.clone();
        // Never send server-owned metadata: the builder makes fresh objects, this keeps it so.
        object.meta_mut().managed_fields = None;
        object.meta_mut().resource_version = None;
        let desired = serde_json::to_value(&object)
            .map_err(|e| Error::InvalidChild(format!("{}: {e}", display(&id))))?;
        let hash = json_hash(&object);
        if !needs_apply(ctx, &id, &hash, &desired) {
            continue;
        }
        let existed = live_object(ctx, &id).is_some();
        let api = api_for(ctx, child.kind, id.1.as_deref());
        match api.patch(&id.2, &params, &Patch::Apply(&object)).await {
            Ok(_) => {}
            Err(error) if is_immutable_field_change(child.kind, &error) => {
                // Background deletion removes the pods but never the PersistentVolumeClaims a
                // StatefulSet created: they are not owned by it (retention policy `Retain`).
                api.delete(&id.2, &DeleteParams::background())
                    .await
                    .map_err(|source| Error::Delete {
                        kind: child.kind,
                        name: display(&id),
                        source: Box::new(source),
                    })?;
                api.patch(&id.2, &params, &Patch::Apply(&object))
                    .await
                    .map_err(|source| Error::Apply {
                        kind: child.kind,
                        name: display(&id),
                        source: Box::new(source),
                    })?;
                applied.recreated.push((child.kind, display(&id)));
            }
            Err(kube::Error::Api(status)) if status.code == 422 => {
                applied
                    .rejected
                    .push((child.kind, display(&id), status.message.clone()));
                continue;
            }
            Err(source) => {
                return Err(Error::Apply {
                    kind: child.kind,
                    name: display(&id),
                    source: Box::new(source),
                });
            }
        }
        ctx.metrics.wrote("apply", &format!("{:?}", child.kind));
        if existed {
            applied.updated.push((child.kind, display(&id)));
        } else {
            applied.created.push((child.kind, display(&id)));
        }
        let mut memory = ctx.memory();
        // Only what the TLS planner reads needs a stand-in; config bundles would be a second
        // copy of all rendered text.
        if child.kind == ChildKind::Secret
            && !super::inventory::is_config_bundle(&object)
            && let Some(namespace) = &id.1
        {
            memory
                .applied_secrets
                .insert((namespace.clone(), id.2.clone()), object.clone());
        }
        memory.applied.insert(id, hash);
    }
    Ok(applied)
}

/// Deletes every cached object labelled as this Logging's and managed by Sluice that was not
/// built this run. Namespaces are never deleted: they may hold things Sluice does not own.
pub async fn delete_orphans(
    ctx: &Context,
    logging: &str,
    children: &[Child],
) -> Result<Vec<(ChildKind, String)>, Error> {
    let built: BTreeSet<ChildId> = children.iter().map(child_id).collect();
    let mut deleted = Vec::new();
    for kind in ChildKind::ALL.iter().rev() {
        if !kind.is_pruned() {
            continue;
        }
        let mut orphans: Vec<ChildId> = ctx
            .stores
            .children_of(*kind)
            .iter()
            .filter(|object| {
                let labels = object.labels();
                labels.get(LOGGING_LABEL).map(String::as_str) == Some(logging)
                    && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    // Promoted, never built: they go with the Logging (owner references).
                    && labels.get(crate::layout::CONFIG_SET_LABEL).map(String::as_str)
                        != Some(crate::layout::CONFIG_SET_ACCEPTED)
            })
            .map(|object| (*kind, object.namespace(), object.name_any()))
            .filter(|id| !built.contains(id))
            .collect();
        orphans.sort();
        for id in orphans {
            let api = api_for(ctx, *kind, id.1.as_deref());
            match api.delete(&id.2, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        kind: *kind,
                        name: display(&id),
                        source: Box::new(source),
                    });
                }
            }
            {
                let mut memory = ctx.memory();
                if let Some(namespace) = &id.1 {
                    memory
                        .applied_secrets
                        .remove(&(namespace.clone(), id.2.clone()));
                }
                memory.applied.remove(&id);
            }
            ctx.metrics.wrote("delete", &format!("{kind:?}"));
            deleted.push((*kind, display(&id)));
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_with_defaults_contains_desired() {
        let desired = json!({"spec": {"ports": [{"port": 80}]}, "metadata": {"name": "a"}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "type": "ClusterIP"},
                          "metadata": {"name": "a", "uid": "u"}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn zero_values_the_server_omits_match_a_missing_field() {
        let desired = json!({"metadata": {"annotations": {}}, "spec": {"hostNetwork": false, "tolerations": []}});
        assert!(contains(&json!({"metadata": {}, "spec": {}}), &desired));
        assert!(!contains(
            &json!({"spec": {"hostNetwork": true}}),
            &json!({"spec": {"hostNetwork": false}})
        ));
    }

    #[test]
    fn changed_or_missing_values_are_not_contained() {
        let desired = json!({"spec": {"ports": [{"port": 80}]}});
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 81}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {}}), &desired));
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
            &desired
        ));
    }
}
