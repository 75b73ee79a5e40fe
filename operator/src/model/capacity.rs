//! How large an aggregator configuration its pods can check and run. fluentd configures
//! every plugin of the configuration in the check (`fluentd --dry-run`, in the reloader's
//! containers), in the supervisor and in every worker, and holds the old and the new
//! configuration side by side while it reloads; what that costs grows with the plugins the
//! configuration holds, not with the records. The operator knows those plugins before any
//! pod does, so it estimates the cost of each flow from fluentd's measured cost per plugin
//! and leaves out the flows that would take a pod past a limit: their own status says so,
//! and the Logging names the numbers, instead of an aggregator failing its check or being
//! killed while it loads (docs/dataplane.md, "Capacity").

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{CapacityStatus, LoggingSpec, OutputKind};
use crate::layout;

use super::instances::{OutputInstances, Sharing};
use super::limits::{quantity, quantity_bytes};
use super::{FlowPlan, ObjectKey, OutputPlan, Problem, problem};

const KI: u64 = 1024;
const MI: u64 = KI * KI;

/// What fluentd's configure costs: peak memory of the process (bytes) and time (ms), as
/// measured on fluentd 1.17.1 (docs/dataplane.md, "Capacity", and operator/benches/README.md
/// for the runs), rounded up. Time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost {
    pub bytes: u64,
    pub micros: u64,
}

impl Cost {
    const fn new(bytes: u64, micros: u64) -> Cost {
        Cost { bytes, micros }
    }

    fn times(self, count: u64) -> Cost {
        Cost::new(
            self.bytes.saturating_mul(count),
            self.micros.saturating_mul(count),
        )
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost::new(
            self.bytes.saturating_add(other.bytes),
            self.micros.saturating_add(other.micros),
        )
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

/// fluentd with its forward and metrics inputs and the fixed labels, loading nothing else
/// (measured: 42 MiB, 1.4 to 1.9 s).
pub const BASE: Cost = Cost::new(48 * MI, 2_000_000);
/// Loading an output plugin's gems, once per kind in use (measured: the Elasticsearch
/// client 12 MiB, OpenSearch's 7 MiB, the others up to 3 MiB; about a second).
pub const PLUGIN_KIND: Cost = Cost::new(16 * MI, 1_500_000);
/// One output instance: its `<label>`, plugin, buffer and their metrics (measured with its
/// hand-off: 228 KB and 13 to 16 ms for an Elasticsearch Output).
pub const OUTPUT_INSTANCE: Cost = Cost::new(192 * KI, 15_000);
/// One filter plugin (measured: 28 KB and 2.5 ms for a grep).
pub const FILTER: Cost = Cost::new(32 * KI, 3_000);
/// One flow's own share of its slot besides its filters: its tag among its hand-off's
/// (measured: 2.2 KB and 0.13 ms).
pub const FLOW: Cost = Cost::new(3 * KI, 200);
/// One hand-off (a `relabel`, or a `copy` of relabels) per set of instances in a slot.
pub const HANDOFF: Cost = Cost::new(48 * KI, 3_000);
/// A slot's `<label>` with its catch-all, once the slot holds a flow.
pub const SLOT: Cost = Cost::new(256 * KI, 15_000);
/// What one running output instance adds to a worker: its flush and enqueue threads.
pub const INSTANCE_RUNTIME: u64 = 96 * KI;
/// The reloader's own share of its containers' memory, next to the check.
const RELOADER_OWN: u64 = 32 * MI;
/// Share of the check timeout an estimate may use: the check runs wherever the pod does,
/// on slower or busier nodes than the one measured.
const TIMEOUT_SHARE_PERCENT: u64 = 50;

/// The aggregator's limits, as the Logging sets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub check_memory: u64,
    pub check_timeout_seconds: u64,
    /// The fluentd container's memory limit, if it has one.
    pub aggregator_memory: Option<u64>,
    pub workers: u64,
}

/// The reloader containers' memory limit (the check's) as written, else the default.
pub fn check_memory_limit(spec: &LoggingSpec) -> String {
    spec.aggregator
        .as_ref()
        .and_then(|a| a.config_check.as_ref())
        .and_then(|c| c.memory_limit.clone())
        .filter(|text| quantity_bytes(text).is_some_and(|bytes| bytes > 0))
        .unwrap_or_else(|| layout::DEFAULT_CONFIG_CHECK_MEMORY.to_owned())
}

/// Seconds the check may run.
pub fn check_timeout_seconds(spec: &LoggingSpec) -> u64 {
    spec.aggregator
        .as_ref()
        .and_then(|a| a.config_check.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|seconds| u64::try_from(seconds.clamp(10, 3600)).ok())
        .unwrap_or(layout::DEFAULT_CONFIG_CHECK_TIMEOUT_SECONDS)
}

/// The fluentd container's memory limit as written (its resources, else the default's).
pub fn aggregator_memory_limit(spec: &LoggingSpec) -> Option<String> {
    match spec.aggregator.as_ref().and_then(|a| a.resources.as_ref()) {
        Some(resources) => resources.limits.get("memory").cloned(),
        None => Some(layout::DEFAULT_AGGREGATOR_MEMORY_LIMIT.to_owned()),
    }
}

impl Limits {
    pub fn of(spec: &LoggingSpec) -> (Limits, Vec<Problem>) {
        let mut problems = Vec::new();
        if let Some(text) = spec
            .aggregator
            .as_ref()
            .and_then(|a| a.config_check.as_ref())
            .and_then(|c| c.memory_limit.as_deref())
            && quantity_bytes(text).is_none_or(|bytes| bytes == 0)
        {
            problems.push(problem(
                "InvalidQuantity",
                "spec.aggregator.configCheck.memoryLimit",
                format!(
                    "{text:?} is not a Kubernetes quantity such as 1Gi; the check gets {}",
                    layout::DEFAULT_CONFIG_CHECK_MEMORY
                ),
            ));
        }
        let check_memory = quantity_bytes(&check_memory_limit(spec)).unwrap_or(512 * MI);
        let workers = spec
            .aggregator
            .as_ref()
            .and_then(|a| a.workers)
            .unwrap_or(1)
            .clamp(1, 64);
        let limits = Limits {
            check_memory,
            check_timeout_seconds: check_timeout_seconds(spec),
            // An unreadable limit is the API server's to refuse; it bounds nothing here.
            aggregator_memory: aggregator_memory_limit(spec)
                .as_deref()
                .and_then(quantity_bytes),
            workers: u64::try_from(workers).unwrap_or(1),
        };
        (limits, problems)
    }
}

/// The estimated cost of a configuration against the limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub flows: u64,
    pub flows_left_out: u64,
    pub output_instances: u64,
    pub filters: u64,
    /// The check: one process configuring everything once.
    pub check: Cost,
    /// The fluentd container at its peak: supervisor and workers, each holding two
    /// configurations while reloading, and the instances' threads in every worker.
    pub aggregator_bytes: u64,
    pub limits: Option<Limits>,
}

impl Load {
    fn over(&self, limits: &Limits) -> Option<String> {
        let check_room = limits.check_memory.saturating_sub(RELOADER_OWN);
        let time_room = limits.check_timeout_seconds * 1_000_000 * TIMEOUT_SHARE_PERCENT / 100;
        if self.check.bytes > check_room {
            return Some(format!(
                "its check would need an estimated {} of memory, more than the {} the reloader's containers may use (spec.aggregator.configCheck.memoryLimit, less {} for the reloader itself)",
                quantity_rounded(self.check.bytes),
                quantity(limits.check_memory),
                quantity(RELOADER_OWN)
            ));
        }
        if self.check.micros > time_room {
            return Some(format!(
                "its check would take an estimated {} s, more than half of its {} s timeout (spec.aggregator.configCheck.timeoutSeconds)",
                self.check.micros.div_ceil(1_000_000),
                limits.check_timeout_seconds
            ));
        }
        if let Some(limit) = limits.aggregator_memory
            && self.aggregator_bytes > limit
        {
            return Some(format!(
                "fluentd would need an estimated {} of memory while reloading it, more than its container's {} limit (spec.aggregator.resources.limits.memory)",
                quantity_rounded(self.aggregator_bytes),
                quantity(limit)
            ));
        }
        None
    }

    pub fn status(&self) -> CapacityStatus {
        let limits = self.limits.clone().unwrap_or(Limits {
            check_memory: 0,
            check_timeout_seconds: 0,
            aggregator_memory: None,
            workers: 1,
        });
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let coarse =
            |bytes: u64| quantity(bytes.div_ceil(STATUS_MEMORY_STEP).max(1) * STATUS_MEMORY_STEP);
        CapacityStatus {
            check_memory: coarse(self.check.bytes),
            check_memory_limit: quantity(limits.check_memory),
            check_seconds: count(
                self.check.micros.div_ceil(STATUS_MICROS_STEP).max(1) * STATUS_MICROS_STEP
                    / 1_000_000,
            ),
            check_timeout_seconds: count(limits.check_timeout_seconds),
            aggregator_memory: coarse(self.aggregator_bytes),
            aggregator_memory_limit: limits.aggregator_memory.map(quantity),
            flows_left_out: count(self.flows_left_out),
        }
    }
}

/// Steps the status rounds estimates up to, so that an edit rarely changes it.
const STATUS_MEMORY_STEP: u64 = 32 * MI;
const STATUS_MICROS_STEP: u64 = 5_000_000;

/// Bytes rounded up to whole MiB, as a quantity.
fn quantity_rounded(bytes: u64) -> String {
    quantity(bytes.div_ceil(MI).max(1) * MI)
}

/// The running sums while flows are admitted.
struct Tally<'a> {
    /// Loaded code: fluentd and the plugin kinds in use.
    fixed: Cost,
    /// Configured plugins.
    cost: Cost,
    flows: u64,
    filters: u64,
    instances: BTreeSet<usize>,
    kinds: BTreeSet<&'static str>,
    slots: BTreeSet<usize>,
    handoffs: BTreeSet<(usize, Vec<usize>)>,
    grouped: &'a OutputInstances,
    outputs: &'a BTreeMap<ObjectKey, OutputPlan>,
    global_filters: u64,
}

/// What admitting one flow adds.
#[derive(Default)]
struct Addition {
    fixed: Cost,
    cost: Cost,
    filters: u64,
    instances: u64,
}

impl Tally<'_> {
    /// What admitting `flow` (in `slot`; the default flow has none) adds, without adding it.
    /// `targets` are the flow's instances (`grouped.of_flow(flow)`).
    fn addition(&self, flow: &FlowPlan, slot: Option<usize>, targets: &[usize]) -> Addition {
        let mut addition = Addition::default();
        let mut kinds: BTreeSet<&'static str> = BTreeSet::new();
        for index in targets
            .iter()
            .filter(|index| !self.instances.contains(index))
        {
            addition.cost += OUTPUT_INSTANCE;
            addition.instances += 1;
            let lead = self.grouped.instances[*index].lead();
            if let Some(kind) = self
                .outputs
                .get(lead)
                .and_then(|plan| plugin_kind(&plan.spec))
                && !self.kinds.contains(kind)
                && kinds.insert(kind)
            {
                addition.fixed += PLUGIN_KIND;
            }
        }
        let own_filters = u64::try_from(flow.filters.len()).unwrap_or(u64::MAX);
        let stores = u64::try_from(targets.len()).unwrap_or(u64::MAX);
        // A relabel, or a copy with a relabel per instance.
        let handoff = HANDOFF.times(if stores > 1 { 1 + stores } else { 1 });
        match slot {
            // Nothing to send to: nothing of it is rendered.
            Some(_) if targets.is_empty() => {}
            Some(slot) => {
                addition.filters = own_filters;
                addition.cost += FLOW;
                if !self.slots.contains(&slot) {
                    addition.cost += SLOT;
                    addition.filters += self.global_filters;
                }
                if !self.handoffs.contains(&(slot, targets.to_vec())) {
                    addition.cost += handoff;
                }
            }
            // The default flow has a label of its own in the main file.
            None => {
                addition.filters = own_filters + self.global_filters;
                addition.cost += SLOT + handoff;
            }
        }
        addition.cost += FILTER.times(addition.filters);
        addition
    }

    /// Admits a flow whose [`Tally::addition`] to `targets` is `addition`.
    fn add(&mut self, slot: Option<usize>, targets: Vec<usize>, addition: &Addition) {
        self.fixed += addition.fixed;
        self.cost += addition.cost;
        self.filters += addition.filters;
        self.flows += 1;
        for index in &targets {
            // An instance counted before brought its plugin kind then.
            if !self.instances.insert(*index) {
                continue;
            }
            let lead = self.grouped.instances[*index].lead();
            if let Some(kind) = self
                .outputs
                .get(lead)
                .and_then(|plan| plugin_kind(&plan.spec))
            {
                self.kinds.insert(kind);
            }
        }
        if let Some(slot) = slot
            && !targets.is_empty()
        {
            self.slots.insert(slot);
            self.handoffs.insert((slot, targets));
        }
    }

    /// The load of what is admitted, plus `extra`.
    fn load(&self, limits: &Limits, error_output: bool, extra: &Addition) -> Load {
        let instances = u64::try_from(self.instances.len()).unwrap_or(u64::MAX)
            + u64::from(error_output)
            + extra.instances;
        let fixed = self.fixed + extra.fixed;
        let configured = self.cost + OUTPUT_INSTANCE.times(u64::from(error_output)) + extra.cost;
        let processes = limits.workers + 1;
        // One configuration per process: a reload restarts the worker, whose memory goes
        // with it (measured: the RSS after a reload equals the RSS before, at 1,000 to
        // 10,000 flows), rather than a graceful reload, which kept the old configuration's.
        let per_process = fixed.bytes.saturating_add(configured.bytes);
        let aggregator_bytes = per_process.saturating_mul(processes).saturating_add(
            instances
                .saturating_mul(INSTANCE_RUNTIME)
                .saturating_mul(limits.workers),
        );
        Load {
            flows: self.flows,
            flows_left_out: 0,
            output_instances: instances,
            filters: self.filters + extra.filters,
            check: fixed + configured,
            aggregator_bytes,
            limits: Some(limits.clone()),
        }
    }
}

/// The plugin gems an output kind loads (two kinds of one gem count once).
fn plugin_kind(spec: &crate::api::OutputSpec) -> Option<&'static str> {
    Some(match spec.kind()? {
        OutputKind::File(_) | OutputKind::Null | OutputKind::Stdout | OutputKind::Forward(_) => {
            return None;
        }
        OutputKind::Http(_) => return None,
        OutputKind::Elasticsearch(_) => "elasticsearch",
        OutputKind::Opensearch(_) => "opensearch",
        OutputKind::Loki(_) => "loki",
        OutputKind::S3(_) => "s3",
        OutputKind::Kafka(_) => "kafka",
        OutputKind::SplunkHec(_) => "splunk_hec",
    })
}

/// Admits flows while the configuration stays within the Logging's limits and removes the
/// rest from `flows`: the admin's first (the default flow, then ClusterFlows by name), then
/// the namespaces' Flows round-robin (every namespace's first by name, then every
/// namespace's second, …), so one namespace's many flows cannot push another's out. A flow
/// that would exceed a limit is left out with the problem; later, cheaper flows (sending to
/// instances already counted) may still fit. Returns the load and the problems, each with
/// the object it belongs to. `grouped` are the instances of `flows` and `default_flow`.
pub fn admit(
    logging: &ObjectKey,
    spec: &LoggingSpec,
    flows: &mut Vec<FlowPlan>,
    default_flow: Option<&FlowPlan>,
    error_output: Option<&ObjectKey>,
    (outputs, grouped): (&BTreeMap<ObjectKey, OutputPlan>, &OutputInstances),
    slot_of: impl Fn(&FlowPlan) -> usize,
) -> (Load, Vec<(ObjectKey, Problem)>) {
    let (limits, limit_problems) = Limits::of(spec);
    let mut problems: Vec<(ObjectKey, Problem)> = limit_problems
        .into_iter()
        .map(|p| (logging.clone(), p))
        .collect();
    let mut tally = Tally {
        fixed: BASE,
        cost: Cost::default(),
        flows: 0,
        filters: 0,
        instances: BTreeSet::new(),
        kinds: BTreeSet::new(),
        slots: BTreeSet::new(),
        handoffs: BTreeSet::new(),
        grouped,
        outputs,
        global_filters: u64::try_from(spec.global_filters.len()).unwrap_or(u64::MAX),
    };
    let error_buffered = error_output.is_some_and(|key| outputs.contains_key(key));
    if let Some(default) = default_flow {
        let targets = grouped.of_flow(default);
        let addition = tally.addition(default, None, &targets);
        tally.add(None, targets, &addition);
    }

    // Admission order: the admin's flows by key, then each namespace's by rank.
    let mut rank_in_namespace: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let mut order: Vec<(bool, usize, Option<String>, usize)> = Vec::new();
    for (index, flow) in flows.iter().enumerate() {
        let tenant = Sharing::of_flow(&flow.key) != Sharing::Admin;
        let namespace = flow.key.namespace.clone().filter(|_| tenant);
        let rank = rank_in_namespace.entry(namespace.clone()).or_default();
        order.push((tenant, *rank, namespace, index));
        *rank += 1;
    }
    order.sort();
    let mut kept = vec![true; flows.len()];
    for (_, _, _, index) in order {
        let flow = &flows[index];
        let slot = slot_of(flow);
        let targets = grouped.of_flow(flow);
        let addition = tally.addition(flow, Some(slot), &targets);
        match tally.load(&limits, error_buffered, &addition).over(&limits) {
            None => tally.add(Some(slot), targets, &addition),
            Some(why) => {
                problems.push((
                    flow.key.clone(),
                    problem(
                        "AggregatorCapacityExceeded",
                        "spec",
                        format!(
                            "left out of the aggregator's configuration: with this flow {why}. Flows are admitted the admin's first, then every namespace's first by name, then every namespace's second, and so on"
                        ),
                    ),
                ));
                kept[index] = false;
            }
        }
    }
    let mut load = tally.load(&limits, error_buffered, &Addition::default());
    let left_out = kept.iter().filter(|keep| !**keep).count();
    load.flows_left_out = u64::try_from(left_out).unwrap_or(u64::MAX);
    if left_out > 0 {
        let total = flows.len() + usize::from(default_flow.is_some());
        problems.push((
            logging.clone(),
            problem(
                "AggregatorCapacityExceeded",
                "spec.aggregator",
                format!(
                    "{left_out} of {total} flows are left out: the aggregator's configuration would exceed what its pods can check or run. With the {} flows kept: check {} of {} memory (less {} for the reloader) and about {} s of a {} s timeout; fluentd {} of {}. Raise spec.aggregator.configCheck.memoryLimit, configCheck.timeoutSeconds or resources.limits.memory, or have flows share outputs (see status.capacity and docs/dataplane.md, \"Capacity\")",
                    load.flows,
                    quantity_rounded(load.check.bytes),
                    quantity(limits.check_memory),
                    quantity(RELOADER_OWN),
                    load.check.micros.div_ceil(1_000_000),
                    limits.check_timeout_seconds,
                    quantity_rounded(load.aggregator_bytes),
                    limits
                        .aggregator_memory
                        .map(quantity)
                        .unwrap_or_else(|| "no limit".to_owned())
                ),
            ),
        ));
        let mut keep = kept.into_iter();
        flows.retain(|_| keep.next().unwrap_or(true));
    }
    (load, problems)
}
