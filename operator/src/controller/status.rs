//! Status of every Sluice object: computed deterministically, with `lastTransitionTime`
//! kept unless a condition flips, and written only when it differs from what is stored.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::api::{
    BuffersStatus, CapacityStatus, CertificatesStatus, LoggingStatus, ObjectStatus, TlsMode,
};
use crate::layout::FIELD_MANAGER;
use crate::model::Problem;

pub use super::data_plane::Verdict as DataPlane;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
/// True while the object has warnings ([`crate::model::WARNING_REASONS`]): reported, but
/// nothing to fix, so they never set `Degraded` (Argo CD shows `Degraded` as unhealthy).
pub const WARNING: &str = "Warning";
pub const CERTIFICATES_READY: &str = "CertificatesReady";
pub const AGENT_READY: &str = "AgentReady";
pub const AGGREGATOR_READY: &str = "AggregatorReady";

/// One condition's value before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Whole seconds: what the API server stores, so a freshly computed time compares equal
/// with its stored copy.
fn seconds(now: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// A condition, keeping the previous `lastTransitionTime` when the status did not flip.
pub fn condition(
    type_: &str,
    verdict: &Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: jiff::Timestamp,
) -> Condition {
    let status = if verdict.ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(seconds(now)));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: verdict.reason.clone(),
        message: verdict.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Human-readable problem lines, sorted and deduplicated so the order never flaps.
pub fn problem_lines(problems: &[Problem]) -> Vec<String> {
    let mut lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// `Degraded`: the problems someone has to fix, warnings left out.
fn degraded_verdict(problems: &[Problem]) -> Verdict {
    let mut errors: Vec<Problem> = problems
        .iter()
        .filter(|p| !p.is_warning())
        .cloned()
        .collect();
    errors.sort();
    match errors.first() {
        Some(first) => Verdict::new(true, first.reason, problem_lines(&errors).join("; ")),
        None if problems.is_empty() => Verdict::new(false, "NoProblems", "no problems found"),
        None => Verdict::new(
            false,
            "NoProblems",
            "nothing to fix; see the Warning condition",
        ),
    }
}

/// `Warning`: the warnings alone.
fn warning_verdict(problems: &[Problem]) -> Verdict {
    let mut warnings: Vec<Problem> = problems
        .iter()
        .filter(|p| p.is_warning())
        .cloned()
        .collect();
    warnings.sort();
    match warnings.first() {
        Some(first) => Verdict::new(true, first.reason, problem_lines(&warnings).join("; ")),
        None => Verdict::new(false, "NoWarnings", "no warnings"),
    }
}

/// How a Flow, ClusterFlow, Output or ClusterOutput figures in the resolved pipelines. Only
/// admitted Loggings (`model::admit`) have pipelines, and each applies its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage<'a> {
    /// Part of the rendered configuration of these Loggings.
    InUse(&'a str),
    /// In no Logging's configuration; the text says why.
    Unused(&'a str),
    /// Its `loggingRef` names this Logging, which is refused and applies nothing.
    LoggingRefused(&'a str),
}

/// Reasons of a `Ready` False that only wait for something outside the object: it is valid,
/// and no Logging that applies anything renders it. Argo CD shows them as Suspended.
pub const NOT_RENDERED_REASONS: &[&str] = &["Unused", "LoggingRefused"];

/// `Ready` of a Flow, ClusterFlow, Output or ClusterOutput: True only when the data plane of
/// every applied Logging rendering it runs it at its current generation (`Running`: every
/// aggregator pod runs a revision holding it and, for a flow, the agents' routing table gives
/// it records). False while it is in the configuration but not running yet (`Pending`), when
/// its problems keep it out (the first problem's reason, such as `ConfigRejected` when the
/// aggregator refused a revision with it), and when no applied Logging renders it. Decided
/// here alone, so what "runs" means grows in one place.
fn object_ready(usage: Usage<'_>, data_plane: DataPlane, degraded: &Verdict) -> Verdict {
    match (usage, data_plane) {
        (Usage::InUse(loggings), DataPlane::Running) => Verdict::new(
            true,
            super::data_plane::RUNNING,
            format!(
                "running in Logging {loggings}: every aggregator replica runs a revision with this generation"
            ),
        ),
        (Usage::InUse(loggings), DataPlane::Pending) => Verdict::new(
            false,
            super::data_plane::PENDING,
            format!(
                "in the configuration of Logging {loggings}, not running yet: waiting until every aggregator replica runs a revision with this generation and, for a flow, the agents route records to it"
            ),
        ),
        (Usage::InUse(loggings), DataPlane::NotTracked) => Verdict::new(
            true,
            "Accepted",
            format!("included in the rendered configuration of Logging {loggings}"),
        ),
        _ if degraded.ok => Verdict::new(
            false,
            degraded.reason.as_str(),
            "left out of the rendered configuration; see Degraded",
        ),
        (Usage::Unused(why), _) => Verdict::new(false, "Unused", why),
        (Usage::LoggingRefused(logging), _) => Verdict::new(
            false,
            "LoggingRefused",
            format!(
                "valid, but its loggingRef names Logging {logging}, which is refused and applies nothing; see that Logging's status"
            ),
        ),
    }
}

/// Status of a Flow, ClusterFlow, Output or ClusterOutput. `Ready`: [`object_ready`].
/// `Degraded`: problems someone has to fix, whether they kept the object out or not (an
/// Output one of whose flows' outputs is missing still runs). `Warning`: warnings, such as
/// disabled certificate verification.
pub fn object_status(
    generation: Option<i64>,
    problems: &[Problem],
    usage: Usage<'_>,
    data_plane: DataPlane,
    previous: Option<&ObjectStatus>,
    now: jiff::Timestamp,
) -> ObjectStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let degraded = degraded_verdict(problems);
    let ready = object_ready(usage, data_plane, &degraded);
    let warning = warning_verdict(problems);
    ObjectStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, &ready, generation, previous_conditions, now),
            condition(DEGRADED, &degraded, generation, previous_conditions, now),
            condition(WARNING, &warning, generation, previous_conditions, now),
        ],
        problems: problem_lines(problems),
    }
}

/// What the Logging's status is computed from.
#[derive(Clone, Debug, Default)]
pub struct LoggingFacts<'a> {
    pub generation: Option<i64>,
    /// The Logging's own problems plus those of its TLS plan.
    pub problems: Vec<Problem>,
    /// False when the Logging is refused (`model::admit`) and nothing was built.
    pub built: bool,
    pub tls_mode: TlsMode,
    pub certificates: Option<CertificatesStatus>,
    pub agent: Option<&'a DynamicObject>,
    pub aggregator: Option<&'a DynamicObject>,
    pub watched_namespaces: Option<Vec<String>>,
    /// The buffer budget of the built pipeline (`model::limits`).
    pub buffers: Option<BuffersStatus>,
    pub capacity: Option<CapacityStatus>,
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

/// Whether the controller has caught up with the workload's latest spec.
fn observed_current(workload: &DynamicObject) -> bool {
    let observed = int(&workload.data, "/status/observedGeneration");
    observed.is_some() && observed >= workload.metadata.generation
}

/// `AgentReady` from the DaemonSet status: every scheduled pod updated and available.
pub fn agent_verdict(daemon_set: Option<&DynamicObject>) -> Verdict {
    let Some(ds) = daemon_set else {
        return Verdict::new(
            false,
            "NotCreated",
            "the agent DaemonSet does not exist yet",
        );
    };
    if !observed_current(ds) {
        return Verdict::new(
            false,
            "Progressing",
            "the DaemonSet controller has not observed the latest spec",
        );
    }
    let desired = int(&ds.data, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int(&ds.data, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(&ds.data, "/status/numberAvailable").unwrap_or(0);
    if desired == 0 {
        // No agent anywhere collects anything: not a state to call ready.
        return Verdict::new(
            false,
            "NoPodsScheduled",
            "the agent DaemonSet runs on no node: no node matches spec.agent.scheduling (nodeSelector, affinity, tolerations), or the cluster has none",
        );
    }
    if updated == desired && available == desired {
        Verdict::new(
            true,
            "AllPodsReady",
            format!("{available}/{desired} agent pods available"),
        )
    } else {
        Verdict::new(
            false,
            "PodsNotReady",
            format!("{available}/{desired} agent pods available, {updated} updated"),
        )
    }
}

/// `AggregatorReady` from the StatefulSet status: every replica updated and ready.
pub fn aggregator_verdict(stateful_set: Option<&DynamicObject>) -> Verdict {
    let Some(sts) = stateful_set else {
        return Verdict::new(
            false,
            "NotCreated",
            "the aggregator StatefulSet does not exist yet",
        );
    };
    if !observed_current(sts) {
        return Verdict::new(
            false,
            "Progressing",
            "the StatefulSet controller has not observed the latest spec",
        );
    }
    let wanted = int(&sts.data, "/spec/replicas")
        .or_else(|| int(&sts.data, "/status/replicas"))
        .unwrap_or(1);
    let ready = int(&sts.data, "/status/readyReplicas").unwrap_or(0);
    let updated = int(&sts.data, "/status/updatedReplicas").unwrap_or(0);
    let current = sts.data.pointer("/status/currentRevision");
    let update = sts.data.pointer("/status/updateRevision");
    if ready >= wanted && updated >= wanted && current == update {
        Verdict::new(
            true,
            "AllReplicasReady",
            format!("{ready}/{wanted} aggregator replicas ready"),
        )
    } else {
        Verdict::new(
            false,
            "ReplicasNotReady",
            format!("{ready}/{wanted} aggregator replicas ready, {updated} updated"),
        )
    }
}

fn certificates_verdict(facts: &LoggingFacts<'_>) -> Verdict {
    let tls_problem = facts
        .problems
        .iter()
        .find(|p| p.field.starts_with("spec.tls"));
    match (facts.tls_mode, tls_problem) {
        (TlsMode::Disabled, _) => Verdict::new(
            false,
            "TlsDisabled",
            "TLS is disabled: agents send records to the aggregator in plain text",
        ),
        (_, Some(problem)) => Verdict::new(false, problem.reason, problem.to_string()),
        (_, None)
            if facts
                .certificates
                .as_ref()
                .is_some_and(|c| c.server.is_some() && c.client.is_some()) =>
        {
            Verdict::new(
                true,
                "CertificatesValid",
                "TLS material is present and valid",
            )
        }
        (_, None) => Verdict::new(false, "NotIssued", "TLS material has not been issued yet"),
    }
}

/// The Logging's status.
pub fn logging_status(
    facts: &LoggingFacts<'_>,
    previous: Option<&LoggingStatus>,
    now: jiff::Timestamp,
) -> LoggingStatus {
    let previous_conditions = previous
        .map(|p| p.common.conditions.as_slice())
        .unwrap_or(&[]);
    let generation = facts.generation;
    let degraded = degraded_verdict(&facts.problems);
    let warning = warning_verdict(&facts.problems);
    let certificates = certificates_verdict(facts);
    let agent = agent_verdict(facts.agent);
    let aggregator = aggregator_verdict(facts.aggregator);
    let certificates_usable = certificates.ok || facts.tls_mode == TlsMode::Disabled;
    let ready = if !facts.built {
        Verdict::new(
            false,
            degraded.reason.as_str(),
            "the Logging is refused; nothing was applied (see Degraded)",
        )
    } else if !agent.ok {
        Verdict::new(false, "AgentNotReady", agent.message.clone())
    } else if !aggregator.ok {
        Verdict::new(false, "AggregatorNotReady", aggregator.message.clone())
    } else if !certificates_usable {
        Verdict::new(false, "CertificatesNotReady", certificates.message.clone())
    } else {
        Verdict::new(true, "PipelineReady", "agents and aggregator are running")
    };
    let mut conditions = vec![
        condition(READY, &ready, generation, previous_conditions, now),
        condition(DEGRADED, &degraded, generation, previous_conditions, now),
        condition(WARNING, &warning, generation, previous_conditions, now),
        condition(
            CERTIFICATES_READY,
            &certificates,
            generation,
            previous_conditions,
            now,
        ),
        condition(AGENT_READY, &agent, generation, previous_conditions, now),
        condition(
            AGGREGATOR_READY,
            &aggregator,
            generation,
            previous_conditions,
            now,
        ),
    ];
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    LoggingStatus {
        common: ObjectStatus {
            observed_generation: generation,
            conditions,
            problems: problem_lines(&facts.problems),
        },
        certificates: facts.certificates.clone(),
        watched_namespaces: facts.watched_namespaces.clone(),
        buffers: facts.buffers.clone(),
        capacity: facts.capacity.clone(),
    }
}

/// Writes a status with server-side apply under Sluice's field manager, so fields Sluice no
/// longer sets disappear.
pub async fn write<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    name: &str,
    status: &impl serde::Serialize,
) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()>,
{
    write_erased(
        client,
        &ApiResource::erase::<K>(&()),
        namespace,
        name,
        status,
    )
    .await
}

/// [`write`] for a kind known only at run time.
pub async fn write_erased(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    status: &impl serde::Serialize,
) -> kube::Result<()> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let body = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(reason: &'static str, field: &str) -> Problem {
        Problem {
            reason,
            field: field.to_owned(),
            message: "broken".to_owned(),
        }
    }

    #[test]
    fn the_logging_reports_its_buffer_budget() {
        use crate::model::limits::BufferBudget;
        let budget = BufferBudget {
            volume: 20 << 30,
            allocated: 18 << 30,
            per_output_default: 767 << 20,
            buffers: 20,
        };
        let facts = LoggingFacts {
            built: true,
            buffers: Some(budget.status()),
            ..LoggingFacts::default()
        };
        let status = logging_status(&facts, None, jiff::Timestamp::UNIX_EPOCH);
        let written = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(
            written.get("buffers"),
            Some(&serde_json::json!({
                "volume": "20Gi",
                "allocated": "18Gi",
                "perOutputDefault": "767Mi",
                "buffers": 20,
            }))
        );
    }

    #[test]
    fn transition_time_is_kept_until_the_status_flips() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap_or_default();
        let t1 = jiff::Timestamp::from_second(2_000).unwrap_or_default();
        let used = Usage::InUse("main");
        let first = object_status(Some(1), &[], used, DataPlane::Running, None, t0);
        let again = object_status(Some(1), &[], used, DataPlane::Running, Some(&first), t1);
        assert_eq!(first, again);
        let broken = object_status(
            Some(2),
            &[problem("OutputNotFound", "spec.x")],
            Usage::Unused("left out"),
            DataPlane::NotTracked,
            Some(&again),
            t1,
        );
        let ready = broken.conditions.iter().find(|c| c.type_ == READY);
        assert_eq!(ready.map(|c| c.status.as_str()), Some("False"));
        assert_eq!(ready.map(|c| c.last_transition_time.0), Some(t1));
        assert_eq!(broken.problems, vec!["spec.x: broken".to_owned()]);
    }

    #[test]
    fn degraded_reason_is_the_first_problem_in_order() {
        let status = object_status(
            None,
            &[problem("Zeta", "spec.b"), problem("Alpha", "spec.a")],
            Usage::InUse("main"),
            DataPlane::Running,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        let degraded = status.conditions.iter().find(|c| c.type_ == DEGRADED);
        assert_eq!(degraded.map(|c| c.reason.as_str()), Some("Alpha"));
        assert_eq!(degraded.map(|c| c.status.as_str()), Some("True"));
        // A problem on an object still in use (one of a flow's outputs is missing): it runs,
        // and someone has to fix it.
        let ready = status.conditions.iter().find(|c| c.type_ == READY);
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
    }

    fn find<'a>(status: &'a ObjectStatus, type_: &str) -> (&'a str, &'a str) {
        let found = status.conditions.iter().find(|c| c.type_ == type_);
        found.map_or(("", ""), |c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn warnings_leave_degraded_false_and_set_warning() {
        let status = object_status(
            Some(1),
            &[problem("TlsVerificationDisabled", "spec.http.tls")],
            Usage::InUse("main"),
            DataPlane::NotTracked,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(find(&status, READY), ("True", "Accepted"));
        assert_eq!(find(&status, DEGRADED), ("False", "NoProblems"));
        assert_eq!(find(&status, WARNING), ("True", "TlsVerificationDisabled"));
        assert_eq!(status.problems, vec!["spec.http.tls: broken".to_owned()]);

        let both = object_status(
            Some(1),
            &[
                problem("TlsVerificationDisabled", "spec.http.tls"),
                problem("OutputNotFound", "spec.x"),
            ],
            Usage::InUse("main"),
            DataPlane::NotTracked,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(find(&both, DEGRADED), ("True", "OutputNotFound"));
        assert_eq!(find(&both, WARNING), ("True", "TlsVerificationDisabled"));
    }

    #[test]
    fn a_logging_with_tls_disabled_is_not_degraded() {
        let facts = LoggingFacts {
            built: true,
            tls_mode: TlsMode::Disabled,
            problems: vec![problem("TlsDisabled", "spec.tls.mode")],
            ..LoggingFacts::default()
        };
        let status = logging_status(&facts, None, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status.common, DEGRADED), ("False", "NoProblems"));
        assert_eq!(find(&status.common, WARNING), ("True", "TlsDisabled"));
    }

    #[test]
    fn objects_no_applied_logging_renders_are_not_ready_and_say_why() {
        let unused = object_status(
            Some(1),
            &[],
            Usage::Unused("no flow sends records to it"),
            DataPlane::NotTracked,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(find(&unused, READY), ("False", "Unused"));
        assert_eq!(find(&unused, DEGRADED), ("False", "NoProblems"));
        let refused = object_status(
            Some(1),
            &[],
            Usage::LoggingRefused("other"),
            DataPlane::NotTracked,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(find(&refused, READY), ("False", "LoggingRefused"));
        for status in [&unused, &refused] {
            let reason = find(status, READY).1;
            assert!(NOT_RENDERED_REASONS.contains(&reason), "{reason}");
        }
    }

    #[test]
    fn workloads_are_ready_only_when_caught_up() {
        let ds: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "a", "generation": 2},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 2}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!agent_verdict(Some(&ds)).ok);
        let mut caught_up = ds.clone();
        caught_up.data["status"]["observedGeneration"] = 2.into();
        assert!(agent_verdict(Some(&caught_up)).ok);
        assert!(!agent_verdict(None).ok);
        // Scheduled on no node: 0 of 0 is not ready.
        let mut nowhere = caught_up.clone();
        for field in [
            "desiredNumberScheduled",
            "updatedNumberScheduled",
            "numberAvailable",
        ] {
            nowhere.data["status"][field] = 0.into();
        }
        let verdict = agent_verdict(Some(&nowhere));
        assert!(!verdict.ok);
        assert_eq!(verdict.reason, "NoPodsScheduled");
    }
}
