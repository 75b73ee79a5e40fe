//! Server-side apply of built children, recreation of workloads whose immutable fields
//! changed, and deletion of labelled children no longer built.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::context::{AppliedChild, Context, Error};
use crate::build::{Child, ChildKind};
use crate::layout::{FIELD_MANAGER, LOGGING_LABEL, MANAGED_BY};

/// Label every object Sluice creates carries besides [`LOGGING_LABEL`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The API resource of a child kind and whether it is namespaced.
pub fn api_resource(kind: ChildKind) -> (ApiResource, bool) {
    use k8s_openapi::api::{apps, core, policy};
    match kind {
        ChildKind::Namespace => (ApiResource::erase::<core::v1::Namespace>(&()), false),
        ChildKind::ServiceAccount => (ApiResource::erase::<core::v1::ServiceAccount>(&()), true),
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
/// instead of the objects themselves. Streamed into the hasher: config Secrets are
/// megabytes at 10,000 flows and are hashed on every reconcile.
pub fn json_hash(value: &impl serde::Serialize) -> String {
    let mut hasher = Sha256::new();
    // Writing into a hasher cannot fail, and a value that cannot be serialised hashes
    // as whatever part of it was written, as the empty serialisation did before.
    let _ = serde_json::to_writer(&mut hasher, value);
    hex::encode(hasher.finalize())
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

/// The cached live object of a child; Namespaces are cached as metadata only.
fn cached_child(ctx: &Context, id: &ChildId) -> Option<Arc<DynamicObject>> {
    ctx.stores
        .children_of(id.0)
        .into_iter()
        .find(|o| o.namespace() == id.1 && o.name_any() == id.2)
}

fn namespace_exists(ctx: &Context, name: &str) -> bool {
    ctx.stores
        .namespaces
        .state()
        .iter()
        .any(|ns| ns.name_any() == name)
}

/// Whether the live object holds every field of `desired`, compared part by part so the
/// live object (a config Secret can be a megabyte) is never copied.
fn live_contains(kind: ChildKind, live: &DynamicObject, desired: &DynamicObject) -> bool {
    let Ok(serde_json::Value::Object(desired)) = serde_json::to_value(desired) else {
        return false;
    };
    // Items of the initial list carry no apiVersion/kind; watch events do.
    let (resource, _) = api_resource(kind);
    desired.iter().all(|(key, want)| match key.as_str() {
        "apiVersion" => {
            live.types
                .as_ref()
                .map_or(&resource.api_version, |t| &t.api_version)
                == want.as_str().unwrap_or_default()
        }
        "kind" => {
            live.types.as_ref().map_or(&resource.kind, |t| &t.kind)
                == want.as_str().unwrap_or_default()
        }
        "metadata" => {
            serde_json::to_value(&live.metadata).is_ok_and(|metadata| contains(&metadata, want))
        }
        _ => match live.data.get(key) {
            Some(have) => contains(have, want),
            None => is_zero(want),
        },
    })
}

/// Whether a child must be sent: it is skipped only when we applied exactly this desired
/// object before and the live object still carries every field we set.
fn needs_apply(ctx: &Context, id: &ChildId, hash: &str, desired: &DynamicObject) -> bool {
    if id.0 == ChildKind::Namespace {
        // The control namespace is built with nothing but its name, so an existing one is
        // always as built. Applying it anyway would need cluster-wide `patch` on Namespaces,
        // which only `--control-namespaces=*` grants: a listed control namespace exists
        // before the operator starts (its RoleBinding lives there).
        return !namespace_exists(ctx, &id.2);
    }
    let remembered = ctx.memory().applied.get(id).cloned();
    let Some(remembered) = remembered.filter(|r| r.hash == hash) else {
        return true;
    };
    let Some(live) = cached_child(ctx, id) else {
        return true;
    };
    let version = live.resource_version();
    if version.is_some() && version == remembered.verified {
        return false;
    }
    if !live_contains(id.0, &live, desired) {
        return true;
    }
    if let Some(entry) = ctx.memory().applied.get_mut(id) {
        entry.verified = version;
    }
    false
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
        // Never send server-owned metadata; the builder makes fresh objects, so this copies
        // nothing unless it ever stops doing so.
        let object = if child.object.metadata.managed_fields.is_some()
            || child.object.metadata.resource_version.is_some()
        {
            let mut stripped = child.object.clone();
            stripped.meta_mut().managed_fields = None;
            stripped.meta_mut().resource_version = None;
            std::borrow::Cow::Owned(stripped)
        } else {
            std::borrow::Cow::Borrowed(&child.object)
        };
        let object = object.as_ref();
        let hash = json_hash(object);
        if !needs_apply(ctx, &id, &hash, object) {
            continue;
        }
        let existed = match id.0 {
            ChildKind::Namespace => namespace_exists(ctx, &id.2),
            _ => cached_child(ctx, &id).is_some(),
        };
        let api = api_for(ctx, child.kind, id.1.as_deref());
        let verified = match api.patch(&id.2, &params, &Patch::Apply(object)).await {
            Ok(live) => live.resource_version(),
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
                let live = api
                    .patch(&id.2, &params, &Patch::Apply(object))
                    .await
                    .map_err(|source| Error::Apply {
                        kind: child.kind,
                        name: display(&id),
                        source: Box::new(source),
                    })?;
                applied.recreated.push((child.kind, display(&id)));
                live.resource_version()
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
        };
        ctx.metrics.wrote("apply", &format!("{:?}", child.kind));
        if existed {
            applied.updated.push((child.kind, display(&id)));
        } else {
            applied.created.push((child.kind, display(&id)));
        }
        let mut memory = ctx.memory();
        // Only what the TLS planner reads needs a stand-in; rendered configuration would be
        // a second copy of all rendered text.
        if child.kind == ChildKind::Secret
            && !super::inventory::is_rendered_config(object)
            && let Some(namespace) = &id.1
        {
            memory
                .applied_secrets
                .insert((namespace.clone(), id.2.clone()), object.clone());
        }
        memory.applied.insert(id, AppliedChild { hash, verified });
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

    fn dynamic(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_live_child_is_compared_part_by_part() {
        let desired = dynamic(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}},
            "data": {"k": "dg=="}}));
        // An item of the initial list: no apiVersion/kind, server-added metadata and fields.
        let listed = dynamic(json!({
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1", "y": "2"},
                         "uid": "u", "resourceVersion": "7"},
            "data": {"k": "dg==", "other": "eA=="}, "type": "Opaque"}));
        assert!(live_contains(ChildKind::Secret, &listed, &desired));

        let relabelled = dynamic(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "2"}},
            "data": {"k": "dg=="}}));
        assert!(!live_contains(ChildKind::Secret, &relabelled, &desired));
        let edited = dynamic(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}},
            "data": {"k": "eA=="}}));
        assert!(!live_contains(ChildKind::Secret, &edited, &desired));
        let emptied = dynamic(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}}}));
        assert!(!live_contains(ChildKind::Secret, &emptied, &desired));
        assert!(
            !live_contains(ChildKind::Service, &listed, &desired),
            "another kind"
        );
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
