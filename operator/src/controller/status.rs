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

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
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

fn problems_verdict(problems: &[Problem]) -> Verdict {
    let mut sorted = problems.to_vec();
    sorted.sort();
    match sorted.first() {
        None => Verdict::new(false, "NoProblems", "no problems found"),
        Some(first) => Verdict::new(true, first.reason, problem_lines(&sorted).join("; ")),
    }
}

/// How a Flow, ClusterFlow, Output or ClusterOutput figures in the resolved pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage<'a> {
    /// Part of the rendered configuration of these Loggings.
    InUse(&'a str),
    /// Valid, but nothing uses it; the text says why.
    Unused(&'a str),
}

/// Status of a Flow, ClusterFlow, Output or ClusterOutput. `Ready` says whether it is
/// usable: in the rendered configuration, or valid but unused; it is False only when its
/// problems kept it out. `Degraded` lists every problem, including warnings on objects that
/// are still in use (such as disabled certificate verification).
pub fn object_status(
    generation: Option<i64>,
    problems: &[Problem],
    usage: Usage<'_>,
    previous: Option<&ObjectStatus>,
    now: jiff::Timestamp,
) -> ObjectStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let degraded = problems_verdict(problems);
    let ready = match usage {
        Usage::InUse(loggings) => Verdict::new(
            true,
            "Accepted",
            format!("included in the rendered configuration of Logging {loggings}"),
        ),
        Usage::Unused(why) if problems.is_empty() => Verdict::new(true, "Unused", why),
        Usage::Unused(_) => Verdict::new(
            false,
            degraded.reason.as_str(),
            "left out of the rendered configuration; see Degraded",
        ),
    };
    ObjectStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, &ready, generation, previous_conditions, now),
            condition(DEGRADED, &degraded, generation, previous_conditions, now),
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
    /// False when the Logging is invalid and nothing was built.
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
    let degraded = problems_verdict(&facts.problems);
    let certificates = certificates_verdict(facts);
    let agent = agent_verdict(facts.agent);
    let aggregator = aggregator_verdict(facts.aggregator);
    let certificates_usable = certificates.ok || facts.tls_mode == TlsMode::Disabled;
    let ready = if !facts.built {
        Verdict::new(
            false,
            degraded.reason.as_str(),
            "the Logging is invalid; nothing was applied",
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
        let first = object_status(Some(1), &[], used, None, t0);
        let again = object_status(Some(1), &[], used, Some(&first), t1);
        assert_eq!(first, again);
        let broken = object_status(
            Some(2),
            &[problem("OutputNotFound", "spec.x")],
            Usage::Unused("left out"),
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
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        let degraded = status.conditions.iter().find(|c| c.type_ == DEGRADED);
        assert_eq!(degraded.map(|c| c.reason.as_str()), Some("Alpha"));
        assert_eq!(degraded.map(|c| c.status.as_str()), Some("True"));
        // A warning on an object still in use: Degraded, yet Ready.
        let ready = status.conditions.iter().find(|c| c.type_ == READY);
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
    }

    #[test]
    fn valid_but_unused_objects_are_ready_and_say_why() {
        let status = object_status(
            Some(1),
            &[],
            Usage::Unused("no flow sends records to it"),
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        let ready = status.conditions.iter().find(|c| c.type_ == READY);
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
        assert_eq!(ready.map(|c| c.reason.as_str()), Some("Unused"));
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
    }
}
