//! Builds the [`Inventory`] that `model::resolve` consumes from the reflector caches, plus
//! the user Secrets the objects reference, read by name.
//!
//! Why user Secrets are read rather than watched: a watch would need a cluster-wide Secret
//! cache (memory, and `list`/`watch` on every Secret in the cluster). Sluice watches only
//! the Secrets it labels as its own, and `get`s each referenced user Secret during a
//! reconcile. A change to a user Secret is therefore picked up at the next reconcile: any
//! change to a Sluice object or owned child, or the safety requeue (`--resync-interval`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::context::Context;
use crate::api::{ClusterFlow, ClusterOutput, Flow, Logging, Output};
use crate::build::ChildKind;
use crate::model::{self, Inventory, Kind, ObjectKey};
use crate::render::escape::is_dns_subdomain;
use crate::routing::Watched;

/// A Secret by namespace and name.
pub type SecretName = (String, String);

/// Valid objects of a cache; malformed ones are skipped here and reported by the caller.
fn valid<K>(guarded: &[Arc<DeserializeGuard<K>>]) -> Vec<&K> {
    guarded.iter().filter_map(|g| g.0.as_ref().ok()).collect()
}

/// Objects the API server holds that do not match Sluice's schema, by kind and name.
pub fn malformed(ctx: &Context) -> Vec<(Kind, kube::core::error_boundary::InvalidObject)> {
    fn collect<K>(
        kind: Kind,
        items: Vec<Arc<DeserializeGuard<K>>>,
        out: &mut Vec<(Kind, kube::core::error_boundary::InvalidObject)>,
    ) {
        for item in items {
            if let Err(invalid) = &item.0 {
                out.push((kind, invalid.clone()));
            }
        }
    }
    let mut out = Vec::new();
    collect(Kind::Logging, ctx.stores.loggings.state(), &mut out);
    collect(Kind::Flow, ctx.stores.flows.state(), &mut out);
    collect(
        Kind::ClusterFlow,
        ctx.stores.cluster_flows.state(),
        &mut out,
    );
    collect(Kind::Output, ctx.stores.outputs.state(), &mut out);
    collect(
        Kind::ClusterOutput,
        ctx.stores.cluster_outputs.state(),
        &mut out,
    );
    out
}

/// The cached Sluice objects at one moment. The [`Inventory`] borrows them rather than
/// copying 20,000 objects per reconcile.
pub struct Snapshot {
    loggings: Vec<Arc<DeserializeGuard<Logging>>>,
    pub flows: Vec<Arc<DeserializeGuard<Flow>>>,
    pub cluster_flows: Vec<Arc<DeserializeGuard<ClusterFlow>>>,
    pub outputs: Vec<Arc<DeserializeGuard<Output>>>,
    pub cluster_outputs: Vec<Arc<DeserializeGuard<ClusterOutput>>>,
}

impl Snapshot {
    pub fn take(ctx: &Context) -> Self {
        let stores = &ctx.stores;
        Self {
            loggings: stores.loggings.state(),
            flows: stores.flows.state(),
            cluster_flows: stores.cluster_flows.state(),
            outputs: stores.outputs.state(),
            cluster_outputs: stores.cluster_outputs.state(),
        }
    }

    /// The snapshot's valid objects, the cached namespaces and Sluice's own Secrets.
    pub fn inventory<'a>(&'a self, ctx: &'a Context) -> Inventory<'a> {
        let namespaces = ctx
            .stores
            .namespaces
            .state()
            .iter()
            .map(|meta| Namespace {
                metadata: meta.metadata.clone(),
                ..Namespace::default()
            })
            .collect();
        Inventory {
            loggings: valid(&self.loggings),
            flows: valid(&self.flows),
            cluster_flows: valid(&self.cluster_flows),
            outputs: valid(&self.outputs),
            cluster_outputs: valid(&self.cluster_outputs),
            secrets: owned_secrets(ctx),
            namespaces,
            secret_errors: BTreeMap::new(),
            config_rejected: current_blame(ctx),
            control_namespaces: ctx.stores.control_namespaces.clone(),
            flow_memo: Some(&ctx.flow_memo),
        }
    }
}

/// The cached generation of a Flow, ClusterFlow, Output or ClusterOutput; `None` when the
/// object is not cached or malformed.
pub fn generation_of(ctx: &Context, key: &ObjectKey) -> Option<Option<i64>> {
    fn cached<K: Resource<DynamicType = ()> + Clone>(
        store: &Store<DeserializeGuard<K>>,
        key: &ObjectKey,
    ) -> Option<Option<i64>> {
        let mut reference = ObjectRef::new(&key.name);
        if let Some(namespace) = &key.namespace {
            reference = reference.within(namespace);
        }
        let guard = store.get(&reference)?;
        guard.0.as_ref().ok().map(|object| object.meta().generation)
    }
    let stores = &ctx.stores;
    match key.kind {
        Kind::Flow => cached(&stores.flows, key),
        Kind::ClusterFlow => cached(&stores.cluster_flows, key),
        Kind::Output => cached(&stores.outputs, key),
        Kind::ClusterOutput => cached(&stores.cluster_outputs, key),
        Kind::Logging => None,
    }
}

/// Blamed objects still at the generation that was rejected; an edited or deleted one is
/// forgotten, so it is rendered again.
fn current_blame(ctx: &Context) -> BTreeMap<ObjectKey, crate::model::ConfigRejected> {
    let mut memory = ctx.memory();
    memory
        .config_rejected
        .retain(|key, rejected| generation_of(ctx, key) == Some(rejected.generation));
    memory.config_rejected.clone()
}

/// Whether a Sluice Secret belongs to a config bundle: rendered text and copied credentials,
/// which neither the TLS planner nor the model reads, so they are not copied into the
/// inventory (at 10,000 flows they are megabytes per reconcile).
pub fn is_config_bundle(object: &DynamicObject) -> bool {
    object
        .labels()
        .contains_key(crate::layout::CONFIG_SET_LABEL)
}

/// Whether a Sluice Secret holds rendered configuration: a config bundle
/// ([`is_config_bundle`]) or a Secret of the agents' routing table. Neither the TLS planner
/// nor the model reads them (an output naming one is refused by its labels, read like any
/// other referenced Secret), so they are not copied into the inventory: at 10,000 flows the
/// routing table alone is 33 Secrets and about a megabyte, converted on every reconcile.
pub fn is_rendered_config(object: &DynamicObject) -> bool {
    is_config_bundle(object) || is_routing_table(object)
}

fn is_routing_table(object: &DynamicObject) -> bool {
    let (Some(logging), Some(namespace), Some(name)) = (
        object.labels().get(crate::layout::LOGGING_LABEL),
        object.metadata.namespace.as_deref(),
        object.metadata.name.as_deref(),
    ) else {
        return false;
    };
    crate::layout::Names::new(logging, namespace)
        .agent_routes_secrets()
        .iter()
        .any(|routes| routes == name)
}

/// Secrets Sluice created (labelled), converted from the dynamic cache, rendered
/// configuration ([`is_rendered_config`]) excepted; a Secret applied since the cache last saw it is taken as applied (see
/// `Memory::applied_secrets`).
pub fn owned_secrets(ctx: &Context) -> Vec<Secret> {
    let cached = ctx.stores.children_of(ChildKind::Secret);
    let mut current: BTreeMap<(String, String), DynamicObject> = cached
        .iter()
        .filter(|o| !is_rendered_config(o))
        .map(|o| {
            (
                (o.namespace().unwrap_or_default(), o.name_any()),
                (**o).clone(),
            )
        })
        .collect();
    let mut memory = ctx.memory();
    // Once the cache shows what was applied, the stand-in is dropped: a later deletion by a
    // user is then seen as a deletion.
    memory.applied_secrets.retain(|id, applied| {
        let seen = current
            .get(id)
            .is_some_and(|live| super::apply::contains(&live.data, &applied.data));
        if !seen {
            current.insert(id.clone(), applied.clone());
        }
        !seen
    });
    drop(memory);
    let mut secrets: Vec<Secret> = current.values().filter_map(to_secret).collect();
    secrets.sort_by_key(|s| (s.namespace(), s.name_any()));
    secrets
}

fn to_secret(object: &DynamicObject) -> Option<Secret> {
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Secret".into());
    }
    serde_json::from_value(value).ok()
}

/// Every user Secret the admitted Loggings may read, by namespace and name: those named by
/// an Output one of them collects live in its namespace; those named by a ClusterOutput or a
/// Logging live in the control namespace of a Logging it belongs to. A refused Logging
/// (`model::admit`) causes no read. Flows are not walked: no filter takes a Secret, and the
/// model reads Secrets only for outputs (walking 10,000 flow specs was 7 % of a reconcile).
pub fn referenced_secrets(inventory: &Inventory<'_>) -> BTreeSet<SecretName> {
    let admitted = model::admit(&inventory.loggings, &inventory.control_namespaces).admitted;
    let collectors: Vec<(&str, Watched)> = admitted
        .iter()
        .map(|l| {
            (
                l.metadata.name.as_deref().unwrap_or_default(),
                model::watched_namespaces(&l.spec, &inventory.namespaces),
            )
        })
        .collect();
    let collected = |logging_ref: Option<&str>, namespace: Option<&str>| -> Vec<&Logging> {
        admitted
            .iter()
            .zip(&collectors)
            .filter(|(_, (name, watched))| model::belongs(name, watched, logging_ref, namespace))
            .map(|(logging, _)| *logging)
            .collect()
    };
    let mut names = BTreeSet::new();
    let mut add_in = |namespace: &str, refs: &BTreeSet<String>| {
        for name in refs {
            names.insert((namespace.to_owned(), name.clone()));
        }
    };
    for output in &inventory.outputs {
        let namespace = output.namespace().unwrap_or_default();
        if !collected(output.spec.logging_ref.as_deref(), Some(&namespace)).is_empty() {
            add_in(&namespace, &secret_ref_names(&output.spec));
        }
    }
    for output in &inventory.cluster_outputs {
        let refs = secret_ref_names(&output.spec);
        for logging in collected(output.spec.output.logging_ref.as_deref(), None) {
            add_in(&logging.spec.control_namespace, &refs);
        }
    }
    for logging in &admitted {
        add_in(
            &logging.spec.control_namespace,
            &logging_secret_names(logging),
        );
    }
    // A name the API server cannot take is never asked for (it would fail the request, or
    // name another path); the model reports it on the objects that use it.
    names.retain(|(_, name)| is_dns_subdomain(name));
    names
}

/// Secrets a Logging names in its TLS settings and filters.
fn logging_secret_names(logging: &Logging) -> BTreeSet<String> {
    let mut names = secret_ref_names(&logging.spec);
    names.extend(crate::model::logging_secret_names(logging));
    names
}

/// Names of every `…SecretRef` in a spec. Walking the serialized spec finds references in
/// every output and filter kind, including ones added later, without a list to keep in sync.
fn secret_ref_names(spec: &impl serde::Serialize) -> BTreeSet<String> {
    fn walk(value: &serde_json::Value, names: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    if key.ends_with("SecretRef")
                        && let Some(name) = child.get("name").and_then(|n| n.as_str())
                    {
                        names.insert(name.to_owned());
                    }
                    walk(child, names);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, names)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    if let Ok(value) = serde_json::to_value(spec) {
        walk(&value, &mut names);
    }
    names
}

/// User Secrets read by name, and the ones that could not be read with why.
#[derive(Debug, Default)]
pub struct UserSecrets {
    pub secrets: Vec<Secret>,
    pub errors: BTreeMap<SecretName, String>,
}

/// What reading one user Secret gave: the Secret, `None` when it does not exist, or why it
/// could not be read.
pub type SecretRead = Result<Option<Secret>, String>;

/// How many user Secrets one reconcile reads at a time: enough that many references cost
/// about one round trip (or one timeout), few enough not to flood the API server.
const CONCURRENT_SECRET_READS: usize = 16;

/// The referenced user Secrets that are not Sluice's own. Every outcome (found, missing,
/// unreadable) is reused for `resync`, so reconciles triggered by unrelated changes cost no
/// reads, and references to missing Secrets cannot multiply the reads of every reconcile;
/// a Secret created (or made readable) later is therefore picked up within `resync`
/// (`--resync-interval`), like a changed one. Reads run
/// concurrently, at most [`CONCURRENT_SECRET_READS`] at a time, each bounded by
/// `secret_read_timeout`. Missing ones are simply absent and unreadable ones (forbidden,
/// timed out, any error) are listed in `errors`: `model::resolve` reports both on the objects
/// that reference them, so one bad reference never stops a Logging's reconcile.
pub async fn read_user_secrets(
    ctx: &Context,
    wanted: &BTreeSet<SecretName>,
    already: &[Secret],
    now: jiff::Timestamp,
) -> UserSecrets {
    let have: BTreeSet<SecretName> = already
        .iter()
        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    let fresh_for = jiff::SignedDuration::try_from(ctx.settings.resync).unwrap_or_default();
    let mut outcomes: Vec<(SecretName, SecretRead)> = Vec::new();
    let mut to_read = Vec::new();
    {
        let memory = ctx.memory();
        for id in wanted.difference(&have) {
            match memory
                .user_secrets
                .get(id)
                .filter(|(read_at, _)| *read_at + fresh_for > now)
            {
                Some((_, outcome)) => outcomes.push((id.clone(), outcome.clone())),
                None => to_read.push(id.clone()),
            }
        }
    }
    let fresh: Vec<(SecretName, SecretRead)> = futures::stream::iter(to_read)
        .map(|id| async move {
            let outcome = read_secret(ctx, &id).await;
            (id, outcome)
        })
        .buffer_unordered(CONCURRENT_SECRET_READS)
        .collect()
        .await;
    {
        let mut memory = ctx.memory();
        for (id, outcome) in &fresh {
            if let Err(error) = outcome {
                let (namespace, name) = id;
                tracing::warn!(%namespace, %name, %error, "referenced Secret unreadable");
            }
            memory
                .user_secrets
                .insert(id.clone(), (now, outcome.clone()));
        }
    }
    outcomes.extend(fresh);
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut read = UserSecrets::default();
    for (id, outcome) in outcomes {
        match outcome {
            Ok(Some(secret)) => read.secrets.push(secret),
            Ok(None) => {}
            Err(error) => {
                read.errors.insert(id, error);
            }
        }
    }
    read
}

/// One GET, bounded by `secret_read_timeout`.
async fn read_secret(ctx: &Context, (namespace, name): &SecretName) -> SecretRead {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match tokio::time::timeout(ctx.settings.secret_read_timeout, api.get_opt(name)).await {
        Ok(Ok(mut secret)) => {
            if let Some(secret) = &mut secret {
                secret.meta_mut().managed_fields = None;
            }
            Ok(secret)
        }
        // Tenant Secret access is the install's choice (cluster-wide, or only the namespaces
        // it lists; docs/install.md): say which, since the API server's message does not.
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => Err(format!(
            "forbidden: the operator's install does not grant reading Secrets in namespace \
             {namespace} ({})",
            status.message
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(ctx.settings.secret_read_timeout)
        )),
    }
}

/// Forgets cached user Secrets no object references any more.
pub fn forget_unreferenced(ctx: &Context, wanted: &BTreeSet<SecretName>) {
    ctx.memory()
        .user_secrets
        .retain(|id, _| wanted.contains(id));
}

/// The Secrets that exist in a control namespace, by name, as the PKI planner wants them.
pub fn secrets_in(namespace: &str, secrets: &[Secret]) -> BTreeMap<String, Secret> {
    secrets
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace))
        .map(|s| (s.name_any(), s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OutputSpec;

    /// The routing table's Secrets stay out of the inventory like config bundles; the TLS
    /// Secrets the planner reads, and a Secret of the same name not labelled as the Logging's,
    /// stay in.
    #[test]
    fn routing_table_secrets_are_rendered_config_and_tls_secrets_are_not() {
        let names = crate::layout::Names::new("main", "logging");
        let secret = |name: &str, namespace: &str, logging: Option<&str>| -> DynamicObject {
            let mut labels = serde_json::Map::new();
            if let Some(logging) = logging {
                labels.insert(crate::layout::LOGGING_LABEL.into(), logging.into());
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        for name in names.agent_routes_secrets() {
            assert!(
                is_rendered_config(&secret(&name, "logging", Some("main"))),
                "{name}"
            );
            assert!(
                !is_rendered_config(&secret(&name, "logging", None)),
                "{name}"
            );
            assert!(
                !is_rendered_config(&secret(&name, "logging", Some("other"))),
                "{name}"
            );
        }
        for name in [
            names.ca_secret(),
            names.aggregator_tls_secret(),
            names.agent_tls_secret(),
        ] {
            assert!(
                !is_rendered_config(&secret(&name, "logging", Some("main"))),
                "{name}"
            );
        }
    }

    #[test]
    fn finds_secret_refs_anywhere_in_a_spec() {
        let spec: OutputSpec = serde_json::from_value(serde_json::json!({
            "s3": {
                "bucket": "b",
                "region": "eu-west-1",
                "accessKeyIdSecretRef": {"name": "aws", "key": "id"},
                "secretAccessKeySecretRef": {"name": "aws2", "key": "secret"}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let names = secret_ref_names(&spec);
        assert_eq!(names, BTreeSet::from(["aws".to_owned(), "aws2".to_owned()]));
    }
}
