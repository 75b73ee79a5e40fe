//! Config rollout: after the candidate bundles are applied, ask the reloaders in the pods
//! what their data-plane binary made of the newest revision (docs/architecture.md, "Config
//! reload"). Accepted by some pod: promote it, copying the candidate Secrets to the accepted
//! ones that pods starting later fall back to. Rejected: say so on the Logging, and blame the
//! Flow or Output the binary's error names, which the next resolve leaves out.
//!
//! A pod judges a revision some time after it is written (a kubelet sync, a dry run), so
//! while changes keep coming the pods accept a revision the operator has since replaced.
//! The candidates built lately are remembered ([`RecentCandidates`]) and the newest one a
//! pod accepted is promoted: otherwise nothing new would run until the changes stopped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use kube::api::DynamicObject;
use regex::Regex;

use super::apply;
use super::context::{Context, Error};
use crate::build::{Child, ChildKind};
use crate::bundle::{self, Manifest, ReloaderStatus, short_revision};
use crate::layout::{self, Names};
use crate::model::instances::OutputInstances;
use crate::model::{ConfigRejected, ObjectKey, Pipeline, Problem};
use crate::render::edge::flow_route;
use crate::render::fluentd::{instance_label, plugin_id};

/// How many agent pods are asked: the binary's verdict is the same in every pod of one
/// image, a few guard against one that lags behind.
const AGENT_PODS_ASKED: usize = 3;
/// How many aggregator pods are asked: every one, since agents send to any of them and a
/// route may be given to the agents only once each dispatches it ([`gate_routes`]).
const AGGREGATOR_PODS_ASKED: usize = 64;
/// How soon to look again while a revision is neither accepted nor rejected.
pub const PENDING_RECHECK: Duration = Duration::from_secs(5);
/// Longest part of the binary's output put in a condition message.
const ERROR_KEPT: usize = 2048;
/// Candidates of one component remembered for promotion, the newest included. Between
/// reconciles they share every Secret that did not change (one slot per edit), so only a
/// burst that rewrites every slot makes each one a full copy of the configuration.
const CANDIDATES_KEPT: usize = 3;
/// Least time between two promotions of an earlier candidate. While changes keep coming each
/// one would otherwise copy the whole configuration again (every slot changes in a burst),
/// which at 10,000 flows doubled the Secret bytes the API server took.
pub const EARLIER_PROMOTION_INTERVAL: Duration = Duration::from_secs(10);

/// Asks the reloaders behind a host name (at most that many of the addresses it resolves
/// to) for their status.
pub type ProbeFn =
    dyn Fn(String, usize) -> BoxFuture<'static, Vec<Result<ReloaderStatus, String>>> + Send + Sync;

/// The real probe: DNS of the headless Service, then `GET /status` on the addresses.
pub fn http_probe() -> Arc<ProbeFn> {
    Arc::new(|host: String, limit: usize| {
        Box::pin(async move {
            let addresses = match tokio::net::lookup_host((host.as_str(), port())).await {
                Ok(addresses) => {
                    let mut addresses: Vec<_> = addresses.collect();
                    addresses.sort();
                    addresses.dedup();
                    addresses
                }
                Err(error) => return vec![Err(format!("{host}: {error}"))],
            };
            // Concurrently: one pod that does not answer costs its timeout once, not per pod.
            let asks = addresses.into_iter().take(limit).map(|address| async move {
                let url = format!("http://{address}/status");
                crate::reload::http::request(
                    &url,
                    crate::reload::Method::Get,
                    Duration::from_secs(2),
                )
                .await
                .and_then(|(code, body)| {
                    if code == 200 {
                        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
                    } else {
                        Err(format!("{url} answered {code}"))
                    }
                })
            });
            futures::future::join_all(asks).await
        })
    })
}

/// Asks the reloader of one pod (by host name) to drain; answers its status.
pub type DrainFn =
    dyn Fn(String) -> BoxFuture<'static, Result<ReloaderStatus, String>> + Send + Sync;

/// The real drain request: `POST /drain` on the pod's reloader.
pub fn http_drain() -> Arc<DrainFn> {
    Arc::new(|host: String| {
        Box::pin(async move {
            let url = format!("http://{host}:{}/drain", port());
            let (code, body) = crate::reload::http::request(
                &url,
                crate::reload::Method::Post,
                Duration::from_secs(2),
            )
            .await?;
            if code == 200 {
                serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
            } else {
                Err(format!("{url} answered {code}"))
            }
        })
    })
}

/// How soon to look again while an aggregator pod drains before a scale-in.
pub const DRAIN_RECHECK: Duration = Duration::from_secs(10);

/// Scale-in without losing buffered records: while the Logging asks for fewer aggregator
/// replicas than run, the highest ordinal is drained first (not ready, so agents move away;
/// its buffers flushed) and the StatefulSet shrinks by one only once that pod reports no
/// chunks left. Returns when to look again while a scale-in is under way. Replicas left to an
/// autoscaler are not gated.
pub async fn gate_scale_in(
    ctx: &Context,
    pipeline: &Pipeline,
    children: &mut [Child],
) -> Option<Duration> {
    let desired = pipeline.spec.aggregator.as_ref()?.replicas?;
    let names = &pipeline.names;
    let running = ctx
        .stores
        .children_of(ChildKind::StatefulSet)
        .into_iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(names.aggregator().as_str())
                && s.metadata.namespace.as_deref() == Some(names.control_namespace.as_str())
        })?
        .data
        .get("spec")?
        .get("replicas")?
        .as_i64()?;
    if i64::from(desired) >= running {
        return None;
    }
    let ordinal = running - 1;
    let host = format!(
        "{}-{ordinal}.{}.{}.svc",
        names.aggregator(),
        names.aggregator_headless_service(),
        names.control_namespace
    );
    let drained = match (ctx.drain)(host).await {
        Ok(status) => status.draining && status.buffered_chunks == Some(0),
        Err(error) => {
            tracing::info!(%error, ordinal, "aggregator pod to scale in not reachable yet");
            false
        }
    };
    let replicas = if drained { ordinal } else { running };
    if drained {
        tracing::info!(ordinal, "aggregator pod drained; scaling in by one");
    }
    for child in children
        .iter_mut()
        .filter(|c| c.kind == ChildKind::StatefulSet)
    {
        if let Some(spec) = child.object.data.get_mut("spec") {
            spec["replicas"] = serde_json::json!(replicas);
        }
    }
    Some(DRAIN_RECHECK)
}

fn port() -> u16 {
    u16::try_from(layout::RELOADER_PORT).unwrap_or(8099)
}

/// Where one component's configuration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigRollout {
    /// The accepted bundle is the candidate.
    Settled,
    /// A pod accepted the candidate; the accepted Secrets were written.
    Promoted,
    /// The binary rejected the candidate.
    Rejected { revision: String, error: String },
    /// No pod has judged the candidate yet; `reachable` when some reloader answered.
    Pending { reachable: bool },
}

/// The candidates of one component built lately, oldest first, each with its candidate
/// Secrets as built (in the order of `Names::candidate_bundle_secrets`: the manifest's
/// Secret first). Pure bookkeeping, no I/O.
#[derive(Debug, Default)]
pub struct RecentCandidates {
    built: VecDeque<(String, Vec<Arc<DynamicObject>>)>,
    /// When an earlier candidate was last promoted.
    earlier_promoted_at: Option<std::time::Instant>,
}

impl RecentCandidates {
    /// Remembers the candidate just built. A Secret whose data equals the newest remembered
    /// one of the same name, or the copy `cached` holds (what the API server has), is shared
    /// with it rather than copied: only the data of a remembered Secret is ever used.
    pub fn record<'a>(
        &mut self,
        revision: &str,
        secrets: impl IntoIterator<Item = &'a DynamicObject>,
        cached: impl Fn(&str) -> Option<Arc<DynamicObject>>,
    ) {
        if self
            .built
            .back()
            .is_some_and(|(newest, _)| newest == revision)
        {
            return;
        }
        let previous = self.built.back().map(|(_, secrets)| secrets);
        let secrets = secrets
            .into_iter()
            .map(|secret| {
                let name = secret.metadata.name.as_deref().unwrap_or_default();
                previous
                    .and_then(|previous| {
                        previous
                            .iter()
                            .find(|known| known.metadata.name == secret.metadata.name)
                            .cloned()
                    })
                    .filter(|known| known.data == secret.data)
                    .or_else(|| cached(name).filter(|known| known.data == secret.data))
                    .unwrap_or_else(|| Arc::new(secret.clone()))
            })
            .collect();
        self.built.retain(|(known, _)| known != revision);
        self.built.push_back((revision.to_owned(), secrets));
        while self.built.len() > CANDIDATES_KEPT {
            self.built.pop_front();
        }
    }

    /// Shares the newest candidate's Secrets with the copies `cached` holds where their data
    /// is equal. Right after an apply the caches still hold the Secrets before it, so what
    /// changed was copied; once they caught up that copy would stay as a second one.
    pub fn share_with_cache(&mut self, cached: impl Fn(&str) -> Option<Arc<DynamicObject>>) {
        let Some((_, secrets)) = self.built.back_mut() else {
            return;
        };
        for secret in secrets.iter_mut() {
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            if let Some(known) = cached(name)
                && !Arc::ptr_eq(&known, secret)
                && known.data == secret.data
            {
                *secret = known;
            }
        }
    }

    /// Forgets every candidate built before `revision`: it was accepted, and an older one
    /// must never be promoted over it.
    pub fn forget_before(&mut self, revision: &str) {
        if let Some(at) = self.built.iter().position(|(known, _)| known == revision) {
            self.built.drain(..at);
        }
    }

    /// The newest candidate, other than the newest one built, that a pod accepted or runs,
    /// built after `accepted` (every remembered one when `accepted` is not among them);
    /// none until [`EARLIER_PROMOTION_INTERVAL`] has passed since the last one promoted.
    pub fn newest_judged_good(
        &self,
        accepted: Option<&str>,
        statuses: &[Result<ReloaderStatus, String>],
        now: std::time::Instant,
    ) -> Option<(&str, &[Arc<DynamicObject>])> {
        if self
            .earlier_promoted_at
            .is_some_and(|at| now.saturating_duration_since(at) < EARLIER_PROMOTION_INTERVAL)
        {
            return None;
        }
        self.built
            .iter()
            .rev()
            .skip(1)
            .take_while(|(revision, _)| Some(revision.as_str()) != accepted)
            .find(|(revision, _)| {
                statuses
                    .iter()
                    .flatten()
                    .any(|status| judged_good(status, revision))
            })
            .map(|(revision, secrets)| (revision.as_str(), secrets.as_slice()))
    }

    /// An earlier candidate was promoted at `now`.
    pub fn promoted_earlier(&mut self, now: std::time::Instant) {
        self.earlier_promoted_at = Some(now);
    }

    /// The routes each remembered candidate's aggregator manifest Secret lists, by revision.
    fn routes(&self) -> impl Iterator<Item = (String, BTreeSet<String>)> + '_ {
        self.built.iter().filter_map(|(revision, secrets)| {
            let main = secrets.first()?;
            Some((revision.clone(), secret_routes(main)?))
        })
    }
}

/// Whether the pod accepted `revision` or runs it.
fn judged_good(status: &ReloaderStatus, revision: &str) -> bool {
    status.running.as_deref() == Some(revision) || status.accepted.iter().any(|a| a == revision)
}

/// One file of a Secret's data (JSON as the API holds it: base64), decoded.
fn secret_file(object: &DynamicObject, file: &str) -> Option<Vec<u8>> {
    let encoded = object.data.get("data")?.get(file)?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

/// The `manifest.json` of a Secret's data.
fn manifest_of(object: &DynamicObject) -> Option<Manifest> {
    let bytes = secret_file(object, bundle::MANIFEST_FILE)?;
    Manifest::from_json(&bytes).ok()
}

/// The revision in the `manifest.json` of a Secret's data.
fn manifest_revision(object: &DynamicObject) -> Option<String> {
    manifest_of(object).map(|m| m.revision)
}

/// Aggregator publications remembered per Logging: a pod that reports an older one than
/// these counts as possibly loading anything, and no new route goes out until it catches up.
const PUBLICATIONS_KEPT: usize = 16;

/// Numbers the aggregator candidate about to be applied ([`Manifest::sequence`]): the
/// number of the published one (the cached Secret's) when the revision is the same, the
/// next number when it differs. Remembers which revision each number published, so the
/// routes gate knows every revision a pod may still load after the one it reports. Derived
/// from the cache, so a new operator process carries the count on.
pub fn number_candidate(ctx: &Context, pipeline: &Pipeline, children: &mut [Child]) {
    let names = &pipeline.names;
    let main = names.aggregator_config_secret();
    let Some(child) = children.iter_mut().find(|c| {
        c.kind == ChildKind::Secret && c.object.metadata.name.as_deref() == Some(main.as_str())
    }) else {
        return;
    };
    let Some(mut manifest) = manifest_of(&child.object) else {
        return;
    };
    let published =
        cached_secret(ctx, &names.control_namespace, &main).and_then(|secret| manifest_of(&secret));
    manifest.sequence = match published {
        Some(published) if published.revision == manifest.revision => published.sequence.max(1),
        Some(published) => published.sequence + 1,
        None => 1,
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(manifest.to_json());
    if let Some(data) = child
        .object
        .data
        .get_mut("data")
        .and_then(serde_json::Value::as_object_mut)
    {
        data.insert(
            bundle::MANIFEST_FILE.to_owned(),
            serde_json::Value::String(encoded),
        );
    }
    let mut memory = ctx.memory();
    let publications = memory
        .aggregator_publications
        .entry(pipeline.logging.clone())
        .or_default();
    publications.retain(|(sequence, _)| *sequence < manifest.sequence);
    publications.push_back((manifest.sequence, manifest.revision));
    while publications.len() > PUBLICATIONS_KEPT {
        publications.pop_front();
    }
}

fn built_secret<'a>(children: &'a [Child], name: &str) -> Option<&'a DynamicObject> {
    children
        .iter()
        .find(|c| c.kind == ChildKind::Secret && c.object.metadata.name.as_deref() == Some(name))
        .map(|c| &c.object)
}

fn cached_secret(ctx: &Context, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
    ctx.stores
        .children_of(ChildKind::Secret)
        .into_iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })
}

/// A component's candidate Secrets as built: the manifest's Secret first, then its files.
/// Empty without the manifest's Secret.
fn candidate_secrets<'a>(
    names: &Names,
    component: &str,
    children: &'a [Child],
) -> Vec<&'a DynamicObject> {
    let candidates = names.candidate_bundle_secrets(component);
    match candidates
        .first()
        .and_then(|main| built_secret(children, main))
    {
        Some(_) => candidates
            .iter()
            .filter_map(|name| built_secret(children, name))
            .collect(),
        None => Vec::new(),
    }
}

/// Applies the accepted copies of candidate Secrets (the manifest's Secret first in
/// `secrets`): the files first, the manifest's Secret last, as for the candidate. One copy
/// at a time: together they are as large as the whole configuration (megabytes at 10,000
/// flows), and most are unchanged.
async fn promote(ctx: &Context, names: &Names, secrets: &[&DynamicObject]) -> Result<(), Error> {
    let Some((main, files)) = secrets.split_first() else {
        return Ok(());
    };
    for candidate in files.iter().chain([main]) {
        let Some(accepted) = candidate
            .metadata
            .name
            .as_deref()
            .and_then(|name| names.accepted_secret(name))
        else {
            continue;
        };
        let mut object = (*candidate).clone();
        object.metadata.name = Some(accepted);
        object
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(
                layout::CONFIG_SET_LABEL.to_owned(),
                layout::CONFIG_SET_ACCEPTED.to_owned(),
            );
        let copy = Child {
            kind: ChildKind::Secret,
            object,
        };
        apply::apply_children(ctx, std::slice::from_ref(&copy)).await?;
    }
    Ok(())
}

/// The reloaders' answers, asked at most once per component and reconcile: the routes
/// gate, the promotion and the data-plane status all read the same answers.
#[derive(Default)]
pub struct Answers {
    by_component: BTreeMap<&'static str, Vec<Result<ReloaderStatus, String>>>,
}

impl Answers {
    /// What the reloaders of `component` answer (every aggregator pod, a few agent pods).
    pub async fn of(
        &mut self,
        ctx: &Context,
        names: &Names,
        component: &'static str,
    ) -> &[Result<ReloaderStatus, String>] {
        if !self.by_component.contains_key(component) {
            let limit = if component == layout::AGGREGATOR_COMPONENT {
                AGGREGATOR_PODS_ASKED
            } else {
                AGENT_PODS_ASKED
            };
            let statuses = (ctx.probe)(names.reloader_host(component), limit).await;
            for error in statuses.iter().filter_map(|s| s.as_ref().err()) {
                tracing::debug!(component, %error, "reloader status unavailable");
            }
            self.by_component.insert(component, statuses);
        }
        self.by_component
            .get(component)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The revision of a component's candidate bundle among the built children.
pub fn candidate_revision(
    pipeline: &Pipeline,
    component: &str,
    children: &[Child],
) -> Option<String> {
    let main = pipeline
        .names
        .candidate_bundle_secrets(component)
        .into_iter()
        .next()?;
    built_secret(children, &main).and_then(manifest_revision)
}

/// Remembers the candidate of `component` just applied, so the pods accepting it later
/// promote it even once a newer one replaced it, and the routes gate knows its routes.
pub fn remember_candidate(
    ctx: &Context,
    pipeline: &Pipeline,
    component: &'static str,
    children: &[Child],
) {
    let names = &pipeline.names;
    let Some(candidate) = candidate_revision(pipeline, component, children) else {
        return;
    };
    let built = candidate_secrets(names, component, children);
    ctx.memory()
        .recent_candidates
        .entry((pipeline.logging.clone(), component))
        .or_default()
        .record(&candidate, built.iter().copied(), |name| {
            cached_secret(ctx, &names.control_namespace, name)
        });
}

/// Looks at one component's rollout and carries it one step: promote, report or wait. The
/// candidate was remembered ([`remember_candidate`]) when it was applied.
pub async fn advance(
    ctx: &Context,
    pipeline: &Pipeline,
    component: &'static str,
    children: &[Child],
    answers: &mut Answers,
) -> Result<ConfigRollout, Error> {
    let names = &pipeline.names;
    let Some(main) = names.candidate_bundle_secrets(component).into_iter().next() else {
        return Ok(ConfigRollout::Settled);
    };
    let Some(candidate) = candidate_revision(pipeline, component, children) else {
        return Ok(ConfigRollout::Settled);
    };
    let built = candidate_secrets(names, component, children);
    let memory_key = (pipeline.logging.clone(), component);
    let accepted = names
        .accepted_secret(&main)
        .and_then(|name| cached_secret(ctx, &names.control_namespace, &name))
        .and_then(|object| manifest_revision(&object));
    if accepted.as_deref() == Some(candidate.as_str()) {
        forget_candidates_before(ctx, &memory_key, &candidate);
        if let Some(recent) = ctx.memory().recent_candidates.get_mut(&memory_key) {
            recent.share_with_cache(|name| cached_secret(ctx, &names.control_namespace, name));
        }
        return Ok(ConfigRollout::Settled);
    }
    let statuses = answers.of(ctx, names, component).await;
    if statuses
        .iter()
        .flatten()
        .any(|status| judged_good(status, &candidate))
    {
        promote(ctx, names, &built).await?;
        forget_candidates_before(ctx, &memory_key, &candidate);
        ctx.metrics.config_rollout(component, "promoted");
        tracing::info!(
            component,
            revision = short_revision(&candidate),
            "configuration accepted by the data plane; promoted"
        );
        return Ok(ConfigRollout::Promoted);
    }
    // Changes came faster than the pods judge them: what they accepted runs, so it becomes
    // what pods starting later fall back to, and its routes reach the agents.
    let now = std::time::Instant::now();
    let older = ctx
        .memory()
        .recent_candidates
        .get(&memory_key)
        .and_then(|recent| recent.newest_judged_good(accepted.as_deref(), statuses, now))
        .map(|(revision, secrets)| (revision.to_owned(), secrets.to_vec()));
    if let Some((revision, remembered)) = older {
        let secrets = with_data_of(&built, &remembered);
        let secrets: Vec<&DynamicObject> = secrets.iter().collect();
        promote(ctx, names, &secrets).await?;
        forget_candidates_before(ctx, &memory_key, &revision);
        if let Some(recent) = ctx.memory().recent_candidates.get_mut(&memory_key) {
            recent.promoted_earlier(now);
        }
        ctx.metrics.config_rollout(component, "promoted");
        tracing::info!(
            component,
            revision = short_revision(&revision),
            newest = short_revision(&candidate),
            "an earlier candidate accepted by the data plane; promoted while the newest waits"
        );
    }
    let rejection = statuses.iter().flatten().find_map(|status| {
        status
            .rejected
            .as_ref()
            .filter(|rejected| rejected.revision == candidate)
            .map(|rejected| rejected.error.clone())
    });
    let reachable = statuses.iter().any(Result::is_ok);
    Ok(match rejection {
        Some(error) => {
            ctx.metrics.config_rollout(component, "rejected");
            ConfigRollout::Rejected {
                revision: candidate,
                error,
            }
        }
        None => ConfigRollout::Pending { reachable },
    })
}

/// The Secrets of an earlier candidate: each built one (the metadata this operator applies)
/// with the remembered data of the same name; one no longer built keeps its own metadata
/// less what the API server set.
fn with_data_of(built: &[&DynamicObject], remembered: &[Arc<DynamicObject>]) -> Vec<DynamicObject> {
    remembered
        .iter()
        .map(|secret| {
            let mut object = match built
                .iter()
                .find(|b| b.metadata.name == secret.metadata.name)
            {
                Some(built) => (*built).clone(),
                None => {
                    let mut own = secret.as_ref().clone();
                    own.metadata = kube::api::ObjectMeta {
                        name: own.metadata.name,
                        namespace: own.metadata.namespace,
                        labels: own.metadata.labels,
                        annotations: own.metadata.annotations,
                        owner_references: own.metadata.owner_references,
                        ..Default::default()
                    };
                    own
                }
            };
            object.data = secret.data.clone();
            object
        })
        .collect()
}

fn forget_candidates_before(ctx: &Context, key: &(String, &'static str), revision: &str) {
    if let Some(recent) = ctx.memory().recent_candidates.get_mut(key) {
        recent.forget_before(revision);
    }
}

/// The routes in the route list of a Secret's data; `None` without one.
fn secret_routes(object: &DynamicObject) -> Option<BTreeSet<String>> {
    let bytes = secret_file(object, layout::ROUTES_LIST_FILE)?;
    Some(crate::render::edge::parse_routes_list(
        &String::from_utf8_lossy(&bytes),
    ))
}

/// The routes the agents may emit: those they emit now that the pipeline still has, plus
/// the pipeline's new ones that `dispatched_everywhere` holds. Before the routing table was
/// ever written (`published` is `None`) every route goes: no aggregator runs an older
/// revision yet, and any that starts runs this candidate or a newer accepted one.
pub fn allowed_routes(
    wanted: &BTreeSet<String>,
    published: Option<&BTreeSet<String>>,
    dispatched_everywhere: &BTreeSet<String>,
) -> BTreeSet<String> {
    match published {
        None => wanted.clone(),
        Some(published) => wanted
            .iter()
            .filter(|route| published.contains(*route) || dispatched_everywhere.contains(*route))
            .cloned()
            .collect(),
    }
}

/// The routes dispatched by the accepted revision and by every revision each aggregator pod
/// runs or may still load: the one it runs, the one it has seen and loads next, and each
/// published after that one (`publications`: number and revision, oldest first); empty
/// unless at least `expected` pods answered, each with revisions whose routes are `known`.
/// A pod starting later runs the candidate or falls back to the accepted revision, so both
/// must hold a route before agents may emit it.
pub fn dispatched_everywhere(
    statuses: &[Result<ReloaderStatus, String>],
    expected: usize,
    known: &BTreeMap<String, BTreeSet<String>>,
    accepted: Option<&str>,
    publications: &VecDeque<(u64, String)>,
) -> BTreeSet<String> {
    let Some(mut everywhere) = accepted.and_then(|revision| known.get(revision)).cloned() else {
        return BTreeSet::new();
    };
    let mut answered = 0;
    for status in statuses {
        let Ok(status) = status else {
            return BTreeSet::new();
        };
        let Some(running) = status.running.as_deref().and_then(|r| known.get(r)) else {
            return BTreeSet::new();
        };
        everywhere.retain(|route| running.contains(route));
        // The newest complete revision the pod has seen is the one it loads next: a Flow
        // deleted and added back before the pod caught up is in what it runs, not in that.
        if let Some(next) = status.candidate.as_deref() {
            let Some(next) = known.get(next) else {
                return BTreeSet::new();
            };
            everywhere.retain(|route| next.contains(route));
        }
        // A revision published again after one without the route (a Flow deleted and added
        // back) has the same name as its first publication, which the pod may report before
        // the one in between reached it: what it may load next is every publication since.
        if let Some(seen) = status.candidate_sequence {
            let Some(later) = published_after(publications, seen) else {
                return BTreeSet::new();
            };
            for revision in later {
                let Some(routes) = known.get(revision) else {
                    return BTreeSet::new();
                };
                everywhere.retain(|route| routes.contains(route));
            }
        }
        answered += 1;
    }
    if answered < expected.max(1) {
        return BTreeSet::new();
    }
    everywhere
}

/// The revisions published after number `seen`; `None` when some of them are no longer
/// remembered (an operator restart, or a pod far behind).
fn published_after(publications: &VecDeque<(u64, String)>, seen: u64) -> Option<Vec<&str>> {
    let later: Vec<&(u64, String)> = publications.iter().filter(|(n, _)| *n > seen).collect();
    let newest = publications.back().map_or(seen, |(n, _)| *n);
    let complete =
        u64::try_from(later.len()).is_ok_and(|count| count == newest.saturating_sub(seen));
    complete.then(|| {
        later
            .iter()
            .map(|(_, revision)| revision.as_str())
            .collect()
    })
}

/// Aggregator pods the StatefulSet has: every one must dispatch a route before agents emit it.
pub fn aggregator_pods(ctx: &Context, names: &Names) -> usize {
    let Some(stateful_set) = ctx
        .stores
        .children_of(ChildKind::StatefulSet)
        .into_iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(names.aggregator().as_str())
                && s.metadata.namespace.as_deref() == Some(names.control_namespace.as_str())
        })
    else {
        return 1;
    };
    let count = |pointer: &str| stateful_set.data.pointer(pointer).and_then(|v| v.as_i64());
    let pods = count("/status/replicas")
        .into_iter()
        .chain(count("/spec/replicas"))
        .max()
        .unwrap_or(1);
    usize::try_from(pods).unwrap_or(1)
}

/// Routes the agents' routing table leaves out for now, after [`gate_routes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesGate {
    /// Routes of the pipeline no agent emits yet: not every aggregator pod, or the accepted
    /// revision, dispatches them.
    pub withheld: BTreeSet<String>,
    /// Some aggregator reloader answered: worth looking again soon.
    pub reachable: bool,
}

/// A revision is one unit across components: agents emit a route only once every
/// aggregator pod dispatches it (docs/architecture.md, "Config reload"). The routing table
/// built from the pipeline is replaced, in `children`, by one holding only the routes agents
/// emit already and the new ones every aggregator pod and the accepted revision dispatch. A
/// route the aggregator never accepted (its revision was rejected) is never given to the
/// agents; removed routes go at once (agents stop first, so nothing is sent to a dispatch
/// that is gone).
pub async fn gate_routes(
    ctx: &Context,
    pipeline: &Pipeline,
    children: &mut [Child],
    answers: &mut Answers,
) -> Result<RoutesGate, Error> {
    let names = &pipeline.names;
    let table = names.agent_routes_secret();
    let Some(wanted) = built_secret(children, &table).and_then(secret_routes) else {
        return Ok(RoutesGate::default());
    };
    let published =
        cached_secret(ctx, &names.control_namespace, &table).and_then(|s| secret_routes(&s));
    if published
        .as_ref()
        .is_none_or(|published| wanted.is_subset(published))
    {
        return Ok(RoutesGate::default());
    }
    let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let main = names.aggregator_config_secret();
    if let Some(secret) = built_secret(children, &main)
        && let (Some(revision), Some(routes)) = (manifest_revision(secret), secret_routes(secret))
    {
        known.insert(revision, routes);
    }
    // Pods may run a candidate built before this one and promoted since (or about to be).
    if let Some(recent) = ctx
        .memory()
        .recent_candidates
        .get(&(pipeline.logging.clone(), layout::AGGREGATOR_COMPONENT))
    {
        known.extend(recent.routes());
    }
    let accepted = names
        .accepted_secret(&main)
        .and_then(|name| cached_secret(ctx, &names.control_namespace, &name));
    let accepted_revision = accepted.as_deref().and_then(manifest_revision);
    if let Some(secret) = &accepted
        && let (Some(revision), Some(routes)) = (&accepted_revision, secret_routes(secret))
    {
        known.insert(revision.clone(), routes);
    }
    let expected = aggregator_pods(ctx, names);
    let statuses = answers.of(ctx, names, layout::AGGREGATOR_COMPONENT).await;
    let reachable = statuses.iter().any(Result::is_ok);
    let publications = ctx
        .memory()
        .aggregator_publications
        .get(&pipeline.logging)
        .cloned()
        .unwrap_or_default();
    let everywhere = dispatched_everywhere(
        statuses,
        expected,
        &known,
        accepted_revision.as_deref(),
        &publications,
    );
    let allowed = allowed_routes(&wanted, published.as_ref(), &everywhere);
    let withheld: BTreeSet<String> = wanted.difference(&allowed).cloned().collect();
    if withheld.is_empty() {
        return Ok(RoutesGate {
            withheld,
            reachable,
        });
    }
    tracing::info!(
        withheld = withheld.len(),
        "routes withheld from the agents until every aggregator pod dispatches them"
    );
    // Rebuilt from the same pipeline with the withheld routes skipped, not from a copy of
    // the pipeline without them: routes are withheld through most of a large apply.
    let emits = |route: &str| allowed.contains(route);
    for rebuilt in crate::build::agent_routes_children(pipeline, &emits)? {
        if let Some(child) = children.iter_mut().find(|c| {
            c.kind == ChildKind::Secret && c.object.metadata.name == rebuilt.object.metadata.name
        }) {
            *child = rebuilt;
        }
    }
    Ok(RoutesGate {
        withheld,
        reachable,
    })
}

fn trimmed(error: &str) -> String {
    let error = error.trim();
    match error.char_indices().nth(ERROR_KEPT) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}

/// The Logging's problem for a rejected revision.
pub fn rejection_problem(component: &str, revision: &str, error: &str) -> Problem {
    Problem {
        reason: "ConfigRejected",
        field: "spec".to_owned(),
        message: format!(
            "the {component} binary rejected configuration {}; the last accepted one keeps running: {}",
            short_revision(revision),
            trimmed(error)
        ),
    }
}

static SLUICE_IDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:flow|out)-[0-9a-f]{12}\b").unwrap_or_else(|_| unreachable!())
});

/// The Flows and Outputs the binary's error names by the ids Sluice gave them: a flow's
/// route (`flow-<hash>`, in its tag `sluice.flow-<hash>` and its filters' patterns) blames
/// the flow, an output instance's id (`out-<hash>`, its label, `@id` and buffer directory)
/// blames every output it renders.
pub fn blamed(pipeline: &Pipeline, error: &str) -> Vec<ObjectKey> {
    let named: Vec<&str> = SLUICE_IDS.find_iter(error).map(|m| m.as_str()).collect();
    let mut keys = Vec::new();
    for flow in &pipeline.flows {
        if named.contains(&flow_route(flow.label())) {
            keys.push(flow.key.clone());
        }
    }
    for instance in OutputInstances::of(pipeline).instances {
        let label = instance_label(&instance);
        if named.contains(&plugin_id(&label)) {
            keys.extend(instance.outputs);
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Remembers the blamed objects at their current generation, for the next resolves.
pub fn remember_blame(ctx: &Context, keys: &[ObjectKey], message: &str) {
    let mut memory = ctx.memory();
    for key in keys {
        memory.config_rejected.insert(
            key.clone(),
            ConfigRejected {
                generation: super::inventory::generation_of(ctx, key).flatten(),
                message: trimmed(message),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, text: &str) -> DynamicObject {
        let mut object = DynamicObject::new(
            name,
            &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        );
        object.data = serde_json::json!({"data": {"fluent.conf": text}});
        object
    }

    fn revisions(recent: &RecentCandidates) -> Vec<&str> {
        recent.built.iter().map(|(r, _)| r.as_str()).collect()
    }

    #[test]
    fn what_a_pod_may_still_load_is_every_publication_after_the_one_it_saw() {
        let publications: VecDeque<(u64, String)> = [(4, "a"), (5, "b"), (6, "a")]
            .into_iter()
            .map(|(n, r)| (n, r.to_owned()))
            .collect();
        assert_eq!(published_after(&publications, 4), Some(vec!["b", "a"]));
        assert_eq!(published_after(&publications, 6), Some(vec![]));
        // Publications 2 and 3 are not remembered (a restart): anything may come.
        assert_eq!(published_after(&publications, 1), None);
        assert_eq!(published_after(&VecDeque::new(), 3), Some(vec![]));
    }

    #[test]
    fn an_unchanged_secret_is_shared_with_the_candidate_before_and_a_changed_one_copied() {
        let mut recent = RecentCandidates::default();
        recent.record(
            "r1",
            [&secret("main", "a"), &secret("slot-01", "x")],
            |_| None,
        );
        recent.record(
            "r2",
            [&secret("main", "b"), &secret("slot-01", "x")],
            |_| None,
        );
        let (first, second) = (&recent.built[0].1, &recent.built[1].1);
        assert!(Arc::ptr_eq(&first[1], &second[1]));
        assert!(!Arc::ptr_eq(&first[0], &second[0]));
        assert_eq!(second[0].data["data"]["fluent.conf"], "b");
        // What the API server already holds is shared too, never a second copy.
        let cached = Arc::new(secret("main", "c"));
        let from_cache = cached.clone();
        recent.record(
            "r3",
            [&secret("main", "c"), &secret("slot-01", "y")],
            move |name| (name == "main").then(|| from_cache.clone()),
        );
        let third = &recent.built[2].1;
        assert!(Arc::ptr_eq(&third[0], &cached));
        assert_eq!(third[1].data["data"]["fluent.conf"], "y");
        // The caches catch up with the changed one: the copy gives way to theirs.
        let caught_up = Arc::new(secret("slot-01", "y"));
        let from_cache = caught_up.clone();
        recent.share_with_cache(move |name| (name == "slot-01").then(|| from_cache.clone()));
        assert!(Arc::ptr_eq(&recent.built[2].1[1], &caught_up));
        // A cached copy with other data is never taken.
        let stale = Arc::new(secret("main", "z"));
        recent.share_with_cache(move |name| (name == "main").then(|| stale.clone()));
        assert!(Arc::ptr_eq(&recent.built[2].1[0], &cached));
    }

    #[test]
    fn an_earlier_candidate_is_promoted_with_the_metadata_built_now_and_its_own_data() {
        let mut built = secret("main", "new");
        built.metadata.labels = Some([("app".to_owned(), "sluice".to_owned())].into());
        let mut remembered = secret("main", "old");
        remembered.metadata.uid = Some("uid-of-the-candidate".to_owned());
        remembered.metadata.resource_version = Some("42".to_owned());
        let mut gone = secret("gone", "old");
        gone.metadata.uid = Some("uid-of-gone".to_owned());
        gone.metadata.labels = Some([("app".to_owned(), "sluice".to_owned())].into());
        let secrets = with_data_of(&[&built], &[Arc::new(remembered), Arc::new(gone)]);
        assert_eq!(secrets[0].metadata, built.metadata);
        assert_eq!(secrets[0].data["data"]["fluent.conf"], "old");
        assert_eq!(secrets[1].metadata.uid, None);
        assert_eq!(secrets[1].metadata.labels, built.metadata.labels);
        assert_eq!(secrets[1].data["data"]["fluent.conf"], "old");
    }

    #[test]
    fn a_bounded_number_are_kept_and_none_from_before_the_accepted_one() {
        let mut recent = RecentCandidates::default();
        for revision in ["r1", "r2", "r3", "r4"] {
            recent.record(revision, [&secret("main", revision)], |_| None);
        }
        assert_eq!(revisions(&recent), ["r2", "r3", "r4"]);
        // Built again: the newest, once.
        recent.record("r3", [&secret("main", "r3")], |_| None);
        assert_eq!(revisions(&recent), ["r2", "r4", "r3"]);
        recent.forget_before("r4");
        assert_eq!(revisions(&recent), ["r4", "r3"]);
        recent.forget_before("unknown");
        assert_eq!(revisions(&recent), ["r4", "r3"]);
    }

    #[test]
    fn the_newest_earlier_candidate_a_pod_judged_good_since_the_accepted_one_is_chosen() {
        let mut recent = RecentCandidates::default();
        for revision in ["r1", "r2", "r3"] {
            recent.record(revision, [&secret("main", revision)], |_| None);
        }
        let runs = |revision: &str| ReloaderStatus {
            running: Some(revision.to_owned()),
            ..Default::default()
        };
        let accepted = |revision: &str| ReloaderStatus {
            accepted: vec![revision.to_owned(), "r0".to_owned()],
            ..Default::default()
        };
        let now = std::time::Instant::now();
        let chosen = |accepted_now: Option<&str>, statuses: &[Result<ReloaderStatus, String>]| {
            recent
                .newest_judged_good(accepted_now, statuses, now)
                .map(|(revision, _)| revision.to_owned())
        };
        assert_eq!(
            chosen(None, &[Ok(runs("r1")), Ok(accepted("r2"))]).as_deref(),
            Some("r2")
        );
        // The newest built is the candidate itself, promoted by the caller.
        assert_eq!(chosen(None, &[Ok(runs("r3"))]), None);
        // Never one built before what is accepted, nor the accepted one again.
        assert_eq!(chosen(Some("r2"), &[Ok(runs("r1"))]), None);
        assert_eq!(chosen(Some("r2"), &[Ok(runs("r2"))]), None);
        assert_eq!(
            chosen(Some("r1"), &[Err("down".to_owned()), Ok(runs("r2"))]).as_deref(),
            Some("r2")
        );
    }

    #[test]
    fn earlier_candidates_are_promoted_at_most_once_per_interval() {
        let mut recent = RecentCandidates::default();
        for revision in ["r1", "r2"] {
            recent.record(revision, [&secret("main", revision)], |_| None);
        }
        let statuses = [Ok(ReloaderStatus {
            running: Some("r1".to_owned()),
            ..Default::default()
        })];
        let start = std::time::Instant::now();
        let chosen = |recent: &RecentCandidates, at| {
            recent
                .newest_judged_good(None, &statuses, at)
                .map(|(revision, _)| revision.to_owned())
        };
        assert_eq!(chosen(&recent, start).as_deref(), Some("r1"));
        recent.promoted_earlier(start);
        let soon = start + EARLIER_PROMOTION_INTERVAL - Duration::from_millis(1);
        assert_eq!(chosen(&recent, soon), None);
        let later = start + EARLIER_PROMOTION_INTERVAL;
        assert_eq!(chosen(&recent, later).as_deref(), Some("r1"));
    }
}
