//! What every reconcile shares: the client, the caches, the clock, the recorder and the
//! small amount of memory that keeps the operator quiet at rest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashMap, HashSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

use super::metrics::Metrics;
use crate::api::{ClusterFlow, ClusterOutput, Flow, Logging, Output};
use crate::build::{BuildError, Child, ChildKind};
pub use crate::model::ControlNamespaces;
use crate::model::{Inventory, ObjectKey, Pipeline, Resolution};
use crate::pki::{PkiPlan, PkiRequest};

/// Errors of one reconcile. Each has a static [`Error::category`] used as metric label and
/// Event reason, so neither carries object names or error text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind:?} {name}: {source}")]
    Apply {
        kind: ChildKind,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("deleting {kind:?} {name}: {source}")]
    Delete {
        kind: ChildKind,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("patching status of {key}: {source}")]
    Status {
        key: ObjectKey,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("patching status of {key}: no answer within {after:?}")]
    StatusTimeout { key: ObjectKey, after: Duration },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("planning TLS material failed: {0}")]
    Pki(String),
}

impl Error {
    /// Stable CamelCase category for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::Status { .. } => "StatusPatchFailed",
            Error::StatusTimeout { .. } => "StatusPatchTimeout",
            Error::Build(_) => "BuildFailed",
            Error::Pki(_) => "PkiFailed",
        }
    }
}

/// The reflector caches the controller reads instead of asking the API server.
#[derive(Clone)]
pub struct Stores {
    pub loggings: Store<DeserializeGuard<Logging>>,
    pub flows: Store<DeserializeGuard<Flow>>,
    pub cluster_flows: Store<DeserializeGuard<ClusterFlow>>,
    pub outputs: Store<DeserializeGuard<Output>>,
    pub cluster_outputs: Store<DeserializeGuard<ClusterOutput>>,
    /// Metadata only: labels are all `watchNamespaceSelector` and ClusterFlows need.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Objects Sluice created, by kind, selected by label. Secrets are cached per control
    /// namespace (one store each), and only Sluice's own.
    pub children: BTreeMap<ChildKind, Vec<Store<DynamicObject>>>,
    /// The namespaces Sluice may write Secrets in; Loggings naming another are refused.
    /// Explicit, because "any" needs cluster-wide Secret `list`/`watch` RBAC that a default
    /// install does not grant.
    pub control_namespaces: ControlNamespaces,
}

impl Stores {
    /// The uids of every cached Flow, ClusterFlow, Output and ClusterOutput.
    pub fn object_uids(&self) -> HashSet<String> {
        fn uids<K>(store: &Store<DeserializeGuard<K>>) -> Vec<String>
        where
            K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
        {
            store
                .state()
                .iter()
                .filter_map(|guard| guard.0.as_ref().ok()?.meta().uid.clone())
                .collect()
        }
        let mut all = uids(&self.flows);
        all.extend(uids(&self.cluster_flows));
        all.extend(uids(&self.outputs));
        all.extend(uids(&self.cluster_outputs));
        all.into_iter().collect()
    }
}

impl Stores {
    /// Every cached child of a kind.
    pub fn children_of(&self, kind: ChildKind) -> Vec<Arc<DynamicObject>> {
        self.children
            .get(&kind)
            .map(|stores| stores.iter().flat_map(Store::state).collect())
            .unwrap_or_default()
    }
}

/// What the operator last applied of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedChild {
    /// [`super::apply::json_hash`] of the desired object.
    pub hash: String,
    /// The live object's `resourceVersion` at which it was last seen to hold every field
    /// applied: the one the apply returned, or a cached one found to contain them. While
    /// the cache shows this version, comparing the live object field by field (megabytes
    /// of config Secrets at 10,000 flows) can be skipped.
    pub verified: Option<String>,
}

/// Per-process memory that makes repeated reconciles free. Lost on restart, which costs one
/// round of server-side no-op applies (no `resourceVersion` changes) and re-announced Events.
#[derive(Debug, Default)]
pub struct Memory {
    /// What was last applied of each child, by (kind, namespace, name).
    pub applied: HashMap<(ChildKind, Option<String>, String), AppliedChild>,
    /// Secrets applied that the cache does not show yet, by (namespace, name). They stand
    /// in for the cached copies, so the TLS planner never re-mints material it has just
    /// issued because a watch event is late.
    pub applied_secrets: HashMap<(String, String), DynamicObject>,
    /// Hash of the last status we wrote ([`super::apply::json_hash`]), by object uid, so a
    /// cache lagging behind our own patch does not cause a second identical patch.
    pub written_status: HashMap<String, String>,
    /// User Secrets read by name, with when they were read; re-read after `resync`.
    /// Missing and unreadable ones are remembered too: otherwise every reconcile would repeat
    /// one GET (and perhaps one timeout) per bad reference.
    pub user_secrets: HashMap<(String, String), (jiff::Timestamp, super::inventory::SecretRead)>,
    /// Consecutive reconcile failures by Logging uid, for per-object backoff.
    pub failures: HashMap<String, u32>,
    /// Consecutive failed status writes by object uid, for their backoff.
    pub status_failures: HashMap<String, u32>,
    /// Flows and Outputs a data-plane binary blamed for a rejected configuration, at the
    /// generation it rejected (`model::Inventory::config_rejected`).
    pub config_rejected:
        std::collections::BTreeMap<crate::model::ObjectKey, crate::model::ConfigRejected>,
    /// Per Logging: the aggregator candidates built and which objects of them run
    /// everywhere, for the `Ready` of Flows and Outputs.
    pub data_plane: HashMap<String, super::data_plane::Revisions>,
    /// Per Logging and component: the candidates built lately, so that one the pods accepted
    /// is promoted even after a newer candidate replaced it.
    pub recent_candidates: HashMap<(String, &'static str), super::rollout::RecentCandidates>,
    /// Per Logging: the aggregator candidates published lately, by number, oldest first
    /// ([`super::rollout::number_candidate`]).
    pub aggregator_publications: HashMap<String, VecDeque<(u64, String)>>,
    /// Per Logging: when its reconcile last did the rollout and queued object statuses after
    /// applying, within the last few seconds (`reconcile::leave_to_next`).
    pub followed_through_at: HashMap<String, std::time::Instant>,
}

/// Tunables of the controller loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Safety requeue when nothing is planned; picks up changed user Secrets, which are read
    /// by name rather than watched.
    pub resync: Duration,
    /// Bounds of the per-Logging error backoff.
    pub error_backoff_min: Duration,
    pub error_backoff_max: Duration,
    /// How long one read of a referenced user Secret may take; past it the Secret counts as
    /// unreadable and only the objects referencing it are degraded.
    pub secret_read_timeout: Duration,
    /// Object status writes in flight at once (the status writer's).
    pub status_concurrency: usize,
    /// How long one status write may take; past it the write is tried again after a backoff.
    pub status_write_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(600),
            error_backoff_min: Duration::from_secs(5),
            error_backoff_max: Duration::from_secs(300),
            secret_read_timeout: Duration::from_secs(10),
            status_concurrency: 16,
            status_write_timeout: Duration::from_secs(10),
        }
    }
}

/// The clock, injectable so tests can pin `now`.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The pure steps a reconcile runs, injectable so the I/O around them can be tested with
/// canned results. [`Cores::default`] is the real `model`, `pki` and `build` code.
#[derive(Clone)]
pub struct Cores {
    pub resolve: Arc<ResolveFn>,
    pub plan: Arc<PlanFn>,
    pub build: Arc<BuildFn>,
}

pub type ResolveFn = dyn Fn(&Inventory) -> Resolution + Send + Sync;
pub type PlanFn = dyn Fn(&PkiRequest<'_>) -> Result<PkiPlan, crate::pki::PkiError> + Send + Sync;
pub type BuildFn = dyn Fn(&Pipeline, &PkiPlan) -> Result<Vec<Child>, BuildError> + Send + Sync;

impl Default for Cores {
    fn default() -> Self {
        Self {
            resolve: Arc::new(crate::model::resolve),
            plan: Arc::new(crate::pki::plan),
            build: Arc::new(crate::build::objects),
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub events: super::events::Announcer,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub settings: Settings,
    pub cores: Cores,
    /// Asks the reloaders in the data-plane pods for their status (`rollout::http_probe`).
    pub probe: Arc<super::rollout::ProbeFn>,
    /// Asks one aggregator pod's reloader to drain before a scale-in.
    pub drain: Arc<super::rollout::DrainFn>,
    pub memory: Mutex<Memory>,
    /// The watches' change signal: the arrival of an edit starts the edit-to-config clock.
    pub trigger: super::watches::Trigger,
    /// Serialises the status passes over Flows, Outputs and their cluster variants, which
    /// every Logging's reconcile runs, and holds what the last of them found settled.
    pub object_statuses: tokio::sync::Mutex<CurrentStatuses>,
    /// The object statuses to write, and the writer that writes them.
    pub status_writer: super::status_writer::StatusWriter,
    /// Flows' rules kept from one resolve to the next (`model::FlowMemo`).
    pub flow_memo: crate::model::FlowMemo,
}

/// Objects whose status was found current or queued for writing, by uid: the
/// `resourceVersion` it was found at and a hash of what the status is computed from
/// (problems and usage). While both are unchanged the status, and the Events it would
/// announce, come out the same, so the 20,000 objects of a 10,000-flow Logging are not
/// recomputed on every edit of one of them, nor while their statuses wait to be written.
#[derive(Debug, Default)]
pub struct CurrentStatuses {
    by_uid: HashMap<String, (String, u64)>,
}

impl CurrentStatuses {
    pub fn is_current(&self, uid: &str, resource_version: &str, inputs: u64) -> bool {
        self.by_uid
            .get(uid)
            .is_some_and(|(version, hash)| version == resource_version && *hash == inputs)
    }

    pub fn remember(&mut self, uid: &str, resource_version: &str, inputs: u64) {
        match self.by_uid.get_mut(uid) {
            Some(entry) => {
                entry.0.clear();
                entry.0.push_str(resource_version);
                entry.1 = inputs;
            }
            None => {
                self.by_uid
                    .insert(uid.to_owned(), (resource_version.to_owned(), inputs));
            }
        }
    }

    /// Forgets deleted objects once they make up half of the entries, so pruning costs
    /// nothing on most reconciles and the memory stays bounded.
    pub fn prune(&mut self, objects: usize, live_uids: impl FnOnce() -> HashSet<String>) {
        if self.by_uid.len() > 2 * objects + 64 {
            let live = live_uids();
            self.by_uid.retain(|uid, _| live.contains(uid));
        }
    }
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<Metrics>,
        clock: Clock,
        settings: Settings,
        reporter: kube::runtime::events::Reporter,
    ) -> Self {
        Self {
            events: super::events::Announcer::new(client.clone(), reporter),
            client,
            stores,
            metrics,
            clock,
            settings,
            cores: Cores::default(),
            probe: super::rollout::http_probe(),
            drain: super::rollout::http_drain(),
            memory: Mutex::new(Memory::default()),
            trigger: super::watches::Trigger::default(),
            object_statuses: tokio::sync::Mutex::new(CurrentStatuses::default()),
            flow_memo: crate::model::FlowMemo::default(),
            status_writer: super::status_writer::StatusWriter::default(),
        }
    }

    /// Replaces the pure steps (tests).
    pub fn with_cores(mut self, cores: Cores) -> Self {
        self.cores = cores;
        self
    }

    /// Replaces the reloader probe (tests).
    pub fn with_probe(mut self, probe: Arc<super::rollout::ProbeFn>) -> Self {
        self.probe = probe;
        self
    }

    /// Replaces the drain request (tests).
    pub fn with_drain(mut self, drain: Arc<super::rollout::DrainFn>) -> Self {
        self.drain = drain;
        self
    }

    /// Shares the watches' change signal (`sluice run`; tests bump their own).
    pub fn with_trigger(mut self, trigger: super::watches::Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Locks the memory; a panic while holding it cannot leave it inconsistent in a way that
    /// matters (it is only a cache), so a poisoned lock is recovered.
    pub fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_current_only_at_the_version_and_inputs_it_was_found_at() {
        let mut current = CurrentStatuses::default();
        assert!(!current.is_current("a", "1", 7));
        current.remember("a", "1", 7);
        assert!(current.is_current("a", "1", 7));
        assert!(!current.is_current("a", "2", 7), "the object changed");
        assert!(
            !current.is_current("a", "1", 8),
            "its problems or users changed"
        );
        current.remember("a", "2", 8);
        assert!(current.is_current("a", "2", 8));
        assert!(!current.is_current("a", "1", 7));
    }

    #[test]
    fn deleted_objects_are_forgotten_once_they_are_half_the_entries() {
        let mut current = CurrentStatuses::default();
        for uid in 0..200 {
            current.remember(&uid.to_string(), "1", 0);
        }
        let live = || {
            (0..10)
                .map(|uid: i32| uid.to_string())
                .collect::<HashSet<_>>()
        };
        current.prune(100, || panic!("no pruning while most entries may be live"));
        current.prune(10, live);
        assert_eq!(current.by_uid.len(), 10);
        assert!(current.is_current("9", "1", 0));
        assert!(!current.is_current("10", "1", 0));
    }
}
