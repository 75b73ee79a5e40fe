//! One reconcile of one Logging: resolve → plan TLS → build → apply → delete orphans →
//! status, then the status of every Flow, ClusterFlow, Output and ClusterOutput.
//!
//! The configuration never waits for object statuses: the reconcile only queues the ones
//! that changed, and the status writer ([`super::status_writer`]) writes them apart from
//! it, holding back while any reconcile applies configuration.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet};
use kube::api::{ApiResource, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::apply;
use super::context::{Context, CurrentStatuses, Error};
use super::data_plane;
use super::events::reference;
use super::inventory;
use super::rollout::{self, ConfigRollout};
use super::status::{self, LoggingFacts};
use super::status_writer::{PendingStatus, StatusWriter};
use crate::api::{ClusterFlow, ClusterOutput, Flow, Logging, Output};
use crate::build::{Child, ChildKind};
use crate::model::{Kind, ObjectKey, Pipeline, Problem, Resolution};
use crate::pki::{PkiPlan, PkiRequest, Rollout};
use crate::routing::Watched;

/// Entry point for the kube-runtime Controller.
pub async fn reconcile(
    logging: Arc<DeserializeGuard<Logging>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = logging.name_any();
    let span = tracing::info_span!("reconcile", kind = "Logging", name = %name);
    let started = Instant::now();
    // Counted when it starts, so a long reconcile shows in the metrics while it runs.
    ctx.metrics.reconcile_started("Logging");
    let result = reconcile_logging(&logging, &ctx)
        .instrument(span.clone())
        .await;
    StatusWriter::start(&ctx);
    let elapsed = started.elapsed();
    let uid = logging.uid().unwrap_or_default();
    let result = match result {
        Ok((action, summary)) => {
            ctx.memory().failures.remove(&uid);
            let outcome = if summary.changed() {
                "changed"
            } else {
                "unchanged"
            };
            ctx.metrics.reconciled("Logging", outcome, elapsed);
            let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            // At rest nothing is logged at info: only reconciles that wrote something.
            span.in_scope(|| {
                if summary.changed() {
                    tracing::info!(
                        applied = summary.applied,
                        deleted = summary.deleted,
                        logging_status = summary.logging_status,
                        statuses_queued = summary.statuses_queued,
                        resolve_ms = summary.resolve_ms,
                        build_ms = summary.build_ms,
                        apply_ms = summary.apply_ms,
                        config_ms = summary.config_ms,
                        rollout_ms = summary.rollout_ms,
                        candidate_ms = summary.candidate_ms,
                        statuses_ms = summary.statuses_ms,
                        millis,
                        "reconciled"
                    );
                } else {
                    tracing::debug!(?action, millis, "reconciled; nothing changed");
                }
            });
            Ok(action)
        }
        Err(error) => Err(error),
    };
    match &result {
        Ok(_) => {}
        Err(error) => {
            ctx.metrics.reconciled("Logging", "error", elapsed);
            ctx.metrics.failed("Logging", error.category());
            span.in_scope(
                || tracing::warn!(%error, category = error.category(), "reconcile failed"),
            );
            let key = ObjectKey::cluster(Kind::Logging, &name);
            ctx.events
                .warning(
                    &reference(&key, logging.uid()),
                    error.category(),
                    "Reconcile",
                    error.to_string(),
                )
                .await;
        }
    }
    result
}

/// Per-Logging exponential backoff: kube-runtime has none of its own.
pub fn error_policy(
    logging: Arc<DeserializeGuard<Logging>>,
    _error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let uid = logging.uid().unwrap_or_default();
    let failures = {
        let mut memory = ctx.memory();
        let count = memory.failures.entry(uid).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    Action::requeue(backoff(&ctx, failures))
}

/// How long to wait after the `failures`th failure in a row: `--error-backoff` doubling.
pub(crate) fn backoff(ctx: &Context, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    ctx.settings
        .error_backoff_min
        .saturating_mul(factor)
        .min(ctx.settings.error_backoff_max)
}

/// How long until `next`, at least a second so a plan due now cannot spin.
fn until(next: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let seconds = next.as_second().saturating_sub(now.as_second()).max(1);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(1))
}

/// What one reconcile wrote, for its log line and outcome label.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// Children created, updated or re-created.
    applied: usize,
    deleted: usize,
    logging_status: bool,
    /// Object statuses queued for the status writer.
    statuses_queued: usize,
    /// Milliseconds spent resolving, building, and applying and deleting children, and from
    /// the start until the configuration was applied (what an edit waits for).
    resolve_ms: u64,
    build_ms: u64,
    apply_ms: u64,
    config_ms: u64,
    /// Milliseconds spent on the rollout after the apply (the data plane's bookkeeping,
    /// promotion, asking the reloaders), the bookkeeping's part of it, and on queueing object
    /// statuses.
    rollout_ms: u64,
    candidate_ms: u64,
    statuses_ms: u64,
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Summary {
    fn changed(&self) -> bool {
        self.applied > 0 || self.deleted > 0 || self.logging_status || self.statuses_queued > 0
    }
}

async fn reconcile_logging(
    guard: &DeserializeGuard<Logging>,
    ctx: &Context,
) -> Result<(Action, Summary), Error> {
    // Taken before the caches are read: a change after this point triggers a reconcile of
    // its own. Status writes wait until the configuration is applied.
    let config_phase = ctx.status_writer.config_phase();
    let started = Instant::now();
    let change_arrived = ctx.trigger.take_oldest();
    let mut summary = Summary::default();
    let logging = match &guard.0 {
        Ok(logging) => logging,
        Err(invalid) => {
            // The schema should make this impossible; if it happens, say so and wait for an edit.
            tracing::warn!(error = %invalid.error, "Logging does not match the schema; skipped");
            return Ok((Action::await_change(), summary));
        }
    };
    let name = logging.name_any();
    let now = (ctx.clock)();
    let snapshot = inventory::Snapshot::take(ctx);
    let mut inventory = snapshot.inventory(ctx);
    let wanted = inventory::referenced_secrets(&inventory);
    let user_secrets = inventory::read_user_secrets(ctx, &wanted, &inventory.secrets, now).await;
    inventory::forget_unreferenced(ctx, &wanted);
    inventory.secrets.extend(user_secrets.secrets);
    inventory.secret_errors = user_secrets.errors;
    let mut resolution = (ctx.cores.resolve)(&inventory);
    summary.resolve_ms = millis_since(started);
    let key = ObjectKey::cluster(Kind::Logging, &name);
    let mut problems = resolution.problems.get(&key).cloned().unwrap_or_default();
    let mut requeue = ctx.settings.resync;

    let mut facts = LoggingFacts {
        generation: logging.metadata.generation,
        tls_mode: logging.spec.tls_or_default().mode.unwrap_or_default(),
        ..LoggingFacts::default()
    };
    let mut workloads: (Option<Arc<DynamicObject>>, Option<Arc<DynamicObject>>) = (None, None);
    let mut overflowed = Vec::new();
    let mut certificates_changed = false;
    // No pipeline: the model refused the Logging (`model::admit`) and its problems say why.
    let pipeline = resolution.pipelines.iter().find(|p| p.logging == name);
    if let Some(pipeline) = pipeline {
        let existing = inventory::secrets_in(&pipeline.names.control_namespace, &inventory.secrets);
        let rollout = Rollout::Observed {
            settled_tls_hash: settled_tls_hash(ctx, pipeline),
        };
        let plan = plan_pki(ctx, pipeline, existing, rollout, now).await?;
        problems.extend(plan.problems.iter().cloned());
        if let Some(next) = plan.next_change {
            requeue = requeue.min(until(next, now));
        }
        let building = Instant::now();
        let mut children = (ctx.cores.build)(pipeline, &plan)?;
        summary.build_ms = millis_since(building);
        overflowed = overflowed_flows(pipeline, &children);
        rollout::number_candidate(ctx, pipeline, &mut children);
        if let Some(recheck) = rollout::gate_scale_in(ctx, pipeline, &mut children).await {
            requeue = requeue.min(recheck);
        }
        let mut answers = rollout::Answers::default();
        let routes = rollout::gate_routes(ctx, pipeline, &mut children, &mut answers).await?;
        if !routes.withheld.is_empty() && routes.reachable {
            requeue = requeue.min(rollout::PENDING_RECHECK);
        }
        let applying = Instant::now();
        let applied = apply::apply_children(ctx, &children).await?;
        for (kind, child, message) in &applied.rejected {
            problems.push(Problem {
                reason: "ApplyRejected",
                field: "spec".to_owned(),
                message: format!("the API server rejected {kind:?} {child}: {message}"),
            });
        }
        let deleted = apply::delete_orphans(ctx, &name, &children).await?;
        if let Some(arrived) = change_arrived {
            ctx.metrics.edit_to_config(arrived.elapsed());
        }
        summary.apply_ms = millis_since(applying);
        summary.config_ms = millis_since(started);
        drop(config_phase);
        summary.applied = applied.created.len() + applied.updated.len() + applied.recreated.len();
        summary.deleted = deleted.len();
        record_config_metrics(ctx, pipeline, &children);
        announce_changes(ctx, logging, &applied, &deleted).await;
        let rolling_out = Instant::now();
        // After the apply, not before: an edit waits for nothing but its configuration. No
        // pod can report the candidate before it is applied, and nothing reads what runs
        // before the rollout below.
        data_plane::record_candidate(ctx, &inventory, pipeline, &children);
        for component in [
            crate::layout::AGENT_COMPONENT,
            crate::layout::AGGREGATOR_COMPONENT,
        ] {
            rollout::remember_candidate(ctx, pipeline, component, &children);
        }
        summary.candidate_ms = millis_since(rolling_out);
        if leave_to_next(ctx, &name) {
            summary.rollout_ms = millis_since(rolling_out);
            return Ok((Action::requeue(requeue), summary));
        }
        for component in [
            crate::layout::AGENT_COMPONENT,
            crate::layout::AGGREGATOR_COMPONENT,
        ] {
            match rollout::advance(ctx, pipeline, component, &children, &mut answers).await? {
                ConfigRollout::Settled | ConfigRollout::Promoted => {}
                ConfigRollout::Pending { reachable } => {
                    // Pods are judging it: look again soon. None answered (none running, or
                    // the operator runs outside the cluster): the resync period will do.
                    if reachable {
                        requeue = requeue.min(rollout::PENDING_RECHECK);
                    }
                }
                ConfigRollout::Rejected { revision, error } => {
                    let mut blamed = rollout::blamed(pipeline, &error);
                    if blamed.is_empty() && component == crate::layout::AGGREGATOR_COMPONENT {
                        // The error names no Sluice id: every object the rejected revision
                        // added or changed compared to what runs is suspect, and left out
                        // until edited, so nothing of the rejected revision runs anywhere.
                        blamed = data_plane::unconfirmed(ctx, &pipeline.logging);
                    }
                    if !blamed.is_empty() {
                        rollout::remember_blame(ctx, &blamed, &error);
                        // The next resolve leaves them out, so everyone else's changes go on.
                        requeue = requeue.min(rollout::PENDING_RECHECK);
                    }
                    problems.push(rollout::rejection_problem(component, &revision, &error));
                }
            }
        }
        if let Some(recheck) = data_plane::observe(ctx, pipeline, &routes, &mut answers).await {
            // Pods are catching up: their status changes the objects' Ready.
            requeue = requeue.min(recheck);
        }
        summary.rollout_ms = millis_since(rolling_out);
        certificates_changed = serials_changed(logging, &plan);
        facts.built = true;
        facts.certificates = Some(plan.certificates.clone());
        facts.buffers = Some(pipeline.buffers.status());
        facts.capacity = Some(pipeline.capacity.status());
        facts.watched_namespaces = match &pipeline.watched {
            Watched::All => None,
            Watched::Only(set) => Some(set.iter().cloned().collect()),
        };
        workloads = (
            find_child(ctx, ChildKind::DaemonSet, pipeline, &pipeline.names.agent()),
            find_child(
                ctx,
                ChildKind::StatefulSet,
                pipeline,
                &pipeline.names.aggregator(),
            ),
        );
        if let Some(certificates) = &facts.certificates {
            record_certificate_metrics(ctx, &name, certificates);
        }
    }
    leave_out_overflowed(&mut resolution, &name, &overflowed);
    facts.problems = problems;
    facts.agent = workloads.0.as_deref();
    facts.aggregator = workloads.1.as_deref();
    let computed = status::logging_status(&facts, logging.status.as_ref(), now);
    ctx.events
        .problems(
            &key,
            logging.uid(),
            &facts.problems,
            logging
                .status
                .as_ref()
                .map(|s| s.common.problems.as_slice())
                .unwrap_or(&[]),
        )
        .await;
    if certificates_changed {
        ctx.events
            .normal(
                &reference(&key, logging.uid()),
                "CertificatesRotated",
                "Rotate",
                "new TLS material issued; pods roll to pick it up".to_owned(),
            )
            .await;
    }
    if logging.status.as_ref() != Some(&computed) && !already_written(ctx, logging.uid(), &computed)
    {
        status::write::<Logging>(&ctx.client, None, &name, &computed)
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source: Box::new(source),
            })?;
        ctx.metrics.wrote("status", "Logging");
        remember_written(ctx, logging.uid(), &computed);
        summary.logging_status = true;
    }
    if leave_to_next(ctx, &name) {
        return Ok((Action::requeue(requeue), summary));
    }
    let queueing = Instant::now();
    summary.statuses_queued = queue_object_statuses(ctx, &snapshot, &resolution, now).await;
    summary.statuses_ms = millis_since(queueing);
    followed_through(ctx, &name);
    Ok((Action::requeue(requeue), summary))
}

/// How long reconciles may leave the rollout and the statuses to the next one while
/// configuration changes keep arriving.
const FOLLOW_THROUGH_WITHIN: Duration = Duration::from_secs(5);

/// Whether a reconcile that has applied its configuration ends there, leaving the rollout
/// (asking the pods, promoting, confirming what runs), the Logging's status and the object
/// statuses to the reconcile that starts right after it: a configuration change arrived
/// meanwhile, that reconcile redoes all of it from newer caches, and the change would
/// otherwise wait behind work about to be redone (at 10,000 flows a quarter to half a
/// second). Asked again before the object statuses, for a change arriving during the
/// rollout.
fn leave_to_next(ctx: &Context, logging: &str) -> bool {
    let change_waiting = ctx.trigger.waiting();
    may_leave_to_next(
        change_waiting,
        &ctx.memory().followed_through_at,
        logging,
        Instant::now(),
    )
}

/// Notes that the reconcile of `logging` did the rollout and the statuses. Older notes say
/// nothing any more ([`may_leave_to_next`]) and go, so Loggings deleted leave nothing behind.
fn followed_through(ctx: &Context, logging: &str) {
    let now = Instant::now();
    let mut memory = ctx.memory();
    memory
        .followed_through_at
        .retain(|_, at| now.saturating_duration_since(*at) < FOLLOW_THROUGH_WITHIN);
    memory.followed_through_at.insert(logging.to_owned(), now);
}

/// Only while this Logging's reconcile did all of it within [`FOLLOW_THROUGH_WITHIN`], so its
/// rollout and the statuses still progress while changes keep coming. Per Logging: the
/// rollout is one Logging's, and another Logging's reconciles following through must not
/// keep deferring it.
fn may_leave_to_next(
    change_waiting: bool,
    followed_through_at: &HashMap<String, Instant>,
    logging: &str,
    now: Instant,
) -> bool {
    change_waiting
        && followed_through_at
            .get(logging)
            .is_some_and(|at| now.saturating_duration_since(*at) < FOLLOW_THROUGH_WITHIN)
}

/// Runs the PKI planner on a blocking thread: key generation can take a while.
async fn plan_pki(
    ctx: &Context,
    pipeline: &Pipeline,
    existing: std::collections::BTreeMap<String, k8s_openapi::api::core::v1::Secret>,
    rollout: Rollout,
    now: jiff::Timestamp,
) -> Result<PkiPlan, Error> {
    let names = pipeline.names.clone();
    let tls = pipeline.spec.tls_or_default();
    let plan = ctx.cores.plan.clone();
    tokio::task::spawn_blocking(move || {
        plan(&PkiRequest {
            names: &names,
            tls: &tls,
            now,
            existing: &existing,
            rollout,
        })
    })
    .await
    .map_err(|e| Error::Pki(e.to_string()))?
    .map_err(|e| Error::Pki(e.to_string()))
}

/// The TLS hash every agent and aggregator pod runs with, once both workloads have fully
/// rolled out to the same one.
fn settled_tls_hash(ctx: &Context, pipeline: &Pipeline) -> Option<String> {
    let agent = find_child(ctx, ChildKind::DaemonSet, pipeline, &pipeline.names.agent())?;
    let aggregator = find_child(
        ctx,
        ChildKind::StatefulSet,
        pipeline,
        &pipeline.names.aggregator(),
    )?;
    if !status::agent_verdict(Some(&agent)).ok || !status::aggregator_verdict(Some(&aggregator)).ok
    {
        return None;
    }
    let tls_hash = |workload: &DynamicObject| {
        workload
            .data
            .pointer("/spec/template/metadata/annotations")
            .and_then(|annotations| annotations.get(crate::layout::TLS_HASH_ANNOTATION))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let hash = tls_hash(&agent)?;
    (tls_hash(&aggregator)? == hash).then_some(hash)
}

fn find_child(
    ctx: &Context,
    kind: ChildKind,
    pipeline: &Pipeline,
    name: &str,
) -> Option<Arc<DynamicObject>> {
    ctx.stores.children_of(kind).into_iter().find(|o| {
        o.namespace().as_deref() == Some(pipeline.names.control_namespace.as_str())
            && o.name_any() == name
    })
}

/// Whether the plan replaces a certificate the stored status knew (a renewal or rotation).
fn serials_changed(logging: &Logging, plan: &PkiPlan) -> bool {
    let Some(before) = logging
        .status
        .as_ref()
        .and_then(|s| s.certificates.as_ref())
    else {
        return false;
    };
    let after = &plan.certificates;
    let serial = |c: &Option<crate::api::CertificateInfo>| c.as_ref().map(|c| c.serial.clone());
    [
        (&before.ca, &after.ca),
        (&before.server, &after.server),
        (&before.client, &after.client),
    ]
    .iter()
    .any(|(b, a)| serial(b).is_some() && serial(a).is_some() && serial(b) != serial(a))
}

async fn announce_changes(
    ctx: &Context,
    logging: &Logging,
    applied: &apply::Applied,
    deleted: &[(ChildKind, String)],
) {
    let key = ObjectKey::cluster(Kind::Logging, &logging.name_any());
    let reference = reference(&key, logging.uid());
    let list = |items: &[(ChildKind, String)]| {
        items
            .iter()
            .map(|(kind, name)| format!("{kind:?} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !applied.created.is_empty() {
        ctx.events
            .normal(
                &reference,
                "Created",
                "Apply",
                format!("created {}", list(&applied.created)),
            )
            .await;
    }
    for (kind, name) in &applied.recreated {
        ctx.events
            .normal(
                &reference,
                "WorkloadRecreated",
                "Recreate",
                format!(
                    "{kind:?} {name} was deleted and re-created because an immutable field changed; its PersistentVolumeClaims were kept"
                ),
            )
            .await;
    }
    if !deleted.is_empty() {
        ctx.events
            .normal(
                &reference,
                "DeletedUnused",
                "Delete",
                format!("deleted {}", list(deleted)),
            )
            .await;
    }
}

/// Flows a full config slot left out: of the aggregator's configuration or of the agents'
/// routing table. Rendering again is needed to know which, so it is done only when some slot
/// Secret is at least half full (at 10,000 simple flows aggregator slots hold about a
/// quarter of the budget, routing slots a fortieth).
fn overflowed_flows(pipeline: &Pipeline, children: &[Child]) -> Vec<ObjectKey> {
    use crate::render::edge::{ROUTES_SLOT_BUDGET, flow_route};
    use crate::render::fluentd::{SLOT_BUDGET, flow_label};
    let names = &pipeline.names;
    let aggregator_slots = names.candidate_bundle_secrets(crate::layout::AGGREGATOR_COMPONENT);
    let routing_slots = names.agent_routes_secrets();
    let crowded = |slots: &[String], budget: usize| {
        children.iter().any(|child| {
            child.kind == ChildKind::Secret
                && child
                    .object
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|name| slots.contains(name))
                && base64_data_size(&child.object) / 4 * 3 > budget / 2
        })
    };
    let mut overflowed = Vec::new();
    if crowded(&aggregator_slots, SLOT_BUDGET) {
        overflowed = crate::render::aggregator(pipeline).overflowed;
    }
    if crowded(&routing_slots, ROUTES_SLOT_BUDGET) {
        // The agents' table is built without the flows the aggregator left out (build::objects).
        let left_out: std::collections::BTreeSet<String> = overflowed
            .iter()
            .map(|key| flow_route(&flow_label(key)).to_owned())
            .collect();
        let emits = |route: &str| !left_out.contains(route);
        let table =
            crate::render::edge::routes_table_emitting(pipeline, &emits, ROUTES_SLOT_BUDGET);
        overflowed.extend(table.overflowed);
    }
    overflowed
}

/// Bytes of a Secret's base64 `data` values, read off the built object without serialising
/// it (every slot of a 10,000-flow Logging, on every reconcile).
fn base64_data_size(secret: &DynamicObject) -> usize {
    secret
        .data
        .get("data")
        .and_then(serde_json::Value::as_object)
        .map_or(0, |files| {
            files
                .values()
                .filter_map(serde_json::Value::as_str)
                .map(str::len)
                .sum()
        })
}

/// A flow its full slot left out is not part of the Logging's configuration: its status says
/// so, and only it is degraded.
fn leave_out_overflowed(resolution: &mut Resolution, logging: &str, overflowed: &[ObjectKey]) {
    if overflowed.is_empty() {
        return;
    }
    for pipeline in resolution
        .pipelines
        .iter_mut()
        .filter(|p| p.logging == logging)
    {
        pipeline
            .flows
            .retain(|flow| !overflowed.contains(&flow.key));
    }
    for key in overflowed {
        // First: being left out outweighs whatever else is wrong with the flow.
        resolution.problems.entry(key.clone()).or_default().insert(0, Problem {
            reason: "ConfigSlotFull",
            field: "spec".to_owned(),
            message: format!(
                "left out of Logging {logging}: its share of the configuration (slot {} of the aggregator's configuration or of the agents' routing table) is full",
                crate::render::fluentd::config_slot(key)
            ),
        });
    }
}

/// Bytes a padded base64 text decodes to, without decoding it.
fn decoded_len(encoded: &str) -> usize {
    let padding = encoded
        .bytes()
        .rev()
        .take_while(|b| *b == b'=')
        .count()
        .min(2);
    (encoded.len() / 4 * 3).saturating_sub(padding)
}

/// The rendered size of each component's configuration, read off the built Secrets without
/// decoding them (megabytes at 10,000 flows, on every reconcile).
fn record_config_metrics(ctx: &Context, pipeline: &Pipeline, children: &[Child]) {
    let size = |name: &str| -> Option<usize> {
        let child = children
            .iter()
            .find(|c| c.kind == ChildKind::Secret && c.object.name_any() == name)?;
        let data = child.object.data.get("data")?.as_object()?;
        Some(
            data.values()
                .filter_map(|v| v.as_str())
                .map(decoded_len)
                .sum(),
        )
    };
    let names = &pipeline.names;
    ctx.metrics.config(
        &names.logging,
        "agent",
        size(&names.agent_config_secret()).unwrap_or(0),
    );
    let bytes = names
        .candidate_bundle_secrets(crate::layout::AGGREGATOR_COMPONENT)
        .iter()
        .filter_map(|name| size(name))
        .sum();
    ctx.metrics.config(&names.logging, "aggregator", bytes);
}

fn record_certificate_metrics(
    ctx: &Context,
    logging: &str,
    certificates: &crate::api::CertificatesStatus,
) {
    for (which, info) in [
        ("ca", &certificates.ca),
        ("server", &certificates.server),
        ("client", &certificates.client),
    ] {
        if let Some(not_after) = info
            .as_ref()
            .and_then(|i| i.not_after.parse::<jiff::Timestamp>().ok())
        {
            ctx.metrics.certificate(logging, which, not_after);
        }
    }
}

fn already_written(ctx: &Context, uid: Option<String>, status: &impl serde::Serialize) -> bool {
    let Some(uid) = uid else {
        return false;
    };
    ctx.memory().written_status.get(&uid) == Some(&apply::json_hash(status))
}

pub(crate) fn remember_written(ctx: &Context, uid: Option<String>, status: &impl serde::Serialize) {
    if let Some(uid) = uid {
        ctx.memory()
            .written_status
            .insert(uid, apply::json_hash(status));
    }
}

/// Queues the status of every Flow, ClusterFlow, Output and ClusterOutput whose computed
/// status differs from the stored one, and announces new problems. Answers how many were
/// queued.
async fn queue_object_statuses(
    ctx: &Context,
    snapshot: &inventory::Snapshot,
    resolution: &Resolution,
    now: jiff::Timestamp,
) -> usize {
    let mut current = ctx.object_statuses.lock().await;
    for (kind, invalid) in inventory::malformed(ctx) {
        let name = invalid.metadata.name.clone().unwrap_or_default();
        let key = match &invalid.metadata.namespace {
            Some(ns) => ObjectKey::namespaced(kind, ns, &name),
            None => ObjectKey::cluster(kind, &name),
        };
        let problem = Problem {
            reason: "InvalidObject",
            field: "spec".to_owned(),
            message: format!(
                "does not match the Sluice schema and is ignored: {}",
                invalid.error
            ),
        };
        ctx.events
            .problems(&key, invalid.metadata.uid.clone(), &[problem], &[])
            .await;
    }
    let users = users_by_object(resolution);
    let admitted: HashSet<&str> = resolution
        .pipelines
        .iter()
        .map(|p| p.logging.as_str())
        .collect();
    let stores = &ctx.stores;
    let mut pass = StatusPass {
        ctx,
        resolution,
        users: &users,
        admitted: &admitted,
        now,
        current: &mut current,
        pending: Vec::new(),
        withdrawn: Vec::new(),
        visited: 0,
    };
    // The objects `resolution` was resolved from, not the caches' by now: an object created
    // since is in no pipeline yet and would read as unused, an edit as resolved.
    pass.kind::<Flow>(Kind::Flow, &snapshot.flows).await;
    pass.kind::<ClusterFlow>(Kind::ClusterFlow, &snapshot.cluster_flows)
        .await;
    pass.kind::<Output>(Kind::Output, &snapshot.outputs).await;
    pass.kind::<ClusterOutput>(Kind::ClusterOutput, &snapshot.cluster_outputs)
        .await;
    let (pending, withdrawn, visited) = (pass.pending, pass.withdrawn, pass.visited);
    current.prune(visited, || stores.object_uids());
    drop(current);
    let queued = pending.len();
    let mut queue = ctx.status_writer.queue();
    for key in withdrawn {
        queue.withdraw(&key);
    }
    for status in pending {
        queue.want(status);
    }
    ctx.metrics.status_pending(queue.pending());
    queued
}

/// For every object in a rendered configuration, the Loggings that include it,
/// comma-separated. Built once per reconcile: asking each of 10,000 flows whether every
/// pipeline holds it would be quadratic.
fn users_by_object(resolution: &Resolution) -> HashMap<&ObjectKey, Cow<'_, str>> {
    let objects = resolution
        .pipelines
        .iter()
        .map(|p| p.flows.len() + p.outputs.len())
        .sum();
    let mut users: HashMap<&ObjectKey, Cow<'_, str>> = HashMap::with_capacity(objects);
    for pipeline in &resolution.pipelines {
        let flows = pipeline.flows.iter().map(|flow| &flow.key);
        for key in flows.chain(pipeline.outputs.keys()) {
            // A pipeline holds each object once, and pipelines come sorted by Logging name.
            users
                .entry(key)
                .and_modify(|names| *names = Cow::Owned(format!("{names}, {}", pipeline.logging)))
                .or_insert(Cow::Borrowed(&pipeline.logging));
        }
    }
    users
}

fn unused_reason(kind: Kind) -> &'static str {
    match kind {
        Kind::Flow => {
            "valid, but no applied Logging collects this namespace (see the Loggings' watchNamespaces and status, and this flow's loggingRef)"
        }
        Kind::ClusterFlow => "valid, but no applied Logging uses it (see loggingRef)",
        Kind::Output | Kind::ClusterOutput => "valid, but no flow sends records to it",
        Kind::Logging => "",
    }
}

/// A hash of everything an object status is computed from besides the object itself.
fn status_inputs(
    problems: &[Problem],
    usage: status::Usage<'_>,
    data_plane: status::DataPlane,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    problems.hash(&mut hasher);
    usage.hash(&mut hasher);
    data_plane.hash(&mut hasher);
    hasher.finish()
}

/// Access to the status and `loggingRef` of the four non-Logging kinds.
pub trait HasObjectStatus {
    fn object_status(&self) -> Option<&crate::api::ObjectStatus>;
    fn logging_ref(&self) -> Option<&str>;
}

macro_rules! has_object_status {
    ($($kind:ty => $($spec:ident).+),*) => {$(
        impl HasObjectStatus for $kind {
            fn object_status(&self) -> Option<&crate::api::ObjectStatus> {
                self.status.as_ref()
            }
            fn logging_ref(&self) -> Option<&str> {
                self.$($spec).+.logging_ref.as_deref()
            }
        }
    )*};
}
has_object_status!(
    Flow => spec,
    ClusterFlow => spec,
    Output => spec,
    ClusterOutput => spec.output
);

/// An object's current problems, to be announced as Events against what its status recorded.
struct Announcement<'a> {
    key: ObjectKey,
    uid: Option<String>,
    problems: &'a [Problem],
    recorded: &'a [String],
}

/// One pass over the object statuses of a reconcile.
struct StatusPass<'a> {
    ctx: &'a Context,
    resolution: &'a Resolution,
    users: &'a HashMap<&'a ObjectKey, Cow<'a, str>>,
    /// Loggings with a pipeline: admitted, and so applied by their own reconciles.
    admitted: &'a HashSet<&'a str>,
    now: jiff::Timestamp,
    current: &'a mut CurrentStatuses,
    /// The statuses that changed, sorted within each kind.
    pending: Vec<PendingStatus>,
    /// Objects whose stored status is current: whatever was queued for them is not needed.
    withdrawn: Vec<ObjectKey>,
    /// Objects looked at, current or not.
    visited: usize,
}

impl StatusPass<'_> {
    /// Announces new problems of every object of a kind and queues the statuses that changed.
    async fn kind<K>(&mut self, kind: Kind, objects: &[Arc<DeserializeGuard<K>>])
    where
        K: Resource<DynamicType = ()>
            + HasObjectStatus
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let resource = Arc::new(ApiResource::erase::<K>(&()));
        // Objects are visited in cache order and only what is announced or written is sorted:
        // sorting all 10,000 objects of a kind on every reconcile cost more than the rest.
        let first_pending = self.pending.len();
        let mut to_announce: Vec<Announcement> = Vec::new();
        for object in objects.iter().filter_map(|g| g.0.as_ref().ok()) {
            self.visited += 1;
            let name = object.name_any();
            let key = match object.namespace() {
                Some(ns) => ObjectKey::namespaced(kind, &ns, &name),
                None => ObjectKey::cluster(kind, &name),
            };
            let problems: &[Problem] = self
                .resolution
                .problems
                .get(&key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let usage = match (self.users.get(&key), object.logging_ref()) {
                (Some(loggings), _) => status::Usage::InUse(loggings),
                (None, Some(logging)) if !self.admitted.contains(logging) => {
                    status::Usage::LoggingRefused(logging)
                }
                (None, _) => status::Usage::Unused(unused_reason(kind)),
            };
            let generation = object.meta().generation;
            let data_plane = match usage {
                status::Usage::InUse(loggings) => {
                    data_plane::verdict(self.ctx, loggings, &key, generation)
                }
                status::Usage::Unused(_) | status::Usage::LoggingRefused(_) => {
                    status::DataPlane::NotTracked
                }
            };
            let version = (
                object.meta().uid.as_deref(),
                object.meta().resource_version.as_deref(),
            );
            let inputs = status_inputs(problems, usage, data_plane);
            if let (Some(uid), Some(version)) = version
                && self.current.is_current(uid, version, inputs)
            {
                continue;
            }
            let computed = status::object_status(
                generation,
                problems,
                usage,
                data_plane,
                object.object_status(),
                self.now,
            );
            let recorded = object
                .object_status()
                .map(|s| s.problems.as_slice())
                .unwrap_or(&[]);
            if problems.is_empty() {
                // Forgets what was announced; publishes nothing, so the order does not matter.
                self.ctx
                    .events
                    .problems(&key, object.uid(), &[], recorded)
                    .await;
            } else {
                to_announce.push(Announcement {
                    key: key.clone(),
                    uid: object.uid(),
                    problems,
                    recorded,
                });
            }
            let uid = object.uid().unwrap_or_else(|| key.to_string());
            if object.object_status() == Some(&computed) {
                if let Some(version) = version.1 {
                    self.current.remember(&uid, version, inputs);
                }
                self.withdrawn.push(key);
                continue;
            }
            if already_written(self.ctx, Some(uid.clone()), &computed) {
                continue;
            }
            // Queued: until the object or its inputs change, nothing more is to be done
            // for it (the writer tries a failed write again by itself).
            if let Some(version) = version.1 {
                self.current.remember(&uid, version, inputs);
            }
            self.pending.push(PendingStatus {
                key,
                resource: resource.clone(),
                namespace: object.namespace(),
                name,
                uid,
                status: computed,
            });
        }
        to_announce.sort_by(|a, b| a.key.cmp(&b.key));
        for announcement in to_announce {
            self.ctx
                .events
                .problems(
                    &announcement.key,
                    announcement.uid,
                    announcement.problems,
                    announcement.recorded,
                )
                .await;
        }
        self.pending[first_pending..].sort_by(|a, b| a.key.cmp(&b.key));
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn the_follow_through_is_left_to_the_next_reconcile_only_briefly_and_only_for_a_change() {
        use super::{FOLLOW_THROUGH_WITHIN, may_leave_to_next};
        let now = std::time::Instant::now();
        let at = |ago| {
            let mut map = foldhash::HashMap::default();
            if let Some(at) = now.checked_sub(ago) {
                map.insert("main".to_owned(), at);
            }
            map
        };
        let recently = at(FOLLOW_THROUGH_WITHIN / 2);
        assert!(may_leave_to_next(true, &recently, "main", now));
        // Nothing new to reconcile: this reconcile follows through.
        assert!(!may_leave_to_next(false, &recently, "main", now));
        // Changes keep coming: every FOLLOW_THROUGH_WITHIN one reconcile follows through.
        assert!(!may_leave_to_next(
            true,
            &at(FOLLOW_THROUGH_WITHIN),
            "main",
            now
        ));
        // Another Logging's reconciles following through leave this one's rollout due, and
        // the first reconcile of a Logging in a process always follows through.
        assert!(!may_leave_to_next(true, &recently, "other", now));
    }

    #[test]
    fn decoded_lengths_are_read_off_base64_text() {
        for bytes in 0..8 {
            let encoded = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]);
            assert_eq!(super::decoded_len(&encoded), bytes, "{encoded}");
        }
    }
}
