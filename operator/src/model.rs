//! Gathers every Sluice object that belongs to one Logging, validates each on its own and
//! resolves references, producing a [`Pipeline`]: what the renderers and builder consume.
//! An invalid object is left out with a [`Problem`]; everything else keeps flowing.

mod admission;
pub mod capacity;
pub mod instances;
pub mod limits;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashMapExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::api::{
    ClusterFlow, ClusterFlowSelector, ClusterOutput, Filter, Flow, FlowSelector,
    LabelSelectorOperator, Logging, LoggingSpec, NamespaceSelector, Output, OutputKind, OutputSpec,
    SecretKeyRef,
};
use crate::layout::Names;
use crate::render::escape::{is_dns_subdomain, is_param_key};
use crate::routing::{Action, FlowMatcher, Rule, Scope, Selector, Watched, label_map};

mod secrets;
pub mod validate;

pub use admission::{Admission, ControlNamespaces, admit};
pub use secrets::logging_secret_names;

use validate::filters::validate_filters;

/// Everything the operator (from the API server) or the CLI (from files) has seen. Sluice's
/// own objects are borrowed from whoever holds them (the operator's caches, the CLI's
/// [`Objects`]): at 10,000 flows a copy per reconcile cost more than resolving them.
#[derive(Clone, Debug, Default)]
pub struct Inventory<'a> {
    pub loggings: Vec<&'a Logging>,
    pub flows: Vec<&'a Flow>,
    pub cluster_flows: Vec<&'a ClusterFlow>,
    pub outputs: Vec<&'a Output>,
    pub cluster_outputs: Vec<&'a ClusterOutput>,
    /// Secrets referenced by Outputs and Loggings (and, for the controller, those Sluice owns).
    pub secrets: Vec<Secret>,
    /// Namespaces, needed to resolve `watchNamespaceSelector` and namespace labels.
    pub namespaces: Vec<Namespace>,
    /// Referenced Secrets that could not be read (forbidden, timed out, ...), by (namespace,
    /// name), with the error. They make the objects referencing them degraded, nothing else.
    pub secret_errors: BTreeMap<(String, String), String>,
    /// Flows and Outputs the data-plane binary blamed for rejecting a configuration, with the
    /// generation it rejected and its message. Left out while their generation is unchanged,
    /// so everyone else's changes still reach the pods; an edit brings them back.
    pub config_rejected: BTreeMap<ObjectKey, ConfigRejected>,
    /// Where Loggings may put their control namespace; a Logging naming another one is
    /// refused and resolves nothing ([`admit`]).
    pub control_namespaces: ControlNamespaces,
    /// Flows' shapes kept from the last resolve, if whoever resolves keeps them.
    pub flow_memo: Option<&'a FlowMemo>,
}

/// Sluice objects, Secrets and Namespaces held by value, as the CLI reads them from files.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub loggings: Vec<Logging>,
    pub flows: Vec<Flow>,
    pub cluster_flows: Vec<ClusterFlow>,
    pub outputs: Vec<Output>,
    pub cluster_outputs: Vec<ClusterOutput>,
    pub secrets: Vec<Secret>,
    pub namespaces: Vec<Namespace>,
}

impl Objects {
    /// The inventory of these objects: nothing unreadable, nothing blamed.
    pub fn inventory(&self) -> Inventory<'_> {
        Inventory {
            loggings: self.loggings.iter().collect(),
            flows: self.flows.iter().collect(),
            cluster_flows: self.cluster_flows.iter().collect(),
            outputs: self.outputs.iter().collect(),
            cluster_outputs: self.cluster_outputs.iter().collect(),
            secrets: self.secrets.clone(),
            namespaces: self.namespaces.clone(),
            ..Inventory::default()
        }
    }
}

/// A configuration rejection blamed on one object (see [`Inventory::config_rejected`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRejected {
    pub generation: Option<i64>,
    pub message: String,
}

/// The Sluice kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Logging,
    ClusterFlow,
    Flow,
    ClusterOutput,
    Output,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Logging => "Logging",
            Kind::ClusterFlow => "ClusterFlow",
            Kind::Flow => "Flow",
            Kind::ClusterOutput => "ClusterOutput",
            Kind::Output => "Output",
        }
    }
}

/// Identifies one Sluice object; orders by kind, namespace, name so output is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn cluster(kind: Kind, name: &str) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.to_owned(),
        }
    }
    pub fn namespaced(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind.as_str(), ns, self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// Something wrong with one object, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    /// A stable CamelCase reason, used for condition reasons, Event reasons and metrics.
    pub reason: &'static str,
    /// Field path such as `spec.localOutputRefs[1]`.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Reasons of problems that need nobody's action: a choice the spec made on purpose (no TLS,
/// an unverified endpoint, a buffer an admin's limit lowered) or a deprecation. They are
/// reported (status, Events) but never make an object `Degraded` nor refuse a Logging.
pub const WARNING_REASONS: &[&str] = &[
    "BufferLimitLowered",
    "TlsDisabled",
    "TlsVerificationDisabled",
];

impl Problem {
    /// Whether this is a warning ([`WARNING_REASONS`]) rather than something to fix.
    pub fn is_warning(&self) -> bool {
        WARNING_REASONS.contains(&self.reason)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One flow as the data plane sees it: Flows, ClusterFlows and the default flow alike.
/// What comes from the object alone (rules, filters, label) is shared with [`FlowMemo`],
/// so a resolve that finds the object unchanged neither copies nor drops it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowPlan {
    /// The Flow or ClusterFlow; for the default flow, the Logging. Set by [`FlowPlan::new`]
    /// only: the label is computed from it there.
    pub key: ObjectKey,
    pub matcher: Arc<FlowMatcher>,
    pub filters: Arc<Vec<Filter>>,
    /// Valid outputs receiving this flow's records, in the order referenced, deduplicated.
    pub outputs: Vec<ObjectKey>,
    /// The key's fluentd label (`render::fluentd::flow_label`), computed once: the renderers,
    /// the capacity check and the rollout each ask for it, several times per flow per reconcile.
    label: Arc<str>,
}

impl FlowPlan {
    pub fn new(
        key: ObjectKey,
        matcher: FlowMatcher,
        filters: Vec<Filter>,
        outputs: Vec<ObjectKey>,
    ) -> Self {
        let shape = FlowShape::new(&key, matcher, filters);
        Self::of_shape(key, &shape, outputs)
    }

    fn of_shape(key: ObjectKey, shape: &FlowShape, outputs: Vec<ObjectKey>) -> Self {
        Self {
            key,
            matcher: Arc::clone(&shape.matcher),
            filters: Arc::clone(&shape.filters),
            outputs,
            label: Arc::clone(&shape.label),
        }
    }

    /// The flow's fluentd label, `render::fluentd::flow_label(&self.key)`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// What resolving a Flow or ClusterFlow yields from the object alone: its rules, filters
/// and label.
#[derive(Clone, Debug)]
struct FlowShape {
    matcher: Arc<FlowMatcher>,
    filters: Arc<Vec<Filter>>,
    label: Arc<str>,
}

impl FlowShape {
    fn new(key: &ObjectKey, matcher: FlowMatcher, filters: Vec<Filter>) -> Self {
        Self {
            matcher: Arc::new(matcher),
            filters: Arc::new(filters),
            label: crate::render::fluentd::flow_label(key).into(),
        }
    }
}

/// Flows' and ClusterFlows' [`FlowShape`]s (or why they have none) kept from one resolve to
/// the next, for whoever resolves the same objects again and again (the operator, on every
/// change). At 10,000 flows, building every flow's rules afresh (a copy of each rule's
/// label map) and dropping the last resolve's was a third of resolving. An entry is keyed
/// by the object and stamped with its UID and `metadata.generation`, which the API server
/// bumps on every change of the spec (and never on a status write), so a kept shape is
/// never stale; objects without both (files read by the CLI) are never kept. Entries of
/// objects the last resolve did not see are forgotten at its end.
#[derive(Debug, Default)]
pub struct FlowMemo {
    state: Mutex<MemoState>,
}

#[derive(Debug, Default)]
struct MemoState {
    /// Resolves begun so far; an entry remembers the last that used it.
    resolves: u64,
    entries: HashMap<ObjectKey, MemoEntry>,
}

#[derive(Debug)]
struct MemoEntry {
    uid: String,
    generation: i64,
    used: u64,
    shape: Result<FlowShape, Vec<Problem>>,
}

impl FlowMemo {
    /// Objects whose shape is kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoState> {
        // A panic elsewhere cannot leave an entry half-written: each is inserted whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a resolve; returns its number for [`FlowMemo::forget_unused`].
    fn begin(&self) -> u64 {
        let mut state = self.lock();
        state.resolves += 1;
        state.resolves
    }

    /// The shape kept for `key` at this UID and generation, marking it used by `resolve`.
    fn get(
        &self,
        resolve: u64,
        key: &ObjectKey,
        (uid, generation): (&str, i64),
    ) -> Option<Result<FlowShape, Vec<Problem>>> {
        let mut state = self.lock();
        let entry = state.entries.get_mut(key)?;
        if entry.uid != uid || entry.generation != generation {
            return None;
        }
        entry.used = resolve;
        Some(entry.shape.clone())
    }

    fn keep(
        &self,
        resolve: u64,
        key: &ObjectKey,
        (uid, generation): (&str, i64),
        shape: &Result<FlowShape, Vec<Problem>>,
    ) {
        let entry = MemoEntry {
            uid: uid.to_owned(),
            generation,
            used: resolve,
            shape: shape.clone(),
        };
        self.lock().entries.insert(key.clone(), entry);
    }

    /// Forgets the objects that neither `resolve` nor a later one used: deleted, or no
    /// longer part of any Logging.
    fn forget_unused(&self, resolve: u64) {
        self.lock().entries.retain(|_, entry| entry.used >= resolve);
    }
}

/// One valid output and where its credentials are mounted in the aggregator.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputPlan {
    pub key: ObjectKey,
    /// The output's spec, with `buffer` sizes and flush threads as [`limits::allocate`] set
    /// them for this Logging.
    pub spec: OutputSpec,
    /// For every Secret key the output references: the file name under
    /// `layout::RELOAD_SHARED_DIR` holding the value (content-addressed, so a new value is a
    /// new file and a running configuration keeps reading the old one until it reloads).
    pub secret_files: BTreeMap<SecretKeyRef, String>,
}

/// Everything one Logging needs, validated and resolved. Deterministic for the same input.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub logging: String,
    pub logging_uid: Option<String>,
    pub spec: LoggingSpec,
    pub names: Names,
    pub watched: Watched,
    /// Valid Flows and ClusterFlows, sorted by key.
    pub flows: Vec<FlowPlan>,
    /// Records no flow took go here; `None` when the Logging has no default flow.
    pub default_flow: Option<FlowPlan>,
    /// Receives records that outputs gave up on; `None` drops them.
    pub error_output: Option<ObjectKey>,
    /// Every output some flow (or the default or error flow) uses, by key.
    pub outputs: BTreeMap<ObjectKey, OutputPlan>,
    /// Credentials copied into the aggregator's output Secret: file name → value.
    pub output_secret_data: BTreeMap<String, Vec<u8>>,
    /// Problems per object, including the Logging itself. Objects with problems that make
    /// them unusable are absent from `flows` and `outputs`.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
    /// How the output buffers share the aggregator's buffer volume.
    pub buffers: limits::BufferBudget,
    /// How large the aggregator's configuration is against what its pods can check and run.
    pub capacity: capacity::Load,
}

/// The outcome of resolving an [`Inventory`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolution {
    /// One pipeline per admitted Logging ([`admit`]), sorted by Logging name. A Logging
    /// without one applies nothing.
    pub pipelines: Vec<Pipeline>,
    /// Problems of every object across all pipelines (an object used by two Loggings gets
    /// both sets), plus problems that belong to no pipeline (a dangling `loggingRef`).
    /// Objects absent here have no problems.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
}

/// Resolves every admitted Logging in the inventory ([`admit`]); the others contribute
/// nothing but their own problems. Pure and deterministic.
pub fn resolve(inventory: &Inventory<'_>) -> Resolution {
    let admission = admit(&inventory.loggings, &inventory.control_namespaces);
    let mut resolution = Resolution {
        pipelines: Vec::with_capacity(admission.admitted.len()),
        problems: admission.problems,
    };
    let memo = inventory.flow_memo.map(|memo| (memo, memo.begin()));
    for logging in &admission.admitted {
        let pipeline = Resolver::new(inventory, &admission.admitted, logging, memo).pipeline();
        for (object, object_problems) in &pipeline.problems {
            resolution
                .problems
                .entry(object.clone())
                .or_default()
                .extend(object_problems.iter().cloned());
        }
        resolution.pipelines.push(pipeline);
    }

    dangling_logging_refs(inventory, &mut resolution.problems);
    for problems in resolution.problems.values_mut() {
        problems.sort();
        problems.dedup();
    }
    resolution
        .problems
        .retain(|_, problems| !problems.is_empty());
    if let Some((memo, number)) = memo {
        memo.forget_unused(number);
    }
    resolution
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

pub(crate) fn problem(
    reason: &'static str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        reason,
        field: field.into(),
        message: message.into(),
    }
}

/// Problems for `loggingRef`s naming no Logging: such objects belong to nothing.
fn dangling_logging_refs(
    inventory: &Inventory<'_>,
    problems: &mut BTreeMap<ObjectKey, Vec<Problem>>,
) {
    let names: std::collections::BTreeSet<&str> = inventory
        .loggings
        .iter()
        .map(|l| name_of(&l.metadata))
        .collect();
    // The key is made only for an object that needs it: 20,000 objects name no Logging.
    let mut check = |logging_ref: &Option<String>, key: &dyn Fn() -> ObjectKey| {
        if let Some(logging) = logging_ref
            && !names.contains(logging.as_str())
        {
            problems.entry(key()).or_default().push(problem(
                "LoggingNotFound",
                "spec.loggingRef",
                format!("Logging {logging:?} does not exist"),
            ));
        }
    };
    for flow in &inventory.flows {
        check(&flow.spec.logging_ref, &|| {
            ObjectKey::namespaced(
                Kind::Flow,
                namespace_of(&flow.metadata),
                name_of(&flow.metadata),
            )
        });
    }
    for flow in &inventory.cluster_flows {
        check(&flow.spec.logging_ref, &|| {
            ObjectKey::cluster(Kind::ClusterFlow, name_of(&flow.metadata))
        });
    }
    for output in &inventory.outputs {
        check(&output.spec.logging_ref, &|| {
            ObjectKey::namespaced(
                Kind::Output,
                namespace_of(&output.metadata),
                name_of(&output.metadata),
            )
        });
    }
    for output in &inventory.cluster_outputs {
        check(&output.spec.output.logging_ref, &|| {
            ObjectKey::cluster(Kind::ClusterOutput, name_of(&output.metadata))
        });
    }
}

/// File name under the aggregator's secrets directory for one referenced Secret key.
/// Namespace and Secret names cannot contain `_`, so the name is unambiguous.
pub fn secret_file_name(namespace: &str, reference: &SecretKeyRef) -> String {
    format!("{namespace}_{}_{}", reference.name, reference.key)
}

/// Objects by the name `name_of` gives them; the first of a name wins.
fn by_name<'a, T, N: std::hash::Hash + Eq>(
    objects: impl ExactSizeIterator<Item = &'a T>,
    name_of: impl Fn(&'a T) -> N,
) -> HashMap<N, &'a T> {
    let mut index = HashMap::with_capacity(objects.len());
    for object in objects {
        index.entry(name_of(object)).or_insert(object);
    }
    index
}

/// Whether an object with this `loggingRef`, in `namespace` (`None`: cluster-scoped), belongs
/// to Logging `logging`, which collects `watched`.
pub fn belongs(
    logging: &str,
    watched: &Watched,
    logging_ref: Option<&str>,
    namespace: Option<&str>,
) -> bool {
    match logging_ref {
        Some(name) => name == logging,
        None => namespace.is_none_or(|ns| watched.contains(ns)),
    }
}

/// Builds the pipeline of one admitted Logging.
struct Resolver<'a> {
    inventory: &'a Inventory<'a>,
    /// Every admitted Logging: the Secrets they manage are no output's to read.
    admitted: &'a [&'a Logging],
    logging: &'a Logging,
    name: &'a str,
    watched: Watched,
    /// The inventory's memo, with the number of this resolve.
    memo: Option<(&'a FlowMemo, u64)>,
    problems: BTreeMap<ObjectKey, Vec<Problem>>,
    outputs: BTreeMap<ObjectKey, OutputPlan>,
    /// Outputs already found invalid, so each is validated once.
    invalid_outputs: std::collections::BTreeSet<ObjectKey>,
    output_secret_data: BTreeMap<String, Vec<u8>>,
    /// Lookups by name: every flow names its outputs, so a scan per reference would be
    /// quadratic at 10,000 flows. The first object of a name wins, as a scan would find it.
    outputs_by_name: HashMap<(&'a str, &'a str), &'a Output>,
    cluster_outputs_by_name: HashMap<&'a str, &'a ClusterOutput>,
    secrets_by_name: HashMap<(&'a str, &'a str), &'a Secret>,
}

impl<'a> Resolver<'a> {
    fn new(
        inventory: &'a Inventory<'a>,
        admitted: &'a [&'a Logging],
        logging: &'a Logging,
        memo: Option<(&'a FlowMemo, u64)>,
    ) -> Self {
        let watched = watched_namespaces(&logging.spec, &inventory.namespaces);
        Self {
            inventory,
            admitted,
            logging,
            name: name_of(&logging.metadata),
            watched,
            memo,
            problems: BTreeMap::new(),
            outputs: BTreeMap::new(),
            invalid_outputs: Default::default(),
            output_secret_data: BTreeMap::new(),
            outputs_by_name: by_name(inventory.outputs.iter().copied(), |o| {
                (namespace_of(&o.metadata), name_of(&o.metadata))
            }),
            cluster_outputs_by_name: by_name(inventory.cluster_outputs.iter().copied(), |o| {
                name_of(&o.metadata)
            }),
            secrets_by_name: by_name(inventory.secrets.iter(), |s| {
                (namespace_of(&s.metadata), name_of(&s.metadata))
            }),
        }
    }

    fn belongs(&self, logging_ref: &Option<String>, namespace: Option<&str>) -> bool {
        belongs(self.name, &self.watched, logging_ref.as_deref(), namespace)
    }

    fn not_watched(&self, namespace: &str) -> Problem {
        problem(
            "NamespaceNotWatched",
            "spec.loggingRef",
            format!(
                "Logging {:?} does not watch namespace {namespace:?}, so this object is not part of it",
                self.name
            ),
        )
    }

    /// Secrets the Logging itself names that could not be read: reported on the Logging,
    /// whose TLS planner then treats them as missing.
    fn logging_secret_errors(&mut self, logging_key: &ObjectKey) {
        let namespace = &self.logging.spec.control_namespace;
        let unreadable: Vec<Problem> = secrets::logging_secret_names(self.logging)
            .into_iter()
            .filter_map(|name| {
                let error = self
                    .inventory
                    .secret_errors
                    .get(&(namespace.clone(), name.clone()))?;
                Some(problem(
                    "SecretUnreadable",
                    "spec.tls",
                    format!("Secret {namespace}/{name} could not be read: {error}"),
                ))
            })
            .collect();
        for p in unreadable {
            self.report(logging_key, p);
        }
    }

    fn report(&mut self, key: &ObjectKey, problem: Problem) {
        self.problems.entry(key.clone()).or_default().push(problem);
    }

    /// Whether `key`, at `generation`, was blamed for a rejected configuration; reports it.
    fn blamed(&mut self, key: &ObjectKey, generation: Option<i64>) -> bool {
        let Some(rejected) = self.inventory.config_rejected.get(key) else {
            return false;
        };
        if rejected.generation != generation {
            return false;
        }
        let message = format!(
            "left out: the data-plane binary rejected the configuration because of it; edit it to retry: {}",
            rejected.message
        );
        self.report(key, problem("ConfigRejected", "spec", message));
        true
    }

    fn pipeline(mut self) -> Pipeline {
        let spec = &self.logging.spec;
        let logging_key = ObjectKey::cluster(Kind::Logging, self.name);
        let mut flows = Vec::new();

        let mut namespaced: Vec<&Flow> = self
            .inventory
            .flows
            .iter()
            .copied()
            .filter(|f| self.belongs(&f.spec.logging_ref, Some(namespace_of(&f.metadata))))
            .collect();
        namespaced.sort_by(|a, b| {
            (namespace_of(&a.metadata), name_of(&a.metadata))
                .cmp(&(namespace_of(&b.metadata), name_of(&b.metadata)))
        });
        for flow in namespaced {
            let namespace = namespace_of(&flow.metadata);
            let key = ObjectKey::namespaced(Kind::Flow, namespace, name_of(&flow.metadata));
            if self.blamed(&key, flow.metadata.generation) {
                continue;
            }
            if flow.spec.logging_ref.is_some() && !self.watched.contains(namespace) {
                self.report(&key, self.not_watched(namespace));
                continue;
            }
            let shape = self.flow_shape(&key, &flow.metadata, || {
                let entries = flow.spec.match_rules.iter().map(|e| {
                    (
                        e.select.as_ref().map(flow_selector),
                        e.exclude.as_ref().map(flow_selector),
                    )
                });
                let rules = valid_rules(entries, &flow.spec.filters)?;
                let scope = Scope::Namespace(namespace.to_owned());
                let matcher = FlowMatcher { scope, rules };
                Ok(FlowShape::new(&key, matcher, flow.spec.filters.clone()))
            });
            let Some(shape) = shape else {
                continue;
            };
            let mut outputs = Vec::new();
            for (index, name) in flow.spec.local_output_refs.iter().enumerate() {
                let field = format!("spec.localOutputRefs[{index}]");
                if let Some(output) = self.local_output(namespace, name, &key, &field) {
                    outputs.push(output);
                }
            }
            outputs.extend(self.cluster_outputs(
                &flow.spec.global_output_refs,
                false,
                &key,
                "spec.globalOutputRefs",
            ));
            let referenced = flow.spec.local_output_refs.len() + flow.spec.global_output_refs.len();
            self.no_outputs_problem(&key, referenced, outputs.is_empty());
            flows.push(FlowPlan::of_shape(key, &shape, dedup_keep_order(outputs)));
        }

        // An Output may name a Logging that does not collect its namespace: it is not part
        // of that Logging, whether or not a flow of it refers to it.
        let stray: Vec<ObjectKey> = self
            .inventory
            .outputs
            .iter()
            .filter(|o| o.spec.logging_ref.as_deref() == Some(self.name))
            .filter(|o| !self.watched.contains(namespace_of(&o.metadata)))
            .map(|o| {
                ObjectKey::namespaced(
                    Kind::Output,
                    namespace_of(&o.metadata),
                    name_of(&o.metadata),
                )
            })
            .collect();
        for key in stray {
            let namespace = key.namespace.clone().unwrap_or_default();
            self.report(&key, self.not_watched(&namespace));
        }
        self.logging_secret_errors(&logging_key);

        let mut cluster: Vec<&ClusterFlow> = self
            .inventory
            .cluster_flows
            .iter()
            .copied()
            .filter(|f| self.belongs(&f.spec.logging_ref, None))
            .collect();
        cluster.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
        for flow in cluster {
            let key = ObjectKey::cluster(Kind::ClusterFlow, name_of(&flow.metadata));
            if self.blamed(&key, flow.metadata.generation) {
                continue;
            }
            let shape = self.flow_shape(&key, &flow.metadata, || {
                let entries = flow.spec.match_rules.iter().map(|e| {
                    (
                        e.select.as_ref().map(cluster_flow_selector),
                        e.exclude.as_ref().map(cluster_flow_selector),
                    )
                });
                let rules = valid_rules(entries, &flow.spec.filters)?;
                let matcher = FlowMatcher {
                    scope: Scope::Cluster,
                    rules,
                };
                Ok(FlowShape::new(&key, matcher, flow.spec.filters.clone()))
            });
            let Some(shape) = shape else {
                continue;
            };
            let outputs = self.cluster_outputs(
                &flow.spec.global_output_refs,
                true,
                &key,
                "spec.globalOutputRefs",
            );
            self.no_outputs_problem(&key, flow.spec.global_output_refs.len(), outputs.is_empty());
            flows.push(FlowPlan::of_shape(key, &shape, dedup_keep_order(outputs)));
        }
        flows.sort_by(|a, b| a.key.cmp(&b.key));

        let default_flow = spec.default_flow.as_ref().map(|default_flow| {
            let outputs = self.cluster_outputs(
                &default_flow.global_output_refs,
                true,
                &logging_key,
                "spec.defaultFlow.globalOutputRefs",
            );
            FlowPlan::new(
                logging_key.clone(),
                FlowMatcher {
                    scope: Scope::Cluster,
                    rules: Vec::new(),
                },
                default_flow.filters.clone(),
                dedup_keep_order(outputs),
            )
        });
        let error_output = spec
            .error_output_ref
            .as_ref()
            .and_then(|name| self.cluster_output(name, true, &logging_key, "spec.errorOutputRef"));
        let (buffers, buffer_problems, instances) = limits::allocate(
            &logging_key,
            spec,
            &mut flows,
            default_flow.as_ref(),
            error_output.as_ref(),
            &mut self.outputs,
        );
        for (key, p) in buffer_problems {
            self.report(&key, p);
        }
        let (capacity, capacity_problems) = capacity::admit(
            &logging_key,
            spec,
            &mut flows,
            default_flow.as_ref(),
            error_output.as_ref(),
            (&self.outputs, &instances),
            |flow: &FlowPlan| crate::render::fluentd::label_slot(flow.label()),
        );
        for (key, p) in capacity_problems {
            self.report(&key, p);
        }

        Pipeline {
            logging: self.name.to_owned(),
            logging_uid: self.logging.metadata.uid.clone(),
            spec: spec.clone(),
            names: Names::new(self.name, &spec.control_namespace),
            watched: self.watched,
            flows,
            default_flow,
            error_output,
            outputs: self.outputs,
            output_secret_data: self.output_secret_data,
            problems: self.problems,
            buffers,
            capacity,
        }
    }

    /// The flow's shape as `compute` makes it, or as the memo kept it for this object's UID
    /// and generation; `None` (with the problems reported) when its match list or filters
    /// are invalid: such a flow is left out entirely.
    fn flow_shape(
        &mut self,
        key: &ObjectKey,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        compute: impl FnOnce() -> Result<FlowShape, Vec<Problem>>,
    ) -> Option<FlowShape> {
        let stamp = meta.uid.as_deref().zip(meta.generation);
        let shape = match (self.memo, stamp) {
            (Some((memo, resolve)), Some(stamp)) => {
                memo.get(resolve, key, stamp).unwrap_or_else(|| {
                    let shape = compute();
                    memo.keep(resolve, key, stamp, &shape);
                    shape
                })
            }
            _ => compute(),
        };
        match shape {
            Ok(shape) => Some(shape),
            Err(problems) => {
                for p in problems {
                    self.report(key, p);
                }
                None
            }
        }
    }

    fn no_outputs_problem(&mut self, key: &ObjectKey, referenced: usize, none_valid: bool) {
        if none_valid {
            let message = if referenced == 0 {
                "the flow references no outputs, so the records it takes are dropped"
            } else {
                "none of the flow's outputs is usable, so the records it takes are dropped until one is"
            };
            self.report(key, problem("NoUsableOutputs", "spec", message));
        }
    }

    fn local_output(
        &mut self,
        namespace: &str,
        name: &str,
        flow: &ObjectKey,
        field: &str,
    ) -> Option<ObjectKey> {
        let key = ObjectKey::namespaced(Kind::Output, namespace, name);
        let found = self.outputs_by_name.get(&(namespace, name)).copied();
        let Some(output) = found else {
            self.report(
                flow,
                problem(
                    "OutputNotFound",
                    field,
                    format!("Output {namespace}/{name} does not exist"),
                ),
            );
            return None;
        };
        if !self.belongs(&output.spec.logging_ref, Some(namespace)) {
            self.report(
                flow,
                problem(
                    "OutputNotFound",
                    field,
                    format!("Output {namespace}/{name} belongs to another Logging"),
                ),
            );
            return None;
        }
        let generation = output.metadata.generation;
        self.usable_output(
            key,
            &output.spec,
            generation,
            namespace.to_owned(),
            flow,
            field,
        )
    }

    /// The usable ClusterOutputs among `names`, reporting each unusable one at `field[index]`.
    fn cluster_outputs(
        &mut self,
        names: &[String],
        protected_allowed: bool,
        flow: &ObjectKey,
        field: &str,
    ) -> Vec<ObjectKey> {
        names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                self.cluster_output(name, protected_allowed, flow, &format!("{field}[{index}]"))
            })
            .collect()
    }

    fn cluster_output(
        &mut self,
        name: &str,
        protected_allowed: bool,
        flow: &ObjectKey,
        field: &str,
    ) -> Option<ObjectKey> {
        let key = ObjectKey::cluster(Kind::ClusterOutput, name);
        let found = self.cluster_outputs_by_name.get(name).copied();
        let Some(output) = found else {
            self.report(
                flow,
                problem(
                    "OutputNotFound",
                    field,
                    format!("ClusterOutput {name} does not exist"),
                ),
            );
            return None;
        };
        if !self.belongs(&output.spec.output.logging_ref, None) {
            self.report(
                flow,
                problem(
                    "OutputNotFound",
                    field,
                    format!("ClusterOutput {name} belongs to another Logging"),
                ),
            );
            return None;
        }
        if !protected_allowed && output.spec.protected == Some(true) {
            self.report(flow, problem("OutputProtected", field, format!("ClusterOutput {name} is protected: only ClusterFlows and the default flow may use it")));
            return None;
        }
        let control_namespace = self.logging.spec.control_namespace.clone();
        let generation = output.metadata.generation;
        self.usable_output(
            key,
            &output.spec.output,
            generation,
            control_namespace,
            flow,
            field,
        )
    }

    /// Validates an output once; reports on the output itself, and on the referencing flow
    /// that it is unusable.
    fn usable_output(
        &mut self,
        key: ObjectKey,
        spec: &OutputSpec,
        generation: Option<i64>,
        secret_namespace: String,
        flow: &ObjectKey,
        field: &str,
    ) -> Option<ObjectKey> {
        if self.outputs.contains_key(&key) {
            return Some(key);
        }
        if !self.invalid_outputs.contains(&key) && self.blamed(&key, generation) {
            self.invalid_outputs.insert(key.clone());
        }
        if !self.invalid_outputs.contains(&key) {
            match self.validate_output(&key, spec, &secret_namespace) {
                Some(plan) => {
                    self.outputs.insert(key.clone(), plan);
                    return Some(key);
                }
                None => {
                    self.invalid_outputs.insert(key.clone());
                }
            }
        }
        self.report(
            flow,
            problem(
                "OutputInvalid",
                field,
                format!("{key} is invalid, see its status"),
            ),
        );
        None
    }

    fn validate_output(
        &mut self,
        key: &ObjectKey,
        spec: &OutputSpec,
        secret_namespace: &str,
    ) -> Option<OutputPlan> {
        let kinds = spec.kinds();
        if kinds.len() != 1 {
            let message = if kinds.is_empty() {
                format!("set one output kind: {}", OutputSpec::KINDS.join(", "))
            } else {
                "an output sets exactly one output kind".to_owned()
            };
            self.report(key, problem("InvalidOutputKind", "spec", message));
            return None;
        }
        let mut secret_files = BTreeMap::new();
        let mut secret_data = BTreeMap::new();
        let kind_problems = validate::outputs::validate_kind(kinds[0]);
        let mut valid = kind_problems.is_empty();
        for p in kind_problems {
            self.report(key, p);
        }
        for (field, reference) in secret_refs(kinds[0]) {
            let checked = self
                .secret_value(secret_namespace, reference)
                .and_then(|value| {
                    validate::credentials::usable(
                        kinds[0],
                        &field,
                        secret_namespace,
                        reference,
                        value,
                    )
                });
            match checked {
                Ok(value) => {
                    let file = crate::bundle::content_addressed_name(
                        &secret_file_name(secret_namespace, reference),
                        &value,
                    );
                    secret_data.insert(file.clone(), value);
                    secret_files.insert(reference.clone(), file);
                }
                Err((reason, message)) => {
                    valid = false;
                    self.report(key, problem(reason, format!("spec.{field}"), message));
                }
            }
        }
        // Nothing of an invalid output is copied into the aggregator.
        if valid {
            self.output_secret_data.extend(secret_data);
        }
        if let OutputKind::Loki(loki) = kinds[0] {
            for name in loki.labels.keys().filter(|name| !is_param_key(name)) {
                self.report(
                    key,
                    problem(
                        "InvalidKey",
                        "spec.loki.labels",
                        format!("{name:?} is not a valid Loki label name, so it is left out"),
                    ),
                );
            }
        }
        if let Some((field, tls)) = output_tls(kinds[0])
            && tls.insecure_skip_verify == Some(true)
        {
            self.report(
                key,
                problem(
                    "TlsVerificationDisabled",
                    format!("spec.{field}.insecureSkipVerify"),
                    "the endpoint's certificate is not verified: anyone on the path can read and alter these logs",
                ),
            );
        }
        for p in limits::forbidden_choices(key, spec, &self.logging.spec) {
            valid = false;
            self.report(key, p);
        }
        valid.then(|| OutputPlan {
            key: key.clone(),
            spec: spec.clone(),
            secret_files,
        })
    }

    /// The value an output's Secret reference resolves to, or the reason and message of why
    /// it cannot be used.
    fn secret_value(
        &self,
        namespace: &str,
        reference: &SecretKeyRef,
    ) -> Result<Vec<u8>, (&'static str, String)> {
        let name = &reference.name;
        if !is_dns_subdomain(name) {
            return Err((
                "InvalidSecretName",
                format!(
                    "{name:?} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)"
                ),
            ));
        }
        let secret = self
            .secrets_by_name
            .get(&(namespace, name.as_str()))
            .copied();
        if let Some(owner) = secrets::managed_by_sluice(self.admitted, namespace, name, secret) {
            return Err((
                "SecretNotAllowed",
                format!(
                    "Secret {namespace}/{name} belongs to Sluice ({owner}); outputs can never reference it"
                ),
            ));
        }
        if let Some(error) = self
            .inventory
            .secret_errors
            .get(&(namespace.to_owned(), name.clone()))
        {
            return Err((
                "SecretUnreadable",
                format!("Secret {namespace}/{name} could not be read: {error}"),
            ));
        }
        let Some(secret) = secret else {
            return Err((
                "SecretNotFound",
                format!("Secret {namespace}/{name} does not exist"),
            ));
        };
        secrets::value(secret, &reference.key).ok_or_else(|| {
            (
                "SecretNotFound",
                format!("Secret {namespace}/{name} has no key {:?}", reference.key),
            )
        })
    }
}

fn dedup_keep_order(keys: Vec<ObjectKey>) -> Vec<ObjectKey> {
    // Most flows name one output: nothing to compare, nothing to copy.
    if keys.len() < 2 {
        return keys;
    }
    let mut seen = std::collections::BTreeSet::new();
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Every Secret key an output kind references, with its field path below `spec`.
pub fn secret_refs(kind: OutputKind<'_>) -> Vec<(String, &SecretKeyRef)> {
    let mut refs = Vec::new();
    let (name, tls, auth): (
        &str,
        Option<&crate::api::OutputTls>,
        Option<&crate::api::BasicAuth>,
    ) = match kind {
        OutputKind::File(_) | OutputKind::Null | OutputKind::Stdout => return refs,
        OutputKind::Forward(o) => {
            if let Some(r) = &o.shared_key_secret_ref {
                refs.push(("forward.sharedKeySecretRef".to_owned(), r));
            }
            ("forward", o.tls.as_ref(), None)
        }
        OutputKind::Http(o) => ("http", o.tls.as_ref(), o.basic_auth.as_ref()),
        OutputKind::Elasticsearch(o) => ("elasticsearch", o.tls.as_ref(), o.basic_auth.as_ref()),
        OutputKind::Opensearch(o) => ("opensearch", o.tls.as_ref(), o.basic_auth.as_ref()),
        OutputKind::Loki(o) => ("loki", o.tls.as_ref(), o.basic_auth.as_ref()),
        OutputKind::S3(o) => {
            if let Some(r) = &o.access_key_id_secret_ref {
                refs.push(("s3.accessKeyIdSecretRef".to_owned(), r));
            }
            if let Some(r) = &o.secret_access_key_secret_ref {
                refs.push(("s3.secretAccessKeySecretRef".to_owned(), r));
            }
            return refs;
        }
        OutputKind::Kafka(o) => {
            if let Some(sasl) = &o.sasl {
                refs.push((
                    "kafka.sasl.passwordSecretRef".to_owned(),
                    &sasl.password_secret_ref,
                ));
            }
            ("kafka", o.tls.as_ref(), None)
        }
        OutputKind::SplunkHec(o) => {
            refs.push(("splunkHec.tokenSecretRef".to_owned(), &o.token_secret_ref));
            ("splunkHec", o.tls.as_ref(), None)
        }
    };
    if let Some(auth) = auth {
        refs.push((
            format!("{name}.basicAuth.passwordSecretRef"),
            &auth.password_secret_ref,
        ));
    }
    if let Some(tls) = tls {
        for (field, r) in [
            ("caSecretRef", &tls.ca_secret_ref),
            ("certSecretRef", &tls.cert_secret_ref),
            ("keySecretRef", &tls.key_secret_ref),
        ] {
            if let Some(r) = r {
                refs.push((format!("{name}.tls.{field}"), r));
            }
        }
    }
    refs
}

fn output_tls(kind: OutputKind<'_>) -> Option<(&'static str, &crate::api::OutputTls)> {
    match kind {
        OutputKind::Forward(o) => o.tls.as_ref().map(|t| ("forward.tls", t)),
        OutputKind::Http(o) => o.tls.as_ref().map(|t| ("http.tls", t)),
        OutputKind::Elasticsearch(o) => o.tls.as_ref().map(|t| ("elasticsearch.tls", t)),
        OutputKind::Opensearch(o) => o.tls.as_ref().map(|t| ("opensearch.tls", t)),
        OutputKind::Loki(o) => o.tls.as_ref().map(|t| ("loki.tls", t)),
        OutputKind::Kafka(o) => o.tls.as_ref().map(|t| ("kafka.tls", t)),
        OutputKind::SplunkHec(o) => o.tls.as_ref().map(|t| ("splunkHec.tls", t)),
        OutputKind::File(_) | OutputKind::Null | OutputKind::Stdout | OutputKind::S3(_) => None,
    }
}

/// A flow's rules, or the problems of its match list and filters.
fn valid_rules(
    entries: impl Iterator<Item = (Option<Selector>, Option<Selector>)>,
    filters: &[Filter],
) -> Result<Vec<Rule>, Vec<Problem>> {
    let mut rules = Vec::new();
    let mut problems = validate_filters("spec.filters", filters);
    for (index, (select, exclude)) in entries.enumerate() {
        match rule_of(select, exclude) {
            Some(rule) => rules.push(rule),
            None => problems.push(problem(
                "InvalidMatch",
                format!("spec.match[{index}]"),
                "a match entry holds exactly one of select or exclude",
            )),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn rule_of(select: Option<Selector>, exclude: Option<Selector>) -> Option<Rule> {
    match (select, exclude) {
        (Some(selector), None) => Some(Rule {
            action: Action::Select,
            selector,
        }),
        (None, Some(selector)) => Some(Rule {
            action: Action::Exclude,
            selector,
        }),
        _ => None,
    }
}

fn flow_selector(s: &FlowSelector) -> Selector {
    Selector {
        labels: label_map(&s.labels),
        hosts: s.hosts.iter().cloned().collect(),
        container_names: s.container_names.iter().cloned().collect(),
        ..Selector::default()
    }
}

fn cluster_flow_selector(s: &ClusterFlowSelector) -> Selector {
    Selector {
        namespaces: s.namespaces.iter().cloned().collect(),
        namespace_labels: label_map(&s.namespace_labels),
        labels: label_map(&s.labels),
        hosts: s.hosts.iter().cloned().collect(),
        container_names: s.container_names.iter().cloned().collect(),
    }
}

/// The namespaces a Logging collects from: `watchNamespaces` united with the namespaces its
/// selector matches; both unset means every namespace.
pub fn watched_namespaces(spec: &LoggingSpec, namespaces: &[Namespace]) -> Watched {
    if spec.watch_namespaces.is_empty() && spec.watch_namespace_selector.is_none() {
        return Watched::All;
    }
    let mut watched: std::collections::BTreeSet<String> =
        spec.watch_namespaces.iter().cloned().collect();
    if let Some(selector) = &spec.watch_namespace_selector {
        for namespace in namespaces {
            let labels = namespace.metadata.labels.clone().unwrap_or_default();
            if selector_matches(selector, &labels) {
                watched.insert(name_of(&namespace.metadata).to_owned());
            }
        }
    }
    Watched::Only(watched)
}

/// Kubernetes label-selector semantics.
pub fn selector_matches(selector: &NamespaceSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|requirement| {
            let value = labels.get(&requirement.key);
            match requirement.operator {
                LabelSelectorOperator::In => value.is_some_and(|v| requirement.values.contains(v)),
                LabelSelectorOperator::NotIn => {
                    value.is_none_or(|v| !requirement.values.contains(v))
                }
                LabelSelectorOperator::Exists => value.is_some(),
                LabelSelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}
