//! Shared resources belong to the Logging's admin: what a namespaced Output may claim of the
//! aggregator (buffer sizes, flush threads, overflow behaviour, the pod's cloud identity), and
//! how the buffer volume is shared among every buffer of an aggregator pod. The contract and
//! the defaults are in docs/dataplane.md, "Tenant limits and the buffer budget".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use crate::api::{
    BuffersStatus, LoggingSpec, OutputKind, OutputSpec, OverflowAction, TenantLimits,
};

use super::instances::{OutputInstance, OutputInstances, Sharing};
use super::{FlowPlan, Kind, ObjectKey, OutputPlan, Problem, problem};

const KI: u64 = 1024;
const MI: u64 = KI * KI;
const GI: u64 = MI * KI;
const TI: u64 = GI * KI;

/// The buffer volume when the Logging names no size (the PersistentVolumeClaim's default, and
/// what an emptyDir without `sizeLimit` is assumed to hold).
pub const DEFAULT_VOLUME: u64 = 10 * GI;
/// fluentd's own default chunk size, which Sluice keeps.
pub const DEFAULT_CHUNK_LIMIT: u64 = 8 * MI;
/// Cap on a tenant's `chunkLimitSize` unless the admin sets one.
pub const DEFAULT_MAX_CHUNK_LIMIT: u64 = 64 * MI;
/// Flush threads of an output that asks for none: an idle thread per flow-output pair and
/// worker adds up to thousands of Ruby threads on a large cluster.
pub const DEFAULT_FLUSH_THREADS: i32 = 1;
/// Cap on a tenant's `flushThreadCount` unless the admin sets one.
pub const DEFAULT_MAX_FLUSH_THREADS: i32 = 4;
/// Overflow actions a tenant may choose unless the admin says otherwise: neither can stall
/// the aggregator's input for other outputs.
pub const DEFAULT_OVERFLOW_ACTIONS: [OverflowAction; 2] = [
    OverflowAction::ThrowException,
    OverflowAction::DropOldestChunk,
];
/// Buffered output instances a namespace's Flows get unless the admin sets another number.
pub const DEFAULT_MAX_OUTPUTS_PER_NAMESPACE: i32 = 32;
/// Share of the volume handed out to buffers; the rest covers file-system overhead, the
/// buffers' metadata files and chunks still being written when the oldest one is dropped.
const USABLE_PERCENT: u64 = 90;
/// Smallest default, so a crowded volume gets fewer working buffers (the tenant instances
/// that no longer fit are left out) rather than buffers smaller than a chunk.
const MIN_DEFAULT_TOTAL: u64 = 4 * DEFAULT_CHUNK_LIMIT;

static FLUENTD_SIZE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([0-9]{1,15})([kmgtKMGT]?)$").unwrap_or_else(|_| unreachable!())
});
static QUANTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\+?([0-9]*)(?:\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE]?)$")
        .unwrap_or_else(|_| unreachable!())
});

/// Bytes of a fluentd size (`config/types.rb`: `k`, `m`, `g`, `t` are powers of 1024, either
/// case). `None` for anything else.
pub fn fluentd_size_bytes(text: &str) -> Option<u64> {
    let captures = FLUENTD_SIZE.captures(text)?;
    let number: u64 = captures[1].parse().ok()?;
    let unit = match captures[2].to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => KI,
        "m" => MI,
        "g" => GI,
        _ => TI,
    };
    number.checked_mul(unit)
}

/// `bytes` in the largest power of 1024 that divides it exactly, with that unit's suffix
/// (tebi, gibi, mebi, kibi).
fn exact_binary(bytes: u64, suffixes: [&str; 4]) -> String {
    for (unit, suffix) in [TI, GI, MI, KI].into_iter().zip(suffixes) {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// A byte count as a fluentd size, in the largest unit that divides it exactly.
pub fn fluentd_size(bytes: u64) -> String {
    exact_binary(bytes, ["t", "g", "m", "k"])
}

/// Bytes of a Kubernetes quantity (`resource.Quantity`: decimal or binary SI suffixes,
/// decimal exponents, fractions), rounded up to a whole byte as the API server does.
/// `None` for negative or malformed quantities and values beyond 2^64.
pub fn quantity_bytes(text: &str) -> Option<u64> {
    let captures = QUANTITY.captures(text)?;
    let whole = &captures[1];
    let fraction = captures.get(2).map_or("", |m| m.as_str());
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // value = digits × 10^exponent × 2^binary, in exact integer arithmetic.
    let digits: u128 = format!("{whole}{fraction}0").parse::<u128>().ok()? / 10;
    let mut exponent = -(i64::try_from(fraction.len()).ok()?);
    let mut binary = 0u32;
    match &captures[3] {
        "" => {}
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" => binary = 10,
        "Mi" => binary = 20,
        "Gi" => binary = 30,
        "Ti" => binary = 40,
        "Pi" => binary = 50,
        "Ei" => binary = 60,
        other => exponent += other[1..].parse::<i64>().ok()?,
    }
    let scaled = digits.checked_mul(1u128.checked_shl(binary)?)?;
    let value = if exponent >= 0 {
        scaled.checked_mul(10u128.checked_pow(u32::try_from(exponent).ok()?)?)?
    } else {
        let divisor = 10u128.checked_pow(u32::try_from(-exponent).ok()?)?;
        scaled.div_ceil(divisor)
    };
    u64::try_from(value).ok()
}

/// A byte count as a Kubernetes quantity, in the largest binary unit that divides it exactly.
pub fn quantity(bytes: u64) -> String {
    exact_binary(bytes, ["Ti", "Gi", "Mi", "Ki"])
}

/// How the buffers of one aggregator pod share its buffer volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BufferBudget {
    /// Size of the buffer volume in bytes.
    pub volume: u64,
    /// Sum of every buffer's `total_limit_size` in one pod.
    pub allocated: u64,
    /// `total_limit_size` of an output that sets none (tenant Outputs: at most their cap).
    pub per_output_default: u64,
    /// Buffers in one pod: output instances (and the error output) × workers.
    pub buffers: u64,
}

impl BufferBudget {
    pub fn status(&self) -> BuffersStatus {
        BuffersStatus {
            volume: quantity(self.volume),
            allocated: quantity(self.allocated),
            per_output_default: quantity(self.per_output_default),
            buffers: i64::try_from(self.buffers).unwrap_or(i64::MAX),
        }
    }
}

fn limits(spec: &LoggingSpec) -> TenantLimits {
    spec.tenant_limits.clone().unwrap_or_default()
}

/// Whether pods may hide from every flow with the annotation `fluentbit.io/exclude: "true"`.
pub fn pod_opt_out_allowed(spec: &LoggingSpec) -> bool {
    limits(spec).allow_pod_opt_out == Some(true)
}

fn overflow_action_name(action: OverflowAction) -> &'static str {
    match action {
        OverflowAction::ThrowException => "throw_exception",
        OverflowAction::Block => "block",
        OverflowAction::DropOldestChunk => "drop_oldest_chunk",
    }
}

/// The choices of a namespaced Output that the Logging's admin did not allow. Any of them
/// leaves the Output out: using it as written would affect others, and silently changing
/// what it does would surprise its author. ClusterOutputs are the admin's own: none apply.
pub fn forbidden_choices(
    key: &ObjectKey,
    spec: &OutputSpec,
    logging: &LoggingSpec,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if key.kind != Kind::Output {
        return problems;
    }
    let limits = limits(logging);
    let allowed = limits
        .allowed_overflow_actions
        .clone()
        .unwrap_or_else(|| DEFAULT_OVERFLOW_ACTIONS.to_vec());
    if let Some(action) = spec.buffer.as_ref().and_then(|b| b.overflow_action)
        && !allowed.contains(&action)
    {
        let names: Vec<&str> = allowed.iter().map(|a| overflow_action_name(*a)).collect();
        problems.push(problem(
            "OverflowActionNotAllowed",
            "spec.buffer.overflowAction",
            format!(
                "{} is not among the Logging's spec.tenantLimits.allowedOverflowActions ({}): a full buffer must not stall the aggregator for everyone",
                overflow_action_name(action),
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ),
        ));
    }
    match spec.kind() {
        Some(OutputKind::File(_)) if limits.allow_file_outputs != Some(true) => {
            problems.push(problem(
                "FileOutputNotAllowed",
                "spec.file",
                "a file output writes to the aggregator's buffer volume outside the buffer budget and never rotates, so it could fill the disk every buffer shares; the Logging's spec.tenantLimits.allowFileOutputs does not allow it",
            ));
        }
        Some(OutputKind::Stdout) if limits.allow_stdout_outputs != Some(true) => {
            problems.push(problem(
                "StdoutOutputNotAllowed",
                "spec.stdout",
                "a stdout output writes every record to the aggregator's log on the node, which the Logging's spec.tenantLimits.allowStdoutOutputs does not allow",
            ));
        }
        _ => {}
    }
    if let Some(OutputKind::S3(s3)) = spec.kind()
        && (s3.access_key_id_secret_ref.is_none() || s3.secret_access_key_secret_ref.is_none())
        && limits.allow_ambient_credentials != Some(true)
    {
        problems.push(problem(
            "AmbientCredentialsNotAllowed",
            "spec.s3.accessKeyIdSecretRef",
            "without both accessKeyIdSecretRef and secretAccessKeySecretRef the output would write with the aggregator's own cloud identity, which the Logging's spec.tenantLimits.allowAmbientCredentials does not allow",
        ));
    }
    problems
}

/// Size of the aggregator's buffer volume, and a problem when the Logging's quantity cannot
/// be read (the budget then assumes the default).
fn volume(spec: &LoggingSpec) -> (u64, Option<Problem>) {
    let volume = spec
        .aggregator
        .as_ref()
        .and_then(|a| a.buffer_volume.as_ref());
    let (field, text) = match volume {
        Some(v) if v.empty_dir.is_some() => (
            "spec.aggregator.bufferVolume.emptyDir.sizeLimit",
            v.empty_dir.as_ref().and_then(|e| e.size_limit.as_deref()),
        ),
        other => (
            "spec.aggregator.bufferVolume.persistentVolumeClaim.size",
            other
                .and_then(|v| v.persistent_volume_claim.as_ref())
                .and_then(|c| c.size.as_deref()),
        ),
    };
    match text.map(|t| (t, quantity_bytes(t))) {
        None => (DEFAULT_VOLUME, None),
        Some((_, Some(bytes))) if bytes > 0 => (bytes, None),
        Some((text, _)) => (
            DEFAULT_VOLUME,
            Some(problem(
                "InvalidQuantity",
                field,
                format!(
                    "{text:?} is not a Kubernetes quantity such as 20Gi; the buffer budget assumes {}",
                    quantity(DEFAULT_VOLUME)
                ),
            )),
        ),
    }
}

fn workers(spec: &LoggingSpec) -> u64 {
    let workers = spec
        .aggregator
        .as_ref()
        .and_then(|a| a.workers)
        .unwrap_or(1);
    u64::try_from(workers.clamp(1, 64)).unwrap_or(1)
}

fn buffered(spec: &OutputSpec) -> bool {
    !matches!(
        spec.kind(),
        None | Some(OutputKind::Null) | Some(OutputKind::Stdout)
    )
}

fn lowered(field: &str, asked: &str, cap: &str, because: &str) -> Problem {
    problem(
        "BufferLimitLowered",
        format!("spec.buffer.{field}"),
        format!("{asked} is above {because} ({cap}), so the buffer uses {cap}"),
    )
}

/// Bytes a tenant Output may ask for without a `maxTotalLimitSize`, and the phrase naming it.
const FAIR_SHARE: &str = "this output's share of the buffer volume (the Logging's status.buffers; its admin may raise spec.tenantLimits.maxTotalLimitSize)";

/// The cap on a namespace's buffered output instances, and the field that set it.
fn outputs_cap(limits: &TenantLimits) -> (usize, &'static str) {
    let (cap, field) = match (
        limits.max_outputs_per_namespace,
        limits.max_flow_output_pairs_per_namespace,
    ) {
        (Some(cap), _) => (cap, "maxOutputsPerNamespace"),
        // Deprecated, read as the new cap: it bounded the same buffers and threads.
        (None, Some(cap)) => (cap, "maxFlowOutputPairsPerNamespace"),
        (None, None) => (DEFAULT_MAX_OUTPUTS_PER_NAMESPACE, "maxOutputsPerNamespace"),
    };
    (usize::try_from(cap.clamp(1, 1000)).unwrap_or(1), field)
}

/// The problem of a Flow that loses `output` because its namespace's instance of it got no
/// buffer.
fn output_left_out(output: &ObjectKey, reason: &'static str, message: String) -> Problem {
    let field = if output.kind == Kind::ClusterOutput {
        "spec.globalOutputRefs"
    } else {
        "spec.localOutputRefs"
    };
    problem(reason, field, message)
}

/// Sizes every buffer, applies the tenant caps, and writes the resulting `totalLimitSize`,
/// `chunkLimitSize` and `flushThreadCount` into each output's `spec.buffer` (what the
/// renderer writes). A buffer belongs to an output instance (`model::instances`), shared by
/// every flow of one namespace (or every admin flow) sending to it. The admin's instances
/// (ClusterFlows, the default flow, the error output) are placed first, as the admin sized
/// them; then each namespace's instances, round-robin across namespaces, each only while the
/// budget still holds it: an instance that does not fit is removed from the Flows using it,
/// which get the Problem, never the Logging. Returns the budget, the problems, each with the
/// object it belongs to, and the instances of the final flows and sizes.
pub fn allocate(
    logging: &ObjectKey,
    spec: &LoggingSpec,
    flows: &mut [FlowPlan],
    default_flow: Option<&FlowPlan>,
    error_output: Option<&ObjectKey>,
    outputs: &mut BTreeMap<ObjectKey, OutputPlan>,
) -> (BufferBudget, Vec<(ObjectKey, Problem)>, OutputInstances) {
    let mut problems = Vec::new();
    let (volume, volume_problem) = volume(spec);
    if let Some(p) = volume_problem {
        problems.push((logging.clone(), p));
    }
    let workers = workers(spec);
    let limits = limits(spec);
    let is_buffered = |key: &ObjectKey| outputs.get(key).is_some_and(|plan| buffered(&plan.spec));
    let grouped = OutputInstances::group(flows.iter().chain(default_flow), outputs);
    let buffered_instances: Vec<&OutputInstance> = grouped
        .instances
        .iter()
        .filter(|instance| is_buffered(instance.lead()))
        .collect();

    // The admin's buffers, by the output they render: one per admin instance (and the
    // error output's own) per worker.
    let mut admin: Vec<&ObjectKey> = buffered_instances
        .iter()
        .filter(|instance| instance.sharing == Sharing::Admin)
        .map(|instance| instance.lead())
        .collect();
    admin.extend(error_output.filter(|key| is_buffered(key)));
    // The tenants' instances, ranked within their namespace by first use: flows by name
    // (they are sorted by key), outputs in the order each flow references them.
    // Keyed by the instance's sharing, borrowed (it is the flow's): a copy per flow and
    // output cost more than the ranking at 10,000 flows.
    let mut rank_of: BTreeMap<(&Sharing, &ObjectKey), usize> = BTreeMap::new();
    let mut per_namespace: BTreeMap<&Sharing, usize> = BTreeMap::new();
    for flow in flows.iter().filter(|flow| flow.key.kind == Kind::Flow) {
        for index in grouped.of_flow(flow) {
            let instance = &grouped.instances[index];
            let (sharing, lead) = (&instance.sharing, instance.lead());
            if !is_buffered(lead) || rank_of.contains_key(&(sharing, lead)) {
                continue;
            }
            let rank = per_namespace.entry(sharing).or_default();
            rank_of.insert((sharing, lead), *rank);
            *rank += 1;
        }
    }
    let tenant: Vec<&OutputInstance> = buffered_instances
        .iter()
        .copied()
        .filter(|instance| instance.sharing != Sharing::Admin)
        .collect();

    let asked = |key: &ObjectKey| {
        outputs
            .get(key)
            .and_then(|plan| plan.spec.buffer.as_ref())
            .and_then(|b| b.total_limit_size.as_deref())
            .and_then(|text| fluentd_size_bytes(text).map(|bytes| (text.to_owned(), bytes)))
    };
    // The default: what the admin's explicit sizes leave, shared by the admin's other
    // buffers and every tenant buffer alike, so nothing a tenant writes can shrink it.
    // Whole MiB, so the budget reads as a quantity.
    let usable = volume / 100 * USABLE_PERCENT / MI * MI;
    let mut admin_explicit = 0u64;
    let mut default_buffers = u64::try_from(tenant.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(workers);
    for key in &admin {
        match asked(key) {
            Some((_, bytes)) => {
                admin_explicit = admin_explicit.saturating_add(bytes.saturating_mul(workers));
            }
            None => default_buffers = default_buffers.saturating_add(workers),
        }
    }
    let per_output_default =
        (usable.saturating_sub(admin_explicit) / default_buffers.max(1)) / MI * MI;
    let per_output_default = per_output_default.max(MIN_DEFAULT_TOTAL);
    let total_cap = limits
        .max_total_limit_size
        .as_deref()
        .and_then(fluentd_size_bytes)
        .map(|cap| (cap, "the Logging's spec.tenantLimits.maxTotalLimitSize"))
        .unwrap_or((per_output_default, FAIR_SHARE));
    let chunk_cap = limits
        .max_chunk_limit_size
        .as_deref()
        .and_then(fluentd_size_bytes)
        .unwrap_or(DEFAULT_MAX_CHUNK_LIMIT);
    let thread_cap = limits
        .max_flush_thread_count
        .unwrap_or(DEFAULT_MAX_FLUSH_THREADS)
        .clamp(1, 64);

    // One size per output (fluentd's buffer is the instance's, and an instance's outputs
    // have equal specs): ClusterOutputs as the admin wrote them, tenant Outputs capped.
    let used: BTreeSet<&ObjectKey> = buffered_instances
        .iter()
        .flat_map(|instance| &instance.outputs)
        .chain(admin.iter().copied())
        .collect();
    let mut sizes: BTreeMap<ObjectKey, u64> = BTreeMap::new();
    for key in used {
        let is_tenant = key.kind == Kind::Output;
        let size = match asked(key) {
            Some((text, bytes)) if is_tenant && bytes > total_cap.0 => {
                problems.push((
                    key.clone(),
                    lowered(
                        "totalLimitSize",
                        &text,
                        &fluentd_size(total_cap.0),
                        total_cap.1,
                    ),
                ));
                total_cap.0
            }
            Some((_, bytes)) => bytes,
            None if is_tenant => per_output_default.min(total_cap.0),
            None => per_output_default,
        };
        sizes.insert(key.clone(), size);
    }

    let mut allocated = 0u64;
    for key in &admin {
        allocated = allocated.saturating_add(sizes[*key].saturating_mul(workers));
    }
    if allocated > volume {
        // Only the admin's own sizes can get here: tenants' instances are placed below.
        let buffers = u64::try_from(admin.len()).unwrap_or(u64::MAX);
        problems.push((
            logging.clone(),
            problem(
                "BufferOvercommitted",
                "spec.aggregator.bufferVolume",
                format!(
                    "the {} buffers of the admin's own flows in an aggregator pod ({buffers} outputs × {workers} workers) may grow to {}, more than the {} buffer volume, and leave no room for any namespace's Flow; lower the totalLimitSize of ClusterOutputs or enlarge the volume",
                    buffers * workers,
                    quantity(allocated),
                    quantity(volume)
                ),
            ),
        ));
    }

    // Tenant instances: every namespace's first, then every namespace's second, …;
    // instances larger than the default only after every default-sized one, so asking for
    // more (where the admin allows it) never displaces another namespace's fair share.
    let (outputs_cap, cap_field) = outputs_cap(&limits);
    let rank = |instance: &OutputInstance| {
        rank_of
            .get(&(&instance.sharing, instance.lead()))
            .copied()
            .unwrap_or(usize::MAX)
    };
    let mut ordered = tenant;
    ordered.sort_by_key(|instance| {
        (
            sizes[instance.lead()] > per_output_default,
            rank(instance),
            instance.sharing.clone(),
        )
    });
    let mut left_out: Vec<(&OutputInstance, Problem)> = Vec::new();
    for instance in ordered {
        let namespace = instance.sharing.as_text();
        let lead = instance.lead();
        let cost = sizes[lead].saturating_mul(workers);
        let name = &lead.name;
        if rank(instance) >= outputs_cap {
            left_out.push((
                instance,
                output_left_out(
                    lead,
                    "TooManyOutputs",
                    format!(
                        "output {name} gets no buffer: namespace {namespace}'s Flows already send to {outputs_cap} outputs with buffers (the Logging's spec.tenantLimits.{cap_field}), counted by flow name"
                    ),
                ),
            ));
        } else if allocated.saturating_add(cost) > usable {
            left_out.push((
                instance,
                output_left_out(
                    lead,
                    "BufferBudgetExhausted",
                    format!(
                        "output {name} gets no buffer: its {} × {workers} workers do not fit what is left of the Logging's buffer budget ({} of {} placed; see its status.buffers), so this flow does not send to it",
                        fluentd_size(sizes[lead]),
                        quantity(allocated),
                        quantity(usable)
                    ),
                ),
            ));
        } else {
            allocated = allocated.saturating_add(cost);
        }
    }
    // Nothing sized and nothing left out: the flows and specs are the ones grouped above.
    let regroup = !sizes.is_empty() || !left_out.is_empty();
    for (instance, refusal) in &left_out {
        for flow in flows
            .iter_mut()
            .filter(|flow| Sharing::of_flow(&flow.key) == instance.sharing)
        {
            let before = flow.outputs.len();
            flow.outputs.retain(|key| !instance.outputs.contains(key));
            if flow.outputs.len() != before {
                problems.push((flow.key.clone(), refusal.clone()));
            }
        }
    }

    for (key, total) in &sizes {
        let is_tenant = key.kind == Kind::Output;
        let Some(plan) = outputs.get_mut(key) else {
            continue;
        };
        let total = *total;
        let buffer = plan.spec.buffer.get_or_insert_with(Default::default);
        let asked_chunk = buffer
            .chunk_limit_size
            .as_deref()
            .and_then(|text| fluentd_size_bytes(text).map(|bytes| (text.to_owned(), bytes)));
        let mut chunk = match &asked_chunk {
            Some((text, bytes)) if is_tenant && *bytes > chunk_cap => {
                problems.push((
                    key.clone(),
                    lowered(
                        "chunkLimitSize",
                        text,
                        &fluentd_size(chunk_cap),
                        "the Logging's spec.tenantLimits.maxChunkLimitSize",
                    ),
                ));
                chunk_cap
            }
            Some((_, bytes)) => *bytes,
            None => DEFAULT_CHUNK_LIMIT,
        };
        if chunk > total {
            // A chunk larger than the whole buffer could never be stored.
            chunk = total;
        }
        let threads = match buffer.flush_thread_count {
            Some(asked) if is_tenant && asked > thread_cap => {
                problems.push((
                    key.clone(),
                    lowered(
                        "flushThreadCount",
                        &asked.to_string(),
                        &thread_cap.to_string(),
                        "the Logging's spec.tenantLimits.maxFlushThreadCount",
                    ),
                ));
                thread_cap
            }
            Some(asked) => asked.clamp(1, 64),
            None => DEFAULT_FLUSH_THREADS,
        };
        buffer.total_limit_size = Some(fluentd_size(total));
        buffer.chunk_limit_size = Some(fluentd_size(chunk));
        buffer.flush_thread_count = Some(threads);
    }

    // What the renderer will write, counted on the final flows and sizes: outputs whose
    // specs became equal once sized share an instance there too.
    let placed = if regroup {
        OutputInstances::group(flows.iter().chain(default_flow), outputs)
    } else {
        grouped
    };
    let mut allocated = 0u64;
    let mut buffers = 0u64;
    let leads = placed
        .instances
        .iter()
        .map(OutputInstance::lead)
        .chain(error_output);
    for key in leads.filter(|key| is_buffered_now(outputs, key)) {
        let size = outputs
            .get(key)
            .and_then(|plan| plan.spec.buffer.as_ref())
            .and_then(|b| b.total_limit_size.as_deref())
            .and_then(fluentd_size_bytes)
            .unwrap_or(0);
        allocated = allocated.saturating_add(size.saturating_mul(workers));
        buffers += workers;
    }

    let budget = BufferBudget {
        volume,
        allocated,
        per_output_default,
        buffers,
    };
    (budget, problems, placed)
}

fn is_buffered_now(outputs: &BTreeMap<ObjectKey, OutputPlan>, key: &ObjectKey) -> bool {
    outputs.get(key).is_some_and(|plan| buffered(&plan.spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities_are_read_as_the_api_server_reads_them() {
        for (text, bytes) in [
            ("10Gi", Some(10 * GI)),
            ("20Gi", Some(20 * GI)),
            ("512Mi", Some(512 * MI)),
            ("1.5Gi", Some(3 * GI / 2)),
            ("10G", Some(10_000_000_000)),
            ("100k", Some(100_000)),
            ("1e3", Some(1000)),
            ("1E3", Some(1000)),
            ("2E", Some(2_000_000_000_000_000_000)),
            ("1500m", Some(2)),
            ("+5", Some(5)),
            (".5Ki", Some(512)),
            ("1Ei", Some(1 << 60)),
            ("20Ei", None),
            ("-1Gi", None),
            ("", None),
            (".", None),
            ("10GB", None),
            ("10 Gi", None),
            ("ten", None),
        ] {
            assert_eq!(quantity_bytes(text), bytes, "{text}");
        }
    }

    #[test]
    fn fluentd_sizes_use_powers_of_1024_in_either_case() {
        assert_eq!(fluentd_size_bytes("8m"), Some(8 * MI));
        assert_eq!(fluentd_size_bytes("2G"), Some(2 * GI));
        assert_eq!(fluentd_size_bytes("512"), Some(512));
        assert_eq!(fluentd_size_bytes("1.5g"), None);
        assert_eq!(fluentd_size(921 * MI), "921m");
        assert_eq!(fluentd_size(2 * GI), "2g");
        assert_eq!(fluentd_size(1000), "1000");
        assert_eq!(quantity(20 * GI), "20Gi");
        assert_eq!(quantity(1536 * MI), "1536Mi");
    }
}
